//! The initiating entity as `demo` and `connect` (and the interop suites) run it: TCP with
//! Nagle off, STARTTLS or Direct TLS (XEP-0368) with rustls and the XMPP certificate
//! policy, SASL, binding; then the bound stream through the library's
//! [`BoundStream`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use embedded_io_adapters::tokio_1::FromTokio;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tokio::net::TcpStream;
use xmpp_handshake_core::connection::{Connection, ConnectionOptions, Timeouts, TlsInfo};
use xmpp_handshake_core::driver::{self, Clock as _, MaybeTls, Observer as _, TlsUpgrade as _};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatingEntity, InitiatorConfig, Sasl2Config};
use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_core::sasl::{Credentials, Mechanism, SaslPolicy};
use xmpp_handshake_core::sm::{SmConfig, SmState};
use xmpp_handshake_core::starttls::TlsPolicy;
use xmpp_handshake_core::trust::{
    CertError, CertificatePolicy, FirstUse, NoPins, PinStore, ReferenceIdentity, Verdict,
};
use xmpp_handshake_core::{Error, Jid};
use xmpp_handshake_tokio::BoundStream;

use crate::clock::TokioClock;
use crate::direct_tls::{self, Stream};
use crate::exit::{self, Failure};
use crate::tls::verify::{client_config, SharedPinStore, XmppServerVerifier};
use crate::tls_info::{Recording, TlsCell};
use crate::transcript::Transcript;
use crate::upgrade::RustlsClient;

/// TLS from the first byte (Direct TLS).
pub type DirectTls = tokio_rustls::client::TlsStream<TcpStream>;
/// The transport a negotiation starts on: TCP (STARTTLS follows) or Direct TLS.
pub type Transport = FromTokio<Stream<DirectTls>>;
/// A negotiated client stream.
pub type ClientSession = BoundStream;

/// Received stanzas held for the caller at most (past it the stream ends with
/// `<resource-constraint/>`, nothing is dropped).
const RECEIVE_QUEUE: usize = 1024;

/// The connection options of the CLI's clients: the callers bound the whole login with
/// their own `--timeout` (which includes the TCP connect), so the core's negotiation
/// deadline is not set here. With `idle`, a silent server is probed after it (a ping, or
/// `<r/>` with stream management) and given up after as long again; we send a whitespace
/// keep-alive after as long without sending.
fn options(idle: Option<Duration>) -> ConnectionOptions {
    ConnectionOptions {
        timeouts: Timeouts {
            negotiation: None,
            idle,
            ping_when_idle: idle.is_some(),
            keepalive: idle,
            ..Timeouts::default()
        },
        ..ConnectionOptions::default()
    }
}

/// Who logs in, and how.
#[derive(Clone)]
pub struct Login {
    /// `user@domain` or `user@domain/resource`.
    pub jid: Jid,
    /// The password.
    pub password: String,
    /// STARTTLS policy.
    pub tls: TlsPolicy,
    /// SASL policy (mechanism floor, channel binding).
    pub sasl: SaslPolicy,
    /// Send `<auth/>` with this mechanism right after the TLS handshake, before the
    /// features (one round trip less); it must be what this server offered after TLS before.
    pub pipeline_mechanism: Option<Mechanism>,
    /// What an earlier verified login to this account kept (the login cache): its SCRAM
    /// keys (no PBKDF2 when the server's salt and iteration count still match; RFC 5802
    /// §5.1 allows the client to keep them) and, without [`Login::pipeline_mechanism`],
    /// the post-TLS offer the pipelined mechanism is chosen from with [`Login::sasl`], as
    /// from a live offer ([`ClientSasl::with_memory`]).
    pub memory: Option<LoginMemory>,
    /// Stream management (XEP-0198) after binding, when the server offers it.
    pub stream_management: Option<SmConfig>,
    /// A session to resume instead of binding (XEP-0198 §5): what the last connection's
    /// stream left ([`BoundStream::take_sm_state`]).
    pub resume: Option<SmState>,
    /// How long the server may stay silent on the bound stream before it is probed (a
    /// ping, or `<r/>` with stream management; silent as long again, the stream ends),
    /// and how long we stay silent before a whitespace keep-alive; `None`: no limit.
    pub idle: Option<Duration>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("jid", &self.jid.to_string())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Login {
    /// Parses `jid` (it must have a localpart).
    pub fn new(jid: &str, password: &str) -> Result<Self, Failure> {
        Ok(Login {
            jid: account_jid(jid)?,
            password: password.to_string(),
            tls: TlsPolicy::Required,
            sasl: SaslPolicy::default(),
            pipeline_mechanism: None,
            memory: None,
            stream_management: None,
            resume: None,
            idle: None,
        })
    }

    /// The JID's domain: stream `to`, SNI and the certificate's reference identity.
    pub fn domain(&self) -> &str {
        self.jid.domain()
    }

    fn config(&self) -> InitiatorConfig {
        let mut config = InitiatorConfig::client(self.domain());
        config.tls = self.tls;
        config.from = Some(self.jid.bare().into_string());
        let sasl = ClientSasl {
            credentials: Credentials::password(
                self.jid.local().unwrap_or_default(),
                &self.password,
            ),
            policy: self.sasl.clone(),
            resource: self.jid.resource().map(String::from),
            pipeline_mechanism: self.pipeline_mechanism,
            pipeline_offer: None,
            pipeline_bind: true,
            sasl2: Box::new(Sasl2Config {
                software: Some(String::from("xmpp-handshake")),
                // A reconnect of `connect` within the process may then log in in 0-RTT.
                zero_rtt_token: true,
                ..Sasl2Config::default()
            }),
        };
        config.sasl = Some(match &self.memory {
            Some(memory) => sasl.with_memory(memory),
            None => sasl,
        });
        config.stream_management = self.stream_management;
        config.resume.clone_from(&self.resume);
        config
    }
}

/// The account JID a login is for: `user@domain[/resource]` (RFC 7622), or a usage error
/// saying what is wrong with it.
pub fn account_jid(jid: &str) -> Result<Jid, Failure> {
    Jid::parse(jid).and_then(Jid::require_local).map_err(|e| {
        Failure::usage(format!(
            "{jid:?} is not a JID of the form user@domain[/resource]: {e}"
        ))
    })
}

/// How the server's certificate is checked: the project's verifier (webpki chain, XMPP
/// identity, pins).
#[derive(Clone)]
pub struct ClientTrust {
    verifier: Arc<XmppServerVerifier>,
    config: Arc<rustls::ClientConfig>,
}

impl ClientTrust {
    /// PKIX to `roots` (a `--ca` bundle, or the platform's) for `domain`.
    pub fn anchors(domain: &str, roots: RootCertStore) -> Result<Self, Failure> {
        Self::build(
            domain,
            CertificatePolicy::anchors(),
            Some(roots),
            Arc::new(Mutex::new(NoPins)),
        )
    }

    /// Trust on first use with `pins`; a certificate that chains to `roots` is pinned too.
    pub fn first_use(
        domain: &str,
        roots: Option<RootCertStore>,
        pins: impl PinStore + Send + 'static,
    ) -> Result<Self, Failure> {
        Self::build(
            domain,
            CertificatePolicy::trust_on_first_use(FirstUse::Record),
            roots,
            Arc::new(Mutex::new(pins)),
        )
    }

    /// PKIX to `roots` for a server-to-server peer `domain` (`_xmpp-server` SRV-ID).
    pub fn anchors_s2s(domain: &str, roots: RootCertStore) -> Result<Self, Failure> {
        let reference = ReferenceIdentity::server_to_server(domain)
            .map_err(|e| Failure::usage(format!("domain {domain:?}: {e}")))?;
        Self::with_reference(
            reference,
            CertificatePolicy::anchors(),
            Some(roots),
            Arc::new(Mutex::new(NoPins)),
        )
    }

    fn build(
        domain: &str,
        policy: CertificatePolicy,
        roots: Option<RootCertStore>,
        pins: SharedPinStore,
    ) -> Result<Self, Failure> {
        let reference = ReferenceIdentity::client_to_server(domain)
            .map_err(|e| Failure::usage(format!("domain {domain:?}: {e}")))?;
        Self::with_reference(reference, policy, roots, pins)
    }

    fn with_reference(
        reference: ReferenceIdentity,
        policy: CertificatePolicy,
        roots: Option<RootCertStore>,
        pins: SharedPinStore,
    ) -> Result<Self, Failure> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(XmppServerVerifier::new(
            reference,
            policy,
            roots.map(Arc::new),
            pins,
            &provider,
        ));
        let config = client_config(verifier.clone(), provider)
            .map_err(|e| Failure::protocol(format!("TLS configuration: {e}")))?;
        Ok(ClientTrust {
            verifier,
            config: Arc::new(config),
        })
    }

    /// The same trust, presenting `identity` as the TLS client certificate: an originating
    /// server's own certificate, which the receiving server checks for SASL EXTERNAL (RFC
    /// 6120 §6.4, §13.7.1.4; XEP-0178).
    pub fn presenting(&self, identity: Arc<CertifiedKey>) -> Result<Self, Failure> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::protocol(format!("TLS configuration: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_client_cert_resolver(Arc::new(Present(identity)));
        Ok(ClientTrust {
            verifier: self.verifier.clone(),
            config: Arc::new(config),
        })
    }

    /// The verifier's verdict on the last certificate it checked (with the reason of a
    /// refusal), `None` before any.
    pub fn last_verdict(&self) -> Option<Result<Verdict, CertError>> {
        self.verifier.last_verdict()
    }

    /// The same verifier, TLS 1.2 only (to see what a server offers there, e.g. `-PLUS`
    /// with `tls-unique`).
    pub fn tls12_only(&self) -> Result<Self, Failure> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .map_err(|e| Failure::protocol(format!("TLS configuration: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_no_client_auth();
        Ok(ClientTrust {
            verifier: self.verifier.clone(),
            config: Arc::new(config),
        })
    }
}

/// Presents one certificate whatever the server asks for.
#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl ResolvesClientCert for Present {
    fn resolve(
        &self,
        _acceptable_issuers: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A bound session and what it took.
pub struct LoggedIn {
    /// The stream, ready for stanzas.
    pub session: ClientSession,
    /// The full JID the server bound.
    pub jid: String,
    /// From TCP connect to bound resource.
    pub elapsed: Duration,
}

/// Connects to `(host, port)` with Nagle off.
pub async fn connect_tcp(host: &str, port: u16) -> Result<Transport, Failure> {
    crate::transport::connect((host, port))
        .await
        .map(|tcp| FromTokio::new(Stream::Tcp(tcp.into_inner())))
        .map_err(|e| Failure::protocol(format!("connecting to {host}:{port}: {e}")))
}

/// Negotiates STARTTLS, SASL and binding over `transport` (already connected).
pub async fn login(
    transport: Transport,
    login: &Login,
    trust: &ClientTrust,
    tls_cell: TlsCell,
    transcript: &mut Transcript,
) -> Result<LoggedIn, Failure> {
    login_typed(transport, login, trust, tls_cell, transcript)
        .await
        .map_err(|e| exit::from_core(&e))
}

/// [`login`] with the core's typed error (for tests that assert which rule fired).
pub async fn login_typed(
    transport: Transport,
    login: &Login,
    trust: &ClientTrust,
    tls_cell: TlsCell,
    transcript: &mut Transcript,
) -> Result<LoggedIn, Error> {
    let started = Instant::now();
    let mut tls = Recording {
        inner: RustlsClient::new(trust.config.clone()),
        cell: tls_cell,
        own_certificate: None,
    };
    let connection = Connection::initiate(
        login.config(),
        rand_core::OsRng,
        options(login.idle),
        TokioClock.now(),
    );
    bound(transport, &mut tls, connection, transcript, started).await
}

/// Direct TLS (XEP-0368) over `transport` (a fresh TCP connection): the TLS handshake at
/// once (SNI the JID's domain, ALPN `xmpp-client`, the same certificate policy as after
/// STARTTLS), then SASL and binding on the protected stream, `<auth/>` right behind the
/// first header when [`Login::pipeline_mechanism`] or the offer kept in [`Login::memory`] names one.
pub async fn login_direct_tls(
    transport: Transport,
    login: &Login,
    trust: &ClientTrust,
    tls_cell: TlsCell,
    transcript: &mut Transcript,
) -> Result<LoggedIn, Failure> {
    login_direct_tls_typed(transport, login, trust, tls_cell, transcript)
        .await
        .map_err(|e| exit::from_core(&e))
}

/// [`login_direct_tls`] with the core's typed error. A failed handshake is [`Error::Tls`]
/// (the certificate policy's refusal inside it) with nothing sent but the ClientHello.
pub async fn login_direct_tls_typed(
    transport: Transport,
    login: &Login,
    trust: &ClientTrust,
    tls_cell: TlsCell,
    transcript: &mut Transcript,
) -> Result<LoggedIn, Error> {
    let started = Instant::now();
    let session = negotiate_direct_tls_with(
        transport,
        login.config(),
        trust,
        direct_tls::ALPN_CLIENT,
        tls_cell,
        transcript,
        options(login.idle),
    )
    .await?;
    logged_in(session, started)
}

/// Direct TLS (XEP-0368) over `transport` (a fresh TCP connection) with ALPN `alpn`
/// (`xmpp-client`, or `xmpp-server` for S2S): the TLS handshake at once (SNI the
/// configured domain, the same certificate policy as after STARTTLS), then the negotiation
/// of `config` on the protected stream. A failed handshake is [`Error::Tls`] (the
/// certificate policy's refusal inside it) with nothing sent but the ClientHello.
pub async fn negotiate_direct_tls(
    transport: Transport,
    config: InitiatorConfig,
    trust: &ClientTrust,
    alpn: &[u8],
    tls_cell: TlsCell,
    transcript: &mut Transcript,
) -> Result<ClientSession, Error> {
    negotiate_direct_tls_with(
        transport,
        config,
        trust,
        alpn,
        tls_cell,
        transcript,
        options(None),
    )
    .await
}

async fn negotiate_direct_tls_with(
    transport: Transport,
    mut config: InitiatorConfig,
    trust: &ClientTrust,
    alpn: &[u8],
    tls_cell: TlsCell,
    transcript: &mut Transcript,
    options: ConnectionOptions,
) -> Result<ClientSession, Error> {
    let Stream::Tcp(tcp) = transport.into_inner() else {
        return Err(Error::StartTlsAfterTls);
    };
    let mut direct_config = (*trust.config).clone();
    direct_config.alpn_protocols = vec![alpn.to_vec()];
    // XEP-0484 §3.4: the header and a FAST `<authenticate/>` in TLS 1.3 early data, where
    // the server allowed it and the ticket of an earlier connection of this process
    // (`trust`'s configuration keeps them) allows it.
    let early = config
        .sasl
        .as_ref()
        .is_some_and(|s| s.sasl2.early_data_ready());
    direct_config.enable_early_data = early;
    let mut direct = Recording {
        inner: RustlsClient::new(Arc::new(direct_config)),
        cell: tls_cell.clone(),
        own_certificate: None,
    };
    config.secure_transport = true;
    let domain = config.domain.clone();
    let tls_failed = |e| Error::Tls(crate::upgrade::classify(e));
    let (connection, stream) = if early {
        let mut connection = Connection::initiate_with_tls(
            config,
            rand_core::OsRng,
            TlsInfo::default(),
            options,
            TokioClock.now(),
        );
        let (stream, first) = direct
            .inner
            .connect_with_early_data(tcp, &domain, &mut connection)
            .await
            .map_err(tls_failed)?;
        direct.record(&stream);
        transcript.tls_established();
        // Taken as early data, it was answered in the handshake's own flight.
        if stream.inner().get_ref().1.is_early_data_accepted() {
            transcript.early_data_sent(first.as_bytes());
        } else {
            transcript.sent(first.as_bytes());
        }
        (connection, stream)
    } else {
        let stream = direct
            .upgrade(FromTokio::new(tcp), &config.domain)
            .await
            .map_err(tls_failed)?;
        let info = direct.tls_info(&stream);
        transcript.tls_established();
        let connection = Connection::initiate_with_tls(
            config,
            rand_core::OsRng,
            info,
            options,
            TokioClock.now(),
        );
        (connection, stream)
    };
    let transport = FromTokio::new(Stream::Tls(Box::new(stream.into_inner())));
    // The machine never asks for STARTTLS on a secure transport; this only fills the type.
    let mut tls = Recording {
        inner: RustlsClient::new(trust.config.clone()),
        cell: tls_cell,
        own_certificate: None,
    };
    negotiate(transport, &mut tls, connection, transcript).await
}

async fn bound(
    transport: Transport,
    tls: &mut Recording<RustlsClient>,
    connection: Connection<InitiatingEntity<rand_core::OsRng>>,
    transcript: &mut Transcript,
    started: Instant,
) -> Result<LoggedIn, Error> {
    let session = negotiate(transport, tls, connection, transcript).await?;
    logged_in(session, started)
}

/// The bound session, with the JID the server bound.
fn logged_in(session: ClientSession, started: Instant) -> Result<LoggedIn, Error> {
    let jid = session
        .outcome()
        .jid
        .clone()
        .ok_or_else(|| Error::Bind("negotiation ended without a bound resource".into()))?;
    Ok(LoggedIn {
        session,
        jid,
        elapsed: started.elapsed(),
    })
}

/// Negotiates `connection` over `transport`, then runs its bound stream.
async fn negotiate(
    transport: Transport,
    tls: &mut Recording<RustlsClient>,
    mut connection: Connection<InitiatingEntity<rand_core::OsRng>>,
    transcript: &mut Transcript,
) -> Result<ClientSession, Error> {
    let mut io = MaybeTls::Plain(transport);
    let outcome = driver::negotiate(&mut io, tls, &mut connection, transcript, &TokioClock).await?;
    BoundStream::spawn(io, connection, outcome, RECEIVE_QUEUE).map_err(|_| Error::ConnectionClosed)
}

/// Runs `config` (e.g. an S2S initiating entity without SASL) to the end of its
/// negotiation and returns the session (the caller reads `session.outcome()`).
pub async fn negotiate_with(
    transport: Transport,
    config: InitiatorConfig,
    trust: &ClientTrust,
    tls_cell: TlsCell,
    transcript: &mut Transcript,
) -> Result<ClientSession, Error> {
    let mut tls = Recording {
        inner: RustlsClient::new(trust.config.clone()),
        cell: tls_cell,
        own_certificate: None,
    };
    let connection =
        Connection::initiate(config, rand_core::OsRng, options(None), TokioClock.now());
    negotiate(transport, &mut tls, connection, transcript).await
}

/// Sends `stanza`, recording it.
pub async fn send(
    session: &mut ClientSession,
    transcript: &mut Transcript,
    stanza: &str,
) -> Result<(), Failure> {
    transcript.stanza_sent(stanza);
    session
        .send(stanza)
        .await
        .map_err(|e| exit::from_library(&e))
}

/// The next element, recording it; `None` when the server closed the stream.
pub async fn receive(
    session: &mut ClientSession,
    transcript: &mut Transcript,
) -> Result<Option<String>, Failure> {
    match session.next_stanza().await {
        Ok(Some(stanza)) => {
            transcript.stanza_received(stanza.raw());
            Ok(Some(stanza.raw().to_string()))
        }
        Ok(None) => {
            transcript.stanza_received("</stream:stream>");
            Ok(None)
        }
        Err(e) => Err(exit::from_core(&e)),
    }
}
