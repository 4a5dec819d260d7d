//! A sensor: sends a reading to `XMPP_TO` every `XMPP_PERIOD_MS` (default 10 s) and, when
//! the link drops, logs in again with a growing back-off; stops after `XMPP_READINGS`
//! readings (default: never).
//!
//! ```sh
//! XMPP_JID=sensor@example.com XMPP_PASSWORD=secret XMPP_TO=owner@example.com \
//!     cargo run -p xmpp-handshake-tokio --example sensor
//! ```
//! `XMPP_HOST`, `XMPP_PORT` and `XMPP_CA` as for the echo bot.

use std::time::Duration;

use futures_util::StreamExt as _;
use xmpp_handshake_tokio::core::stanza;
use xmpp_handshake_tokio::{Client, ClientOptions, Trust};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jid = env("XMPP_JID").ok_or("XMPP_JID is not set")?;
    let password = env("XMPP_PASSWORD").ok_or("XMPP_PASSWORD is not set")?;
    let to = env("XMPP_TO").ok_or("XMPP_TO is not set")?;
    let period = Duration::from_millis(
        env("XMPP_PERIOD_MS")
            .and_then(|p| p.parse().ok())
            .unwrap_or(10_000),
    );
    let readings: Option<u32> = env("XMPP_READINGS").and_then(|n| n.parse().ok());
    let mut options = ClientOptions {
        host: env("XMPP_HOST"),
        port: env("XMPP_PORT").and_then(|p| p.parse().ok()),
        ..ClientOptions::default()
    };
    if let Some(ca) = env("XMPP_CA") {
        options.trust = Trust::pem(&std::fs::read(ca)?)?;
    }

    let mut sent = 0;
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut client = match Client::connect(&jid, &password, options.clone()).await {
            Ok(client) => client,
            Err(e) => {
                eprintln!("login failed: {e}; again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        println!("online as {}", client.jid());
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    sent += 1;
                    let reading = format!("reading {sent}: {:.1} °C", 20.0 + f64::from(sent % 10) / 10.0);
                    if client.send(&stanza::message(&to, &reading, None)).await.is_err() {
                        break;
                    }
                    println!("sent reading {sent}");
                    if readings.is_some_and(|n| sent >= n) {
                        client.close().await?;
                        println!("closed");
                        return Ok(());
                    }
                }
                stanza = client.next() => if stanza.is_none() {
                    // The stream ended: say why, then log in again.
                    eprintln!("stream ended: {:?}", client.ended().await);
                    break;
                },
            }
        }
    }
}
