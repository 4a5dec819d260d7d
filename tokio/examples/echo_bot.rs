//! An echo bot: logs in, sends its presence, and answers every chat message with the same
//! body, until it has echoed `XMPP_ECHO_LIMIT` messages (default: forever).
//!
//! ```sh
//! XMPP_JID=bot@example.com XMPP_PASSWORD=secret cargo run -p xmpp-handshake-tokio --example echo_bot
//! ```
//! `XMPP_HOST`/`XMPP_PORT` connect elsewhere than the domain's SRV records say; `XMPP_CA`
//! names a PEM file of trust anchors (default: the platform's).

use futures_util::StreamExt as _;
use xmpp_handshake_tokio::core::stanza;
use xmpp_handshake_tokio::{Client, ClientOptions, Trust};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jid = std::env::var("XMPP_JID")?;
    let password = std::env::var("XMPP_PASSWORD")?;
    let mut options = ClientOptions {
        host: std::env::var("XMPP_HOST").ok(),
        port: std::env::var("XMPP_PORT").ok().and_then(|p| p.parse().ok()),
        ..ClientOptions::default()
    };
    if let Ok(ca) = std::env::var("XMPP_CA") {
        options.trust = Trust::pem(&std::fs::read(ca)?)?;
    }
    let limit: Option<u32> = std::env::var("XMPP_ECHO_LIMIT")
        .ok()
        .and_then(|n| n.parse().ok());

    let mut client = Client::connect(&jid, &password, options).await?;
    println!("online as {}", client.jid());
    client.send(&stanza::presence(None)).await?;
    let mut echoed = 0;
    while let Some(stanza) = client.next().await {
        // Chat messages with a body, from someone: the same body back.
        let reply = stanza.parse(|m| {
            let chat = m.has_tag_name("message") && m.attribute("type") != Some("error");
            let from = m.attribute("from")?;
            let body = m.children().find(|c| c.has_tag_name("body"))?.text()?;
            chat.then(|| stanza::message(from, body, None))
        });
        if let Some(Some(reply)) = reply {
            client.send(&reply).await?;
            echoed += 1;
            println!("echoed message {echoed}");
            if limit.is_some_and(|l| echoed >= l) {
                break;
            }
        }
    }
    client.close().await?;
    println!("closed");
    Ok(())
}
