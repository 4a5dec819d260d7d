//! The initiating entity against the receiving entity over an in-memory pipe, with real
//! rustls on both sides (RFC 6120 §5), and a tap on the wire to check what crossed it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use embedded_io_adapters::tokio_1::FromTokio;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use xmpp_handshake_core::connection::Step;
use xmpp_handshake_core::driver::{negotiate, Observer, TlsUpgrade};
use xmpp_handshake_core::initiator::{InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::Error;
use xmpp_handshake_host::upgrade::{Certificates, RustlsClient, RustlsServer};

struct Pki {
    ca: CertificateDer<'static>,
    server: Arc<CertifiedKey>,
}

fn pki(domain: &str) -> Pki {
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

fn client_tls(pki: &Pki) -> RustlsClient {
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

fn server_tls(pki: &Pki, domain: &str) -> RustlsServer {
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
struct Tap {
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
struct Steps(Vec<Step>);

impl Observer for Steps {
    fn step(&mut self, step: Step) {
        self.0.push(step);
    }
}

async fn run_pair<C, S>(
    mut config: InitiatorConfig,
    mut client_tls: C,
    mut server_tls: S,
) -> (Result<bool, Error>, Result<bool, Error>, Vec<u8>, Vec<Step>)
where
    C: TlsUpgrade<FromTokio<Tap>>,
    S: TlsUpgrade<FromTokio<DuplexStream>>,
{
    config.from = Some("juliet@example.com".into());
    let (a, b) = tokio::io::duplex(64 * 1024);
    let written = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: a,
        written: written.clone(),
    };
    let server = async move {
        let machine = ReceivingEntity::new(
            ReceiverConfig::client_to_server("example.com"),
            rand_core::OsRng,
        );
        negotiate(FromTokio::new(b), &mut server_tls, machine, &mut ())
            .await
            .map(|n| n.outcome.secure)
    };
    let mut steps = Steps::default();
    let client = async {
        let machine = InitiatingEntity::new(config);
        negotiate(FromTokio::new(tap), &mut client_tls, machine, &mut steps)
            .await
            .map(|n| n.outcome.secure)
    };
    let (c, s) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(client, server)
    })
    .await
    .expect("negotiation ends in time");
    let wire = written.lock().unwrap().clone();
    (c, s, wire, steps.0)
}

#[tokio::test]
async fn initiator_and_receiver_negotiate_starttls_over_rustls() {
    let pki = pki("example.com");
    for pipeline in [false, true] {
        let mut config = InitiatorConfig::client("example.com");
        config.pipeline_starttls = pipeline;
        let (c, s, wire, steps) =
            run_pair(config, client_tls(&pki), server_tls(&pki, "example.com")).await;
        assert_eq!(c, Ok(true));
        assert_eq!(s, Ok(true));
        assert!(steps.contains(&Step::TlsEstablished));
        assert_eq!(
            steps.iter().filter(|s| **s == Step::HeaderSent).count(),
            2,
            "one header before TLS, one after"
        );
        // No plaintext survives the upgrade: after the initiating entity's <starttls/>
        // every byte it wrote is a TLS record, and the JID sent in `from` after TLS never
        // crossed the wire in clear.
        let wire_text = String::from_utf8_lossy(&wire);
        let starttls_end = wire_text
            .find("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .expect("starttls on the wire")
            + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".len();
        assert_eq!(wire[starttls_end], 0x16, "a TLS handshake record follows");
        assert!(!wire_text.contains("juliet"));
        assert!(!wire_text[starttls_end..].contains("stream:stream"));
    }
}

#[tokio::test]
async fn tls_failure_closes_without_closing_tag() {
    // The client trusts another CA: the handshake fails, and nothing XML is sent after.
    let pki_server = pki("example.com");
    let pki_other = pki("example.com");
    let (c, s, wire, _) = run_pair(
        InitiatorConfig::client("example.com"),
        client_tls(&pki_other),
        server_tls(&pki_server, "example.com"),
    )
    .await;
    assert!(matches!(c, Err(Error::TlsHandshake(_))), "{c:?}");
    assert!(s.is_err());
    let wire_text = String::from_utf8_lossy(&wire);
    assert!(!wire_text.contains("</stream:stream>"));
}

#[tokio::test]
async fn certificate_checked_against_configured_domain() {
    // The server holds a certificate for another name only: the client, which checks the
    // domain the user configured, refuses it.
    let pki = pki("other.example");
    let (c, _, _, _) = run_pair(
        InitiatorConfig::client("example.com"),
        client_tls(&pki),
        server_tls(&pki, "example.com"),
    )
    .await;
    assert!(matches!(c, Err(Error::TlsHandshake(_))), "{c:?}");
}
