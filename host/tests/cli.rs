//! The `xmpp-handshake` binary end to end on loopback: `demo`, `connect` against an
//! in-process `serve` (and against fakes), exit codes, `<conflict/>`, routing.

mod serve_bin;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::Error;
use xmpp_handshake_host::certs::ServerIdentity;
use xmpp_handshake_host::client::{self, ClientTrust, Login};
use xmpp_handshake_host::exit::ExitCode;
use xmpp_handshake_host::router::message_body;
use xmpp_handshake_host::serve::{ServeConfig, Server};
use xmpp_handshake_host::tls_info::TlsCell;
use xmpp_handshake_host::transcript::{Side, Transcript};

const BIN: &str = env!("CARGO_BIN_EXE_xmpp-handshake");
const LIMIT: Duration = Duration::from_secs(60);

/// Runs the binary; its config dir (pins, SCRAM cache) is a fresh temp dir unless `envs`
/// sets `XDG_CONFIG_HOME`.
async fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let config = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("XMPP_PASSWORD")
        .env("XDG_CONFIG_HOME", config.path())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("the binary finishes in time")
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct TestServer {
    server: Server,
    identity: ServerIdentity,
    dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(users: &[(&str, &str)]) -> TestServer {
        Self::start_with(users, true).await
    }

    /// Without SASL2: RFC 6120 resource binding, which binds the resource asked for
    /// (Bind 2 makes one from the client's tag, XEP-0386).
    async fn start_rfc6120(users: &[(&str, &str)]) -> TestServer {
        Self::start_with(users, false).await
    }

    async fn start_with(users: &[(&str, &str)], sasl2: bool) -> TestServer {
        let identity = ServerIdentity::generate("example.com").unwrap();
        let mut store = xmpp_handshake_core::sasl::MemoryStore::new();
        for (u, p) in users {
            store.add_password(u, p, 4096, &mut rand_core::OsRng);
        }
        let config = ServeConfig {
            sasl2,
            ..ServeConfig::new("example.com", store, identity.clone())
        };
        let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), identity.ca_pem.as_ref().unwrap()).unwrap();
        TestServer {
            server,
            identity,
            dir,
        }
    }

    fn port(&self) -> String {
        self.server.addr.port().to_string()
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    fn trust(&self) -> ClientTrust {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.identity.ca_der.clone().unwrap()).unwrap();
        ClientTrust::anchors("example.com", roots).unwrap()
    }

    async fn login(&self, jid: &str, password: &str) -> Result<client::LoggedIn, ExitCode> {
        let login = Login::new(jid, password).unwrap();
        let transport = client::connect_tcp("127.0.0.1", self.server.addr.port())
            .await
            .unwrap();
        let cell = TlsCell::default();
        let mut t = Transcript::new(Side::Initiating, cell.clone());
        client::login(transport, &login, &self.trust(), cell, &mut t)
            .await
            .map_err(|f| f.code)
    }
}

#[tokio::test]
async fn demo_prints_transcript_and_summary_and_exits_zero() {
    let out = run(&["demo"], &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("I: <starttls")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("R: <proceed")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("-- TLS 1.3 handshake (TLS13_")
                && l.contains("server certificate SHA-256 ")),
        "{stdout}"
    );
    assert!(stdout.contains("I: <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>[redacted]</auth>"), "{stdout}");
    assert!(stdout
        .contains("I: <response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[redacted]</response>"));
    assert!(stdout.contains("<jid>juliet@example.com/balcony</jid>"));
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.starts_with("OK juliet@example.com/balcony: SCRAM-SHA-256-PLUS, TLS 1.3"),
        "{summary}"
    );
    assert!(summary.contains("round trips"), "{summary}");
}

#[tokio::test]
async fn help_reads_and_usage_errors_exit_two() {
    let out = run(&["--help"], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for word in ["demo", "connect", "serve", "hash-password", "Exit codes"] {
        assert!(help.contains(word), "{help}");
    }
    let out = run(&["connect"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &["connect", "not a jid", "--host", "127.0.0.1"],
        &[("XMPP_PASSWORD", "x")],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // No password on the command line, and none in the environment and no terminal.
    let out = run(
        &[
            "connect",
            "a@example.com",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("XMPP_PASSWORD"));
}

/// RFC 7622: the JID and `--send`'s TO are checked before the password is asked for and
/// before anything is dialled; the usage error says what is wrong.
#[tokio::test]
async fn connect_checks_jids_before_password_and_network() {
    let out = run(&["connect", "juliet@", "--host", "127.0.0.1"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("domainpart is empty") && !err.contains("XMPP_PASSWORD"),
        "{err}"
    );
    let out = run(&["connect", "example.com", "--host", "127.0.0.1"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no localpart"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &[
            "connect",
            "juliet@example.com",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--send",
            "romeo@exa mple.net",
            "hi",
        ],
        &[("XMPP_PASSWORD", "x")],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--send"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn connect_sends_and_exit_codes_for_password_and_certificate() {
    let s = TestServer::start(&[("juliet", "capulet-1")]).await;
    let port = s.port();
    let ca = s.ca();
    let base = [
        "connect",
        "juliet@example.com/phone",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--ca",
        &ca,
    ];

    let mut args = base.to_vec();
    args.extend([
        "--send",
        "juliet@example.com/phone",
        "hello <self> & co",
        "--trace",
    ]);
    let out = run(&args, &[("XMPP_PASSWORD", "capulet-1")]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("I: <message type='chat' to='juliet@example.com/phone'"),
        "{stderr}"
    );
    assert!(stderr.contains("&lt;self&gt; &amp; co"), "{stderr}");
    assert!(
        !stderr.contains("capulet-1"),
        "the password never shows: {stderr}"
    );

    let out = run(&base, &[("XMPP_PASSWORD", "montague")]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("wrong password"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{stderr}"
    );

    // Another CA: the certificate is refused (4).
    let other = TestServer::start(&[]).await;
    let other_ca = other.ca();
    let mut args = base.to_vec();
    args[7] = &other_ca;
    let out = run(&args, &[("XMPP_PASSWORD", "capulet-1")]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

#[tokio::test]
async fn trust_first_use_pins_and_then_refuses_a_new_key_with_both_fingerprints() {
    let config = tempfile::tempdir().unwrap();
    let xdg = config.path().display().to_string();
    let first = TestServer::start(&[("juliet", "pw-1")]).await;
    let port = first.port();
    let args = [
        "connect",
        "juliet@example.com",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--trust-first-use",
        "--send",
        "juliet@example.com",
        "hi",
    ];
    let env = [("XMPP_PASSWORD", "pw-1"), ("XDG_CONFIG_HOME", xdg.as_str())];
    let out = run(&args, &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pins = std::fs::read_to_string(config.path().join("xmpp-handshake/pins")).unwrap();
    assert!(pins.contains("example.com "), "{pins}");
    // Again: the pin matches.
    let out = run(&args, &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let second = TestServer::start(&[("juliet", "pw-1")]).await;
    let port2 = second.port();
    let mut args2 = args.to_vec();
    args2[5] = &port2;
    let out = run(&args2, &env).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("HAS CHANGED"), "{stderr}");
    assert!(
        stderr.matches(':').count() >= 4 * 31,
        "pinned and presented fingerprints: {stderr}"
    );
    assert!(
        stderr.contains("xmpp-handshake/pins"),
        "how to accept: {stderr}"
    );
}

/// A server that does not offer STARTTLS: exit 5, and nothing but the header (and the
/// pipelined `<starttls/>`) was sent.
#[tokio::test]
async fn starttls_not_offered_exits_five() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let fake = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = tcp.read(&mut buf).await.unwrap();
        tcp.write_all(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='x1' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
        rest
    });
    let out = run(
        &[
            "connect",
            "juliet@example.com",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--trust-first-use",
        ],
        &[
            ("XMPP_PASSWORD", "pw"),
            ("XDG_CONFIG_HOME", "/nonexistent-xmpp-handshake-test"),
        ],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("STARTTLS"), "{stderr}");
    let rest = tokio::time::timeout(LIMIT, fake).await.unwrap().unwrap();
    assert!(!text(&rest).contains("<auth"), "{}", text(&rest));
}

#[tokio::test]
async fn messages_route_by_bare_and_full_jid() {
    tokio::time::timeout(LIMIT, async {
        let s = TestServer::start_rfc6120(&[("romeo", "r-1"), ("juliet", "j-1")]).await;
        let mut juliet = s.login("juliet@example.com/balcony", "j-1").await.unwrap();
        let mut romeo = s.login("romeo@example.com/orchard", "r-1").await.unwrap();
        romeo
            .session
            .send(&stanza::message("juliet@example.com", "by bare JID", None))
            .await
            .unwrap();
        let got = juliet
            .session
            .next_stanza()
            .await
            .unwrap()
            .unwrap()
            .to_string();
        let (from, body) = message_body(&got).unwrap();
        assert_eq!(body, "by bare JID");
        assert_eq!(from.as_deref(), Some("romeo@example.com/orchard"));
        // Nobody online: the sender gets an error.
        romeo
            .session
            .send(&stanza::message("nurse@example.com", "x", Some("m2")))
            .await
            .unwrap();
        let got = romeo
            .session
            .next_stanza()
            .await
            .unwrap()
            .unwrap()
            .to_string();
        assert!(got.contains("service-unavailable"), "{got}");
        romeo.session.close().await.unwrap();
        juliet.session.close().await.unwrap();
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn newer_session_with_same_full_jid_gets_the_old_one_a_conflict() {
    tokio::time::timeout(LIMIT, async {
        let s = TestServer::start_rfc6120(&[("juliet", "j-1")]).await;
        let mut old = s.login("juliet@example.com/balcony", "j-1").await.unwrap();
        let mut new = s.login("juliet@example.com/balcony", "j-1").await.unwrap();
        assert_eq!(new.jid, "juliet@example.com/balcony");
        match old.session.next_stanza().await {
            Err(Error::StreamErrorReceived(e)) => assert_eq!(e.condition.to_string(), "conflict"),
            other => panic!("expected <conflict/>, got {other:?}"),
        }
        // The new session still works and still receives.
        new.session
            .send(&stanza::message(
                "juliet@example.com/balcony",
                "still here",
                None,
            ))
            .await
            .unwrap();
        let got = new
            .session
            .next_stanza()
            .await
            .unwrap()
            .unwrap()
            .to_string();
        assert_eq!(message_body(&got).unwrap().1, "still here");
        new.session.close().await.unwrap();
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn hash_password_lines_feed_serve() {
    let out = run(&["hash-password", "alice"], &[("XMPP_PASSWORD", "wonder")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    assert_eq!(lines.lines().count(), 3);
    assert!(!lines.contains("wonder"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    std::fs::write(&file, &lines).unwrap();
    let mut store = xmpp_handshake_core::sasl::MemoryStore::new();
    let names =
        xmpp_handshake_host::users::load_into(&std::fs::read_to_string(&file).unwrap(), &mut store)
            .unwrap();
    assert_eq!(names, vec!["alice"]);
    assert!(Path::new(&file).exists());
}

#[tokio::test]
async fn serve_binary_prints_fingerprint_and_accepts_users_from_flags_and_file() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let users = dir.path().join("users");
    let out = run(
        &["hash-password", "filed"],
        &[("XMPP_PASSWORD", "from-file")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    std::fs::write(&users, format!("# salted\n{}", text(&out.stdout))).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &listen,
            "--domain",
            "example.com",
            "--user",
            "dev:device-pw",
            "--users",
        ])
        .arg(&users)
        .arg("--write-ca")
        .arg(&ca)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut banner = String::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(LIMIT, async {
        while !banner.contains("certificate SHA-256") || !banner.contains("STARTTLS") {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "serve exited: {banner}");
            banner.push_str(&text(&buf[..n]));
        }
    })
    .await
    .expect("serve starts");
    assert!(
        banner.contains(&format!("example.com on 127.0.0.1:{port}")),
        "{banner}"
    );
    assert!(banner.contains("users: dev, filed"), "{banner}");
    let port_s = port.to_string();
    let ca_s = ca.display().to_string();
    for (jid, password) in [
        ("dev@example.com/sensor", "device-pw"),
        ("filed@example.com", "from-file"),
    ] {
        let out = run(
            &[
                "connect",
                jid,
                "--host",
                "127.0.0.1",
                "--port",
                &port_s,
                "--ca",
                &ca_s,
                "--send",
                "dev@example.com",
                "22.5 C",
            ],
            &[("XMPP_PASSWORD", password)],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{jid}: {}", text(&out.stderr));
    }
    child.kill().await.unwrap();
}

/// Without `--send`, `connect` sends initial presence, prints every stanza that arrives
/// on stdout, and closes the stream on Ctrl-C (SIGINT) with exit 0.
#[cfg(unix)]
#[tokio::test]
async fn connect_online_prints_incoming_stanzas_until_interrupted() {
    let s = TestServer::start(&[("juliet", "j-1"), ("romeo", "r-1")]).await;
    let port = s.port();
    let ca = s.ca();
    let config = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("XDG_CONFIG_HOME", config.path())
        .args([
            "connect",
            "juliet@example.com/balcony",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--ca",
            &ca,
        ])
        .env("XMPP_PASSWORD", "j-1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(LIMIT, async {
        // Bind 2 (XEP-0386) makes the resource from the one asked for.
        while !s
            .server
            .registry
            .online()
            .iter()
            .any(|jid| jid.starts_with("juliet@example.com/balcony~"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let romeo = s.login("romeo@example.com/orchard", "r-1").await.unwrap();
        romeo
            .session
            .send(&stanza::message("juliet@example.com", "wherefore", None))
            .await
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 1024];
        while !seen.contains("<body>wherefore</body>") {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "connect exited: {seen}");
            seen.push_str(&text(&buf[..n]));
        }
        assert!(seen.contains(&format!("from='{}'", romeo.jid)), "{seen}");
        let pid = child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(0));
        romeo.session.close().await.unwrap();
    })
    .await
    .expect("in time");
}

/// `serve --trace`: every client's negotiation on stderr, prefixed with its address, SASL
/// payloads redacted; connections are logged.
#[tokio::test]
async fn serve_trace_prints_each_clients_negotiation() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &listen, "--domain", "example.com"])
        .args(["--user", "dev:device-pw", "--trace", "--write-ca"])
        .arg(&ca)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut banner = String::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(LIMIT, async {
        while !banner.contains("STARTTLS") || !banner.contains("certificate SHA-256") {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "serve exited: {banner}");
            banner.push_str(&text(&buf[..n]));
        }
    })
    .await
    .expect("serve starts");
    let port_s = port.to_string();
    let ca_s = ca.display().to_string();
    let out = run(
        &[
            "connect",
            "dev@example.com/sensor",
            "--host",
            "127.0.0.1",
            "--port",
            &port_s,
            "--ca",
            &ca_s,
            "--send",
            "dev@example.com",
            "x",
        ],
        &[("XMPP_PASSWORD", "device-pw")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    tokio::time::timeout(LIMIT, async {
        while !log.contains("gone (") {
            let n = stderr.read(&mut buf).await.unwrap();
            assert!(n > 0, "serve exited: {log}");
            log.push_str(&text(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("serve logs the session: {log}"));
    child.kill().await.unwrap();
    assert!(
        log.contains("R: <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        "{log}"
    );
    assert!(log.contains("-- TLS 1.3 handshake"), "{log}");
    let fingerprint = banner
        .split("certificate SHA-256 ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(
        log.contains(&format!("server certificate SHA-256 {fingerprint} --")),
        "{log}"
    );
    assert!(log.contains("[redacted]</authenticate>"), "{log}");
    assert!(log.contains("R: <success"), "{log}");
    // The FAST token (XEP-0484) in the success is a credential too.
    assert!(
        log.contains("token='[redacted]'") && !log.contains("secret-token"),
        "{log}"
    );
    assert!(
        log.contains("dev@example.com/sensor~")
            && log.contains(" bound (SASL2 SCRAM-SHA-256-PLUS)"),
        "{log}"
    );
    assert!(!log.contains("device-pw"), "{log}");
    assert!(log
        .lines()
        .filter(|l| l.contains("I: ") || l.contains("R: "))
        .all(|l| l.starts_with("serve: 127.0.0.1:")));
}

/// Reads a child's stdout until `done` holds for what was read.
async fn read_banner(
    stdout: &mut tokio::process::ChildStdout,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut banner = String::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(LIMIT, async {
        while !done(&banner) {
            let n = stdout.read(&mut buf).await.unwrap();
            assert!(n > 0, "exited: {banner}");
            banner.push_str(&text(&buf[..n]));
        }
    })
    .await
    .expect("in time");
    banner
}

/// A TLS client offering `alpn` to `port` with SNI example.com, trusting `ca`.
async fn tls_handshake(port: u16, ca: &[u8], alpn: &[&[u8]]) -> std::io::Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("example.com").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    // TLS 1.3: a refused handshake may only show on the first read.
    tls.write_all(b"<?xml version='1.0'?>").await?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_millis(500), tls.read(&mut buf)).await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// `serve --direct-tls-listen`: Direct TLS (XEP-0368) on a port of its own. `connect
/// --direct-tls` binds there in 5 round trips after the connect, and in 4 (5 counting the
/// connect) once the SCRAM cache holds the keys and the mechanism; ALPN `xmpp-client` (or
/// none) is accepted, another protocol refused; a message crosses to a STARTTLS session.
#[tokio::test]
async fn serve_direct_tls_port_and_connect_direct_tls_with_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--direct-tls-listen",
            "127.0.0.1:0",
            "--domain",
            "example.com",
            "--user",
            "juliet:j-1",
            "--user",
            "romeo:r-1",
        ])
        .arg("--write-ca")
        .arg(&ca)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let banner = read_banner(&mut stdout, |b| b.contains("STARTTLS required")).await;
    let port_after = |marker: &str| -> String {
        let line = banner.lines().find(|l| l.contains(marker)).unwrap();
        line.rsplit(':').next().unwrap().trim().to_string()
    };
    let starttls_port = port_after("example.com on 127.0.0.1:");
    let direct_port = port_after("Direct TLS (XEP-0368, ALPN xmpp-client) on 127.0.0.1:");
    let ca_s = ca.display().to_string();
    let config = tempfile::tempdir().unwrap();
    let xdg = config.path().display().to_string();
    let args = [
        "connect",
        "juliet@example.com/balcony",
        "--host",
        "127.0.0.1",
        "--port",
        &direct_port,
        "--direct-tls",
        "--ca",
        &ca_s,
        "--send",
        "juliet@example.com/balcony",
        "hi",
    ];
    let env = [("XMPP_PASSWORD", "j-1"), ("XDG_CONFIG_HOME", xdg.as_str())];
    let online = |out: &Output| -> String {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
            .lines()
            .find(|l| l.contains("online as"))
            .unwrap_or_else(|| panic!("{stderr}"))
            .to_string()
    };
    // SASL2 with Bind 2: authenticated and bound in one exchange, and a FAST token
    // (XEP-0484) issued; the next login sends the token's `<authenticate/>` with the header
    // right after TLS (the SASL2 offer's shape kept): TLS and one round trip, 3 counting
    // the TCP connect.
    let first = online(&run(&args, &env).await);
    assert!(
        first.contains("(SASL2 SCRAM-SHA-256-PLUS, Direct TLS, TLS 1.3"),
        "{first}"
    );
    assert!(first.contains(" 4 round trips"), "{first}");
    assert!(first.contains("FAST token cached"), "{first}");
    let second = online(&run(&args, &env).await);
    assert!(
        second.contains("(SASL2 with a FAST token, Direct TLS, TLS 1.3"),
        "{second}"
    );
    assert!(second.contains(" 2 round trips"), "{second}");

    // ALPN: ours or none is served; another protocol only is refused.
    let direct: u16 = direct_port.parse().unwrap();
    let pem = std::fs::read(&ca).unwrap();
    tls_handshake(direct, &pem, &[b"xmpp-client"])
        .await
        .unwrap();
    tls_handshake(direct, &pem, &[]).await.unwrap();
    assert!(tls_handshake(direct, &pem, &[b"h2"]).await.is_err());

    // Direct TLS and STARTTLS sessions share the server's routing.
    let mut starttls_args = args.to_vec();
    starttls_args.retain(|a| *a != "--direct-tls");
    starttls_args[5] = &starttls_port;
    starttls_args[1] = "romeo@example.com";
    starttls_args[9] = "juliet@example.com";
    let mut listening = Command::new(BIN)
        .args([
            "connect",
            "juliet@example.com/balcony",
            "--host",
            "127.0.0.1",
            "--port",
            &direct_port,
            "--direct-tls",
            "--ca",
            &ca_s,
        ])
        .env("XMPP_PASSWORD", "j-1")
        .env("XDG_CONFIG_HOME", &xdg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut err = listening.stderr.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(LIMIT, async {
        while !seen.contains("printing incoming stanzas") {
            let n = err.read(&mut buf).await.unwrap();
            assert!(n > 0, "{seen}");
            seen.push_str(&text(&buf[..n]));
        }
    })
    .await
    .expect("online in time");
    let out = run(&starttls_args, &[("XMPP_PASSWORD", "r-1")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut incoming = listening.stdout.take().unwrap();
    let got = read_banner(&mut incoming, |s| s.contains("<body>hi</body>")).await;
    assert!(got.contains("from='romeo@example.com"), "{got}");
    listening.kill().await.unwrap();
    child.kill().await.unwrap();
}

/// Where `connect` goes when DNS announces Direct TLS (through the `SrvResolver` trait, on
/// loopback): Direct TLS first; a Direct TLS port that is closed or does not speak TLS
/// gives way to STARTTLS, but only when TLS is required there (never towards plaintext);
/// a certificate refused on the Direct TLS port ends the attempt at once.
#[tokio::test]
async fn connect_prefers_direct_tls_and_falls_back_only_where_safe() {
    use clap::Parser as _;
    use xmpp_handshake_host::cli::{Cli, Command as CliCommand};
    use xmpp_handshake_host::connect;
    use xmpp_handshake_host::resolve::{SrvRecord, StaticResolver};

    let mut s = TestServer::start(&[("juliet", "j-1")]).await;
    let direct = s
        .server
        .listen_direct_tls(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
        .port();
    let starttls = s.server.addr.port();
    let mut other = TestServer::start(&[("juliet", "j-1")]).await;
    let foreign_direct = other
        .server
        .listen_direct_tls(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
        .port();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let srv = |port| SrvRecord {
        priority: 0,
        weight: 0,
        port,
        target: "127.0.0.1".into(),
    };
    let resolver = |direct_port: u16, starttls_port: u16| StaticResolver {
        records: vec![
            (
                "_xmpps-client._tcp.example.com".into(),
                vec![srv(direct_port)],
            ),
            (
                "_xmpp-client._tcp.example.com".into(),
                vec![srv(starttls_port)],
            ),
        ],
    };
    let ca = s.ca();
    let connect = |resolver: StaticResolver, extra: &'static [&'static str]| {
        let mut argv = vec![
            "xmpp-handshake",
            "connect",
            "juliet@example.com",
            "--ca",
            &ca,
            "--no-cache",
            "--timeout",
            "10",
            "--send",
            "juliet@example.com",
            "hi",
        ];
        argv.extend(extra);
        let CliCommand::Connect(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        async move { connect::run_with_password(args, &resolver, "j-1".into()).await }
    };
    tokio::time::timeout(LIMIT, async {
        // Direct TLS first: the STARTTLS record points nowhere, and it works.
        connect(resolver(direct, closed), &[]).await.unwrap();
        // A closed Direct TLS port, and one that speaks plain XMPP (no TLS): STARTTLS.
        connect(resolver(closed, starttls), &[]).await.unwrap();
        connect(resolver(starttls, starttls), &[]).await.unwrap();
        // ... but not when STARTTLS may end in plaintext.
        let f = connect(resolver(closed, starttls), &["--tls", "optional"])
            .await
            .unwrap_err();
        assert!(f.message.contains("not falling back to STARTTLS"), "{f}");
        // A certificate our anchors do not vouch for: refused, no second try elsewhere.
        let f = connect(resolver(foreign_direct, starttls), &[])
            .await
            .unwrap_err();
        assert_eq!(f.code, ExitCode::Certificate, "{f}");
    })
    .await
    .expect("in time");
}

/// `connect`'s reconnect loop (issue 16 items 3 and 5): after the link drops, `connect
/// --direct-tls --send-lines` logs in again with its FAST token in TLS 1.3 early data
/// (the ticket of its first connection, the `count` raised and kept), resumes, and every
/// line is acknowledged.
#[tokio::test]
async fn connect_logs_in_again_in_tls_early_data_after_a_drop() {
    let serve = serve_bin::ServeBin::start(&["--direct-tls-listen", "127.0.0.1:0"], &[]).await;
    let link = serve_bin::SlowLink::start(serve.direct_tls_addr(), Duration::ZERO).await;
    let config = tempfile::tempdir().unwrap();
    let (port, ca) = (link.addr.port().to_string(), serve.ca.display().to_string());
    let mut child = Command::new(BIN)
        .args([
            "connect",
            "alice@example.com",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--direct-tls",
            "--ca",
            &ca,
            "--send-lines",
            "bob@example.com",
        ])
        .env("XMPP_PASSWORD", "alice-pw")
        .env("XDG_CONFIG_HOME", config.path())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = serve_bin::collect_stderr(&mut child);
    let wait_for = |needle: &'static str| {
        let log = log.clone();
        async move {
            let seen = tokio::time::timeout(Duration::from_secs(20), async {
                while !log.lock().unwrap().contains(needle) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(seen.is_ok(), "no {needle:?} in:\n{}", log.lock().unwrap());
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\n").await.unwrap();
    wait_for("online as").await;
    link.cut();
    wait_for("online again as").await;
    stdin.write_all(b"two\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("connect exits")
        .unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{log}");
    let again = log
        .lines()
        .find(|l| l.contains("online again as"))
        .unwrap_or_else(|| panic!("{log}"));
    eprintln!("{again}");
    assert!(again.contains("with 0-RTT early data"), "{again}");
}
