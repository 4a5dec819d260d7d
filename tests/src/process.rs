//! Plumbing shared by the server harnesses: system users, free ports, file ownership,
//! process groups, readiness waits, log tails and the at-exit reaper for shared servers.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Loopback only: every server and client in these suites stays on 127.0.0.1.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Who a server process runs as.
#[derive(Clone, Debug)]
pub enum RunAs {
    /// The current user (tests not run as root).
    Current,
    /// A system user, switched to with `setpriv` (tests run as root).
    User { name: String, uid: u32, gid: u32 },
}

impl RunAs {
    /// `user` when running as root, the current user otherwise.
    pub fn system_user(user: &str) -> Result<Self> {
        if !is_root() {
            return Ok(RunAs::Current);
        }
        let (uid, gid) = lookup_user(user).ok_or_else(|| Error::Unavailable {
            server: user.to_string(),
            reason: format!(
                "system user `{user}` does not exist (the Debian package creates it; \
                 run `tests/run` or `apt-get install {user}`)"
            ),
        })?;
        Ok(RunAs::User {
            name: user.to_string(),
            uid,
            gid,
        })
    }

    /// A command that runs `program` as this user.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match self {
            RunAs::Current => Command::new(program),
            RunAs::User { uid, gid, .. } => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
        }
    }

    /// Give `path` (file or directory, not recursive) to this user.
    pub fn own(&self, path: &Path) -> io::Result<()> {
        match self {
            RunAs::Current => Ok(()),
            RunAs::User { uid, gid, .. } => std::os::unix::fs::chown(path, Some(*uid), Some(*gid)),
        }
    }

    /// Give a whole tree to this user.
    pub fn own_tree(&self, path: &Path) -> io::Result<()> {
        self.own(path)?;
        if path.is_dir() {
            for entry in fs::read_dir(path)? {
                self.own_tree(&entry?.path())?;
            }
        }
        Ok(())
    }
}

/// Is this process running as root?
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives it.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some((pwd.pw_uid, pwd.pw_gid))
}

/// Is `program` on PATH (or an existing path)?
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `n` distinct free TCP ports on 127.0.0.1 (all held open together while picked).
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((LOOPBACK, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Write `contents` to `path` with `mode`, owned by `owner`.
pub fn write_file(owner: &RunAs, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    fs::write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    owner.own(path)
}

/// Create a directory owned by `owner`.
pub fn make_dir(owner: &RunAs, path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o750))?;
    owner.own(path)
}

/// The last `max_lines` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, max_lines: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

/// Run a short helper command (e.g. `prosodyctl register`) with a time limit.
pub fn run_bounded(mut cmd: Command, what: &str, limit: Duration) -> Result<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("spawning {what}"), e))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
            Ok(None) => {
                kill_group(child.id(), libc::SIGKILL);
                let _ = child.wait();
                return Err(Error::Command {
                    what: what.to_string(),
                    output: format!("timed out after {limit:?}"),
                });
            }
            Err(e) => return Err(Error::io(format!("waiting for {what}"), e)),
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("reading output of {what}"), e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(Error::Command {
            what: what.to_string(),
            output: format!("{}: {}", out.status, text.trim()),
        })
    }
}

fn kill_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a negative pid names a process group.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}

/// A server running in its own process group; stopped (whole group) on drop.
///
/// A watchdog (`sh`, its own process group) kills the server group if the test process
/// dies without dropping it (SIGKILL, a test-run timeout): no server outlives its tests.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    watchdog: Option<Child>,
}

/// Polls the test process once a second; when it is gone, TERM then KILL the server group.
const WATCHDOG: &str = r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
kill -TERM -"$2" 2>/dev/null; sleep 5; kill -KILL -"$2" 2>/dev/null
[ -n "$3" ] && rm -rf -- "$3"; exit 0"#;

fn spawn_watchdog(pgid: u32, dir: Option<&Path>) -> Option<Child> {
    let dir = match dir {
        Some(d) if !crate::env_flag(crate::KEEP_DIRS_ENV) => d.as_os_str().to_owned(),
        _ => Default::default(),
    };
    Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("xmpp-handshake-watchdog")
        .arg(std::process::id().to_string())
        .arg(pgid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

impl ServerProcess {
    /// Spawn `cmd` in a new process group, stdout/stderr appended to `console_log`.
    /// If the test process dies without stopping it, the watchdog kills the group and
    /// removes `dir` (when given).
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
        console_log: &Path,
        dir: Option<&Path>,
    ) -> Result<Self> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(console_log)
            .map_err(|e| Error::io(format!("creating {}", console_log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io("duplicating log handle".into(), e))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawning {name}"), e))?;
        let watchdog = spawn_watchdog(child.id(), dir);
        Ok(ServerProcess {
            name,
            child: Some(child),
            watchdog,
        })
    }

    /// Stop this server when the test binary exits (for servers kept in a `static`, which
    /// are never dropped), and then remove `dir` if given.
    pub fn stop_at_exit(&self, dir: Option<PathBuf>) {
        if let Some(pid) = self.pid() {
            register_at_exit(pid, self.watchdog.as_ref().map(|w| w.id()), dir);
        }
    }

    /// Process id (= process group id) of the server, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(status)` if the server already exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Wait until every address accepts a TCP connection, the server dies, or `limit` passes.
    pub fn wait_ready(
        &mut self,
        addrs: &[SocketAddr],
        limit: Duration,
    ) -> std::result::Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut pending: Vec<SocketAddr> = addrs.to_vec();
        while !pending.is_empty() {
            if let Some(status) = self.exited() {
                return Err(format!("{} exited during startup ({status})", self.name));
            }
            pending.retain(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_err());
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not accept connections on {:?} within {limit:?}",
                    self.name, pending
                ));
            }
            sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Wait up to `limit` for the server to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.exited().is_some() || self.child.is_none() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM the whole group, wait up to `grace` until no live process is left in it
    /// (servers shut down cleanly on SIGTERM), then SIGKILL what remains. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        kill_group(pgid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            let _ = child.try_wait();
            if live_group_members(pgid) == 0 || Instant::now() >= deadline {
                break;
            }
            sleep(Duration::from_millis(20));
        }
        kill_group(pgid, libc::SIGKILL);
        let _ = child.wait();
        if let Some(mut w) = self.watchdog.take() {
            kill_group(w.id(), libc::SIGKILL);
            let _ = w.wait();
        }
        unregister_at_exit(pgid);
    }
}

/// How many processes of group `pgid` are alive (zombies not counted), from /proc.
pub fn live_group_members(pgid: u32) -> usize {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
            pgrp == Some(pgid) && state != "Z" && state != "X"
        })
        .count()
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

// ---- at-exit reaper for servers kept in statics (`shared()`), which are never dropped ----

struct ExitEntry {
    pgid: u32,
    watchdog: Option<u32>,
    dir: Option<PathBuf>,
}

static AT_EXIT: Mutex<Vec<ExitEntry>> = Mutex::new(Vec::new());
static AT_EXIT_ONCE: Once = Once::new();

extern "C" fn reap_at_exit() {
    let entries = match AT_EXIT.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for e in &entries {
        kill_group(e.pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for e in &entries {
        loop {
            let mut status = 0;
            // SAFETY: plain non-blocking waitpid on our own child (reaps the leader).
            unsafe { libc::waitpid(e.pgid as libc::pid_t, &mut status, libc::WNOHANG) };
            if live_group_members(e.pgid) == 0 || Instant::now() >= deadline {
                break;
            }
            sleep(Duration::from_millis(20));
        }
        kill_group(e.pgid, libc::SIGKILL);
        if let Some(w) = e.watchdog {
            kill_group(w, libc::SIGKILL);
        }
        if let Some(dir) = &e.dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Make sure the process group `pgid` (and its watchdog) is killed, and `dir` removed, when
/// the test binary exits, for servers that live in a `static` and are never dropped.
fn register_at_exit(pgid: u32, watchdog: Option<u32>, dir: Option<PathBuf>) {
    AT_EXIT_ONCE.call_once(|| {
        // SAFETY: registering a plain extern "C" fn.
        unsafe {
            libc::atexit(reap_at_exit);
        }
    });
    if let Ok(mut v) = AT_EXIT.lock() {
        v.push(ExitEntry {
            pgid,
            watchdog,
            dir,
        });
    }
}

fn unregister_at_exit(pgid: u32) {
    if let Ok(mut v) = AT_EXIT.lock() {
        v.retain(|e| e.pgid != pgid);
    }
}
