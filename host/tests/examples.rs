//! The library's examples (`tokio/examples/`), run as a user runs them, against the
//! `serve` binary: the echo bot answers a message, the sensor delivers its readings, and
//! the blocking client (no async runtime) logs in, gets its own message back and closes.
//! `cargo test --workspace` builds the examples before any test runs.

mod serve_bin;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt as _;
use serve_bin::ServeBin;
use tokio::process::Command;
use xmpp_handshake_core::stanza;
use xmpp_handshake_tokio::{Client, ClientOptions, Trust};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} not found: `cargo test --workspace` (or `cargo build -p xmpp-handshake-tokio --examples`) builds it",
        bin.display()
    );
    bin
}

fn command(serve: &ServeBin, name: &str, jid: &str, password: &str) -> Command {
    let mut cmd = Command::new(example(name));
    cmd.env("XMPP_JID", jid)
        .env("XMPP_PASSWORD", password)
        .env("XMPP_HOST", serve.addr.ip().to_string())
        .env("XMPP_PORT", serve.addr.port().to_string())
        .env("XMPP_CA", &serve.ca)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn client(serve: &ServeBin, jid: &str, password: &str) -> Client {
    let options = ClientOptions {
        trust: Trust::pem(&serve.ca_pem()).unwrap(),
        host: Some(serve.addr.ip().to_string()),
        port: Some(serve.addr.port()),
        ..ClientOptions::default()
    };
    Client::connect(jid, password, options)
        .await
        .expect("logs in")
}

async fn body_of_next(c: &mut Client) -> String {
    loop {
        let s = tokio::time::timeout(Duration::from_secs(10), c.next())
            .await
            .expect("a stanza in time")
            .expect("the stream goes on");
        let body = s.parse(|n| {
            n.children()
                .find(|c| c.has_tag_name("body"))
                .and_then(|b| b.text())
                .map(String::from)
        });
        if let Some(Some(body)) = body {
            return body;
        }
    }
}

#[tokio::test]
async fn the_echo_bot_answers_a_message() {
    let serve = ServeBin::start(&[], &[]).await;
    let bot = command(&serve, "echo_bot", "bob@example.com/bot", "bob-pw")
        .env("XMPP_ECHO_LIMIT", "1")
        .spawn()
        .unwrap();
    // Bind 2 (XEP-0386) makes the bot's resource from "bot"; the bare JID reaches it.
    serve
        .wait_log("bob@example.com/bot~", 1, Duration::from_secs(20))
        .await;
    let mut alice = client(&serve, "alice@example.com/user", "alice-pw").await;
    alice
        .send(&stanza::message("bob@example.com", "ping 42", None))
        .await
        .unwrap();
    assert_eq!(body_of_next(&mut alice).await, "ping 42");
    let out = tokio::time::timeout(Duration::from_secs(20), bot.wait_with_output())
        .await
        .expect("the bot ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("echoed message 1") && stdout.contains("closed"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_sensor_delivers_its_readings() {
    let serve = ServeBin::start(&[], &[]).await;
    let mut owner = client(&serve, "alice@example.com/owner", "alice-pw").await;
    let sensor = command(&serve, "sensor", "bob@example.com/sensor", "bob-pw")
        .env("XMPP_TO", "alice@example.com/owner")
        .env("XMPP_PERIOD_MS", "100")
        .env("XMPP_READINGS", "3")
        .spawn()
        .unwrap();
    for n in 1..=3 {
        let body = body_of_next(&mut owner).await;
        assert!(body.starts_with(&format!("reading {n}:")), "{body}");
    }
    let out = tokio::time::timeout(Duration::from_secs(20), sensor.wait_with_output())
        .await
        .expect("the sensor ends")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_blocking_client_needs_no_runtime() {
    let serve = ServeBin::start(&[], &[]).await;
    let out = command(&serve, "blocking", "alice@example.com", "alice-pw")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("online as alice@example.com/"), "{stdout}");
    assert!(
        stdout.contains("hello, myself") && stdout.ends_with("closed\n"),
        "{stdout}"
    );
}
