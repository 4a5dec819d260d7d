//! `serve`: the receiving entity as a small C2S server for device developers.
//!
//! Every connection runs the core's [`ReceivingEntity`](xmpp_handshake_core::receiver::ReceivingEntity) (STARTTLS required, SCRAM-SHA-256
//! and SCRAM-SHA-1 with `-PLUS` on TLS 1.3, PLAIN over TLS, resource binding) through the
//! library's receiving role ([`server::receive`]), whose [`Peer`] runs the bound stream;
//! a session task hands its stanzas to the [`Registry`] and sends what the registry routes
//! to it. A newer session binding the same full JID replaces the older,
//! which gets `<conflict/>` (RFC 6120 §7.7.2.2). [`Server::listen_direct_tls`] adds a port
//! for Direct TLS (XEP-0368): TLS from the first byte, ALPN `xmpp-client`, the certificate
//! by SNI, then the same negotiation without STARTTLS. Every wait has a timeout and every
//! buffer a bound: see [`crate::limits`].
//!
//! On the Direct TLS port, TLS 1.3 early data (0-RTT) carrying the header and a FAST
//! `<authenticate/>` (XEP-0484 §3.4) is answered in the first flight
//! ([`ServeConfig::early_data`], `xmpp_handshake_tokio::early_data`).
//!
//! Stream management (XEP-0198) is offered with resumption: a session whose connection
//! breaks (anything but a clean `</stream:stream>`, §4.4) is kept in the [`Registry`] for
//! `--resume-timeout` seconds; a `<resume/>` of the same account on a new connection
//! (§5) takes it back, with what was routed to it meanwhile.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use embedded_io::ErrorKind;
use embedded_io_adapters::tokio_1::FromTokio;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};
use xmpp_handshake_core::connection::{
    Connection, ConnectionOptions, Event as CoreEvent, Timeouts,
};
use xmpp_handshake_core::driver::{Clock as _, NoTls, Observer as _, TlsUpgrade};
pub use xmpp_handshake_core::receiver::BindingQuirk;
use xmpp_handshake_core::receiver::ReceiverConfig;
use xmpp_handshake_core::sasl::fast::FastTokens;
use xmpp_handshake_core::sasl::{
    CredentialStore, MemoryStore, SaslFailure, ScramCredentials, ScramHash,
};
use xmpp_handshake_core::sm::SmConfig;
use xmpp_handshake_core::stream::error::{StreamError, StreamErrorCondition};
use xmpp_handshake_core::stream::header::{closing_tag, ContentNamespace, Framing, HeaderOut};
use xmpp_handshake_core::Error;
use xmpp_handshake_tokio::bound::{Incoming, Refusals};
use xmpp_handshake_tokio::client::Error as LibraryError;
use xmpp_handshake_tokio::early_data::{self, EarlyDataStream};
use xmpp_handshake_tokio::server::{self, Peer};

use crate::certs::{server_template, ServerIdentity};
use crate::clock::TokioClock;
use crate::direct_tls;
use crate::exit::Failure;
use crate::limits::ServeLimits;
use crate::router::{DetachedSessions, Registration, Registry, ToSession};
use crate::tls_info::{Recording, TlsCell, TlsSummary};
use crate::transcript::{Side, Transcript};
use crate::upgrade::{Certificates, RustlsServer};

/// Connections over the limit being told so at once; beyond this they are just closed.
const REFUSALS_AT_ONCE: usize = 16;

/// How long a refused connection gets to read its stream error.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Received stanzas waiting for the router, per session (routing does not wait).
const RECEIVE_QUEUE: usize = 256;

/// The user store shared by all connections, with the FAST tokens (XEP-0484) issued to
/// them: in memory only, so a restart ends every token (clients then log in with the
/// password and get a new one).
#[derive(Clone, Debug)]
pub struct SharedStore {
    users: Arc<MemoryStore>,
    tokens: Arc<Mutex<FastTokens>>,
}

impl SharedStore {
    /// `users`, issuing tokens that live `token_lifetime`, for at most `max_tokens`
    /// account and client pairs.
    pub fn new(users: MemoryStore, token_lifetime: Duration, max_tokens: usize) -> Self {
        SharedStore {
            users: Arc::new(users),
            tokens: Arc::new(Mutex::new(FastTokens::new(
                max_tokens,
                token_lifetime.as_secs(),
            ))),
        }
    }
}

impl Default for SharedStore {
    fn default() -> Self {
        let limits = ServeLimits::default();
        SharedStore::new(
            MemoryStore::default(),
            limits.fast_token_lifetime,
            limits.max_fast_tokens,
        )
    }
}

impl CredentialStore for SharedStore {
    fn scram_credentials(
        &self,
        authcid: &str,
        hash: ScramHash,
    ) -> Result<ScramCredentials, SaslFailure> {
        self.users.scram_credentials(authcid, hash)
    }

    fn unknown_user_salt(&self, authcid: &str) -> Option<Vec<u8>> {
        self.users.unknown_user_salt(authcid)
    }

    fn authorize(&self, authcid: &str, authzid: &str) -> Result<(), SaslFailure> {
        self.users.authorize(authcid, authzid)
    }

    fn fast_tokens(&self, f: &mut dyn FnMut(&mut FastTokens, u64)) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A panic elsewhere while holding the lock leaves the table as it was: usable.
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut tokens, now);
        true
    }
}

/// [`ServeConfig::binds_once`]: whether a client completed a `-PLUS` login yet.
#[derive(Debug, Clone, Default)]
pub struct BindsOnce(Arc<AtomicBool>);

/// What a server runs with.
#[derive(Clone)]
pub struct ServeConfig {
    /// The served domain.
    pub domain: String,
    /// Users.
    pub store: SharedStore,
    /// The certificate.
    pub identity: ServerIdentity,
    /// Log connections (bound, gone, failed negotiations) on stderr.
    pub log_connections: bool,
    /// Also log every stanza routed.
    pub verbose: bool,
    /// Print each connection's negotiation transcript on stderr (`I:` the client).
    pub trace: bool,
    /// Offer SCRAM `-PLUS` (channel binding, `tls-exporter` on TLS 1.3). Some clients pick
    /// `-PLUS` and then bind with a type we did not advertise (slixmpp 1.8 sends
    /// `tls-unique` on TLS 1.3) and fail; turning this off lets them in with plain SCRAM.
    pub channel_binding: bool,
    /// How channel binding is handled, to test clients against servers seen in the wild
    /// ([`BindingQuirk::None`]: as RFC 5802 and XEP-0440 say).
    pub binding_quirk: BindingQuirk,
    /// A server that stops binding after binding once: once a client completed a `-PLUS`
    /// login, every later connection is served as [`BindingQuirk::Unverifiable`] (tests of
    /// a client's memory of servers that bound before).
    pub binds_once: Option<BindsOnce>,
    /// Resource bounds and timeouts.
    pub limits: ServeLimits,
    /// Offer SASL2 (XEP-0388) beside RFC 6120 SASL (on by default), with Bind 2
    /// (XEP-0386), stream management enabled or resumed inside it (XEP-0198) and FAST
    /// tokens (XEP-0484). (SCRAM carries XEP-0474's downgrade-protection hash on both
    /// profiles, always.)
    pub sasl2: bool,
    /// On the Direct TLS port (XEP-0368), accept TLS 1.3 early data (0-RTT) carrying the
    /// stream header and a FAST `<authenticate/>`, answered in the first flight
    /// (`xmpp_handshake_tokio::early_data`), and advertise it (XEP-0484 `tls-0rtt`): a
    /// reconnect in two round trips counting the TCP connect. On by default
    /// (`--no-early-data` turns it off).
    pub early_data: bool,
}

impl ServeConfig {
    /// Serves `domain` to the users in `store` with `identity`'s certificate: channel
    /// binding and SASL2 offered, default bounds, nothing logged.
    pub fn new(domain: impl Into<String>, store: MemoryStore, identity: ServerIdentity) -> Self {
        let limits = ServeLimits::default();
        ServeConfig {
            domain: domain.into(),
            store: SharedStore::new(store, limits.fast_token_lifetime, limits.max_fast_tokens),
            identity,
            log_connections: false,
            verbose: false,
            trace: false,
            channel_binding: true,
            binding_quirk: BindingQuirk::None,
            binds_once: None,
            limits,
            sasl2: true,
            early_data: true,
        }
    }
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its sessions.
    pub registry: Arc<Registry>,
    config: Arc<ServeConfig>,
    slots: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
    direct_tls_task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` and starts accepting.
    pub async fn start(listen: SocketAddr, config: ServeConfig) -> Result<Server, Failure> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::protocol(format!("listening on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Registry::with_limits(
            &config.domain,
            config.limits.max_queue_bytes,
            config.limits.max_detached_sessions,
        ));
        let slots = Arc::new(Semaphore::new(config.limits.max_connections));
        let config = Arc::new(config);
        let task = tokio::spawn(accept_loop(
            listener,
            config.clone(),
            registry.clone(),
            slots.clone(),
            false,
        ));
        Ok(Server {
            addr,
            registry,
            config,
            slots,
            task,
            direct_tls_task: None,
        })
    }

    /// Also accepts Direct TLS (XEP-0368) on `listen`, with the same users and sessions;
    /// returns the bound address.
    pub async fn listen_direct_tls(&mut self, listen: SocketAddr) -> Result<SocketAddr, Failure> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::protocol(format!("listening on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(
            listener,
            self.config.clone(),
            self.registry.clone(),
            self.slots.clone(),
            true,
        ));
        if let Some(old) = self.direct_tls_task.replace(task) {
            old.abort();
        }
        Ok(addr)
    }

    /// Connections being served now (negotiating or bound), on both listeners.
    pub fn connections(&self) -> usize {
        self.config.limits.max_connections - self.slots.available_permits()
    }

    /// Runs until the accept loop ends (never, unless the listener fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(task) = &self.direct_tls_task {
            task.abort();
        }
    }
}

/// Accepts connections, up to the limit (`slots`); `direct_tls`: each starts with the TLS
/// handshake (XEP-0368).
async fn accept_loop(
    listener: TcpListener,
    config: Arc<ServeConfig>,
    registry: Arc<Registry>,
    slots: Arc<Semaphore>,
    direct_tls: bool,
) {
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let mut certificates = Certificates::default();
    certificates.insert(&config.domain, config.identity.key.clone());
    let mut template = server_template();
    if direct_tls {
        // A client offering other protocols only is refused (no_application_protocol);
        // one that offers none is served.
        template.alpn_protocols = vec![direct_tls::ALPN_CLIENT.to_vec()];
        if config.early_data {
            template = early_data::server_config(template);
        }
    }
    let tls = RustlsServer::new(certificates, template);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("serve: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if config.log_connections {
                eprintln!(
                    "serve: {peer}: refused ({} connections already)",
                    config.limits.max_connections
                );
            }
            // Over Direct TLS the error could only go inside TLS: just close.
            if let (false, Ok(permit)) = (direct_tls, refusals.clone().try_acquire_owned()) {
                tokio::spawn(refuse(tcp, config.domain.clone(), permit));
            }
            continue;
        };
        let config = config.clone();
        let registry = registry.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let result = if direct_tls {
                direct_tls_connection(tcp, peer, tls, &config, &registry).await
            } else {
                connection(tcp, peer, tls, &config, &registry).await
            };
            if let Err(e) = result {
                if config.log_connections {
                    eprintln!("serve: {peer}: {e}");
                }
            }
        });
    }
}

/// Over the connection limit: our stream header and `<resource-constraint/>` (§4.9.1.1,
/// §4.9.3.17), then the close; the client's bytes are read and dropped until it closes too
/// (closing with unread data would reset the connection and lose the error).
async fn refuse(mut tcp: TcpStream, domain: String, _permit: OwnedSemaphorePermit) {
    let mut out = String::new();
    HeaderOut {
        ns: ContentNamespace::Client,
        from: Some(&domain),
        to: None,
        id: None,
        lang: None,
    }
    .write(Framing::Tcp, &mut out);
    StreamError::with_text(
        StreamErrorCondition::ResourceConstraint,
        "too many connections; try again later",
    )
    .write(&mut out);
    out.push_str(closing_tag(Framing::Tcp));
    let _ = timeout(REFUSAL_TIMEOUT, async {
        tcp.write_all(out.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 512];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// The receiving entity's configuration from `config`: channel binding, the limits, and
/// stream management with resumption (XEP-0198 §3: `max` is `--resume-timeout`).
fn configure(receiver: &mut ReceiverConfig, config: &ServeConfig) {
    receiver.limits = config.limits.xml;
    receiver.stream_management = Some(SmConfig {
        resume: true,
        max_resume: Some(u32::try_from(config.limits.resume_timeout.as_secs()).unwrap_or(u32::MAX)),
        ..SmConfig::default()
    });
    receiver.max_auth_failures = config.limits.max_auth_failures;
    receiver.sasl2 = config.sasl2;
    receiver.downgrade_protection = true;
    if let Some(sasl) = &mut receiver.sasl {
        sasl.channel_binding = config.channel_binding;
    }
    receiver.binding_quirk = if config
        .binds_once
        .as_ref()
        .is_some_and(|b| b.0.load(Ordering::Relaxed))
    {
        BindingQuirk::Unverifiable
    } else {
        config.binding_quirk
    };
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: RustlsServer,
    config: &ServeConfig,
    registry: &Registry,
) -> Result<(), String> {
    let transport = crate::transport::accepted(tcp).map_err(|e| e.to_string())?;
    let cell = TlsCell::default();
    let mut tls = Recording {
        inner: tls,
        cell: cell.clone(),
        own_certificate: Some(config.identity.leaf_fingerprint()),
    };
    let receiver = ReceiverConfig::client_to_server(&config.domain);
    run_connection(
        transport,
        &mut tls,
        cell,
        receiver,
        &peer.to_string(),
        config,
        registry,
    )
    .await
}

/// Negotiates one client's stream over `transport` (TCP here, RFC 7395 WebSocket in
/// [`crate::web`]) with `receiver`, then runs its session until it ends.
pub async fn run_connection<T, S, U>(
    transport: FromTokio<T>,
    tls: &mut U,
    cell: TlsCell,
    mut receiver: ReceiverConfig,
    peer: &str,
    config: &ServeConfig,
    registry: &Registry,
) -> Result<(), String>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    U: TlsUpgrade<FromTokio<T>, Stream = FromTokio<S>>,
{
    configure(&mut receiver, config);
    let options = options(config, config.limits.handshake_timeout);
    let connection = Connection::accept(
        receiver,
        rand_core::OsRng,
        config.store.clone(),
        options,
        TokioClock.now(),
    );
    let mut transcript = transcript(cell, peer, config);
    let mut sessions = registry.session_table();
    let negotiation = server::receive_with_sessions(
        transport,
        tls,
        connection,
        &mut transcript,
        RECEIVE_QUEUE,
        &mut sessions,
    )
    .await;
    let resumed = sessions.resumed_id().map(String::from);
    serve_negotiation(negotiation, resumed, peer, config, registry).await
}

/// The connection's options (all its timers are the core's): the negotiation within
/// `negotiation`; on the bound stream, a client silent for `--idle-timeout` (no element,
/// no whitespace keep-alive) gets a ping (XEP-0199), silent for another a
/// `<connection-timeout/>`; a client that stops reading for as long loses its connection;
/// an element over `--max-parse-bytes` gets `<policy-violation/>` (§13.12), as every
/// limit does.
fn options(config: &ServeConfig, negotiation: Duration) -> ConnectionOptions {
    ConnectionOptions {
        timeouts: Timeouts {
            negotiation: Some(negotiation),
            idle: Some(config.limits.idle_timeout),
            ping_when_idle: true,
            write: Some(config.limits.idle_timeout),
            ..Timeouts::default()
        },
        refuse_costly_elements: true,
        ..ConnectionOptions::default()
    }
}

/// A Direct TLS connection (XEP-0368): the TLS handshake first (no stream `to` yet: the
/// certificate by SNI, else the served domain's), then the negotiation on a secure
/// transport, without STARTTLS.
async fn direct_tls_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: RustlsServer,
    config: &ServeConfig,
    registry: &Registry,
) -> Result<(), String> {
    if config.early_data {
        return early_data_connection(tcp, peer, tls, config, registry).await;
    }
    let deadline = Instant::now() + config.limits.handshake_timeout;
    let transport = crate::transport::accepted(tcp).map_err(|e| e.to_string())?;
    let cell = TlsCell::default();
    let mut tls = Recording {
        inner: tls,
        cell: cell.clone(),
        own_certificate: Some(config.identity.leaf_fingerprint()),
    };
    let peer = peer.to_string();
    let mut transcript = transcript(cell, &peer, config);
    let stream = timeout_at(deadline, tls.upgrade(transport, &config.domain))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let info = tls.tls_info(&stream);
    transcript.tls_established();
    let receiver = direct_tls_receiver(config);
    let left = deadline.saturating_duration_since(Instant::now());
    let connection = Connection::accept_with_tls(
        receiver,
        rand_core::OsRng,
        config.store.clone(),
        info,
        options(config, left),
        TokioClock.now(),
    );
    let sessions = registry.session_table();
    serve_direct(
        stream, connection, transcript, sessions, &peer, config, registry,
    )
    .await
}

/// The receiving entity of a Direct TLS connection: no STARTTLS, the transport secure;
/// FAST in TLS 0-RTT advertised when serve accepts early data.
fn direct_tls_receiver(config: &ServeConfig) -> ReceiverConfig {
    let mut receiver = ReceiverConfig::client_to_server(&config.domain);
    receiver.secure_transport = true;
    receiver.fast_0rtt = config.early_data;
    configure(&mut receiver, config);
    receiver
}

/// [`direct_tls_connection`] reading TLS 1.3 early data: the stream header and a FAST
/// `<authenticate/>` sent in it (XEP-0484 §3.4) are answered in the server's first flight
/// (header, features, `<success/>` with Bind 2), before the client's Finished. Without
/// early data, the connection starts once the handshake is done, as on any Direct TLS
/// port.
async fn early_data_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    mut tls: RustlsServer,
    config: &ServeConfig,
    registry: &Registry,
) -> Result<(), String> {
    let deadline = Instant::now() + config.limits.handshake_timeout;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let cell = TlsCell::default();
    let peer = peer.to_string();
    let mut transcript = transcript(cell.clone(), &peer, config);
    let tls_config = Arc::new(tls.config_for(&config.domain));
    let mut sessions = registry.session_table();
    let handshake = async {
        let mut stream = EarlyDataStream::accept(tcp, tls_config).await?;
        // The version and suite are settled by now; the transcript's TLS line goes first.
        let mut summary = TlsSummary::of_server(stream.connection());
        summary.server_certificate = Some(config.identity.leaf_fingerprint());
        *cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(summary);
        transcript.tls_established();
        let receiver = direct_tls_receiver(config);
        let left = deadline.saturating_duration_since(Instant::now());
        let connection = if stream.early_data_accepted() {
            // The binding data lacks `tls-exporter` until the handshake is done: what is
            // offered now is what can be verified now.
            let info = tls.connection_info(stream.connection());
            let mut connection = Connection::accept_with_tls(
                receiver,
                rand_core::OsRng,
                config.store.clone(),
                info,
                options(config, left),
                TokioClock.now(),
            );
            stream
                .answer_early_data(&mut connection, &mut transcript, &mut sessions)
                .await?;
            connection
        } else {
            stream.finish_handshake().await?;
            Connection::accept_with_tls(
                receiver,
                rand_core::OsRng,
                config.store.clone(),
                tls.connection_info(stream.connection()),
                options(config, left),
                TokioClock.now(),
            )
        };
        Ok::<_, std::io::Error>((stream, connection))
    };
    let (stream, connection) = timeout_at(deadline, handshake)
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    serve_direct(
        FromTokio::new(stream),
        connection,
        transcript,
        sessions,
        &peer,
        config,
        registry,
    )
    .await
}

/// Runs the negotiation of a Direct TLS connection over `stream` (resuming from
/// `sessions`), then its session.
#[allow(clippy::too_many_arguments)]
async fn serve_direct<S, R>(
    stream: FromTokio<S>,
    connection: Connection<R>,
    mut transcript: Transcript,
    mut sessions: DetachedSessions<'_>,
    peer: &str,
    config: &ServeConfig,
    registry: &Registry,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    R: xmpp_handshake_core::connection::Negotiator + Send + 'static,
{
    // The machine never asks for STARTTLS on a secure transport: `NoTls` fills the type.
    let mut no_tls = NoTls;
    let negotiation = server::receive_with_sessions(
        stream,
        &mut no_tls,
        connection,
        &mut transcript,
        RECEIVE_QUEUE,
        &mut sessions,
    )
    .await;
    let resumed = sessions.resumed_id().map(String::from);
    serve_negotiation(negotiation, resumed, peer, config, registry).await
}

/// The transcript of one connection (printed live with `--trace`).
fn transcript(cell: TlsCell, peer: &str, config: &ServeConfig) -> Transcript {
    let mut transcript = Transcript::new(Side::Receiving, cell);
    transcript.print_live(config.trace);
    transcript.live_prefix(&format!("serve: {peer}: "));
    transcript
}

/// After `negotiation` (bounded by the connection's own deadline; `resumed`: the id of
/// the detached session it resumed, XEP-0198 §5), runs the bound session until it ends.
async fn serve_negotiation(
    negotiation: Result<Peer, LibraryError>,
    resumed: Option<String>,
    peer: &str,
    config: &ServeConfig,
    registry: &Registry,
) -> Result<(), String> {
    let mut session = negotiation.map_err(|e| match e {
        LibraryError::Xmpp(Error::Timeout) => format!(
            "negotiation not done within {} s",
            config.limits.handshake_timeout.as_secs()
        ),
        e => format!("negotiation failed: {e}"),
    })?;
    let jid = session.jid().to_string();
    if let Some(once) = &config.binds_once {
        if session.outcome().mechanism.is_some_and(|m| m.is_plus()) {
            once.0.store(true, Ordering::Relaxed);
        }
    }
    let outcome = session.outcome();
    let mechanism = match (outcome.mechanism, outcome.sasl2) {
        (Some(m), true) => format!("SASL2 {}", m.name()),
        (Some(m), false) => m.name().to_string(),
        (None, true) => "SASL2 with a FAST token".to_string(),
        (None, false) => "?".to_string(),
    };
    if config.log_connections {
        let how = if resumed.is_some() {
            "resumed"
        } else {
            "bound"
        };
        eprintln!("serve: {peer}: {jid} {how} ({mechanism})");
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let registration = registry.bind(&jid, tx);
    if let Some(id) = &resumed {
        registry.set_sm_id(&registration, id);
    }
    let mut pending = None;
    let mut refusals = session.take_refusals();
    let result = session_loop(
        &mut session,
        &mut refusals,
        &mut rx,
        &mut pending,
        &registration,
        &jid,
        config,
        registry,
    )
    .await;
    // The stream is over (the loop saw its end) but for a stopped server: the session's
    // state is there. XEP-0198 §5: a broken connection leaves a resumable session; a clean
    // close or a replaced session does not.
    let state = session.take_sm_state();
    let kept = registry.end(&registration, &mut rx, pending, state, result.is_err());
    if config.log_connections {
        eprintln!(
            "serve: {peer}: {jid} gone ({}){}",
            result.as_deref().unwrap_or_else(|e| e),
            if kept { "; resumable" } else { "" }
        );
    }
    result.map(|_| ())
}

/// Why a bound session ended, for the log.
fn ended_because(error: &Error, config: &ServeConfig) -> String {
    let idle = config.limits.idle_timeout.as_secs();
    match error {
        Error::Timeout => format!(
            "silent for {} s, ping unanswered (connection-timeout)",
            2 * idle
        ),
        Error::Transport(ErrorKind::TimedOut) => {
            format!("a write blocked for {idle} s (the client stopped reading)")
        }
        e => e.to_string(),
    }
}

/// The bound stream: the client's elements go to the router, the router's to the client.
/// Idle clients, clients that stop reading and elements over the limits are the
/// connection's business (see [`options`]). While a stanza waits for the connection (its
/// writes blocked), the client's stanzas are still routed and the router's wait in the
/// registry's bounded queue. A stanza taken from `rx` and not handed to the connection yet
/// is left in `pending` when the loop ends (the registry keeps it for a resumption, or
/// bounces it). A stanza the connection refuses (the client has not acknowledged the
/// stream-management bound of stanzas, XEP-0198) goes back to its sender as
/// `<resource-constraint/>` (RFC 6120 §8.3.3.18), never dropped unsaid.
// Each argument is a separate borrow the loop needs at the same time.
#[allow(clippy::too_many_arguments)]
async fn session_loop(
    session: &mut Peer,
    refusals: &mut Option<Refusals>,
    rx: &mut mpsc::UnboundedReceiver<ToSession>,
    pending: &mut Option<String>,
    registration: &Registration,
    jid: &str,
    config: &ServeConfig,
    registry: &Registry,
) -> Result<&'static str, String> {
    let sender = session.sender();
    loop {
        tokio::select! {
            // Kept as resumable (an `Err`): the resumption waiting takes it.
            () = registration.taken_over() => {
                if session.abandon().await.is_ok() {
                    let _ = session.ended().await;
                }
                return Err("its client resumed it on a new connection; old link dropped".to_string());
            },
            incoming = session.next_incoming() => match incoming {
                Ok(Some(Incoming::Stanza(stanza))) => {
                    let routed = registry.route(jid, stanza.raw());
                    if config.verbose {
                        eprintln!("serve: {jid}: {}", routed.note);
                    }
                }
                // The session id a `<resume/>` may name (XEP-0198 §3); the other events
                // are the client's business.
                Ok(Some(Incoming::StreamManagement(event))) => {
                    if let CoreEvent::SmEnabled { id: Some(id), .. } = event {
                        registry.set_sm_id(registration, &id);
                    }
                }
                // §4.4: the client closed; the connection answered with our closing tag.
                Ok(None) => return Ok("closed by the client"),
                Err(e) => return Err(ended_because(&e, config)),
            },
            refused = async { refusals.as_mut()?.next().await }, if refusals.is_some() => {
                match refused {
                    Some((stanza, error)) => {
                        registry.refused(&stanza);
                        if config.log_connections {
                            eprintln!("serve: {jid}: a stanza for it was not sent ({error}); bounced to its sender");
                        }
                    }
                    None => *refusals = None,
                }
            },
            // Cancel-safe: a send abandoned for another branch sends nothing.
            sent = sender.send(pending.as_deref().unwrap_or_default()), if pending.is_some() => {
                // Failed only once the connection is over: the next read says why, and the
                // stanza stays pending for the session's end (kept or bounced).
                if sent.is_ok() {
                    *pending = None;
                }
            },
            message = rx.recv(), if pending.is_none() => {
                if let Some(m) = &message {
                    registration.dequeued(m);
                }
                match message {
                    Some(ToSession::Stanza(stanza)) => *pending = Some(stanza),
                    Some(ToSession::Conflict) => {
                        let conflict = StreamError::with_text(StreamErrorCondition::Conflict, "Replaced by new connection");
                        if session.stream_error(conflict).await.is_ok() {
                            let _ = session.ended().await;
                        }
                        return Ok("replaced by a newer session (conflict)");
                    }

                    None => return Ok("server stopped"),
                }
            },
        }
    }
}

/// Builds the user store from `--user` arguments and a `--users` file.
pub fn load_users(
    user_args: &[crate::users::UserArg],
    users_file: Option<&std::path::Path>,
    iterations: u32,
) -> Result<(MemoryStore, Vec<String>), Failure> {
    let mut store = MemoryStore::new();
    let mut names = Vec::new();
    let mut rng = rand_core::OsRng;
    for arg in user_args {
        let (name, password) = crate::users::parse_user_arg(&arg.0).map_err(Failure::usage)?;
        store.add_password(&name, &password, iterations, &mut rng);
        names.push(name);
    }
    if let Some(path) = users_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("reading {}: {e}", path.display())))?;
        let added = crate::users::load_into(&text, &mut store)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        names.extend(added);
    }
    if names.is_empty() {
        return Err(Failure::usage(
            "no users: give --user NAME:PASSWORD or --users FILE",
        ));
    }
    Ok((store, names))
}
