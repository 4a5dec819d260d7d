//! The initiating entity against the receiving entity over an in-memory pipe, with real
//! rustls on both sides (RFC 6120 §5), and a tap on the wire to check what crossed it.

mod common;

use common::*;
use xmpp_handshake_core::connection::Step;
use xmpp_handshake_core::initiator::InitiatorConfig;
use xmpp_handshake_core::trust::CertError;
use xmpp_handshake_core::{Error, ErrorKind, TlsError};

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
    // rustls's own verifier (no XMPP policy in this client): both test CAs have the same
    // name, so the chain's signature fails, which rustls reports as it reports a handshake
    // signature that does not verify (see `verify::classify`). Either way a certificate
    // failure, typed. The server's handshake fails too (the client's alert, or its close).
    let error = c.as_ref().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Certificate, "{error:?}");
    assert!(matches!(&s, Err(Error::Tls(_))), "{s:?}");
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
    assert!(
        matches!(
            &c,
            Err(Error::Tls(TlsError::Certificate(
                CertError::ChainInvalid { .. }
            )))
        ),
        "{c:?}"
    );
}
