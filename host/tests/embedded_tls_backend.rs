//! The embedded-tls backend (crate `xmpp-handshake-embedded-tls`, firmware's and wasm's
//! TLS) on the host, against rustls servers over an in-memory pipe:
//!
//! * our initiating entity with `EmbeddedTls` against our receiving entity with
//!   `RustlsServer`: STARTTLS, SCRAM-SHA-256-PLUS with `tls-server-end-point` (embedded-tls
//!   has no exporter), bind, a stanza each way, close;
//! * the certificate matrix of cert_matrix.rs (same PKI builders, same expected
//!   `CertError` verdicts) through `ServerVerifier`;
//! * a pinned certificate replayed with another key fails the CertificateVerify check;
//! * what embedded-tls does not implement ends in a typed error, without a panic or a
//!   hang: a server without P-256 (no HelloRetryRequest is possible), a HelloRetryRequest
//!   from a deliberately broken peer, a KeyUpdate after the handshake.
//!
//! rustls with ring offers what embedded-tls needs: TLS 1.3, the P-256 group, AES-GCM.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::certs::{ca_params, dns, leaf, server_config, srv_only, xmpp_addr, Pki, ServerCert};
use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::Read as _;
use rcgen::{date_time_ymd, CertifiedIssuer, KeyPair};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xmpp_handshake_core::driver::MaybeTls;
use xmpp_handshake_core::driver::TlsUpgrade;
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::receiver::ReceiverConfig;
use xmpp_handshake_core::sasl::{Credentials, Mechanism, MemoryStore, SaslPolicy, ServerOptions};
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::trust::{
    accept_changed_certificate, approve_first_use, CertError, CertificatePolicy, FirstUse,
    MemoryPinStore, NoPins, PinChange, PinStore, PkixOutcome, PresentedId, ReferenceIdentity,
    TrustBasis, UnixTime, Verdict,
};
use xmpp_handshake_embedded_tls::signature::{
    AsyncCheck, Deferred, OwnedCheck, SignatureError, SignatureVerifier as _, Software,
};
use xmpp_handshake_embedded_tls::{
    Aes256GcmSha384, EmbeddedTls, EmbeddedTlsError, MaxFragmentLength, ServerVerifier, TlsError,
};

const PASSWORD: &str = "r0m30myr0m30";
const READ_BUFFER: usize = 16640;
const WRITE_BUFFER: usize = 4096;

fn now() -> UnixTime {
    UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

// ---------- (a) STARTTLS + SCRAM-PLUS + bind ----------

#[tokio::test]
async fn starttls_scram_plus_with_server_end_point_and_bind() {
    let pki = common::pki("example.com");
    let anchors: Vec<&[u8]> = vec![pki.ca.as_ref()];
    let mut rx = vec![0u8; READ_BUFFER];
    let mut tx = vec![0u8; WRITE_BUFFER];
    let verifier = ServerVerifier::new(
        ReferenceIdentity::client_to_server("example.com").unwrap(),
        CertificatePolicy::anchors(),
        &anchors,
        NoPins,
    )
    .with_time(now());
    let mut client_tls = EmbeddedTls::new(&mut rx, &mut tx, rand_core::OsRng, verifier);

    let mut config = InitiatorConfig::client("example.com");
    config.from = Some("juliet@example.com".into());
    config.sasl = Some(ClientSasl {
        credentials: Credentials::password("juliet", PASSWORD),
        policy: SaslPolicy::default(),
        resource: Some("balcony".into()),
        pipeline_mechanism: None,
        pipeline_offer: None,
        pipeline_bind: true,
        sasl2: Default::default(),
    });
    let mut server_config = ReceiverConfig::client_to_server("example.com");
    server_config.sasl = Some(ServerOptions::default());
    let mut store = MemoryStore::new();
    store.add_password("juliet", PASSWORD, 4096, &mut rand_core::OsRng);

    let pair = common::run_pair_borrowing(
        config,
        server_config,
        store,
        &mut client_tls,
        common::server_tls(&pki, "example.com"),
    )
    .await;
    let wire = String::from_utf8_lossy(&pair.wire).into_owned();
    assert!(!wire.contains(PASSWORD) && !wire.contains("<auth"));
    let mut c = pair.client.expect("client negotiates over embedded-tls");
    let mut s = pair.server.expect("server negotiates");

    // -PLUS could only bind with tls-server-end-point: embedded-tls has no exporter.
    assert_eq!(c.outcome.mechanism, Some(Mechanism::ScramSha256Plus));
    assert_eq!(s.outcome.mechanism, Some(Mechanism::ScramSha256Plus));
    assert_eq!(c.outcome.jid.as_deref(), Some("juliet@example.com/balcony"));
    assert_eq!(c.outcome.jid, s.outcome.jid);
    let verifier = client_tls.verifier();
    assert!(verifier.handshake_signature_verified());
    let verdict = verifier.verdict().unwrap().as_ref().unwrap();
    assert_eq!(verdict.basis, TrustBasis::Anchors);
    // rcgen signs with ecdsa-with-SHA256: the end point is SHA-256 of the leaf.
    let leaf_der = pki.server.cert[0].as_ref();
    assert_eq!(
        verifier.tls_server_end_point(),
        Some(Sha256::digest(leaf_der).to_vec())
    );

    let exchange = async {
        c.send(&stanza::message(
            "romeo@example.net",
            "Art thou not Romeo?",
            Some("m1"),
        ))
        .await
        .unwrap();
        let got = s.next_element().await.unwrap().unwrap();
        assert!(got.contains("Art thou not Romeo?"));
        s.send(&stanza::message(
            "juliet@example.com/balcony",
            "Neither, fair saint",
            None,
        ))
        .await
        .unwrap();
        let back = c.next_element().await.unwrap().unwrap();
        assert!(back.contains("Neither, fair saint"));
        let server_side = async {
            assert_eq!(s.next_element().await.unwrap(), None, "client closed");
            // After the XMPP stream, the server ends TLS with close_notify.
            match s.close().await.unwrap() {
                MaybeTls::Tls(mut tls) => tls.inner_mut().shutdown().await.unwrap(),
                _ => panic!("server transport not TLS"),
            }
        };
        let (client_closed, ()) = tokio::join!(c.close(), server_side);
        let mut client_transport = client_closed.unwrap();
        // The server's close_notify reads as a clean end of stream, not an error.
        let mut buf = [0u8; 16];
        assert_eq!(client_transport.read(&mut buf).await, Ok(0));
        match client_transport {
            MaybeTls::Tls(stream) => assert!(stream.peer_closed()),
            _ => panic!("client transport not TLS"),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("exchange ends in time");
}

// ---------- the handshake harness ----------

/// What the client is configured with.
struct Client<'p> {
    reference: ReferenceIdentity,
    policy: CertificatePolicy,
    anchors: Vec<Vec<u8>>,
    pins: &'p mut MemoryPinStore,
    now: Option<UnixTime>,
    sni: Option<String>,
    aes256: bool,
    mfl: Option<MaxFragmentLength>,
}

impl<'p> Client<'p> {
    fn new(domain: &str, policy: CertificatePolicy, pins: &'p mut MemoryPinStore) -> Self {
        Client {
            reference: ReferenceIdentity::client_to_server(domain).unwrap(),
            policy,
            anchors: Vec::new(),
            pins,
            now: Some(now()),
            sni: None,
            aes256: false,
            mfl: None,
        }
    }

    fn anchors(mut self, pki: &Pki) -> Self {
        self.anchors = vec![pki.root_der()];
        self
    }

    /// Handshakes against a rustls server presenting `cert`, signing with its own key.
    async fn connect(&mut self, cert: &ServerCert) -> Result<Verdict, EmbeddedTlsError> {
        self.connect_signed_by(cert, &cert.key).await
    }

    /// The same, the server signing the handshake with `signer`.
    async fn connect_signed_by(
        &mut self,
        cert: &ServerCert,
        signer: &KeyPair,
    ) -> Result<Verdict, EmbeddedTlsError> {
        let server_cfg = server_config(cert, signer, false);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg);
            if let Ok(mut tls) = acceptor.accept(b).await {
                // Hold the connection until the client is done with it.
                let mut byte = [0u8; 1];
                let _ = tls.read(&mut byte).await;
            }
        };
        let anchors: Vec<&[u8]> = self.anchors.iter().map(|a| a.as_slice()).collect();
        let mut rx = vec![0u8; READ_BUFFER];
        let mut tx = vec![0u8; WRITE_BUFFER];
        let mut verifier = ServerVerifier::new(
            self.reference.clone(),
            self.policy.clone(),
            &anchors,
            &mut *self.pins,
        );
        verifier.set_time(self.now);
        let sni = self
            .sni
            .clone()
            .unwrap_or_else(|| self.reference.domain().to_string());
        let aes256 = self.aes256;
        let mfl = self.mfl;
        let client = async move {
            let mut tls = EmbeddedTls::new(&mut rx, &mut tx, rand_core::OsRng, verifier);
            if let Some(mfl) = mfl {
                tls = tls.with_max_fragment_length(mfl);
            }
            let transport = FromTokio::new(a);
            if aes256 {
                let mut tls = tls.with_cipher_suite::<Aes256GcmSha384>();
                let result = tls.upgrade(transport, &sni).await.map(drop);
                result.map(|()| tls.verifier().verdict().unwrap().clone().unwrap())
            } else {
                let result = tls.upgrade(transport, &sni).await.map(drop);
                result.map(|()| tls.verifier().verdict().unwrap().clone().unwrap())
            }
        };
        let (verdict, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(client, server)
        })
        .await
        .expect("handshake ends in time");
        verdict
    }
}

fn cert_error(result: Result<Verdict, EmbeddedTlsError>) -> CertError {
    match result {
        Err(EmbeddedTlsError::Certificate(e)) => e,
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

fn name_mismatch(domain: &str, presented: Vec<PresentedId>) -> CertError {
    CertError::NameMismatch {
        reference: domain.into(),
        presented,
    }
}

// ---------- (b) the certificate matrix through embedded-tls ----------

#[tokio::test]
async fn good_chain_verifies() {
    let pki = Pki::new("Good");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    let v = c.connect(&cert).await.unwrap();
    assert_eq!(v.basis, TrustBasis::Anchors);
    assert_eq!(v.identity, Some(PresentedId::DnsId("example.org".into())));
    assert_eq!(v.pin, cert.pin());
    assert!(v.validity_checked);
    assert_eq!(
        v.tls_server_end_point,
        Some(Sha256::digest(&cert.chain[0]).to_vec())
    );
}

#[tokio::test]
async fn good_chain_verifies_with_aes256_and_max_fragment_length() {
    // The other suite, and the max_fragment_length option (rustls ignores the extension;
    // the handshake must still succeed).
    let pki = Pki::new("Suite");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    c.aes256 = true;
    c.mfl = Some(MaxFragmentLength::Bits12);
    assert_eq!(c.connect(&cert).await.unwrap().basis, TrustBasis::Anchors);
}

#[tokio::test]
async fn wrong_host_is_name_mismatch() {
    let pki = Pki::new("WrongHost");
    let cert = pki.issue(leaf(vec![dns("other.example")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        name_mismatch(
            "example.org",
            vec![PresentedId::DnsId("other.example".into())]
        )
    );
}

#[tokio::test]
async fn name_only_in_cn_is_name_mismatch_unless_fallback_enabled() {
    let pki = Pki::new("CnOnly");
    let cert = pki.issue(leaf(vec![], Some("example.org")));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        name_mismatch(
            "example.org",
            vec![PresentedId::CommonName("example.org".into())]
        )
    );
    c.policy.allow_cn_fallback = true;
    let v = c.connect(&cert).await.unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::CommonName("example.org".into()))
    );
}

#[tokio::test]
async fn wildcard_too_deep_is_name_mismatch() {
    let pki = Pki::new("WildDeep");
    let cert = pki.issue(leaf(vec![dns("*.example.org")], None));
    let mut pins = MemoryPinStore::new();
    let mut c =
        Client::new("a.b.example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        name_mismatch(
            "a.b.example.org",
            vec![PresentedId::DnsId("*.example.org".into())]
        )
    );
    // One label is fine.
    c.reference = ReferenceIdentity::client_to_server("chat.example.org").unwrap();
    c.connect(&cert).await.unwrap();
}

#[tokio::test]
async fn wildcard_for_bare_domain_is_name_mismatch() {
    let pki = Pki::new("WildBare");
    let cert = pki.issue(leaf(vec![dns("*.example.org")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        name_mismatch(
            "example.org",
            vec![PresentedId::DnsId("*.example.org".into())]
        )
    );
}

#[tokio::test]
async fn xmppaddr_only_verifies() {
    // embedded-tls's own pki::CertVerifier could not match this certificate at all.
    let pki = Pki::new("XmppAddr");
    let cert = pki.issue(leaf(vec![xmpp_addr("example.org")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    let v = c.connect(&cert).await.unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::XmppAddr("example.org".into()))
    );
    assert_eq!(v.basis, TrustBasis::Anchors);
}

#[tokio::test]
async fn srv_id_only_verifies() {
    let pki = Pki::new("SrvId");
    let cert = pki.issue(srv_only("_xmpp-client.example.org"));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    let v = c.connect(&cert).await.unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::SrvId("_xmpp-client.example.org".into()))
    );
    // The S2S service is not named by a client SRV-ID.
    c.reference = ReferenceIdentity::server_to_server("example.org").unwrap();
    assert!(matches!(
        cert_error(c.connect(&cert).await),
        CertError::NameMismatch { .. }
    ));
}

#[tokio::test]
async fn expired_is_expired() {
    let pki = Pki::new("Expired");
    let mut p = leaf(vec![dns("example.org")], None);
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2021, 1, 1);
    let cert = pki.issue(p);
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    match cert_error(c.connect(&cert).await) {
        CertError::Expired { not_after, .. } => assert_eq!(not_after.0, 1_609_459_200),
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[tokio::test]
async fn not_yet_valid_is_not_yet_valid() {
    let pki = Pki::new("Future");
    let mut p = leaf(vec![dns("example.org")], None);
    p.not_before = date_time_ymd(2090, 1, 1);
    p.not_after = date_time_ymd(2091, 1, 1);
    let cert = pki.issue(p);
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    match cert_error(c.connect(&cert).await) {
        CertError::NotYetValid { not_before, .. } => assert_eq!(not_before.0, 3_786_912_000),
        other => panic!("expected NotYetValid, got {other:?}"),
    }
}

#[tokio::test]
async fn no_clock_is_no_clock_unless_the_policy_skips_dates() {
    let pki = Pki::new("NoClock");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    c.now = None;
    assert_eq!(cert_error(c.connect(&cert).await), CertError::NoClock);
    c.policy.clock = xmpp_handshake_core::trust::ClockPolicy::SkipValidityWithoutClock;
    assert!(!c.connect(&cert).await.unwrap().validity_checked);
}

#[tokio::test]
async fn unknown_ca_is_unknown_issuer() {
    let trusted = Pki::new("Trusted");
    let stranger = Pki::new("Stranger");
    let cert = stranger.issue(leaf(vec![dns("example.org")], None));
    let pin = cert.pin();
    let mut pins = MemoryPinStore::new();
    let mut c =
        Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&trusted);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        CertError::UnknownIssuer {
            spki: pin.spki_sha256,
            cert: pin.cert_sha256,
        }
    );
}

#[tokio::test]
async fn intermediate_missing_is_unknown_issuer() {
    let pki = Pki::new("NoIntermediate");
    let cert = pki.issue(leaf(vec![dns("example.org")], None)).leaf_only();
    let pin = cert.pin();
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        CertError::UnknownIssuer {
            spki: pin.spki_sha256,
            cert: pin.cert_sha256,
        }
    );
}

#[tokio::test]
async fn self_signed_refused_by_anchors() {
    let pki = Pki::new("Anchors");
    let cert = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let pin = cert.pin();
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        CertError::SelfSigned {
            spki: pin.spki_sha256,
            cert: pin.cert_sha256,
        }
    );
}

#[tokio::test]
async fn self_signed_certificate_configured_as_anchor_verifies() {
    // As with rustls/webpki: a certificate the user put among the anchors vouches for
    // itself (its signature verifies with its own key, its name chains to itself).
    let cert = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins);
    c.anchors = vec![cert.chain[0].to_vec()];
    assert_eq!(c.connect(&cert).await.unwrap().basis, TrustBasis::Anchors);
}

#[tokio::test]
async fn self_signed_first_use_then_same_then_changed_key() {
    let pki = Pki::new("Tofu");
    let mut store = MemoryPinStore::new();
    let first = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let changed = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::Record);
    {
        let mut c = Client::new("example.org", policy.clone(), &mut store).anchors(&pki);
        let v = c.connect(&first).await.unwrap();
        assert_eq!(v.basis, TrustBasis::FirstUse);
        assert!(v.pinned_now);
    }
    assert_eq!(store.load("example.org"), Some(first.pin()));

    let err = {
        let mut c = Client::new("example.org", policy.clone(), &mut store).anchors(&pki);
        let v = c.connect(&first).await.unwrap();
        assert_eq!(v.basis, TrustBasis::StoredPin);
        assert!(!v.pinned_now);
        let err = cert_error(c.connect(&changed).await);
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
        // Fails closed: a retry fails the same way.
        assert!(matches!(
            cert_error(c.connect(&changed).await),
            CertError::PinChanged(_)
        ));
        err
    };
    assert_eq!(store.load("example.org"), Some(first.pin()));

    // The interactive path: accept explicitly, then it verifies.
    accept_changed_certificate(&mut store, &err).unwrap();
    let mut c = Client::new("example.org", policy, &mut store).anchors(&pki);
    assert_eq!(
        c.connect(&changed).await.unwrap().basis,
        TrustBasis::StoredPin
    );
}

#[tokio::test]
async fn self_signed_first_use_asks_user() {
    let mut store = MemoryPinStore::new();
    let cert = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::AskUser);
    let err = {
        let mut c = Client::new("example.org", policy.clone(), &mut store);
        cert_error(c.connect(&cert).await)
    };
    assert_eq!(
        err,
        CertError::NotTrustedFirstUse {
            domain: "example.org".into(),
            spki: cert.pin().spki_sha256,
            cert: cert.pin().cert_sha256,
            self_signed: true,
        }
    );
    approve_first_use(&mut store, &err).unwrap();
    let mut c = Client::new("example.org", policy, &mut store);
    assert_eq!(c.connect(&cert).await.unwrap().basis, TrustBasis::StoredPin);
}

#[tokio::test]
async fn idn_domain_verifies_by_a_label() {
    let pki = Pki::new("Idn");
    let cert = pki.issue(leaf(vec![dns("xn--bcher-kva.example")], None));
    let mut pins = MemoryPinStore::new();
    // The user typed the U-label form; the host builds the core with `idna`. SNI is the
    // A-label, as the core hands it over.
    let mut c =
        Client::new("bücher.example", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(c.reference.domain(), "xn--bcher-kva.example");
    let v = c.connect(&cert).await.unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::DnsId("xn--bcher-kva.example".into()))
    );
    c.reference = ReferenceIdentity::client_to_server("xn--bcher-kva.example.net").unwrap();
    assert!(matches!(
        cert_error(c.connect(&cert).await),
        CertError::NameMismatch { .. }
    ));
}

#[tokio::test]
async fn sni_does_not_change_the_reference() {
    let pki = Pki::new("Sni");
    let cert = pki.issue(leaf(vec![dns("xmpp.hosting.example")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    c.sni = Some("xmpp.hosting.example".into());
    match cert_error(c.connect(&cert).await) {
        CertError::NameMismatch { reference, .. } => assert_eq!(reference, "example.org"),
        other => panic!("expected NameMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn no_anchors_configured_fails_closed() {
    let pki = Pki::new("NoRoots");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        CertError::ChainInvalid {
            outcome: PkixOutcome::NotChecked
        }
    );
}

// ---------- the chain walk's own rules (what embedded-tls's pki did not check) ----------

#[tokio::test]
async fn leaf_issued_by_a_non_ca_is_refused() {
    // A server certificate used as an issuer (basicConstraints CA:FALSE) must not vouch
    // for another certificate, even with a valid signature and names that chain.
    let pki = Pki::new("NotCa");
    let mut middle = leaf(vec![dns("middle.example")], None);
    middle
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Middle");
    let middle =
        CertifiedIssuer::signed_by(middle, KeyPair::generate().unwrap(), &pki.intermediate)
            .unwrap();
    let key = KeyPair::generate().unwrap();
    let end = leaf(vec![dns("example.org")], None)
        .signed_by(&key, &middle)
        .unwrap();
    let cert = ServerCert {
        chain: vec![
            end.der().clone(),
            middle.der().clone(),
            pki.intermediate.der().clone(),
        ],
        key,
    };
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        CertError::ChainInvalid {
            outcome: PkixOutcome::WrongUsage
        }
    );
}

#[tokio::test]
async fn expired_intermediate_is_chain_invalid() {
    let pki = Pki::new("OldIntermediate");
    let mut params = ca_params("OldIntermediate Intermediate 2");
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2021, 1, 1);
    let old = CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &pki.root).unwrap();
    let key = KeyPair::generate().unwrap();
    let end = leaf(vec![dns("example.org")], None)
        .signed_by(&key, &old)
        .unwrap();
    let cert = ServerCert {
        chain: vec![end.der().clone(), old.der().clone()],
        key,
    };
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    assert_eq!(
        cert_error(c.connect(&cert).await),
        CertError::ChainInvalid {
            outcome: PkixOutcome::Expired
        }
    );
}

// ---------- P-384 (the backend's `p384` feature) ----------

#[tokio::test]
async fn p384_chain_and_p384_or_p256_leaf_verify() {
    // The shape of Let's Encrypt's ECDSA chain: a P-384 root and intermediate signing with
    // ecdsa-with-SHA384, leaves with a P-256 or a P-384 key (CertificateVerify with
    // ecdsa_secp256r1_sha256 or ecdsa_secp384r1_sha384).
    let p384 = || KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let root = CertifiedIssuer::self_signed(ca_params("P384 Root"), p384()).unwrap();
    let intermediate =
        CertifiedIssuer::signed_by(ca_params("P384 Intermediate"), p384(), &root).unwrap();
    let pki = Pki { root, intermediate };
    let p256_leaf = pki.issue(leaf(vec![dns("example.org")], None));
    let key = p384();
    let end = leaf(vec![dns("example.org")], None)
        .signed_by(&key, &pki.intermediate)
        .unwrap();
    let p384_leaf = ServerCert {
        chain: vec![end.der().clone(), pki.intermediate.der().clone()],
        key,
    };
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    for cert in [&p256_leaf, &p384_leaf] {
        let v = c.connect(cert).await.unwrap();
        assert_eq!(v.basis, TrustBasis::Anchors);
        // RFC 5929 §4.1: the hash of the signature algorithm, SHA-384 here.
        assert_eq!(v.tls_server_end_point.map(|h| h.len()), Some(48));
    }
    let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    assert!(matches!(
        c.connect_signed_by(&p384_leaf, &other).await,
        Err(EmbeddedTlsError::HandshakeSignature)
    ));
}

// ---------- RSA (the backend's `rsa` feature) ----------

/// Test-only RSA keys (RSA keys cannot be generated by rcgen on ring).
const RSA_4096: &str = include_str!("../../embedded-tls-backend/src/testdata/rsa4096.pem");
const RSA_2048_A: &str = include_str!("../../embedded-tls-backend/src/testdata/rsa2048-a.pem");
const RSA_2048_B: &str = include_str!("../../embedded-tls-backend/src/testdata/rsa2048-b.pem");

fn rsa_key(pem: &str) -> KeyPair {
    KeyPair::from_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256).unwrap()
}

/// Let's Encrypt's RSA shape: an RSA-4096 root, an RSA-2048 intermediate, an RSA-2048
/// leaf; rustls signs the TLS 1.3 CertificateVerify with RSA-PSS.
fn rsa_pki() -> (Pki, ServerCert) {
    let root = CertifiedIssuer::self_signed(ca_params("RSA Root"), rsa_key(RSA_4096)).unwrap();
    let intermediate =
        CertifiedIssuer::signed_by(ca_params("RSA Intermediate"), rsa_key(RSA_2048_A), &root)
            .unwrap();
    let pki = Pki { root, intermediate };
    let key = rsa_key(RSA_2048_B);
    let end = leaf(vec![dns("example.org")], None)
        .signed_by(&key, &pki.intermediate)
        .unwrap();
    let cert = ServerCert {
        chain: vec![end.der().clone(), pki.intermediate.der().clone()],
        key,
    };
    (pki, cert)
}

#[tokio::test]
async fn rsa_chain_with_rsa_pss_certificate_verify_verifies() {
    let (pki, cert) = rsa_pki();
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&pki);
    let v = c.connect(&cert).await.unwrap();
    assert_eq!(v.basis, TrustBasis::Anchors);
    assert!(v.validity_checked);
    // A server holding another RSA key fails the proof of possession.
    assert!(matches!(
        c.connect_signed_by(&cert, &rsa_key(RSA_2048_A)).await,
        Err(EmbeddedTlsError::HandshakeSignature)
    ));
    // Another root is not an anchor for it.
    let stranger = Pki::new("Stranger");
    let mut c =
        Client::new("example.org", CertificatePolicy::anchors(), &mut pins).anchors(&stranger);
    assert!(matches!(
        cert_error(c.connect(&cert).await),
        CertError::UnknownIssuer { .. }
    ));
}

/// Answers deferred checks in software, counting them, or refuses them all.
struct LaterChecks {
    answered: Arc<AtomicUsize>,
    refuse: bool,
}

impl AsyncCheck for LaterChecks {
    async fn check(&mut self, check: &OwnedCheck) -> Result<(), SignatureError> {
        self.answered.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
        if self.refuse {
            return Err(SignatureError::Invalid);
        }
        Software.verify(&check.as_check()?)
    }
}

#[tokio::test]
async fn deferred_signature_checks_settle_inside_the_upgrade() {
    // The browser's path (checks answered by WebCrypto after the handshake), here answered
    // by the software verifier later: the same verdicts, the RSA schemes offered though
    // the page links no RSA.
    let (pki, cert) = rsa_pki();
    for refuse in [false, true] {
        let answered = Arc::new(AtomicUsize::new(0));
        let server_cfg = server_config(&cert, &cert.key, false);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg);
            if let Ok(mut tls) = acceptor.accept(b).await {
                let mut byte = [0u8; 1];
                let _ = tls.read(&mut byte).await;
            }
        };
        let anchors_der = [pki.root_der()];
        let anchors: Vec<&[u8]> = anchors_der.iter().map(|a| a.as_slice()).collect();
        let reference = ReferenceIdentity::client_to_server("example.org").unwrap();
        let verifier =
            ServerVerifier::new(reference, CertificatePolicy::anchors(), &anchors, NoPins)
                .with_time(now())
                .with_signature_verifier(Deferred::new(LaterChecks {
                    answered: answered.clone(),
                    refuse,
                }));
        let mut rx = vec![0u8; READ_BUFFER];
        let mut tx = vec![0u8; WRITE_BUFFER];
        let client = async {
            let mut tls = EmbeddedTls::new(&mut rx, &mut tx, rand_core::OsRng, verifier);
            tls.upgrade(FromTokio::new(a), "example.org")
                .await
                .map(drop)
        };
        let (result, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(client, server)
        })
        .await
        .expect("handshake ends in time");
        // The leaf's and the intermediate's signatures, and the CertificateVerify.
        assert_eq!(answered.load(Ordering::Relaxed), 3, "refuse: {refuse}");
        if refuse {
            assert!(
                matches!(
                    result,
                    Err(EmbeddedTlsError::Certificate(CertError::ChainInvalid {
                        outcome: PkixOutcome::BadSignature
                    }))
                ),
                "{result:?}"
            );
        } else {
            result.unwrap();
        }
    }
}

// ---------- (c) proof of possession ----------

#[tokio::test]
async fn pinned_certificate_still_requires_proof_of_possession() {
    // An attacker replays the pinned certificate but does not hold its key. The pin
    // replaces the chain; the CertificateVerify signature is still checked with the
    // pinned key, and fails.
    let cert = ServerCert::self_signed(leaf(vec![dns("example.org")], None));
    let pinned = CertificatePolicy::pinned(vec![cert.pin().spki_sha256]);
    let mut pins = MemoryPinStore::new();
    let mut c = Client::new("example.org", pinned, &mut pins);
    assert_eq!(
        c.connect(&cert).await.unwrap().basis,
        TrustBasis::ConfiguredPin
    );

    let attacker_key = KeyPair::generate().unwrap();
    match c.connect_signed_by(&cert, &attacker_key).await {
        Err(EmbeddedTlsError::HandshakeSignature) => {}
        other => panic!("replayed certificate accepted: {other:?}"),
    }
}

#[tokio::test]
async fn verifier_drives_embedded_tls_directly() {
    // Direct TLS (XEP-0368) callers open embedded-tls themselves: the verifier's
    // CryptoProvider, then `accepted` to require a policy verdict and a verified
    // CertificateVerify.
    use xmpp_handshake_embedded_tls::{Aes128GcmSha256, TlsConfig, TlsConnection, TlsContext};
    let pki = Pki::new("Direct");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let server_cfg = server_config(&cert, &cert.key, false);
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = async move {
        // The client drops the connection once verified: the server may see a broken
        // pipe while it sends its session tickets.
        if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(server_cfg).accept(b).await {
            let mut byte = [0u8; 1];
            let _ = tls.read(&mut byte).await;
        }
    };
    let root = pki.root_der();
    let anchors: Vec<&[u8]> = vec![&root];
    let client = async {
        let mut verifier = ServerVerifier::new(
            ReferenceIdentity::client_to_server("example.org").unwrap(),
            CertificatePolicy::anchors(),
            &anchors,
            NoPins,
        )
        .with_time(now());
        let mut rng = rand_core::OsRng;
        let (mut rx, mut tx) = (vec![0u8; READ_BUFFER], vec![0u8; WRITE_BUFFER]);
        let mut conn: TlsConnection<'_, _, Aes128GcmSha256> =
            TlsConnection::new(FromTokio::new(a), &mut rx, &mut tx);
        let config = TlsConfig::new().with_server_name("example.org");
        let provider = verifier.crypto_provider::<_, Aes128GcmSha256>(&mut rng);
        let opened = conn.open(TlsContext::new(&config, provider)).await;
        verifier.accepted(opened).unwrap();
        assert!(verifier.handshake_signature_verified());
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(client, server)
    })
    .await
    .expect("handshake ends in time");
}

#[tokio::test]
async fn cut_connection_is_an_error_not_end_of_stream() {
    // Truncation: the server's side goes away without close_notify. Unlike a
    // close_notify (read as Ok(0), see the SCRAM test), this must stay an error.
    let pki = Pki::new("Cut");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let server_cfg = server_config(&cert, &cert.key, false);
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (handshaken_tx, handshaken_rx) = tokio::sync::oneshot::channel::<()>();
    let server = async move {
        let tls = tokio_rustls::TlsAcceptor::from(server_cfg)
            .accept(b)
            .await
            .unwrap();
        let _ = handshaken_rx.await;
        drop(tls); // no close_notify
    };
    let root = pki.root_der();
    let anchors: Vec<&[u8]> = vec![&root];
    let client = async {
        let (mut rx, mut tx) = (vec![0u8; READ_BUFFER], vec![0u8; WRITE_BUFFER]);
        let verifier = ServerVerifier::new(
            ReferenceIdentity::client_to_server("example.org").unwrap(),
            CertificatePolicy::anchors(),
            &anchors,
            NoPins,
        )
        .with_time(now());
        let mut tls = EmbeddedTls::new(&mut rx, &mut tx, rand_core::OsRng, verifier);
        let mut stream = tls.upgrade(FromTokio::new(a), "example.org").await.unwrap();
        // The server drops its side once its handshake is complete too.
        handshaken_tx.send(()).unwrap();
        let mut buf = [0u8; 16];
        let read = stream.read(&mut buf).await;
        assert!(read.is_err(), "truncation read as {read:?}");
        assert!(!stream.peer_closed());
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(client, server)
    })
    .await
    .expect("ends in time");
}

/// Kills the `openssl s_server` this test started when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn max_fragment_length_with_small_read_buffer_against_openssl() {
    // OpenSSL honours max_fragment_length (RFC 6066), rustls does not: against
    // `openssl s_server`, a 4096-byte fragment limit lets a 4352-byte read buffer carry a
    // response larger than it. Skipped when no openssl binary is installed.
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        eprintln!("skipped: no openssl binary");
        return;
    };
    assert!(out.status.success());
    let pki = Pki::new("OpenSsl");
    let key = KeyPair::generate().unwrap();
    let end = leaf(vec![dns("example.org")], None)
        .signed_by(&key, &pki.intermediate)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leaf.pem"), end.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("chain.pem"), pki.intermediate.pem()).unwrap();
    // A page four times the read buffer, served by `-WWW` from the working directory.
    let page = "0123456789abcdef".repeat(1200);
    std::fs::write(dir.path().join("page.txt"), &page).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = KillOnDrop(
        std::process::Command::new("openssl")
            .current_dir(dir.path())
            .args(["s_server", "-quiet", "-tls1_3", "-WWW", "-naccept", "1"])
            .args([
                "-cert",
                "leaf.pem",
                "-key",
                "key.pem",
                "-cert_chain",
                "chain.pem",
            ])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let connect = async {
        loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(s) => return s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    let tcp = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("s_server listens");
    tcp.set_nodelay(true).unwrap();

    let root = pki.root_der();
    let anchors: Vec<&[u8]> = vec![&root];
    let (mut rx, mut tx) = (vec![0u8; 4096 + 256], vec![0u8; 1024]);
    let verifier = ServerVerifier::new(
        ReferenceIdentity::client_to_server("example.org").unwrap(),
        CertificatePolicy::anchors(),
        &anchors,
        NoPins,
    )
    .with_time(now());
    let mut tls = EmbeddedTls::new(&mut rx, &mut tx, rand_core::OsRng, verifier)
        .with_max_fragment_length(MaxFragmentLength::Bits12);
    let exchange = async {
        let mut stream = tls.upgrade(FromTokio::new(tcp), "example.org").await?;
        embedded_io_async::Write::write_all(&mut stream, b"GET /page.txt HTTP/1.0\r\n\r\n")
            .await
            .map_err(EmbeddedTlsError::Tls)?;
        embedded_io_async::Write::flush(&mut stream)
            .await
            .map_err(EmbeddedTlsError::Tls)?;
        let mut body = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
                // s_server -WWW may close without close_notify after the page.
                Err(_) if !body.is_empty() => break,
                Err(e) => return Err(EmbeddedTlsError::Tls(e)),
            }
        }
        Ok::<_, EmbeddedTlsError>(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("exchange ends in time")
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.ends_with(&page), "the whole page arrives");
}

#[tokio::test]
async fn one_upgrade_per_buffers() {
    let mut rx = [0u8; 16];
    let mut tx = [0u8; 16];
    let verifier = ServerVerifier::new(
        ReferenceIdentity::client_to_server("example.org").unwrap(),
        CertificatePolicy::anchors(),
        &[],
        NoPins,
    );
    let mut tls = EmbeddedTls::new(&mut rx, &mut tx, rand_core::OsRng, verifier);
    // A write buffer too small for one record: refused before any I/O, buffers spent.
    let (a, _b) = tokio::io::duplex(1024);
    assert!(matches!(
        tls.upgrade(FromTokio::new(a), "example.org").await,
        Err(EmbeddedTlsError::BufferTooSmall)
    ));
    let (a, _b) = tokio::io::duplex(1024);
    assert!(matches!(
        tls.upgrade(FromTokio::new(a), "example.org").await,
        Err(EmbeddedTlsError::AlreadyUsed)
    ));
}

// ---------- (d) what embedded-tls 0.19 does not implement: typed errors, no panic, no hang ----------

/// Runs `server` against an `EmbeddedTls` client for example.org anchored at `pki`; the
/// client's handshake result, within 10 s.
async fn handshake_against<S>(
    pki: &Pki,
    client_end: tokio::io::DuplexStream,
    server: S,
) -> Result<(), EmbeddedTlsError>
where
    S: std::future::Future<Output = ()>,
{
    let root = pki.root_der();
    let anchors: Vec<&[u8]> = vec![&root];
    let client = async {
        let (mut rx, mut tx) = (vec![0u8; READ_BUFFER], vec![0u8; WRITE_BUFFER]);
        let verifier = ServerVerifier::new(
            ReferenceIdentity::client_to_server("example.org").unwrap(),
            CertificatePolicy::anchors(),
            &anchors,
            NoPins,
        )
        .with_time(now());
        let mut tls = EmbeddedTls::new(&mut rx, &mut tx, rand_core::OsRng, verifier);
        tls.upgrade(FromTokio::new(client_end), "example.org")
            .await
            .map(drop)
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(client, server)
    })
    .await
    .expect("the handshake ends in time");
    result
}

#[tokio::test]
async fn server_without_p256_refuses_the_handshake_with_a_typed_error() {
    // embedded-tls lists only secp256r1 in supported_groups and sends a key share for it,
    // so a server has no other group to ask for with a HelloRetryRequest: a rustls server
    // that lacks P-256 finds no common group and aborts with a handshake_failure alert.
    use rustls::crypto::ring::kx_group::{SECP384R1, X25519};
    let pki = Pki::new("NoP256");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    for group in [X25519, SECP384R1] {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.kx_groups = vec![group];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key.serialize_der()),
        );
        let server_cfg = rustls::ServerConfig::builder_with_provider(provider.into())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(cert.chain.clone(), key)
            .unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = async move {
            let refused = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server_cfg))
                .accept(b)
                .await;
            let Err(err) = refused else {
                panic!("the server finds no common group")
            };
            assert!(
                err.to_string().contains("NoKxGroupsInCommon"),
                "server: {err}"
            );
        };
        let result = handshake_against(&pki, a, server).await;
        let alert = match &result {
            Err(EmbeddedTlsError::Tls(TlsError::HandshakeAborted(level, description))) => {
                format!("{level:?} {description:?}")
            }
            other => panic!("{:?}: {other:?}", group.name()),
        };
        assert_eq!(alert, "Fatal HandshakeFailure", "{:?}", group.name());
    }
}

#[tokio::test]
async fn hello_retry_request_is_a_typed_error() {
    // No conforming server sends a HelloRetryRequest to this client (see above), so this
    // peer is deliberately broken: it answers the ClientHello with an HRR (RFC 8446
    // §4.1.3, the special ServerHello.random) asking for x25519. embedded-tls parses it as a
    // ServerHello, whose key_share must carry a key: `DecodeError`.
    let pki = Pki::new("Hrr");
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    let server = async move {
        let mut header = [0u8; 5];
        b.read_exact(&mut header).await.unwrap();
        assert_eq!(header[0], 22, "a handshake record");
        let mut hello = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
        b.read_exact(&mut hello).await.unwrap();
        assert_eq!(hello[0], 1, "a ClientHello");
        // legacy_session_id sits after type (1), length (3), version (2), random (32).
        let sid_len = usize::from(hello[38]);
        let session_id = &hello[39..39 + sid_len];
        let hrr_random: [u8; 32] = [
            0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65,
            0xB8, 0x91, 0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2,
            0xC8, 0xA8, 0x33, 0x9C,
        ];
        let extensions: &[u8] = &[
            0x00, 0x2B, 0x00, 0x02, 0x03, 0x04, // supported_versions: TLS 1.3
            0x00, 0x33, 0x00, 0x02, 0x00, 0x1D, // key_share: selected_group x25519
        ];
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&hrr_random);
        body.push(session_id.len() as u8);
        body.extend_from_slice(session_id);
        body.extend_from_slice(&[0x13, 0x01, 0x00]); // TLS_AES_128_GCM_SHA256, no compression
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(extensions);
        let mut handshake = vec![2];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![22, 0x03, 0x03];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        b.write_all(&record).await.unwrap();
        // Then wait for whatever the client does (an alert, or it hangs up).
        let mut rest = Vec::new();
        let _ = b.read_to_end(&mut rest).await;
    };
    let result = handshake_against(&pki, a, server).await;
    assert!(
        matches!(result, Err(EmbeddedTlsError::Tls(TlsError::DecodeError))),
        "an HRR must fail the handshake: {result:?}"
    );
}

#[tokio::test]
async fn key_update_after_the_handshake_is_a_typed_read_error() {
    // A rustls server sends application data, then a KeyUpdate (RFC 8446 §4.6.3) and more
    // data under its new keys. embedded-tls reads the first data and then fails the read
    // with `Unimplemented` (it does not parse KeyUpdate): no panic, no hang. The app treats
    // it as a lost connection and reconnects.
    let pki = Pki::new("KeyUpdate");
    let cert = pki.issue(leaf(vec![dns("example.org")], None));
    let server_cfg = server_config(&cert, &cert.key, false);
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = async move {
        let mut tls = tokio_rustls::TlsAcceptor::from(server_cfg)
            .accept(b)
            .await
            .unwrap();
        tls.write_all(b"before").await.unwrap();
        tls.flush().await.unwrap();
        tls.get_mut().1.refresh_traffic_keys().unwrap();
        tls.write_all(b"after").await.unwrap();
        tls.flush().await.unwrap();
        // Hold the connection until the client gives up on it.
        let mut byte = [0u8; 1];
        let _ = tls.read(&mut byte).await;
    };
    let root = pki.root_der();
    let anchors: Vec<&[u8]> = vec![&root];
    let client = async {
        let (mut rx, mut tx) = (vec![0u8; READ_BUFFER], vec![0u8; WRITE_BUFFER]);
        let verifier = ServerVerifier::new(
            ReferenceIdentity::client_to_server("example.org").unwrap(),
            CertificatePolicy::anchors(),
            &anchors,
            NoPins,
        )
        .with_time(now());
        let mut tls = EmbeddedTls::new(&mut rx, &mut tx, rand_core::OsRng, verifier);
        let mut stream = tls.upgrade(FromTokio::new(a), "example.org").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let error = loop {
            match stream.read(&mut buf).await {
                Ok(0) => panic!("a KeyUpdate read as end of stream"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(got, b"before", "the data before the KeyUpdate arrives");
        assert!(matches!(error, TlsError::Unimplemented), "{error:?}");
        // Through the core's transport (what the driver and the app see): an I/O error.
        assert_eq!(
            embedded_io::Error::kind(&error),
            embedded_io::ErrorKind::Other
        );
        drop(stream);
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(client, server)
    })
    .await
    .expect("ends in time");
}
