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

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use embedded_io_adapters::tokio_1::FromTokio;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
                FromTokio::new(XmppWebSocket::new(socket)),
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

/// An RFC 7395 WebSocket as a tokio byte stream, for the core's connection.
///
/// Reading yields the text of the client's messages one after the other (the core's
/// framer with [`Framing::WebSocket`] finds the elements); a binary message is an error
/// (§3.2: text only). Writing: the core writes one unit (one element, §3.3.3) per write on
/// a WebSocket stream, and each write is sent as one text message; after our `<close/>`
/// (§3.6) the WebSocket is closed too.
pub struct XmppWebSocket {
    socket: WebSocket,
    incoming: Vec<u8>,
    read_pos: usize,
    /// The client's WebSocket close arrived (reads end).
    closed: bool,
    /// We sent our `<close/>` (writes end); the WebSocket close follows on flush.
    sent_close: bool,
    /// The WebSocket close is still to be sent.
    close_pending: bool,
}

impl XmppWebSocket {
    /// Wraps an upgraded WebSocket.
    pub fn new(socket: WebSocket) -> Self {
        XmppWebSocket {
            socket,
            incoming: Vec::new(),
            read_pos: 0,
            closed: false,
            sent_close: false,
            close_pending: false,
        }
    }
}

fn reset(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, e)
}

impl AsyncRead for XmppWebSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.read_pos >= this.incoming.len() {
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.socket).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => this.closed = true,
                Some(Ok(Message::Text(text))) => {
                    this.incoming = text.as_str().as_bytes().to_vec();
                    this.read_pos = 0;
                }
                Some(Ok(Message::Binary(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a binary WebSocket message (RFC 7395 §3.2: text only)",
                    )))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(reset(e))),
            }
        }
        let rest = &this.incoming[this.read_pos..];
        let n = buf.remaining().min(rest.len());
        buf.put_slice(&rest[..n]);
        this.read_pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for XmppWebSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.sent_close {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        }
        ready!(Pin::new(&mut this.socket).poll_ready(cx)).map_err(reset)?;
        let text =
            std::str::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if text == closing_tag(Framing::WebSocket) {
            this.sent_close = true;
            this.close_pending = true;
        }
        Pin::new(&mut this.socket)
            .start_send(Message::Text(text.into()))
            .map_err(reset)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.close_pending {
            ready!(Pin::new(&mut this.socket).poll_ready(cx)).map_err(reset)?;
            Pin::new(&mut this.socket)
                .start_send(Message::Close(None))
                .map_err(reset)?;
            this.close_pending = false;
        }
        Pin::new(&mut this.socket).poll_flush(cx).map_err(reset)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.socket).poll_close(cx).map_err(reset)
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
