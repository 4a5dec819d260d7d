//! Each test is named after the rule it checks. Certificates are generated at test time
//! with rcgen (P-256 keys, leaves `CA:FALSE`). rcgen writes otherName values only as
//! UTF8String, which is right for XmppAddr; SRV-ID needs an IA5String, so certificates with
//! an SRV-ID carry a subjectAltName built by hand here ([`san_der`]).

extern crate std;

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    IsCa, Issuer, KeyPair, SanType,
};
#[cfg(feature = "sha-512")]
use sha2::Sha384;
use sha2::{Digest, Sha256};

use super::*;

const NOW: Option<UnixTime> = Some(UnixTime(1_750_000_000)); // June 2025
const XMPP_ADDR: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 5];

// ---------- certificate builders ----------

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn xmpp_addr(jid: &str) -> SanType {
    SanType::OtherName((XMPP_ADDR.to_vec(), jid.into()))
}

fn leaf_params(sans: Vec<SanType>, cn: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.subject_alt_names = sans;
    p.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p
}

/// A self-signed leaf (CA:FALSE, P-256) and its key.
fn self_signed(sans: Vec<SanType>, cn: Option<&str>) -> (Vec<u8>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let der = leaf_params(sans, cn)
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec();
    (der, key)
}

fn leaf(sans: Vec<SanType>) -> Vec<u8> {
    self_signed(sans, None).0
}

fn leaf_with_key(sans: Vec<SanType>, key: &KeyPair) -> Vec<u8> {
    leaf_params(sans, None)
        .self_signed(key)
        .unwrap()
        .der()
        .to_vec()
}

/// A leaf issued by a throwaway CA (issuer != subject).
fn ca_issued(sans: Vec<SanType>) -> Vec<u8> {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "Test CA");
    let issuer = Issuer::new(ca, ca_key);
    let mut p = leaf_params(sans, None);
    p.distinguished_name.push(DnType::CommonName, "leaf");
    let key = KeyPair::generate().unwrap();
    p.signed_by(&key, &issuer).unwrap().der().to_vec()
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// subjectAltName extension value, built by hand: SRV-IDs as otherName id-on-dnsSRV with an
/// IA5String (RFC 4985), plus dNSNames. rcgen cannot write a non-UTF8String otherName.
fn san_der(srv_ids: &[&str], dns_names: &[&str]) -> Vec<u8> {
    const ID_ON_DNS_SRV: [u8; 8] = [0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07];
    let mut names = Vec::new();
    for s in srv_ids {
        let mut other = tlv(0x06, &ID_ON_DNS_SRV);
        other.extend(tlv(0xA0, &tlv(0x16, s.as_bytes())));
        names.extend(tlv(0xA0, &other));
    }
    for d in dns_names {
        names.extend(tlv(0x82, d.as_bytes()));
    }
    tlv(0x30, &names)
}

fn srv_leaf(srv_ids: &[&str], dns_names: &[&str]) -> Vec<u8> {
    let mut p = leaf_params(vec![], None);
    p.custom_extensions.push(CustomExtension::from_oid_content(
        &[2, 5, 29, 17],
        san_der(srv_ids, dns_names),
    ));
    let key = KeyPair::generate().unwrap();
    p.self_signed(&key).unwrap().der().to_vec()
}

// ---------- policy helpers ----------

fn c2s(domain: &str) -> ReferenceIdentity {
    ReferenceIdentity::client_to_server(domain).unwrap()
}

fn check(policy: &CertificatePolicy, der: &[u8], domain: &str) -> Result<Verdict, CertError> {
    policy.verify_server(&[der], &c2s(domain), PkixOutcome::Valid, NOW, &mut NoPins)
}

fn matches(der: &[u8], domain: &str) -> bool {
    check(&CertificatePolicy::anchors(), der, domain).is_ok()
}

fn assert_name_mismatch(result: Result<Verdict, CertError>) {
    match result {
        Err(CertError::NameMismatch { .. }) => {}
        other => panic!("expected NameMismatch, got {other:?}"),
    }
}

// ---------- identity: DNS-ID ----------

#[test]
fn wildcard_only_in_leftmost_label() {
    assert!(matches(
        &leaf(vec![dns("*.example.org")]),
        "chat.example.org"
    ));
    // Not in an inner label.
    assert!(!matches(
        &leaf(vec![dns("chat.*.example.org")]),
        "chat.a.example.org"
    ));
    // Not as part of a label.
    assert!(!matches(
        &leaf(vec![dns("c*.example.org")]),
        "chat.example.org"
    ));
    assert!(!matches(
        &leaf(vec![dns("*chat.example.org")]),
        "chat.example.org"
    ));
    // Not over a public suffix alone.
    assert!(!matches(&leaf(vec![dns("*.org")]), "example.org"));
}

#[test]
fn wildcard_does_not_match_bare_domain() {
    let r = check(
        &CertificatePolicy::anchors(),
        &leaf(vec![dns("*.example.org")]),
        "example.org",
    );
    assert_name_mismatch(r);
}

#[test]
fn wildcard_matches_one_label_never_deeper() {
    assert!(!matches(
        &leaf(vec![dns("*.example.org")]),
        "a.b.example.org"
    ));
}

#[test]
fn dns_id_exact_match() {
    let v = check(
        &CertificatePolicy::anchors(),
        &leaf(vec![dns("example.org")]),
        "example.org",
    )
    .unwrap();
    assert_eq!(v.identity, Some(PresentedId::DnsId("example.org".into())));
    assert_eq!(v.basis, TrustBasis::Anchors);
    assert!(!matches(&leaf(vec![dns("example.org")]), "example.net"));
}

#[test]
fn trailing_dot_and_case_ignored() {
    assert!(matches(&leaf(vec![dns("EXAMPLE.org.")]), "Example.ORG."));
    assert!(matches(
        &leaf(vec![dns("*.Example.Org")]),
        "CHAT.example.org."
    ));
    assert!(matches(
        &leaf(vec![xmpp_addr("Example.Org.")]),
        "example.org"
    ));
    assert_eq!(c2s("Example.ORG.").domain(), "example.org");
}

#[test]
fn idn_a_label_compared() {
    let cert = leaf(vec![dns("XN--BCHER-KVA.example")]);
    assert!(matches(&cert, "xn--bcher-kva.example"));
    assert!(!matches(&cert, "xn--bcher-kva.example.net"));
    assert!(matches(
        &leaf(vec![dns("*.xn--bcher-kva.example")]),
        "chat.xn--bcher-kva.example"
    ));
}

#[cfg(not(feature = "idna"))]
#[test]
fn u_label_reference_refused_without_idna() {
    let err = ReferenceIdentity::client_to_server("bücher.example").unwrap_err();
    assert_eq!(err, ReferenceError::NotAscii);
    if cfg!(feature = "error-text") {
        assert!(err.to_string().contains("xn--bcher-kva.example"));
    } else {
        assert_eq!(err.to_string(), "not-ascii");
    }
}

#[cfg(feature = "idna")]
#[test]
fn u_label_reference_converted_with_idna() {
    let r = ReferenceIdentity::client_to_server("Bücher.example").unwrap();
    assert_eq!(r.domain(), "xn--bcher-kva.example");
    // An XmppAddr in U-label form compares through its A-label.
    assert!(matches(
        &leaf(vec![xmpp_addr("bücher.example")]),
        "xn--bcher-kva.example"
    ));
}

#[test]
fn reference_rejects_what_is_not_a_domain() {
    use ReferenceError::*;
    assert_eq!(ReferenceIdentity::client_to_server("").unwrap_err(), Empty);
    assert_eq!(
        ReferenceIdentity::client_to_server("*.example.org").unwrap_err(),
        Wildcard
    );
    assert_eq!(
        ReferenceIdentity::client_to_server("192.0.2.1").unwrap_err(),
        IpAddress
    );
    assert_eq!(
        ReferenceIdentity::client_to_server("[2001:db8::1]").unwrap_err(),
        IpAddress
    );
    assert_eq!(
        ReferenceIdentity::client_to_server("juliet@example.org").unwrap_err(),
        InvalidCharacter('@')
    );
    assert_eq!(
        ReferenceIdentity::client_to_server("a..org").unwrap_err(),
        EmptyLabel
    );
    assert_eq!(
        ReferenceIdentity::client_to_server("example.org:5222").unwrap_err(),
        InvalidCharacter(':')
    );
    assert_eq!(
        ReferenceIdentity::client_to_server("2001:db8::1").unwrap_err(),
        IpAddress
    );
    assert_eq!(
        ReferenceIdentity::client_to_server("-a.org").unwrap_err(),
        HyphenAtLabelEdge
    );
}

#[test]
fn reference_is_configured_domain_not_srv_target() {
    // The user configured example.org; DNS SRV says xmpp.hosting.example:5222. The
    // reference stays example.org (RFC 6120 §13.7.2.1), so the hoster's own certificate
    // does not verify, while one for example.org (here by SRV-ID, the hosting case RFC 6125
    // §6.5.1 is for) does.
    let reference = c2s("example.org");
    let hoster_cert = leaf(vec![dns("xmpp.hosting.example")]);
    let r = CertificatePolicy::anchors().verify_server(
        &[&hoster_cert],
        &reference,
        PkixOutcome::Valid,
        NOW,
        &mut NoPins,
    );
    match r {
        Err(CertError::NameMismatch {
            reference,
            presented,
        }) => {
            assert_eq!(reference, "example.org");
            assert_eq!(
                presented,
                vec![PresentedId::DnsId("xmpp.hosting.example".into())]
            );
        }
        other => panic!("expected NameMismatch, got {other:?}"),
    }
    let delegated = srv_leaf(&["_xmpp-client.example.org"], &["xmpp.hosting.example"]);
    let v = CertificatePolicy::anchors()
        .verify_server(
            &[&delegated],
            &reference,
            PkixOutcome::Valid,
            NOW,
            &mut NoPins,
        )
        .unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::SrvId("_xmpp-client.example.org".into()))
    );
}

#[test]
fn name_mismatch_lists_every_presented_identifier() {
    let der = self_signed(
        vec![dns("a.example"), xmpp_addr("b.example")],
        Some("c.example"),
    )
    .0;
    match check(&CertificatePolicy::anchors(), &der, "example.org") {
        Err(e @ CertError::NameMismatch { .. }) => {
            let CertError::NameMismatch { presented, .. } = &e else {
                unreachable!()
            };
            assert_eq!(
                presented,
                &vec![
                    PresentedId::DnsId("a.example".into()),
                    PresentedId::XmppAddr("b.example".into()),
                    PresentedId::CommonName("c.example".into()),
                ]
            );
            let text = e.to_string();
            assert!(
                text.contains("example.org") && text.contains("DNS-ID a.example"),
                "{text}"
            );
        }
        other => panic!("expected NameMismatch, got {other:?}"),
    }
}

// ---------- identity: SRV-ID, XmppAddr, CN ----------

#[test]
fn srv_id_matches_service() {
    let client = srv_leaf(&["_xmpp-client.example.org"], &[]);
    let v = check(&CertificatePolicy::anchors(), &client, "example.org").unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::SrvId("_xmpp-client.example.org".into()))
    );

    // The same certificate does not name the S2S service.
    let s2s = ReferenceIdentity::server_to_server("example.org").unwrap();
    let r = CertificatePolicy::anchors().verify_server(
        &[&client],
        &s2s,
        PkixOutcome::Valid,
        NOW,
        &mut NoPins,
    );
    assert_name_mismatch(r);

    let server = srv_leaf(&["_XMPP-SERVER.Example.org."], &[]);
    CertificatePolicy::anchors()
        .verify_server(&[&server], &s2s, PkixOutcome::Valid, NOW, &mut NoPins)
        .unwrap();
    // Other domain, other service label, wildcard: no.
    assert!(!matches(
        &srv_leaf(&["_xmpp-client.example.net"], &[]),
        "example.org"
    ));
    assert!(!matches(
        &srv_leaf(&["_imap.example.org"], &[]),
        "example.org"
    ));
    assert!(!matches(
        &srv_leaf(&["_xmpp-client.*.org"], &[]),
        "example.org"
    ));
}

#[test]
fn xmppaddr_matches_domain() {
    let v = check(
        &CertificatePolicy::anchors(),
        &leaf(vec![xmpp_addr("example.org")]),
        "example.org",
    )
    .unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::XmppAddr("example.org".into()))
    );
    // A JID with a localpart or resource is not the server's identity; no wildcards.
    assert!(!matches(
        &leaf(vec![xmpp_addr("admin@example.org")]),
        "example.org"
    ));
    assert!(!matches(
        &leaf(vec![xmpp_addr("example.org/res")]),
        "example.org"
    ));
    assert!(!matches(
        &leaf(vec![xmpp_addr("*.example.org")]),
        "chat.example.org"
    ));
    assert!(!matches(
        &leaf(vec![xmpp_addr("example.net")]),
        "example.org"
    ));
}

#[test]
fn cn_ignored_by_default() {
    let der = self_signed(vec![], Some("example.org")).0;
    assert_name_mismatch(check(&CertificatePolicy::anchors(), &der, "example.org"));
}

#[test]
fn cn_fallback_when_enabled_and_no_san() {
    let policy = CertificatePolicy {
        allow_cn_fallback: true,
        ..CertificatePolicy::anchors()
    };
    let der = self_signed(vec![], Some("Example.org")).0;
    let v = check(&policy, &der, "example.org").unwrap();
    assert_eq!(
        v.identity,
        Some(PresentedId::CommonName("Example.org".into()))
    );
    // Never when the certificate has SAN identifiers, even ones that do not match.
    let with_san = self_signed(vec![dns("other.example")], Some("example.org")).0;
    assert_name_mismatch(check(&policy, &with_san, "example.org"));
    // No wildcard in CN.
    let wild = self_signed(vec![], Some("*.example.org")).0;
    assert_name_mismatch(check(&policy, &wild, "chat.example.org"));
}

// ---------- dates ----------

#[test]
fn expired_certificate_refused() {
    let mut p = leaf_params(vec![dns("example.org")], None);
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2021, 1, 1);
    let der = p
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec();
    match check(&CertificatePolicy::anchors(), &der, "example.org") {
        Err(CertError::Expired { not_after, now }) => {
            assert_eq!(not_after, UnixTime(1_609_459_200));
            assert_eq!(Some(now), NOW);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[test]
fn not_yet_valid_certificate_refused() {
    let mut p = leaf_params(vec![dns("example.org")], None);
    p.not_before = date_time_ymd(2090, 1, 1);
    p.not_after = date_time_ymd(2091, 1, 1);
    let der = p
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec();
    assert!(matches!(
        check(&CertificatePolicy::anchors(), &der, "example.org"),
        Err(CertError::NotYetValid { .. })
    ));
}

#[test]
fn no_clock_is_an_explicit_choice() {
    let der = leaf(vec![dns("example.org")]);
    let r = CertificatePolicy::anchors().verify_server(
        &[&der],
        &c2s("example.org"),
        PkixOutcome::Valid,
        None,
        &mut NoPins,
    );
    assert_eq!(r.unwrap_err(), CertError::NoClock);
    let policy = CertificatePolicy {
        clock: ClockPolicy::SkipValidityWithoutClock,
        ..CertificatePolicy::anchors()
    };
    let v = policy
        .verify_server(
            &[&der],
            &c2s("example.org"),
            PkixOutcome::Valid,
            None,
            &mut NoPins,
        )
        .unwrap();
    assert!(!v.validity_checked);
}

// ---------- trust: anchors ----------

#[test]
fn unknown_ca_not_trusted() {
    let der = ca_issued(vec![dns("example.org")]);
    let r = CertificatePolicy::anchors().verify_server(
        &[&der],
        &c2s("example.org"),
        PkixOutcome::UnknownIssuer,
        NOW,
        &mut NoPins,
    );
    let pin = EndEntityCertificate::parse(&der).unwrap().pin();
    assert_eq!(
        r.unwrap_err(),
        CertError::UnknownIssuer {
            spki: pin.spki_sha256,
            cert: pin.cert_sha256
        }
    );
}

#[test]
fn self_signed_not_trusted() {
    let der = leaf(vec![dns("example.org")]);
    let r = CertificatePolicy::anchors().verify_server(
        &[&der],
        &c2s("example.org"),
        PkixOutcome::UnknownIssuer,
        NOW,
        &mut NoPins,
    );
    assert!(matches!(r, Err(CertError::SelfSigned { .. })), "{r:?}");
}

#[test]
fn other_chain_failures_are_chain_invalid() {
    let der = leaf(vec![dns("example.org")]);
    for outcome in [
        PkixOutcome::BadSignature,
        PkixOutcome::NotChecked,
        PkixOutcome::Expired,
    ] {
        let r = CertificatePolicy::anchors().verify_server(
            &[&der],
            &c2s("example.org"),
            outcome.clone(),
            NOW,
            &mut NoPins,
        );
        assert_eq!(r.unwrap_err(), CertError::ChainInvalid { outcome });
    }
}

#[test]
fn empty_or_garbled_chain_refused() {
    let r = CertificatePolicy::anchors().verify_server(
        &[],
        &c2s("example.org"),
        PkixOutcome::Valid,
        NOW,
        &mut NoPins,
    );
    assert_eq!(r.unwrap_err(), CertError::EmptyChain);
    assert_eq!(
        check(
            &CertificatePolicy::anchors(),
            b"\x30\x03\x02\x01\x00",
            "example.org"
        )
        .unwrap_err(),
        CertError::BadEncoding
    );
}

// ---------- trust: pins ----------

#[test]
fn pin_changed_is_loud_error_with_both_fingerprints() {
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::Record);
    let reference = c2s("example.org");
    let mut store = MemoryPinStore::new();

    let first = leaf(vec![dns("example.org")]);
    let v = policy
        .verify_server(
            &[&first],
            &reference,
            PkixOutcome::UnknownIssuer,
            NOW,
            &mut store,
        )
        .unwrap();
    assert_eq!(v.basis, TrustBasis::FirstUse);
    assert!(v.pinned_now);
    let old = EndEntityCertificate::parse(&first).unwrap().pin();
    assert_eq!(store.load("example.org"), Some(old));

    let v = policy
        .verify_server(
            &[&first],
            &reference,
            PkixOutcome::UnknownIssuer,
            NOW,
            &mut store,
        )
        .unwrap();
    assert_eq!(v.basis, TrustBasis::StoredPin);
    assert!(!v.pinned_now);

    // New key: loud, typed, both fingerprints; even a chain that validates does not
    // override the pin, and the store keeps the old pin.
    let changed = leaf(vec![dns("example.org")]);
    let new = EndEntityCertificate::parse(&changed).unwrap().pin();
    let err = policy
        .verify_server(&[&changed], &reference, PkixOutcome::Valid, NOW, &mut store)
        .unwrap_err();
    assert_eq!(
        err,
        CertError::PinChanged(Box::new(PinChange {
            domain: "example.org".into(),
            old_spki: old.spki_sha256,
            new_spki: new.spki_sha256,
            old_cert: old.cert_sha256,
            new_cert: new.cert_sha256,
        }))
    );
    let text = err.to_string();
    for fp in [
        old.spki_sha256,
        new.spki_sha256,
        old.cert_sha256,
        new.cert_sha256,
    ] {
        assert!(text.contains(&fp.to_string()), "{text}");
    }
    if cfg!(feature = "error-text") {
        assert!(text.contains("CHANGED"));
    }
    assert_eq!(store.load("example.org"), Some(old));

    // The explicit interactive call, and only it, moves the pin.
    assert_eq!(accept_changed_certificate(&mut store, &err).unwrap(), new);
    let v = policy
        .verify_server(
            &[&changed],
            &reference,
            PkixOutcome::UnknownIssuer,
            NOW,
            &mut store,
        )
        .unwrap();
    assert_eq!(v.basis, TrustBasis::StoredPin);
    // Other errors cannot be "accepted".
    let mismatch = CertError::NameMismatch {
        reference: "example.org".into(),
        presented: vec![],
    };
    assert_eq!(
        accept_changed_certificate(&mut store, &mismatch).unwrap_err(),
        AcceptError::NotApplicable
    );
}

#[test]
fn pin_survives_renewal_with_same_key() {
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::Record);
    let key = KeyPair::generate().unwrap();
    let mut store = MemoryPinStore::new();
    let first = leaf_with_key(vec![dns("example.org")], &key);
    policy
        .verify_server(
            &[&first],
            &c2s("example.org"),
            PkixOutcome::UnknownIssuer,
            NOW,
            &mut store,
        )
        .unwrap();
    let renewed = leaf_with_key(vec![dns("example.org"), dns("www.example.org")], &key);
    let v = policy
        .verify_server(
            &[&renewed],
            &c2s("example.org"),
            PkixOutcome::UnknownIssuer,
            NOW,
            &mut store,
        )
        .unwrap();
    assert_eq!(v.basis, TrustBasis::StoredPin);
    assert_eq!(
        store.load("example.org").unwrap().cert_sha256,
        Fingerprint::of(&renewed)
    );
}

#[test]
fn first_use_ask_user_fails_closed_until_approved() {
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::AskUser);
    let mut store = MemoryPinStore::new();
    let der = leaf(vec![dns("example.org")]);
    let pin = EndEntityCertificate::parse(&der).unwrap().pin();
    let err = policy
        .verify_server(
            &[&der],
            &c2s("example.org"),
            PkixOutcome::UnknownIssuer,
            NOW,
            &mut store,
        )
        .unwrap_err();
    assert_eq!(
        err,
        CertError::NotTrustedFirstUse {
            domain: "example.org".into(),
            spki: pin.spki_sha256,
            cert: pin.cert_sha256,
            self_signed: true,
        }
    );
    assert!(store.is_empty());
    approve_first_use(&mut store, &err).unwrap();
    let v = policy
        .verify_server(
            &[&der],
            &c2s("example.org"),
            PkixOutcome::UnknownIssuer,
            NOW,
            &mut store,
        )
        .unwrap();
    assert_eq!(v.basis, TrustBasis::StoredPin);
}

#[test]
fn first_use_with_valid_chain_is_pinned() {
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::AskUser);
    let mut store = MemoryPinStore::new();
    let der = ca_issued(vec![dns("example.org")]);
    let v = policy
        .verify_server(
            &[&der],
            &c2s("example.org"),
            PkixOutcome::Valid,
            NOW,
            &mut store,
        )
        .unwrap();
    assert_eq!(v.basis, TrustBasis::Anchors);
    assert!(v.pinned_now);
    assert_eq!(store.len(), 1);
}

#[test]
fn identity_checked_before_pinning() {
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::Record);
    let mut store = MemoryPinStore::new();
    let der = leaf(vec![dns("attacker.example")]);
    let r = policy.verify_server(
        &[&der],
        &c2s("example.org"),
        PkixOutcome::UnknownIssuer,
        NOW,
        &mut store,
    );
    assert_name_mismatch(r);
    assert!(store.is_empty());
}

#[test]
fn configured_pin_replaces_chain_check() {
    let der = leaf(vec![dns("example.org")]);
    let pin = EndEntityCertificate::parse(&der).unwrap().pin();
    let policy = CertificatePolicy::pinned(vec![pin.spki_sha256]);
    let ran = Cell::new(false);
    let v = policy
        .verify_server(
            &[&der],
            &c2s("example.org"),
            || {
                ran.set(true);
                PkixOutcome::UnknownIssuer
            },
            NOW,
            &mut NoPins,
        )
        .unwrap();
    assert_eq!(v.basis, TrustBasis::ConfiguredPin);
    assert!(
        !ran.get(),
        "the chain check must not run for a configured pin"
    );

    let other = leaf(vec![dns("example.org")]);
    let r = policy.verify_server(
        &[&other],
        &c2s("example.org"),
        PkixOutcome::Valid,
        NOW,
        &mut NoPins,
    );
    assert!(matches!(r, Err(CertError::PinMismatch { .. })), "{r:?}");
}

#[test]
fn failed_pin_store_write_fails_closed() {
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::Record);
    let der = leaf(vec![dns("example.org")]);
    let r = policy.verify_server(
        &[&der],
        &c2s("example.org"),
        PkixOutcome::UnknownIssuer,
        NOW,
        &mut NoPins,
    );
    assert!(matches!(r, Err(CertError::PinStore(_))), "{r:?}");
}

// ---------- fingerprints and channel binding ----------

#[test]
fn fingerprint_printed_like_openssl() {
    let fp = Fingerprint::of(b"abc");
    let text = fp.to_string();
    assert_eq!(
        text,
        "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
    );
    assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
    assert_eq!(
        "sha256 Fingerprint=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            .parse::<Fingerprint>()
            .unwrap(),
        fp
    );
    assert!("BA:78".parse::<Fingerprint>().is_err());
}

#[test]
fn spki_fingerprint_is_key_not_certificate() {
    let key = KeyPair::generate().unwrap();
    let a = EndEntityCertificate::parse(&leaf_with_key(vec![dns("a.example")], &key)).unwrap();
    let b = EndEntityCertificate::parse(&leaf_with_key(vec![dns("b.example")], &key)).unwrap();
    assert_eq!(a.pin().spki_sha256, b.pin().spki_sha256);
    assert_ne!(a.pin().cert_sha256, b.pin().cert_sha256);
    assert_eq!(
        a.pin().spki_sha256,
        Fingerprint::of(&rcgen::PublicKeyData::subject_public_key_info(&key))
    );
}

#[test]
fn tls_server_end_point_uses_signature_hash() {
    let p256 = leaf(vec![dns("example.org")]);
    assert_eq!(
        tls_server_end_point(&p256).unwrap(),
        Sha256::digest(&p256).to_vec()
    );

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p384 = leaf_with_key(vec![dns("example.org")], &key);
    #[cfg(feature = "sha-512")]
    assert_eq!(
        tls_server_end_point(&p384).unwrap(),
        Sha384::digest(&p384).to_vec()
    );
    // ecdsa-with-SHA384: a build without SHA-384 cannot compute it.
    #[cfg(not(feature = "sha-512"))]
    assert_eq!(
        tls_server_end_point(&p384).unwrap_err(),
        CertError::ChannelBindingUndefined {
            signature_algorithm: "1.2.840.10045.4.3.3".into()
        }
    );

    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed = leaf_with_key(vec![dns("example.org")], &key);
    assert_eq!(
        tls_server_end_point(&ed).unwrap_err(),
        CertError::ChannelBindingUndefined {
            signature_algorithm: "1.3.101.112".into()
        }
    );
    // The verdict carries it too.
    let v = check(&CertificatePolicy::anchors(), &p256, "example.org").unwrap();
    assert_eq!(v.tls_server_end_point, Some(Sha256::digest(&p256).to_vec()));
}

// ---------- receiving entity: client certificates ----------

#[test]
fn client_certificate_identities_for_external() {
    let der = leaf(vec![xmpp_addr("juliet@example.org")]);
    let id = CertificatePolicy::anchors()
        .verify_client(&[&der], PkixOutcome::Valid, NOW)
        .unwrap();
    assert_eq!(id.xmpp_addrs, vec![String::from("juliet@example.org")]);
    assert_eq!(id.sole_xmpp_addr(), Some("juliet@example.org"));
    assert!(id.authorizes("Juliet@Example.ORG/balcony"));
    assert!(!id.authorizes("romeo@example.org"));
    assert!(!id.authorizes("example.org"));
    // Untrusted chain: refused.
    let r = CertificatePolicy::anchors().verify_client(&[&der], PkixOutcome::UnknownIssuer, NOW);
    assert!(matches!(r, Err(CertError::SelfSigned { .. })), "{r:?}");
}

#[test]
fn client_certificate_without_identity_refused() {
    let der = self_signed(vec![], Some("juliet")).0;
    let r = CertificatePolicy::anchors().verify_client(&[&der], PkixOutcome::Valid, NOW);
    assert_eq!(r.unwrap_err(), CertError::NoClientIdentity);
}

#[test]
fn s2s_peer_verified_against_stream_domain() {
    let der = leaf(vec![dns("conference.example.net")]);
    let peer = ReferenceIdentity::server_to_server("conference.example.net").unwrap();
    CertificatePolicy::anchors()
        .verify_server(&[&der], &peer, PkixOutcome::Valid, NOW, &mut NoPins)
        .unwrap();
}

#[cfg(feature = "error-text")]
#[test]
fn display_says_what_to_do() {
    let fp = Fingerprint::of(b"k");
    let cases: Vec<CertError> = vec![
        CertError::UnknownIssuer { spki: fp, cert: fp },
        CertError::SelfSigned { spki: fp, cert: fp },
        CertError::NoClock,
        CertError::NotTrustedFirstUse {
            domain: "example.org".into(),
            spki: fp,
            cert: fp,
            self_signed: true,
        },
    ];
    for e in cases {
        let text = e.to_string();
        assert!(text.len() > 40, "{text}");
    }
    assert!(CertError::SelfSigned { spki: fp, cert: fp }
        .to_string()
        .contains(&fp.to_string()));
}

#[cfg(feature = "insecure-skip-verify")]
#[test]
fn insecure_skip_verify_checks_nothing() {
    let policy = CertificatePolicy {
        trust: Trust::InsecureSkipVerify,
        ..CertificatePolicy::anchors()
    };
    let der = leaf(vec![dns("attacker.example")]);
    let v = policy
        .verify_server(
            &[&der],
            &c2s("example.org"),
            PkixOutcome::UnknownIssuer,
            None,
            &mut NoPins,
        )
        .unwrap();
    assert_eq!(v.basis, TrustBasis::InsecureSkipVerify);
    assert_eq!(v.identity, None);
}
