//! `tests/bench`'s driver: time from TCP connect to a bound resource, ours against other
//! XMPP clients, on the same Prosody and ejabberd (started by the harness on loopback), and
//! the peak RSS of one login. Not a pass/fail test: it prints tables of medians and of the
//! ratios ours/peer measured in the same run.
//!
//! Clients:
//! - ours, cold: a fresh login (PBKDF2, STARTTLS with `<starttls/>` pipelined, pipelined
//!   bind), through the host library;
//! - ours, cached: the SCRAM keys and mechanism learned by an earlier login (no PBKDF2,
//!   `<auth/>` pipelined after the TLS handshake);
//! - ours over Direct TLS (XEP-0368), cold and cached: the same logins on the server's
//!   Direct TLS port (Prosody's `c2s_direct_tls_ports`, ejabberd's `tls: true` listener);
//! - ours, reconnect (`--servers prosody-sasl2`, Prosody with the SASL2/FAST modules): what
//!   the last login kept (a FAST token, XEP-0484, and the shape of the server's SASL2 offer),
//!   so `<authenticate/>` with the token and Bind 2 goes out with the header right after
//!   TLS, on STARTTLS and Direct TLS; the round trips the transcript counts are printed
//!   with the TCP connect. Inline resumption is not in it: Prosody 0.12.3 cannot run
//!   `mod_sasl2_sm`. The peers beside it do their full login (none has FAST);
//! - ours, reconnect in TLS 0-RTT (`--servers serve`, our own `serve`): through the tokio
//!   library, a reconnect in the same process resumes the TLS session and sends the header
//!   and the FAST `<authenticate/>` as early data, which serve answers in its first flight
//!   (issue 16 item 3: at most 2 round trips counting the TCP connect); beside it the same
//!   reconnect with early data off, and the peers' full logins on serve;
//! - libstrophe (the harness's C client), slixmpp, tokio-xmpp and @xmpp/client (tests/peers),
//!   each run as `PEER JID PASSWORD HOST PORT CAFILE --logins N`, printing `BOUND <µs>` per
//!   login, timed inside the peer from the start of its connect.
//!
//! Options (tests/bench passes them):
//!   --logins N          logins per client and server (default 20)
//!   --rtt-ms MS         the link's round-trip time (run inside tests/bench's delayed
//!                       network namespace): adds round trips = time / RTT
//!   --servers LIST      prosody,prosody-sasl2,ejabberd,serve (default all four)
//!   --tokio-xmpp BIN    the tokio-xmpp peer binary
//!   --xmppjs DIR        the @xmpp/client peer's dir (login.mjs and node_modules)
//!   --cli NAME=BIN      an `xmpp-handshake` binary, named after the build that made it
//!                       (e.g. `everyday=…`, `release=…`): peak RSS of one `connect`;
//!                       repeatable, each build gets its rows and ratio columns
//!   --firmware BIN      the firmware app's host build: CPU per login (`firmware_cpu`)
//!   --only rss          only the peak RSS table (needs --cli; Prosody only)
//! A peer that is not given or fails is listed with its error, never silently dropped; the
//! exit status is non-zero only when our own client fails (tests/run's smoke relies on it).
//! `BENCH_VERBOSE=1` prints every peer's output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_core::sasl::{CbPolicy, Mechanism};
use xmpp_handshake_host::client::{self, ClientTrust};
use xmpp_handshake_host::tls_info::TlsCell;
use xmpp_handshake_host::transcript::{Side, Transcript};
use xmpp_handshake_tests::netns::Netns;
use xmpp_handshake_tests::peers::{compile_strophe_client, python_with_slixmpp};
use xmpp_handshake_tests::serve::Serve;
use xmpp_handshake_tests::{Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, ServerInfo};

#[derive(Default)]
struct Options {
    logins: usize,
    rtt_ms: Option<f64>,
    servers: Vec<String>,
    tokio_xmpp: Option<PathBuf>,
    xmppjs: Option<PathBuf>,
    /// `--cli NAME=BIN`: our CLI as each build made it.
    clis: Vec<(String, PathBuf)>,
    firmware: Option<PathBuf>,
    /// `--only rss`: the peak-RSS table alone.
    only_rss: bool,
}

fn options() -> Options {
    let mut o = Options {
        logins: 20,
        servers: ["prosody", "prosody-sasl2", "ejabberd", "serve"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--logins" => o.logins = value().parse().expect("--logins N"),
            "--rtt-ms" => o.rtt_ms = Some(value().parse().expect("--rtt-ms MS")),
            "--servers" => {
                o.servers = value()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            "--tokio-xmpp" => o.tokio_xmpp = Some(value().into()),
            "--xmppjs" => o.xmppjs = Some(value().into()),
            "--cli" => {
                let v = value();
                let (name, bin) = v.split_once('=').expect("--cli NAME=BIN");
                o.clis.push((name.into(), bin.into()));
            }
            "--firmware" => o.firmware = Some(value().into()),
            "--only" => match value().as_str() {
                "rss" => o.only_rss = true,
                other => panic!("--only rss, not {other}"),
            },
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// One client's logins: durations, or why there are none.
struct Series {
    client: String,
    result: Result<Vec<Duration>, String>,
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The first user of `server` and how our client must treat its SASL offer.
fn account(server: &ServerInfo) -> (String, String, CbPolicy) {
    let user = server.user(0);
    // ejabberd 23.01 offers -PLUS on TLS 1.3 and fails every binding type there
    // (`interop_ejabberd.rs`): the documented setting for it is channel binding off.
    let cb = match server.kind {
        xmpp_handshake_tests::ServerKind::Ejabberd => CbPolicy::Off,
        xmpp_handshake_tests::ServerKind::Prosody
        | xmpp_handshake_tests::ServerKind::Jabberd2
        | xmpp_handshake_tests::ServerKind::Serve => CbPolicy::WhenOffered,
    };
    (user.jid(&server.domain), user.password.clone(), cb)
}

/// How our client reaches the server.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    /// The c2s port, `<starttls/>` pipelined behind the first header.
    StartTls,
    /// Direct TLS (XEP-0368): the server's Direct TLS port, TLS from the first byte.
    DirectTls,
}

/// What one login of ours took and left.
struct OurLogin {
    /// From the TCP connect to the bound resource.
    elapsed: Duration,
    /// Counted by the transcript, after the TCP connect.
    round_trips: u32,
    /// What the next login keeps.
    memory: LoginMemory,
    /// A FAST token logged in (SASL2 without a SASL mechanism).
    by_token: bool,
}

/// One login of ours: TCP connect, negotiation to a bound resource, then a clean close,
/// starting from `memory` (what an earlier login kept) with `pipeline_mechanism`.
async fn our_login(
    server: &ServerInfo,
    route: Route,
    trust: &ClientTrust,
    memory: Option<LoginMemory>,
    pipeline_mechanism: Option<Mechanism>,
) -> Result<OurLogin, String> {
    let (jid, password, cb) = account(server);
    let mut login = client::Login::new(&jid, &password).map_err(|e| e.to_string())?;
    login.sasl.channel_binding = cb;
    login.memory = memory;
    login.pipeline_mechanism = pipeline_mechanism;
    let port = match route {
        Route::StartTls => server.ports.c2s,
        Route::DirectTls => server.ports.c2s_direct_tls,
    };
    let started = Instant::now();
    let transport = client::connect_tcp("127.0.0.1", port)
        .await
        .map_err(|e| e.to_string())?;
    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    let logged_in = match route {
        Route::StartTls => {
            client::login_typed(transport, &login, trust, cell, &mut transcript).await
        }
        Route::DirectTls => {
            client::login_direct_tls_typed(transport, &login, trust, cell, &mut transcript).await
        }
    }
    .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let outcome = logged_in.session.outcome().clone();
    logged_in.session.close().await.map_err(|e| e.to_string())?;
    let memory = LoginMemory::from_outcome(&outcome, &login.sasl)
        .remembering(login.memory.as_ref(), outcome.fast_token_rejected);
    Ok(OurLogin {
        elapsed,
        round_trips: transcript.round_trips(),
        memory,
        by_token: outcome.sasl2 && outcome.mechanism.is_none(),
    })
}

/// A runtime and `server`'s trust anchor for our logins.
fn runtime_and_trust(server: &ServerInfo) -> (tokio::runtime::Runtime, ClientTrust) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.ca_der().to_vec().into()).expect("CA");
    (
        rt,
        ClientTrust::anchors(&server.domain, roots).expect("trust"),
    )
}

fn ours(server: &ServerInfo, route: Route, logins: usize, cached: bool) -> Series {
    let (rt, trust) = runtime_and_trust(server);
    let result = rt.block_on(async {
        // The SCRAM keys and the mechanism alone (`<auth/>` pipelined after TLS).
        let (memory, mechanism) = if cached {
            let first = our_login(server, route, &trust, None, None).await?;
            let scram = first
                .memory
                .scram
                .ok_or("the first login left no SCRAM cache")?;
            let memory = LoginMemory {
                scram: Some(scram),
                ..LoginMemory::default()
            };
            (Some(memory), first.memory.mechanism)
        } else {
            (None, None)
        };
        let mut times = Vec::with_capacity(logins);
        for _ in 0..logins {
            let login = our_login(server, route, &trust, memory.clone(), mechanism).await?;
            times.push(login.elapsed);
        }
        Ok::<_, String>(times)
    });
    let client = match (route, cached) {
        (Route::StartTls, false) => "ours, cold",
        (Route::StartTls, true) => "ours, SCRAM cache",
        (Route::DirectTls, false) => "ours, Direct TLS, cold",
        (Route::DirectTls, true) => "ours, Direct TLS, SCRAM cache",
    };
    Series {
        client: client.into(),
        result,
    }
}

/// Our reconnects over `route`: a first login with the password keeps a FAST token and the
/// shape of the SASL2 offer; each of the `logins` after it starts from what the one before
/// kept. The durations, and the most round trips one took, counting the TCP connect.
fn our_reconnects(server: &ServerInfo, route: Route, logins: usize) -> (Series, Option<u32>) {
    let (rt, trust) = runtime_and_trust(server);
    let mut most = None;
    let result = rt.block_on(async {
        // XEP-0388 §2.2.1: the user agent id the token is tied to.
        let mut memory = LoginMemory {
            user_agent_id: Some("0b7c36c4-5f2e-4d55-9a8e-2d7f1c0e6b31".into()),
            ..LoginMemory::default()
        };
        memory = our_login(server, route, &trust, Some(memory), None)
            .await?
            .memory;
        if memory.fast_token.is_none() || memory.sasl2_inline.is_none() {
            return Err("the first login left no FAST token or SASL2 offer".to_string());
        }
        let mut times = Vec::with_capacity(logins);
        for _ in 0..logins {
            let login = our_login(server, route, &trust, Some(memory), None).await?;
            if !login.by_token {
                return Err("a reconnect logged in with the password, not the token".into());
            }
            times.push(login.elapsed);
            most = most.max(Some(login.round_trips + 1));
            memory = login.memory;
        }
        Ok(times)
    });
    let client = match route {
        Route::StartTls => "ours, reconnect: FAST token",
        Route::DirectTls => "ours, reconnect: FAST token, Direct TLS",
    };
    let series = Series {
        client: client.into(),
        result,
    };
    (series, most)
}

/// Our reconnects against `server` (SASL2 and FAST offered) beside the peers' full logins.
fn bench_reconnects(o: &Options, peers: &Peers, server: &ServerInfo, name: &str) -> bool {
    let (starttls, starttls_rt) = our_reconnects(server, Route::StartTls, o.logins);
    let (direct, direct_rt) = our_reconnects(server, Route::DirectTls, o.logins);
    let mut series = vec![starttls, direct];
    let ours_ok = series.iter().all(|s| s.result.is_ok());
    series.extend(peer_series(peers, server, o.logins));
    print_table(&format!("{name}, reconnects"), &series, o.rtt_ms);
    for (route, counted) in [("STARTTLS", starttls_rt), ("Direct TLS", direct_rt)] {
        if let Some(n) = counted {
            println!("ours, reconnect over {route}: at most {n} round trips counted by the transcript, TCP connect included");
        }
    }
    ours_ok
}

/// Our reconnects to serve's Direct TLS port through the tokio library, in one process (the
/// TLS tickets live there): a first login with the password keeps a FAST token usable in
/// 0-RTT; each of the `logins` after it starts from what the one before kept, with TLS 1.3
/// early data when `early_data` (and the check that serve took it), else after the
/// handshake.
fn our_zero_rtt_reconnects(server: &ServerInfo, logins: usize, early_data: bool) -> Series {
    use xmpp_handshake_tokio::{Client, ClientOptions, Trust};
    let (rt, _) = runtime_and_trust(server);
    let (jid, password, _) = account(server);
    let result = rt.block_on(async {
        let mut options = ClientOptions {
            trust: Trust::pem(server.ca_pem()).map_err(|e| e.to_string())?,
            host: Some("127.0.0.1".into()),
            port: Some(server.ports.c2s_direct_tls),
            direct_tls: true,
            early_data,
            user_agent_id: Some("7f3e2a10-4c6b-4d8e-9b21-0a5c6d7e8f90".into()),
            ..ClientOptions::default()
        };
        let first = Client::connect(&jid, &password, options.clone())
            .await
            .map_err(|e| e.to_string())?;
        options.login_memory = first.login_memory().cloned();
        first.close().await.map_err(|e| e.to_string())?;
        let mut times = Vec::with_capacity(logins);
        for _ in 0..logins {
            let started = Instant::now();
            let again = Client::connect(&jid, &password, options.clone())
                .await
                .map_err(|e| e.to_string())?;
            times.push(started.elapsed());
            if again.outcome().mechanism.is_some() {
                return Err("a reconnect logged in with the password, not the token".into());
            }
            if again.early_data_accepted() != early_data {
                return Err(format!(
                    "early data accepted: {}",
                    again.early_data_accepted()
                ));
            }
            options.login_memory = again.login_memory().cloned();
            again.close().await.map_err(|e| e.to_string())?;
        }
        Ok(times)
    });
    let client = if early_data {
        "ours, reconnect: FAST in TLS 0-RTT, Direct TLS"
    } else {
        "ours, reconnect: FAST, Direct TLS, no early data"
    };
    Series {
        client: client.into(),
        result,
    }
}

/// Our 0-RTT reconnects to `server` (serve) beside the same without early data and the
/// peers' full logins.
fn bench_zero_rtt(o: &Options, peers: &Peers, server: &ServerInfo, name: &str) -> bool {
    let mut series = vec![
        our_zero_rtt_reconnects(server, o.logins, true),
        our_zero_rtt_reconnects(server, o.logins, false),
    ];
    let ours_ok = series.iter().all(|s| s.result.is_ok());
    series.extend(peer_series(peers, server, o.logins));
    print_table(&format!("{name}, reconnects"), &series, o.rtt_ms);
    ours_ok
}

/// A peer command for `server`'s first user, with the CA in the variables the peers read.
fn peer_command(program: &Path, args: &[&str], server: &ServerInfo, logins: usize) -> Command {
    let (jid, password, _) = account(server);
    let ca = server.ca_path.display().to_string();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .args([
            jid.as_str(),
            &password,
            "127.0.0.1",
            &server.ports.c2s.to_string(),
            &ca,
            "--logins",
            &logins.to_string(),
        ])
        .env("SSL_CERT_FILE", &ca)
        .env("NODE_EXTRA_CA_CERTS", &ca);
    cmd
}

/// What a child process printed and used.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    /// Peak resident set of the process's own address space, KiB: `VmHWM` read when it
    /// exits (see [`run_measured`]); `None` when it was killed.
    peak_rss_kib: Option<i64>,
    /// User + system CPU time.
    cpu: Duration,
}

/// `VmHWM` (peak resident set, KiB) of a live process.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs `cmd` to its end (at most `limit`): its CPU time from `wait4`, its peak RSS from
/// `/proc/PID/status` at the moment it exits.
///
/// Not `ru_maxrss`: Linux carries the RSS of the address space an `execve` replaces into
/// the new program's `ru_maxrss`, and a spawned child's is this driver's (a `/bin/true`
/// started from here reports the driver's size). So the child runs traced (`ptrace`, with
/// `PTRACE_O_TRACEEXIT`) and stops just before its memory goes, where its own `VmHWM`
/// is read; signals it receives are passed on untouched.
fn run_measured(mut cmd: Command, limit: Duration) -> Result<Run, String> {
    // SAFETY: PTRACE_TRACEME takes no pointers and is async-signal-safe; it only marks
    // the child as traced by its parent (this process), which waits for it below.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                return;
            }
        }
        // SAFETY: our own child, not yet reaped (wait4 below reaps it).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut peak = None;
    let mut first_stop = true;
    let r = loop {
        // SAFETY: pid is our child; status and usage are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r != pid || !libc::WIFSTOPPED(status) {
            break r;
        }
        let mut signal = libc::WSTOPSIG(status);
        if first_stop {
            // The SIGTRAP of its execve: stop it again when it exits (and kill it if this
            // driver dies first).
            first_stop = false;
            signal = 0;
            let options = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
            // SAFETY: pid is our stopped tracee; the options are a plain integer.
            unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options) };
        } else if status >> 8 == libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8) {
            peak = vm_hwm_kib(pid);
            signal = 0;
        }
        // SAFETY: pid is our stopped tracee; the signal number is the one it stopped with.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, signal) };
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let _ = watchdog.join();
    std::mem::forget(child);
    if r != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Run {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        stdout,
        stderr,
        peak_rss_kib: peak,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    })
}

fn bound_times(run: &Run, logins: usize) -> Result<Vec<Duration>, String> {
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!("--- stdout\n{}--- stderr\n{}", run.stdout, run.stderr);
    }
    let times: Vec<Duration> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("BOUND "))
        .filter_map(|us| us.trim().parse().ok())
        .map(Duration::from_micros)
        .collect();
    if run.ok && times.len() == logins {
        Ok(times)
    } else {
        let why = run
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        Err(format!(
            "{} of {logins} logins, exit ok={}: {why}",
            times.len(),
            run.ok
        ))
    }
}

/// How to run one peer: program, leading arguments, extra environment.
#[derive(Clone)]
struct PeerCommand {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl PeerCommand {
    fn new(program: impl Into<PathBuf>, args: &[String]) -> Self {
        PeerCommand {
            program: program.into(),
            args: args.to_vec(),
            env: Vec::new(),
        }
    }

    fn command(&self, server: &ServerInfo, logins: usize) -> Command {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut cmd = peer_command(&self.program, &args, server, logins);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// The peers, each with how to run it or why it cannot run here.
struct Peers {
    list: Vec<(String, Result<PeerCommand, String>)>,
    _dir: tempfile::TempDir,
}

fn peers(o: &Options) -> Peers {
    let dir = tempfile::tempdir().expect("temp dir");
    let strophe = compile_strophe_client(dir.path())
        .map(|b| PeerCommand::new(b, &[]))
        .ok_or_else(|| "cc or libstrophe-dev missing".to_string());
    let strophe_nodelay = strophe.clone().map(|mut c| {
        c.env.push(("STROPHE_NODELAY".into(), "1".into()));
        c
    });
    let slixmpp = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/slixmpp_login.py");
    let list = vec![
        ("libstrophe".to_string(), strophe),
        ("libstrophe, TCP_NODELAY".to_string(), strophe_nodelay),
        (
            "slixmpp".to_string(),
            python_with_slixmpp()
                .map(|py| PeerCommand::new(py, &[slixmpp.display().to_string()]))
                .ok_or_else(|| "python3 with slixmpp missing".to_string()),
        ),
        (
            "tokio-xmpp".to_string(),
            o.tokio_xmpp
                .clone()
                .map(|b| PeerCommand::new(b, &[]))
                .ok_or_else(|| "not built (tests/bench builds it)".to_string()),
        ),
        (
            "@xmpp/client".to_string(),
            o.xmppjs
                .clone()
                .map(|d| PeerCommand::new("node", &[d.join("login.mjs").display().to_string()]))
                .ok_or_else(|| "not installed (tests/bench installs it)".to_string()),
        ),
    ];
    Peers { list, _dir: dir }
}

fn peer_series(peers: &Peers, server: &ServerInfo, logins: usize) -> Vec<Series> {
    peers
        .list
        .iter()
        .map(|(name, peer)| {
            let result = peer.clone().and_then(|peer| {
                let limit = Duration::from_secs(60 + 5 * logins as u64);
                bound_times(&run_measured(peer.command(server, logins), limit)?, logins)
            });
            Series {
                client: name.clone(),
                result,
            }
        })
        .collect()
}

fn print_table(server: &str, series: &[Series], rtt_ms: Option<f64>) {
    let ours: Vec<(&str, Duration)> = series
        .iter()
        .filter(|s| s.client.starts_with("ours"))
        .filter_map(|s| Some((s.client.as_str(), median(s.result.as_ref().ok()?))))
        .collect();
    println!("\n### Time from TCP connect to bound resource, {server}");
    let mut head = String::from("| client | median ms | min ms |");
    let mut rule = String::from("|---|---:|---:|");
    if rtt_ms.is_some() {
        head.push_str(" round trips |");
        rule.push_str("---:|");
    }
    for (name, _) in &ours {
        head.push_str(&format!(" {name} / client |"));
        rule.push_str("---:|");
    }
    println!("{head}\n{rule}");
    for s in series {
        match &s.result {
            Ok(times) => {
                let m = median(times);
                let min = times.iter().min().copied().unwrap_or_default();
                let mut row = format!("| {} | {:.1} | {:.1} |", s.client, ms(m), ms(min));
                if let Some(rtt) = rtt_ms {
                    row.push_str(&format!(" {:.1} |", ms(m) / rtt));
                }
                for (_, o) in &ours {
                    row.push_str(&format!(" {:.2} |", o.as_secs_f64() / m.as_secs_f64()));
                }
                println!("{row}");
            }
            Err(e) => {
                let cols = 2 + usize::from(rtt_ms.is_some()) + ours.len();
                println!("| {} | failed: {e} |{}", s.client, " |".repeat(cols - 1));
            }
        }
    }
}

/// One process's peak RSS (KiB) and CPU time.
type Usage = (i64, Duration);

/// A binary's size and whether it is linked statically (no `PT_INTERP` program header:
/// nothing for the dynamic loader to load), as the table's note on each build.
fn describe_binary(path: &Path) -> String {
    let Ok(elf) = std::fs::read(path) else {
        return format!("{}: cannot read", path.display());
    };
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    // ELF64, little-endian: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38;
    // p_type (PT_INTERP = 3) first in each program header.
    let linking = match (elf.get(..6), u64_at(0x20), u16_at(0x36), u16_at(0x38)) {
        (Some([0x7f, b'E', b'L', b'F', 2, 1]), Some(off), Some(size), Some(n)) => {
            let interp = (0..n).any(|i| {
                elf.get(off + i * size..off + i * size + 4) == Some(&3u32.to_le_bytes()[..])
            });
            if interp {
                "dynamically linked"
            } else {
                "statically linked"
            }
        }
        _ => "not an ELF64 little-endian file",
    };
    let mib = elf.len() as f64 / (1024.0 * 1024.0);
    format!(
        "{}, {} bytes ({mib:.1} MiB), {linking}",
        path.display(),
        elf.len()
    )
}

/// Peak RSS of one login: our CLI (`connect --send`, close) as each build made it, against
/// each peer with `--logins 1`; the median of 5 runs each, against Prosody.
fn rss_table(o: &Options, peers: &Peers, server: &ServerInfo) {
    let (jid, password, _) = account(server);
    let mut rows: Vec<(String, Result<Vec<Usage>, String>)> = Vec::new();
    let runs = 5;
    for (build, cli) in &o.clis {
        let mut samples = Vec::new();
        let mut failure = None;
        for _ in 0..runs {
            let mut cmd = Command::new(cli);
            cmd.args(["connect", &jid, "--host", "127.0.0.1", "--port"])
                .arg(server.ports.c2s.to_string())
                .arg("--ca")
                .arg(&server.ca_path)
                .args(["--send", &jid, "bench"])
                .env("XMPP_PASSWORD", &password);
            match run_measured(cmd, Duration::from_secs(60)) {
                Ok(Run {
                    ok: true,
                    peak_rss_kib: Some(peak),
                    cpu,
                    ..
                }) => samples.push((peak, cpu)),
                Ok(r) => failure = Some(r.stderr.lines().last().unwrap_or("").to_string()),
                Err(e) => failure = Some(e),
            }
        }
        rows.push((
            format!("ours, {build} build (`xmpp-handshake connect`)"),
            failure.map_or(Ok(samples), Err),
        ));
    }
    for (name, peer) in &peers.list {
        let result = peer.clone().and_then(|peer| {
            (0..runs)
                .map(|_| {
                    let run = run_measured(peer.command(server, 1), Duration::from_secs(60))?;
                    bound_times(&run, 1)?;
                    let peak = run.peak_rss_kib.ok_or("no VmHWM: killed")?;
                    Ok((peak, run.cpu))
                })
                .collect()
        });
        rows.push((name.clone(), result));
    }
    let rss = |v: &[Usage]| {
        let mut v: Vec<i64> = v.iter().map(|s| s.0).collect();
        v.sort();
        v[v.len() / 2]
    };
    let cpu = |v: &[Usage]| median(&v.iter().map(|s| s.1).collect::<Vec<_>>());
    // Each build of ours that ran: its name and medians, for the ratio columns.
    let ours: Vec<(&str, i64, Duration)> = o
        .clis
        .iter()
        .zip(&rows)
        .filter_map(|((build, _), (_, r))| {
            let v = r.as_ref().ok()?;
            Some((build.as_str(), rss(v), cpu(v)))
        })
        .collect();
    println!(
        "\n### One login as a process: peak RSS (VmHWM at exit) and CPU (user + sys), Prosody"
    );
    for (build, cli) in &o.clis {
        println!("- {build} build: {}", describe_binary(cli));
    }
    let ratio_heads: String = ours
        .iter()
        .map(|(b, ..)| format!(" {b} / client |"))
        .collect();
    let ratio_rule = "---:|".repeat(ours.len());
    println!(
        "\n| client | median RSS MiB |{ratio_heads} median CPU ms |{ratio_heads}\n\
         |---|---:|{ratio_rule}---:|{ratio_rule}"
    );
    for (name, r) in rows {
        match r {
            Ok(v) => {
                let (m, c) = (rss(&v), cpu(&v));
                let rss_ratios: String = ours
                    .iter()
                    .map(|(_, om, _)| format!(" {:.2} |", *om as f64 / m as f64))
                    .collect();
                let cpu_ratios: String = ours
                    .iter()
                    .map(|(.., oc)| format!(" {:.2} |", oc.as_secs_f64() / c.as_secs_f64()))
                    .collect();
                println!(
                    "| {name} | {:.1} |{rss_ratios} {:.1} |{cpu_ratios}",
                    m as f64 / 1024.0,
                    ms(c)
                );
            }
            Err(e) => println!(
                "| {name} | failed: {e} |{}",
                " |".repeat(2 * ours.len() + 1)
            ),
        }
    }
}

/// The firmware app's side of the TAP link and the server's (see firmware/host).
const FW_SERVER_ADDR: &str = "10.204.0.1";
const FW_DEVICE_CIDR: &str = "10.204.0.2/24";
const FW_DOMAIN: &str = "xmpp.test";

/// CPU time (ns) the process has run so far, all threads (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU time and the app's own time to bound, of one login.
type FirmwareLogin = (Duration, Duration);

/// One run of the firmware app until it is bound: (CPU from its start, its own "bound in
/// N ms" figure).
fn firmware_login(
    bin: &Path,
    server: &ServerInfo,
    work: &Path,
    cold: bool,
) -> Result<FirmwareLogin, String> {
    let cache = work.join("scram-cache.bin");
    if cold {
        let _ = std::fs::remove_file(&cache);
    }
    let ca = work.join("ca.der");
    std::fs::write(&ca, server.ca_der()).map_err(|e| e.to_string())?;
    let log = work.join("app.log");
    let user = server.user(0);
    let mut child = Command::new(bin)
        .env("RUST_LOG", "info")
        .env("XMPP_JID", user.jid(FW_DOMAIN))
        .env("XMPP_PASSWORD", &user.password)
        .env(
            "XMPP_SERVER",
            format!("{FW_SERVER_ADDR}:{}", server.ports.c2s),
        )
        .env("XMPP_CA", &ca)
        .env("TAP_IF", "tap0")
        .env("TAP_ADDR", FW_DEVICE_CIDR)
        .env("SCRAM_CACHE", &cache)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("bound as")) {
            let cpu = Duration::from_nanos(cpu_ns(child.id()));
            let ms = line
                .split(" in ")
                .nth(1)
                .and_then(|r| r.split(" ms").next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            // The cold run must leave its keys for the cached ones.
            while cold
                && !std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("SCRAM keys stored")
            {
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            break Ok((cpu, Duration::from_millis(ms)));
        }
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break Err(format!("not bound: {}", text.lines().last().unwrap_or("")));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// CPU per login of the firmware app's host build (embassy std executor, embassy-net on a
/// TAP device, embedded-tls), cold and with its SCRAM cache, against Prosody in a network
/// namespace of its own (as tests/firmware_tap.rs runs it).
fn firmware_cpu(bin: &Path, logins: usize) {
    let ns = match Netns::create(
        &format!("xh-bench-fw-{}", std::process::id()),
        &format!("{FW_SERVER_ADDR}/24"),
    ) {
        Ok(ns) => ns,
        Err(e) => {
            println!("\nfirmware app: no network namespace: {e}");
            return;
        }
    };
    let rows = std::thread::scope(|s| {
        s.spawn(|| -> Result<Vec<(&str, Vec<FirmwareLogin>)>, String> {
            ns.enter()?;
            let server = Prosody::start(ProsodyOptions {
                domain: FW_DOMAIN.into(),
                extra_global_config: format!(
                    "interfaces = {{ \"127.0.0.1\", \"{FW_SERVER_ADDR}\" }}"
                ),
                ..ProsodyOptions::default()
            })
            .map_err(|e| e.to_string())?;
            let work = tempfile::tempdir().map_err(|e| e.to_string())?;
            let mut cold = Vec::new();
            let mut cached = Vec::new();
            for _ in 0..logins {
                cold.push(firmware_login(bin, &server, work.path(), true)?);
                cached.push(firmware_login(bin, &server, work.path(), false)?);
            }
            Ok(vec![("cold (PBKDF2)", cold), ("SCRAM cache", cached)])
        })
        .join()
        .unwrap_or_else(|_| Err("the namespace thread panicked".into()))
    });
    drop(ns);
    println!("\n### Firmware app, host build over TAP: one login, Prosody");
    println!("| login | median CPU ms (user + sys, start to bound) | median time to bound ms |");
    println!("|---|---:|---:|");
    match rows {
        Ok(rows) => {
            for (name, v) in rows {
                let cpu = median(&v.iter().map(|r| r.0).collect::<Vec<_>>());
                let wall = median(&v.iter().map(|r| r.1).collect::<Vec<_>>());
                println!("| {name} | {:.1} | {:.0} |", ms(cpu), ms(wall));
            }
        }
        Err(e) => println!("| failed: {e} | | |"),
    }
}

/// Benchmarks every client on `server`; false if one of ours failed.
fn bench_server(o: &Options, peers: &Peers, server: &ServerInfo, name: &str) -> bool {
    let mut series = vec![
        ours(server, Route::StartTls, o.logins, false),
        ours(server, Route::StartTls, o.logins, true),
        ours(server, Route::DirectTls, o.logins, false),
        ours(server, Route::DirectTls, o.logins, true),
    ];
    let ours_ok = series.iter().all(|s| s.result.is_ok());
    series.extend(peer_series(peers, server, o.logins));
    print_table(name, &series, o.rtt_ms);
    ours_ok
}

fn main() {
    let o = options();
    let peers = peers(&o);
    println!(
        "logins per client: {}{}",
        o.logins,
        o.rtt_ms
            .map_or(String::new(), |r| format!("; link RTT {r} ms"))
    );
    let mut ours_ok = true;
    for s in &o.servers {
        match s.as_str() {
            "prosody" => {
                let p = Prosody::start(ProsodyOptions::default()).expect("Prosody");
                if !o.only_rss {
                    ours_ok &= bench_server(&o, &peers, &p, "Prosody 0.12");
                }
                if !o.clis.is_empty() {
                    rss_table(&o, &peers, &p);
                }
            }
            "prosody-sasl2" if o.only_rss => {}
            "prosody-sasl2" => {
                let p = Prosody::start(ProsodyOptions {
                    sasl2_modules: true,
                    ..ProsodyOptions::default()
                })
                .expect("Prosody with the SASL2 modules");
                ours_ok &= bench_reconnects(&o, &peers, &p, "Prosody 0.12 + SASL2/FAST");
            }
            "ejabberd" if o.only_rss => {}
            "ejabberd" => {
                // ejabberd starts slowly on a busy machine.
                let e = Ejabberd::start(EjabberdOptions {
                    start_timeout: Duration::from_secs(120),
                    ..EjabberdOptions::default()
                })
                .expect("ejabberd");
                ours_ok &= bench_server(&o, &peers, &e, "ejabberd 23.01");
            }
            "serve" if o.only_rss => {}
            "serve" => {
                // Without -PLUS: slixmpp 1.8 binds with `tls-unique` on TLS 1.3, where it
                // does not exist (RFC 9266), and then fails; our 0-RTT token is unbound.
                let serve = Serve::start(&["--no-channel-binding"]).expect("serve");
                ours_ok &= bench_zero_rtt(&o, &peers, &serve, "serve (ours)");
            }
            other => panic!("unknown server {other}"),
        }
    }
    if let Some(bin) = o.firmware.as_ref().filter(|_| !o.only_rss) {
        firmware_cpu(bin, o.logins.min(10));
    }
    // Peers may be missing or fail (listed above); our own client failing is an error.
    if !ours_ok {
        std::process::exit(1);
    }
}
