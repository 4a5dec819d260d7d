//! The HTTP side of `serve --web` and `bridge --web`: the demo page, the built wasm
//! package, the [`crate::bridge`] at `/bridge`, and (with `serve`) RFC 7395 XMPP over
//! WebSocket at `/xmpp-websocket`, answered by the same receiving entity as the TCP port.
//!
//! Routes:
//! * `/` – the page directory (`wasm/www`), `/pkg/` – the wasm package (`wasm/pkg`, built
//!   by `wasm/build`);
//! * `/config.json` – what the page fills its form with: the served domain, the users'
//!   names, the bridge target of the C2S port and the generated CA certificate (never a
//!   password);
//! * `/bridge?target=HOST:PORT` – the relay (allow-listed targets only);
//! * `/xmpp-websocket` – RFC 7395 with the `xmpp` subprotocol.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use embedded_io::{ErrorKind, ErrorType};
use embedded_io_async::{Read, Write};
use tokio::net::TcpListener;
use tower_http::services::ServeDir;
use xmpp_handshake_core::driver::NoTls;
use xmpp_handshake_core::receiver::ReceiverConfig;
use xmpp_handshake_core::stream::header::{closing_tag, Framing};

use crate::bridge::{self, Bridge, MAX_MESSAGE};
use crate::exit::Failure;
use crate::router::Registry;
use crate::serve::{run_connection, ServeConfig};
use crate::tls_info::TlsCell;
use xmpp_handshake_core::xml::splitter::Splitter;

/// The RFC 7395 subprotocol.
pub const SUBPROTOCOL: &str = "xmpp";

/// The page directory of this source tree (`wasm/www`).
pub fn default_page_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm/www")
}

/// The wasm package next to a page directory (`wasm/pkg` for `wasm/www`).
pub fn default_pkg_dir(page_dir: &Path) -> PathBuf {
    page_dir.join("../pkg")
}

/// What `serve` shares with its WebSocket endpoint: the receiving entity's configuration
/// and session registry.
#[derive(Clone)]
pub struct XmppEndpoint {
    /// As for the TCP port.
    pub config: ServeConfig,
    /// The TCP port's registry: sessions on either transport reach each other.
    pub registry: Arc<Registry>,
}

/// What the HTTP listener serves.
pub struct WebConfig {
    /// The demo page (index.html, its CSS and JS).
    pub page_dir: PathBuf,
    /// The built wasm package, served at `/pkg/`.
    pub pkg_dir: PathBuf,
    /// The relay at `/bridge`.
    pub bridge: Arc<Bridge>,
    /// RFC 7395 at `/xmpp-websocket`, if an in-process receiving entity runs.
    pub xmpp: Option<XmppEndpoint>,
    /// Served as `/config.json` (form defaults for the page).
    pub page_config: serde_json::Value,
}

impl WebConfig {
    /// What `serve --web` serves: the page and package, RFC 7395 to `xmpp`, the bridge to
    /// the server's own C2S port (`c2s`) only, and form defaults naming the domain, the
    /// users (not their passwords), that port and the generated CA certificate, if any.
    pub fn for_serve(
        page_dir: PathBuf,
        pkg_dir: PathBuf,
        xmpp: XmppEndpoint,
        c2s: SocketAddr,
        users: &[String],
    ) -> WebConfig {
        let targets = own_targets(c2s);
        let page_config = serde_json::json!({
            "domain": xmpp.config.domain,
            "users": users,
            "target": targets.first().map(ToString::to_string),
            "ca": xmpp.config.identity.ca_pem,
        });
        let mut bridge = bridge::BridgeConfig::new(targets);
        bridge.log = xmpp.config.log_connections;
        WebConfig {
            page_dir,
            pkg_dir,
            bridge: Bridge::new(bridge),
            xmpp: Some(xmpp),
            page_config,
        }
    }
}

/// A running HTTP listener.
pub struct WebServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl WebServer {
    /// Binds `listen` and serves `config`.
    pub async fn start(listen: SocketAddr, config: WebConfig) -> Result<WebServer, Failure> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::protocol(format!("listening on {listen}: {e}")))?;
        let addr = listener.local_addr()?;
        let app = router(config);
        let task = tokio::spawn(async move {
            if let Err(e) = bridge::serve(listener, app).await {
                eprintln!("web: {e}");
            }
        });
        Ok(WebServer { addr, task })
    }

    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Runs until the listener fails.
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The routes (see the module docs).
pub fn router(config: WebConfig) -> Router {
    let page_config = config.page_config.to_string();
    let mut app = bridge::router(config.bridge)
        .route(
            "/config.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], page_config) }),
        )
        .nest_service("/pkg", ServeDir::new(config.pkg_dir))
        .fallback_service(ServeDir::new(config.page_dir));
    if let Some(xmpp) = config.xmpp {
        app = app.merge(
            Router::new()
                .route("/xmpp-websocket", get(xmpp_websocket))
                .with_state(Arc::new(xmpp)),
        );
    }
    // The page is a development tool: always fetch the newest build.
    app.layer(axum::middleware::map_response(
        |mut response: Response| async move {
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        },
    ))
}

/// RFC 7395 §3.1: the client must ask for the `xmpp` subprotocol; then the stream runs
/// through the receiving entity with WebSocket framing, which never offers STARTTLS (TLS,
/// if any, is the WebSocket's), hence [`NoTls`].
async fn xmpp_websocket(
    State(xmpp): State<Arc<XmppEndpoint>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let upgrade = upgrade.protocols([SUBPROTOCOL]);
    if upgrade.selected_protocol().is_none() {
        return (
            StatusCode::BAD_REQUEST,
            "RFC 7395: ask for the `xmpp` WebSocket subprotocol",
        )
            .into_response();
    }
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            let mut receiver = ReceiverConfig::client_to_server(&xmpp.config.domain);
            receiver.framing = Framing::WebSocket;
            let label = format!("{peer} (WebSocket)");
            let result = run_connection(
                XmppWebSocket::new(socket),
                &mut NoTls,
                TlsCell::default(),
                receiver,
                &label,
                &xmpp.config,
                &xmpp.registry,
            )
            .await;
            if let Err(e) = result {
                if xmpp.config.log_connections {
                    eprintln!("serve: {label}: {e}");
                }
            }
        })
}

/// Why the WebSocket transport failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketError(pub ErrorKind);

impl std::fmt::Display for WebSocketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebSocket: {:?}", self.0)
    }
}

impl std::error::Error for WebSocketError {}

impl embedded_io::Error for WebSocketError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

/// An RFC 7395 WebSocket as the core's byte transport.
///
/// Reading yields the text of the client's messages one after the other (the core's
/// framer with [`Framing::WebSocket`] finds the elements); a binary message is an error
/// (§3.2: text only). Writing cuts what the core writes into complete top-level elements and
/// sends each, on flush, as one text message (§3.3.3: one element per message); after our
/// `<close/>` (§3.6) the WebSocket is closed too.
pub struct XmppWebSocket {
    socket: WebSocket,
    incoming: Vec<u8>,
    read_pos: usize,
    splitter: Splitter,
    outgoing: VecDeque<String>,
    /// The client's WebSocket close arrived (reads end).
    closed: bool,
    /// We sent our `<close/>` and the WebSocket close (writes end).
    sent_close: bool,
}

impl XmppWebSocket {
    /// Wraps an upgraded WebSocket.
    pub fn new(socket: WebSocket) -> Self {
        XmppWebSocket {
            socket,
            incoming: Vec::new(),
            read_pos: 0,
            splitter: Splitter::default(),
            outgoing: VecDeque::new(),
            closed: false,
            sent_close: false,
        }
    }
}

impl ErrorType for XmppWebSocket {
    type Error = WebSocketError;
}

impl Read for XmppWebSocket {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.read_pos >= self.incoming.len() {
            if self.closed {
                return Ok(0);
            }
            match self.socket.recv().await {
                None | Some(Ok(Message::Close(_))) => {
                    self.closed = true;
                    return Ok(0);
                }
                Some(Ok(Message::Text(text))) => {
                    self.incoming = text.as_str().as_bytes().to_vec();
                    self.read_pos = 0;
                }
                Some(Ok(Message::Binary(_))) => return Err(WebSocketError(ErrorKind::InvalidData)),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(_)) => return Err(WebSocketError(ErrorKind::ConnectionReset)),
            }
        }
        let n = buf.len().min(self.incoming.len() - self.read_pos);
        buf[..n].copy_from_slice(&self.incoming[self.read_pos..self.read_pos + n]);
        self.read_pos += n;
        Ok(n)
    }
}

impl Write for XmppWebSocket {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if self.sent_close {
            return Err(WebSocketError(ErrorKind::NotConnected));
        }
        self.outgoing.extend(self.splitter.feed(buf));
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        while let Some(element) = self.outgoing.pop_front() {
            let last = element == closing_tag(Framing::WebSocket);
            self.socket
                .send(Message::Text(element.into()))
                .await
                .map_err(|_| WebSocketError(ErrorKind::ConnectionReset))?;
            if last {
                self.sent_close = true;
                let _ = self.socket.send(Message::Close(None)).await;
            }
        }
        Ok(())
    }
}

/// Checks a page directory and its package; a missing package is a warning (the page
/// says so too), a missing page an error.
pub fn page_dirs(
    page: Option<PathBuf>,
    pkg: Option<PathBuf>,
) -> Result<(PathBuf, PathBuf), Failure> {
    let page = page
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(default_page_dir);
    if !page.join("index.html").is_file() {
        return Err(Failure::usage(format!(
            "no index.html in {}: give the demo page's directory (wasm/www)",
            page.display()
        )));
    }
    let pkg = pkg.unwrap_or_else(|| default_pkg_dir(&page));
    if !pkg.join(PACKAGE_MODULE).is_file() {
        eprintln!(
            "warning: no {PACKAGE_MODULE} in {}: build the wasm package first (wasm/build)",
            pkg.display()
        );
    }
    Ok((page, pkg))
}

/// The package's ES module, as the page imports it.
pub const PACKAGE_MODULE: &str = "xmpp_handshake_wasm.js";

/// The bridge targets that reach a server listening on `addr` from this machine.
pub fn own_targets(addr: SocketAddr) -> Vec<bridge::Target> {
    let port = addr.port();
    let mut hosts = Vec::new();
    if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        hosts.extend(["127.0.0.1", "localhost", "::1"]);
    }
    let ip = addr.ip().to_string();
    if !addr.ip().is_unspecified() && !hosts.contains(&ip.as_str()) {
        hosts.push(&ip);
    }
    let mut targets: Vec<bridge::Target> = hosts
        .iter()
        .map(|host| bridge::Target {
            host: host.to_string(),
            port,
        })
        .collect();
    targets.dedup();
    targets
}
