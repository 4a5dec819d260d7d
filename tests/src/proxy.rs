//! A TCP proxy a test can break: between a client and a server on loopback, it forwards
//! both ways until told to swallow one direction ([`CutProxy::blackhole`]: bytes are read
//! and dropped, as on a link that died one way, TLS records and stanzas cut wherever the
//! drop falls) or to cut the connection ([`CutProxy::cut`]: both sockets closed at once).
//! Each new connection starts forwarding again; only the newest one is controlled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which way bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// The controls of the newest connection.
#[derive(Clone)]
struct Link {
    up_dropped: Arc<AtomicBool>,
    down_dropped: Arc<AtomicBool>,
    cut: watch::Sender<bool>,
}

/// See the module docs. Stops accepting when dropped.
pub struct CutProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    current: Arc<Mutex<Option<Link>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let current: Arc<Mutex<Option<Link>>> = Arc::default();
        let links = current.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cut, cut_rx) = watch::channel(false);
                let link = Link {
                    up_dropped: Arc::default(),
                    down_dropped: Arc::default(),
                    cut,
                };
                *links.lock().expect("proxy lock") = Some(link.clone());
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    link.up_dropped.clone(),
                    cut_rx.clone(),
                ));
                tokio::spawn(pump(server_read, client_write, link.down_dropped, cut_rx));
            }
        });
        Ok(CutProxy {
            addr,
            current,
            accept,
        })
    }

    fn link(&self) -> Option<Link> {
        self.current.lock().expect("proxy lock").clone()
    }

    /// From now on, bytes going `direction` on the newest connection are read and dropped.
    pub fn blackhole(&self, direction: Direction) {
        if let Some(link) = self.link() {
            match direction {
                Direction::Up => link.up_dropped.store(true, Ordering::SeqCst),
                Direction::Down => link.down_dropped.store(true, Ordering::SeqCst),
            }
        }
    }

    /// Closes the newest connection on both sides at once.
    pub fn cut(&self) {
        if let Some(link) = self.link() {
            let _ = link.cut.send(true);
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copies `from` to `to` until either ends or the link is cut; drops what it reads while
/// `dropped` is set. Returning drops both halves: the sockets close.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dropped: Arc<AtomicBool>,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = cut.changed() => return,
            read = from.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if dropped.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
