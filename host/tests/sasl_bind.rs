//! SASL and resource binding end to end (RFC 6120 §6-7): our initiating entity against our
//! receiving entity over real rustls, for each mechanism, then a stanza each way and a
//! clean close (§4.4).

mod common;

use std::sync::Arc;

use common::*;
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::receiver::ReceiverConfig;
use xmpp_handshake_core::sasl::{
    Credentials, Mechanism, MemoryStore, Minimum, SaslError, SaslFailure, SaslPolicy, ScramHash,
    ServerOptions,
};
use xmpp_handshake_core::{stanza, Error};

const PASSWORD: &str = "r0m30myr0m30";

fn client(credentials: Credentials, policy: SaslPolicy) -> InitiatorConfig {
    let mut config = InitiatorConfig::client("example.com");
    config.from = Some("juliet@example.com".into());
    config.sasl = Some(ClientSasl {
        credentials,
        policy,
        resource: Some("balcony".into()),
        pipeline_mechanism: None,
        pipeline_offer: None,
        pipeline_bind: true,
        sasl2: Default::default(),
    });
    config
}

fn server(options: ServerOptions) -> (ReceiverConfig, MemoryStore) {
    let mut config = ReceiverConfig::client_to_server("example.com");
    config.sasl = Some(options);
    let mut store = MemoryStore::new();
    store.add_password("juliet", PASSWORD, 4096, &mut rand_core::OsRng);
    (config, store)
}

fn only(hashes: &[ScramHash], channel_binding: bool, plain: bool) -> ServerOptions {
    ServerOptions {
        scram_hashes: hashes.to_vec(),
        channel_binding,
        plain,
        ..ServerOptions::default()
    }
}

fn tls12_client(pki: &Pki) -> xmpp_handshake_host::upgrade::RustlsClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    xmpp_handshake_host::upgrade::RustlsClient::new(Arc::new(config))
}

/// Negotiates, checks the bound JID and the mechanism, then exchanges one message each
/// way and closes both streams cleanly.
async fn login(options: ServerOptions, credentials: Credentials, tls12: bool) -> Mechanism {
    let pki = pki("example.com");
    let (server_config, store) = server(options);
    let client_tls = if tls12 {
        tls12_client(&pki)
    } else {
        client_tls(&pki)
    };
    let pair = run_pair_with(
        client(credentials, SaslPolicy::default()),
        server_config,
        store,
        client_tls,
        server_tls(&pki, "example.com"),
    )
    .await;
    // No credential crosses the wire in clear, and SASL never starts before TLS.
    let wire = String::from_utf8_lossy(&pair.wire).into_owned();
    assert!(!wire.contains(PASSWORD) && !wire.contains("<auth"));
    let mut c = pair.client.expect("client negotiates");
    let mut s = pair.server.expect("server negotiates");
    assert_eq!(c.outcome.jid, s.outcome.jid);
    let mechanism = c.outcome.mechanism.expect("SASL ran");
    assert_eq!(s.outcome.mechanism, Some(mechanism));
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
        // Answered in place: the raw text and the session's own parse of it.
        let (raw, body) = c
            .next_element_with(|raw, node| {
                let body = node
                    .children()
                    .find(|n| n.tag_name().name() == "body")
                    .and_then(|b| b.text());
                (raw.to_string(), body.map(str::to_string))
            })
            .await
            .unwrap()
            .unwrap();
        assert!(raw.starts_with("<message") && raw.contains("Neither, fair saint"));
        assert_eq!(body.as_deref(), Some("Neither, fair saint"));
        let server_side = async {
            assert_eq!(s.next_element().await.unwrap(), None, "client closed");
            s.close().await.unwrap()
        };
        let (client_closed, server_transport) = tokio::join!(c.close(), server_side);
        let client_transport = client_closed.unwrap();
        assert!(client_transport.is_tls() && server_transport.is_tls());
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .expect("exchange ends in time");
    mechanism
}

#[tokio::test]
async fn scram_sha_256_plus_with_tls_exporter_binds() {
    let m = login(
        ServerOptions::default(),
        Credentials::password("juliet", PASSWORD),
        false,
    )
    .await;
    assert_eq!(m, Mechanism::ScramSha256Plus);
}

#[tokio::test]
async fn scram_plus_over_tls12_uses_tls_server_end_point() {
    // TLS 1.2 has no tls-exporter here (RFC 9266): the binding is tls-server-end-point.
    let m = login(
        ServerOptions::default(),
        Credentials::password("juliet", PASSWORD),
        true,
    )
    .await;
    assert_eq!(m, Mechanism::ScramSha256Plus);
}

#[tokio::test]
async fn scram_sha_1_binds() {
    let options = only(&[ScramHash::Sha1], false, false);
    let m = login(options, Credentials::password("juliet", PASSWORD), false).await;
    assert_eq!(m, Mechanism::ScramSha1);
}

#[tokio::test]
async fn scram_sha_1_plus_binds() {
    let options = only(&[ScramHash::Sha1], true, false);
    let m = login(options, Credentials::password("juliet", PASSWORD), false).await;
    assert_eq!(m, Mechanism::ScramSha1Plus);
}

#[tokio::test]
async fn scram_sha_512_binds() {
    let options = only(&[ScramHash::Sha512], false, false);
    let m = login(options, Credentials::password("juliet", PASSWORD), false).await;
    assert_eq!(m, Mechanism::ScramSha512);
}

#[tokio::test]
async fn plain_over_tls_binds() {
    let options = only(&[], false, true);
    let m = login(options, Credentials::password("juliet", PASSWORD), false).await;
    assert_eq!(m, Mechanism::Plain);
}

#[tokio::test]
async fn anonymous_binds() {
    let options = ServerOptions {
        anonymous: true,
        ..only(&[], false, false)
    };
    let m = login(options, Credentials::anonymous(None), false).await;
    assert_eq!(m, Mechanism::Anonymous);
}

async fn failed_login(
    options: ServerOptions,
    credentials: Credentials,
    policy: SaslPolicy,
) -> (Error, usize) {
    let pki = pki("example.com");
    let (server_config, store) = server(options);
    let pair = run_pair_with(
        client(credentials, policy),
        server_config,
        store,
        client_tls(&pki),
        server_tls(&pki, "example.com"),
    )
    .await;
    let attempts = pair
        .steps
        .iter()
        .filter(|s| **s == xmpp_handshake_core::connection::Step::AuthStarted)
        .count();
    (pair.client.err().expect("login fails"), attempts)
}

#[tokio::test]
async fn wrong_password_is_a_typed_failure() {
    let (e, _) = failed_login(
        only(&[ScramHash::Sha256], false, false),
        Credentials::password("juliet", "wrong"),
        SaslPolicy::default(),
    )
    .await;
    assert!(
        matches!(
            e,
            Error::AuthenticationFailed {
                error: SaslError::Failure(SaslFailure::NotAuthorized),
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn wrong_password_on_plus_reports_binding_rejection_and_is_not_retried() {
    // A failed -PLUS exchange may be a wrong password, a server that cannot check the
    // binding, or a broken binding: reported as such, tried once, never downgraded.
    let (e, attempts) = failed_login(
        ServerOptions::default(),
        Credentials::password("juliet", "wrong"),
        SaslPolicy::default(),
    )
    .await;
    assert!(
        matches!(
            e,
            Error::AuthenticationFailed {
                error: SaslError::ChannelBindingRejected { .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn scram_only_policy_refuses_plain_only_server() {
    let policy = SaslPolicy {
        minimum: Minimum::Scram,
        ..SaslPolicy::default()
    };
    let (e, _) = failed_login(
        only(&[], false, true),
        Credentials::password("juliet", PASSWORD),
        policy,
    )
    .await;
    assert_eq!(e, Error::Sasl(SaslError::NoAcceptableMechanism));
}

#[tokio::test]
async fn server_chooses_resource_when_none_requested() {
    let pki = pki("example.com");
    let (server_config, store) = server(ServerOptions::default());
    let mut config = client(
        Credentials::password("juliet", PASSWORD),
        SaslPolicy::default(),
    );
    if let Some(sasl) = config.sasl.as_mut() {
        sasl.resource = None;
    }
    let pair = run_pair_with(
        config,
        server_config,
        store,
        client_tls(&pki),
        server_tls(&pki, "example.com"),
    )
    .await;
    let jid = pair.client_outcome().unwrap().jid.clone().unwrap();
    let resource = jid.strip_prefix("juliet@example.com/").expect("full JID");
    assert!(!resource.is_empty());
}

#[tokio::test]
async fn external_with_client_certificate_binds() {
    use common::certs::{leaf, provider, xmpp_addr, Pki as MatrixPki};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use xmpp_handshake_core::trust::{CertificatePolicy, Service};
    use xmpp_handshake_host::tls::verify::client_cert_verifier;
    use xmpp_handshake_host::upgrade::{Certificates, RustlsClient, RustlsServer};

    // The server's certificate, and a client certificate naming juliet@example.com
    // (XmppAddr, XEP-0178) from a CA the server trusts for clients.
    let server_pki = pki("example.com");
    let clients = MatrixPki::new("Clients");
    let mut params = leaf(vec![xmpp_addr("juliet@example.com")], None);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = clients.issue(params);

    let mut certs = Certificates::default();
    certs.insert("example.com", server_pki.server.clone());
    let template = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_cert_verifier(clients.roots(), provider()).unwrap())
        .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()));
    let server_tls = RustlsServer::new(certs, template)
        .with_external(CertificatePolicy::anchors(), Service::Client);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_pki.ca.clone()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_cert.key.serialize_der()));
    let client_config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(client_cert.chain.clone(), key)
        .unwrap();
    let client_tls = RustlsClient::new(Arc::new(client_config));

    let (server_config, store) = server(ServerOptions::default());
    let mut credentials = Credentials::external(None);
    credentials.client_certificate = true;
    let pair = run_pair_with(
        client(credentials, SaslPolicy::default()),
        server_config,
        store,
        client_tls,
        server_tls,
    )
    .await;
    let outcome = pair.client_outcome().expect("EXTERNAL login");
    assert_eq!(outcome.mechanism, Some(Mechanism::External));
    assert_eq!(outcome.jid.as_deref(), Some("juliet@example.com/balcony"));
}
