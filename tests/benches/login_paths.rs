//! Our client's paths to a bound resource, side by side on the same Prosody and ejabberd
//! (started by the harness on loopback): STARTTLS and Direct TLS (XEP-0368), each cold
//! (PBKDF2, mechanism chosen from the post-TLS offer) and with the SCRAM cache of an earlier
//! login (no PBKDF2, `<auth/>` pipelined after the TLS handshake), through the same
//! `client::Login` the CLI uses. Not a pass/fail test: prints the median time from TCP
//! connect to bound, the round trips after the connect, and each median as a ratio of
//! "STARTTLS, cold" measured in the same run.
//!
//! `cargo bench -p xmpp-handshake-tests --bench login_paths [-- --logins N]`

use std::time::{Duration, Instant};

use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_core::sasl::CbPolicy;
use xmpp_handshake_host::client::{self, ClientTrust, LoggedIn, Login};
use xmpp_handshake_host::tls_info::TlsCell;
use xmpp_handshake_host::transcript::{Side, Transcript};
use xmpp_handshake_tests::{Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, ServerInfo};

/// One login: time from TCP connect to bound, round trips after the connect, the session.
async fn login(
    server: &ServerInfo,
    login: &Login,
    trust: &ClientTrust,
    direct_tls: bool,
) -> (Duration, u32, LoggedIn) {
    let started = Instant::now();
    let port = if direct_tls {
        server.ports.c2s_direct_tls
    } else {
        server.ports.c2s
    };
    let transport = client::connect_tcp("127.0.0.1", port)
        .await
        .expect("connect");
    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    let logged_in = if direct_tls {
        client::login_direct_tls_typed(transport, login, trust, cell, &mut transcript).await
    } else {
        client::login_typed(transport, login, trust, cell, &mut transcript).await
    }
    .unwrap_or_else(|e| panic!("login: {e}\n{}", transcript.lines().join("\n")));
    (started.elapsed(), transcript.round_trips(), logged_in)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(name: &str, server: &ServerInfo, cb: CbPolicy, logins: usize) {
    let user = server.user(0);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.ca_der().to_vec().into()).expect("CA");
    let trust = ClientTrust::anchors(&server.domain, roots).expect("trust");
    let mut cold = Login::new(&user.jid(&server.domain), &user.password).expect("JID");
    cold.sasl.channel_binding = cb;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("\n{name}: {logins} logins each, median time from TCP connect to bound");
    println!(
        "  {:<26} {:>9} {:>12} {:>8}",
        "path", "median ms", "round trips", "ratio"
    );
    let mut baseline = None;
    for (label, direct_tls, cached) in [
        ("STARTTLS, cold", false, false),
        ("STARTTLS, SCRAM cache", false, true),
        ("Direct TLS, cold", true, false),
        ("Direct TLS, SCRAM cache", true, true),
    ] {
        let (times, round_trips) = rt.block_on(async {
            let mut how = cold.clone();
            if cached {
                // What the CLI keeps after a login: the keys and the mechanism used.
                let (_, _, first) = login(server, &cold, &trust, direct_tls).await;
                how.memory = Some(LoginMemory {
                    scram: first.session.outcome().scram_cache.clone(),
                    ..LoginMemory::default()
                });
                how.pipeline_mechanism = first.session.outcome().mechanism;
                first.session.close().await.expect("close");
            }
            let mut times = Vec::with_capacity(logins);
            let mut round_trips = 0;
            for _ in 0..logins {
                let (t, n, l) = login(server, &how, &trust, direct_tls).await;
                l.session.close().await.expect("close");
                times.push(t);
                round_trips = n;
            }
            (times, round_trips)
        });
        let m = median(times);
        let base = *baseline.get_or_insert(m);
        println!(
            "  {label:<26} {:>9.2} {round_trips:>12} {:>7.2}x",
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
}

fn main() {
    let mut logins = 20;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--logins" => {
                logins = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--logins N");
            }
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    let prosody = Prosody::start(ProsodyOptions::default()).expect("Prosody");
    bench(
        "Prosody (SCRAM-SHA-1, i=10000)",
        &prosody,
        CbPolicy::WhenOffered,
        logins,
    );
    drop(prosody);
    // ejabberd 23.01 rejects every channel binding on TLS 1.3 (interop_ejabberd.rs).
    let ejabberd = Ejabberd::start(EjabberdOptions::default()).expect("ejabberd");
    bench(
        "ejabberd (SCRAM-SHA-256, i=4096, channel binding off)",
        &ejabberd,
        CbPolicy::Off,
        logins,
    );
}
