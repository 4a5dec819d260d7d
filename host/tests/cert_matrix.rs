//! The certificate matrix: a real rustls client and server handshake in memory for each
//! case, the client verifying with `tls::verify::XmppServerVerifier` (webpki chain + core
//! policy + handshake signature), each verdict asserted exactly.
//!
//! PKI generated at test time with rcgen (`common::certs`, shared with the embedded-tls
//! backend's suite): root CA → intermediate CA → leaves (P-256, `CA:FALSE`, serverAuth).

mod common;

use std::sync::{Arc, Mutex};

use common::certs::*;

use rcgen::{date_time_ymd, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Error, RootCertStore, ServerConfig,
    ServerConnection,
};
use xmpp_handshake_host::core::trust::{
    CertError, CertificatePolicy, FirstUse, MemoryPinStore, PinChange, PinStore, PkixOutcome,
    PresentedId, ReferenceIdentity, TrustBasis, Verdict,
};
use xmpp_handshake_host::tls::verify::{
    cert_error, client_cert_verifier, client_config, external_identity, SharedPinStore,
    XmppServerVerifier,
};

#[derive(Debug)]
enum Outcome {
    Connected,
    ClientRefused(Error),
    ServerRefused(Error),
}

fn transfer(from: &mut dyn conn::Connection, to: &mut dyn conn::Connection) -> Option<Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
    }
    to.process_new_packets().err()
}

// Client and server connections share their I/O methods only through `ConnectionCommon`;
// a tiny local trait lets `transfer` take either side.
mod conn {
    pub trait Connection {
        fn wants_write(&self) -> bool;
        fn write_tls(&mut self, w: &mut dyn std::io::Write) -> std::io::Result<usize>;
        fn read_tls(&mut self, r: &mut dyn std::io::Read) -> std::io::Result<usize>;
        fn process_new_packets(&mut self) -> Result<(), ::rustls::Error>;
    }
    macro_rules! conn {
        ($t:ty) => {
            impl Connection for $t {
                fn wants_write(&self) -> bool {
                    (**self).wants_write()
                }
                fn write_tls(&mut self, w: &mut dyn std::io::Write) -> std::io::Result<usize> {
                    (**self).write_tls(w)
                }
                fn read_tls(&mut self, r: &mut dyn std::io::Read) -> std::io::Result<usize> {
                    (**self).read_tls(r)
                }
                fn process_new_packets(&mut self) -> Result<(), ::rustls::Error> {
                    (**self).process_new_packets().map(|_| ())
                }
            }
        };
    }
    conn!(::rustls::ClientConnection);
    conn!(::rustls::ServerConnection);
}

fn run(client_cfg: Arc<ClientConfig>, server_cfg: Arc<ServerConfig>, sni: &str) -> Outcome {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut client = ClientConnection::new(client_cfg, name).unwrap();
    let mut server = ServerConnection::new(server_cfg).unwrap();
    for _ in 0..10 {
        if let Some(e) = transfer(&mut client, &mut server) {
            return Outcome::ServerRefused(e);
        }
        if let Some(e) = transfer(&mut server, &mut client) {
            return Outcome::ClientRefused(e);
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Outcome::Connected;
        }
    }
    panic!("handshake did not finish");
}

struct Client {
    verifier: Arc<XmppServerVerifier>,
    config: Arc<ClientConfig>,
}

fn client(
    domain: &str,
    policy: CertificatePolicy,
    roots: Option<Arc<RootCertStore>>,
    pins: SharedPinStore,
) -> Client {
    let reference = ReferenceIdentity::client_to_server(domain).unwrap();
    let verifier = Arc::new(XmppServerVerifier::new(
        reference,
        policy,
        roots,
        pins,
        &provider(),
    ));
    let config = Arc::new(client_config(verifier.clone(), provider()).unwrap());
    Client { verifier, config }
}

fn no_pins() -> SharedPinStore {
    Arc::new(Mutex::new(MemoryPinStore::new()))
}

/// Handshake `cert` against a client for `domain`; the verdict or the typed error.
fn connect(client: &Client, cert: &ServerCert) -> Result<Verdict, CertError> {
    connect_signed_by(client, cert, &cert.key, false)
}

fn connect_signed_by(
    client: &Client,
    cert: &ServerCert,
    signer: &KeyPair,
    tls12_only: bool,
) -> Result<Verdict, CertError> {
    let sni = client.verifier.reference().domain().to_string();
    match run(
        client.config.clone(),
        server_config(cert, signer, tls12_only),
        &sni,
    ) {
        Outcome::Connected => client.verifier.last_verdict().unwrap(),
        Outcome::ClientRefused(e) => match cert_error(&e) {
            Some(ce) => {
                assert_eq!(client.verifier.last_verdict(), Some(Err(ce.clone())));
                Err(ce.clone())
            }
            None => panic!("client refused with a non-policy error: {e:?}"),
        },
        Outcome::ServerRefused(e) => panic!("server refused: {e:?}"),
    }
}

fn anchors_client(domain: &str, pki: &Pki) -> Client {
    client(
        domain,
        CertificatePolicy::anchors(),
        Some(pki.roots()),
        no_pins(),
    )
}

fn name_mismatch(domain: &str, presented: Vec<PresentedId>) -> CertError {
    CertError::NameMismatch {
        reference: domain.into(),
        presented,
    }
}

// ---------- the matrix ----------

#[test]
fn good_chain_verifies() {
    let pki = Pki::new("Good");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let v = connect(&anchors_client("example.org", &pki), &cert).unwrap();
    assert_eq!(v.basis, TrustBasis::Anchors);
    assert_eq!(v.identity, Some(PresentedId::DnsId("example.org".into())));
    assert_eq!(v.pin, cert.pin());
    assert!(v.validity_checked);
    assert!(v.tls_server_end_point.is_some());
}

#[test]
fn wrong_host_is_name_mismatch() {
    let pki = Pki::new("WrongHost");
    let cert = pki.issue(leaf(vec![dns("other.example")], None));
    assert_eq!(
        connect(&anchors_client("example.org", &pki), &cert).unwrap_err(),
        name_mismatch(
            "example.org",
            vec![PresentedId::DnsId("other.example".into())]
        )
    );
}

#[test]
fn name_only_in_cn_is_name_mismatch_unless_fallback_enabled() {
    let pki = Pki::new("CnOnly");
    let cert = pki.issue(leaf(vec![], Some("example.org")));
    assert_eq!(
        connect(&anchors_client("example.org", &pki), &cert).unwrap_err(),
        name_mismatch(
            "example.org",
            vec![PresentedId::CommonName("example.org".into())]
        )
    );
    let fallback = CertificatePolicy {
        allow_cn_fallback: true,
        ..CertificatePolicy::anchors()
    };
    let c = client("example.org", fallback, Some(pki.roots()), no_pins());
    let v = connect(&c, &cert).unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::CommonName("example.org".into()))
    );
}

#[test]
fn wildcard_too_deep_is_name_mismatch() {
    let pki = Pki::new("WildDeep");
    let cert = pki.issue(leaf(vec![dns("*.example.org")], None));
    assert_eq!(
        connect(&anchors_client("a.b.example.org", &pki), &cert).unwrap_err(),
        name_mismatch(
            "a.b.example.org",
            vec![PresentedId::DnsId("*.example.org".into())]
        )
    );
    // One label is fine.
    connect(&anchors_client("chat.example.org", &pki), &cert).unwrap();
}

#[test]
fn wildcard_for_bare_domain_is_name_mismatch() {
    let pki = Pki::new("WildBare");
    let cert = pki.issue(leaf(vec![dns("*.example.org")], None));
    assert_eq!(
        connect(&anchors_client("example.org", &pki), &cert).unwrap_err(),
        name_mismatch(
            "example.org",
            vec![PresentedId::DnsId("*.example.org".into())]
        )
    );
}

#[test]
fn xmppaddr_only_verifies() {
    let pki = Pki::new("XmppAddr");
    let cert = pki.issue(leaf(vec![xmpp_addr("example.org")], None));
    let v = connect(&anchors_client("example.org", &pki), &cert).unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::XmppAddr("example.org".into()))
    );
    assert_eq!(v.basis, TrustBasis::Anchors);
}

#[test]
fn srv_id_only_verifies() {
    let pki = Pki::new("SrvId");
    let cert = pki.issue(srv_only("_xmpp-client.example.org"));
    let v = connect(&anchors_client("example.org", &pki), &cert).unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::SrvId("_xmpp-client.example.org".into()))
    );
    // The S2S service is not named by a client SRV-ID.
    let s2s = XmppServerVerifier::new(
        ReferenceIdentity::server_to_server("example.org").unwrap(),
        CertificatePolicy::anchors(),
        Some(pki.roots()),
        no_pins(),
        &provider(),
    );
    let s2s = Arc::new(s2s);
    let c = Client {
        config: Arc::new(client_config(s2s.clone(), provider()).unwrap()),
        verifier: s2s,
    };
    assert!(matches!(
        connect(&c, &cert),
        Err(CertError::NameMismatch { .. })
    ));
}

#[test]
fn expired_is_expired() {
    let pki = Pki::new("Expired");
    let mut p = leaf(vec![dns("example.org")], None);
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2021, 1, 1);
    let cert = pki.issue(p);
    match connect(&anchors_client("example.org", &pki), &cert).unwrap_err() {
        CertError::Expired { not_after, .. } => assert_eq!(not_after.0, 1_609_459_200),
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[test]
fn not_yet_valid_is_not_yet_valid() {
    let pki = Pki::new("Future");
    let mut p = leaf(vec![dns("example.org")], None);
    p.not_before = date_time_ymd(2090, 1, 1);
    p.not_after = date_time_ymd(2091, 1, 1);
    let cert = pki.issue(p);
    match connect(&anchors_client("example.org", &pki), &cert).unwrap_err() {
        CertError::NotYetValid { not_before, .. } => assert_eq!(not_before.0, 3_786_912_000),
        other => panic!("expected NotYetValid, got {other:?}"),
    }
}

#[test]
fn unknown_ca_is_unknown_issuer() {
    let trusted = Pki::new("Trusted");
    let stranger = Pki::new("Stranger");
    let cert = stranger.issue(leaf(vec![dns("example.org")], None));
    let pin = cert.pin();
    assert_eq!(
        connect(&anchors_client("example.org", &trusted), &cert).unwrap_err(),
        CertError::UnknownIssuer {
            spki: pin.spki_sha256,
            cert: pin.cert_sha256,
        }
    );
}

#[test]
fn intermediate_missing_is_unknown_issuer() {
    let pki = Pki::new("NoIntermediate");
    let cert = pki.issue(leaf(vec![dns("example.org")], None)).leaf_only();
    let pin = cert.pin();
    assert_eq!(
        connect(&anchors_client("example.org", &pki), &cert).unwrap_err(),
        CertError::UnknownIssuer {
            spki: pin.spki_sha256,
            cert: pin.cert_sha256,
        }
    );
}

#[test]
fn self_signed_refused_by_anchors() {
    let pki = Pki::new("Anchors");
    let cert = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let pin = cert.pin();
    assert_eq!(
        connect(&anchors_client("example.org", &pki), &cert).unwrap_err(),
        CertError::SelfSigned {
            spki: pin.spki_sha256,
            cert: pin.cert_sha256,
        }
    );
}

#[test]
fn self_signed_first_use_then_same_then_changed_key() {
    let pki = Pki::new("Tofu");
    let store = Arc::new(Mutex::new(MemoryPinStore::new()));
    let c = client(
        "example.org",
        CertificatePolicy::trust_on_first_use(FirstUse::Record),
        Some(pki.roots()),
        store.clone(),
    );

    let first = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let v = connect(&c, &first).unwrap();
    assert_eq!(v.basis, TrustBasis::FirstUse);
    assert!(v.pinned_now);
    assert_eq!(store.lock().unwrap().load("example.org"), Some(first.pin()));

    let v = connect(&c, &first).unwrap();
    assert_eq!(v.basis, TrustBasis::StoredPin);
    assert!(!v.pinned_now);

    let changed = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let err = connect(&c, &changed).unwrap_err();
    assert_eq!(
        err,
        CertError::PinChanged(Box::new(PinChange {
            domain: "example.org".into(),
            old_spki: first.pin().spki_sha256,
            new_spki: changed.pin().spki_sha256,
            old_cert: first.pin().cert_sha256,
            new_cert: changed.pin().cert_sha256,
        }))
    );
    let text = err.to_string();
    assert!(
        text.contains(&first.pin().spki_sha256.to_string()),
        "{text}"
    );
    assert!(
        text.contains(&changed.pin().spki_sha256.to_string()),
        "{text}"
    );
    // Fails closed: the store still holds the first key, and so does a retry.
    assert_eq!(store.lock().unwrap().load("example.org"), Some(first.pin()));
    assert!(matches!(
        connect(&c, &changed),
        Err(CertError::PinChanged(_))
    ));

    // The interactive path: accept explicitly, then it verifies.
    c.verifier.accept_changed_certificate(&err).unwrap();
    assert_eq!(connect(&c, &changed).unwrap().basis, TrustBasis::StoredPin);
}

#[test]
fn self_signed_first_use_asks_user() {
    let c = client(
        "example.org",
        CertificatePolicy::trust_on_first_use(FirstUse::AskUser),
        None,
        no_pins(),
    );
    let cert = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let err = connect(&c, &cert).unwrap_err();
    assert_eq!(
        err,
        CertError::NotTrustedFirstUse {
            domain: "example.org".into(),
            spki: cert.pin().spki_sha256,
            cert: cert.pin().cert_sha256,
            self_signed: true,
        }
    );
    c.verifier.approve_first_use(&err).unwrap();
    assert_eq!(connect(&c, &cert).unwrap().basis, TrustBasis::StoredPin);
}

#[test]
fn idn_domain_verifies_by_a_label() {
    let pki = Pki::new("Idn");
    let cert = pki.issue(leaf(vec![dns("xn--bcher-kva.example")], None));
    // The user typed the U-label form; the host builds the core with `idna`.
    let c = anchors_client("bücher.example", &pki);
    assert_eq!(c.verifier.reference().domain(), "xn--bcher-kva.example");
    let v = connect(&c, &cert).unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::DnsId("xn--bcher-kva.example".into()))
    );
    // A different IDN does not match.
    let other = anchors_client("xn--bcher-kva.example.net", &pki);
    assert!(matches!(
        connect(&other, &cert),
        Err(CertError::NameMismatch { .. })
    ));
}

#[test]
fn pinned_certificate_still_requires_proof_of_possession() {
    // An attacker replays the pinned certificate but does not hold its key. The pin
    // replaces the chain; the CertificateVerify (TLS 1.3) / ServerKeyExchange (TLS 1.2)
    // signature is still checked with the pinned key, and fails.
    let cert = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let pinned = CertificatePolicy::pinned(vec![cert.pin().spki_sha256]);
    let c = client("example.org", pinned, None, no_pins());
    assert_eq!(connect(&c, &cert).unwrap().basis, TrustBasis::ConfiguredPin);

    let attacker_key = KeyPair::generate().unwrap();
    for tls12_only in [false, true] {
        let server = server_config(&cert, &attacker_key, tls12_only);
        match run(c.config.clone(), server, "example.org") {
            Outcome::ClientRefused(e) => assert_eq!(
                e,
                Error::InvalidCertificate(CertificateError::BadSignature),
                "tls12_only={tls12_only}"
            ),
            other => panic!("replayed certificate accepted (tls12_only={tls12_only}): {other:?}"),
        }
    }
    // The honest server over TLS 1.2 still verifies.
    assert!(connect_signed_by(&c, &cert, &cert.key, true).is_ok());
}

#[test]
fn sni_does_not_change_the_reference() {
    // Dialing the SRV target with it as SNI still verifies against the configured domain.
    let pki = Pki::new("Sni");
    let cert = pki.issue(leaf(vec![dns("xmpp.hosting.example")], None));
    let c = anchors_client("example.org", &pki);
    match run(
        c.config.clone(),
        server_config(&cert, &cert.key, false),
        "xmpp.hosting.example",
    ) {
        Outcome::ClientRefused(e) => assert!(matches!(
            cert_error(&e),
            Some(CertError::NameMismatch { reference, .. }) if reference == "example.org"
        )),
        other => panic!("expected NameMismatch, got {other:?}"),
    }
}

#[test]
fn no_anchors_configured_fails_closed() {
    let pki = Pki::new("NoRoots");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let c = client("example.org", CertificatePolicy::anchors(), None, no_pins());
    assert_eq!(
        connect(&c, &cert).unwrap_err(),
        CertError::ChainInvalid {
            outcome: PkixOutcome::NotChecked
        }
    );
}

// ---------- receiving entity: client certificate for SASL EXTERNAL ----------

#[test]
fn client_certificate_for_external() {
    let server_pki = Pki::new("Server");
    let client_pki = Pki::new("Clients");
    let server_cert = server_pki.issue(leaf(vec![dns("example.org")], None));
    let mut p = leaf(vec![xmpp_addr("juliet@example.org")], None);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_pki.issue(p);

    let server_key =
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_cert.key.serialize_der()));
    let server_cfg = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(
                client_cert_verifier(client_pki.roots(), provider()).unwrap(),
            )
            .with_single_cert(server_cert.chain.clone(), server_key)
            .unwrap(),
    );
    let verifier = Arc::new(XmppServerVerifier::new(
        ReferenceIdentity::client_to_server("example.org").unwrap(),
        CertificatePolicy::anchors(),
        Some(server_pki.roots()),
        no_pins(),
        &provider(),
    ));
    let client_key =
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_cert.key.serialize_der()));
    let client_cfg = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(client_cert.chain.clone(), client_key)
            .unwrap(),
    );

    let name = ServerName::try_from("example.org").unwrap();
    let mut client = ClientConnection::new(client_cfg, name).unwrap();
    let mut server = ServerConnection::new(server_cfg).unwrap();
    for _ in 0..10 {
        assert!(transfer(&mut client, &mut server).is_none());
        assert!(transfer(&mut server, &mut client).is_none());
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
    }
    assert!(!server.is_handshaking());
    let identity = external_identity(
        &CertificatePolicy::anchors(),
        server.peer_certificates(),
        UnixTime::now(),
    )
    .expect("client presented a certificate")
    .unwrap();
    assert_eq!(identity.sole_xmpp_addr(), Some("juliet@example.org"));
    assert!(identity.authorizes("juliet@example.org/balcony"));
    assert!(!identity.authorizes("romeo@example.org"));
}
