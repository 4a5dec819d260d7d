//! The path search against webpki (rustls's verifier, on ring) on the chains devices meet:
//! Let's Encrypt's shapes (an RSA-4096 root over RSA-2048 intermediates and leaves; a P-384
//! root and intermediate over P-256 or P-384 leaves signed ecdsa-with-SHA384; the P-384
//! root cross-signed by the RSA root), mixed chains, chains served out of order or with a
//! dead-end cross-sign first, altered signatures and wrong anchors. Both must reach the
//! same verdict, and the same reason where both name one; and the deferring verifier must
//! reach the software verifier's verdict with the same checks answered later.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SignatureAlgorithm as RcgenAlg,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, PKCS_RSA_SHA384,
    PKCS_RSA_SHA512,
};
use rustls_pki_types::{CertificateDer, UnixTime as PkiTime};
use xmpp_handshake_core::trust::{PkixOutcome, UnixTime};

use crate::pkix;
use crate::signature::{AsyncCheck, Deferred, OwnedCheck, SignatureError, Software};

const NOW: u64 = 1_800_000_000; // 2027: inside rcgen's default validity

const RSA_4096: &str = include_str!("testdata/rsa4096.pem");
const RSA_2048_A: &str = include_str!("testdata/rsa2048-a.pem");
const RSA_2048_B: &str = include_str!("testdata/rsa2048-b.pem");

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Field Test Group");
    dn.push(DnType::CommonName, cn);
    dn
}

/// A CA certificate's parameters as Let's Encrypt writes them (root: no path length;
/// intermediate: path length 0, serverAuth and clientAuth).
fn ca(cn: &str, intermediate: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if intermediate {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    } else {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p
}

/// A leaf as Let's Encrypt issues them since 2026: serverAuth only.
fn leaf_params() -> CertificateParams {
    let mut p = CertificateParams::new(vec![String::from("xmpp.example")]).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p
}

fn rsa_key(pem: &str, alg: &'static RcgenAlg) -> KeyPair {
    KeyPair::from_pem_and_sign_algo(pem, alg).unwrap()
}

fn ec_key(alg: &'static RcgenAlg) -> KeyPair {
    KeyPair::generate_for(alg).unwrap()
}

/// The same key again (a cross-signed certificate carries its subject's key).
fn same_key(key: &KeyPair) -> KeyPair {
    KeyPair::from_pem_and_sign_algo(&key.serialize_pem(), key.algorithm()).unwrap()
}

/// The hierarchy: `x1` (RSA-4096), `x2` (P-384), their intermediates, leaves, and the
/// cross-signs.
struct Pki {
    x1: CertifiedIssuer<'static, KeyPair>,
    x2: CertifiedIssuer<'static, KeyPair>,
    stranger: CertifiedIssuer<'static, KeyPair>,
    r_int: CertifiedIssuer<'static, KeyPair>,
    e_int: CertifiedIssuer<'static, KeyPair>,
    /// X2's subject and key, issued by X1 (RSA signature).
    x2_by_x1: Vec<u8>,
    /// X2's subject and key, issued by a CA no anchor names: a dead end.
    x2_by_stranger: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let x1 =
            CertifiedIssuer::self_signed(ca("Root X1", false), rsa_key(RSA_4096, &PKCS_RSA_SHA256))
                .unwrap();
        let x2_key = ec_key(&PKCS_ECDSA_P384_SHA384);
        let x2_cross_key = same_key(&x2_key);
        let x2_dead_key = same_key(&x2_key);
        let x2 = CertifiedIssuer::self_signed(ca("Root X2", false), x2_key).unwrap();
        let stranger =
            CertifiedIssuer::self_signed(ca("Root Y", false), ec_key(&PKCS_ECDSA_P256_SHA256))
                .unwrap();
        let x2_by_x1 = ca("Root X2", false)
            .signed_by(&x2_cross_key, &x1)
            .unwrap()
            .der()
            .to_vec();
        let x2_by_stranger = ca("Root X2", false)
            .signed_by(&x2_dead_key, &stranger)
            .unwrap()
            .der()
            .to_vec();
        let r_int =
            CertifiedIssuer::signed_by(ca("R1", true), rsa_key(RSA_2048_A, &PKCS_RSA_SHA256), &x1)
                .unwrap();
        let e_int =
            CertifiedIssuer::signed_by(ca("E1", true), ec_key(&PKCS_ECDSA_P384_SHA384), &x2)
                .unwrap();
        Pki {
            x1,
            x2,
            stranger,
            r_int,
            e_int,
            x2_by_x1,
            x2_by_stranger,
        }
    }

    fn leaf(&self, key: &KeyPair, by: &CertifiedIssuer<'static, KeyPair>) -> Vec<u8> {
        leaf_params().signed_by(key, by).unwrap().der().to_vec()
    }
}

fn der(issuer: &CertifiedIssuer<'static, KeyPair>) -> Vec<u8> {
    issuer.der().to_vec()
}

/// What both verifiers can name.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Valid,
    UnknownIssuer,
    BadSignature,
    Other,
}

fn ours(chain: &[&[u8]], anchors: &[&[u8]]) -> Verdict {
    match pkix::check_chain(chain, anchors, Some(UnixTime(NOW)), &mut Software) {
        PkixOutcome::Valid => Verdict::Valid,
        PkixOutcome::UnknownIssuer => Verdict::UnknownIssuer,
        PkixOutcome::BadSignature => Verdict::BadSignature,
        _ => Verdict::Other,
    }
}

fn webpki(chain: &[&[u8]], anchors: &[&[u8]]) -> Verdict {
    let anchor_ders: Vec<CertificateDer<'_>> =
        anchors.iter().map(|a| CertificateDer::from(*a)).collect();
    let anchors: Vec<_> = anchor_ders
        .iter()
        .map(|a| webpki::anchor_from_trusted_cert(a).unwrap())
        .collect();
    let leaf = CertificateDer::from(chain[0]);
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(*c))
        .collect();
    let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
    let verified = ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        PkiTime::since_unix_epoch(Duration::from_secs(NOW)),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    );
    match verified {
        Ok(_) => Verdict::Valid,
        Err(webpki::Error::UnknownIssuer) => Verdict::UnknownIssuer,
        Err(webpki::Error::InvalidSignatureForPublicKey) => Verdict::BadSignature,
        Err(_) => Verdict::Other,
    }
}

/// Always answers "invalid" later: with it, the deferring verifier must refuse.
struct Refuses;

impl AsyncCheck for Refuses {
    async fn check(&mut self, _check: &OwnedCheck) -> Result<(), SignatureError> {
        Err(SignatureError::Invalid)
    }
}

/// Answers later with the software verifier, counting the checks.
struct Later(usize);

impl AsyncCheck for Later {
    async fn check(&mut self, check: &OwnedCheck) -> Result<(), SignatureError> {
        self.0 += 1;
        crate::signature::SignatureVerifier::verify(&mut Software, &check.as_check())
    }
}

/// The deferring verifier's final verdict: decide, answer what was put off, decide again.
fn deferred<A: AsyncCheck>(chain: &[&[u8]], anchors: &[&[u8]], checker: A) -> Verdict {
    use crate::signature::SignatureVerifier;
    let mut verifier = Deferred::new(checker);
    let mut outcome;
    let mut rounds = 0;
    loop {
        outcome = pkix::check_chain(chain, anchors, Some(UnixTime(NOW)), &mut verifier);
        if !block_on(verifier.settle()) {
            break;
        }
        rounds += 1;
        assert!(rounds <= 8, "settles within a few rounds");
    }
    match outcome {
        PkixOutcome::Valid => Verdict::Valid,
        PkixOutcome::UnknownIssuer => Verdict::UnknownIssuer,
        PkixOutcome::BadSignature => Verdict::BadSignature,
        _ => Verdict::Other,
    }
}

/// Polls a future that never waits (the checkers above answer at once).
fn block_on<F: core::future::Future>(future: F) -> F::Output {
    use core::task::{Context, Poll, Waker};
    let mut future = core::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Flips one bit of the certificate's signature (its last byte).
fn altered(cert: &[u8]) -> Vec<u8> {
    let mut out = cert.to_vec();
    if let Some(last) = out.last_mut() {
        *last ^= 0x01;
    }
    out
}

fn same(case: &str, chain: &[&[u8]], anchors: &[&[u8]], expected: Verdict) {
    let theirs = webpki(chain, anchors);
    assert_eq!(theirs, expected, "{case}: webpki");
    assert_eq!(ours(chain, anchors), expected, "{case}: ours");
    assert_eq!(
        deferred(chain, anchors, Later(0)),
        expected,
        "{case}: deferred"
    );
    if expected == Verdict::Valid {
        assert_ne!(
            deferred(chain, anchors, Refuses),
            Verdict::Valid,
            "{case}: a deferred refusal is not ignored"
        );
    }
}

#[test]
fn lets_encrypt_shaped_chains_get_webpkis_verdicts() {
    let pki = Pki::new();
    let (x1, x2, stranger) = (der(&pki.x1), der(&pki.x2), der(&pki.stranger));
    let (r_int, e_int) = (der(&pki.r_int), der(&pki.e_int));

    // RSA: RSA-2048 leaf under an RSA-2048 intermediate under the RSA-4096 root.
    let rsa_leaf = pki.leaf(&rsa_key(RSA_2048_B, &PKCS_RSA_SHA256), &pki.r_int);
    same("RSA chain", &[&rsa_leaf, &r_int], &[&x1], Verdict::Valid);
    same(
        "RSA chain, wrong root",
        &[&rsa_leaf, &r_int],
        &[&x2],
        Verdict::UnknownIssuer,
    );
    same(
        "RSA chain, altered leaf signature",
        &[&altered(&rsa_leaf), &r_int],
        &[&x1],
        Verdict::BadSignature,
    );
    same(
        "RSA chain, altered intermediate signature",
        &[&rsa_leaf, &altered(&r_int)],
        &[&x1],
        Verdict::BadSignature,
    );

    // ECDSA: P-256 leaf under a P-384 intermediate under the P-384 root, SHA-384.
    let ec_leaf = pki.leaf(&ec_key(&PKCS_ECDSA_P256_SHA256), &pki.e_int);
    same("ECDSA chain", &[&ec_leaf, &e_int], &[&x2], Verdict::Valid);
    same(
        "ECDSA chain, altered",
        &[&altered(&ec_leaf), &e_int],
        &[&x2],
        Verdict::BadSignature,
    );
    let p384_leaf = pki.leaf(&ec_key(&PKCS_ECDSA_P384_SHA384), &pki.e_int);
    same("P-384 leaf", &[&p384_leaf, &e_int], &[&x2], Verdict::Valid);

    // The P-384 root cross-signed by the RSA root: either root is an anchor.
    let cross = [&ec_leaf[..], &e_int, &pki.x2_by_x1];
    same("cross-signed, X1", &cross, &[&x1], Verdict::Valid);
    same("cross-signed, X2", &cross, &[&x2], Verdict::Valid);
    same(
        "cross-signed, both",
        &cross,
        &[&stranger, &x1, &x2],
        Verdict::Valid,
    );
    same(
        "cross-signed, out of order",
        &[&ec_leaf, &pki.x2_by_x1, &e_int],
        &[&x1],
        Verdict::Valid,
    );
    same(
        "cross-signed, neither",
        &cross,
        &[&stranger],
        Verdict::UnknownIssuer,
    );
    // A dead end served first: a greedy walk takes it and fails; the search backtracks.
    same(
        "dead-end cross-sign first",
        &[&ec_leaf, &e_int, &pki.x2_by_stranger, &pki.x2_by_x1],
        &[&x1],
        Verdict::Valid,
    );
    same(
        "cross-sign altered",
        &[&ec_leaf, &e_int, &altered(&pki.x2_by_x1)],
        &[&x1],
        Verdict::BadSignature,
    );

    // Mixed: an ECDSA leaf under the RSA intermediate.
    let mixed = pki.leaf(&ec_key(&PKCS_ECDSA_P256_SHA256), &pki.r_int);
    same(
        "ECDSA leaf, RSA issuer",
        &[&mixed, &r_int],
        &[&x1],
        Verdict::Valid,
    );
}

#[test]
fn rsa_signatures_with_sha384_and_sha512_get_webpkis_verdicts() {
    let pki = Pki::new();
    let x1 = der(&pki.x1);
    for alg in [&PKCS_RSA_SHA384, &PKCS_RSA_SHA512] {
        let x1_again =
            CertifiedIssuer::self_signed(ca("Root X1", false), rsa_key(RSA_4096, alg)).unwrap();
        let int = CertifiedIssuer::signed_by(ca("R2", true), rsa_key(RSA_2048_A, alg), &x1_again)
            .unwrap();
        let leaf = pki.leaf(&rsa_key(RSA_2048_B, alg), &int);
        same(
            "RSA SHA-384/512",
            &[&leaf, &der(&int)],
            &[&x1],
            Verdict::Valid,
        );
    }
}

#[test]
fn deferred_checks_are_answered_once_each() {
    use crate::signature::SignatureVerifier;
    let pki = Pki::new();
    let ec_leaf = pki.leaf(&ec_key(&PKCS_ECDSA_P256_SHA256), &pki.e_int);
    let e_int = der(&pki.e_int);
    let x1 = der(&pki.x1);
    let chain: [&[u8]; 4] = [&ec_leaf, &e_int, &pki.x2_by_stranger, &pki.x2_by_x1];
    let mut verifier = Deferred::new(Later(0));
    let mut rounds = 0;
    let outcome = loop {
        let outcome = pkix::check_chain(&chain, &[&x1], Some(UnixTime(NOW)), &mut verifier);
        if !block_on(verifier.settle()) {
            break outcome;
        }
        rounds += 1;
    };
    assert_eq!(outcome, PkixOutcome::Valid);
    // All assumed valid, so the first round takes the dead end's link... which verifies
    // (same key), then finds no anchor for it and backtracks within the same round.
    assert!(rounds >= 1);
    let answered = verifier.known().count();
    let all: Vec<&OwnedCheck> = verifier.known().map(|(c, _)| c).collect();
    let distinct = all
        .iter()
        .enumerate()
        .filter(|(i, c)| !all[..*i].contains(c))
        .count();
    assert_eq!(answered, distinct, "no check answered twice");
}
