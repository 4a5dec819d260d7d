//! `connect`'s channel-binding fallback against scripted servers (our `serve` with a
//! [`BindingQuirk`]): a server that offers -PLUS without XEP-0440 and never binds gets one
//! retry without binding (gs2 flag `y`), said on stderr and in the summary line; a server
//! that bound once and refuses later fails loudly, no retry; `--channel-binding required`
//! never retries. The login memory (the cache file) records the channel-bound login.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;
use xmpp_handshake_host::certs::ServerIdentity;
use xmpp_handshake_host::exit::RETRIED_UNBOUND;
use xmpp_handshake_host::scram_cache::ScramCache;
use xmpp_handshake_host::serve::{BindingQuirk, BindsOnce, ServeConfig, Server};

const BIN: &str = env!("CARGO_BIN_EXE_xmpp-handshake");
const LIMIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "j-1";

struct Scripted {
    server: Server,
    dir: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl Scripted {
    async fn start(quirk: BindingQuirk, binds_once: bool) -> Scripted {
        let identity = ServerIdentity::generate("example.com").unwrap();
        let mut store = xmpp_handshake_core::sasl::MemoryStore::new();
        store.add_password("juliet", PASSWORD, 4096, &mut rand_core::OsRng);
        let config = ServeConfig {
            binding_quirk: quirk,
            binds_once: binds_once.then(BindsOnce::default),
            // The servers this emulates (ejabberd 23.01) have no SASL2.
            sasl2: false,
            ..ServeConfig::new("example.com", store, identity.clone())
        };
        let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), identity.ca_pem.as_ref().unwrap()).unwrap();
        Scripted {
            server,
            dir,
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// `connect juliet@example.com --send ...` with `extra` options; the login cache is
    /// this server's (one config dir for every connect).
    async fn connect(&self, extra: &[&str]) -> (Option<i32>, String) {
        let port = self.server.addr.port().to_string();
        let ca = self.dir.path().join("ca.pem").display().to_string();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "connect",
            "juliet@example.com",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--ca",
            &ca,
            "--send",
            "juliet@example.com",
            "hi",
        ])
        .args(extra)
        .env("XMPP_PASSWORD", PASSWORD)
        .env("XDG_CONFIG_HOME", self.config.path())
        .kill_on_drop(true);
        let out: Output = tokio::time::timeout(LIMIT, cmd.output())
            .await
            .expect("the binary finishes in time")
            .expect("the binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn channel_bound(&self) -> Option<bool> {
        let path = self.config.path().join("xmpp-handshake/scram-cache");
        let cache = ScramCache::open(&path).unwrap();
        cache
            .get("example.com", "juliet", PASSWORD)
            .map(|m| m.channel_bound)
    }
}

fn summary(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("xmpp-handshake: online as "))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"))
}

/// Offers -PLUS without XEP-0440, binds the first login, then refuses every binding (and
/// accepts `y`): the first connect binds and the memory records it; the second fails
/// loudly (exit 3, "bound before"), without a retry without binding. `--channel-binding
/// off` still logs in, and does not make the memory forget.
#[tokio::test]
async fn a_server_that_bound_before_and_refuses_now_fails_loudly() {
    let s = Scripted::start(BindingQuirk::Unadvertised, true).await;
    let (code, stderr) = s.connect(&[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let line = summary(&stderr);
    assert!(line.contains("-PLUS"), "{line}");
    assert!(!stderr.contains(RETRIED_UNBOUND), "{stderr}");
    assert_eq!(s.channel_bound(), Some(true));

    // Cached keys from the first login: the password is tried once more, still bound (stale
    // keys are refused the same way), then the loud failure.
    let (code, stderr) = s.connect(&[]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("still bound, with the password"),
        "{stderr}"
    );
    assert!(
        stderr.contains("channel binding refused by a server that bound before"),
        "{stderr}"
    );
    assert!(stderr.contains("attack"), "{stderr}");
    assert!(!stderr.contains(RETRIED_UNBOUND), "{stderr}");
    assert!(!stderr.contains("online as"), "{stderr}");
    assert_eq!(s.channel_bound(), Some(true), "the memory stays");

    // Again (no cached keys now): refused at once; the failed connect did not weaken the
    // memory.
    let (code, stderr) = s.connect(&[]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("bound before"), "{stderr}");
    assert!(!stderr.contains("with the password"), "{stderr}");

    // The user's explicit override still works, and the server stays marked.
    let (code, stderr) = s.connect(&["--channel-binding", "off"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!summary(&stderr).contains("-PLUS"), "{stderr}");
    assert_eq!(s.channel_bound(), Some(true));
    let (code, stderr) = s.connect(&[]).await;
    assert_eq!(code, Some(3), "{stderr}");
}

/// Offers -PLUS without XEP-0440 and never binds (ejabberd 23.01 on TLS 1.3): the first
/// connect logs in after one retry without binding and says so, on its own line and in the
/// summary; the memory does not mark the server as channel-bound; so does the next.
#[tokio::test]
async fn a_server_that_never_bound_gets_one_retry_without_binding() {
    let s = Scripted::start(BindingQuirk::Unverifiable, false).await;
    for _ in 0..2 {
        let (code, stderr) = s.connect(&[]).await;
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(
            stderr.matches(RETRIED_UNBOUND).count(),
            2,
            "once as a note, once in the summary: {stderr}"
        );
        let line = summary(&stderr);
        assert!(line.contains(RETRIED_UNBOUND), "{line}");
        assert!(line.contains("(SCRAM-SHA-256, "), "{line}");
        assert_eq!(s.channel_bound(), Some(false));
    }
}

/// `--channel-binding required` never retries without binding; `off` never binds (no
/// refusal, no retry).
#[tokio::test]
async fn the_channel_binding_flag_still_overrides() {
    let s = Scripted::start(BindingQuirk::Unverifiable, false).await;
    let (code, stderr) = s.connect(&["--channel-binding", "required"]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(!stderr.contains(RETRIED_UNBOUND), "{stderr}");
    assert_eq!(s.channel_bound(), None, "nothing written without a login");
    let (code, stderr) = s.connect(&["--channel-binding", "off"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(RETRIED_UNBOUND), "{stderr}");
    assert!(summary(&stderr).contains("(SCRAM-SHA-256, "), "{stderr}");
}
