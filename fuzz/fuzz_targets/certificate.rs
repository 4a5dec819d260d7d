//! Certificate identity extraction (RFC 6120 §13.7.1.4, RFC 6125): a DER end-entity
//! certificate decoded, its presented identifiers (DNS-ID, SRV-ID, XmppAddr, CN) read, and
//! the server and client policies applied to it for C2S and S2S reference identities.
//!
//! Input: byte 0 picks the policy options; the rest is the certificate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xmpp_handshake_core::trust::{
    CertificatePolicy, EndEntityCertificate, FirstUse, MemoryPinStore, PkixOutcome, PresentedId,
    ReferenceIdentity, UnixTime,
};

fuzz_target!(|data: &[u8]| {
    let Some((&options, der)) = data.split_first() else {
        return;
    };
    if let Ok(cert) = EndEntityCertificate::parse(der) {
        for id in cert.presented() {
            let text = id.to_string();
            if let PresentedId::XmppAddr(a) | PresentedId::DnsId(a) = id {
                assert!(text.ends_with(a.as_str()));
            }
        }
        let _ = cert.has_san_identifiers();
        let _ = cert.tls_server_end_point();
        let _ = (cert.not_before(), cert.not_after(), cert.is_self_issued());
    }

    let mut policy = if options & 1 == 0 {
        CertificatePolicy::anchors()
    } else {
        CertificatePolicy::trust_on_first_use(FirstUse::Record)
    };
    policy.allow_cn_fallback = options & 2 != 0;
    let now = (options & 4 == 0).then_some(UnixTime(1_764_000_000));
    let pkix = if options & 8 == 0 {
        PkixOutcome::Valid
    } else {
        PkixOutcome::UnknownIssuer
    };
    let reference = if options & 16 == 0 {
        ReferenceIdentity::client_to_server("example.com")
    } else {
        ReferenceIdentity::server_to_server("example.com")
    }
    .expect("a valid reference");
    let mut pins = MemoryPinStore::new();
    let chain = [der];
    if let Ok(verdict) = policy.verify_server(&chain, &reference, pkix.clone(), now, &mut pins) {
        assert!(
            verdict.identity.is_some(),
            "accepted without a matching identity"
        );
    }
    if let Ok(client) = policy.verify_client(&chain, pkix, now) {
        let _ = client.sole_xmpp_addr();
        let _ = client.authorizes("user@example.com");
    }
});
