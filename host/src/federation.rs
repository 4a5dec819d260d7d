//! `serve` federates: server-to-server streams (RFC 6120 §2.5, §5, §6.4; XEP-0178 SASL
//! EXTERNAL; XEP-0368 for finding peers).
//!
//! * **Outgoing** ([`Remote::send`]): a stanza of a local session for another domain
//!   goes to that domain's link, one per peer domain. The first stanza starts it: the
//!   targets from `--s2s-peer DOMAIN=HOST:PORT`, else DNS SRV `_xmpps-server._tcp` (Direct
//!   TLS, ALPN `xmpp-server`) and `_xmpp-server._tcp` (STARTTLS) in XEP-0368 order, else
//!   `DOMAIN:5269`; the peer's certificate checked against `--s2s-ca` for DOMAIN (DNS-ID or
//!   SRV-ID, §13.7.2); our certificate presented as the TLS client certificate; `from` our
//!   domain on every header; SASL EXTERNAL; the restart; no binding. Stanzas wait in a
//!   bounded queue meanwhile; when no target can be reached (or the peer refuses us) they
//!   are answered with `<remote-server-not-found/>`, when the negotiation does not finish
//!   within `--s2s-timeout` with `<remote-server-timeout/>` (§8.3.3.15, §8.3.3.16). At
//!   most `--s2s-max-peers` links exist at once; a stanza for one more domain gets
//!   `<resource-constraint/>`, as one that would overflow a link's queue.
//! * **Incoming** (`--s2s-listen`; `--s2s-direct-tls-listen` for Direct TLS, ALPN
//!   `xmpp-server`): STARTTLS required; the peer's TLS client certificate
//!   requested and verified against `--s2s-ca`; SASL EXTERNAL offered only when it names
//!   the stream's `from` (§13.7.2.3), so a certificate for another domain never earns it;
//!   a `from` that changes between headers is `<improper-addressing/>`, stanzas before
//!   authentication `<not-authorized/>` (the core's rules). On the authenticated stream
//!   every stanza's `from` must be in the authenticated domain (else `<invalid-from/>`,
//!   §4.9.3.9) and its `to` in ours (else `<host-unknown/>`); it is then routed to local
//!   sessions, and what the router answers goes back over our own link to that domain.
//!   At most `--s2s-max-incoming` connections at once, and [`STREAMS_PER_PEER`]
//!   authenticated ones per peer domain.
//!
//! * **Server Dialback** (XEP-0220, keys as XEP-0185; on unless `--s2s-no-dialback`), in
//!   the three roles: *originating*, our link sends `<db:result/>` with its key where the
//!   peer offers no EXTERNAL or EXTERNAL fails; *receiving*, a peer's `<db:result/>` the
//!   core admits (only over TLS, never for a domain its verified certificate contradicts)
//!   is checked by asking the claimed domain's authoritative server on a stream of our
//!   own, reached as every outgoing link (`--s2s-peer`, SRV) and its certificate checked
//!   as theirs; *authoritative*, a `<db:verify/>` is answered on whatever stream it comes
//!   (before or after authentication, incoming or outgoing) from the key secret
//!   (`--s2s-dialback-secret-file`, else random per process). The peer's TLS client
//!   certificate is optional: one that does not verify earns no EXTERNAL, only dialback.
//!
//! * **Bidirectional streams** (XEP-0288; on unless `--s2s-no-bidi`): our links ask for
//!   them, our listener offers them (both only over TLS). An authenticated incoming stream
//!   that is bidirectional becomes the link to its peer when none exists (same queue bound,
//!   counted against `--s2s-max-peers`), so the peer's reply and our next message need no
//!   second connection; what the peer sends on our outgoing bidirectional link is checked
//!   and routed as on its own stream. Without it streams are unidirectional: a peer sends on
//!   the stream it opened, we on ours (dialback answers excepted).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rustls::RootCertStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;
use xmpp_handshake_core::connection::{Connection, ConnectionOptions, Stanza, Timeouts};
use xmpp_handshake_core::dialback::{self, Dialback, DialbackConfig, Verdict};
use xmpp_handshake_core::driver::{
    Clock as _, DialbackAuthority, NoTls, Observer as _, TlsUpgrade as _,
};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::receiver::ReceiverConfig;
use xmpp_handshake_core::sasl::Credentials;
use xmpp_handshake_core::stanza::check_server_addresses;
use xmpp_handshake_core::stream::error::{StreamError, StreamErrorCondition};
use xmpp_handshake_core::trust::{CertificatePolicy, Service as TrustService};
use xmpp_handshake_core::{Error, Jid};
use xmpp_handshake_tokio::client::Error as LibraryError;
use xmpp_handshake_tokio::server;

use crate::certs::ServerIdentity;
use crate::client::{self, ClientSession, ClientTrust};
use crate::clock::TokioClock;
use crate::exit::Failure;
use crate::limits::ServeLimits;
use crate::resolve::{self, Security, Service, StaticResolver, SystemResolver, Target};
use crate::router::{error_for, Registry, Remote};
use crate::s2s_check::{self, ALPN_SERVER};
use crate::serve::SharedStore;
use crate::tls::verify::{client_cert_verifier, OptionalClientCertificate};
use crate::tls_info::{Recording, TlsCell};
use crate::transcript::{Side, Transcript};
use crate::upgrade::{Certificates, RustlsServer};

/// Authenticated incoming streams of one peer domain at once; one more is closed with
/// `<resource-constraint/>` (§4.9.3.17).
pub const STREAMS_PER_PEER: usize = 4;

/// Received stanzas waiting for the router, per incoming stream.
const RECEIVE_QUEUE: usize = 256;

/// How `serve` federates (the `--s2s-*` flags).
#[derive(Clone)]
pub struct S2sConfig {
    /// Accept peer servers here (`--s2s-listen`); `None`: outgoing links only.
    pub listen: Option<SocketAddr>,
    /// Static routes (`--s2s-peer DOMAIN=HOST:PORT`): STARTTLS to HOST:PORT, no DNS.
    pub peers: HashMap<String, (String, u16)>,
    /// Trust anchors for peer servers' certificates, both directions (`--s2s-ca`).
    pub anchors: Arc<RootCertStore>,
    /// Connecting and negotiating one link, all targets together (`--s2s-timeout`).
    pub timeout: Duration,
    /// Outgoing links at once (`--s2s-max-peers`).
    pub max_peers: usize,
    /// Bytes of stanzas waiting for one link (`--s2s-queue-bytes`).
    pub queue_bytes: usize,
    /// Incoming connections at once (`--s2s-max-incoming`).
    pub max_incoming: usize,
    /// A fixed SRV table instead of the system's DNS (tests).
    pub srv: Option<StaticResolver>,
    /// `serve`'s bounds that apply to S2S streams too: element sizes, failed
    /// authentications, the idle timeout (an unused outgoing link is closed after it; a
    /// silent incoming stream gets `<connection-timeout/>`).
    pub limits: ServeLimits,
    /// Server Dialback (XEP-0220) in all three roles; `None`: EXTERNAL only.
    pub dialback: Option<DialbackConfig>,
    /// Bidirectional streams (XEP-0288), offered and asked for; on unless
    /// `--s2s-no-bidi`.
    pub bidi: bool,
}

impl S2sConfig {
    /// Federation with `anchors` for peers, default bounds, no listener, no static routes.
    pub fn new(anchors: RootCertStore) -> Self {
        S2sConfig {
            listen: None,
            peers: HashMap::new(),
            anchors: Arc::new(anchors),
            timeout: Duration::from_secs(30),
            max_peers: 64,
            queue_bytes: 256 * 1024,
            max_incoming: 128,
            srv: None,
            limits: ServeLimits::default(),
            dialback: None,
            bidi: true,
        }
    }
}

/// Parses `DOMAIN=HOST:PORT` (`--s2s-peer`).
pub fn parse_peer(arg: &str) -> Result<(String, (String, u16)), String> {
    let (domain, target) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected DOMAIN=HOST:PORT"))?;
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{arg:?}: expected DOMAIN=HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{arg:?}: {port:?} is not a port"))?;
    let domain = Jid::from_parts(None, domain, None)
        .map_err(|e| format!("{arg:?}: {domain:?} is not a domain: {e}"))?
        .into_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{arg:?}: no host"));
    }
    Ok((domain, (host.to_string(), port)))
}

/// One outgoing link: its queue, bounded in bytes.
struct Link {
    tx: mpsc::UnboundedSender<String>,
    queued: Arc<AtomicUsize>,
}

/// The server-to-server side of one `serve`. See the module docs.
pub struct Federation {
    me: Weak<Federation>,
    domain: String,
    identity: ServerIdentity,
    config: S2sConfig,
    registry: Weak<Registry>,
    links: Mutex<HashMap<String, Link>>,
    incoming: Mutex<HashMap<String, usize>>,
    /// TCP connections the S2S listeners accepted, ever.
    accepted: AtomicUsize,
    log: bool,
    trace: bool,
    verbose: bool,
}

/// Why a link could not be made, as the stanza error its stanzas get.
enum LinkFailure {
    NotFound(String),
    Timeout,
}

impl Federation {
    /// Federation for `registry`'s domain with `identity` (presented to peers both as
    /// server and as client certificate); routes the registry's stanzas for other domains.
    pub fn attach(
        registry: &Arc<Registry>,
        identity: ServerIdentity,
        config: S2sConfig,
        log: bool,
        trace: bool,
        verbose: bool,
    ) -> Arc<Federation> {
        let federation = Arc::new_cyclic(|me| Federation {
            me: me.clone(),
            domain: registry.domain().to_string(),
            identity,
            config,
            registry: Arc::downgrade(registry),
            links: Mutex::new(HashMap::new()),
            incoming: Mutex::new(HashMap::new()),
            accepted: AtomicUsize::new(0),
            log,
            trace,
            verbose,
        });
        registry.set_remote(federation.clone());
        federation
    }

    /// Outgoing links now (connecting or up).
    pub fn links(&self) -> usize {
        self.lock_links().len()
    }

    /// TCP connections the S2S listeners accepted since the start.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }

    fn lock_links(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts peer servers on `listen` (STARTTLS); returns the bound address.
    pub async fn listen(
        self: &Arc<Self>,
        listen: SocketAddr,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Failure> {
        self.listen_on(listen, false).await
    }

    /// Accepts peer servers on `listen` with Direct TLS (XEP-0368: TLS from the first
    /// byte, ALPN `xmpp-server`, what `_xmpps-server._tcp` records point at); returns the
    /// bound address.
    pub async fn listen_direct_tls(
        self: &Arc<Self>,
        listen: SocketAddr,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Failure> {
        self.listen_on(listen, true).await
    }

    async fn listen_on(
        self: &Arc<Self>,
        listen: SocketAddr,
        direct_tls: bool,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Failure> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::protocol(format!("listening on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(self.clone().accept_loop(listener, direct_tls));
        Ok((addr, task))
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, direct_tls: bool) {
        let slots = Arc::new(Semaphore::new(self.config.max_incoming));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // A client certificate that does not verify earns no EXTERNAL but does not end the
        // handshake: dialback may still authenticate the peer (unless it is off).
        let optional = match OptionalClientCertificate::new(self.config.anchors.clone(), provider) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("serve: s2s: no client-certificate verifier ({e}); not listening");
                return;
            }
        };
        let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match self
            .config
            .dialback
        {
            Some(_) => optional.clone(),
            None => match client_cert_verifier(
                self.config.anchors.clone(),
                Arc::new(rustls::crypto::ring::default_provider()),
            ) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("serve: s2s: no client-certificate verifier ({e}); not listening");
                    return;
                }
            },
        };
        let template = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
        let mut template = template;
        if direct_tls {
            template.alpn_protocols = vec![ALPN_SERVER.to_vec()];
        }
        let mut certificates = Certificates::default();
        certificates.insert(&self.domain, self.identity.key.clone());
        let tls = RustlsServer::new(certificates, template)
            .with_external(CertificatePolicy::anchors(), TrustService::Server)
            .revalidating(optional);
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("serve: s2s: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            self.accepted.fetch_add(1, Ordering::AcqRel);
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                if self.log {
                    eprintln!(
                        "serve: s2s {peer}: refused ({} connections already)",
                        self.config.max_incoming
                    );
                }
                continue;
            };
            let this = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if let Err(e) = this.incoming(tcp, peer, tls, direct_tls).await {
                    if this.log {
                        eprintln!("serve: s2s in {peer}: {e}");
                    }
                }
            });
        }
    }

    /// One peer server's stream to us (`direct_tls`: TLS from the first byte).
    async fn incoming(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        tls: RustlsServer,
        direct_tls: bool,
    ) -> Result<(), String> {
        let registry = self.registry.upgrade().ok_or("server stopped")?;
        let limits = self.config.limits;
        let transport = crate::transport::accepted(tcp).map_err(|e| e.to_string())?;
        let cell = TlsCell::default();
        let mut tls = Recording {
            inner: tls,
            cell: cell.clone(),
            own_certificate: Some(self.identity.leaf_fingerprint()),
        };
        let mut transcript = Transcript::new(Side::Receiving, cell);
        transcript.print_live(self.trace);
        transcript.live_prefix(&format!("serve: s2s in {peer}: "));
        let mut receiver = ReceiverConfig::server_to_server(&self.domain);
        receiver.limits = limits.xml;
        receiver.max_auth_failures = limits.max_auth_failures;
        receiver.dialback = self.config.dialback.clone();
        receiver.bidi = self.config.bidi;
        let mut authority = Authority(self);
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        // No pings: on a unidirectional stream nothing but dialback answers may be sent.
        let options = |negotiation| ConnectionOptions {
            timeouts: Timeouts {
                negotiation: Some(negotiation),
                idle: Some(limits.idle_timeout),
                ping_when_idle: false,
                write: Some(limits.idle_timeout),
                ..Timeouts::default()
            },
            refuse_costly_elements: true,
            ..ConnectionOptions::default()
        };
        let negotiated = if direct_tls {
            let stream = tokio::time::timeout_at(deadline, tls.upgrade(transport, &self.domain))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            let info = tls.tls_info(&stream);
            transcript.tls_established();
            receiver.secure_transport = true;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let connection = Connection::accept_with_tls(
                receiver,
                rand_core::OsRng,
                SharedStore::default(),
                info,
                options(left),
                TokioClock.now(),
            );
            // The machine never asks for STARTTLS on a secure transport.
            server::receive_with_authority(
                stream,
                &mut NoTls,
                connection,
                &mut transcript,
                RECEIVE_QUEUE,
                &mut (),
                &mut authority,
            )
            .await
        } else {
            let connection = Connection::accept(
                receiver,
                rand_core::OsRng,
                SharedStore::default(),
                options(self.config.timeout),
                TokioClock.now(),
            );
            server::receive_with_authority(
                transport,
                &mut tls,
                connection,
                &mut transcript,
                RECEIVE_QUEUE,
                &mut (),
                &mut authority,
            )
            .await
        };
        let mut session = negotiated.map_err(|e| match e {
            LibraryError::Xmpp(Error::Timeout) => format!(
                "negotiation not done within {} s",
                self.config.timeout.as_secs()
            ),
            e => format!("negotiation failed: {e}"),
        })?;
        let domain = session.jid().domain().to_string();
        let _count = match self.count_incoming(&domain) {
            Some(count) => count,
            None => {
                let error = StreamError::with_text(
                    StreamErrorCondition::ResourceConstraint,
                    "too many streams from your domain",
                );
                if session.stream_error(error).await.is_ok() {
                    let _ = session.ended().await;
                }
                return Err(format!("{domain}: over {STREAMS_PER_PEER} streams"));
            }
        };
        if self.log {
            eprintln!(
                "serve: s2s in {peer}: {domain} authenticated ({})",
                how_authenticated(session.outcome())
            );
        }
        // XEP-0288: a bidirectional stream carries our stanzas to the peer too, unless a
        // link to it exists already (that one keeps them).
        let mut link = if session.outcome().bidi {
            self.adopt_link(&domain)
        } else {
            None
        };
        let ended = loop {
            let stanza = tokio::select! {
                stanza = next_queued(&mut link) => {
                    let stanza = without_default_namespace(&stanza, "jabber:client");
                    if self.trace {
                        eprintln!("serve: s2s in {peer}: O: {stanza}");
                    }
                    if let Err(e) = session.send(&stanza).await {
                        self.bounce(&stanza, &LinkFailure::NotFound(String::new()));
                        break Err(format!("{domain}: sending failed: {e}"));
                    }
                    continue;
                }
                received = session.next_stanza() => match received {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        if self.log {
                            eprintln!("serve: s2s in {peer}: {domain} closed the stream");
                        }
                        break Ok(());
                    }
                    Err(e) => break Err(format!("{domain}: {e}")),
                },
            };
            if self.trace {
                eprintln!("serve: s2s in {peer}: I: {}", stanza.raw());
            }
            match self.receive_from_peer(&registry, &stanza, &domain) {
                Ok(Some(answer)) => {
                    let _ = session.send(&answer).await;
                }
                Ok(None) => {}
                Err(error) => {
                    let text = error.text.clone().unwrap_or_default();
                    if session.stream_error(error).await.is_ok() {
                        let _ = session.ended().await;
                    }
                    break Err(format!("{domain}: {text}"));
                }
            }
        };
        if let Some((mut rx, queued)) = link {
            let why = LinkFailure::NotFound(String::from("the bidirectional stream ended"));
            self.close_link(&domain, &mut rx, &queued, &why);
        }
        ended
    }

    /// A stanza `peer` sent us, on its stream or (XEP-0288) on ours: a `<db:verify/>` is
    /// answered (XEP-0220 §2.1.3; the answer is returned), anything else checked
    /// ([`check_server_addresses`]) and routed to local sessions; what the router answers
    /// goes back to `peer`. An error ends the stream.
    fn receive_from_peer(
        &self,
        registry: &Registry,
        stanza: &Stanza,
        peer: &str,
    ) -> Result<Option<String>, StreamError> {
        if let Some(answer) = self.dialback_on_stream(stanza, peer) {
            return Ok(answer);
        }
        let raw = without_default_namespace(stanza.raw(), "jabber:server");
        let from = check_server_addresses(&raw, peer, &self.domain)?;
        let routed = registry.route_from_peer(&from, &raw);
        if self.verbose {
            eprintln!("serve: s2s from {peer}: {}", routed.note);
        }
        if let Some(reply) = routed.reply {
            let _ = self.send(peer, reply);
        }
        Ok(None)
    }

    /// A link to `domain` served by its incoming bidirectional stream (XEP-0288): its
    /// queue, registered as the outgoing links' are (same bounds); `None` when a link to
    /// `domain` exists already or `--s2s-max-peers` are up.
    fn adopt_link(
        &self,
        domain: &str,
    ) -> Option<(mpsc::UnboundedReceiver<String>, Arc<AtomicUsize>)> {
        let mut links = self.lock_links();
        if links.contains_key(domain) || links.len() >= self.config.max_peers {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        links.insert(
            domain.to_string(),
            Link {
                tx,
                queued: queued.clone(),
            },
        );
        if self.log {
            eprintln!("serve: s2s in {domain}: bidirectional, our stanzas to it go here too");
        }
        Some((rx, queued))
    }

    /// Counts one more incoming stream of `domain`, unless it has [`STREAMS_PER_PEER`].
    fn count_incoming(&self, domain: &str) -> Option<IncomingCount<'_>> {
        let mut counts = self.incoming.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(domain.to_string()).or_default();
        if *n >= STREAMS_PER_PEER {
            return None;
        }
        *n += 1;
        Some(IncomingCount {
            federation: self,
            domain: domain.to_string(),
        })
    }

    /// The link of `domain` ended: answers what still waits in `rx` with `condition`.
    fn close_link(
        &self,
        domain: &str,
        rx: &mut mpsc::UnboundedReceiver<String>,
        queued: &Arc<AtomicUsize>,
        failure: &LinkFailure,
    ) {
        {
            let mut links = self.lock_links();
            if links
                .get(domain)
                .is_some_and(|l| Arc::ptr_eq(&l.queued, queued))
            {
                links.remove(domain);
            }
        }
        rx.close();
        while let Ok(stanza) = rx.try_recv() {
            queued.fetch_sub(stanza.len(), Ordering::AcqRel);
            self.bounce(&stanza, failure);
        }
    }

    fn bounce(&self, stanza: &str, failure: &LinkFailure) {
        let condition = match failure {
            LinkFailure::NotFound(_) => "remote-server-not-found",
            LinkFailure::Timeout => "remote-server-timeout",
        };
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        if let Some((to, reply)) = error_for(stanza, &self.domain, condition, "cancel") {
            // Only local senders are answered (a peer's stanza bounced back to the peer
            // would need the link that just failed).
            if Jid::parse(&to).is_ok_and(|j| j.domain() == self.domain) {
                registry.deliver_local(&to, &reply);
            }
        }
    }

    /// Runs the link to `domain`: connect, negotiate, then send what is queued until the
    /// stream ends or stays unused for the idle timeout.
    async fn run_link(
        self: Arc<Self>,
        domain: String,
        mut rx: mpsc::UnboundedReceiver<String>,
        queued: Arc<AtomicUsize>,
    ) {
        let connected = match timeout(self.config.timeout, self.connect(&domain)).await {
            Ok(Ok(session)) => session,
            Ok(Err(failure)) => {
                if self.log {
                    if let LinkFailure::NotFound(why) = &failure {
                        eprintln!(
                            "serve: s2s out {domain}: {why} (queued stanzas answered <remote-server-not-found/>)"
                        );
                    }
                }
                return self.close_link(&domain, &mut rx, &queued, &failure);
            }
            Err(_) => {
                if self.log {
                    eprintln!(
                        "serve: s2s out {domain}: not negotiated within {} s (queued stanzas answered \
                         <remote-server-timeout/>)",
                        self.config.timeout.as_secs()
                    );
                }
                return self.close_link(&domain, &mut rx, &queued, &LinkFailure::Timeout);
            }
        };
        let mut session = connected;
        if self.log {
            eprintln!(
                "serve: s2s out {domain}: authenticated ({})",
                how_authenticated(session.outcome())
            );
        }
        let idle = self.config.limits.idle_timeout;
        let bidi = session.outcome().bidi;
        let Some(registry) = self.registry.upgrade() else {
            return self.close_link(
                &domain,
                &mut rx,
                &queued,
                &LinkFailure::NotFound("server stopped".into()),
            );
        };
        let ended = loop {
            tokio::select! {
                stanza = rx.recv() => {
                    let Some(stanza) = stanza else { break "server stopped".to_string() };
                    queued.fetch_sub(stanza.len(), Ordering::AcqRel);
                    let stanza = without_default_namespace(&stanza, "jabber:client");
                    if self.trace {
                        eprintln!("serve: s2s out {domain}: O: {stanza}");
                    }
                    if let Err(e) = session.send(&stanza).await {
                        self.bounce(&stanza, &LinkFailure::NotFound(String::new()));
                        break format!("sending failed: {e}");
                    }
                }
                received = session.next_stanza() => match received {
                    // On a bidirectional stream (XEP-0288) the peer's stanzas are routed
                    // as on its own stream; otherwise only a `<db:verify/>` is answered
                    // (XEP-0220 §2.1.3), anything else ignored.
                    Ok(Some(stanza)) if bidi => {
                        if self.trace {
                            eprintln!("serve: s2s out {domain}: I: {}", stanza.raw());
                        }
                        match self.receive_from_peer(&registry, &stanza, &domain) {
                            Ok(Some(answer)) => { let _ = session.send(&answer).await; }
                            Ok(None) => {}
                            Err(error) => {
                                let text = error.text.clone().unwrap_or_default();
                                if session.stream_error(error).await.is_ok() {
                                    let _ = session.ended().await;
                                }
                                break text;
                            }
                        }
                    }
                    Ok(Some(stanza)) => {
                        if let Some(Some(answer)) = self.dialback_on_stream(&stanza, &domain) {
                            let _ = session.send(&answer).await;
                        }
                    }
                    Ok(None) => break "closed by the peer".to_string(),
                    Err(e) => break e.to_string(),
                },
                () = tokio::time::sleep(idle) => {
                    // Unused: closed; the next stanza opens a new link.
                    self.lock_links().remove(&domain);
                    rx.close();
                    // Stanzas that raced the removal are still sent.
                    while let Ok(stanza) = rx.try_recv() {
                        queued.fetch_sub(stanza.len(), Ordering::AcqRel);
                        let _ = session.send(&without_default_namespace(&stanza, "jabber:client")).await;
                    }
                    let _ = session.close().await;
                    if self.log {
                        eprintln!("serve: s2s out {domain}: closed (idle)");
                    }
                    return;
                }
            }
        };
        if self.log {
            eprintln!("serve: s2s out {domain}: ended ({ended})");
        }
        self.close_link(&domain, &mut rx, &queued, &LinkFailure::NotFound(ended));
    }

    /// Finds `domain`'s server and negotiates an authenticated stream to it.
    async fn connect(&self, domain: &str) -> Result<ClientSession, LinkFailure> {
        let trust = self.trust_for(domain).map_err(LinkFailure::NotFound)?;
        let targets = self.targets(domain).await.map_err(LinkFailure::NotFound)?;
        let mut last = format!("{domain}: no target");
        let count = targets.len();
        for (i, target) in targets.into_iter().enumerate() {
            let mut config = InitiatorConfig::server(domain, &self.domain);
            // XEP-0178 §2: EXTERNAL with an empty authzid; the certificate names us.
            let mut sasl = ClientSasl::password("", "", None);
            sasl.credentials = Credentials::external(None);
            sasl.pipeline_bind = false;
            config.sasl = Some(sasl);
            config.dialback = self.config.dialback.clone();
            config.bidi = self.config.bidi;
            match self.negotiate(domain, &target, &trust, config).await {
                Ok(session) => return Ok(session),
                Err(e) => {
                    last = e;
                    // The last one's failure is the link's, logged by the caller.
                    if self.log && i + 1 < count {
                        eprintln!("serve: s2s out {domain}: {last}");
                    }
                }
            }
        }
        Err(LinkFailure::NotFound(last))
    }

    /// PKIX to `--s2s-ca` for `domain`'s server, our certificate presented.
    fn trust_for(&self, domain: &str) -> Result<ClientTrust, String> {
        ClientTrust::anchors_s2s(domain, (*self.config.anchors).clone())
            .and_then(|t| t.presenting(self.identity.key.clone()))
            .map_err(|e| e.to_string())
    }

    /// Where `domain`'s server is: `--s2s-peer`, else DNS SRV (XEP-0368 order).
    async fn targets(&self, domain: &str) -> Result<Vec<Target>, String> {
        Ok(match self.config.peers.get(domain) {
            Some((host, port)) => vec![Target {
                host: host.clone(),
                port: *port,
                security: Security::StartTls,
                source: "--s2s-peer",
            }],
            None => {
                let found = match &self.config.srv {
                    Some(table) => {
                        resolve::targets_for(table, Service::Server, domain, None, None, false)
                            .await
                    }
                    None => {
                        resolve::targets_for(
                            &SystemResolver,
                            Service::Server,
                            domain,
                            None,
                            None,
                            false,
                        )
                        .await
                    }
                };
                found
                    .map_err(|e| format!("resolving {domain}: {e}"))?
                    .addresses
            }
        })
    }

    /// A stream to `target` of `domain`, negotiated as `config` says.
    async fn negotiate(
        &self,
        domain: &str,
        target: &Target,
        trust: &ClientTrust,
        config: InitiatorConfig,
    ) -> Result<ClientSession, String> {
        let transport = client::connect_tcp(&target.host, target.port)
            .await
            .map_err(|e| e.to_string())?;
        let cell = TlsCell::default();
        let mut transcript = Transcript::new(Side::Initiating, cell.clone());
        transcript.print_live(self.trace);
        transcript.live_prefix(&format!("serve: s2s out {domain}: "));
        let result = s2s_check::negotiate(
            transport,
            target.security,
            config,
            trust,
            cell,
            &mut transcript,
        )
        .await;
        result.map_err(|e| {
            format!(
                "{}:{} ({}): {e}",
                target.host,
                target.port,
                target.security.name()
            )
        })
    }

    /// A dialback element on a stream with `peer` (XEP-0220): `None` when it is not one;
    /// `Some(answer)` for a `<db:verify/>` request (the authoritative role, §2.1.3);
    /// `Some(None)` for anything else of the namespace (ignored, logged).
    fn dialback_on_stream(&self, stanza: &Stanza, peer: &str) -> Option<Option<String>> {
        let config = self.config.dialback.as_ref()?;
        let parsed = stanza.parse(Dialback::parse).flatten()?;
        let answer = parsed.ok().and_then(|request| {
            dialback::answer_verify(&request, &config.secret, |d| {
                d.trim_end_matches('.').eq_ignore_ascii_case(&self.domain)
            })
        });
        if self.log {
            let what = if answer.is_some() {
                "answered"
            } else {
                "ignored"
            };
            eprintln!("serve: s2s {peer}: dialback {what}: {}", stanza.raw());
        }
        Some(answer.map(|a| {
            let mut out = String::new();
            a.write(&mut out);
            out
        }))
    }

    /// The receiving role's question (XEP-0220 §2.1.2): `verify` on a stream of our own to
    /// the authoritative server of `verify.to`, found and checked as for an outgoing link,
    /// not authenticated (the authoritative server answers any stream). Bounded by
    /// `--s2s-timeout`.
    async fn ask_authority(&self, verify: &Dialback) -> Verdict {
        let domain = verify.to.trim_end_matches('.').to_ascii_lowercase();
        let asked = timeout(self.config.timeout, self.verify_stream(&domain, verify)).await;
        let verdict = match asked {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(why)) => {
                if self.log {
                    eprintln!("serve: s2s dialback {domain}: authoritative server: {why}");
                }
                Verdict::Error("remote-server-not-found".into())
            }
            Err(_) => Verdict::Error("remote-server-timeout".into()),
        };
        if self.log {
            eprintln!("serve: s2s dialback {domain}: key verdict {verdict:?}");
        }
        verdict
    }

    async fn verify_stream(&self, domain: &str, verify: &Dialback) -> Result<Verdict, String> {
        let trust = self.trust_for(domain)?;
        let mut last = format!("{domain}: no target");
        for target in self.targets(domain).await? {
            // No SASL, no dialback of our own: the stream ends negotiated after TLS.
            let config = InitiatorConfig::server(domain, &self.domain);
            let mut session = match self.negotiate(domain, &target, &trust, config).await {
                Ok(session) => session,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut request = String::new();
            verify.write(&mut request);
            session.send(&request).await.map_err(|e| e.to_string())?;
            loop {
                let Some(stanza) = session.next_stanza().await.map_err(|e| e.to_string())? else {
                    return Err("the authoritative server closed the stream".into());
                };
                let answer = stanza.parse(Dialback::parse).flatten();
                if let Some(Ok(answer)) = answer {
                    if answer.kind == dialback::Kind::Verify && answer.id == verify.id {
                        if let Some(verdict) = answer.verdict {
                            let _ = session.close().await;
                            return Ok(verdict);
                        }
                    }
                }
            }
        }
        Err(last)
    }
}

/// How a peer stream was authenticated, for the log.
fn how_authenticated(outcome: &xmpp_handshake_core::connection::Outcome) -> &'static str {
    match (outcome.dialback, outcome.mechanism) {
        (true, _) => "dialback",
        (false, Some(m)) => m.name(),
        (false, None) => "unauthenticated",
    }
}

/// The next stanza queued for an adopted link; never, without one.
async fn next_queued(
    link: &mut Option<(mpsc::UnboundedReceiver<String>, Arc<AtomicUsize>)>,
) -> String {
    if let Some((rx, queued)) = link {
        if let Some(stanza) = rx.recv().await {
            queued.fetch_sub(stanza.len(), Ordering::AcqRel);
            return stanza;
        }
    }
    std::future::pending().await
}

/// The receiving role's way to authoritative servers, for the core's driver.
struct Authority<'a>(&'a Federation);

impl DialbackAuthority for Authority<'_> {
    async fn verify(&mut self, verify: &Dialback) -> Verdict {
        self.0.ask_authority(verify).await
    }
}

/// An incoming stream counted for its domain; uncounted when dropped.
struct IncomingCount<'a> {
    federation: &'a Federation,
    domain: String,
}

impl Drop for IncomingCount<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .federation
            .incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.domain) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.domain);
            }
        }
    }
}

impl Remote for Federation {
    /// Queues `stanza` on the link to `domain`, starting the link when there is none.
    fn send(&self, domain: &str, stanza: String) -> Result<(), &'static str> {
        let me = self.me.upgrade().ok_or("remote-server-not-found")?;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain == self.domain {
            return Err("remote-server-not-found");
        }
        let mut links = self.lock_links();
        if !links.contains_key(&domain) {
            if links.len() >= self.config.max_peers {
                return Err("resource-constraint");
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let queued = Arc::new(AtomicUsize::new(0));
            links.insert(
                domain.clone(),
                Link {
                    tx,
                    queued: queued.clone(),
                },
            );
            tokio::spawn(me.run_link(domain.clone(), rx, queued));
        }
        let link = links.get(&domain).ok_or("remote-server-not-found")?;
        let len = stanza.len();
        let limit = self.config.queue_bytes;
        link.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                q.checked_add(len).filter(|&n| n <= limit)
            })
            .map_err(|_| "resource-constraint")?;
        if link.tx.send(stanza).is_err() {
            link.queued.fetch_sub(len, Ordering::AcqRel);
            return Err("remote-server-not-found");
        }
        Ok(())
    }
}

/// `element` without an explicit default namespace `ns` on its start tag (a C2S stanza
/// written with `xmlns='jabber:client'` forwarded on a `jabber:server` stream, and back).
pub fn without_default_namespace(element: &str, ns: &str) -> String {
    let end = element.find('>').unwrap_or(element.len());
    let (start, rest) = element.split_at(end);
    for quote in ['\'', '"'] {
        let attr = format!(" xmlns={quote}{ns}{quote}");
        if let Some(at) = start.find(&attr) {
            let mut out = String::with_capacity(element.len());
            out.push_str(&start[..at]);
            out.push_str(&start[at + attr.len()..]);
            out.push_str(rest);
            return out;
        }
    }
    element.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_routes_parse() {
        assert_eq!(
            parse_peer("A.test=127.0.0.1:5269").unwrap(),
            ("a.test".to_string(), ("127.0.0.1".to_string(), 5269))
        );
        assert_eq!(parse_peer("a.test=[::1]:5269").unwrap().1 .0, "::1");
        assert!(parse_peer("a.test").is_err());
        assert!(parse_peer("a.test=host").is_err());
        assert!(parse_peer("a.test=host:x").is_err());
    }

    #[test]
    fn explicit_client_namespace_is_dropped_for_s2s() {
        assert_eq!(
            without_default_namespace(
                "<message xmlns='jabber:client' to='a@b'><body>x</body></message>",
                "jabber:client"
            ),
            "<message to='a@b'><body>x</body></message>"
        );
        assert_eq!(
            without_default_namespace("<message to='a@b'/>", "jabber:client"),
            "<message to='a@b'/>"
        );
    }
}
