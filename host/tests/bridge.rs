//! The WebSocket-to-TCP bridge on loopback: a real WebSocket client (tokio-tungstenite)
//! → the bridge → a real TCP server. Allow-list refusal, bytes both ways, close
//! propagation in both directions, the connection limit, the idle timeout and the
//! origin check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xmpp_handshake_host::bridge::{self, Bridge, BridgeConfig, Origins, Target};

const LIMIT: Duration = Duration::from_secs(10);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A bridge on an ephemeral port allowing `allow`.
async fn start_bridge(config: BridgeConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let relay: Arc<Bridge> = Bridge::new(config);
    tokio::spawn(bridge::serve(listener, bridge::router(relay)));
    addr
}

fn target(addr: SocketAddr) -> Target {
    Target::parse(&addr.to_string()).unwrap()
}

async fn open(bridge: SocketAddr, target: &str) -> Result<Client, tungstenite::Error> {
    let url = format!("ws://{bridge}/bridge?target={target}");
    tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("the upgrade answers in time")
        .map(|(ws, _)| ws)
}

fn status_of(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got a WebSocket"),
    }
}

/// Next data message (pings skipped); `None` on close.
async fn next_data(ws: &mut Client) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Text(t))) => panic!("unexpected text message {t}"),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
        }
    }
}

#[tokio::test]
async fn refuses_targets_not_on_the_allow_list() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed = server.local_addr().unwrap();
    let other = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_addr = other.local_addr().unwrap();
    let bridge = start_bridge(BridgeConfig::new(vec![target(allowed)])).await;

    assert_eq!(status_of(open(bridge, &other_addr.to_string()).await), 403);
    // Same port, other spelling of a host that is not listed.
    assert_eq!(
        status_of(open(bridge, &format!("localhost:{}", allowed.port())).await),
        403
    );
    assert_eq!(status_of(open(bridge, "").await), 400);
    let url = format!("ws://{bridge}/bridge");
    let missing = tokio_tungstenite::connect_async(url)
        .await
        .map(|(ws, _)| ws);
    assert_eq!(status_of(missing), 400);
    // Nothing was connected to the refused target.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), other.accept())
            .await
            .is_err(),
        "the bridge connected to a refused target"
    );

    // An empty allow-list refuses everything.
    let closed = start_bridge(BridgeConfig::new(Vec::new())).await;
    assert_eq!(status_of(open(closed, &allowed.to_string()).await), 403);
}

/// As [`open`], as a browser page from `origin` would.
async fn open_from(
    bridge: SocketAddr,
    target: SocketAddr,
    origin: &str,
) -> Result<Client, tungstenite::Error> {
    let mut request = format!("ws://{bridge}/bridge?target={target}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the upgrade answers in time")
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn pages_from_other_origins_are_refused() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed = server.local_addr().unwrap();
    let bridge = start_bridge(BridgeConfig::new(vec![target(allowed)])).await;

    // Another site's page, through a visitor's browser: refused before any connect.
    assert_eq!(
        status_of(open_from(bridge, allowed, "https://evil.example").await),
        403
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), server.accept())
            .await
            .is_err(),
        "the bridge connected for a foreign page"
    );
    // The bridge's own page (served with --web) is let through.
    let mut own = open_from(bridge, allowed, &format!("http://{bridge}"))
        .await
        .expect("same origin");
    let (mut tcp, _) = tokio::time::timeout(LIMIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    tcp.write_all(b"<proceed/>").await.unwrap();
    assert_eq!(
        next_data(&mut own).await.as_deref(),
        Some(&b"<proceed/>"[..])
    );

    // A listed origin is let through too; others still are not.
    let mut config = BridgeConfig::new(vec![target(allowed)]);
    config.origins = Origins::List(vec!["https://app.example".into()]);
    let listed = start_bridge(config).await;
    assert!(open_from(listed, allowed, "https://app.example")
        .await
        .is_ok());
    assert_eq!(
        status_of(open_from(listed, allowed, "https://evil.example").await),
        403
    );
}

#[tokio::test]
async fn relays_bytes_both_ways_and_the_target_closing_closes_the_page() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let bridge = start_bridge(BridgeConfig::new(vec![target(addr)])).await;

    let mut ws = open(bridge, &addr.to_string()).await.unwrap();
    let (mut tcp, _) = tokio::time::timeout(LIMIT, server.accept())
        .await
        .unwrap()
        .unwrap();

    // Target → page first (a server speaks first in some protocols).
    tcp.write_all(b"hello page").await.unwrap();
    assert_eq!(next_data(&mut ws).await.unwrap(), b"hello page");

    // Page → target: arbitrary bytes, not UTF-8, several messages.
    let blob: Vec<u8> = (0..=255u8).cycle().take(40_000).collect();
    ws.send(Message::Binary(blob.clone().into())).await.unwrap();
    ws.send(Message::Binary(vec![0xff, 0x00, 0xfe].into()))
        .await
        .unwrap();
    let mut got = vec![0u8; blob.len() + 3];
    tokio::time::timeout(LIMIT, tcp.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..blob.len()], &blob[..]);
    assert_eq!(&got[blob.len()..], &[0xff, 0x00, 0xfe]);

    // A large answer arrives whole, in however many messages.
    let answer: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    tcp.write_all(&answer).await.unwrap();
    let mut received = Vec::new();
    while received.len() < answer.len() {
        let chunk = next_data(&mut ws).await.expect("more data");
        assert!(chunk.len() <= bridge::READ_BUFFER);
        received.extend(chunk);
    }
    assert_eq!(received, answer);

    // The target closes: the page gets a close frame.
    drop(tcp);
    assert_eq!(next_data(&mut ws).await, None);
}

#[tokio::test]
async fn the_page_closing_closes_the_target_connection() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let bridge = start_bridge(BridgeConfig::new(vec![target(addr)])).await;

    let mut ws = open(bridge, &addr.to_string()).await.unwrap();
    let (mut tcp, _) = server.accept().await.unwrap();
    ws.send(Message::Binary(b"last words".to_vec().into()))
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    let mut got = Vec::new();
    // read_to_end returns once the bridge closed its side: EOF, not a timeout.
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut got))
        .await
        .expect("the bridge closes the TCP connection")
        .unwrap();
    assert_eq!(got, b"last words");
}

#[tokio::test]
async fn text_messages_are_refused_and_close_both_sides() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let bridge = start_bridge(BridgeConfig::new(vec![target(addr)])).await;
    let mut ws = open(bridge, &addr.to_string()).await.unwrap();
    let (mut tcp, _) = server.accept().await.unwrap();
    ws.send(Message::Text("<stream:stream>".into()))
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_empty(), "a text message was forwarded");
    match tokio::time::timeout(LIMIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1003),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_limit_and_idle_timeout() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut config = BridgeConfig::new(vec![target(addr)]);
    config.max_connections = 1;
    config.idle_timeout = Duration::from_millis(600);
    let bridge = start_bridge(config).await;

    let mut first = open(bridge, &addr.to_string()).await.unwrap();
    let (mut tcp, _) = server.accept().await.unwrap();
    assert_eq!(status_of(open(bridge, &addr.to_string()).await), 503);

    // Traffic keeps it open past the idle timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        first
            .send(Message::Binary(b" ".to_vec().into()))
            .await
            .unwrap();
    }
    let mut buf = [0u8; 4];
    tcp.read_exact(&mut buf).await.unwrap();
    // ...silence closes it, both sides.
    match tokio::time::timeout(LIMIT, first.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected an idle close, got {other:?}"),
    }
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();

    // The slot is free again.
    let again = async {
        loop {
            match open(bridge, &addr.to_string()).await {
                Ok(ws) => return ws,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    tokio::time::timeout(LIMIT, again)
        .await
        .expect("a new connection after the first ended");
}

#[tokio::test]
async fn the_bridge_command_relays_to_its_allow_list_only() {
    use tokio::io::AsyncBufReadExt;
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_xmpp-handshake"))
        .args(["bridge", "--listen", "127.0.0.1:0", "--allow"])
        .arg(addr.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("the bridge prints where it listens");
    // "xmpp-handshake bridge: ws://ADDR/bridge?target=HOST:PORT to ALLOWED"
    let listen: SocketAddr = first
        .split("ws://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));
    assert!(first.ends_with(&addr.to_string()), "{first}");

    assert_eq!(status_of(open(listen, "127.0.0.1:9").await), 403);
    let mut ws = open(listen, &addr.to_string()).await.unwrap();
    let (mut tcp, _) = tokio::time::timeout(LIMIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    ws.send(Message::Binary(b"ping".to_vec().into()))
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    tcp.write_all(b"pong").await.unwrap();
    assert_eq!(next_data(&mut ws).await.unwrap(), b"pong");

    // Nothing allowed is a usage error, not an open relay.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_xmpp-handshake"))
        .args(["bridge", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    child.kill().await.unwrap();
}
