//! Harness for the cross-crate suites: real XMPP servers started on loopback.
//!
//! [`Prosody::start`] and [`Ejabberd::start`] each write a config into a fresh temp dir,
//! generate a test CA + P-256 leaf ([`certs::TestPki`]), pick free ports on 127.0.0.1 (c2s,
//! direct TLS, s2s, http + https for WebSocket), register test users with the server's own
//! tool, run the server as its system user in its own process group and wait until every
//! port accepts connections. Dropping the handle stops the server (the whole process group)
//! and removes the temp dir, also when a test panics.
//!
//! Both handles deref to [`ServerInfo`] (domain, ports, CA, users, log path).
//!
//! Missing servers: `start` returns [`Error::Unavailable`] with an install hint.
//! [`Prosody::start_or_skip`] / [`Ejabberd::start_or_skip`] turn that into a printed skip,
//! unless `XMPP_HANDSHAKE_REQUIRE_SERVERS=1` (set by `tests/run`), where they panic: CI
//! fails loudly, a developer without the servers gets a clear skip message.
//!
//! Other environment variables:
//! - `XMPP_HANDSHAKE_KEEP_SERVER_DIRS=1`: keep each server's temp dir (config, logs, certs)
//!   after the test and print its path.

pub mod browser;
pub mod certs;
pub mod cli;
pub mod ejabberd;
pub mod field_chains;
pub mod firmware;
pub mod jabberd2;
pub mod netns;
pub mod observer;
pub mod peers;
pub mod process;
pub mod prosody;
pub mod proxy;
pub mod qemu;
pub mod raw;
pub mod serve;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use certs::TestPki;
pub use ejabberd::{Ejabberd, EjabberdOptions, ScramHash};
pub use jabberd2::{Jabberd2, Jabberd2Options};
pub use prosody::{ExtraHost, Prosody, ProsodyOptions};

/// Set to `1` to make a missing server a test failure instead of a skip.
pub const REQUIRE_SERVERS_ENV: &str = "XMPP_HANDSHAKE_REQUIRE_SERVERS";
/// Set to `1` to keep server temp dirs after the tests.
pub const KEEP_DIRS_ENV: &str = "XMPP_HANDSHAKE_KEEP_SERVER_DIRS";

fn env_flag(name: &str) -> bool {
    matches!(
        std::env::var(name).as_deref().map(str::trim),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// A loopback address of its own (127.77.x.y) on which port 5269, the S2S port a peer
/// server dials for a domain it finds in a hosts file, is free.
pub fn own_loopback() -> std::net::Ipv4Addr {
    let seed = std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos());
    for i in 0..50u32 {
        let n = seed.wrapping_add(i.wrapping_mul(7919));
        let ip = std::net::Ipv4Addr::new(127, 77, (n >> 8) as u8, (n as u8).max(2));
        if std::net::TcpListener::bind((ip, 5269)).is_ok() {
            return ip;
        }
    }
    panic!("no free 127.77.x.y:5269");
}

/// The `xmpp-handshake` binary of this build (`cargo test --workspace` builds it), beside
/// the test binaries' directory.
pub fn cli_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("xmpp-handshake");
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p xmpp-handshake-host` \
         (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Must real servers be present (`XMPP_HANDSHAKE_REQUIRE_SERVERS=1`)?
pub fn servers_required() -> bool {
    env_flag(REQUIRE_SERVERS_ENV)
}

/// Harness errors.
#[derive(Debug)]
pub enum Error {
    /// The server cannot run here (binary or system user missing, not root for ejabberd).
    Unavailable { server: String, reason: String },
    /// I/O while preparing or starting the server.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Certificate generation failed.
    Cert(rcgen::Error),
    /// A helper command (`prosodyctl`, `ejabberdctl`) failed.
    Command { what: String, output: String },
    /// The server did not come up; `log` is the tail of its logs.
    Startup {
        server: String,
        message: String,
        dir: PathBuf,
        log: String,
    },
}

impl Error {
    pub(crate) fn io(context: String, source: std::io::Error) -> Self {
        Error::Io { context, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable { server, reason } => write!(f, "{server} unavailable: {reason}"),
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Cert(e) => write!(f, "generating test certificates: {e}"),
            Error::Command { what, output } => write!(f, "{what} failed: {output}"),
            Error::Startup {
                server,
                message,
                dir,
                log,
            } => write!(
                f,
                "{server} failed to start: {message}\n(server dir {}; set {KEEP_DIRS_ENV}=1 to keep it)\n--- log tail ---\n{log}\n--- end of log ---",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Cert(e)
    }
}

/// Harness result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turn a start result into `Some(server)`, a printed skip (`None`), or a panic.
///
/// Skips only for [`Error::Unavailable`] and only when [`servers_required`] is false.
pub fn or_skip<T>(result: Result<T>) -> Option<T> {
    or_skip_with(result, servers_required())
}

fn or_skip_with<T>(result: Result<T>, required: bool) -> Option<T> {
    match result {
        Ok(server) => Some(server),
        Err(e @ Error::Unavailable { .. }) if !required => {
            eprintln!(
                "SKIPPED (real-server test): {e}\n  run `tests/run` (installs the servers) or set \
                 {REQUIRE_SERVERS_ENV}=1 to make this a failure"
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Is STARTTLS required on c2s/s2s?
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsPolicy {
    /// `<starttls><required/></starttls>`: no SASL before TLS (default).
    #[default]
    Required,
    /// STARTTLS offered but optional.
    Optional,
}

/// Which server a [`ServerInfo`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Prosody,
    Ejabberd,
    Jabberd2,
    /// Our own `xmpp-handshake serve` ([`serve::Serve`]).
    Serve,
}

/// Loopback ports of a running server.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// Client-to-server, STARTTLS (RFC 6120).
    pub c2s: u16,
    /// Client-to-server, direct TLS (XEP-0368).
    pub c2s_direct_tls: u16,
    /// Server-to-server.
    pub s2s: u16,
    /// Plain HTTP: WebSocket (RFC 7395) at [`ServerInfo::websocket_url`].
    pub http: u16,
    /// HTTPS: WebSocket at [`ServerInfo::websocket_tls_url`].
    pub https: u16,
}

/// A registered test account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl User {
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> Self {
        User {
            name: name.into(),
            password: password.into(),
        }
    }

    /// `name@domain`.
    pub fn jid(&self, domain: &str) -> String {
        format!("{}@{}", self.name, domain)
    }
}

/// The default accounts: `alice` / `alice-secret-1`, `bob` / `bob-secret-2`.
pub fn default_users() -> Vec<User> {
    vec![
        User::new("alice", "alice-secret-1"),
        User::new("bob", "bob-secret-2"),
    ]
}

/// What a test needs to know about a running server.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub kind: ServerKind,
    /// The XMPP domain (also the certificate's DNS name and xmppAddr).
    pub domain: String,
    pub ports: Ports,
    /// The test CA and the server's leaf, in memory.
    pub pki: TestPki,
    /// The CA certificate, PEM file (world-readable).
    pub ca_path: PathBuf,
    /// Registered accounts.
    pub users: Vec<User>,
    /// The server's main log file.
    pub log_path: PathBuf,
    /// The server's stdout/stderr.
    pub console_log_path: PathBuf,
    /// The server's config file.
    pub config_path: PathBuf,
    /// The temp dir holding config, certs, data and logs.
    pub dir: PathBuf,
    pub tls: TlsPolicy,
}

impl ServerInfo {
    /// `127.0.0.1:port`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((process::LOOPBACK, port))
    }
    pub fn c2s_addr(&self) -> SocketAddr {
        self.addr(self.ports.c2s)
    }
    pub fn direct_tls_addr(&self) -> SocketAddr {
        self.addr(self.ports.c2s_direct_tls)
    }
    pub fn s2s_addr(&self) -> SocketAddr {
        self.addr(self.ports.s2s)
    }
    /// `ws://127.0.0.1:PORT/xmpp-websocket`.
    pub fn websocket_url(&self) -> String {
        format!("ws://127.0.0.1:{}/xmpp-websocket", self.ports.http)
    }
    /// `wss://DOMAIN:PORT/xmpp-websocket` (resolve DOMAIN to 127.0.0.1; cert is for DOMAIN).
    pub fn websocket_tls_url(&self) -> String {
        format!("wss://{}:{}/xmpp-websocket", self.domain, self.ports.https)
    }
    /// CA certificate PEM bytes.
    pub fn ca_pem(&self) -> &[u8] {
        self.pki.ca_pem.as_bytes()
    }
    /// CA certificate DER bytes.
    pub fn ca_der(&self) -> &[u8] {
        &self.pki.ca_der
    }
    /// The `i`-th registered user.
    pub fn user(&self, i: usize) -> &User {
        &self.users[i]
    }
    /// The main log, for assertions or failure messages (tail, at most `lines` lines).
    pub fn log_tail(&self, lines: usize) -> String {
        process::log_tail(&self.log_path, lines)
    }
    /// A rustls client config (ring, TLS 1.2 + 1.3) trusting this server's CA.
    pub fn tls_client_config(&self) -> std::sync::Arc<rustls::ClientConfig> {
        raw::tls_client_config(self.ca_der())
    }
}

/// Keeps or removes a server's temp dir when the server is dropped.
#[derive(Debug)]
pub(crate) struct ServerDir {
    dir: Option<tempfile::TempDir>,
}

impl ServerDir {
    pub(crate) fn new(prefix: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| Error::io("creating server temp dir".into(), e))?;
        Ok(ServerDir { dir: Some(dir) })
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.as_ref().expect("dir present").path().to_path_buf()
    }

    /// Keep the dir on disk (for failure reports or servers kept in statics).
    pub(crate) fn keep(&mut self) -> PathBuf {
        match self.dir.take() {
            Some(d) => d.keep(),
            None => PathBuf::new(),
        }
    }
}

impl Drop for ServerDir {
    fn drop(&mut self) {
        if env_flag(KEEP_DIRS_ENV) {
            if let Some(d) = self.dir.take() {
                eprintln!("kept server dir {}", d.keep().display());
            }
        }
    }
}

/// Starts a server with `start_once`, again (up to 3 attempts in all) when its startup log
/// contains `port_taken`: a port picked free was taken by someone else before the server
/// bound it.
pub(crate) fn start_with_retries<S>(
    port_taken: &str,
    mut start_once: impl FnMut() -> Result<S>,
) -> Result<S> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start_once() {
            Err(Error::Startup { ref log, .. }) if attempt < 3 && log.contains(port_taken) => {
                continue
            }
            other => return other,
        }
    }
}

/// For a server kept in a `static` (never dropped): stop it when the test binary exits and
/// remove its dir then, unless the dirs are to be kept.
pub(crate) fn stop_at_exit(process: &process::ServerProcess, dir: &mut ServerDir) {
    let keep = env_flag(KEEP_DIRS_ENV);
    let dir = dir.keep();
    process.stop_at_exit((!keep).then_some(dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Result<()> {
        Err(Error::Unavailable {
            server: "prosody".into(),
            reason: "`prosody` not found".into(),
        })
    }

    #[test]
    fn missing_server_skips_unless_required() {
        assert_eq!(or_skip_with(Ok(7), true), Some(7));
        assert_eq!(or_skip_with(unavailable(), false), None);
        let required = std::panic::catch_unwind(|| or_skip_with(unavailable(), true).is_some());
        assert!(required.is_err(), "required + missing must fail");
        let other = Err::<(), _>(Error::Command {
            what: "x".into(),
            output: "y".into(),
        });
        let broken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            or_skip_with(other, false).is_some()
        }));
        assert!(broken.is_err(), "a broken server is never skipped");
    }

    #[test]
    fn users_and_urls() {
        let u = User::new("alice", "pw");
        assert_eq!(u.jid("example.test"), "alice@example.test");
        assert_eq!(default_users().len(), 2);
    }
}
