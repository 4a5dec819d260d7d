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
//!
//! The same runs against our own `serve` (the CLI binary), which also keeps what Bob sends
//! to Alice while she is away and delivers it when she resumes (XEP-0198 §5), or bounces
//! it to Bob with `<service-unavailable/>` when her session expired.
//!
//! Then the CLI itself: `connect --send-lines BOB` fed 200 lines through a proxy that cuts
//! the connection again and again at planned points (inside a TLS record of the lines,
//! inside the reconnection's own negotiation and resumption, after the server's acks were
//! lost on the way): Bob gets every line exactly once and the CLI exits 0. Where the server
//! lost the session (the server out of reach for longer than its resumption window), the
//! CLI names the lines not acknowledged and sends them again: Bob gets every line, and a
//! line twice only if the CLI named it. Out of reach for good, it exits 6 naming the lines
//! not acknowledged, and every line Bob did not get is among them.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xmpp_handshake_core::connection::Event;
use xmpp_handshake_core::sasl::{CbPolicy, SaslPolicy};
use xmpp_handshake_core::sm::{SmConfig, SmState};
use xmpp_handshake_core::stanza;
use xmpp_handshake_tests::proxy::{CutProxy, Direction, Plan};
use xmpp_handshake_tests::{
    cli_binary, Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, ServerInfo,
};
use xmpp_handshake_tokio::{BoundStream, Client, ClientOptions, Trust};

/// `<r/>` after every 3 messages; no timer (the test decides when acks may come).
fn sm() -> SmConfig {
    SmConfig {
        request_every: 3,
        request_after: None,
        ..SmConfig::default()
    }
}

/// Where the clients log in: a real server, or our `serve`.
struct Target {
    domain: String,
    ca_pem: Vec<u8>,
    /// Alice's and Bob's `(name, password)`.
    users: Vec<(String, String)>,
    c2s: SocketAddr,
    /// The server offers SASL2 (XEP-0388): the client must have used it.
    sasl2: bool,
}

impl From<&ServerInfo> for Target {
    fn from(server: &ServerInfo) -> Self {
        Target {
            domain: server.domain.clone(),
            ca_pem: server.ca_pem().to_vec(),
            users: server
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password.clone()))
                .collect(),
            c2s: server.c2s_addr(),
            sasl2: false,
        }
    }
}

/// `xmpp-handshake serve` as a child process (killed on drop) with a generated certificate,
/// users alice and bob, sessions resumable for `resume_timeout` seconds; its log is kept
/// (and echoed on stderr).
struct Serve {
    child: Child,
    target: Target,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start(resume_timeout: u64) -> Serve {
        Serve::start_with(resume_timeout, &[])
    }

    /// [`Serve::start`] with more command-line arguments.
    fn start_with(resume_timeout: u64, extra: &[&str]) -> Serve {
        const DOMAIN: &str = "example.com";
        let dir = tempfile::tempdir().expect("a temp dir");
        let ca = dir.path().join("ca.pem");
        let resume_timeout = resume_timeout.to_string();
        let mut child = Command::new(cli_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--domain", DOMAIN])
            .args(["--user", "alice:alice-pw", "--user", "bob:bob-pw"])
            .args(["--resume-timeout", &resume_timeout])
            .args(extra)
            .arg("--write-ca")
            .arg(&ca)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("serve's stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("serve's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.expect("serve's banner");
            if let Some(rest) = line.strip_prefix(&format!("xmpp-handshake serve: {DOMAIN} on ")) {
                addr = rest.trim().parse().ok();
            }
            if line.contains("STARTTLS required") {
                break;
            }
        }
        // Keep reading stdout so that serve never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let c2s = addr.expect("serve prints its address");
        Serve {
            child,
            target: Target {
                domain: DOMAIN.into(),
                ca_pem: std::fs::read(&ca).expect("the CA serve wrote"),
                users: vec![
                    ("alice".into(), "alice-pw".into()),
                    ("bob".into(), "bob-pw".into()),
                ],
                c2s,
                sasl2: !extra.contains(&"--no-sasl2"),
            },
            log,
            _dir: dir,
        }
    }

    /// Waits (10 s at most) until serve's log has `needle` `n` times.
    async fn wait_log(&self, needle: &str, n: usize) {
        let count = || {
            self.log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .matches(needle)
                .count()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while count() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(count() >= n, "no {needle:?} x{n} in serve's log");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(server: &Target, port: u16) -> ClientOptions {
    ClientOptions {
        trust: Trust::pem(&server.ca_pem).expect("the test CA"),
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

fn user(server: &Target, i: usize) -> (String, String) {
    let (name, password) = &server.users[i];
    (format!("{name}@{}", server.domain), password.clone())
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
    async fn connect(server: &Target) -> Self {
        let (jid, password) = user(server, 1);
        let mut options = options(server, server.c2s.port());
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

    /// Reads until the error answering the message with `id` comes (10 s at most); its
    /// condition.
    async fn bounce_of(&mut self, id: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let Ok(Ok(Some(stanza))) =
                tokio::time::timeout_at(deadline, self.client.next_stanza()).await
            else {
                panic!("no error for {id} came");
            };
            let condition = stanza.parse(|n| {
                (n.attribute("type") == Some("error") && n.attribute("id") == Some(id))
                    .then(|| n.children().find(|c| c.has_tag_name("error")))
                    .flatten()
                    .and_then(|e| e.first_element_child())
                    .map(|c| c.tag_name().name().to_string())
            });
            if let Some(Some(condition)) = condition {
                return condition;
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

/// What Bob sends Alice while her connection is down.
const AWAY: &str = "sent while you were away";

/// The message bodies `client` receives within `grace` of the last one, counted.
async fn bodies(client: &mut Client, grace: Duration) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    while let Ok(Ok(Some(stanza))) = tokio::time::timeout(grace, client.next_stanza()).await {
        if let Some(Some(text)) = stanza.parse(|n| {
            n.children()
                .find(|c| c.has_tag_name("body"))
                .and_then(|b| b.text())
                .map(String::from)
        }) {
            *seen.entry(text).or_default() += 1;
        }
    }
    seen
}

/// Alice connected through `proxy`, resuming `resume` if given.
async fn alice(server: &Target, proxy: &CutProxy, resume: Option<SmState>) -> Client {
    login(server, 0, "sensor", proxy.addr.port(), resume).await
}

/// User `i` (0 Alice, 1 Bob) with stream management, on `port`, resuming `resume` if given.
async fn login(
    server: &Target,
    i: usize,
    resource: &str,
    port: u16,
    resume: Option<SmState>,
) -> Client {
    let (jid, password) = user(server, i);
    let mut options = options(server, port);
    options.resource = Some(resource.into());
    options.stream_management = Some(sm());
    options.resume = resume;
    Client::connect(&jid, &password, options)
        .await
        .expect("logs in")
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

/// `away`: Bob also sends Alice a message while she is detached, which she must get once
/// after resuming (XEP-0198 §5).
async fn resume_sends_exactly_the_unacknowledged(server: &Target, away: bool, label: &str) {
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let proxy = CutProxy::start(server.c2s).await.unwrap();
    let mut alice = alice(server, &proxy, None).await;
    assert_eq!(
        alice.outcome().sasl2,
        server.sasl2,
        "{label}: SASL2 when offered"
    );
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

    if away {
        let alice_jid = state.jid().expect("the session's full JID").to_string();
        bob.client
            .send(&stanza::message(&alice_jid, AWAY, None))
            .await
            .unwrap();
    }

    let mut alice = self::alice(server, &proxy, Some(state)).await;
    assert_eq!(
        alice.outcome().sasl2,
        server.sasl2,
        "{label}: SASL2 when offered"
    );
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
    if away {
        assert_eq!(
            bodies(&mut alice, Duration::from_secs(2)).await,
            BTreeMap::from([(AWAY.to_string(), 1)]),
            "{label}: what Bob sent while Alice was away comes once, after she resumed"
        );
    }
    alice.close().await.expect("alice closes cleanly");
    bob.client.close().await.expect("bob closes cleanly");
}

/// The server's resumption window is `window`: after it the session is gone.
/// `away`: Bob also sends Alice a message while she is detached; when her session expires
/// he must get it back as `<service-unavailable/>` (never a silent loss).
async fn expired_session_reports_what_is_not_known_delivered(
    server: &Target,
    window: Duration,
    away: bool,
    label: &str,
) {
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let proxy = CutProxy::start(server.c2s).await.unwrap();
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
    if away {
        let alice_jid = state.jid().expect("the session's full JID").to_string();
        bob.client
            .send(&stanza::message(&alice_jid, AWAY, Some("away")))
            .await
            .unwrap();
    }
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
    if away {
        assert_eq!(
            bob.bounce_of("away").await,
            "service-unavailable",
            "{label}: the message to the expired session comes back"
        );
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
    resume_sends_exactly_the_unacknowledged(&Target::from(&*server), false, "prosody").await;
}

/// With Debian's prosody-modules SASL2 family loaded (mod_sasl2, mod_sasl2_bind2): the login
/// is SASL2 with Bind 2, stream management is enabled after it (this Prosody cannot do it
/// inline: mod_sasl2_sm needs a newer mod_smacks) and the session resumes from the
/// features that follow SASL2's success, not Bind 2 (which would bind a new resource).
#[tokio::test]
async fn prosody_sasl2_resumption_resends_exactly_the_unacknowledged() {
    let Some(server) = Prosody::start_or_skip(ProsodyOptions {
        sasl2_modules: true,
        ..ProsodyOptions::default()
    }) else {
        return;
    };
    let target = Target {
        sasl2: true,
        ..Target::from(&*server)
    };
    resume_sends_exactly_the_unacknowledged(&target, true, "prosody sasl2").await;
}

#[tokio::test]
async fn prosody_expired_session_reports_what_is_not_known_delivered() {
    let Some(server) = prosody(Some(1)) else {
        return;
    };
    expired_session_reports_what_is_not_known_delivered(
        &Target::from(&*server),
        Duration::from_secs(1),
        false,
        "prosody",
    )
    .await;
}

#[tokio::test]
async fn ejabberd_resumption_resends_exactly_the_unacknowledged() {
    let Some(server) = ejabberd(300) else { return };
    resume_sends_exactly_the_unacknowledged(&Target::from(&*server), false, "ejabberd").await;
}

#[tokio::test]
async fn ejabberd_expired_session_reports_what_is_not_known_delivered() {
    let Some(server) = ejabberd(1) else { return };
    expired_session_reports_what_is_not_known_delivered(
        &Target::from(&*server),
        Duration::from_secs(1),
        false,
        "ejabberd",
    )
    .await;
}

/// `serve --no-sasl2`: RFC 6120 SASL and binding, `<enable/>` after binding and
/// `<resume/>` after the restart.
#[tokio::test]
async fn serve_resumption_resends_exactly_the_unacknowledged() {
    let serve = Serve::start_with(300, &["--no-sasl2"]);
    resume_sends_exactly_the_unacknowledged(&serve.target, true, "serve").await;
}

#[tokio::test]
async fn serve_expired_session_reports_what_is_not_known_delivered() {
    let serve = Serve::start(1);
    expired_session_reports_what_is_not_known_delivered(
        &serve.target,
        Duration::from_secs(1),
        true,
        "serve",
    )
    .await;
}

/// XEP-0198 §5 with serve's bounds: what is routed to a detached session waits in its
/// unacknowledged queue, up to the bound; each message past it comes back to its sender as
/// `<resource-constraint/>` (RFC 6120 §8.3.3.18), and the resumed session gets exactly the
/// ones kept, once.
#[tokio::test]
async fn serve_queue_for_a_detached_session_is_bounded() {
    let serve = Serve::start(300);
    let server = &serve.target;
    let mut bob = Bob::connect(server).await;
    let proxy = CutProxy::start(server.c2s).await.unwrap();
    let mut alice = alice(server, &proxy, None).await;
    assert!(matches!(
        next_sm(&mut alice).await,
        Event::SmEnabled { id: Some(_), .. }
    ));
    proxy.cut();
    let state = dropped(alice).await;
    serve.wait_log("; resumable", 1).await;

    let bound = u32::try_from(SmConfig::default().max_unacked).unwrap();
    let to = state.jid().expect("the session's full JID").to_string();
    for n in 1..=bound + 4 {
        let id = format!("m{n}");
        bob.client
            .send(&stanza::message(&to, &body(n), Some(&id)))
            .await
            .unwrap();
    }
    for n in bound + 1..=bound + 4 {
        assert_eq!(
            bob.bounce_of(&format!("m{n}")).await,
            "resource-constraint",
            "message {n} is past the bound"
        );
    }

    let mut alice = self::alice(server, &proxy, Some(state)).await;
    assert!(
        matches!(next_sm(&mut alice).await, Event::Resumed { h: 0, .. }),
        "alice resumes"
    );
    let seen = bodies(&mut alice, Duration::from_secs(2)).await;
    let expected: BTreeMap<String, usize> = (1..=bound).map(|n| (body(n), 1)).collect();
    assert_eq!(seen, expected, "the kept messages, each once");
    alice.close().await.expect("alice closes cleanly");
    bob.client.close().await.expect("bob closes cleanly");
}

/// XEP-0198 §5: only the account that owns a detached session may resume it. Bob, naming
/// Alice's session, is refused with `<item-not-found/>` and binds a resource of his own;
/// the session stays, and Alice resumes it after.
#[tokio::test]
async fn serve_refuses_to_resume_another_accounts_session() {
    let serve = Serve::start(300);
    let server = &serve.target;
    let proxy = CutProxy::start(server.c2s).await.unwrap();
    let mut alice = alice(server, &proxy, None).await;
    assert!(matches!(
        next_sm(&mut alice).await,
        Event::SmEnabled { id: Some(_), .. }
    ));
    let to = alice.jid().to_string();
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
    proxy.cut();
    let state = dropped(alice).await;
    let alice_jid = state.jid().expect("the session's full JID").to_string();
    serve.wait_log("; resumable", 1).await;

    let mut bob = login(server, 1, "thief", server.c2s.port(), Some(state.clone())).await;
    let Event::ResumeFailed { condition, .. } = next_sm(&mut bob).await else {
        panic!("bob may not resume alice's session");
    };
    assert_eq!(condition.as_deref(), Some("item-not-found"));
    // Bind 2 (XEP-0386) bound a resource of his own from his tag.
    assert!(
        bob.jid().to_string().starts_with("bob@example.com/thief~"),
        "{}",
        bob.jid()
    );

    let mut alice = self::alice(server, &proxy, Some(state)).await;
    assert!(
        matches!(next_sm(&mut alice).await, Event::Resumed { h: 3, .. }),
        "the session was put back for its owner"
    );
    assert_eq!(alice.jid().to_string(), alice_jid);
    alice.close().await.expect("alice closes cleanly");
    bob.close().await.expect("bob closes cleanly");
}

/// RFC 6120 §8.3.3.18 with XEP-0198 on a bound session: a client whose acknowledgements
/// stop (the link swallows what serve sends it) holds at most the bound of unacknowledged
/// stanzas at serve; each message past it comes back to its sender as
/// `<resource-constraint/>` instead of being dropped unsaid, and the client, resuming, gets
/// exactly the ones kept, once.
#[tokio::test]
async fn serve_bounces_what_an_unacknowledging_client_has_no_room_for() {
    let serve = Serve::start(300);
    let server = &serve.target;
    let mut bob = Bob::connect(server).await;
    let proxy = CutProxy::start(server.c2s).await.unwrap();
    let mut alice = alice(server, &proxy, None).await;
    assert!(matches!(
        next_sm(&mut alice).await,
        Event::SmEnabled { id: Some(_), .. }
    ));
    let to = alice.jid().to_string();
    // What serve sends Alice (messages, `<r/>`) goes nowhere: she never acknowledges.
    proxy.blackhole(Direction::Down);
    let bound = u32::try_from(SmConfig::default().max_unacked).unwrap();
    for n in 1..=bound + 4 {
        let id = format!("m{n}");
        bob.client
            .send(&stanza::message(&to, &body(n), Some(&id)))
            .await
            .unwrap();
    }
    for n in bound + 1..=bound + 4 {
        assert_eq!(
            bob.bounce_of(&format!("m{n}")).await,
            "resource-constraint",
            "message {n} is past the bound"
        );
    }
    serve.wait_log("a stanza for it was not sent", 4).await;
    proxy.cut();
    let state = dropped(alice).await;
    serve.wait_log("; resumable", 1).await;
    let mut alice = self::alice(server, &proxy, Some(state)).await;
    assert!(
        matches!(next_sm(&mut alice).await, Event::Resumed { h: 0, .. }),
        "alice resumes"
    );
    let seen = bodies(&mut alice, Duration::from_secs(2)).await;
    let expected: BTreeMap<String, usize> = (1..=bound).map(|n| (body(n), 1)).collect();
    assert_eq!(seen, expected, "the kept messages, each once");
    alice.close().await.expect("alice closes cleanly");
    bob.client.close().await.expect("bob closes cleanly");
}

/// Lines `connect --send-lines` is fed.
const LINES: u32 = 200;

fn line(n: u32) -> String {
    format!("line {n:03}")
}

/// What `connect --send-lines` did.
struct LinesRun {
    code: Option<i32>,
    stderr: String,
}

impl LinesRun {
    /// The lines named after `marker` on stderr (`3, 5-9`), up to `;`, `(` or the line's end.
    fn named_after(&self, marker: &str) -> std::collections::BTreeSet<u32> {
        let mut named = std::collections::BTreeSet::new();
        for text in self.stderr.lines() {
            let Some(at) = text.find(marker) else {
                continue;
            };
            let rest = &text[at + marker.len()..];
            let end = rest.find([';', '(']).unwrap_or(rest.len());
            for part in rest[..end].split(',') {
                let part = part.trim();
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b): (u32, u32) = (a.parse().unwrap(), b.parse().unwrap());
                        named.extend(a..=b);
                    }
                    None if !part.is_empty() => {
                        named.insert(part.parse().unwrap_or_else(|_| panic!("{text}")));
                    }
                    None => {}
                }
            }
        }
        named
    }
}

/// `xmpp-handshake connect alice/lines --send-lines TO` through port `port`, lines 1 to
/// `count` on its standard input, with `extra` arguments. With `cut_at_resume`, the proxy's
/// connection is cut the moment the CLI's transcript (`--trace`) shows its first
/// `<resume/>` sent: during the resumption, before or after the server acted on it. Over
/// SASL2 the `<resume/>` rides in the `<authenticate/>` (redacted in the transcript): every
/// `<authenticate/>` after the first login's is a resumption's.
async fn send_lines(
    server: &Target,
    port: u16,
    to: &str,
    count: u32,
    extra: &[&str],
    cut_at_resume: Option<Arc<CutProxy>>,
) -> LinesRun {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).expect("the CA written");
    let (jid, password) = user(server, 0);
    let mut child = tokio::process::Command::new(cli_binary())
        .args(["connect", &format!("{jid}/lines"), "--host", "127.0.0.1"])
        .args([
            "--port",
            &port.to_string(),
            "--no-cache",
            "--channel-binding",
            "off",
        ])
        .args(["--send-lines", to])
        .arg("--ca")
        .arg(&ca)
        .args(extra)
        .env("XMPP_PASSWORD", password)
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the CLI starts");
    let mut stdin = child.stdin.take().expect("its stdin");
    let input: String = (1..=count).map(|n| line(n) + "\n").collect();
    tokio::spawn(async move {
        // The CLI may stop reading (it gave up): then the write fails, which is fine.
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let mut stdout = child.stdout.take().expect("its stdout");
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
    });
    let stderr = child.stderr.take().expect("its stderr");
    let log = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut log = String::new();
        let mut cut_at_resume = cut_at_resume;
        let mut authenticated = false;
        while let Ok(Some(text)) = lines.next_line().await {
            let sasl2 = text.starts_with("I: <authenticate ");
            if text.starts_with("I: <resume ") || (sasl2 && authenticated) {
                if let Some(proxy) = cut_at_resume.take() {
                    proxy.cut();
                    eprintln!("cli: -- the proxy cut the link here --");
                    log.push_str("-- the proxy cut the link here --\n");
                }
            }
            authenticated |= sasl2;
            if text.starts_with("I: <message") || text.starts_with("R: <a ") {
                // The transcript of the lines themselves: kept out of the test's log.
                continue;
            }
            eprintln!("cli: {text}");
            log.push_str(&text);
            log.push('\n');
        }
        log
    });
    let status = tokio::time::timeout(Duration::from_secs(180), child.wait())
        .await
        .expect("the CLI ends within 180 s")
        .expect("its exit status");
    let stderr = log.await.unwrap_or_default();
    LinesRun {
        code: status.code(),
        stderr,
    }
}

/// The cuts: inside a TLS record of the lines; inside the reconnection's negotiation (its
/// TLS handshake or SASL, depending on the server's certificate); a connection the test
/// cuts when `<resume/>` goes out ([`send_lines`]); right after a resumption, while the
/// unacknowledged lines are sent again; after the server's answers (its `<a/>` to our
/// `<r/>`) were lost on the way; inside the lines again.
fn cuts() -> Vec<Plan> {
    vec![
        Plan::cut_after(Direction::Up, 7_000),
        Plan::cut_after(Direction::Down, 1_500),
        Plan::default(),
        Plan::cut_after(Direction::Up, 2_300),
        Plan {
            swallow_down_after_up: Some(4_000),
            cut_after: Some((Direction::Up, 7_500)),
            ..Plan::default()
        },
        Plan::cut_after(Direction::Up, 9_500),
    ]
}

/// `--send-lines` through [`cuts`]: every line exactly once, exit 0.
async fn lines_survive_cuts(server: &Target, label: &str) {
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let proxy = Arc::new(CutProxy::start(server.c2s).await.unwrap());
    let plans = cuts();
    proxy.plan(plans.clone());
    let run = send_lines(
        server,
        proxy.addr.port(),
        &to,
        LINES,
        &["--trace"],
        Some(proxy.clone()),
    )
    .await;
    eprintln!("{label}: the proxy carried {:?}", proxy.carried());
    assert_eq!(run.code, Some(0), "{label}: every line acknowledged");
    assert!(
        proxy.accepted() > plans.len(),
        "{label}: every planned cut happened ({} connections)",
        proxy.accepted()
    );
    assert!(
        run.stderr.contains("session resumed"),
        "{label}: the session was resumed"
    );
    assert!(
        run.stderr.contains("-- the proxy cut the link here --"),
        "{label}: a resumption was cut"
    );
    assert!(
        !run.stderr.contains("lost the session"),
        "{label}: no session was lost"
    );
    bob.wait_for(&line(LINES)).await;
    bob.settle(Duration::from_secs(1)).await;
    let expected: BTreeMap<String, usize> = (1..=LINES).map(|n| (line(n), 1)).collect();
    assert_eq!(bob.seen, expected, "{label}: every line exactly once");
    bob.client.close().await.expect("bob closes cleanly");
}

/// The server out of reach for longer than its resumption window (1 s) after a cut: the
/// session is lost; the CLI names the lines not acknowledged and sends them again. Every
/// line arrives; one arrives twice only if it was named.
async fn lines_survive_a_lost_session(server: &Target, label: &str) {
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let proxy = CutProxy::start(server.c2s).await.unwrap();
    // Attempts at once, after 1 s and 2 s refused; the fourth, 7 s after the cut, gets in.
    proxy.plan([
        Plan::cut_after(Direction::Up, 7_000),
        Plan::refuse(),
        Plan::refuse(),
        Plan::refuse(),
    ]);
    let run = send_lines(server, proxy.addr.port(), &to, LINES, &[], None).await;
    assert_eq!(
        run.code,
        Some(0),
        "{label}: every line acknowledged in the end"
    );
    assert!(
        run.stderr.contains("the server lost the session"),
        "{label}: the loss is reported"
    );
    let named = run.named_after("Not acknowledged: lines ");
    assert!(
        !named.is_empty(),
        "{label}: lines were named as not acknowledged"
    );
    bob.wait_for(&line(LINES)).await;
    bob.settle(Duration::from_secs(1)).await;
    for n in 1..=LINES {
        let seen = bob.seen.get(&line(n)).copied().unwrap_or(0);
        assert!(seen >= 1, "{label}: line {n} never came");
        assert!(
            seen == 1 || (seen == 2 && named.contains(&n)),
            "{label}: line {n} came {seen} times, named: {named:?}"
        );
    }
    assert_eq!(bob.seen.len(), LINES as usize, "{label}: nothing else came");
    bob.client.close().await.expect("bob closes cleanly");
}

#[tokio::test]
async fn prosody_cli_send_lines_survive_cuts() {
    let Some(server) = prosody(None) else { return };
    lines_survive_cuts(&Target::from(&*server), "prosody").await;
}

#[tokio::test]
async fn prosody_cli_send_lines_survive_a_lost_session() {
    let Some(server) = prosody(Some(1)) else {
        return;
    };
    lines_survive_a_lost_session(&Target::from(&*server), "prosody").await;
}

#[tokio::test]
async fn ejabberd_cli_send_lines_survive_cuts() {
    let Some(server) = ejabberd(300) else { return };
    lines_survive_cuts(&Target::from(&*server), "ejabberd").await;
}

#[tokio::test]
async fn ejabberd_cli_send_lines_survive_a_lost_session() {
    let Some(server) = ejabberd(1) else { return };
    lines_survive_a_lost_session(&Target::from(&*server), "ejabberd").await;
}

#[tokio::test]
async fn serve_cli_send_lines_survive_cuts() {
    let serve = Serve::start(300);
    lines_survive_cuts(&serve.target, "serve").await;
}

#[tokio::test]
async fn serve_cli_send_lines_survive_a_lost_session() {
    let serve = Serve::start(1);
    lines_survive_a_lost_session(&serve.target, "serve").await;
}

/// Out of reach for good after a cut, `--reconnect 2`: exit 6, naming how many lines were
/// not acknowledged and which; every line Bob did not get is among them.
#[tokio::test]
async fn serve_cli_send_lines_exits_6_naming_the_unacknowledged() {
    let serve = Serve::start(300);
    let server = &serve.target;
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let proxy = CutProxy::start(server.c2s).await.unwrap();
    proxy.plan([Plan::cut_after(Direction::Up, 7_000)]);
    proxy.plan(std::iter::repeat_n(Plan::refuse(), 10));
    let run = send_lines(
        server,
        proxy.addr.port(),
        &to,
        LINES,
        &["--reconnect", "2"],
        None,
    )
    .await;
    assert_eq!(run.code, Some(6), "lines not acknowledged: exit 6");
    let named = run.named_after("lines read not acknowledged by the server: lines ");
    assert!(!named.is_empty(), "the lines are named");
    let summary = run
        .stderr
        .lines()
        .find(|l| l.contains("lines read not acknowledged"))
        .expect("the error line");
    assert!(
        summary.contains(&format!("error: {} of ", named.len())),
        "how many, and which: {summary}"
    );
    assert!(
        summary.contains("gave up reconnecting after 2 attempts"),
        "{summary}"
    );
    bob.settle(Duration::from_secs(1)).await;
    let read = *named.last().unwrap();
    for n in 1..=read {
        if !bob.seen.contains_key(&line(n)) {
            assert!(
                named.contains(&n),
                "line {n} did not arrive and was not named"
            );
        }
    }
    bob.client.close().await.expect("bob closes cleanly");
}

/// Without stream management (`--no-stream-management`) the lines are confirmed together by
/// the server's answer to our closing tag (RFC 6120 §4.4), and the CLI says so.
#[tokio::test]
async fn serve_cli_send_lines_without_stream_management_confirms_by_closing() {
    let serve = Serve::start(300);
    let server = &serve.target;
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let run = send_lines(
        server,
        server.c2s.port(),
        &to,
        50,
        &["--no-stream-management"],
        None,
    )
    .await;
    assert_eq!(run.code, Some(0));
    assert!(
        run.stderr.contains("confirmed by the server's closing tag"),
        "{}",
        run.stderr
    );
    bob.wait_for(&line(50)).await;
    bob.settle(Duration::from_millis(500)).await;
    let expected: BTreeMap<String, usize> = (1..=50).map(|n| (line(n), 1)).collect();
    assert_eq!(bob.seen, expected, "every line exactly once");
    bob.client.close().await.expect("bob closes cleanly");
}

/// `connect` without `--send`: online, printing what arrives on stdout. The link is cut;
/// Bob writes meanwhile; the CLI reconnects, resumes, and prints Bob's message once; Ctrl-C
/// closes the stream, exit 0.
#[tokio::test]
async fn serve_cli_stays_online_across_a_cut() {
    use tokio::io::AsyncBufReadExt as _;
    let serve = Serve::start(300);
    let server = &serve.target;
    let bob = Bob::connect(server).await;
    let proxy = CutProxy::start(server.c2s).await.unwrap();
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).expect("the CA written");
    let (jid, password) = user(server, 0);
    let mut child = tokio::process::Command::new(cli_binary())
        .args(["connect", &format!("{jid}/online"), "--host", "127.0.0.1"])
        .args(["--port", &proxy.addr.port().to_string(), "--no-cache"])
        .arg("--ca")
        .arg(&ca)
        .env("XMPP_PASSWORD", password)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the CLI starts");
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stderr = String::new();
    let mut stdout = String::new();
    // Reads both until `done` says so (10 s at most).
    macro_rules! read_until {
        ($done:expr) => {{
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !$done(&stdout, &stderr) {
                tokio::select! {
                    Ok(Some(l)) = out.next_line() => { stdout.push_str(&l); stdout.push('\n'); }
                    Ok(Some(l)) = err.next_line() => {
                        eprintln!("cli: {l}");
                        stderr.push_str(&l);
                        stderr.push('\n');
                    }
                    _ = tokio::time::sleep_until(deadline) => panic!("timed out:\n{stderr}"),
                }
            }
        }};
    }
    read_until!(|_: &String, e: &String| e.contains("stream management on"));
    let alice = format!("{jid}/online");
    bob.client
        .send(&stanza::message(&alice, "before the cut", None))
        .await
        .unwrap();
    read_until!(|o: &String, _: &String| o.contains("before the cut"));
    proxy.cut();
    read_until!(|_: &String, e: &String| e.contains("the link was lost"));
    bob.client
        .send(&stanza::message(&alice, "while away", None))
        .await
        .unwrap();
    read_until!(|o: &String, e: &String| e.contains("session resumed") && o.contains("while away"));
    // Anything sent twice would come now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    read_until!(|_: &String, e: &String| e.contains("xmpp-handshake: closed"));
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_millis(200), out.next_line()).await
    {
        stdout.push_str(&l);
        stdout.push('\n');
    }
    let code = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the CLI exits")
        .unwrap()
        .code();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.matches("before the cut").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("while away").count(), 1, "{stdout}");
    assert!(!stderr.contains("lost the session"), "{stderr}");
}

/// `serve` (SASL2 by default) and our client: SASL2 with Bind 2 and stream management
/// enabled inside it (no `<enable/>` after binding), then a cut link resumed inside the
/// next `<authenticate/>` (XEP-0198 with SASL2: `<resumed/>` inside `<success/>`, nothing
/// bound anew).
#[tokio::test]
async fn serve_sasl2_resumption_resends_exactly_the_unacknowledged() {
    let serve = Serve::start_with(60, &["--sasl2", "--trace"]);
    resume_sends_exactly_the_unacknowledged(&serve.target, true, "serve sasl2").await;
    let log = serve.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // The `<authenticate/>` is redacted in the trace; the answer is not.
    let answered = log
        .lines()
        .any(|l| l.contains("R: <success ") && l.contains("<resumed xmlns='urn:xmpp:sm:3'"));
    assert!(answered, "resumed inside SASL2's success:\n{log}");
    assert!(
        !log.contains("I: <resume "),
        "no <resume/> of its own:\n{log}"
    );
    assert!(!log.contains("<enable xmlns"), "{log}");
}

/// A link that goes silent without closing (the proxy swallows both ways and holds the
/// server's socket open): the client gives up on it and resumes on a new connection
/// before serve has seen the old one die. As Prosody's mod_smacks does, serve drops the old
/// link and resumes the session (never `<item-not-found/>` for a session still there):
/// the server's `h` says what arrived, exactly the rest is sent again, Bob gets every
/// message once, and it happens at once, not after serve's idle timeout.
#[tokio::test]
async fn serve_takes_over_a_session_whose_link_went_silent() {
    let serve = Serve::start_with(300, &["--idle-timeout", "120"]);
    let server = &serve.target;
    let mut bob = Bob::connect(server).await;
    let to = bob.jid();
    let proxy = CutProxy::start(server.c2s).await.unwrap();
    let mut alice = alice(server, &proxy, None).await;
    assert!(alice.outcome().sasl2);
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
    assert_eq!(
        next_sm(&mut alice).await,
        Event::Acked {
            h: 3,
            numbers: 1..4
        }
    );
    bob.wait_for(&body(3)).await;

    // The link goes silent: 4-6 never arrive; the client gives up on the link (as its own
    // ping timeout would) while serve still holds it.
    proxy.silence();
    for n in 4..=6 {
        alice
            .send(&stanza::message(&to, &body(n), None))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.abandon().await.unwrap();
    let state = dropped(alice).await;
    assert_eq!(
        state.unacked().map(|(n, _)| n).collect::<Vec<_>>(),
        [4, 5, 6]
    );
    assert!(
        !serve.log.lock().unwrap().contains("sensor gone"),
        "serve has not noticed"
    );

    let started = std::time::Instant::now();
    let mut alice = login(server, 0, "sensor", server.c2s.port(), Some(state)).await;
    assert_eq!(
        next_sm(&mut alice).await,
        Event::Resumed {
            h: 3,
            acked: 4..4,
            resent: 4..7
        },
        "resumed, not refused: 4-6 are sent again"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    serve
        .wait_log(
            "its client resumed it on a new connection; old link dropped",
            1,
        )
        .await;
    bob.wait_for(&body(6)).await;
    bob.settle(Duration::from_secs(1)).await;
    bob.assert_each_once(6, "take-over");
    alice.close().await.expect("alice closes cleanly");
    bob.client.close().await.expect("bob closes cleanly");
}
