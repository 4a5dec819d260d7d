//! `serve`'s resource bounds (host/src/limits.rs), each against the real binary over
//! loopback sockets and TLS: element size, stream header size, nesting depth, attribute
//! count, failed authentications (and so SASL rounds), the handshake deadline (a client
//! sending one byte a second), the idle timeout (ping, then `<connection-timeout/>`), the
//! connection limit, the per-client queue; and that every session is released (sockets
//! and memory) whatever way its connection ends. Also `connect --timeout` on the client.

mod serve_bin;

use std::time::{Duration, Instant};

use serve_bin::{ServeBin, BIN, DOMAIN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::stream::error::StreamErrorCondition;
use xmpp_handshake_core::Error;
use xmpp_handshake_host::client::ClientSession;

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0' \
xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const LIMIT: Duration = Duration::from_secs(30);

/// Reads until `needle` appears or the peer closes; returns the text and whether it closed.
async fn read_until<S: AsyncRead + Unpin>(
    s: &mut S,
    needle: &str,
    limit: Duration,
) -> (String, bool) {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(limit, async {
        loop {
            if !needle.is_empty() && text.contains(needle) {
                return false;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
    .await;
    match read {
        Ok(closed) => (text, closed),
        Err(_) => panic!("neither {needle:?} nor a close within {limit:?}; got {text:?}"),
    }
}

/// A raw client stream after STARTTLS and the post-TLS features (before SASL).
async fn raw_tls(serve: &ServeBin) -> TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(serve.addr).await.unwrap();
    tcp.write_all(format!("{HEADER}{STARTTLS}").as_bytes())
        .await
        .unwrap();
    let (text, closed) = read_until(&mut tcp, "<proceed", LIMIT).await;
    assert!(!closed, "{text}");
    let connector = tokio_rustls::TlsConnector::from(serve.tls_config());
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(HEADER.as_bytes()).await.unwrap();
    let (text, closed) = read_until(&mut tls, "</stream:features>", LIMIT).await;
    assert!(!closed, "{text}");
    tls
}

fn b64(bytes: &[u8]) -> String {
    xmpp_handshake_core::sasl::base64::encode(bytes)
}

/// The stream error the server sent, as the client's session reports it.
async fn stream_error(session: &mut ClientSession) -> StreamErrorCondition {
    let result = tokio::time::timeout(LIMIT, async {
        loop {
            match session.next_stanza().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the server ends the stream in time");
    match result {
        Err(Error::StreamErrorReceived(e)) => e.condition,
        other => panic!("expected a stream error, got {other:?}"),
    }
}

/// The next element whose text contains `needle`.
async fn element_with(session: &mut ClientSession, needle: &str, limit: Duration) -> String {
    tokio::time::timeout(limit, async {
        loop {
            match session.next_stanza().await {
                Ok(Some(e)) if e.raw().contains(needle) => return e.to_string(),
                Ok(Some(_)) => continue,
                other => panic!("waiting for {needle:?}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} within {limit:?}"))
}

#[tokio::test]
async fn elements_headers_nesting_attributes_and_parse_cost_over_their_bound_get_policy_violation()
{
    let serve = ServeBin::start(
        &[
            "--max-element-bytes",
            "2048",
            "--max-header-bytes",
            "512",
            "--max-depth",
            "4",
            "--max-attributes",
            "8",
            "--max-parse-bytes",
            "100000",
        ],
        &[],
    )
    .await;
    let me = "alice@example.com/limits";
    // At each bound: delivered (to ourselves).
    let mut alice = serve.login(me, "alice-pw").await.session;
    let body = "x".repeat(1500);
    let at_bounds = format!(
        "<message to='{me}' id='m1' type='chat' a='1' b='2' c='3' d='4' e='5'>\
         <body>{body}</body><a><b><c/></b></a></message>"
    );
    alice.send(&at_bounds).await.unwrap();
    let echoed = element_with(&mut alice, "id='m1'", LIMIT).await;
    assert!(
        echoed.contains(&body) && echoed.contains("<c/>"),
        "{echoed}"
    );

    // One over each bound: the stream ends with <policy-violation/>.
    let over = [
        (
            "element",
            format!(
                "<message to='{me}'><body>{}</body></message>",
                "x".repeat(2100)
            ),
        ),
        (
            "depth",
            format!("<message to='{me}'><a><b><c><d/></c></b></a></message>"),
        ),
        (
            "attributes",
            format!("<message to='{me}' id='m' type='chat' a='1' b='2' c='3' d='4' e='5' f='6'/>"),
        ),
        // Within the size bound, but roxmltree would reserve an attribute record per `=`.
        (
            "parse",
            format!(
                "<message to='{me}'><body>{}</body></message>",
                "=".repeat(1900)
            ),
        ),
    ];
    for (what, stanza) in over {
        let mut s = serve.login(me, "alice-pw").await.session;
        s.send(&stanza).await.unwrap();
        assert_eq!(
            stream_error(&mut s).await,
            StreamErrorCondition::PolicyViolation,
            "{what}"
        );
    }

    // A stream header over 512 bytes, before anything else.
    let mut tcp = TcpStream::connect(serve.addr).await.unwrap();
    let big = HEADER.replace("to=", &format!("x='{}' to=", "y".repeat(600)));
    tcp.write_all(big.as_bytes()).await.unwrap();
    let (text, closed) = read_until(&mut tcp, "", LIMIT).await;
    assert!(closed, "{text}");
    assert!(
        text.contains("<stream:stream") && text.contains("<policy-violation"),
        "{text}"
    );
    // The same header at 512 bytes is fine.
    let fits = HEADER.replace(
        "to=",
        &format!("x='{}' to=", "y".repeat(512 - HEADER.len() - 5)),
    );
    assert_eq!(fits.len(), 512);
    let mut tcp = TcpStream::connect(serve.addr).await.unwrap();
    tcp.write_all(fits.as_bytes()).await.unwrap();
    let (text, _) = read_until(&mut tcp, "</stream:features>", LIMIT).await;
    assert!(text.contains("<starttls"), "{text}");
}

#[tokio::test]
async fn failed_authentications_and_sasl_rounds_end_the_stream_at_the_bound() {
    let serve = ServeBin::start(&["--max-auth-failures", "2"], &[]).await;
    // Wrong PLAIN passwords: one <failure/> per attempt, the second ends the stream.
    let mut tls = raw_tls(&serve).await;
    let wrong = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        b64(b"\0alice\0not-her-password")
    );
    tls.write_all(wrong.as_bytes()).await.unwrap();
    let (text, closed) = read_until(&mut tls, "<failure", LIMIT).await;
    assert!(!closed && text.contains("not-authorized"), "{text}");
    tls.write_all(wrong.as_bytes()).await.unwrap();
    let (text, closed) = read_until(&mut tls, "", LIMIT).await;
    assert!(closed, "{text}");
    assert!(
        text.contains("<failure") && text.contains("<policy-violation"),
        "{text}"
    );

    // SCRAM rounds: a bad proof after every challenge, for as long as the server answers.
    // It stops after two exchanges: a third <auth/> is never challenged.
    let mut tls = raw_tls(&serve).await;
    let mut challenges = 0;
    let mut seen = String::new();
    for _ in 0..10 {
        let first = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{}</auth>",
            b64(b"n,,n=alice,r=abcdefghijkl")
        );
        if tls.write_all(first.as_bytes()).await.is_err() {
            break;
        }
        let (text, closed) = read_until(&mut tls, "</challenge>", LIMIT).await;
        seen.push_str(&text);
        if closed {
            break;
        }
        challenges += 1;
        let bad = format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            b64(b"c=biws,r=not-the-nonce,p=AAAA")
        );
        if tls.write_all(bad.as_bytes()).await.is_err() {
            break;
        }
        let (text, closed) = read_until(&mut tls, "</failure>", LIMIT).await;
        seen.push_str(&text);
        if closed {
            break;
        }
    }
    let (rest, closed) = read_until(&mut tls, "", LIMIT).await;
    seen.push_str(&rest);
    assert!(closed, "{seen}");
    assert_eq!(challenges, 2, "{seen}");
    assert!(seen.contains("<policy-violation"), "{seen}");
}

#[tokio::test]
async fn the_handshake_deadline_drops_silent_and_one_byte_a_second_clients() {
    let serve = ServeBin::start(&["--handshake-timeout", "2"], &[]).await;
    let started = Instant::now();
    let silent = async {
        let mut tcp = TcpStream::connect(serve.addr).await.unwrap();
        read_until(&mut tcp, "", LIMIT).await;
        started.elapsed()
    };
    let dribbler = async {
        let mut tcp = TcpStream::connect(serve.addr).await.unwrap();
        let mut sent = 0;
        for b in HEADER.bytes() {
            if tcp.write_all(&[b]).await.is_err() {
                break;
            }
            sent += 1;
            // The server closing shows as EOF on our side.
            let mut probe = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        (started.elapsed(), sent)
    };
    let (silent, (dribbled, sent)) = tokio::join!(silent, dribbler);
    for (what, t) in [("silent", silent), ("one byte a second", dribbled)] {
        assert!(
            t >= Duration::from_millis(1900) && t < Duration::from_secs(6),
            "{what} client dropped after {t:?}"
        );
    }
    assert!(sent < 10, "the dribbler sent {sent} bytes");
    serve
        .wait_log("negotiation not done within 2 s", 2, LIMIT)
        .await;
}

#[tokio::test]
async fn idle_streams_get_a_ping_then_connection_timeout_unless_alive() {
    let serve = ServeBin::start(&["--idle-timeout", "1"], &[]).await;
    let started = Instant::now();
    let mut silent = serve
        .login("alice@example.com/silent", "alice-pw")
        .await
        .session;
    let mut alive = serve.login("bob@example.com/alive", "bob-pw").await.session;
    let mut dribbler = serve
        .login("alice@example.com/dribbler", "alice-pw")
        .await
        .session;
    let silent_run = async {
        let ping = element_with(&mut silent, "urn:xmpp:ping", Duration::from_secs(5)).await;
        assert!(ping.contains("type='get'"), "{ping}");
        let condition = stream_error(&mut silent).await;
        (condition, started.elapsed())
    };
    let alive_run = async {
        // Whitespace keep-alives every 400 ms for 4 s, then a stanza to ourselves.
        for _ in 0..10 {
            alive.send(" ").await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        alive
            .send(&stanza::message(
                "bob@example.com/alive",
                "still here",
                Some("a1"),
            ))
            .await
            .unwrap();
        element_with(&mut alive, "still here", Duration::from_secs(5)).await;
    };
    let dribble_run = async {
        let partial = "<message to='alice@example.com/dribbler'><body>";
        let mut sent = 0;
        for b in partial.chars().chain(std::iter::repeat('z')) {
            if dribbler.send(&b.to_string()).await.is_err() {
                break;
            }
            sent += 1;
            match tokio::time::timeout(Duration::from_millis(250), dribbler.next_stanza()).await {
                Err(_) | Ok(Ok(Some(_))) => {}
                Ok(Err(Error::StreamErrorReceived(e))) => {
                    return (e.condition, started.elapsed(), sent)
                }
                Ok(other) => panic!("dribbler: {other:?}"),
            }
        }
        panic!("the dribbler's stream ended without a stream error");
    };
    let ((silent_condition, silent_after), (), (dribble_condition, dribble_after, sent)) =
        tokio::join!(silent_run, alive_run, dribble_run);
    assert_eq!(silent_condition, StreamErrorCondition::ConnectionTimeout);
    assert_eq!(dribble_condition, StreamErrorCondition::ConnectionTimeout);
    for t in [silent_after, dribble_after] {
        assert!(
            t >= Duration::from_millis(1900) && t < Duration::from_secs(6),
            "{t:?}"
        );
    }
    assert!(sent > 6, "the dribbler kept sending ({sent} bytes)");
}

#[tokio::test]
async fn connections_over_the_limit_get_resource_constraint_and_slots_come_back() {
    let serve = ServeBin::start(&["--max-connections", "2"], &[]).await;
    let first = serve
        .login("alice@example.com/one", "alice-pw")
        .await
        .session;
    let _second = serve.login("bob@example.com/two", "bob-pw").await.session;
    let mut third = TcpStream::connect(serve.addr).await.unwrap();
    third.write_all(HEADER.as_bytes()).await.unwrap();
    let (text, closed) = read_until(&mut third, "", LIMIT).await;
    assert!(closed, "{text}");
    assert!(
        text.starts_with("<?xml") && text.contains("<resource-constraint"),
        "{text}"
    );
    assert!(text.ends_with("</stream:stream>"), "{text}");
    // One session closes: its slot is free again.
    tokio::time::timeout(LIMIT, first.close())
        .await
        .unwrap()
        .unwrap();
    serve
        .wait_log("gone (closed by the client)", 1, LIMIT)
        .await;
    let _third = serve.login("alice@example.com/three", "alice-pw").await;
}

#[tokio::test]
async fn a_client_that_stops_reading_cannot_make_the_server_queue_without_bound() {
    let serve = ServeBin::start(&["--max-queue-bytes", "65536", "--idle-timeout", "3"], &[]).await;
    // Bind 2 (XEP-0386) makes the resource from the one asked for: the JID bound.
    let stuck = serve.login("bob@example.com/stuck", "bob-pw").await;
    let to = stuck.jid.clone();
    let to = to.as_str();
    let stuck = stuck.session;
    let mut alice = serve
        .login("alice@example.com/flood", "alice-pw")
        .await
        .session;
    let before = serve.anon_rss_kib();
    // 32 MiB at a client that reads nothing: once its socket buffers are full, its queue
    // holds at most 64 KiB and the rest bounces to the sender.
    let body = "f".repeat(2000);
    let total = 32 << 20;
    let (mut sent, mut bounced, mut gone) = (0usize, 0usize, false);
    let mut n = 0;
    while sent < total {
        for _ in 0..16 {
            n += 1;
            let message = stanza::message(to, &body, Some(&format!("f{n}")));
            alice.send(&message).await.unwrap();
            sent += body.len();
        }
        while let Ok(next) =
            tokio::time::timeout(Duration::from_millis(1), alice.next_stanza()).await
        {
            // Bounced while the client is online; undeliverable once its session ended.
            let e = next
                .unwrap_or_else(|e| panic!("{e:?}\n{}", serve.log()))
                .unwrap()
                .to_string();
            if e.contains("<resource-constraint") && e.contains("type='wait'") {
                assert!(!gone, "{e}");
                bounced += 1;
            } else {
                assert!(e.contains("<service-unavailable"), "{e}");
                gone = true;
            }
        }
    }
    let grown = serve.anon_rss_kib().saturating_sub(before);
    assert!(bounced > 0, "{sent} bytes sent, nothing bounced");
    assert!(
        grown < 16 * 1024,
        "serve grew by {grown} KiB while {sent} bytes went to a client that reads nothing"
    );
    // The stuck client's session ends (its write blocks, or it never answers the ping);
    // messages to it then bounce as undeliverable.
    serve
        .wait_log(&format!("{to} gone"), 1, Duration::from_secs(20))
        .await;
    // (A fresh session: the flooding one may have idled out meanwhile.)
    let mut alice = serve
        .login("alice@example.com/after", "alice-pw")
        .await
        .session;
    alice
        .send(&stanza::message(to, "anyone?", Some("last")))
        .await
        .unwrap();
    let e = element_with(&mut alice, "id='last'", LIMIT).await;
    assert!(e.contains("<service-unavailable"), "{e}");
    drop(stuck);
}

/// Item 3's last clause: whatever way a connection ends (clean close, dropped after bind,
/// cut mid-TLS, cut mid-header, wrong password), serve releases it: its file descriptors
/// return to the count before, and its memory does not grow round after round (within 5%
/// after three warm-up rounds of 100 connections).
#[tokio::test]
async fn serve_releases_every_session_however_it_ends() {
    // One malloc arena: glibc's per-thread arenas make RSS wander by ±7% round to round
    // (measured), which would hide a small leak; with one, a leak-free serve is flat.
    // A session dropped after bind stays resumable (XEP-0198 §5, SM enabled inside SASL2's
    // Bind 2 since that became serve's default) for `--resume-timeout`: one second, so what
    // is measured is what serve keeps after a session is gone, not the resumption window.
    let serve = ServeBin::start(&["--resume-timeout", "1"], &[("MALLOC_ARENA_MAX", "1")]).await;
    let baseline_fds = serve.fds();
    let tls_config = serve.tls_config();
    let round = |n: usize| {
        let serve = &serve;
        let tls_config = tls_config.clone();
        async move {
            let mut tasks = Vec::new();
            for i in 0..n {
                let tls_config = tls_config.clone();
                tasks.push(async move {
                    match i % 5 {
                        0 => {
                            let s = serve
                                .login(&format!("alice@example.com/c{i}"), "alice-pw")
                                .await;
                            s.session.close().await.unwrap();
                        }
                        1 => drop(
                            serve
                                .login(&format!("bob@example.com/d{i}"), "bob-pw")
                                .await,
                        ),
                        2 => {
                            let trust = serve.trust();
                            let e = serve
                                .try_login("alice@example.com", "wrong", &trust)
                                .await
                                .err()
                                .expect("a wrong password fails");
                            assert_eq!(e.code, xmpp_handshake_host::exit::ExitCode::Authentication);
                        }
                        3 => {
                            let mut tcp = TcpStream::connect(serve.addr).await.unwrap();
                            let cut = HEADER.len() * (i % 7) / 7;
                            let _ = tcp.write_all(&HEADER.as_bytes()[..cut]).await;
                        }
                        _ => {
                            // TLS handshake begun, never finished.
                            let mut tcp = TcpStream::connect(serve.addr).await.unwrap();
                            tcp.write_all(format!("{HEADER}{STARTTLS}").as_bytes())
                                .await
                                .unwrap();
                            read_until(&mut tcp, "<proceed", LIMIT).await;
                            let connector = tokio_rustls::TlsConnector::from(tls_config);
                            let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
                            let _ = tokio::time::timeout(
                                Duration::from_millis(1),
                                connector.connect(name, tcp),
                            )
                            .await;
                        }
                    }
                });
            }
            futures_join_all(tasks).await;
        }
    };
    let settle = || async {
        let deadline = Instant::now() + LIMIT;
        while serve.fds() > baseline_fds && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serve.fds()
    };
    for _ in 0..3 {
        round(100).await;
        assert_eq!(settle().await, baseline_fds, "{}", serve.log());
    }
    let warm = serve.anon_rss_kib();
    for _ in 0..5 {
        round(100).await;
        assert_eq!(settle().await, baseline_fds, "{}", serve.log());
    }
    let after = serve.anon_rss_kib();
    if after > warm + warm / 20 {
        // The heap's high-water mark depends on how many of a round's 100 sessions happen to
        // overlap (the first five rounds grew 6-23% on some runs, before this change and
        // after, with nothing leaked): it settles, a leak does not. Five more rounds must not
        // grow it by as much again.
        for _ in 0..5 {
            round(100).await;
            assert_eq!(settle().await, baseline_fds, "{}", serve.log());
        }
        let later = serve.anon_rss_kib();
        assert!(
            later <= after + warm / 20,
            "anonymous RSS grew from {warm} KiB after three rounds to {after} KiB after five \
             more and {later} KiB after five more again"
        );
    }
}

/// Runs futures concurrently on this task (no extra crate).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// `connect --timeout`: a server that accepts TCP and never answers is given up on.
#[tokio::test]
async fn connect_gives_up_on_a_silent_server_after_its_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new(BIN)
            .args([
                "connect",
                "alice@example.com",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
            ])
            .args(["--timeout", "2", "--trust-first-use"])
            .env("XMPP_PASSWORD", "alice-pw")
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("connect ends")
    .unwrap();
    let elapsed = started.elapsed();
    hold.abort();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("within 2 s"), "{stderr}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}
