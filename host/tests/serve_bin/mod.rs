//! The `xmpp-handshake serve` binary as a child process for the robustness suites
//! (limits.rs, soak.rs, secrets.rs): started on an ephemeral loopback port with a generated
//! certificate, its stderr collected, its memory and file descriptors readable from /proc.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use xmpp_handshake_host::client::{self, ClientTrust, LoggedIn, Login};
use xmpp_handshake_host::tls::verify::roots_from_pem;
use xmpp_handshake_host::tls_info::TlsCell;
use xmpp_handshake_host::transcript::{Side, Transcript};

pub const BIN: &str = env!("CARGO_BIN_EXE_xmpp-handshake");
pub const DOMAIN: &str = "example.com";

/// A running `serve`; killed on drop.
pub struct ServeBin {
    pub child: Child,
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub banner: String,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl ServeBin {
    /// `serve --listen 127.0.0.1:0 --domain example.com --user alice:alice-pw --user
    /// bob:bob-pw --write-ca FILE` plus `extra`; `envs` for the process.
    pub async fn start(extra: &[&str], envs: &[(&str, &str)]) -> ServeBin {
        let mut args = vec!["--user", "alice:alice-pw", "--user", "bob:bob-pw"];
        args.extend_from_slice(extra);
        Self::start_with(&args, true, envs).await
    }

    /// `serve --listen 127.0.0.1:0 --domain example.com` plus `args`, and `--write-ca`
    /// when `write_ca` (a generated certificate).
    pub async fn start_with(args: &[&str], write_ca: bool, envs: &[(&str, &str)]) -> ServeBin {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--domain", DOMAIN]);
        if write_ca {
            cmd.arg("--write-ca").arg(&ca);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("serve starts");
        let log = collect_stderr(&mut child);
        let mut stdout = child.stdout.take().unwrap();
        let mut banner = String::new();
        let mut buf = [0u8; 1024];
        tokio::time::timeout(Duration::from_secs(30), async {
            while !banner.contains("STARTTLS required") {
                let n = stdout.read(&mut buf).await.unwrap();
                assert!(n > 0, "serve exited: {banner}{}", log.lock().unwrap());
                banner.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await
        .expect("serve prints its banner");
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while matches!(stdout.read(&mut buf).await, Ok(n) if n > 0) {} });
        let addr = banner
            .split(" on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {banner:?}"));
        ServeBin {
            child,
            addr,
            ca,
            banner,
            log,
            _dir: dir,
        }
    }

    /// The Direct TLS address in the banner (with `--direct-tls-listen`).
    pub fn direct_tls_addr(&self) -> SocketAddr {
        self.banner
            .lines()
            .find(|l| l.contains("Direct TLS (XEP-0368"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Direct TLS address in {:?}", self.banner))
    }

    /// Trusts `ca_pem` instead of the generated CA (with `--cert`/`--key`).
    pub fn set_ca(&mut self, ca_pem: &str) {
        std::fs::write(&self.ca, ca_pem).unwrap();
    }

    /// What serve printed on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` `n` times.
    pub async fn wait_log(&self, needle: &str, n: usize, limit: Duration) {
        let waited = tokio::time::timeout(limit, async {
            while self.log().matches(needle).count() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "no {needle:?} x{n} in serve's log within {limit:?}:\n{}",
            self.log()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("serve is running")
    }

    /// Anonymous resident memory, KiB (`RssAnon`: heap, stacks, buffers). What sessions,
    /// queues or a leak make grow; file pages (the binary's code, touched as new paths run)
    /// are left out, since they are neither.
    pub fn anon_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("RssAnon")
    }

    /// Open file descriptors (sockets included).
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).unwrap()
    }

    /// The client trust for this server's generated CA.
    pub fn trust(&self) -> ClientTrust {
        ClientTrust::anchors(DOMAIN, roots_from_pem(&self.ca_pem()).unwrap()).unwrap()
    }

    /// A plain rustls client configuration trusting the generated CA (for raw streams).
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        let roots = roots_from_pem(&self.ca_pem()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }

    /// Logs in with the library client (STARTTLS, SCRAM, bind).
    pub async fn login(&self, jid: &str, password: &str) -> LoggedIn {
        self.try_login(jid, password, &self.trust())
            .await
            .unwrap_or_else(|e| panic!("{jid} logs in: {e}\n{}", self.log()))
    }

    pub async fn try_login(
        &self,
        jid: &str,
        password: &str,
        trust: &ClientTrust,
    ) -> Result<LoggedIn, xmpp_handshake_host::exit::Failure> {
        let login = Login::new(jid, password)?;
        let transport = client::connect_tcp("127.0.0.1", self.addr.port()).await?;
        let cell = TlsCell::default();
        let mut transcript = Transcript::new(Side::Initiating, cell.clone());
        client::login(transport, &login, trust, cell, &mut transcript).await
    }
}

/// A loopback relay that holds every chunk `one_way` before passing it on, both ways: a
/// link with a round-trip time of twice that, on which round trips can be counted by the
/// clock. Its upstream can be switched (a server replaced behind the same address).
pub struct SlowLink {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    /// The relaying tasks of the connections so far.
    carriers: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowLink {
    pub async fn start(upstream: SocketAddr, one_way: Duration) -> SlowLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = Arc::new(Mutex::new(upstream));
        let carriers = Arc::new(Mutex::new(Vec::new()));
        let (to, running) = (upstream.clone(), carriers.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = *to.lock().unwrap();
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let mut running = running.lock().unwrap();
                running.push(tokio::spawn(Self::carry(cr, sw, one_way)));
                running.push(tokio::spawn(Self::carry(sr, cw, one_way)));
            }
        });
        SlowLink {
            addr,
            upstream,
            carriers,
            task,
        }
    }

    /// Passes what `from` reads to `to`, each chunk `delay` after it came, in order.
    async fn carry(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay: Duration,
    ) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
        // Aborted with its reader (a cut): the write half goes with it.
        let mut writer = AbortOnDrop(tokio::spawn(async move {
            while let Some((at, chunk)) = rx.recv().await {
                tokio::time::sleep_until(at + delay).await;
                if to.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = to.shutdown().await;
        }));
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0
                || tx
                    .send((tokio::time::Instant::now(), buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
        drop(tx);
        let _ = (&mut writer.0).await;
    }

    /// New connections go to `upstream`.
    pub fn switch_to(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }

    /// Cuts every connection so far (both sockets dropped at once, what is in flight
    /// lost), as a link that goes down.
    pub fn cut(&self) {
        for carrier in self.carriers.lock().unwrap().drain(..) {
            carrier.abort();
        }
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// A task aborted when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything `child` writes to its (piped) standard error, collected as it comes.
pub fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().expect("stderr piped");
    let sink = log.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    log
}
