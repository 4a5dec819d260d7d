//! Soak: the real `serve` binary with many concurrent clients on loopback (STARTTLS,
//! SCRAM, bind, then messages around a ring: client i writes to client i+1), counting
//! every stanza: each one sent must arrive, in order, at its addressee; no errors; and
//! serve's resident memory at the end within a few percent of what it was after warm-up.
//!
//! `soak_smoke` (in tests/run): 50 clients, 10^4 stanzas. The full soak, ignored by
//! default (figures in the README's robustness section):
//!
//!     cargo test --release -p xmpp-handshake-host --test soak -- --ignored --nocapture
//!
//! (300 clients, 10^6 stanzas; `SOAK_CLIENTS` and `SOAK_STANZAS` override.)

mod serve_bin;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serve_bin::ServeBin;
use xmpp_handshake_core::stanza;
use xmpp_handshake_host::client::ClientSession;

/// Messages a client may have sent beyond what it has received (flow control around the
/// ring, so no queue ever fills).
const WINDOW: u64 = 16;

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    received: AtomicU64,
}

/// One client's part of a phase: send `quota` messages to `to`, receive `quota` from its
/// predecessor, numbered from `first`, in order.
async fn client_phase(
    session: &mut ClientSession,
    to: &str,
    first: u64,
    quota: u64,
    counts: &Counts,
) -> Result<(), String> {
    let (mut sent, mut received) = (0u64, 0u64);
    while received < quota {
        if sent < quota && sent < received + WINDOW {
            let n = first + sent;
            let message = stanza::message(to, &format!("soak {n}"), Some(&n.to_string()));
            session.send(&message).await.map_err(|e| e.to_string())?;
            sent += 1;
            counts.sent.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let element = tokio::time::timeout(Duration::from_secs(60), session.next_stanza())
            .await
            .map_err(|_| format!("nothing received for 60 s after {received} messages"))?
            .map_err(|e| e.to_string())?
            .ok_or("the server closed the stream")?
            .to_string();
        let expected = format!("<body>soak {}</body>", first + received);
        if !element.starts_with("<message") || !element.contains(&expected) {
            return Err(format!("expected {expected}, got {element}"));
        }
        received += 1;
        counts.received.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

struct Figures {
    clients: usize,
    stanzas: u64,
    elapsed: Duration,
    rss_warm: u64,
    rss_end: u64,
}

async fn soak(clients: usize, stanzas: u64) -> Figures {
    // One malloc arena: with glibc's per-thread arenas serve's RSS drifts by several
    // percent under this load without being a leak (README); one arena shows a leak as one.
    let serve = ServeBin::start(
        &["--max-connections", &(clients + 16).to_string()],
        &[("MALLOC_ARENA_MAX", "1")],
    )
    .await;
    let jid = |i: usize| {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        format!("{user}@example.com/c{i}")
    };
    // Log in, a few at a time (PBKDF2 on both sides). Bind 2 (XEP-0386) makes each
    // resource from the one asked for: messages go to the JIDs bound.
    let mut sessions = Vec::new();
    let mut bound = Vec::new();
    for chunk in (0..clients).collect::<Vec<_>>().chunks(8) {
        let logins = chunk.iter().map(|&i| {
            let serve = &serve;
            let jid = jid(i);
            async move {
                let password = if i % 2 == 0 { "alice-pw" } else { "bob-pw" };
                serve.login(&jid, password).await
            }
        });
        for s in futures_join(logins.collect()).await {
            bound.push(s.jid);
            sessions.push(s.session);
        }
    }
    let bound = Arc::new(bound);
    let counts = Arc::new(Counts::default());
    let per_client = stanzas.div_ceil(clients as u64);
    let warm_quota = (per_client / 10).max(1);
    let main_quota = per_client - warm_quota;

    let run_phase = |sessions: Vec<ClientSession>, first: u64, quota: u64| {
        let counts = counts.clone();
        let bound = bound.clone();
        async move {
            let tasks: Vec<_> = sessions
                .into_iter()
                .enumerate()
                .map(|(i, mut session)| {
                    let to = bound[(i + 1) % clients].clone();
                    let counts = counts.clone();
                    tokio::spawn(async move {
                        let result = client_phase(&mut session, &to, first, quota, &counts).await;
                        (session, result)
                    })
                })
                .collect();
            let mut back = Vec::new();
            for (i, task) in tasks.into_iter().enumerate() {
                let (session, result) = task.await.expect("client task");
                if let Err(e) = result {
                    panic!("client {i}: {e}");
                }
                back.push(session);
            }
            back
        }
    };

    let sessions = run_phase(sessions, 0, warm_quota).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_warm = serve.anon_rss_kib();
    let started = Instant::now();
    let sessions = run_phase(sessions, warm_quota, main_quota).await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_end = serve.anon_rss_kib();

    let total = per_client * clients as u64;
    assert_eq!(counts.sent.load(Ordering::Relaxed), total);
    assert_eq!(counts.received.load(Ordering::Relaxed), total);
    for session in sessions {
        tokio::time::timeout(Duration::from_secs(30), session.close())
            .await
            .expect("the server closes in time")
            .expect("a clean close");
    }
    serve
        .wait_log(
            "gone (closed by the client)",
            clients,
            Duration::from_secs(60),
        )
        .await;
    let log = serve.log();
    for bad in ["failed", "error", "timed out", "blocked", "refused"] {
        assert!(!log.contains(bad), "serve logged {bad:?}:\n{log}");
    }
    Figures {
        clients,
        stanzas: total,
        elapsed,
        rss_warm,
        rss_end,
    }
}

async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("ready")).collect()
}

fn report(f: &Figures) {
    let change = (f.rss_end as f64 - f.rss_warm as f64) / f.rss_warm as f64 * 100.0;
    eprintln!(
        "soak: {} clients, {} stanzas (the last 90% timed) in {:.1} s = {:.0} stanzas/s; \
         serve anonymous RSS after warm-up {} KiB, at the end {} KiB ({change:+.1}%)",
        f.clients,
        f.stanzas,
        f.elapsed.as_secs_f64(),
        f.stanzas as f64 * 0.9 / f.elapsed.as_secs_f64(),
        f.rss_warm,
        f.rss_end,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_smoke() {
    let f = soak(50, 10_000).await;
    report(&f);
    assert!(f.elapsed < Duration::from_secs(120), "{:?}", f.elapsed);
    // A short run: the allocator has not settled; only gross growth fails it.
    assert!(f.rss_end < f.rss_warm + f.rss_warm / 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the full soak: minutes in release; run by hand (see the module docs)"]
async fn soak_full() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let f = soak(
        var("SOAK_CLIENTS", 300) as usize,
        var("SOAK_STANZAS", 1_000_000),
    )
    .await;
    report(&f);
    assert!(f.elapsed < Duration::from_secs(900), "{:?}", f.elapsed);
    assert!(
        f.rss_end <= f.rss_warm + f.rss_warm * 5 / 100,
        "RSS {} KiB after warm-up, {} KiB at the end",
        f.rss_warm,
        f.rss_end
    );
}
