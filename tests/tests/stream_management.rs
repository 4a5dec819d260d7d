//! XEP-0198 against real servers: Prosody 0.12.3 (`mod_smacks`) and ejabberd 23.01
//! (`mod_stream_mgmt`). Alice (this crate's tokio client, stream management on) sends
//! numbered messages to Bob (a second client, directly connected) through a proxy the test
//! breaks: first the server's acks are swallowed (the messages arrive, the client never
//! learns it), then the client's bytes too (the messages never arrive), then the TCP
//! connection is cut. Alice resumes on a new connection: the server's `h` says what
//! arrived, exactly the rest is sent again, and Bob gets every message exactly once.
//! When the server lost the session (its resumption window passed), the client reports
//! which messages are not known delivered, and resending exactly those again gives Bob
//! every message once.

use std::collections::BTreeMap;
use std::time::Duration;

use xmpp_handshake_core::connection::Event;
use xmpp_handshake_core::sasl::{CbPolicy, SaslPolicy};
use xmpp_handshake_core::sm::{SmConfig, SmState};
use xmpp_handshake_core::stanza;
use xmpp_handshake_tests::proxy::{CutProxy, Direction};
use xmpp_handshake_tests::{Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, ServerInfo};
use xmpp_handshake_tokio::{BoundStream, Client, ClientOptions, Trust};

/// `<r/>` after every 3 messages; no timer (the test decides when acks may come).
fn sm() -> SmConfig {
    SmConfig {
        request_every: 3,
        request_after: None,
        ..SmConfig::default()
    }
}

fn options(server: &ServerInfo, port: u16) -> ClientOptions {
    ClientOptions {
        trust: Trust::pem(server.ca_pem()).expect("the test CA"),
        host: Some("127.0.0.1".into()),
        port: Some(port),
        // ejabberd 23.01 offers -PLUS on TLS 1.3 and refuses every binding (FACTS.md);
        // channel binding is not what these tests are about.
        sasl: SaslPolicy {
            channel_binding: CbPolicy::Off,
            ..SaslPolicy::default()
        },
        ..ClientOptions::default()
    }
}

fn user(server: &ServerInfo, i: usize) -> (String, String) {
    let u = &server.users[i];
    (format!("{}@{}", u.name, server.domain), u.password.clone())
}

async fn next_sm(stream: &mut BoundStream) -> Event {
    tokio::time::timeout(Duration::from_secs(10), stream.next_sm_event())
        .await
        .expect("a stream-management event in time")
        .expect("a stream-management event")
}

/// Bob, online, counting the bodies he receives.
struct Bob {
    client: Client,
    seen: BTreeMap<String, usize>,
}

impl Bob {
    async fn connect(server: &ServerInfo) -> Self {
        let (jid, password) = user(server, 1);
        let mut options = options(server, server.ports.c2s);
        options.resource = Some("bob".into());
        let client = Client::connect(&jid, &password, options)
            .await
            .expect("bob logs in");
        client.send(&stanza::presence(None)).await.unwrap();
        Bob {
            client,
            seen: BTreeMap::new(),
        }
    }

    fn jid(&self) -> String {
        self.client.jid().to_string()
    }

    /// Reads until `body` arrived (or 10 s passed: then the assertion shows what came).
    async fn wait_for(&mut self, body: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.seen.contains_key(body) {
            let Ok(Ok(Some(stanza))) =
                tokio::time::timeout_at(deadline, self.client.next_stanza()).await
            else {
                break;
            };
            if let Some(Some(text)) = stanza.parse(|n| {
                n.children()
                    .find(|c| c.has_tag_name("body"))
                    .and_then(|b| b.text())
                    .map(String::from)
            }) {
                *self.seen.entry(text).or_default() += 1;
            }
        }
        assert!(
            self.seen.contains_key(body),
            "{body} never came: {:?}",
            self.seen
        );
    }

    /// Reads what else comes within `grace`.
    async fn settle(&mut self, grace: Duration) {
        while let Ok(Ok(Some(stanza))) =
            tokio::time::timeout(grace, self.client.next_stanza()).await
        {
            if let Some(Some(text)) = stanza.parse(|n| {
                n.children()
                    .find(|c| c.has_tag_name("body"))
                    .and_then(|b| b.text())
                    .map(String::from)
            }) {
                *self.seen.entry(text).or_default() += 1;
            }
        }
    }

    fn assert_each_once(&self, count: u32, label: &str) {
        let expected: BTreeMap<String, usize> = (1..=count).map(|n| (body(n), 1)).collect();
        assert_eq!(self.seen, expected, "{label}: every message exactly once");
    }
}

fn body(n: u32) -> String {
    format!("reading {n:02}")
}

/// Alice connected through `proxy`, resuming `resume` if given.
async fn alice(server: &ServerInfo, proxy: &CutProxy, resume: Option<SmState>) -> Client {
    let (jid, password) = user(server, 0);
    let mut options = options(server, proxy.addr.port());
    options.resource = Some("sensor".into());
    options.stream_management = Some(sm());
    options.resume = resume;
    Client::connect(&jid, &password, options)
        .await
        .expect("alice logs in")
}

/// Waits for the end of a broken stream and takes what it leaves for resumption.
async fn dropped(mut alice: Client) -> SmState {
    let end = tokio::time::timeout(Duration::from_secs(10), alice.ended())
        .await
        .expect("the stream ends after the cut");
    assert!(
        matches!(&end, Some(c) if c.error().is_some()),
        "a broken stream, not a clean close: {end:?}"
    );
    alice.take_sm_state().expect("the session's state")
}

async fn resume_sends_exactly_the_unacknowledged(server: &ServerInfo, label: &str) {
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let proxy = CutProxy::start(server.c2s_addr()).await.unwrap();
    let mut alice = alice(server, &proxy, None).await;
    assert!(
        matches!(
            next_sm(&mut alice).await,
            Event::SmEnabled { id: Some(_), .. }
        ),
        "{label}: resumable stream management"
    );

    // 1-3 arrive and are acknowledged.
    for n in 1..=3 {
        alice
            .send(&stanza::message(&to, &body(n), None))
            .await
            .unwrap();
    }
    assert_eq!(
        next_sm(&mut alice).await,
        Event::Acked {
            h: 3,
            numbers: 1..4
        },
        "{label}"
    );
    bob.wait_for(&body(3)).await;

    // 4-6 arrive, but the server's answers are lost.
    proxy.blackhole(Direction::Down);
    for n in 4..=6 {
        alice
            .send(&stanza::message(&to, &body(n), None))
            .await
            .unwrap();
    }
    bob.wait_for(&body(6)).await;

    // 7-9 are lost on the way, then the connection is cut.
    proxy.blackhole(Direction::Up);
    for n in 7..=9 {
        alice
            .send(&stanza::message(&to, &body(n), None))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    let state = dropped(alice).await;
    assert_eq!(
        state.unacked().map(|(n, _)| n).collect::<Vec<_>>(),
        [4, 5, 6, 7, 8, 9],
        "{label}: the client knows only 1-3 arrived"
    );

    let mut alice = self::alice(server, &proxy, Some(state)).await;
    assert_eq!(
        next_sm(&mut alice).await,
        Event::Resumed {
            h: 6,
            acked: 4..7,
            resent: 7..10
        },
        "{label}: the server's h says 4-6 arrived; 7-9 are sent again"
    );
    alice
        .send(&stanza::message(&to, &body(10), None))
        .await
        .unwrap();
    bob.wait_for(&body(10)).await;
    bob.settle(Duration::from_secs(1)).await;
    bob.assert_each_once(10, label);
    alice.close().await.expect("alice closes cleanly");
    bob.client.close().await.expect("bob closes cleanly");
}

/// The server's resumption window is `window`: after it the session is gone.
async fn expired_session_reports_what_is_not_known_delivered(
    server: &ServerInfo,
    window: Duration,
    label: &str,
) {
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let proxy = CutProxy::start(server.c2s_addr()).await.unwrap();
    let mut alice = alice(server, &proxy, None).await;
    assert!(matches!(
        next_sm(&mut alice).await,
        Event::SmEnabled { id: Some(_), .. }
    ));
    for n in 1..=3 {
        alice
            .send(&stanza::message(&to, &body(n), None))
            .await
            .unwrap();
    }
    assert!(matches!(
        next_sm(&mut alice).await,
        Event::Acked { h: 3, .. }
    ));
    bob.wait_for(&body(3)).await;
    proxy.blackhole(Direction::Up);
    for n in 4..=5 {
        alice
            .send(&stanza::message(&to, &body(n), None))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    let state = dropped(alice).await;
    tokio::time::sleep(window + Duration::from_secs(2)).await;

    let mut alice = self::alice(server, &proxy, Some(state)).await;
    let Event::ResumeFailed {
        h,
        delivered,
        not_delivered,
        ..
    } = next_sm(&mut alice).await
    else {
        panic!("{label}: the expired session is not resumed");
    };
    // An `h` (v1.6) can only say that 1-3 arrived, which the client knew.
    assert!(matches!(h, None | Some(3)), "{label}: h {h:?}");
    assert!(delivered.is_empty(), "{label}: {delivered:?}");
    assert_eq!(
        not_delivered.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [4, 5],
        "{label}: exactly 4 and 5 are not known delivered"
    );
    assert!(matches!(
        next_sm(&mut alice).await,
        Event::SmEnabled { id: Some(_), .. }
    ));
    // The application resends them, as they were.
    for (_, stanza) in &not_delivered {
        alice.send(stanza).await.unwrap();
    }
    bob.wait_for(&body(5)).await;
    bob.settle(Duration::from_secs(1)).await;
    bob.assert_each_once(5, label);
    alice.close().await.expect("alice closes cleanly");
    bob.client.close().await.expect("bob closes cleanly");
}

fn prosody(hibernation: Option<u32>) -> Option<Prosody> {
    let mut host = String::from("  modules_enabled = { \"smacks\" }\n");
    if let Some(seconds) = hibernation {
        host.push_str(&format!("  smacks_hibernation_time = {seconds}\n"));
    }
    Prosody::start_or_skip(ProsodyOptions {
        extra_host_config: host,
        ..ProsodyOptions::default()
    })
}

fn ejabberd(resume_timeout: u32) -> Option<Ejabberd> {
    Ejabberd::start_or_skip(EjabberdOptions {
        extra_config: format!("  mod_stream_mgmt:\n    resume_timeout: {resume_timeout}\n"),
        ..EjabberdOptions::default()
    })
}

#[tokio::test]
async fn prosody_resumption_resends_exactly_the_unacknowledged() {
    let Some(server) = prosody(None) else { return };
    resume_sends_exactly_the_unacknowledged(&server, "prosody").await;
}

#[tokio::test]
async fn prosody_expired_session_reports_what_is_not_known_delivered() {
    let Some(server) = prosody(Some(1)) else {
        return;
    };
    expired_session_reports_what_is_not_known_delivered(&server, Duration::from_secs(1), "prosody")
        .await;
}

#[tokio::test]
async fn ejabberd_resumption_resends_exactly_the_unacknowledged() {
    let Some(server) = ejabberd(300) else { return };
    resume_sends_exactly_the_unacknowledged(&server, "ejabberd").await;
}

#[tokio::test]
async fn ejabberd_expired_session_reports_what_is_not_known_delivered() {
    let Some(server) = ejabberd(1) else { return };
    expired_session_reports_what_is_not_known_delivered(
        &server,
        Duration::from_secs(1),
        "ejabberd",
    )
    .await;
}
