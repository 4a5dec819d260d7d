//! The chain walk's rules and the CertificateVerify check, without I/O (the handshakes
//! against rustls are in host/tests/embedded_tls_backend.rs).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use ::embedded_tls::{
    CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme, TlsVerifier,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SigningKey, PKCS_ECDSA_P384_SHA384,
};
use sha2::{Digest, Sha256};
use xmpp_handshake_core::trust::{
    EndEntityCertificate, Fingerprint, NoPins, PkixOutcome, TrustBasis,
};

use super::pkix;
use super::signature::Software;

/// The path search with software signature checks.
fn check_chain(chain: &[&[u8]], anchors: &[&[u8]], now: Option<UnixTime>) -> PkixOutcome {
    pkix::check_chain(chain, anchors, now, &mut Software)
}
use super::*;

const NOW: UnixTime = UnixTime(1_800_000_000); // 2027: inside rcgen's default validity

fn ca(cn: &str, constraint: BasicConstraints) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(constraint);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

fn server(domain: &str) -> CertificateParams {
    let mut p = CertificateParams::new(vec![String::from(domain)]).unwrap();
    p.is_ca = IsCa::ExplicitNoCa;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p
}

fn root(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    CertifiedIssuer::self_signed(
        ca(cn, BasicConstraints::Unconstrained),
        KeyPair::generate().unwrap(),
    )
    .unwrap()
}

fn intermediate(
    params: CertificateParams,
    by: &CertifiedIssuer<'static, KeyPair>,
) -> CertifiedIssuer<'static, KeyPair> {
    CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), by).unwrap()
}

fn issue(params: CertificateParams, by: &CertifiedIssuer<'static, KeyPair>) -> (Vec<u8>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, by).unwrap();
    (cert.der().to_vec(), key)
}

fn der(issuer: &CertifiedIssuer<'static, KeyPair>) -> Vec<u8> {
    issuer.der().to_vec()
}

#[test]
fn ordered_and_unordered_chains_are_valid() {
    let r = root("R");
    let i1 = intermediate(ca("I1", BasicConstraints::Unconstrained), &r);
    let i2 = intermediate(ca("I2", BasicConstraints::Unconstrained), &i1);
    let (leaf, _) = issue(server("example.org"), &i2);
    let stranger = der(&root("Stranger"));
    let anchors: &[&[u8]] = &[&der(&r)];
    let (i1, i2) = (der(&i1), der(&i2));
    assert_eq!(
        check_chain(&[&leaf, &i2, &i1], anchors, Some(NOW)),
        PkixOutcome::Valid
    );
    assert_eq!(
        check_chain(&[&leaf, &stranger, &i1, &i2], anchors, Some(NOW)),
        PkixOutcome::Valid
    );
    assert_eq!(
        check_chain(&[&leaf, &i2], anchors, Some(NOW)),
        PkixOutcome::UnknownIssuer
    );
    assert_eq!(
        check_chain(&[&leaf, &i2, &i1], &[], Some(NOW)),
        PkixOutcome::NotChecked
    );
}

#[test]
fn path_length_constraint_is_enforced() {
    let r = root("R");
    let i1 = intermediate(ca("I1", BasicConstraints::Constrained(0)), &r);
    let i2 = intermediate(ca("I2", BasicConstraints::Unconstrained), &i1);
    let (leaf, _) = issue(server("example.org"), &i2);
    let anchors: &[&[u8]] = &[&der(&r)];
    assert!(matches!(
        check_chain(&[&leaf, &der(&i2), &der(&i1)], anchors, Some(NOW)),
        PkixOutcome::Other(_)
    ));
    // pathLen 0 still allows issuing end entities.
    let (leaf, _) = issue(server("example.org"), &i1);
    assert_eq!(
        check_chain(&[&leaf, &der(&i1)], anchors, Some(NOW)),
        PkixOutcome::Valid
    );
}

#[test]
fn issuer_without_key_cert_sign_is_wrong_usage() {
    let r = root("R");
    let mut p = ca("I", BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let i = intermediate(p, &r);
    let (leaf, _) = issue(server("example.org"), &i);
    assert_eq!(
        check_chain(&[&leaf, &der(&i)], &[&der(&r)], Some(NOW)),
        PkixOutcome::WrongUsage
    );
}

#[test]
fn end_entity_must_be_a_server_certificate() {
    let r = root("R");
    let i = intermediate(ca("I", BasicConstraints::Unconstrained), &r);
    let anchors: &[&[u8]] = &[&der(&r)];

    let mut client_only = server("example.org");
    client_only.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (leaf, _) = issue(client_only, &i);
    assert_eq!(
        check_chain(&[&leaf, &der(&i)], anchors, Some(NOW)),
        PkixOutcome::WrongUsage
    );

    let mut a_ca = server("example.org");
    a_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let (leaf, _) = issue(a_ca, &i);
    assert_eq!(
        check_chain(&[&leaf, &der(&i)], anchors, Some(NOW)),
        PkixOutcome::WrongUsage
    );

    let mut no_signature = server("example.org");
    no_signature.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    let (leaf, _) = issue(no_signature, &i);
    assert_eq!(
        check_chain(&[&leaf, &der(&i)], anchors, Some(NOW)),
        PkixOutcome::WrongUsage
    );
}

#[test]
fn unprocessed_critical_extensions_fail_the_chain() {
    let r = root("R");
    let anchors: &[&[u8]] = &[&der(&r)];

    // nameConstraints (always critical) are not implemented: refused, never ignored.
    let mut constrained = ca("I", BasicConstraints::Unconstrained);
    constrained.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("example.org".into())],
        excluded_subtrees: vec![],
    });
    let i = intermediate(constrained, &r);
    let (leaf, _) = issue(server("example.org"), &i);
    assert!(matches!(
        check_chain(&[&leaf, &der(&i)], anchors, Some(NOW)),
        PkixOutcome::Other(s) if s.contains("2.5.29.30")
    ));

    // An unknown critical extension on the end entity.
    let i = intermediate(ca("I", BasicConstraints::Unconstrained), &r);
    let mut odd = server("example.org");
    let mut ext =
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
    ext.set_criticality(true);
    odd.custom_extensions.push(ext);
    let (leaf, _) = issue(odd, &i);
    assert!(matches!(
        check_chain(&[&leaf, &der(&i)], anchors, Some(NOW)),
        PkixOutcome::Other(s) if s.contains("1.3.6.1.4.1.99999.1")
    ));
}

#[test]
fn issuer_restricted_to_client_auth_is_wrong_usage() {
    let r = root("R");
    let mut p = ca("I", BasicConstraints::Unconstrained);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let i = intermediate(p, &r);
    let (leaf, _) = issue(server("example.org"), &i);
    assert_eq!(
        check_chain(&[&leaf, &der(&i)], &[&der(&r)], Some(NOW)),
        PkixOutcome::WrongUsage
    );
}

#[test]
fn altered_certificate_is_bad_signature() {
    let r = root("R");
    let i = intermediate(ca("I", BasicConstraints::Unconstrained), &r);
    let (mut leaf, _) = issue(server("example.org"), &i);
    // The last byte is the end of the ECDSA `s` integer: still DER, no longer valid.
    *leaf.last_mut().unwrap() ^= 1;
    assert_eq!(
        check_chain(&[&leaf, &der(&i)], &[&der(&r)], Some(NOW)),
        PkixOutcome::BadSignature
    );
}

#[test]
fn intermediate_dates_are_checked_when_time_is_known() {
    let r = root("R");
    let i = intermediate(ca("I", BasicConstraints::Unconstrained), &r);
    let (leaf, _) = issue(server("example.org"), &i);
    let anchors: &[&[u8]] = &[&der(&r)];
    // rcgen's default validity starts in 1975 and ends in 4096.
    assert_eq!(
        check_chain(&[&leaf, &der(&i)], anchors, Some(UnixTime(0))),
        PkixOutcome::NotYetValid
    );
    assert_eq!(
        check_chain(&[&leaf, &der(&i)], anchors, None),
        PkixOutcome::Valid
    );
}

#[test]
fn p384_issuer() {
    let r = CertifiedIssuer::self_signed(
        ca("R384", BasicConstraints::Unconstrained),
        KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
    )
    .unwrap();
    let (leaf, _) = issue(server("example.org"), &r);
    let outcome = check_chain(&[&leaf], &[&der(&r)], Some(NOW));
    #[cfg(feature = "p384")]
    assert_eq!(outcome, PkixOutcome::Valid);
    #[cfg(not(feature = "p384"))]
    assert!(
        matches!(&outcome, PkixOutcome::Other(s) if s.contains("P-384")),
        "{outcome:?}"
    );
}

// ---------- CertificateVerify (RFC 8446 §4.4.3) ----------

/// A verifier that accepted `leaf` (pinned) with `transcript` as the hash so far.
fn accepted<'a>(leaf: &[u8], transcript: &Sha256) -> ServerVerifier<'a, NoPins> {
    let spki = EndEntityCertificate::parse(leaf).unwrap().pin().spki_sha256;
    let mut v = ServerVerifier::new(
        ReferenceIdentity::client_to_server("example.org").unwrap(),
        CertificatePolicy::pinned(vec![spki]),
        &[],
        NoPins,
    )
    .with_time(NOW);
    let mut cert = CertificateRef::with_context(&[]);
    cert.add(CertificateEntryRef::X509(leaf)).unwrap();
    TlsVerifier::<Aes128GcmSha256>::verify_certificate(&mut v, transcript, cert).unwrap();
    assert_eq!(
        v.verdict().unwrap().as_ref().unwrap().basis,
        TrustBasis::ConfiguredPin
    );
    v
}

fn signed_content(transcript: &Sha256) -> Vec<u8> {
    let mut m = vec![0x20; 64];
    m.extend_from_slice(SERVER_CONTEXT);
    m.extend_from_slice(&transcript.clone().finalize());
    m
}

fn certificate_verify(
    v: &mut ServerVerifier<'_, NoPins>,
    scheme: SignatureScheme,
    signature: &[u8],
) -> Result<(), TlsError> {
    TlsVerifier::<Aes128GcmSha256>::verify_signature(
        v,
        CertificateVerifyRef {
            signature_scheme: scheme,
            signature,
        },
    )
}

#[test]
fn certificate_verify_proves_possession_of_the_key() {
    let key = KeyPair::generate().unwrap();
    let leaf = server("example.org")
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    let mut transcript = Sha256::new();
    transcript.update(b"ClientHello..Certificate");

    let mut v = accepted(&leaf, &transcript);
    let good = key.sign(&signed_content(&transcript)).unwrap();
    certificate_verify(&mut v, SignatureScheme::EcdsaSecp256r1Sha256, &good).unwrap();
    assert!(v.handshake_signature_verified());
    assert!(v.accepted(Ok(())).is_ok());

    // Another key's signature: the peer does not hold the pinned key.
    let mut v = accepted(&leaf, &transcript);
    let other = KeyPair::generate().unwrap();
    let forged = other.sign(&signed_content(&transcript)).unwrap();
    assert!(certificate_verify(&mut v, SignatureScheme::EcdsaSecp256r1Sha256, &forged).is_err());
    assert!(matches!(
        v.accepted(Err(TlsError::InvalidSignature)),
        Err(EmbeddedTlsError::HandshakeSignature)
    ));

    // The right key over another transcript.
    let mut v = accepted(&leaf, &transcript);
    let mut other_transcript = Sha256::new();
    other_transcript.update(b"another handshake");
    let replayed = key.sign(&signed_content(&other_transcript)).unwrap();
    assert!(certificate_verify(&mut v, SignatureScheme::EcdsaSecp256r1Sha256, &replayed).is_err());

    // A scheme that does not fit the key's curve, and one not implemented.
    let mut v = accepted(&leaf, &transcript);
    assert!(certificate_verify(&mut v, SignatureScheme::EcdsaSecp384r1Sha384, &good).is_err());
    assert!(matches!(
        v.accepted(Err(TlsError::InvalidSignature)),
        Err(EmbeddedTlsError::HandshakeSignature)
    ));
    let mut v = accepted(&leaf, &transcript);
    assert!(certificate_verify(&mut v, SignatureScheme::Ed25519, &good).is_err());
    assert!(matches!(
        v.accepted(Err(TlsError::InvalidSignatureScheme)),
        Err(EmbeddedTlsError::UnsupportedHandshakeSignature(_))
    ));
}

#[test]
fn the_upgrades_settlement_moves_a_refusal_into_its_error() {
    let key = KeyPair::generate().unwrap();
    let leaf = server("example.org")
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    // Pinned to another key: the policy refuses the certificate.
    let mut v: ServerVerifier<'_, NoPins> = ServerVerifier::new(
        ReferenceIdentity::client_to_server("example.org").unwrap(),
        CertificatePolicy::pinned(vec![Fingerprint::of(b"another key")]),
        &[],
        NoPins,
    )
    .with_time(NOW);
    let mut cert = CertificateRef::with_context(&[]);
    cert.add(CertificateEntryRef::X509(&leaf)).unwrap();
    assert!(
        TlsVerifier::<Aes128GcmSha256>::verify_certificate(&mut v, &Sha256::new(), cert).is_err()
    );
    let Some(Err(refusal)) = v.verdict().cloned() else {
        panic!("no refusal: {:?}", v.verdict());
    };
    // `accepted` leaves the verdict in place; the upgrade's settlement moves it out.
    assert!(matches!(
        v.accepted(Err(TlsError::InvalidCertificate)),
        Err(EmbeddedTlsError::Certificate(e)) if e == refusal
    ));
    assert!(matches!(
        v.settle(Err(TlsError::InvalidCertificate)),
        Err(EmbeddedTlsError::Certificate(e)) if e == refusal
    ));
    assert!(v.verdict().is_none());

    // An accepted certificate is settled as `accepted` does, and its verdict stays.
    let mut transcript = Sha256::new();
    transcript.update(b"ClientHello..Certificate");
    let mut v = accepted(&leaf, &transcript);
    let good = key.sign(&signed_content(&transcript)).unwrap();
    certificate_verify(&mut v, SignatureScheme::EcdsaSecp256r1Sha256, &good).unwrap();
    assert!(v.settle(Ok(())).is_ok());
    assert!(matches!(v.verdict(), Some(Ok(_))));
}

#[test]
fn handshake_without_certificate_verify_is_refused() {
    let key = KeyPair::generate().unwrap();
    let leaf = server("example.org")
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    let v = accepted(&leaf, &Sha256::new());
    // embedded-tls reported success, but no CertificateVerify was checked.
    assert!(matches!(
        v.accepted(Ok(())),
        Err(EmbeddedTlsError::NotVerified)
    ));
    // Nothing seen at all.
    let v: ServerVerifier<'_, NoPins> = ServerVerifier::new(
        ReferenceIdentity::client_to_server("example.org").unwrap(),
        CertificatePolicy::anchors(),
        &[],
        NoPins,
    );
    assert!(matches!(
        v.accepted(Ok(())),
        Err(EmbeddedTlsError::NotVerified)
    ));
}

#[test]
fn certificate_verify_before_certificate_is_refused() {
    let mut v: ServerVerifier<'_, NoPins> = ServerVerifier::new(
        ReferenceIdentity::client_to_server("example.org").unwrap(),
        CertificatePolicy::anchors(),
        &[],
        NoPins,
    );
    assert!(certificate_verify(&mut v, SignatureScheme::EcdsaSecp256r1Sha256, &[0x30, 0]).is_err());
}

/// What the driver puts in `Error::Tls`: the verdict itself, the proof of possession, the
/// alert's code, the setup mistakes as such.
#[test]
fn failures_classify_into_the_core_tls_error() {
    use ::embedded_tls::alert::{AlertDescription, AlertLevel};

    use xmpp_handshake_core::error::{Alert, HandshakeFailure};
    use xmpp_handshake_core::{ErrorKind, TlsError as Core};

    let refused = CertError::NoClock;
    let classify = |e: EmbeddedTlsError| -> Core { e.into() };
    assert_eq!(
        classify(EmbeddedTlsError::Certificate(refused.clone())),
        Core::Certificate(refused)
    );
    assert_eq!(
        classify(EmbeddedTlsError::HandshakeSignature),
        Core::KeyNotProven
    );
    assert_eq!(classify(EmbeddedTlsError::NotVerified), Core::NotVerified);
    assert_eq!(
        classify(EmbeddedTlsError::UnsupportedHandshakeSignature("Ed25519")),
        Core::Handshake(HandshakeFailure::Unsupported("Ed25519"))
    );
    assert_eq!(
        classify(EmbeddedTlsError::BufferTooSmall).kind(),
        ErrorKind::Config
    );
    assert_eq!(
        classify(EmbeddedTlsError::AlreadyUsed).kind(),
        ErrorKind::Config
    );
    assert_eq!(
        classify(EmbeddedTlsError::Tls(TlsError::HandshakeAborted(
            AlertLevel::Fatal,
            AlertDescription::ProtocolVersion
        ))),
        Core::Alert(Alert::PROTOCOL_VERSION)
    );
    assert_eq!(
        classify(EmbeddedTlsError::Tls(TlsError::AbortHandshake(
            AlertLevel::Fatal,
            AlertDescription::DecodeError
        ))),
        Core::Handshake(HandshakeFailure::AlertSent(Alert(50)))
    );
    assert_eq!(
        classify(EmbeddedTlsError::Tls(TlsError::Io(
            embedded_io::ErrorKind::ConnectionReset
        ))),
        Core::Io(embedded_io::ErrorKind::ConnectionReset)
    );
    assert_eq!(
        classify(EmbeddedTlsError::Tls(TlsError::ConnectionClosed)),
        Core::Closed
    );
    assert_eq!(
        classify(EmbeddedTlsError::Tls(TlsError::InvalidCipherSuite)),
        Core::Handshake(HandshakeFailure::Incompatible)
    );
    assert_eq!(
        classify(EmbeddedTlsError::Tls(TlsError::InsufficientSpace)).kind(),
        ErrorKind::Config
    );
}
