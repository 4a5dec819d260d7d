//! The library's front door, `xmpp_handshake_tokio::Client`, against the `serve` binary:
//! connect (STARTTLS, the certificate checked against a private CA, SCRAM, bind), stanzas
//! both ways through the async `Stream`, the closing handshake; a certificate from another
//! CA and a wrong password refused with the core's typed errors.

mod serve_bin;

use std::time::Duration;

use futures_util::StreamExt as _;
use serve_bin::{ServeBin, SlowLink};
use xmpp_handshake_core::connection::Closed;
use xmpp_handshake_core::stanza;
use xmpp_handshake_tokio::client::Error;
use xmpp_handshake_tokio::{Client, ClientOptions, Trust};

fn options(serve: &ServeBin) -> ClientOptions {
    ClientOptions {
        trust: Trust::pem(&serve.ca_pem()).expect("serve's CA"),
        host: Some(serve.addr.ip().to_string()),
        port: Some(serve.addr.port()),
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn clients_exchange_messages_through_serve_and_close_cleanly() {
    let serve = ServeBin::start(&[], &[]).await;
    let mut alice = Client::connect("alice@example.com/lib", "alice-pw", options(&serve))
        .await
        .expect("alice logs in");
    // Bind 2 (XEP-0386): the resource is made from the one asked for.
    assert!(
        alice
            .jid()
            .to_string()
            .starts_with("alice@example.com/lib~"),
        "{}",
        alice.jid()
    );
    assert!(alice.outcome().sasl2);
    assert!(alice.outcome().secure);
    let bob = Client::connect("bob@example.com", "bob-pw", options(&serve))
        .await
        .expect("bob logs in");
    assert_eq!(bob.jid().local(), Some("bob"));

    bob.send(&stanza::message(
        alice.jid().as_ref(),
        "hello from bob",
        Some("b1"),
    ))
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), alice.next())
        .await
        .expect("in time")
        .expect("a stanza");
    assert_eq!(got.name(), "message");
    assert!(got.raw().contains("hello from bob"), "{}", got.raw());
    let body = got.parse(|node| {
        node.descendants()
            .find(|n| n.has_tag_name("body"))
            .and_then(|b| b.text())
            .map(String::from)
    });
    assert_eq!(body.flatten().as_deref(), Some("hello from bob"));

    bob.close()
        .await
        .expect("bob closes cleanly (both closing tags)");
    alice.close().await.expect("alice closes cleanly");
}

#[tokio::test]
async fn the_stream_ends_when_the_server_closes_it() {
    // RFC 6120 binding, which binds the resource asked for (§7.7.2.2's conflict).
    let serve = ServeBin::start(&["--no-sasl2"], &[]).await;
    let mut first = Client::connect("alice@example.com/same", "alice-pw", options(&serve))
        .await
        .unwrap();
    // A second session for the same full JID replaces the first (RFC 6120 §7.7.2.2).
    let _second = Client::connect("alice@example.com/same", "alice-pw", options(&serve))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while first.next().await.is_some() {}
        first.ended().await
    })
    .await
    .expect("the first stream ends");
    match end {
        Some(Closed::Failed(xmpp_handshake_core::Error::StreamErrorReceived(e))) => {
            assert_eq!(e.condition.name(), "conflict")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_password_and_a_foreign_ca_are_refused() {
    let serve = ServeBin::start(&[], &[]).await;
    match Client::connect("alice@example.com", "wrong", options(&serve)).await {
        Err(Error::Xmpp(xmpp_handshake_core::Error::AuthenticationFailed { .. })) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a wrong password logged in"),
    }
    let other = ServeBin::start(&[], &[]).await;
    let foreign = ClientOptions {
        trust: Trust::pem(&other.ca_pem()).unwrap(),
        ..options(&serve)
    };
    match Client::connect("alice@example.com", "alice-pw", foreign).await {
        Err(Error::Xmpp(xmpp_handshake_core::Error::Tls(
            xmpp_handshake_core::TlsError::Certificate(_),
        ))) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a certificate from another CA was accepted"),
    }
    assert!(matches!(
        Client::connect("not a jid", "x", options(&serve)).await,
        Err(Error::Jid(_))
    ));
}

/// The receiving role: a `Listener` accepts, each `Incoming` negotiates into a `Peer`;
/// a `Client` logs in to it, and stanzas go both ways through the two `Stream`s.
#[tokio::test]
async fn a_listener_serves_a_client_with_the_same_stream_api() {
    use xmpp_handshake_core::sasl::MemoryStore;
    use xmpp_handshake_host::certs::{server_template, ServerIdentity};
    use xmpp_handshake_tokio::upgrade::{Certificates, RustlsServer};
    use xmpp_handshake_tokio::{Listener, ServerOptions};

    let identity = ServerIdentity::generate("example.com").unwrap();
    let mut certificates = Certificates::default();
    certificates.insert("example.com", identity.key.clone());
    let tls = RustlsServer::new(certificates, server_template());
    let mut store = MemoryStore::new();
    store.add_password("carol", "carol-pw", 4096, &mut rand_core::OsRng);
    let listener = Listener::bind(
        "127.0.0.1:0",
        ServerOptions::client_to_server("example.com", tls, store),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut peer = listener.accept().await.unwrap().negotiate().await.unwrap();
        assert_eq!(peer.jid().to_string(), "carol@example.com/phone");
        let hello = peer.next().await.expect("the client's stanza");
        peer.send(&stanza::message("carol@example.com/phone", "welcome", None))
            .await
            .unwrap();
        assert!(peer.next().await.is_none(), "the client closes");
        assert_eq!(peer.ended().await, Some(Closed::ByPeer));
        hello.raw().to_string()
    });
    let options = ClientOptions {
        trust: Trust::pem(identity.ca_pem.as_deref().unwrap().as_bytes()).unwrap(),
        host: Some(addr.ip().to_string()),
        port: Some(addr.port()),
        ..ClientOptions::default()
    };
    let mut carol = Client::connect("carol@example.com/phone", "carol-pw", options)
        .await
        .expect("carol logs in to the listener");
    carol.send("<presence/>").await.unwrap();
    let welcome = tokio::time::timeout(Duration::from_secs(5), carol.next())
        .await
        .unwrap()
        .unwrap();
    assert!(welcome.raw().contains("welcome"), "{}", welcome.raw());
    carol.close().await.expect("closed cleanly");
    let hello = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello, "<presence/>");
}

/// An application that falls behind: with room for 8 received stanzas, 3,000 messages
/// arrive while it does not read. The client stops reading (TCP holds the server back)
/// instead of ending the stream or dropping one; when the application reads again, every
/// message arrives once, in order, and the stream is still up.
///
/// `serve` may queue all of them for the slow client (`--max-queue-bytes`, 2 MiB here):
/// with its default of 256 KiB, whether 840 KB fit depends on how far the kernel has
/// grown the loopback socket buffers, and on a loaded machine `serve` rightly bounced the
/// overflow to the sender with `<resource-constraint/>`. That limit has its own tests
/// (host/tests/limits.rs); this one is about the client.
#[tokio::test]
async fn a_slow_application_holds_the_server_back_and_loses_nothing() {
    const N: usize = 3000;
    let serve = ServeBin::start(&["--max-queue-bytes", "2097152"], &[]).await;
    let slow = ClientOptions {
        receive_queue: 8,
        ..options(&serve)
    };
    let mut alice = Client::connect("alice@example.com/slow", "alice-pw", slow)
        .await
        .unwrap();
    let bob = Client::connect("bob@example.com/fast", "bob-pw", options(&serve))
        .await
        .unwrap();
    let body = "b".repeat(200);
    let sending = tokio::spawn(async move {
        for n in 0..N {
            let m = stanza::message("alice@example.com/slow", &format!("{n} {body}"), None);
            bob.send(&m).await.unwrap();
        }
        bob
    });
    // Not reading while most of it is on its way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 0..N {
        let got = tokio::time::timeout(Duration::from_secs(10), alice.next())
            .await
            .unwrap_or_else(|_| panic!("message {n} did not come"))
            .unwrap_or_else(|| panic!("the stream ended before message {n}"));
        let text = got
            .parse(|node| {
                node.descendants()
                    .find(|c| c.has_tag_name("body"))
                    .and_then(|b| b.text())
                    .map(String::from)
            })
            .flatten()
            .unwrap_or_default();
        assert!(
            text.starts_with(&format!("{n} ")),
            "expected {n}, got {text:.20}"
        );
    }
    let bob = sending.await.unwrap();
    alice
        .send(&stanza::message("bob@example.com/fast", "all here", None))
        .await
        .unwrap();
    let mut bob = bob;
    let ack = tokio::time::timeout(Duration::from_secs(5), bob.next())
        .await
        .unwrap()
        .expect("alice's stream is still up");
    assert!(ack.raw().contains("all here"));
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

/// `send_tracked` says what stream management (XEP-0198) made of each stanza: numbers from
/// 1, which the acks then name (`next_incoming` brings them beside the stanzas); a nonza is
/// not tracked; without stream management nothing is.
#[tokio::test]
async fn send_tracked_gives_the_numbers_the_acks_name() {
    use xmpp_handshake_core::connection::Event;
    use xmpp_handshake_core::sm::SmConfig;
    use xmpp_handshake_tokio::Incoming;

    let serve = ServeBin::start(&[], &[]).await;
    let mut options = options(&serve);
    options.stream_management = Some(SmConfig {
        request_every: 2,
        request_after: None,
        ..SmConfig::default()
    });
    let mut alice = Client::connect("alice@example.com/tracked", "alice-pw", options)
        .await
        .expect("alice logs in");
    let to = alice.jid().to_string();
    for (n, body) in [(1, "one"), (2, "two")] {
        assert_eq!(
            alice
                .send_tracked(&stanza::message(&to, body, None))
                .await
                .unwrap(),
            Some(n)
        );
    }
    assert_eq!(
        alice
            .send_tracked("<x xmlns='urn:example'/>")
            .await
            .unwrap(),
        None,
        "not a stanza: not counted"
    );
    let mut acked = 1..1;
    let mut bodies = 0;
    while acked.end < 3 || bodies < 2 {
        match tokio::time::timeout(Duration::from_secs(5), alice.next_incoming())
            .await
            .expect("in time")
            .expect("the stream stays up")
            .expect("not closed")
        {
            Incoming::StreamManagement(Event::Acked { numbers, .. }) => acked.end = numbers.end,
            Incoming::StreamManagement(_) => {}
            Incoming::Stanza(s) => bodies += usize::from(s.name() == "message"),
        }
    }
    assert_eq!(acked, 1..3, "the server acknowledged exactly 1 and 2");
    alice.close().await.expect("alice closes cleanly");

    let plain = Client::connect("bob@example.com", "bob-pw", self::options(&serve))
        .await
        .expect("bob logs in");
    assert_eq!(
        plain
            .send_tracked(&stanza::message(&to, "untracked", None))
            .await
            .unwrap(),
        None,
        "no stream management: nothing tracked"
    );
    plain.close().await.expect("bob closes cleanly");
}

/// The library's FAST settings (XEP-0484) and inline resumption (XEP-0198 inside SASL2)
/// against `serve`: the first login asks for a token under its user agent id and keeps it in
/// its login memory; after the link drops, the next connect logs in with the token and
/// resumes the session in the same `<authenticate/>`: what was not acknowledged is sent
/// again and arrives once; the memory survives its own byte form.
#[tokio::test]
async fn fast_token_and_inline_resumption_through_the_library() {
    use xmpp_handshake_core::connection::Event;
    use xmpp_handshake_core::login::LoginMemory;
    use xmpp_handshake_core::sm::SmConfig;
    use xmpp_handshake_tokio::Incoming;

    let serve = ServeBin::start(&[], &[]).await;
    let mut options = options(&serve);
    options.user_agent_id = Some("5a1f3c1e-7a9d-4d0e-8b61-0c2f4e9b7d31".into());
    options.stream_management = Some(SmConfig {
        request_every: 1,
        request_after: None,
        ..SmConfig::default()
    });
    let mut bob = Client::connect("bob@example.com", "bob-pw", options.clone())
        .await
        .expect("bob logs in");
    let mut alice = Client::connect("alice@example.com/fast", "alice-pw", options.clone())
        .await
        .expect("alice logs in");
    assert!(alice.outcome().sasl2 && alice.outcome().mechanism.is_some());
    let memory = alice
        .login_memory()
        .cloned()
        .expect("a verified login is kept");
    let token = memory.fast_token.clone().expect("a FAST token issued");
    assert_eq!(
        token.mechanism, "HT-SHA-256-EXPR",
        "bound to TLS 1.3's exporter"
    );
    let memory = LoginMemory::from_bytes(&memory.to_bytes().unwrap()).unwrap();

    // One acknowledged.
    let to = bob.jid().to_string();
    alice
        .send(&stanza::message(&to, "one", None))
        .await
        .unwrap();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), alice.next_sm_event())
            .await
            .expect("in time");
        if let Some(Event::Acked { h: 1, .. }) = next {
            break;
        }
    }
    // The link drops right behind two more: whether they or their acks got through or
    // not, the server's `h` on resumption says so.
    for body in ["two", "three"] {
        alice.send(&stanza::message(&to, body, None)).await.unwrap();
    }
    alice.abandon().await.unwrap();
    alice.ended().await;
    let state = alice.take_sm_state().expect("a resumable session");

    options.login_memory = Some(memory);
    options.resume = Some(state);
    let mut alice = Client::connect("alice@example.com/fast", "alice-pw", options)
        .await
        .expect("alice logs in again");
    assert!(alice.outcome().sasl2);
    assert_eq!(
        alice.outcome().mechanism,
        None,
        "the token, not the password"
    );
    assert!(!alice.outcome().fast_token_rejected);
    let resumed = tokio::time::timeout(Duration::from_secs(5), alice.next_sm_event())
        .await
        .expect("in time");
    assert!(
        matches!(resumed, Some(Event::Resumed { h: 1..=3, .. })),
        "{resumed:?}"
    );
    let mut seen = Vec::new();
    while let Ok(Ok(Some(incoming))) =
        tokio::time::timeout(Duration::from_secs(2), bob.next_incoming()).await
    {
        if let Incoming::Stanza(s) = incoming {
            if let Some(Some(body)) = s.parse(|n| {
                n.descendants()
                    .find(|d| d.has_tag_name("body"))
                    .and_then(|b| b.text())
                    .map(String::from)
            }) {
                seen.push(body);
            }
        }
    }
    assert_eq!(seen, ["one", "two", "three"], "each once, in order");
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

/// RFC 8446 §2.2: the TLS 1.3 ticket serve sent on the first connect is kept in the
/// options' `tls_sessions`; a reconnect with a clone of those options resumes the TLS
/// session (no certificate exchange), one with fresh options does a full handshake again.
/// On the STARTTLS port and on the Direct TLS one (XEP-0368).
#[tokio::test]
async fn a_reconnect_resumes_the_tls_session_the_options_kept() {
    let serve = ServeBin::start(&["--direct-tls-listen", "127.0.0.1:0"], &[]).await;
    let direct_port: u16 = serve
        .banner
        .lines()
        .find(|l| l.contains("Direct TLS (XEP-0368"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Direct TLS port in {:?}", serve.banner));
    let direct = || ClientOptions {
        direct_tls: true,
        port: Some(direct_port),
        ..options(&serve)
    };
    for (what, fresh) in [
        (
            "STARTTLS",
            &(|| options(&serve)) as &dyn Fn() -> ClientOptions,
        ),
        ("Direct TLS", &direct),
    ] {
        let kept = fresh();
        let first = Client::connect("alice@example.com/tls", "alice-pw", kept.clone())
            .await
            .expect("alice logs in");
        assert!(!first.tls_resumed(), "{what}: nothing to resume yet");
        first.close().await.unwrap();

        let second = Client::connect("alice@example.com/tls", "alice-pw", kept.clone())
            .await
            .expect("alice logs in again");
        assert!(second.tls_resumed(), "{what}: the kept ticket resumed");
        assert_eq!(second.jid().bare().to_string(), "alice@example.com");
        second.close().await.unwrap();

        let other = Client::connect("alice@example.com/tls", "alice-pw", fresh())
            .await
            .expect("alice logs in with fresh options");
        assert!(!other.tls_resumed(), "{what}: fresh options hold no ticket");
        other.close().await.unwrap();
    }
}

/// One way of [`SlowLink`]s: a 200 ms round trip.
const ONE_WAY: Duration = Duration::from_millis(100);

/// The round trips a connect over a [`SlowLink`] took, counting the TCP connect (which
/// the relay answers at once, so it is counted, not timed): the time over the link's
/// round-trip time, rounded.
fn round_trips(elapsed: Duration) -> u32 {
    let rtt = 2 * ONE_WAY;
    1 + ((elapsed + rtt / 2).as_millis() / rtt.as_millis()) as u32
}

/// Direct TLS through `link`, with a user agent (FAST) and the TLS sessions of `kept`.
fn over(link: &SlowLink, serve: &ServeBin) -> ClientOptions {
    ClientOptions {
        direct_tls: true,
        host: Some(link.addr.ip().to_string()),
        port: Some(link.addr.port()),
        user_agent_id: Some("5d0a4bbf-5d8e-4c0e-a4a2-1f6a3a0c7e11".into()),
        ..options(serve)
    }
}

/// Issue 16 item 3, XEP-0484 §3.4 with TLS 1.3 0-RTT (RFC 8446 §2.3): serve advertises
/// `tls-0rtt` on its Direct TLS port and issues a token usable there (`HT-SHA-256-NONE`);
/// a reconnect in the same process resumes the TLS session and sends the stream header
/// and the FAST `<authenticate/>` as early data, which serve answers in its first flight:
/// bound in at most 2 round trips counting the TCP connect (3 without early data), on a
/// link of 200 ms round trips. Each reconnect raises the `count`.
#[tokio::test]
async fn a_reconnect_logs_in_in_tls_early_data_within_two_round_trips() {
    let serve = ServeBin::start(&["--direct-tls-listen", "127.0.0.1:0"], &[]).await;
    let link = SlowLink::start(serve.direct_tls_addr(), ONE_WAY).await;
    let mut options = over(&link, &serve);
    let first = Client::connect("alice@example.com/zero", "alice-pw", options.clone())
        .await
        .expect("alice logs in with the password");
    assert!(!first.early_data_accepted(), "no ticket yet");
    let memory = first.login_memory().cloned().expect("a memory");
    let token = memory.fast_token.as_ref().expect("a FAST token");
    assert_eq!(
        token.mechanism, "HT-SHA-256-NONE",
        "a token usable in 0-RTT"
    );
    assert!(
        memory.sasl2_inline.is_some_and(|i| i.fast_0rtt),
        "{memory:?}"
    );
    first.close().await.unwrap();

    let mut counts = Vec::new();
    options.login_memory = Some(memory);
    for attempt in 1..=2 {
        let started = std::time::Instant::now();
        let again = Client::connect("alice@example.com/zero", "alice-pw", options.clone())
            .await
            .unwrap_or_else(|e| panic!("reconnect {attempt}: {e}"));
        let took = started.elapsed();
        eprintln!(
            "reconnect {attempt}: {took:?} on a 200 ms link: {} round trips counting the TCP connect",
            round_trips(took)
        );
        assert!(
            again.tls_resumed(),
            "reconnect {attempt}: the ticket resumed"
        );
        assert!(
            again.early_data_accepted(),
            "reconnect {attempt}: serve took the early data"
        );
        assert!(
            again.outcome().mechanism.is_none(),
            "logged in with the token"
        );
        assert!(
            round_trips(took) <= 2,
            "reconnect {attempt}: {took:?}, {} round trips counting the TCP connect",
            round_trips(took)
        );
        let memory = again.login_memory().cloned().expect("a memory");
        counts.push(memory.fast_count);
        options.login_memory = Some(memory);
        again.close().await.unwrap();
    }
    assert!(counts[0] >= 1 && counts[1] > counts[0], "{counts:?}");
}

/// XEP-0198 inside SASL2 in TLS 0-RTT: a `<resume/>` in the early `<authenticate/>` is
/// answered from serve's detached sessions at once, so `<success/>` with `<resumed/>` goes
/// in the first flight too: resumed in at most 2 round trips counting the TCP connect.
#[tokio::test]
async fn an_inline_resumption_in_early_data_is_answered_in_the_first_flight() {
    use xmpp_handshake_core::connection::Event;
    use xmpp_handshake_core::sm::SmConfig;
    let serve = ServeBin::start(&["--direct-tls-listen", "127.0.0.1:0"], &[]).await;
    let link = SlowLink::start(serve.direct_tls_addr(), ONE_WAY).await;
    let mut options = ClientOptions {
        stream_management: Some(SmConfig::default()),
        ..over(&link, &serve)
    };
    let mut first = Client::connect("alice@example.com/sm", "alice-pw", options.clone())
        .await
        .expect("alice logs in with the password");
    options.login_memory = first.login_memory().cloned();
    first.abandon().await.unwrap();
    first.ended().await;
    options.resume = Some(first.take_sm_state().expect("a resumable session"));

    let started = std::time::Instant::now();
    let mut again = Client::connect("alice@example.com/sm", "alice-pw", options)
        .await
        .expect("alice resumes");
    let took = started.elapsed();
    eprintln!(
        "0-RTT FAST + inline resumption: {took:?} on a 200 ms link: {} round trips counting the TCP connect",
        round_trips(took)
    );
    assert!(again.early_data_accepted());
    assert!(again.outcome().mechanism.is_none(), "the token logged in");
    let resumed = tokio::time::timeout(Duration::from_secs(5), again.next_sm_event())
        .await
        .expect("in time");
    assert!(
        matches!(resumed, Some(Event::Resumed { .. })),
        "{resumed:?}"
    );
    assert!(round_trips(took) <= 2, "{took:?}");
    again.close().await.unwrap();
}

/// XEP-0484 §3.4's replay rule on early data: a login that sends a `count` serve saw
/// already (the same login memory used twice, as an attacker replaying the early data
/// would) is refused; the client then logs in with the password on the same stream and
/// forgets the token.
#[tokio::test]
async fn a_replayed_count_in_early_data_is_refused() {
    let serve = ServeBin::start(&["--direct-tls-listen", "127.0.0.1:0"], &[]).await;
    let link = SlowLink::start(serve.direct_tls_addr(), Duration::ZERO).await;
    let mut options = over(&link, &serve);
    let first = Client::connect("alice@example.com/zero", "alice-pw", options.clone())
        .await
        .expect("alice logs in with the password");
    options.login_memory = first.login_memory().cloned();
    first.close().await.unwrap();

    let used = Client::connect("alice@example.com/zero", "alice-pw", options.clone())
        .await
        .expect("the token logs in");
    assert!(used.early_data_accepted());
    assert!(used.outcome().mechanism.is_none());
    used.close().await.unwrap();

    // The same memory again: the same count.
    let replayed = Client::connect("alice@example.com/zero", "alice-pw", options.clone())
        .await
        .expect("the password logs in after the refusal");
    assert!(
        replayed.early_data_accepted(),
        "TLS took it; XEP-0484 refused it"
    );
    assert!(
        replayed.outcome().fast_token_rejected,
        "{:?}",
        replayed.outcome()
    );
    assert!(
        replayed.outcome().mechanism.is_some(),
        "the password logged in"
    );
    replayed.close().await.unwrap();
}

/// Early data a server does not take (here: serve replaced behind the same address by one
/// with `--no-early-data`, same certificate, which knows neither the ticket nor the token)
/// is sent again after the handshake: the header and `<authenticate/>` arrive once, the
/// token is refused there and the password logs in, nothing lost. A client whose server
/// never allowed 0-RTT sends no early data at all.
#[tokio::test]
async fn early_data_the_server_refuses_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let pki = xmpp_handshake_host::certs::generate_pki("example.com").unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.leaf_pem).unwrap();
    std::fs::write(&key, &pki.leaf_key_pem).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let ca_pem = &pki.ca_pem;
    let start = |early: bool| {
        let mut args = vec![
            "--user",
            "alice:alice-pw",
            "--direct-tls-listen",
            "127.0.0.1:0",
            "--cert",
            cert.as_str(),
            "--key",
            key.as_str(),
        ];
        if !early {
            args.push("--no-early-data");
        }
        async move {
            let mut serve = ServeBin::start_with(&args, false, &[]).await;
            serve.set_ca(ca_pem);
            serve
        }
    };
    let with = start(true).await;
    let without = start(false).await;
    let link = SlowLink::start(with.direct_tls_addr(), Duration::ZERO).await;
    let mut options = over(&link, &with);
    let first = Client::connect("alice@example.com/zero", "alice-pw", options.clone())
        .await
        .expect("alice logs in with the password");
    options.login_memory = first.login_memory().cloned();
    first.close().await.unwrap();

    link.switch_to(without.direct_tls_addr());
    let refused = Client::connect("alice@example.com/zero", "alice-pw", options.clone())
        .await
        .expect("alice logs in after the refusal");
    assert!(!refused.early_data_accepted());
    assert!(!refused.tls_resumed(), "the other server knows no ticket");
    assert!(
        refused.outcome().fast_token_rejected,
        "the <authenticate/> arrived (after the handshake) and was refused: {:?}",
        refused.outcome()
    );
    assert!(refused.outcome().mechanism.is_some());
    let memory = refused.login_memory().cloned().expect("a memory");
    assert!(
        memory.sasl2_inline.is_some_and(|i| !i.fast_0rtt),
        "no tls-0rtt with --no-early-data: {memory:?}"
    );
    options.login_memory = Some(memory);
    refused.close().await.unwrap();

    let plain = Client::connect("alice@example.com/zero", "alice-pw", options)
        .await
        .expect("the token logs in, after the handshake");
    assert!(plain.tls_resumed());
    assert!(!plain.early_data_accepted(), "nothing was sent early");
    assert!(plain.outcome().mechanism.is_none(), "{:?}", plain.outcome());
    plain.close().await.unwrap();
}
