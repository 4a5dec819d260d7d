//! Shared by the host suites: a test PKI, rustls for both roles, a wire tap, and a
//! negotiation of both roles over an in-memory pipe.
#![allow(dead_code)]

pub mod certs;
pub mod pull;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use embedded_io_adapters::tokio_1::FromTokio;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use xmpp_handshake_core::connection::{Connection, ConnectionOptions, Outcome, Step};
use xmpp_handshake_core::driver::{Clock as _, Observer, TlsUpgrade};
use xmpp_handshake_core::initiator::{InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sasl::MemoryStore;
use xmpp_handshake_core::Error;
use xmpp_handshake_host::clock::TokioClock;
use xmpp_handshake_host::upgrade::{Certificates, RustlsClient, RustlsServer};

pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub server: Arc<CertifiedKey>,
}

pub fn pki(domain: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![domain.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = rustls::crypto::ring::default_provider();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = CertifiedKey::from_der(vec![leaf.der().clone()], key, &provider).unwrap();
    Pki {
        ca: ca.as_ref().der().clone(),
        server: Arc::new(server),
    }
}

pub fn client_tls(pki: &Pki) -> RustlsClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    RustlsClient::new(Arc::new(config))
}

pub fn server_tls(pki: &Pki, domain: &str) -> RustlsServer {
    let mut certs = Certificates::default();
    certs.insert(domain, pki.server.clone());
    let template = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
    RustlsServer::new(certs, template)
}

/// Records every byte the initiating entity writes to the wire.
pub struct Tap {
    inner: DuplexStream,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[derive(Default)]
pub struct Steps(pub Vec<Step>);

impl Observer for Steps {
    fn step(&mut self, step: Step) {
        self.0.push(step);
    }
}

/// A negotiated stream of the initiating entity over `T` (TLS stream `S`).
pub type Initiated<T, S> = pull::Negotiated<T, S, InitiatingEntity<rand_core::OsRng>>;
/// A negotiated stream of the receiving entity over `T` (TLS stream `S`).
pub type Received<T, S> = pull::Negotiated<T, S, ReceivingEntity<rand_core::OsRng, MemoryStore>>;

pub type ClientSession = Initiated<FromTokio<Tap>, FromTokio<tokio_rustls::client::TlsStream<Tap>>>;
pub type ServerSession =
    Received<FromTokio<DuplexStream>, FromTokio<tokio_rustls::server::TlsStream<DuplexStream>>>;

/// Both roles, negotiated against each other over an in-memory pipe.
pub struct Pair<C = ClientSession, S = ServerSession> {
    pub client: Result<C, Error>,
    pub server: Result<S, Error>,
    /// Every byte the initiating entity wrote.
    pub wire: Vec<u8>,
    pub steps: Vec<Step>,
}

impl<C, S> Pair<Initiated<FromTokio<Tap>, C>, S> {
    pub fn client_outcome(&self) -> Result<&Outcome, &Error> {
        self.client.as_ref().map(|s| &s.outcome)
    }
}

/// Runs both roles to the end of negotiation (bounded in time).
pub async fn run_pair_with<C, S>(
    config: InitiatorConfig,
    server_config: ReceiverConfig,
    store: MemoryStore,
    mut client_tls: C,
    server_tls: S,
) -> Pair<Initiated<FromTokio<Tap>, C::Stream>, Received<FromTokio<DuplexStream>, S::Stream>>
where
    C: TlsUpgrade<FromTokio<Tap>>,
    S: TlsUpgrade<FromTokio<DuplexStream>>,
{
    run_pair_borrowing(config, server_config, store, &mut client_tls, server_tls).await
}

/// [`run_pair_with`] with the client's TLS upgrade borrowed, so the caller can inspect it
/// afterwards (a verifier's verdict), with any TLS backend on either side.
pub async fn run_pair_borrowing<C, S>(
    config: InitiatorConfig,
    server_config: ReceiverConfig,
    store: MemoryStore,
    client_tls: &mut C,
    mut server_tls: S,
) -> Pair<Initiated<FromTokio<Tap>, C::Stream>, Received<FromTokio<DuplexStream>, S::Stream>>
where
    C: TlsUpgrade<FromTokio<Tap>>,
    S: TlsUpgrade<FromTokio<DuplexStream>>,
{
    let (a, b) = tokio::io::duplex(64 * 1024);
    let written = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: a,
        written: written.clone(),
    };
    let server = async move {
        let connection = Connection::accept(
            server_config,
            rand_core::OsRng,
            store,
            ConnectionOptions::default(),
            TokioClock.now(),
        );
        pull::negotiate(FromTokio::new(b), &mut server_tls, connection, &mut ()).await
    };
    let mut steps = Steps::default();
    let client = async {
        let connection = Connection::initiate(
            config,
            rand_core::OsRng,
            ConnectionOptions::default(),
            TokioClock.now(),
        );
        pull::negotiate(FromTokio::new(tap), client_tls, connection, &mut steps).await
    };
    let (client, server) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(client, server)
    })
    .await
    .expect("negotiation ends in time");
    let wire = written.lock().unwrap().clone();
    Pair {
        client,
        server,
        wire,
        steps: steps.0,
    }
}

/// The STARTTLS-only pair of the core issue: no SASL on either side.
pub async fn run_pair<C, S>(
    mut config: InitiatorConfig,
    client_tls: C,
    server_tls: S,
) -> (Result<bool, Error>, Result<bool, Error>, Vec<u8>, Vec<Step>)
where
    C: TlsUpgrade<FromTokio<Tap>, Stream = FromTokio<tokio_rustls::client::TlsStream<Tap>>>,
    S: TlsUpgrade<
        FromTokio<DuplexStream>,
        Stream = FromTokio<tokio_rustls::server::TlsStream<DuplexStream>>,
    >,
{
    config.from = Some("juliet@example.com".into());
    let mut server_config = ReceiverConfig::client_to_server("example.com");
    server_config.sasl = None;
    let pair = run_pair_with(
        config,
        server_config,
        MemoryStore::new(),
        client_tls,
        server_tls,
    )
    .await;
    (
        pair.client.map(|s| s.outcome.secure),
        pair.server.map(|s| s.outcome.secure),
        pair.wire,
        pair.steps,
    )
}
