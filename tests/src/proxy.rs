//! A TCP proxy a test can break: between a client and a server on loopback, it forwards
//! both ways until told to swallow one direction ([`CutProxy::blackhole`]: bytes are read
//! and dropped, as on a link that died one way, TLS records and stanzas cut wherever the
//! drop falls), to go silent ([`CutProxy::silence`]: both ways swallowed and the server's
//! socket held open even after the client's closed, as when a radio link dies and the
//! server has not noticed yet) or to cut the connection ([`CutProxy::cut`]: both sockets
//! closed at once).
//! Each new connection starts forwarding again; only the newest one is controlled.
//!
//! For a client that reconnects by itself, [`CutProxy::plan`] decides each next
//! connection's fate in advance ([`Plan`]): cut once so many bytes went one way (the read
//! that crosses the mark is forwarded only up to it, so the cut falls inside whatever TLS
//! record or stanza it was), swallow the server's bytes from some point on (its acks lost),
//! or refuse the connection outright (the server unreachable).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// What happens to one connection ([`CutProxy::plan`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Close it at once (the server unreachable, as the client sees it).
    pub refuse: bool,
    /// Once this many bytes went up (client to server), drop what comes down.
    pub swallow_down_after_up: Option<u64>,
    /// Close both sockets once this many bytes went this way.
    pub cut_after: Option<(Direction, u64)>,
}

impl Plan {
    /// Forwarded until `bytes` went `direction`, then cut there.
    pub fn cut_after(direction: Direction, bytes: u64) -> Self {
        Plan {
            cut_after: Some((direction, bytes)),
            ..Plan::default()
        }
    }

    /// Closed as soon as it is accepted.
    pub fn refuse() -> Self {
        Plan {
            refuse: true,
            ..Plan::default()
        }
    }
}

/// What went through one connection that ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// Bytes client to server.
    pub up: u64,
    /// Bytes server to client (dropped ones included).
    pub down: u64,
}

/// The controls of the newest connection.
#[derive(Clone)]
struct Link {
    up_dropped: Arc<AtomicBool>,
    down_dropped: Arc<AtomicBool>,
    /// The sockets stay open when one side closes (only a cut closes them).
    silent: Arc<AtomicBool>,
    cut: watch::Sender<bool>,
}

/// See the module docs. Stops accepting when dropped.
pub struct CutProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    current: Arc<Mutex<Option<Link>>>,
    plans: Arc<Mutex<VecDeque<Plan>>>,
    accepted: Arc<AtomicUsize>,
    carried: Arc<Mutex<Vec<Carried>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let current: Arc<Mutex<Option<Link>>> = Arc::default();
        let links = current.clone();
        let plans: Arc<Mutex<VecDeque<Plan>>> = Arc::default();
        let next_plans = plans.clone();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let carried: Arc<Mutex<Vec<Carried>>> = Arc::default();
        let record = carried.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let plan = next_plans
                    .lock()
                    .expect("proxy lock")
                    .pop_front()
                    .unwrap_or_default();
                if plan.refuse {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cut, cut_rx) = watch::channel(false);
                let link = Link {
                    up_dropped: Arc::default(),
                    down_dropped: Arc::default(),
                    silent: Arc::default(),
                    cut,
                };
                *links.lock().expect("proxy lock") = Some(link.clone());
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let cut_at = |direction| {
                    plan.cut_after
                        .filter(|(d, _)| *d == direction)
                        .map(|(_, bytes)| bytes)
                };
                let up = Pump {
                    dropped: link.up_dropped.clone(),
                    silent: link.silent.clone(),
                    cut: cut_rx.clone(),
                    cut_now: link.cut.clone(),
                    cut_at: cut_at(Direction::Up),
                    swallow_other: plan
                        .swallow_down_after_up
                        .map(|at| (at, link.down_dropped.clone())),
                    total: Arc::default(),
                };
                let down = Pump {
                    dropped: link.down_dropped.clone(),
                    silent: link.silent.clone(),
                    cut: cut_rx,
                    cut_now: link.cut.clone(),
                    cut_at: cut_at(Direction::Down),
                    swallow_other: None,
                    total: Arc::default(),
                };
                let (up_total, down_total) = (up.total.clone(), down.total.clone());
                let up_task = tokio::spawn(up.run(client_read, server_write));
                let down_task = tokio::spawn(down.run(server_read, client_write));
                let record = record.clone();
                tokio::spawn(async move {
                    let _ = up_task.await;
                    let _ = down_task.await;
                    record.lock().expect("proxy lock").push(Carried {
                        up: up_total.load(Ordering::SeqCst),
                        down: down_total.load(Ordering::SeqCst),
                    });
                });
            }
        });
        Ok(CutProxy {
            addr,
            current,
            plans,
            accepted,
            carried,
            accept,
        })
    }

    /// The next connections, in order, follow `plans`; those after them are forwarded.
    pub fn plan(&self, plans: impl IntoIterator<Item = Plan>) {
        self.plans.lock().expect("proxy lock").extend(plans);
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// What each connection that ended carried, in the order they ended.
    pub fn carried(&self) -> Vec<Carried> {
        self.carried.lock().expect("proxy lock").clone()
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

    /// From now on the newest connection carries nothing either way, and when the client
    /// closes its side the server's stays open, silent, until the proxy is dropped or
    /// [`CutProxy::cut`]: the server learns of the dead link only from its own timers.
    pub fn silence(&self) {
        if let Some(link) = self.link() {
            link.silent.store(true, Ordering::SeqCst);
            link.up_dropped.store(true, Ordering::SeqCst);
            link.down_dropped.store(true, Ordering::SeqCst);
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

/// One direction of a connection.
struct Pump {
    /// Drop what is read while set.
    dropped: Arc<AtomicBool>,
    /// When the source closes, wait for the cut instead of closing the destination.
    silent: Arc<AtomicBool>,
    cut: watch::Receiver<bool>,
    /// Cuts the connection (both directions).
    cut_now: watch::Sender<bool>,
    /// Cut once this many bytes went this way.
    cut_at: Option<u64>,
    /// Once this many bytes went this way, set the other direction's `dropped`.
    swallow_other: Option<(u64, Arc<AtomicBool>)>,
    /// Bytes read so far.
    total: Arc<AtomicU64>,
}

impl Pump {
    /// Copies `from` to `to` until either ends or the link is cut; drops what it reads
    /// while `dropped` is set. Returning drops both halves: the sockets close.
    async fn run(
        mut self,
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                _ = self.cut.changed() => return,
                read = from.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => {
                            if self.silent.load(Ordering::SeqCst) {
                                let _ = self.cut.changed().await;
                            }
                            return;
                        }
                        Ok(n) => n,
                    };
                    let before = self.total.fetch_add(n as u64, Ordering::SeqCst);
                    let after = before + n as u64;
                    if let Some((at, other)) = &self.swallow_other {
                        if after >= *at {
                            other.store(true, Ordering::SeqCst);
                        }
                    }
                    let cut_here = self.cut_at.filter(|at| after >= *at);
                    let forward = match cut_here {
                        Some(at) => usize::try_from(at.saturating_sub(before)).unwrap_or(n).min(n),
                        None => n,
                    };
                    if !self.dropped.load(Ordering::SeqCst)
                        && to.write_all(&buf[..forward]).await.is_err()
                    {
                        return;
                    }
                    if cut_here.is_some() {
                        let _ = to.flush().await;
                        let _ = self.cut_now.send(true);
                        return;
                    }
                }
            }
        }
    }
}
