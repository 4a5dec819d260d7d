//! The front door for a tokio program: [`Client::connect`] resolves the JID's domain,
//! connects, negotiates STARTTLS or Direct TLS with rustls and the XMPP certificate policy,
//! authenticates and binds a resource; the bound stream's stanzas then come as an async
//! [`Stream`], [`BoundStream::send`](crate::BoundStream::send) sends, [`Client::close`] closes (RFC 6120 §4.4).
//!
//! Every protocol rule and timer is the core's [`Connection`]; a task runs it with
//! [`driver::run`], waiting on the socket, the application's commands and the timers
//! together.

use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use futures_core::Stream;
use rustls::{HandshakeKind, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use xmpp_handshake_core::connection::{
    Connection, ConnectionOptions, Outcome, Stanza, Timeouts, TlsInfo,
};
use xmpp_handshake_core::driver::{self, Clock as _, MaybeTls, TlsUpgrade as _};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::jid::{Jid, JidError};
use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_core::sasl::{Credentials, SaslPolicy};
use xmpp_handshake_core::sm::{SmConfig, SmState};
use xmpp_handshake_core::starttls::TlsPolicy;
use xmpp_handshake_core::trust::{CertificatePolicy, NoPins, ReferenceIdentity};

use crate::bound::BoundStream;
use crate::clock::TokioClock;
use crate::direct_tls::{self, Stream as MaybeDirect};
use crate::resolve::{self, Security, SystemResolver};
use crate::tls::verify::{client_config, platform_roots, XmppServerVerifier};
use crate::upgrade::RustlsClient;

/// How the server's certificate is checked (RFC 6120 §13.7.2: PKIX to trust anchors, the
/// JID's domain as the reference identity).
#[derive(Clone, Debug)]
pub enum Trust {
    /// The platform's trust anchors (the operating system's certificate store).
    Platform,
    /// These anchors only (a private CA).
    Anchors(RootCertStore),
}

impl Trust {
    /// The anchors of a PEM bundle (every certificate in it).
    pub fn pem(pem: &[u8]) -> Result<Self, Error> {
        crate::tls::verify::roots_from_pem(pem)
            .map(Trust::Anchors)
            .map_err(|e| Error::Config(format!("the CA bundle: {e}")))
    }

    /// Whether both check certificates against the same anchors.
    fn same_anchors(&self, other: &Trust) -> bool {
        match (self, other) {
            (Trust::Platform, Trust::Platform) => true,
            (Trust::Anchors(a), Trust::Anchors(b)) => a.roots == b.roots,
            _ => false,
        }
    }
}

/// How [`Client::connect`] connects. `ClientOptions::default()` resolves the JID's domain
/// (SRV, XEP-0368 order), requires TLS, checks the certificate against the platform's
/// anchors and lets the server choose the resource.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Certificate checking.
    pub trust: Trust,
    /// Connect to this host instead of resolving the domain (the certificate is still
    /// checked against the JID's domain, never this name).
    pub host: Option<String>,
    /// The port (default 5222, or 5223 with [`ClientOptions::direct_tls`]).
    pub port: Option<u16>,
    /// Direct TLS (XEP-0368) only.
    pub direct_tls: bool,
    /// STARTTLS policy ([`TlsPolicy::Required`]: never plaintext).
    pub tls: TlsPolicy,
    /// SASL mechanism floor and channel binding.
    pub sasl: SaslPolicy,
    /// The resource to ask for (§7.6); `None`: the server's choice (§7.5).
    pub resource: Option<String>,
    /// The connection's timers (negotiation deadline, idle ping, keep-alive).
    pub timeouts: Timeouts,
    /// Received stanzas held for the application at most; past it reading pauses until
    /// the application takes some (the server is held back by TCP; nothing is dropped).
    pub receive_queue: usize,
    /// Stream management (XEP-0198) after binding, when the server offers it; its events
    /// come from [`BoundStream::next_sm_event`](crate::BoundStream::next_sm_event).
    pub stream_management: Option<SmConfig>,
    /// A session to resume instead of binding (XEP-0198 §5): what
    /// [`BoundStream::take_sm_state`](crate::BoundStream::take_sm_state) gave after the
    /// last connection ended. Where the server offers SASL2 with inline stream management
    /// (XEP-0388, XEP-0198), the `<resume/>` rides in the `<authenticate/>` itself.
    pub resume: Option<SmState>,
    /// The user agent id (XEP-0388 §2.2.1): stable per device and account (a UUID), and
    /// what the server ties FAST tokens (XEP-0484) to. Without one (here or in
    /// [`ClientOptions::login_memory`]) no token is asked for or used.
    pub user_agent_id: Option<String>,
    /// Ask the server for a FAST token (XEP-0484 §3.2) when it offers FAST: the next
    /// login can then use it instead of the password (one round trip, no PBKDF2).
    pub request_fast_token: bool,
    /// Log in with the FAST token of [`ClientOptions::login_memory`] when the server
    /// offers its mechanism (a refused token falls back to the password and is forgotten).
    pub use_fast_token: bool,
    /// What an earlier login kept ([`Client::login_memory`], stored with
    /// [`LoginMemory::to_bytes`]): its SCRAM keys, its user agent id and FAST token.
    pub login_memory: Option<LoginMemory>,
    /// Where the TLS 1.3 session tickets the server sends are kept (RFC 8446 §2.2,
    /// §4.6.1): connects made with clones of these options offer them, so a reconnect
    /// within the process resumes the TLS session instead of a full handshake with
    /// certificates ([`Client::tls_resumed`] says which happened).
    pub tls_sessions: TlsSessions,
    /// On Direct TLS, send the stream header and the FAST `<authenticate/>` as TLS 1.3
    /// early data (0-RTT, RFC 8446 §2.3) when the server allowed it (XEP-0484 `tls-0rtt`,
    /// kept in [`ClientOptions::login_memory`]), the token suits it and a ticket of
    /// [`ClientOptions::tls_sessions`] allows it: logged in one round trip after the TCP
    /// connect. Where the server allows 0-RTT, the token asked for is one usable there
    /// (see [`Sasl2Config::zero_rtt_token`](xmpp_handshake_core::initiator::Sasl2Config)).
    /// Early data the server refuses is sent again after the handshake
    /// ([`Client::early_data_accepted`] says which happened).
    pub early_data: bool,
}

/// TLS session tickets kept across connects in one process (RFC 8446 §2.2), shared by
/// clones. rustls resumes a session only under the verifier that checked it, so what is
/// kept is the whole TLS configuration (its verifier and ticket cache) per domain and
/// [`Trust`]: a connect with other anchors gets a configuration, and a full handshake,
/// of its own.
#[derive(Clone, Debug, Default)]
pub struct TlsSessions(Arc<Mutex<Vec<KeptTls>>>);

/// One domain's TLS configuration under one trust.
#[derive(Debug)]
struct KeptTls {
    domain: String,
    trust: Trust,
    config: Arc<rustls::ClientConfig>,
}

/// Domains (with their trust) whose TLS configuration [`TlsSessions`] keeps at most; the
/// oldest goes first.
const KEPT_DOMAINS: usize = 8;

impl TlsSessions {
    /// The configuration kept for `domain` under `trust`, else a new one, kept.
    fn config(&self, domain: &str, trust: &Trust) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(k) = kept
            .iter()
            .find(|k| k.domain == domain && k.trust.same_anchors(trust))
        {
            return Ok(k.config.clone());
        }
        let config = tls_config(domain, trust)?;
        if kept.len() == KEPT_DOMAINS {
            kept.remove(0);
        }
        kept.push(KeptTls {
            domain: domain.to_owned(),
            trust: trust.clone(),
            config: config.clone(),
        });
        Ok(config)
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            trust: Trust::Platform,
            host: None,
            port: None,
            direct_tls: false,
            tls: TlsPolicy::Required,
            sasl: SaslPolicy::default(),
            resource: None,
            timeouts: Timeouts {
                keepalive: Some(Duration::from_secs(60)),
                ..Timeouts::default()
            },
            receive_queue: 1024,
            stream_management: None,
            resume: None,
            user_agent_id: None,
            request_fast_token: true,
            use_fast_token: true,
            login_memory: None,
            tls_sessions: TlsSessions::default(),
            early_data: true,
        }
    }
}

/// Why a client could not connect, or its stream ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The JID is not `user@domain[/resource]` (RFC 7622).
    Jid(JidError),
    /// The options cannot work (a bad CA bundle, say).
    Config(String),
    /// No target could be connected to (the last failure).
    Connect {
        /// `host:port` tried last.
        target: String,
        /// Why.
        error: io::Error,
    },
    /// The negotiation or the stream failed: the core's typed error.
    Xmpp(xmpp_handshake_core::Error),
    /// The stream is closed: nothing more can be sent.
    Closed,
    /// The stream did not take the stanza
    /// ([`BoundStream::send_tracked`](crate::BoundStream::send_tracked)); it was not sent.
    Refused(xmpp_handshake_core::connection::SendError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Jid(e) => write!(f, "not a JID of the form user@domain[/resource]: {e}"),
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Connect { target, error } => write!(
                f,
                "could not connect to {target}: {error}; check the host and port, or the domain's SRV records"
            ),
            Error::Xmpp(e) => write!(f, "{e}"),
            Error::Closed => f.write_str("the stream is closed"),
            Error::Refused(e) => write!(f, "the stanza was not sent: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<xmpp_handshake_core::Error> for Error {
    fn from(e: xmpp_handshake_core::Error) -> Self {
        Error::Xmpp(e)
    }
}

/// A bound client stream. See the module docs.
///
/// What the stream does (send, receive, close) is its [`BoundStream`]'s, reached through
/// `Deref`.
pub struct Client {
    jid: Jid,
    stream: BoundStream,
    memory: Option<LoginMemory>,
    tls_resumed: bool,
    early_data_accepted: bool,
}

impl Client {
    /// Logs in as `jid` (`user@domain`, with `/resource` to ask for one) with `password`.
    pub async fn connect(
        jid: &str,
        password: &str,
        options: ClientOptions,
    ) -> Result<Client, Error> {
        let account = Jid::parse(jid)
            .and_then(Jid::require_local)
            .map_err(Error::Jid)?;
        let domain = account.domain().to_string();
        let tls_config = options.tls_sessions.config(&domain, &options.trust)?;
        let targets = resolve::targets(
            &SystemResolver,
            &domain,
            options.host.as_deref(),
            options.port,
            options.direct_tls,
        )
        .await
        .map_err(|error| Error::Connect {
            target: domain.clone(),
            error,
        })?;
        let mut last = None;
        for target in &targets.addresses {
            let tcp = match TcpStream::connect((target.host.as_str(), target.port)).await {
                Ok(tcp) => tcp,
                Err(error) => {
                    last = Some(Error::Connect {
                        target: format!("{}:{}", target.host, target.port),
                        error,
                    });
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            return login(
                tcp,
                target.security,
                &account,
                password,
                &options,
                tls_config,
            )
            .await;
        }
        Err(last.unwrap_or(Error::Connect {
            target: domain,
            error: io::Error::new(io::ErrorKind::NotFound, "no address to connect to"),
        }))
    }

    /// The full JID the server bound (§7.6.1).
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// What to keep for the next login ([`ClientOptions::login_memory`]): this login's
    /// SCRAM keys and offer, the user agent id, and the FAST token the server issued (or
    /// rotated) on it, else the earlier one unless the server refused it. `None` when the
    /// server was not verified (no SASL mechanism nor FAST proof).
    ///
    /// A reconnect with FAST and inline resumption (XEP-0484, XEP-0388, XEP-0198):
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), xmpp_handshake_tokio::client::Error> {
    /// use xmpp_handshake_core::sm::SmConfig;
    /// use xmpp_handshake_tokio::{Client, ClientOptions};
    ///
    /// let mut options = ClientOptions {
    ///     user_agent_id: Some("0b6c8a52-3f1e-4b8e-9a43-5d2f7e1c9a60".into()),
    ///     stream_management: Some(SmConfig::default()),
    ///     ..ClientOptions::default()
    /// };
    /// let mut client = Client::connect("sensor@example.com", "password", options.clone()).await?;
    /// // ... the link drops ...
    /// client.ended().await;
    /// options.login_memory = client.login_memory().cloned();
    /// options.resume = client.take_sm_state();
    /// // One `<authenticate/>` with the token and `<resume/>`: the unacknowledged
    /// // stanzas go out again, nothing is bound anew.
    /// let client = Client::connect("sensor@example.com", "password", options).await?;
    /// assert!(client.outcome().mechanism.is_none(), "logged in with the token");
    /// # Ok(()) }
    /// ```
    pub fn login_memory(&self) -> Option<&LoginMemory> {
        self.memory.as_ref()
    }

    /// Whether the TLS handshake resumed a session whose ticket an earlier connect kept in
    /// [`ClientOptions::tls_sessions`] (RFC 8446 §2.2: no certificate exchange), rather
    /// than a full handshake.
    pub fn tls_resumed(&self) -> bool {
        self.tls_resumed
    }

    /// Whether the server accepted the stream header and `<authenticate/>` this login sent
    /// as TLS 1.3 early data ([`ClientOptions::early_data`]); `false` when none was sent
    /// or the server refused it (it was then sent again after the handshake).
    pub fn early_data_accepted(&self) -> bool {
        self.early_data_accepted
    }

    /// Closes the stream (§4.4) and waits until the server closed its side (everything
    /// sent before was processed) or the connection's close timeout passed.
    pub async fn close(self) -> Result<(), Error> {
        self.stream.close().await
    }
}

impl Deref for Client {
    type Target = BoundStream;

    fn deref(&self) -> &BoundStream {
        &self.stream
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut BoundStream {
        &mut self.stream
    }
}

impl Stream for Client {
    type Item = Stanza;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Stanza>> {
        Pin::new(&mut self.stream).poll_next(cx)
    }
}

fn tls_config(domain: &str, trust: &Trust) -> Result<Arc<rustls::ClientConfig>, Error> {
    let roots = match trust {
        Trust::Platform => platform_roots().map_err(|e| Error::Config(e.to_string()))?,
        Trust::Anchors(roots) => roots.clone(),
    };
    let reference = ReferenceIdentity::client_to_server(domain)
        .map_err(|e| Error::Config(format!("domain {domain:?}: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(XmppServerVerifier::new(
        reference,
        CertificatePolicy::anchors(),
        Some(Arc::new(roots)),
        Arc::new(Mutex::new(NoPins)),
        &provider,
    ));
    client_config(verifier, provider)
        .map(Arc::new)
        .map_err(|e| Error::Config(format!("TLS configuration: {e}")))
}

async fn login(
    tcp: TcpStream,
    security: Security,
    account: &Jid,
    password: &str,
    options: &ClientOptions,
    tls_config: Arc<rustls::ClientConfig>,
) -> Result<Client, Error> {
    let mut config = InitiatorConfig::client(account.domain());
    config.tls = options.tls;
    config.from = Some(account.bare().to_string());
    let mut sasl = ClientSasl {
        credentials: Credentials::password(account.local().unwrap_or_default(), password),
        ..ClientSasl::password("", "", None)
    };
    sasl.policy = options.sasl.clone();
    sasl.resource = options
        .resource
        .clone()
        .or_else(|| account.resource().map(String::from));
    sasl.sasl2.user_agent_id.clone_from(&options.user_agent_id);
    sasl.sasl2.request_fast_token = options.request_fast_token;
    // XEP-0484 §3.4: where the server allows FAST in TLS 0-RTT, every attempt with the
    // token carries a count above the last; the memory this login returns carries it on.
    let mut earlier = options.login_memory.clone();
    if let Some(memory) = &mut earlier {
        memory.next_attempt_count();
    }
    if let Some(memory) = &earlier {
        sasl = sasl.with_memory(memory);
    }
    sasl.sasl2.zero_rtt_token = options.early_data;
    if !options.use_fast_token {
        sasl.sasl2.fast_token = None;
    }
    let user_agent_id = sasl.sasl2.user_agent_id.clone();
    let early =
        security == Security::DirectTls && options.early_data && sasl.sasl2.early_data_ready();
    config.sasl = Some(sasl);
    config.stream_management = options.stream_management;
    config.resume.clone_from(&options.resume);
    let connection_options = ConnectionOptions {
        timeouts: options.timeouts,
        ..ConnectionOptions::default()
    };
    let mut tls = RustlsClient::new(tls_config.clone());
    // One transport type for both: TCP (STARTTLS follows) or TLS from the first byte.
    let (mut connection, transport) = match security {
        Security::StartTls => (
            Connection::initiate(
                config,
                rand_core::OsRng,
                connection_options,
                TokioClock.now(),
            ),
            MaybeDirect::Tcp(tcp),
        ),
        Security::DirectTls => {
            let mut direct = tls_config.as_ref().clone();
            direct.alpn_protocols = vec![direct_tls::ALPN_CLIENT.to_vec()];
            direct.enable_early_data = early;
            let mut upgrade = RustlsClient::new(Arc::new(direct));
            let tls_failed =
                |e| Error::Xmpp(xmpp_handshake_core::Error::Tls(crate::upgrade::classify(e)));
            config.secure_transport = true;
            let (connection, stream) = if early {
                // The header and `<authenticate/>` go before the handshake is done: the
                // binding data follows once it is (for a password login after a refusal).
                let mut connection = Connection::initiate_with_tls(
                    config,
                    rand_core::OsRng,
                    TlsInfo::default(),
                    connection_options,
                    TokioClock.now(),
                );
                let (stream, _) = upgrade
                    .connect_with_early_data(tcp, account.domain(), &mut connection)
                    .await
                    .map_err(tls_failed)?;
                (connection, stream)
            } else {
                let stream = upgrade
                    .upgrade(FromTokio::new(tcp), account.domain())
                    .await
                    .map_err(tls_failed)?;
                let info = upgrade.tls_info(&stream);
                let connection = Connection::initiate_with_tls(
                    config,
                    rand_core::OsRng,
                    info,
                    connection_options,
                    TokioClock.now(),
                );
                (connection, stream)
            };
            (connection, MaybeDirect::Tls(Box::new(stream.into_inner())))
        }
    };
    let mut io = MaybeTls::Plain(FromTokio::new(transport));
    let outcome =
        driver::negotiate(&mut io, &mut tls, &mut connection, &mut (), &TokioClock).await?;
    let jid = bound_jid(&outcome)?;
    let tls_resumed = resumed(&io);
    let early_data_accepted = client_tls(&io).is_some_and(|c| c.is_early_data_accepted());
    // Only a verified login is kept (a SASL mechanism, or a FAST token whose server proof
    // was checked).
    let memory = (outcome.mechanism.is_some() || outcome.sasl2).then(|| {
        let mut memory = LoginMemory::from_outcome(&outcome, &options.sasl)
            .remembering(earlier.as_ref(), outcome.fast_token_rejected);
        if memory.user_agent_id.is_none() {
            memory.user_agent_id = user_agent_id;
        }
        // Features answered to early data come before `tls-exporter` exists, without
        // what binds to it: the offer of the last full handshake stays the one kept.
        if let (true, Some(offer)) = (early_data_accepted, earlier.as_ref().and_then(|e| e.offer)) {
            memory.offer = Some(offer);
        }
        memory
    });
    let stream = BoundStream::spawn(io, connection, outcome, options.receive_queue)?;
    Ok(Client {
        jid,
        stream,
        memory,
        tls_resumed,
        early_data_accepted,
    })
}

/// The connection's TLS, Direct or after STARTTLS.
fn client_tls<T, S>(
    io: &MaybeTls<FromTokio<MaybeDirect<TlsStream<T>>>, FromTokio<TlsStream<S>>>,
) -> Option<&rustls::ClientConnection> {
    match io {
        MaybeTls::Plain(direct) => match direct.inner() {
            MaybeDirect::Tls(tls) => Some(tls.get_ref().1),
            MaybeDirect::Tcp(_) => None,
        },
        MaybeTls::Tls(tls) => Some(tls.inner().get_ref().1),
        MaybeTls::Closed => None,
    }
}

/// Whether the connection's TLS resumed a session (RFC 8446 §2.2).
fn resumed<T, S>(
    io: &MaybeTls<FromTokio<MaybeDirect<TlsStream<T>>>, FromTokio<TlsStream<S>>>,
) -> bool {
    client_tls(io).and_then(|c| c.handshake_kind()) == Some(HandshakeKind::Resumed)
}

/// The JID the negotiation bound (§7.6.1).
pub(crate) fn bound_jid(outcome: &Outcome) -> Result<Jid, Error> {
    outcome
        .jid
        .as_deref()
        .and_then(|j| Jid::parse(j).ok())
        .ok_or(Error::Xmpp(xmpp_handshake_core::Error::Bind(
            "negotiation ended without a bound resource".into(),
        )))
}
