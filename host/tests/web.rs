//! `serve --web`'s HTTP side on loopback: RFC 7395 at /xmpp-websocket answered by the
//! in-process receiving entity (a real WebSocket client speaking raw RFC 7395, and a TCP
//! client of the same server it exchanges messages with), the page, /config.json and the
//! bridge limited to serve's own port.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use xmpp_handshake_core::stanza;
use xmpp_handshake_host::bridge::{Bridge, BridgeConfig};
use xmpp_handshake_host::certs::ServerIdentity;
use xmpp_handshake_host::client::{self, ClientTrust, Login};
use xmpp_handshake_host::router::message_body;
use xmpp_handshake_host::serve::{ServeConfig, Server};
use xmpp_handshake_host::tls_info::TlsCell;
use xmpp_handshake_host::transcript::{Side, Transcript};
use xmpp_handshake_host::web::{self, WebConfig, WebServer, XmppEndpoint};

const LIMIT: Duration = Duration::from_secs(20);
const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Setup {
    server: Server,
    web: WebServer,
    identity: ServerIdentity,
    _page: tempfile::TempDir,
}

async fn setup() -> Setup {
    let identity = ServerIdentity::generate("example.com").unwrap();
    let mut store = xmpp_handshake_core::sasl::MemoryStore::new();
    store.add_password("alice", "alice-pw", 4096, &mut rand_core::OsRng);
    store.add_password("bob", "bob-pw", 4096, &mut rand_core::OsRng);
    let config = ServeConfig::new("example.com", store, identity.clone());
    let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config.clone())
        .await
        .unwrap();
    let page = tempfile::tempdir().unwrap();
    std::fs::write(
        page.path().join("index.html"),
        "<!doctype html><title>t</title>",
    )
    .unwrap();
    std::fs::create_dir(page.path().join("pkg")).unwrap();
    std::fs::write(page.path().join("pkg").join("x.wasm"), b"\0asm").unwrap();
    let web = WebServer::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        WebConfig {
            page_dir: page.path().to_path_buf(),
            pkg_dir: page.path().join("pkg"),
            bridge: Bridge::new(BridgeConfig::new(web::own_targets(server.addr))),
            xmpp: Some(XmppEndpoint {
                config,
                registry: server.registry.clone(),
            }),
            page_config: serde_json::json!({ "domain": "example.com" }),
        },
    )
    .await
    .unwrap();
    Setup {
        server,
        web,
        identity,
        _page: page,
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn ws_xmpp(addr: SocketAddr) -> Client {
    let mut request = format!("ws://{addr}/xmpp-websocket")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "xmpp".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "xmpp"
    );
    ws
}

/// The next text message: RFC 7395 §3.3.3, each is one complete element.
async fn next_text(ws: &mut Client) -> Option<String> {
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(t))) => return Some(t.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None => return None,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn send(ws: &mut Client, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

fn open_header() -> String {
    format!("<open xmlns='{FRAMING}' to='example.com' version='1.0'/>")
}

/// Opens a stream and returns the features message (after checking the `<open/>`).
async fn open_stream(ws: &mut Client) -> String {
    send(ws, &open_header()).await;
    let open = next_text(ws).await.unwrap();
    assert!(
        open.starts_with("<open ") && open.contains(FRAMING) && open.ends_with("/>"),
        "{open}"
    );
    let features = next_text(ws).await.unwrap();
    assert!(features.starts_with("<stream:features"), "{features}");
    assert!(features.ends_with("</stream:features>"), "{features}");
    features
}

#[tokio::test]
async fn rfc7395_login_and_messages_with_a_tcp_client_of_the_same_server() {
    let s = setup().await;

    // Without the `xmpp` subprotocol the upgrade is refused (§3.1).
    let plain = tokio_tungstenite::connect_async(format!("ws://{}/xmpp-websocket", s.web.addr))
        .await
        .map(|_| ());
    assert!(
        matches!(plain, Err(tungstenite::Error::Http(ref r)) if r.status() == 400),
        "{plain:?}"
    );

    let mut ws = ws_xmpp(s.web.addr).await;
    let features = open_stream(&mut ws).await;
    // TLS belongs to the WebSocket: STARTTLS is never offered here (RFC 7395 §3.5).
    assert!(!features.contains("starttls"), "{features}");
    assert!(
        features.contains("<mechanism>PLAIN</mechanism>"),
        "{features}"
    );
    let token = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0alice-pw");
    send(
        &mut ws,
        &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"),
    )
    .await;
    let success = next_text(&mut ws).await.unwrap();
    assert!(success.starts_with("<success"), "{success}");
    let features = open_stream(&mut ws).await;
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-bind"),
        "{features}"
    );
    send(
        &mut ws,
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>",
    )
    .await;
    let bound = next_text(&mut ws).await.unwrap();
    assert!(
        bound.contains("<jid>alice@example.com/web</jid>"),
        "{bound}"
    );

    // Bob logs in over TCP (STARTTLS, SCRAM) to the same server.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.identity.ca_der.clone().unwrap()).unwrap();
    let trust = ClientTrust::anchors("example.com", roots).unwrap();
    let transport = client::connect_tcp("127.0.0.1", s.server.addr.port())
        .await
        .unwrap();
    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    let login = Login::new("bob@example.com/tcp", "bob-pw").unwrap();
    let mut bob = client::login(transport, &login, &trust, cell, &mut transcript)
        .await
        .unwrap();

    // Bob's client speaks SASL2: Bind 2 (XEP-0386) made his resource from "tcp".
    assert!(bob.jid.starts_with("bob@example.com/tcp~"), "{}", bob.jid);
    let to_bob = stanza::message(&bob.jid, "over the WebSocket", None);
    send(&mut ws, &to_bob).await;
    let got = tokio::time::timeout(LIMIT, bob.session.next_stanza())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        message_body(got.raw()),
        Some((
            Some("alice@example.com/web".into()),
            "over the WebSocket".into()
        ))
    );
    bob.session
        .send(&stanza::message("alice@example.com/web", "over TCP", None))
        .await
        .unwrap();
    let got = next_text(&mut ws).await.unwrap();
    assert_eq!(
        message_body(&got),
        Some((Some(bob.jid.clone()), "over TCP".into()))
    );

    // §3.6: our <close/> is answered with <close/>, then the WebSocket closes.
    send(&mut ws, &format!("<close xmlns='{FRAMING}'/>")).await;
    let close = next_text(&mut ws).await.unwrap();
    assert!(
        close.starts_with("<close ") && close.contains(FRAMING),
        "{close}"
    );
    assert_eq!(next_text(&mut ws).await, None);
}

#[tokio::test]
async fn wrong_password_over_websocket_fails_cleanly() {
    let s = setup().await;
    let mut ws = ws_xmpp(s.web.addr).await;
    open_stream(&mut ws).await;
    let token = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0wrong");
    send(
        &mut ws,
        &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"),
    )
    .await;
    let failure = next_text(&mut ws).await.unwrap();
    assert!(
        failure.starts_with("<failure") && failure.contains("not-authorized"),
        "{failure}"
    );
    // Garbage is a stream error followed by <close/> (§3.6), not a hang.
    send(&mut ws, "<iq><unclosed></iq>").await;
    let error = next_text(&mut ws).await.unwrap();
    assert!(error.starts_with("<stream:error"), "{error}");
    let close = next_text(&mut ws).await.unwrap();
    assert!(close.starts_with("<close "), "{close}");
}

#[tokio::test]
async fn page_config_package_and_a_bridge_limited_to_serves_port() {
    let s = setup().await;
    let page = http_get(s.web.addr, "/").await;
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    assert!(page.contains("<title>t</title>"));
    let config = http_get(s.web.addr, "/config.json").await;
    assert!(config.contains("application/json") && config.contains("\"domain\":\"example.com\""));
    let wasm = http_get(s.web.addr, "/pkg/x.wasm").await;
    assert!(
        wasm.to_ascii_lowercase()
            .contains("content-type: application/wasm"),
        "{wasm}"
    );

    // The bridge reaches serve's C2S port (its greeting is XMPP once we speak)...
    let url = format!(
        "ws://{}/bridge?target=127.0.0.1:{}",
        s.web.addr,
        s.server.addr.port()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Binary(
        b"<?xml version='1.0'?><stream:stream to='example.com' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
            .to_vec()
            .into(),
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("</stream:features>") {
        match tokio::time::timeout(LIMIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(String::from_utf8_lossy(&got).contains("<starttls"));
    // ...and nothing else.
    let url = format!("ws://{}/bridge?target=127.0.0.1:22", s.web.addr);
    let refused = tokio_tungstenite::connect_async(url).await.map(|_| ());
    assert!(
        matches!(refused, Err(tungstenite::Error::Http(ref r)) if r.status() == 403),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_serve_web_command_prints_the_url_and_fills_the_form_without_passwords() {
    use tokio::io::AsyncBufReadExt;
    let page = tempfile::tempdir().unwrap();
    std::fs::write(
        page.path().join("index.html"),
        "<!doctype html><title>demo</title>",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_xmpp-handshake"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "example.com",
        ])
        .args([
            "--user",
            "alice:alice-secret-pw",
            "--user",
            "bob:bob-secret-pw",
        ])
        .arg("--web")
        .arg(page.path())
        .args(["--http", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("demo page: open ") {
                return url.to_string();
            }
        }
        panic!("serve --web ended without printing the page's URL");
    })
    .await
    .unwrap();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    assert!(http_get(addr, "/").await.contains("<title>demo</title>"));
    let config = http_get(addr, "/config.json").await;
    let body = config.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["domain"], "example.com");
    assert_eq!(json["users"], serde_json::json!(["alice", "bob"]));
    assert!(json["ca"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    assert!(json["target"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(!config.contains("secret-pw"), "a password in /config.json");
    child.kill().await.unwrap();
}
