//! The real-server harness, proved without any XMPP code of ours: raw streams, STARTTLS and
//! direct TLS by hand (tokio-rustls trusting the harness CA), SASL PLAIN to check the users,
//! RFC 7395 WebSocket on the http and https ports, and cleanup on drop.
//!
//! Without the servers installed these tests print a skip, unless
//! `XMPP_HANDSHAKE_REQUIRE_SERVERS=1` (tests/run sets it): then they fail.

use std::future::Future;
use std::net::TcpStream as StdTcpStream;
use std::time::Duration;

use xmpp_handshake_tests::raw::{self, ws};
use xmpp_handshake_tests::{
    Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, ScramHash, ServerInfo, TlsPolicy, User,
};

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn assert_has(text: &str, needle: &str, what: &str) {
    assert!(
        text.contains(needle),
        "{what}: expected {needle:?} in {text:?}"
    );
}

fn assert_lacks(text: &str, needle: &str, what: &str) {
    assert!(
        !text.contains(needle),
        "{what}: did not expect {needle:?} in {text:?}"
    );
}

/// Plain c2s: stream header back, `<starttls>` (with `<required/>` when required).
async fn check_plain_c2s(s: &ServerInfo) -> String {
    let mut tcp = raw::connect(s.c2s_addr()).await.unwrap();
    raw::send(&mut tcp, &raw::client_stream_header(&s.domain))
        .await
        .unwrap();
    let reply = raw::read_features(&mut tcp).await.unwrap();
    assert_has(&reply, "<stream:stream", "plain c2s header");
    assert_has(
        &reply,
        "http://etherx.jabber.org/streams",
        "plain c2s header",
    );
    assert_has(&reply, &s.domain, "plain c2s header from=");
    assert_has(&reply, "<starttls", "plain c2s features");
    match s.tls {
        TlsPolicy::Required => {
            let starttls = &reply[reply.find("<starttls").unwrap()..];
            let end = starttls.find("</starttls>").unwrap_or(starttls.len());
            assert_has(&starttls[..end], "<required", "starttls element");
        }
        TlsPolicy::Optional => assert_lacks(&reply, "<required", "optional starttls"),
    }
    reply
}

/// STARTTLS by hand, new header, post-TLS features; returns (stream, features).
async fn starttls_features(
    s: &ServerInfo,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    String,
) {
    let tcp = raw::connect(s.c2s_addr()).await.unwrap();
    let (mut tls, _pre) = raw::starttls(tcp, s.tls_client_config(), &s.domain)
        .await
        .unwrap();
    // The server presented the harness leaf.
    let (_, conn) = tls.get_ref();
    let chain = conn.peer_certificates().expect("server certificates");
    assert_eq!(
        chain[0].as_ref(),
        s.pki.leaf_der.as_slice(),
        "leaf presented"
    );
    raw::send(&mut tls, &raw::client_stream_header(&s.domain))
        .await
        .unwrap();
    let features = raw::read_features(&mut tls).await.unwrap();
    assert_has(&features, "<stream:stream", "post-TLS header");
    assert_lacks(&features, "<starttls", "post-TLS features");
    (tls, features)
}

/// Direct TLS (XEP-0368): handshake, header, features with SASL.
async fn check_direct_tls(s: &ServerInfo) -> String {
    let tcp = raw::connect(s.direct_tls_addr()).await.unwrap();
    let mut tls = raw::tls_connect(tcp, s.tls_client_config(), &s.domain)
        .await
        .unwrap();
    raw::send(&mut tls, &raw::client_stream_header(&s.domain))
        .await
        .unwrap();
    let features = raw::read_features(&mut tls).await.unwrap();
    assert_has(&features, "<stream:stream", "direct TLS header");
    assert_has(&features, "<mechanisms", "direct TLS features");
    features
}

/// SASL PLAIN over direct TLS: `<success/>` for the right password, `<failure>` otherwise.
async fn check_login(s: &ServerInfo, user: &User) {
    for (password, expect) in [(user.password.as_str(), "<success"), ("wrong", "<failure")] {
        let tcp = raw::connect(s.direct_tls_addr()).await.unwrap();
        let mut tls = raw::tls_connect(tcp, s.tls_client_config(), &s.domain)
            .await
            .unwrap();
        raw::send(&mut tls, &raw::client_stream_header(&s.domain))
            .await
            .unwrap();
        raw::read_features(&mut tls).await.unwrap();
        raw::send(&mut tls, &raw::sasl_plain_auth(&user.name, password))
            .await
            .unwrap();
        let end = if expect == "<success" {
            "success"
        } else {
            "</failure>"
        };
        let reply = raw::read_until(&mut tls, end, raw::READ_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("login {} ({password}): {e}", user.name));
        assert_has(&reply, expect, &format!("PLAIN as {}", user.name));
    }
}

/// RFC 7395 on the plain http port and on the https port: upgrade, `<open/>`, features.
async fn check_websockets(s: &ServerInfo) {
    let mut tcp = raw::connect(s.addr(s.ports.http)).await.unwrap();
    let host = format!("{}:{}", s.domain, s.ports.http);
    ws::handshake(&mut tcp, &host, "/xmpp-websocket")
        .await
        .unwrap();
    ws::send_text(&mut tcp, &ws::open(&s.domain)).await.unwrap();
    let reply = ws::read_until(&mut tcp, "features").await.unwrap();
    assert_has(&reply, "<open", "ws open");
    assert_has(&reply, "urn:ietf:params:xml:ns:xmpp-framing", "ws open");

    let tcp = raw::connect(s.addr(s.ports.https)).await.unwrap();
    let mut tls = raw::tls_connect(tcp, s.tls_client_config(), &s.domain)
        .await
        .unwrap();
    let host = format!("{}:{}", s.domain, s.ports.https);
    ws::handshake(&mut tls, &host, "/xmpp-websocket")
        .await
        .unwrap();
    ws::send_text(&mut tls, &ws::open(&s.domain)).await.unwrap();
    let reply = ws::read_until(&mut tls, "features").await.unwrap();
    assert_has(&reply, "<open", "wss open");
    assert_has(&reply, "<mechanisms", "wss features");
}

fn assert_port_closed(port: u16) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        StdTcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "port {port} still accepts after the server was dropped"
    );
}

#[test]
fn prosody_requires_starttls_offers_scram_sha1_after_tls_direct_tls_and_websocket() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    block_on(async {
        let pre = check_plain_c2s(&p).await;
        assert!(
            raw::mechanisms(&pre).is_empty(),
            "no SASL before TLS: {pre}"
        );

        let (_tls, post) = starttls_features(&p).await;
        let mechs = raw::mechanisms(&post);
        assert!(
            mechs.iter().any(|m| m == "SCRAM-SHA-1"),
            "SCRAM-SHA-1 after STARTTLS: {mechs:?} in {post}"
        );

        let direct = check_direct_tls(&p).await;
        assert!(raw::mechanisms(&direct).iter().any(|m| m == "SCRAM-SHA-1"));

        for u in &p.users {
            check_login(&p, u).await;
        }
        p.register("carol", "carol-secret-3").unwrap();
        check_login(&p, &User::new("carol", "carol-secret-3")).await;

        check_websockets(&p).await;
    });
    assert!(
        p.log_path.exists(),
        "prosody log at {}",
        p.log_path.display()
    );
}

#[test]
fn prosody_optional_tls_custom_domain_and_stop_on_drop() {
    let opts = ProsodyOptions {
        domain: "example.test".into(),
        tls: TlsPolicy::Optional,
        ..Default::default()
    };
    let Some(p) = Prosody::start_or_skip(opts) else {
        return;
    };
    let (ports, dir) = (p.ports, p.dir.clone());
    block_on(async {
        let pre = check_plain_c2s(&p).await;
        assert!(
            raw::mechanisms(&pre).iter().any(|m| m == "SCRAM-SHA-1"),
            "optional TLS offers SCRAM before TLS: {pre}"
        );
        let (_tls, post) = starttls_features(&p).await;
        assert_has(&post, "SCRAM-SHA-1", "post-TLS features");
        check_login(&p, p.user(0)).await;
    });
    drop(p);
    for port in [
        ports.c2s,
        ports.c2s_direct_tls,
        ports.s2s,
        ports.http,
        ports.https,
    ] {
        assert_port_closed(port);
    }
    if std::env::var_os(xmpp_handshake_tests::KEEP_DIRS_ENV).is_none() {
        assert!(!dir.exists(), "temp dir removed: {}", dir.display());
    }
}

#[test]
fn shared_prosody_is_one_instance() {
    let Some(a) = Prosody::shared() else {
        return;
    };
    let b = Prosody::shared().unwrap();
    assert!(std::ptr::eq(a, b));
    block_on(async {
        check_plain_c2s(a).await;
    });
}

#[test]
fn ejabberd_requires_starttls_offers_scram_sha256_direct_tls_and_websocket() {
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions::default()) else {
        return;
    };
    assert_eq!(e.scram_hash(), ScramHash::Sha256);
    block_on(async {
        let pre = check_plain_c2s(&e).await;
        assert!(
            raw::mechanisms(&pre).is_empty(),
            "no SASL before TLS: {pre}"
        );

        let (_tls, post) = starttls_features(&e).await;
        let mechs = raw::mechanisms(&post);
        assert!(
            mechs.iter().any(|m| m == "SCRAM-SHA-256"),
            "auth_scram_hash sha256 gives SCRAM-SHA-256: {mechs:?}"
        );
        assert!(
            !mechs.iter().any(|m| m == "SCRAM-SHA-1"),
            "no SCRAM-SHA-1 with sha256 storage: {mechs:?}"
        );

        let direct = check_direct_tls(&e).await;
        assert!(raw::mechanisms(&direct)
            .iter()
            .any(|m| m == "SCRAM-SHA-256"));

        for u in &e.users {
            check_login(&e, u).await;
        }
        e.register("carol", "carol-secret-3").unwrap();
        check_login(&e, &User::new("carol", "carol-secret-3")).await;

        check_websockets(&e).await;
    });
    let users = e.ctl(&["registered_users", &e.domain]).unwrap();
    assert_has(&users, "alice", "registered_users");
}

#[test]
fn ejabberd_sha1_optional_tls_and_stop_on_drop() {
    let opts = EjabberdOptions {
        domain: "example.test".into(),
        tls: TlsPolicy::Optional,
        scram_hash: ScramHash::Sha1,
        ..Default::default()
    };
    let Some(e) = Ejabberd::start_or_skip(opts) else {
        return;
    };
    let (ports, dir) = (e.ports, e.dir.clone());
    block_on(async {
        check_plain_c2s(&e).await;
        let (_tls, post) = starttls_features(&e).await;
        let mechs = raw::mechanisms(&post);
        assert!(
            mechs.iter().any(|m| m == "SCRAM-SHA-1"),
            "auth_scram_hash sha gives SCRAM-SHA-1: {mechs:?}"
        );
        check_login(&e, e.user(1)).await;
    });
    drop(e);
    for port in [
        ports.c2s,
        ports.c2s_direct_tls,
        ports.s2s,
        ports.http,
        ports.https,
    ] {
        assert_port_closed(port);
    }
    if std::env::var_os(xmpp_handshake_tests::KEEP_DIRS_ENV).is_none() {
        assert!(!dir.exists(), "temp dir removed: {}", dir.display());
    }
}
