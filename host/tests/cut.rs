//! A cut at every byte (RFC 6120 §4.4, §13.12): both roles negotiate STARTTLS, SCRAM and a
//! bound resource over an in-memory pipe with real rustls on both sides, through the
//! driver the CLI uses, then close the stream. The pipe ends the connection after byte k
//! of one direction, for both directions: first as an end of stream, then as an I/O error.
//! k is every byte of the plaintext stream (through the first TLS byte) and, inside TLS,
//! every record boundary and the bytes around it plus every 16th byte (see
//! [`cut_points`]: TLS passes nothing of a record on before it is complete, so cuts inside
//! one record are all the same cut). Every run must end within a time limit, with a typed
//! error on both sides whenever the cut happened and a clean close on both sides when it
//! did not. A second test delivers every read and write in random sizes: the negotiation
//! must still succeed.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{client_tls, pki, server_tls, Pki};
use embedded_io_adapters::tokio_1::FromTokio;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use xmpp_handshake_core::connection::{Connection, ConnectionOptions, Negotiator};
use xmpp_handshake_core::driver::Clock as _;
use xmpp_handshake_core::initiator::{ClientSasl, InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sasl::MemoryStore;
use xmpp_handshake_core::stream::header::Framing;
use xmpp_handshake_core::Error;
use xmpp_handshake_host::clock::TokioClock;

/// Each run gets this long; a run that takes longer is a hang and fails the test.
const RUN_LIMIT: Duration = Duration::from_secs(10);
/// SCRAM iterations (the client's floor is lowered to match: these tests are about bytes).
const ITERATIONS: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Initiating entity → receiving entity.
    ToReceiver,
    /// Receiving entity → initiating entity.
    ToInitiator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The connection ends: the reader sees end of stream, the writer a broken pipe.
    Eof,
    /// The connection is reset: every operation on either end fails.
    Error,
}

/// What both ends of one pipe share.
struct Wire {
    /// Where to cut, if anywhere.
    plan: Option<(Dir, usize, Mode)>,
    /// Bytes written so far in each direction (index: `Dir as usize`).
    written: [AtomicUsize; 2],
    cut: AtomicBool,
    /// Every byte written, per direction (uncut runs only).
    bytes: [Mutex<Vec<u8>>; 2],
}

impl Wire {
    fn new(plan: Option<(Dir, usize, Mode)>) -> Arc<Wire> {
        Arc::new(Wire {
            plan,
            written: [AtomicUsize::new(0), AtomicUsize::new(0)],
            cut: AtomicBool::new(false),
            bytes: Default::default(),
        })
    }

    fn mode(&self) -> Mode {
        self.plan.map_or(Mode::Eof, |(_, _, m)| m)
    }

    fn was_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

fn reset() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::ConnectionReset)
}

/// One end of the pipe. Writes count towards its direction; once that direction reaches
/// the planned byte the end drops its half of the pipe, so the peer reads what was
/// written before the cut and then end of stream (or an error, in `Mode::Error`).
struct CutEnd {
    inner: Option<DuplexStream>,
    dir: Dir,
    wire: Arc<Wire>,
}

impl CutEnd {
    fn pair(wire: &Arc<Wire>) -> (CutEnd, CutEnd) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        (
            CutEnd {
                inner: Some(a),
                dir: Dir::ToReceiver,
                wire: wire.clone(),
            },
            CutEnd {
                inner: Some(b),
                dir: Dir::ToInitiator,
                wire: wire.clone(),
            },
        )
    }

    fn cut(&mut self) {
        self.wire.cut.store(true, Ordering::SeqCst);
        self.inner = None;
    }
}

impl AsyncRead for CutEnd {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mode = self.wire.mode();
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(match mode {
                Mode::Eof => Ok(()),
                Mode::Error => Err(reset()),
            });
        };
        let before = buf.filled().len();
        let r = Pin::new(inner).poll_read(cx, buf);
        let eof = matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() == before;
        if eof && mode == Mode::Error && self.wire.was_cut() {
            return Poll::Ready(Err(reset()));
        }
        r
    }
}

impl AsyncWrite for CutEnd {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mode = self.wire.mode();
        let broken = || match mode {
            Mode::Eof => std::io::Error::from(std::io::ErrorKind::BrokenPipe),
            Mode::Error => reset(),
        };
        let mut len = data.len();
        if let Some((dir, k, _)) = self.wire.plan {
            if dir == self.dir && !self.wire.was_cut() {
                let left = k - self.wire.written[dir as usize].load(Ordering::SeqCst);
                if left == 0 {
                    self.cut();
                } else {
                    len = len.min(left);
                }
            }
        }
        if self.wire.was_cut() && mode == Mode::Error {
            return Poll::Ready(Err(reset()));
        }
        let dir = self.dir as usize;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(broken()));
        };
        let r = Pin::new(inner).poll_write(cx, &data[..len]);
        if let Poll::Ready(Ok(n)) = r {
            self.wire.written[dir].fetch_add(n, Ordering::SeqCst);
            if self.wire.plan.is_none() {
                self.wire.bytes[dir]
                    .lock()
                    .unwrap()
                    .extend_from_slice(&data[..n]);
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Delivers every read and write in sizes drawn from a seeded generator (1..=max).
struct Chunked<T> {
    inner: T,
    state: u64,
    max: usize,
}

impl<T> Chunked<T> {
    fn new(inner: T, seed: u64, max: usize) -> Self {
        Chunked {
            inner,
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            max,
        }
    }

    /// xorshift64: a reproducible size.
    fn next_size(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % self.max as u64) as usize + 1
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Chunked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.next_size().min(buf.remaining());
        let mut small = ReadBuf::new(buf.initialize_unfilled_to(n));
        let r = Pin::new(&mut self.inner).poll_read(cx, &mut small);
        let got = small.filled().len();
        buf.advance(got);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Chunked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = self.next_size().min(data.len());
        Pin::new(&mut self.inner).poll_write(cx, &data[..n])
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What both sides need, built once.
struct Setup {
    pki: Pki,
    store: MemoryStore,
}

impl Setup {
    fn new() -> Arc<Setup> {
        let mut store = MemoryStore::new();
        store.add_password("juliet", "r0m30", ITERATIONS, &mut rand_core::OsRng);
        Arc::new(Setup {
            pki: pki("example.com"),
            store,
        })
    }

    fn initiator(&self) -> InitiatingEntity<rand_core::OsRng> {
        let mut config = InitiatorConfig::client("example.com");
        config.from = Some("juliet@example.com".into());
        let mut sasl = ClientSasl::password("juliet", "r0m30", Some("balcony"));
        sasl.policy.min_iterations = ITERATIONS;
        config.sasl = Some(sasl);
        InitiatingEntity::new(config, rand_core::OsRng)
    }

    fn receiver(&self) -> ReceivingEntity<rand_core::OsRng, MemoryStore> {
        ReceivingEntity::new(
            ReceiverConfig::client_to_server("example.com"),
            rand_core::OsRng,
            self.store.clone(),
        )
    }
}

/// How each side ended: `Ok` after a negotiation and a clean close (§4.4).
type Ends = (Result<(), Error>, Result<(), Error>);

/// `machine` as a connection over TCP, with the core's default timers.
fn tcp<M: Negotiator>(machine: M) -> Connection<M> {
    Connection::new(
        machine,
        Framing::Tcp,
        ConnectionOptions::default(),
        TokioClock.now(),
    )
}

/// Negotiates (STARTTLS, SCRAM, bind) and closes, both sides over `c` / `s`; `None` if
/// that took longer than [`RUN_LIMIT`].
async fn run<C, S>(setup: &Setup, c: C, s: S) -> Option<Ends>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ctls = client_tls(&setup.pki);
    let mut stls = server_tls(&setup.pki, "example.com");
    let client = async {
        let n = common::pull::negotiate(
            FromTokio::new(c),
            &mut ctls,
            tcp(setup.initiator()),
            &mut (),
        )
        .await?;
        if n.outcome.jid.as_deref() != Some("juliet@example.com/balcony") {
            return Err(Error::Bind(format!("bound {:?}", n.outcome.jid)));
        }
        n.close().await.map(drop)
    };
    let server = async {
        let n =
            common::pull::negotiate(FromTokio::new(s), &mut stls, tcp(setup.receiver()), &mut ())
                .await?;
        n.close().await.map(drop)
    };
    tokio::time::timeout(RUN_LIMIT, async { tokio::join!(client, server) })
        .await
        .ok()
}

/// One cut run: how each side ended and whether the cut happened.
async fn cut_run(setup: Arc<Setup>, plan: (Dir, usize, Mode)) -> (Option<Ends>, bool) {
    let wire = Wire::new(Some(plan));
    let (c, s) = CutEnd::pair(&wire);
    let ends = run(&setup, c, s).await;
    (ends, wire.was_cut())
}

/// The bytes each direction carries in a whole run (negotiation and close), uncut.
async fn uncut(setup: &Setup) -> [Vec<u8>; 2] {
    let wire = Wire::new(None);
    let (c, s) = CutEnd::pair(&wire);
    let ends = run(setup, c, s).await.expect("an uncut run ends in time");
    assert!(ends.0.is_ok() && ends.1.is_ok(), "uncut run: {ends:?}");
    let bytes = |d: usize| wire.bytes[d].lock().unwrap().clone();
    [bytes(0), bytes(1)]
}

/// Inside TLS, bytes between record boundaries are all alike to the stream (TLS hands
/// nothing of a record on until it is complete): a cut anywhere in a record is the same
/// truncated record. So the cut points are every byte of the plaintext stream up to and
/// including the first TLS byte, every record boundary with the bytes around it and the
/// end of each record header, and every `TLS_STRIDE`th byte inside records.
const TLS_STRIDE: usize = 16;

fn cut_points(wire: &[u8]) -> Vec<usize> {
    // The TLS part starts at the first handshake record after the plaintext `>`.
    let tls = (1..wire.len())
        .find(|&i| wire[i] == 0x16 && wire[i - 1] == b'>')
        .expect("a TLS handshake after the plaintext stream");
    let mut points: Vec<usize> = (0..=tls).collect();
    let mut record = tls;
    while record + 5 <= wire.len() {
        for p in [
            record.saturating_sub(1),
            record,
            record + 1,
            record + 4,
            record + 5,
            record + 6,
        ] {
            points.push(p);
        }
        record += 5 + usize::from(u16::from_be_bytes([wire[record + 3], wire[record + 4]]));
    }
    assert_eq!(record, wire.len(), "the TLS part is whole records");
    points.extend((tls..wire.len()).step_by(TLS_STRIDE));
    // Past the end: a run where records came out a few bytes longer is still cut.
    points.extend(wire.len()..wire.len() + 8);
    points.sort_unstable();
    points.dedup();
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_at_every_byte_ends_both_sides_with_a_typed_error() {
    let setup = Setup::new();
    let wire = uncut(&setup).await;
    let started = Instant::now();
    let mut runs = 0;
    // A few runs at a time, so each run's time limit measures that run, not a queue.
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    for mode in [Mode::Eof, Mode::Error] {
        for dir in [Dir::ToReceiver, Dir::ToInitiator] {
            let n = wire[dir as usize].len();
            // TLS record sizes vary by a few bytes between runs (ECDSA signatures), so a
            // cut near the end may find nothing left to cut: checked per run below.
            let points = cut_points(&wire[dir as usize]);
            let mut tasks = tokio::task::JoinSet::new();
            for k in points.iter().copied() {
                let (setup, slots) = (setup.clone(), slots.clone());
                tasks.spawn(async move {
                    let _slot = slots.acquire().await.expect("open semaphore");
                    (k, cut_run(setup, (dir, k, mode)).await)
                });
            }
            let mut cut = 0;
            while let Some(joined) = tasks.join_next().await {
                let (k, (ends, was_cut)) = joined.expect("no panic in either role");
                runs += 1;
                let Some((c, s)) = ends else {
                    panic!("{mode:?} {dir:?} cut after byte {k}: no end within {RUN_LIMIT:?}");
                };
                if was_cut {
                    cut += 1;
                    assert!(
                        c.is_err() && s.is_err(),
                        "{mode:?} {dir:?} cut after byte {k}: initiator {c:?}, receiver {s:?}"
                    );
                } else {
                    assert!(
                        c.is_ok() && s.is_ok() && k + 8 >= n,
                        "{mode:?} {dir:?} no cut at {k} of {n}: initiator {c:?}, receiver {s:?}"
                    );
                }
            }
            let expected = points.iter().filter(|k| **k + 8 < n).count();
            assert!(
                cut >= expected,
                "{mode:?} {dir:?}: only {cut} of {expected} runs were cut"
            );
        }
    }
    eprintln!(
        "cut: {} bytes to the receiver, {} to the initiator; {runs} runs in {:.1} s",
        wire[0].len(),
        wire[1].len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_of_random_sizes_still_negotiate() {
    let setup = Setup::new();
    let mut tasks = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    for seed in 0..64u64 {
        let max = [1, 2, 7, 64][seed as usize % 4];
        let (setup, slots) = (setup.clone(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire().await.expect("open semaphore");
            let wire = Wire::new(None);
            let (c, s) = CutEnd::pair(&wire);
            let c = Chunked::new(c, seed, max);
            let s = Chunked::new(s, seed + 1000, max);
            (seed, max, run(&setup, c, s).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (seed, max, ends) = joined.expect("no panic in either role");
        let (c, s) = ends.unwrap_or_else(|| panic!("seed {seed} (max {max}): no end in time"));
        assert!(
            c.is_ok() && s.is_ok(),
            "seed {seed} (max {max}): {c:?} {s:?}"
        );
    }
}
