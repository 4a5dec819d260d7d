//! `bridge`: a WebSocket-to-TCP relay for browser pages (the wasm client's `tunnel` mode).
//!
//! A page cannot open a TCP connection, so it opens a WebSocket to `/bridge?target=HOST:PORT`
//! and the bridge connects to that target and copies bytes both ways: each binary
//! WebSocket message carries raw TCP bytes, with no framing of its own. The page runs the
//! whole XMPP negotiation itself, STARTTLS and TLS included, so after `<proceed/>` the bridge
//! only ever sees TLS records: it never parses the stream and never holds a key.
//!
//! An open WebSocket-to-TCP relay would let any page reach any host and port from this
//! machine, so the bridge forwards only to targets on an explicit allow-list (nothing by
//! default; anything else is refused with HTTP 403 before the upgrade). It also bounds
//! what one client can cost: a connection limit (HTTP 503 above it), a message size limit,
//! a fixed read buffer, and an idle timeout. Either side closing closes the other.
//!
//! The allow-list alone would still let any web page a visitor opens use the bridge
//! through the visitor's browser (a WebSocket is not bound by the same-origin policy). So a
//! browser's request must also come from an allowed origin: by default only the bridge's
//! own (the page it serves with `--web`), more with [`Origins::List`]. A request without
//! an `Origin` header is not a browser page and is let through to the allow-list.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Bytes read from the target per WebSocket message at most.
pub const READ_BUFFER: usize = 16 * 1024;
/// Largest WebSocket message (and frame) accepted from the page.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// How long connecting to the target may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `HOST:PORT` the bridge may connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name (ASCII, lowercased) or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Target {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let bad = || format!("`{s}` is not HOST:PORT");
        let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty()
            || port == 0
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
        {
            return Err(bad());
        }
        Ok(Target {
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What a bridge runs with.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The only targets it connects to.
    pub allow: Vec<Target>,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Relayed connections open at once, at most.
    pub max_connections: usize,
    /// Log each connection on stderr.
    pub log: bool,
    /// Which pages may use the bridge.
    pub origins: Origins,
}

/// The web origins whose pages may open a bridge connection (checked against the
/// browser's `Origin` header, RFC 6455 §10.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Only pages served by the bridge's own host and port (the `Host` of the request).
    SameOrigin,
    /// The bridge's own origin and these (`scheme://host[:port]`, compared without case).
    List(Vec<String>),
    /// Any page (tests whose pages come from a runner on another port).
    Any,
}

impl Origins {
    /// Whether a request with these headers comes from an allowed page.
    pub fn allow(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim_end_matches('/');
        let same = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|host| origin.split_once("://").map(|(_, o)| o == host))
            .unwrap_or(false);
        match self {
            Origins::Any => true,
            Origins::SameOrigin => same,
            Origins::List(list) => {
                same || list
                    .iter()
                    .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
            }
        }
    }
}

impl BridgeConfig {
    /// Forwards to `allow` with the default limits (10 minutes idle, 64 connections).
    pub fn new(allow: Vec<Target>) -> Self {
        BridgeConfig {
            allow,
            idle_timeout: Duration::from_secs(600),
            max_connections: 64,
            log: false,
            origins: Origins::SameOrigin,
        }
    }
}

/// The relay, shared by the HTTP handlers.
#[derive(Debug)]
pub struct Bridge {
    config: BridgeConfig,
    slots: Arc<Semaphore>,
}

impl Bridge {
    /// A bridge with `config`.
    pub fn new(config: BridgeConfig) -> Arc<Bridge> {
        Arc::new(Bridge {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            config,
        })
    }

    /// Whether `target` is on the allow-list.
    pub fn allows(&self, target: &Target) -> bool {
        self.config.allow.contains(target)
    }

    /// The `/bridge` handler: checks the page's origin and the target, connects, upgrades,
    /// relays.
    pub async fn handle(
        State(bridge): State<Arc<Bridge>>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
        upgrade: WebSocketUpgrade,
    ) -> Response {
        if !bridge.config.origins.allow(&headers) {
            if bridge.config.log {
                eprintln!("bridge: {peer}: refused a page from another origin");
            }
            return (
                StatusCode::FORBIDDEN,
                "pages from this origin may not use this bridge",
            )
                .into_response();
        }
        let target = match query.get("target").map(|t| Target::parse(t)) {
            Some(Ok(t)) => t,
            Some(Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
            None => return (StatusCode::BAD_REQUEST, "missing ?target=HOST:PORT").into_response(),
        };
        if !bridge.allows(&target) {
            if bridge.config.log {
                eprintln!("bridge: {peer}: refused {target} (not on the allow-list)");
            }
            return (
                StatusCode::FORBIDDEN,
                format!("{target} is not on this bridge's allow-list"),
            )
                .into_response();
        }
        let Ok(slot) = bridge.slots.clone().try_acquire_owned() else {
            return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
        };
        let tcp = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    format!("connecting to {target}: {e}"),
                )
                    .into_response()
            }
            Err(_) => {
                return (
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("connecting to {target}: timed out"),
                )
                    .into_response()
            }
        };
        // Every write of the page is a negotiation step that must leave at once.
        let _ = tcp.set_nodelay(true);
        let idle = bridge.config.idle_timeout;
        let log = bridge.config.log;
        upgrade
            .max_message_size(MAX_MESSAGE)
            .max_frame_size(MAX_MESSAGE)
            .max_write_buffer_size(4 * MAX_MESSAGE)
            .on_upgrade(move |ws| async move {
                if log {
                    eprintln!("bridge: {peer}: connected to {target}");
                }
                let report = relay(ws, tcp, idle).await;
                if log {
                    eprintln!("bridge: {peer}: {target} closed: {report}");
                }
                drop(slot);
            })
    }
}

/// How a relayed connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayReport {
    /// Bytes from the page to the target.
    pub up: u64,
    /// Bytes from the target to the page.
    pub down: u64,
    /// Why it ended.
    pub reason: &'static str,
}

impl fmt::Display for RelayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} bytes up, {} down)",
            self.reason, self.up, self.down
        )
    }
}

/// Copies bytes both ways until either side closes, fails or stays idle too long; then
/// closes both (the WebSocket with a close frame, the TCP connection by dropping it).
pub async fn relay(ws: WebSocket, tcp: TcpStream, idle: Duration) -> RelayReport {
    let start = Instant::now();
    let last_activity = AtomicU64::new(0);
    let touch = || last_activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut tcp_rx, mut tcp_tx) = tcp.into_split();
    let (mut up, mut down) = (0u64, 0u64);

    let page_to_target = async {
        while let Some(message) = ws_rx.next().await {
            match message {
                Ok(Message::Binary(bytes)) => {
                    if tcp_tx.write_all(&bytes).await.is_err() {
                        return (1011, "target write failed");
                    }
                    up += bytes.len() as u64;
                    touch();
                }
                // Pings are answered by the WebSocket layer.
                Ok(Message::Ping(_) | Message::Pong(_)) => touch(),
                Ok(Message::Text(_)) => return (1003, "text message (the bridge carries bytes)"),
                Ok(Message::Close(_)) => return (1000, "closed by the page"),
                Err(_) => return (1002, "WebSocket error from the page"),
            }
        }
        (1000, "page went away")
    };
    let target_to_page = async {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            match tcp_rx.read(&mut buf).await {
                Ok(0) => return (1000, "closed by the target"),
                Ok(n) => {
                    let message = Message::Binary(buf[..n].to_vec().into());
                    if ws_tx.send(message).await.is_err() {
                        return (1011, "page write failed");
                    }
                    down += n as u64;
                    touch();
                }
                Err(_) => return (1011, "target read failed"),
            }
        }
    };
    let idle_watch = async {
        loop {
            let last = Duration::from_millis(last_activity.load(Ordering::Relaxed));
            let due = last + idle;
            let now = start.elapsed();
            if now >= due {
                return (1001, "idle timeout");
            }
            tokio::time::sleep(due - now).await;
        }
    };
    let (code, reason) = tokio::select! {
        r = page_to_target => r,
        r = target_to_page => r,
        r = idle_watch => r,
    };
    // Best effort: tell the page why, then let both connections drop.
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ws_tx.send(close).await;
        let _ = ws_tx.close().await;
    })
    .await;
    let _ = tcp_tx.shutdown().await;
    RelayReport { up, down, reason }
}

/// A router with the bridge at `/bridge`.
pub fn router(bridge: Arc<Bridge>) -> axum::Router {
    axum::Router::new()
        .route("/bridge", axum::routing::get(Bridge::handle))
        .with_state(bridge)
}

/// Serves `router` on `listener` (with the peer address available to handlers) until the
/// listener fails.
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("Example.COM.:5222").unwrap(),
            Target {
                host: "example.com".into(),
                port: 5222
            }
        );
        let v6 = Target::parse("[::1]:5222").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:5222");
        for bad in [
            "example.com",
            "example.com:0",
            "example.com:99999",
            ":5222",
            "::1:5222",
            "a b:1",
            "a/b:1",
            "[::1:5222",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    fn request(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_allowed_origins_may_use_the_bridge() {
        let same = Origins::SameOrigin;
        assert!(
            same.allow(&request(None, "127.0.0.1:8080")),
            "not a browser"
        );
        assert!(same.allow(&request(Some("http://127.0.0.1:8080"), "127.0.0.1:8080")));
        assert!(!same.allow(&request(Some("https://evil.example"), "127.0.0.1:8080")));
        assert!(!same.allow(&request(Some("http://127.0.0.1:9999"), "127.0.0.1:8080")));
        assert!(!same.allow(&request(Some("null"), "127.0.0.1:8080")));
        let list = Origins::List(vec!["https://App.example/".into()]);
        assert!(list.allow(&request(Some("https://app.example"), "127.0.0.1:8080")));
        assert!(list.allow(&request(Some("http://127.0.0.1:8080"), "127.0.0.1:8080")));
        assert!(!list.allow(&request(Some("https://evil.example"), "127.0.0.1:8080")));
        assert!(Origins::Any.allow(&request(Some("https://evil.example"), "h:1")));
    }
}
