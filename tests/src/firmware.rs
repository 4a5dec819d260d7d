//! The firmware app's host build (`xmpp-firmware-host`: embassy-net on a TAP device, the
//! code the boards run above their network driver) as a child process of a test, inside a
//! network namespace the test creates: the shared part of `tests/firmware_tap.rs` and
//! `tests/field_chains.rs`.
//!
//! Layout: [`in_namespace`] makes `xhfw-<pid>-<tag>` with `lo` and `tap0` at
//! [`SERVER_ADDR`]/24 (the server's side) and runs the test's closure on a thread that
//! entered it, so a server started there (and listening on [`SERVER_ADDR`] too) is what the
//! app reaches; the app's embassy-net stack is [`DEVICE_CIDR`] on the other end of `tap0`.
//! Needs root, `/dev/net/tun` and `ip`: without them this prints a skip, unless
//! `XMPP_HANDSHAKE_REQUIRE_SERVERS=1` (tests/run), where it fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::servers_required;

/// The server's address on `tap0` in the namespace.
pub const SERVER_ADDR: &str = "10.203.0.1";
/// The app's address (embassy-net, static) on the TAP link.
pub const DEVICE_CIDR: &str = "10.203.0.2/24";
/// [`DEVICE_CIDR`]'s address (what [`Netns::cut_link`] cuts).
pub const DEVICE_ADDR: &str = "10.203.0.2";
const APP_BIN: &str = "xmpp-firmware-host";

/// Why this machine cannot run the app on a TAP device, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Some("needs root (network namespaces, TAP devices)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is missing".into());
    }
    None
}

/// The app binary, next to the test's `deps/` directory (cargo builds it with the
/// workspace's tests); `XMPP_FIRMWARE_HOST_BIN` overrides.
pub fn app_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("XMPP_FIRMWARE_HOST_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(APP_BIN);
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p xmpp-handshake-firmware-host` \
         (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Runs `f` on a thread inside a fresh namespace `xhfw-<pid>-<tag>` (deleted afterwards,
/// also when `f` panics; a panic goes on to the caller). `None`: skipped, this machine
/// cannot (see [`missing_prerequisite`]).
pub fn in_namespace<T, F>(tag: &str, f: F) -> Option<Result<T, String>>
where
    F: FnOnce(&Netns) -> Result<T, String> + Send,
    T: Send,
{
    if let Some(reason) = missing_prerequisite() {
        if servers_required() {
            panic!("cannot run the firmware TAP test: {reason}");
        }
        eprintln!("SKIPPED (firmware TAP test): {reason}");
        return None;
    }
    let ns = Netns::create(
        &format!("xhfw-{}-{tag}", std::process::id()),
        &format!("{SERVER_ADDR}/24"),
    )
    .expect("network namespace");
    // A thread of its own: only it (and what it spawns) enters the namespace.
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter()?;
            f(&ns)
        })
        .join()
    });
    drop(ns);
    match result {
        Ok(r) => Some(r),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// What the app is started with (the boards take the same names at build time).
#[derive(Clone, Debug)]
pub struct AppSettings {
    /// `XMPP_JID`.
    pub jid: String,
    /// `XMPP_PASSWORD`.
    pub password: String,
    /// `XMPP_SERVER`, `a.b.c.d:port`.
    pub server: String,
    /// `XMPP_CA`: the anchor's (or bundle's) file.
    pub ca: PathBuf,
    /// More variables (`XMPP_REPORT_TO`, `XMPP_PERIOD_MS`, `XMPP_SOAK`, ...).
    pub env: Vec<(String, String)>,
}

/// The app as a child process; killed on drop. Its log (stderr) goes to a file in the
/// work dir it was started with.
pub struct App {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl App {
    /// Starts the app on `tap0` at [`DEVICE_CIDR`] (call it on a thread inside the
    /// namespace) with `settings`; the SCRAM cache (and a pin kept on first use) and the
    /// log, `app.log`, go to `work`.
    pub fn start(settings: &AppSettings, work: &Path) -> Result<App, String> {
        Self::start_named("app", settings, work)
    }

    /// [`App::start`] logging to `NAME.log` (and its stdout to `NAME.out`) in `work`: a
    /// second run in the same work dir keeps the first one's log and the SCRAM cache.
    pub fn start_named(name: &str, settings: &AppSettings, work: &Path) -> Result<App, String> {
        let log = work.join(format!("{name}.log"));
        let child = Command::new(app_binary())
            .env("RUST_LOG", "info")
            .env("XMPP_JID", &settings.jid)
            .env("XMPP_PASSWORD", &settings.password)
            .env("XMPP_SERVER", &settings.server)
            .env("XMPP_CA", &settings.ca)
            .env("TAP_IF", "tap0")
            .env("TAP_ADDR", DEVICE_CIDR)
            .env("SCRAM_CACHE", work.join("scram-cache.bin"))
            .envs(settings.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(fs::File::create(work.join(format!("{name}.out"))).map_err(|e| e.to_string())?)
            .stderr(fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("starting the app: {e}"))?;
        Ok(App { child, log })
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The work dir it was started with (where its log is).
    pub fn work_dir(&self) -> PathBuf {
        self.log
            .parent()
            .expect("the app's log is in the work dir")
            .to_path_buf()
    }

    /// Ends the process now (its TAP device is then free for the next run).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until the log has `n` lines containing `needle`.
    pub fn wait_for(&mut self, needle: &str, n: usize, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().matches(needle).count() >= n {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the app exited ({status}) before {needle:?} x{n}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no {needle:?} x{n} in the app's log within {limit:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the first login (`bound as JID/`), failing early once the app has logged
    /// `failures` failed connections without one: their lines are the error.
    pub fn wait_for_login(
        &mut self,
        jid: &str,
        failures: usize,
        limit: Duration,
    ) -> Result<String, String> {
        let bound = format!("bound as {jid}/");
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(&bound)) {
                return Ok(line.to_string());
            }
            let failed = failed_lines(&log);
            if failed.len() >= failures {
                return Err(format!(
                    "no login; {} failed connections, the first: {}\n{}",
                    failed.len(),
                    without_timestamp(failed[0]),
                    failed.join("\n")
                ));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the app exited ({status}) before logging in:\n{log}"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!("no login within {limit:?}:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A log line without env_logger's `[time LEVEL target]` prefix.
pub fn without_timestamp(line: &str) -> &str {
    match line.strip_prefix('[') {
        Some(rest) => rest.split_once("] ").map_or(line, |(_, msg)| msg),
        None => line,
    }
}

/// The log lines of failed connections (`connection failed: ...`).
pub fn failed_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("connection failed"))
        .collect()
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop();
    }
}
