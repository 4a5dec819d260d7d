//! Two `serve`s federating in one process (the library, no real servers): `a.test` reaches
//! `b.test` through DNS SRV (a fixed table, XEP-0368 order: a `_xmpps-server._tcp` record
//! at a closed port, then one at b's Direct TLS S2S listener, ALPN `xmpp-server`; the
//! `_xmpp-server._tcp` record at a closed port), `b.test` reaches `a.test` through a static
//! route (STARTTLS); both directions authenticate with SASL EXTERNAL, and a message and its
//! reply cross. With bidirectional streams (XEP-0288, serve's default) both directions share
//! the one connection a opened.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use xmpp_handshake_core::resolve::SrvRecord;
use xmpp_handshake_core::sasl::{CbPolicy, MemoryStore, SaslPolicy};
use xmpp_handshake_core::stanza;
use xmpp_handshake_host::certs::ServerIdentity;
use xmpp_handshake_host::federation::{Federation, S2sConfig};
use xmpp_handshake_host::resolve::StaticResolver;
use xmpp_handshake_host::router::message_body;
use xmpp_handshake_host::serve::{ServeConfig, Server};
use xmpp_handshake_tokio::{Client, ClientOptions, Trust};

const LIMIT: Duration = Duration::from_secs(20);

struct Side {
    server: Server,
    /// The Direct TLS S2S listener.
    direct: SocketAddr,
    federation: Arc<Federation>,
    ca_pem: String,
}

async fn side(
    domain: &str,
    s2s_port: u16,
    identity: ServerIdentity,
    anchors: RootCertStore,
    configure: impl FnOnce(&mut S2sConfig),
) -> Side {
    let mut store = MemoryStore::new();
    store.add_password("user", "pw", 4096, &mut rand_core::OsRng);
    let ca_pem = identity.ca_pem.clone().unwrap();
    let config = ServeConfig::new(domain, store, identity.clone());
    let server = Server::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let mut s2s = S2sConfig::new(anchors);
    s2s.timeout = Duration::from_secs(10);
    configure(&mut s2s);
    let federation = Federation::attach(&server.registry, identity, s2s, true, false, true);
    let (_addr, _task) = federation
        .listen(SocketAddr::from(([127, 0, 0, 1], s2s_port)))
        .await
        .unwrap();
    let (direct, _task) = federation
        .listen_direct_tls("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Side {
        server,
        direct,
        federation,
        ca_pem,
    }
}

async fn login(side: &Side, jid: &str) -> Client {
    let options = ClientOptions {
        trust: Trust::pem(side.ca_pem.as_bytes()).unwrap(),
        host: Some("127.0.0.1".into()),
        port: Some(side.server.addr.port()),
        sasl: SaslPolicy {
            channel_binding: CbPolicy::Off,
            ..SaslPolicy::default()
        },
        resource: Some("r".into()),
        ..ClientOptions::default()
    };
    Client::connect(jid, "pw", options).await.expect("logs in")
}

async fn next_message(client: &mut Client) -> (String, String) {
    tokio::time::timeout(LIMIT, async {
        loop {
            let stanza = client.next_stanza().await.unwrap().expect("open");
            if let Some((from, body)) = message_body(stanza.raw()) {
                return (from.unwrap_or_default(), body);
            }
        }
    })
    .await
    .expect("a message in time")
}

/// Generated identities for `a.test` and `b.test`, and anchors trusting both.
fn identities() -> (ServerIdentity, ServerIdentity, RootCertStore) {
    let a_id = ServerIdentity::generate("a.test").unwrap();
    let b_id = ServerIdentity::generate("b.test").unwrap();
    let mut anchors = RootCertStore::empty();
    for id in [&a_id, &b_id] {
        anchors
            .add(CertificateDer::from(id.ca_der.clone().unwrap().to_vec()))
            .unwrap();
    }
    (a_id, b_id, anchors)
}

/// A loopback port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_federate_through_srv_direct_tls_and_a_static_route() {
    let (a_id, b_id, anchors) = identities();
    let (a_port, b_port, closed) = (free_port(), free_port(), free_port());
    let record = |priority, port| SrvRecord {
        priority,
        weight: 0,
        port,
        target: "127.0.0.1".into(),
    };
    // Unidirectional streams: b answers over a connection of its own.
    let b = side("b.test", b_port, b_id, anchors.clone(), |c| {
        c.bidi = false;
        c.peers
            .insert("a.test".into(), ("127.0.0.1".into(), a_port));
    })
    .await;
    // Only b's Direct TLS listener can answer: the first Direct TLS record and the
    // STARTTLS record point at closed ports.
    let srv = StaticResolver {
        records: vec![
            (
                "_xmpps-server._tcp.b.test".into(),
                vec![record(0, closed), record(5, b.direct.port())],
            ),
            ("_xmpp-server._tcp.b.test".into(), vec![record(10, closed)]),
        ],
    };
    let a = side("a.test", a_port, a_id, anchors, |c| {
        c.bidi = false;
        c.srv = Some(srv);
    })
    .await;
    let mut alice = login(&a, "user@a.test").await;
    let mut bob = login(&b, "user@b.test").await;
    // Bind 2 (XEP-0386) makes each resource from the one asked for: the JIDs bound.
    let (alice_jid, bob_jid) = (alice.jid().to_string(), bob.jid().to_string());
    alice
        .send(&stanza::message(
            &bob_jid,
            "over SRV and Direct TLS",
            Some("m1"),
        ))
        .await
        .unwrap();
    let (from, body) = next_message(&mut bob).await;
    assert_eq!(
        (from.as_str(), body.as_str()),
        (alice_jid.as_str(), "over SRV and Direct TLS")
    );
    assert_eq!(a.federation.links(), 1);
    bob.send(&stanza::message(&from, "over the static route", Some("m2")))
        .await
        .unwrap();
    let (from, body) = next_message(&mut alice).await;
    assert_eq!(
        (from.as_str(), body.as_str()),
        (bob_jid.as_str(), "over the static route")
    );
    assert_eq!(b.federation.links(), 1);
    // One connection each way.
    assert_eq!((a.federation.accepted(), b.federation.accepted()), (1, 1));
    let _ = alice.close().await;
    let _ = bob.close().await;
}

/// XEP-0288: a opens the one connection (static route, STARTTLS, EXTERNAL) and asks for a
/// bidirectional stream; b's reply, b's own message and a's reply to it all travel on it.
/// b has a route to a as well: had it opened a connection, a's listener would count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_stream_carries_both_directions_on_one_connection() {
    let (a_id, b_id, anchors) = identities();
    let (a_port, b_port) = (free_port(), free_port());
    let route = |c: &mut S2sConfig, domain: &str, port| {
        assert!(c.bidi, "serve's default");
        c.peers.insert(domain.into(), ("127.0.0.1".into(), port));
    };
    let a = side("a.test", a_port, a_id, anchors.clone(), |c| {
        route(c, "b.test", b_port)
    })
    .await;
    let b = side("b.test", b_port, b_id, anchors, |c| {
        route(c, "a.test", a_port)
    })
    .await;
    let mut alice = login(&a, "user@a.test").await;
    let mut bob = login(&b, "user@b.test").await;
    // Bind 2 (serve's default) makes the resources: the JIDs actually bound.
    let (alice_jid, bob_jid) = (alice.jid().to_string(), bob.jid().to_string());
    alice
        .send(&stanza::message(&bob_jid, "a to b", Some("m1")))
        .await
        .unwrap();
    let (from, body) = next_message(&mut bob).await;
    assert_eq!(
        (from.as_str(), body.as_str()),
        (alice_jid.as_str(), "a to b")
    );
    bob.send(&stanza::message(&from, "b's reply", Some("m2")))
        .await
        .unwrap();
    let (from, body) = next_message(&mut alice).await;
    assert_eq!(
        (from.as_str(), body.as_str()),
        (bob_jid.as_str(), "b's reply")
    );
    bob.send(&stanza::message(&alice_jid, "b to a", Some("m3")))
        .await
        .unwrap();
    let (from, body) = next_message(&mut alice).await;
    assert_eq!((from.as_str(), body.as_str()), (bob_jid.as_str(), "b to a"));
    alice
        .send(&stanza::message(&from, "a's reply", Some("m4")))
        .await
        .unwrap();
    let (from, body) = next_message(&mut bob).await;
    assert_eq!(
        (from.as_str(), body.as_str()),
        (alice_jid.as_str(), "a's reply")
    );
    // One TCP connection between them, a's; b's link to a is that stream.
    assert_eq!((a.federation.accepted(), b.federation.accepted()), (0, 1));
    assert_eq!((a.federation.links(), b.federation.links()), (1, 1));
    let _ = alice.close().await;
    let _ = bob.close().await;
}
