//! A bound stream run by a task: the core's [`Connection`] driven with [`driver::run`] over
//! a tokio socket split in two halves, waiting on the socket, the application's commands
//! and the connection's timers together. [`crate::Client`] and [`crate::server::Peer`] are
//! this handle with the JID their negotiation bound; a program that negotiates by itself
//! (its own transcript, an S2S stream without a JID) calls [`BoundStream::spawn`].
//!
//! With stream management (XEP-0198) on, its events come from
//! [`BoundStream::next_sm_event`], and once the stream is over [`BoundStream::take_sm_state`]
//! gives what the next connection resumes with
//! ([`ClientOptions::resume`](crate::ClientOptions)).
//!
//! Nothing the application hands over is dropped unsaid: [`BoundStream::send_tracked`]
//! answers with the stanza's stream-management number or why it was refused, and a stanza
//! of [`BoundStream::send`] that the stream refused (its queue of unacknowledged stanzas
//! full, say) comes back through [`BoundStream::take_refusals`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use embedded_io_adapters::tokio_1::FromTokio;
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use xmpp_handshake_core::connection::{
    Closed, Connection, Event, Negotiator, Outcome, SendError, Stanza,
};
use xmpp_handshake_core::driver::{self, Command, Commands, Deliver, MaybeTls};
use xmpp_handshake_core::sm::SmState;
use xmpp_handshake_core::stream::error::StreamError;

use crate::client::Error;
use crate::clock::TokioClock;

/// A socket tokio can split in two halves.
trait Socket: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Socket for T {}

/// Commands the application may have in flight before [`BoundStream::send`] waits.
const COMMAND_QUEUE: usize = 64;

/// Where the outcome of one [`BoundStream::send_tracked`] goes.
type Reply = oneshot::Sender<Result<Option<u64>, SendError>>;

/// A command, with where its outcome goes when the application waits for it.
struct Request {
    command: Command,
    reply: Option<Reply>,
}

impl Request {
    fn new(command: Command) -> Self {
        Request {
            command,
            reply: None,
        }
    }
}

/// The reply of the command being carried out: [`Queue`] puts it here, and the
/// [`Deliver`] calls the driver makes for that command ([`Deliver::sent`],
/// [`Deliver::refused`]) take it, before the next command is read.
type Pending = Arc<Mutex<Option<Reply>>>;

/// The application's side of a bound stream: received stanzas as a [`Stream`] (or
/// [`BoundStream::next_stanza`]), [`BoundStream::send`], [`BoundStream::close`].
pub struct BoundStream {
    outcome: Outcome,
    commands: mpsc::Sender<Request>,
    stanzas: mpsc::Receiver<Stanza>,
    sm_events: mpsc::Receiver<Event>,
    refusals: Option<mpsc::Receiver<(String, SendError)>>,
    ended: Option<oneshot::Receiver<End>>,
    sm_state: Option<SmState>,
    /// Stream-management events that did not fit the channel before the end.
    sm_leftovers: VecDeque<Event>,
    /// How the stream ended, once [`BoundStream::next_incoming`] learned it and before it
    /// reported it.
    closed: Option<Closed>,
}

/// What [`BoundStream::next_incoming`] brings.
#[derive(Debug)]
pub enum Incoming {
    /// A received stanza (or another top-level element).
    Stanza(Stanza),
    /// A stream-management event (XEP-0198), as [`BoundStream::next_sm_event`] gives.
    StreamManagement(Event),
}

/// How the task ended: the stream's end, the session's state, the events not yet taken.
struct End {
    closed: Closed,
    sm_state: Option<SmState>,
    sm_leftovers: VecDeque<Event>,
}

impl BoundStream {
    /// Runs the bound stream of `connection`, negotiated over `io` (plain, or TLS after
    /// STARTTLS or from the first byte) with the `outcome` [`driver::negotiate`] returned,
    /// in a task of its own. At most `receive_queue` received stanzas wait for the
    /// application; past it the task stops reading until the application takes some (the
    /// peer is held back by TCP), so nothing is dropped and no memory grows. The same bound
    /// holds for stream-management events ([`BoundStream::next_sm_event`]): with stream
    /// management on, the application must take them, and so for refused stanzas
    /// ([`BoundStream::take_refusals`]): past the bound they are only logged.
    pub fn spawn<T, S, M>(
        io: MaybeTls<FromTokio<T>, FromTokio<S>>,
        mut connection: Connection<M>,
        outcome: Outcome,
        receive_queue: usize,
    ) -> Result<Self, Error>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        M: Negotiator + Send + 'static,
    {
        let socket: Box<dyn Socket> = match io {
            MaybeTls::Plain(t) => Box::new(t.into_inner()),
            MaybeTls::Tls(s) => Box::new(s.into_inner()),
            MaybeTls::Closed => return Err(Error::Closed),
        };
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (stanzas_tx, stanzas_rx) = mpsc::channel(receive_queue.max(1));
        let (sm_tx, sm_rx) = mpsc::channel(receive_queue.max(1));
        let (refused_tx, refused_rx) = mpsc::channel(receive_queue.max(1));
        let (ended_tx, ended_rx) = oneshot::channel();
        let pending = Pending::default();
        tokio::spawn(async move {
            let (read, write) = tokio::io::split(socket);
            let mut reader = FromTokio::new(read);
            let mut writer = FromTokio::new(write);
            let mut commands = Queue {
                rx: commands_rx,
                pending: pending.clone(),
            };
            let mut deliver = ToApplication {
                tx: stanzas_tx,
                overflow: VecDeque::new(),
                sm_tx,
                sm_overflow: VecDeque::new(),
                refused_tx,
                pending,
            };
            let mut buf = vec![0; 16 * 1024];
            let closed = driver::run(
                &mut reader,
                &mut writer,
                &mut connection,
                &mut commands,
                &mut deliver,
                &mut (),
                &TokioClock,
                &mut buf,
            )
            .await;
            // End TLS (close_notify) and the TCP connection, unless the peer stopped
            // reading (then the shutdown would wait for it too).
            let write_limit = connection.timeouts().write;
            let shutdown = writer.inner_mut().shutdown();
            let _ = match write_limit {
                Some(limit) => tokio::time::timeout(limit, shutdown).await.ok(),
                None => Some(shutdown.await),
            };
            // Stanzas the application handed over that the stream never took: with a
            // session to resume they join its queue (sent on resumption, or reported not
            // delivered) and get their numbers; without one they are gone, as the stream
            // is ([`BoundStream::send_tracked`] says so: [`Error::Closed`]).
            let mut sm_state = connection.take_sm_state();
            commands.rx.close();
            while let Ok(Request { command, reply }) = commands.rx.try_recv() {
                let (Command::Send(stanza), Some(state)) = (command, sm_state.as_mut()) else {
                    continue;
                };
                match state.queue(&stanza) {
                    Ok(number) => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Ok(Some(number)));
                        }
                    }
                    Err(e) => deliver.refuse(stanza, e, reply),
                }
            }
            let _ = ended_tx.send(End {
                closed,
                sm_state,
                sm_leftovers: deliver.sm_overflow,
            });
        });
        Ok(BoundStream {
            outcome,
            commands: commands_tx,
            stanzas: stanzas_rx,
            sm_events: sm_rx,
            refusals: Some(refused_rx),
            ended: Some(ended_rx),
            sm_state: None,
            sm_leftovers: VecDeque::new(),
            closed: None,
        })
    }

    /// How the negotiation ended (mechanism, TLS, stream id, SCRAM keys to keep).
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Sends one stanza (build it with [`xmpp_handshake_core::stanza`]). Waits while the
    /// command queue is full; [`Error::Closed`] once the stream is over. Should the stream
    /// refuse the stanza (its queue of unacknowledged stanzas full, XEP-0198), it comes
    /// back through [`BoundStream::take_refusals`].
    pub async fn send(&self, stanza: &str) -> Result<(), Error> {
        send(
            &self.commands,
            Request::new(Command::Send(stanza.to_string())),
        )
        .await
    }

    /// Sends one stanza and waits until the stream took it: `Ok(Some(n))` is the number
    /// stream management gave it (XEP-0198; [`Event::Acked`] names it when the peer
    /// acknowledged it), `Ok(None)` when it is not tracked (stream management off or not
    /// enabled, or not a stanza). [`Error::Refused`]: not sent (e.g.
    /// [`SendError::UnackedFull`]: wait for acks). [`Error::Closed`]: the stream is over
    /// and the stanza was not kept (had the session been resumable, it would have joined
    /// the state of [`BoundStream::take_sm_state`], numbered). Cancelling it after the
    /// stanza was handed over does not take it back; a refusal then goes to
    /// [`BoundStream::take_refusals`].
    pub async fn send_tracked(&self, stanza: &str) -> Result<Option<u64>, Error> {
        send_tracked(&self.commands, stanza).await
    }

    /// The stanzas the stream refused after [`BoundStream::send`] (or a cancelled
    /// [`BoundStream::send_tracked`]), with why: taken once (then `None`). At most the
    /// receive queue's bound wait; past it a refusal is only logged.
    pub fn take_refusals(&mut self) -> Option<Refusals> {
        self.refusals.take().map(Refusals)
    }

    /// A handle that sends on this stream from elsewhere: another task, or a `select!`
    /// branch beside a pending [`BoundStream::next_stanza`].
    pub fn sender(&self) -> Sender {
        Sender(self.commands.clone())
    }

    /// Ends the stream with `error` (RFC 6120 §4.9): the error and our closing tag are
    /// sent, then the connection is closed. [`BoundStream::ended`] tells when.
    pub async fn stream_error(&self, error: StreamError) -> Result<(), Error> {
        send(&self.commands, Request::new(Command::StreamError(error))).await
    }

    /// Drops the link as if it broke ([`Command::Abandon`]): the session stays resumable
    /// and [`BoundStream::take_sm_state`] gives its state once [`BoundStream::ended`]
    /// reported the end. For a server whose client resumed this session elsewhere.
    pub async fn abandon(&self) -> Result<(), Error> {
        send(&self.commands, Request::new(Command::Abandon)).await
    }

    /// The next received stanza: `Ok(None)` once the stream closed cleanly (§4.4), the
    /// core's error when it failed (a stream error received or sent, the transport lost,
    /// a timer expired). Cancel-safe.
    pub async fn next_stanza(&mut self) -> Result<Option<Stanza>, xmpp_handshake_core::Error> {
        if let Some(stanza) = self.stanzas.recv().await {
            return Ok(Some(stanza));
        }
        match self.ended().await {
            Some(Closed::ByUs | Closed::ByPeer) => Ok(None),
            Some(Closed::Failed(e)) => Err(e),
            None => Err(xmpp_handshake_core::Error::ConnectionClosed),
        }
    }

    /// Closes the stream (§4.4) and waits until the peer closed its side (everything sent
    /// before was processed) or the connection's close timeout passed. Stanzas still
    /// arriving meanwhile are dropped.
    pub async fn close(mut self) -> Result<(), Error> {
        let _ = self.commands.send(Request::new(Command::Close)).await;
        self.stanzas.close();
        match self.ended().await {
            Some(Closed::ByUs | Closed::ByPeer) => Ok(()),
            Some(Closed::Failed(e)) => Err(Error::Xmpp(e)),
            None => Err(Error::Closed),
        }
    }

    /// How the stream ended: waits for the end, after the [`Stream`] returned `None`.
    /// `None` when it was asked for before (or the task was lost). Cancel-safe.
    pub async fn ended(&mut self) -> Option<Closed> {
        // Awaited by reference: cancelling this (in a `select!`) loses nothing.
        let end = self.ended.as_mut()?.await.ok();
        self.ended = None;
        let end = end?;
        self.sm_state = end.sm_state;
        self.sm_leftovers = end.sm_leftovers;
        Some(end.closed)
    }

    /// The next stream-management event (XEP-0198): `SmEnabled`, `SmFailed`, `Acked`,
    /// `Resumed`, `ResumeFailed` ([`Event`]); `None` once the stream is over and all were
    /// taken. Stanzas are numbered in the order they are sent (message, presence and iq
    /// only), from 1 on a new session and on from the resumed state's numbers. Cancel-safe.
    pub async fn next_sm_event(&mut self) -> Option<Event> {
        if let Some(event) = self.sm_events.recv().await {
            return Some(event);
        }
        if self.ended.is_some() {
            self.ended().await;
        }
        self.sm_leftovers.pop_front()
    }

    /// The next received stanza or stream-management event, whichever comes first (the
    /// two keep their own order, not each other's): one loop for a client that waits on
    /// both. Once the stream is over and both were taken, `Ok(None)` for a clean close
    /// (§4.4) and the core's error for a failed stream, as [`BoundStream::next_stanza`]
    /// says; [`BoundStream::take_sm_state`] then has the session's state. Cancel-safe.
    pub async fn next_incoming(&mut self) -> Result<Option<Incoming>, xmpp_handshake_core::Error> {
        tokio::select! {
            biased;
            Some(event) = self.sm_events.recv() => {
                return Ok(Some(Incoming::StreamManagement(event)));
            }
            Some(stanza) = self.stanzas.recv() => return Ok(Some(Incoming::Stanza(stanza))),
            else => {}
        }
        if self.ended.is_some() {
            self.closed = self.ended().await;
        }
        if let Some(event) = self.sm_leftovers.pop_front() {
            return Ok(Some(Incoming::StreamManagement(event)));
        }
        match self.closed.take() {
            Some(Closed::ByUs | Closed::ByPeer) => Ok(None),
            Some(Closed::Failed(e)) => Err(e),
            None => Err(xmpp_handshake_core::Error::ConnectionClosed),
        }
    }

    /// What the session leaves for a resumption (XEP-0198 §5): its id, counts and the
    /// stanzas not acknowledged; available after [`BoundStream::ended`] (or
    /// [`BoundStream::next_stanza`]) reported the end. Taken once.
    pub fn take_sm_state(&mut self) -> Option<SmState> {
        self.sm_state.take()
    }
}

/// Sends on a [`BoundStream`] ([`BoundStream::sender`]).
#[derive(Clone)]
pub struct Sender(mpsc::Sender<Request>);

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.0.is_closed())
            .finish()
    }
}

impl Sender {
    /// As [`BoundStream::send`]. Cancel-safe: a send abandoned while it waits sends
    /// nothing.
    pub async fn send(&self, stanza: &str) -> Result<(), Error> {
        send(&self.0, Request::new(Command::Send(stanza.to_string()))).await
    }

    /// As [`BoundStream::send_tracked`].
    pub async fn send_tracked(&self, stanza: &str) -> Result<Option<u64>, Error> {
        send_tracked(&self.0, stanza).await
    }
}

/// The stanzas a stream refused ([`BoundStream::take_refusals`]).
#[derive(Debug)]
pub struct Refusals(mpsc::Receiver<(String, SendError)>);

impl Refusals {
    /// The next refused stanza (as handed to [`BoundStream::send`]) and why; `None` once
    /// the stream is over and all were taken. Cancel-safe.
    pub async fn next(&mut self) -> Option<(String, SendError)> {
        self.0.recv().await
    }
}

async fn send(commands: &mpsc::Sender<Request>, request: Request) -> Result<(), Error> {
    commands.send(request).await.map_err(|_| Error::Closed)
}

async fn send_tracked(
    commands: &mpsc::Sender<Request>,
    stanza: &str,
) -> Result<Option<u64>, Error> {
    let (reply, outcome) = oneshot::channel();
    let request = Request {
        command: Command::Send(stanza.to_string()),
        reply: Some(reply),
    };
    send(commands, request).await?;
    match outcome.await {
        Ok(Ok(number)) => Ok(number),
        Ok(Err(e)) => Err(Error::Refused(e)),
        Err(_) => Err(Error::Closed),
    }
}

impl Stream for BoundStream {
    type Item = Stanza;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Stanza>> {
        self.stanzas.poll_recv(cx)
    }
}

/// The application's commands; the reply of the one returned waits in `pending`.
struct Queue {
    rx: mpsc::Receiver<Request>,
    pending: Pending,
}

impl Commands for Queue {
    async fn next(&mut self) -> Option<Command> {
        let Request { command, reply } = self.rx.recv().await?;
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = reply;
        Some(command)
    }
}

/// Received stanzas, to the application: a bounded queue. When it is full, reading pauses
/// (TCP's window holds the peer back) and the stanzas of the last read wait in `overflow`,
/// bounded by what one read of the buffer can hold.
struct ToApplication {
    tx: mpsc::Sender<Stanza>,
    overflow: VecDeque<Stanza>,
    sm_tx: mpsc::Sender<Event>,
    sm_overflow: VecDeque<Event>,
    refused_tx: mpsc::Sender<(String, SendError)>,
    pending: Pending,
}

impl ToApplication {
    fn reply(&mut self) -> Option<Reply> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// `stanza` was not sent: to the caller waiting for it, else to the refusals.
    fn refuse(&mut self, stanza: String, error: SendError, reply: Option<Reply>) {
        if let Some(reply) = reply {
            if reply.send(Err(error)).is_ok() {
                return;
            }
        }
        if self.refused_tx.try_send((stanza, error)).is_err() {
            log::warn!(
                "a stanza was not sent ({error}) and the application was not told: it takes no \
                 refusals"
            );
        }
    }
}

impl Deliver for ToApplication {
    fn stanza(&mut self, stanza: Stanza) {
        if !self.overflow.is_empty() {
            self.overflow.push_back(stanza);
            return;
        }
        match self.tx.try_send(stanza) {
            Err(mpsc::error::TrySendError::Full(stanza)) => self.overflow.push_back(stanza),
            // The application dropped the stream: nobody to deliver to.
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Bounded without pausing the stream: acks waiting behind a full channel merge into
    /// one (their numbers are consecutive), and the other events come a few per connection.
    fn stream_management(&mut self, event: Event) {
        while let Some(waiting) = self.sm_overflow.pop_front() {
            if let Err(e) = self.sm_tx.try_send(waiting) {
                if let mpsc::error::TrySendError::Full(waiting) = e {
                    self.sm_overflow.push_front(waiting);
                }
                break;
            }
        }
        if let (
            Some(Event::Acked { h, numbers }),
            Event::Acked {
                h: newer,
                numbers: more,
            },
        ) = (self.sm_overflow.back_mut(), &event)
        {
            *h = *newer;
            numbers.end = more.end;
            return;
        }
        if !self.sm_overflow.is_empty() {
            self.sm_overflow.push_back(event);
            return;
        }
        match self.sm_tx.try_send(event) {
            Err(mpsc::error::TrySendError::Full(event)) => self.sm_overflow.push_back(event),
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn skipped(&mut self, cost: usize, allowed: usize) {
        log::warn!(
            "an element was skipped unparsed: parsing it would cost {cost} bytes, {allowed} allowed"
        );
    }

    fn refused(&mut self, stanza: String, error: SendError) {
        let reply = self.reply();
        self.refuse(stanza, error, reply);
    }

    fn sent(&mut self, number: Option<u64>) {
        if let Some(reply) = self.reply() {
            let _ = reply.send(Ok(number));
        }
    }

    fn paused(&self) -> bool {
        !self.overflow.is_empty()
    }

    async fn room(&mut self) {
        while !self.overflow.is_empty() {
            // A permit first: cancelled while waiting, nothing has left `overflow`.
            let Ok(permit) = self.tx.reserve().await else {
                self.overflow.clear();
                return;
            };
            if let Some(stanza) = self.overflow.pop_front() {
                permit.send(stanza);
            }
        }
    }
}
