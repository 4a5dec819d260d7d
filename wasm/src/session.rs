//! One connection, run as a task of the page (`spawn_local`): open the WebSocket, negotiate
//! with the core's `driver::negotiate`, then carry the bound stream with `driver::run`
//! until the page or the server closes. The connection (and every rule and timer) is the
//! core's `Connection`; this task only wires it to the socket, the page and the clock.
//!
//! With stream management (XEP-0198, option `resume`, on by default) a link lost on the
//! bound stream is not the end: the task opens a new WebSocket and resumes the session on
//! it (§5), the core sending again exactly what the server had not acknowledged; the page
//! sees `ack`, `resumed` or `resume-failed` events (see [`PageDeliver`]).
//!
//! The task owns everything the connection borrows (TLS record buffers, anchors, pins), so
//! nothing outlives it. The page talks to it through [`Control`]: `send` and `close` queue a
//! [`Request`] (bounded, see [`MAX_WAITING_BYTES`]); `driver::run` takes them as commands
//! while it waits on the socket and the timers, without ever cancelling a read.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::mem;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_channel::oneshot;
use wasm_bindgen::JsValue;
use xmpp_handshake_core::connection::{
    Closed, ConnectionOptions, Event, InitiatingConnection, Outcome, SendError, Stanza,
};
use xmpp_handshake_core::driver::MaybeTls;
use xmpp_handshake_core::driver::{self, negotiate, Clock as _, Command, Commands, Deliver};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::sasl::{Minimum, SaslPolicy};
use xmpp_handshake_core::sm::{SmConfig, SmState};
use xmpp_handshake_core::stream::header::{Framing, StreamHeader, NS_FRAMING, NS_STREAMS};
#[cfg(feature = "tunnel")]
use xmpp_handshake_core::trust::{accept_changed_certificate, CertError, ReferenceIdentity};
use xmpp_handshake_core::xml::element;
use xmpp_handshake_core::Error;
#[cfg(feature = "tunnel")]
use xmpp_handshake_core::TlsError;

use crate::clock::BrowserClock;
use crate::error::Failure;
use crate::events::{detail, Callbacks, Reporter, TlsCell};
#[cfg(feature = "tunnel")]
use crate::options::AcceptChangedKey;
use crate::options::{Mode, Options};
#[cfg(feature = "tunnel")]
use crate::pins::LocalStoragePins;
#[cfg(not(feature = "tunnel"))]
use crate::plain::{self as tls, Reader, Upgrade, Writer};
use crate::rng::BrowserRng;
#[cfg(feature = "tunnel")]
use crate::tls::{self, Reader, TunnelTls, Upgrade, Writer};
use crate::websocket::{Carrying, Socket};

/// Most bytes of stanzas the page may have waiting for the task; more is refused at once
/// (as the core refuses more than its own send queue holds).
pub const MAX_WAITING_BYTES: usize = 256 * 1024;
/// How much one read of the bound stream takes (an RFC 7395 message or decrypted TLS
/// data; more is read on the next turn).
const READ_CHUNK: usize = 4096;

/// Most connections tried in a row to resume a session whose link was lost, the first at
/// once, then a second apart ([`RESUME_DELAY`]).
const RESUME_ATTEMPTS: u32 = 3;
/// The wait between two attempts to resume.
const RESUME_DELAY: Duration = Duration::from_secs(1);

/// Settles a page's `send()` promise (with the stanza's stream-management number, when it
/// is tracked) or `close()` promise.
pub type Done = oneshot::Sender<Result<Option<u64>, Failure>>;

/// What the page asks of a running session.
pub enum Request {
    /// Send one top-level element.
    Send(String, Done),
    /// Close the stream (RFC 6120 §4.4).
    Close(Done),
}

/// Shared between the page's `Session` object and the task.
#[derive(Default)]
pub struct Control {
    requests: VecDeque<Request>,
    waiting_bytes: usize,
    /// The task waits for a request.
    waker: Option<Waker>,
    /// The last send handed to the connection, and the number stream management gave it:
    /// settled once the task asks for the next request (it was written), or when the core
    /// refuses it, or at the end.
    in_flight: Option<(Done, Option<u64>)>,
    /// `close()` promises, settled when the stream has ended.
    closing: Vec<Done>,
    /// The task ended: requests fail at once.
    ended: Option<Failure>,
}

/// The page's end of a [`Control`].
pub type ControlCell = Rc<RefCell<Control>>;

/// Queues `request` for the task, or settles it at once: when the session already ended,
/// when the element is not exactly one stanza, or when too much waits already.
pub fn submit(control: &ControlCell, request: Request) {
    let mut c = control.borrow_mut();
    let request = match (&c.ended, request) {
        (Some(ended), Request::Send(_, done)) => {
            let _ = done.send(Err(ended.clone()));
            return;
        }
        // Closing a closed session is done.
        (Some(_), Request::Close(done)) => {
            let _ = done.send(Ok(None));
            return;
        }
        (None, Request::Send(xml, done)) => {
            let xml = xml.trim();
            let refused = check(xml).err().or_else(|| {
                (c.waiting_bytes + xml.len() > MAX_WAITING_BYTES)
                    .then(|| Failure::transport("too much to send: await earlier send()s first"))
            });
            if let Some(failure) = refused {
                let _ = done.send(Err(failure));
                return;
            }
            c.waiting_bytes += xml.len();
            Request::Send(xml.to_string(), done)
        }
        (None, close) => close,
    };
    c.requests.push_back(request);
    if let Some(waker) = c.waker.take() {
        waker.wake();
    }
}

/// Whether `xml` is exactly one well-formed element and no framing or stream element
/// (anything else could end or corrupt the stream). Parsed as on the stream: `jabber:client`
/// the default namespace, `stream` the prefix of the streams namespace.
fn check(xml: &str) -> Result<(), Failure> {
    let checked = element::parse(xml, &StreamHeader::default(), |node| {
        let ns = node.tag_name().namespace();
        ns != Some(NS_FRAMING) && ns != Some(NS_STREAMS)
    });
    match checked {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::config(
            "send() takes a stanza; use close() to end the stream",
        )),
        Err(e) => Err(Failure::config(format!(
            "send() takes one well-formed XML element: {}",
            e.condition
        ))),
    }
}

/// The page's requests as the driver's commands: a cancel-safe queue (a request leaves it
/// only in the poll that returns it).
struct PageCommands<'c>(&'c ControlCell);

impl Commands for PageCommands<'_> {
    async fn next(&mut self) -> Option<Command> {
        poll_fn(|cx| {
            let mut c = self.0.borrow_mut();
            // The driver wrote what the last command queued before it asked again.
            if let Some((done, number)) = c.in_flight.take() {
                let _ = done.send(Ok(number));
            }
            match c.requests.pop_front() {
                Some(Request::Send(xml, done)) => {
                    c.waiting_bytes = c.waiting_bytes.saturating_sub(xml.len());
                    c.in_flight = Some((done, None));
                    Poll::Ready(Some(Command::Send(xml)))
                }
                Some(Request::Close(done)) => {
                    c.closing.push(done);
                    Poll::Ready(Some(Command::Close))
                }
                None => {
                    c.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// Where the bound stream's stanzas go: `onStanza` (the transcript line comes from the
/// [`Reporter`], which sees every read; so does an element too costly to parse, which the
/// core skips and the page does not get); and stream management's events (XEP-0198):
/// `ack` `{ h, from, to }` (the numbers `send()` resolved with, `from` up to `to`
/// exclusive, reached the server), `resumed` `{ h, acked, resent }` (counts), and
/// `resume-failed` `{ condition, h, notDelivered }` (the server lost the session; a new
/// one was bound, and the stanzas not known delivered, oldest first, were NOT sent again:
/// the page decides).
struct PageDeliver<'c> {
    control: &'c ControlCell,
    callbacks: &'c Callbacks,
}

impl Deliver for PageDeliver<'_> {
    fn stanza(&mut self, stanza: Stanza) {
        // A throwing callback is the page's problem: the connection goes on.
        if let Some(f) = &self.callbacks.on_stanza {
            let _ = f.call1(&JsValue::NULL, &JsValue::from_str(stanza.raw()));
        }
    }

    fn refused(&mut self, _stanza: String, error: SendError) {
        if let Some((done, _)) = self.control.borrow_mut().in_flight.take() {
            // `QueueFull` only for a stanza near MAX_WAITING_BYTES, once qualified.
            let _ = done.send(Err(Failure::transport(match error {
                SendError::QueueFull => "the stanza is too large to send",
                SendError::UnackedFull => {
                    "too many stanzas wait for the server's acknowledgement: await ack events"
                }
                _ => "the stream is closed",
            })));
        }
    }

    fn sent(&mut self, number: Option<u64>) {
        if let Some((_, n)) = &mut self.control.borrow_mut().in_flight {
            *n = number;
        }
    }

    fn stream_management(&mut self, event: Event) {
        let number = |n: u64| JsValue::from(n as f64);
        match event {
            Event::Acked { h, numbers } => self.callbacks.event(
                "ack",
                detail(&[
                    ("h", h.into()),
                    ("from", number(numbers.start)),
                    ("to", number(numbers.end)),
                ]),
            ),
            Event::Resumed { h, acked, resent } => self.callbacks.event(
                "resumed",
                detail(&[
                    ("h", h.into()),
                    ("acked", number(acked.end - acked.start)),
                    ("resent", number(resent.end - resent.start)),
                ]),
            ),
            Event::ResumeFailed {
                h,
                condition,
                not_delivered,
                ..
            } => {
                let stanzas: js_sys::Array = not_delivered
                    .iter()
                    .map(|(_, xml)| JsValue::from_str(xml))
                    .collect();
                self.callbacks.event(
                    "resume-failed",
                    detail(&[
                        ("condition", condition.map_or(JsValue::NULL, JsValue::from)),
                        ("h", h.map_or(JsValue::NULL, JsValue::from)),
                        ("notDelivered", stanzas.into()),
                    ]),
                );
            }
            _ => {}
        }
    }
}

/// Runs one connection; `ready` gets the bound JID (or why not) once negotiated.
pub async fn run(
    options: Options,
    reporter: Reporter,
    tls_cell: TlsCell,
    ready: oneshot::Sender<Result<String, Failure>>,
    control: ControlCell,
) {
    let mut ready = Some(ready);
    // Only a tunnel has TLS details to report.
    #[cfg(not(feature = "tunnel"))]
    let _ = tls_cell;
    let result = match options.mode {
        Mode::WebSocket => websocket_mode(&options, reporter, &mut ready, &control).await,
        #[cfg(feature = "tunnel")]
        Mode::Tunnel => tunnel_mode(&options, reporter, tls_cell, &mut ready, &control).await,
    };
    let failure = match result {
        Ok(()) => Failure::transport("the session is closed"),
        Err(f) => f,
    };
    // What the page still has queued is settled as anything it asks from now on.
    let waiting = {
        let mut c = control.borrow_mut();
        c.ended = Some(failure.clone());
        c.waker = None;
        c.waiting_bytes = 0;
        mem::take(&mut c.requests)
    };
    for request in waiting {
        submit(&control, request);
    }
    if let Some(ready) = ready {
        let _ = ready.send(Err(failure));
    }
}

fn initiator(options: &Options) -> InitiatorConfig {
    let mut config = InitiatorConfig::client(options.jid.domain());
    config.from = Some(options.jid.to_string());
    let mut sasl = ClientSasl::password(
        options.jid.local().unwrap_or_default(),
        &options.password,
        options.resource.as_deref(),
    );
    sasl.policy = SaslPolicy {
        channel_binding: options.channel_binding,
        // PLAIN sends the password itself: only when the page opts in.
        minimum: if options.allow_plain {
            Minimum::Any
        } else {
            Minimum::NoPlaintext
        },
        ..SaslPolicy::default()
    };
    config.sasl = Some(sasl);
    if options.resume {
        // An ack request after every stanza: `ack` events follow each send() by a round
        // trip, and what a drop can catch unacknowledged stays small.
        config.stream_management = Some(SmConfig {
            request_every: 1,
            ..SmConfig::default()
        });
    }
    config
}

/// Whether the session whose link was just lost is resumed on a new connection: it has a
/// session to resume (`resume`), the page did not ask to close, and fewer than
/// [`RESUME_ATTEMPTS`] connections failed since the last one that bound. Waits before the
/// second attempt and later ones.
async fn resume_again(
    resume: &Option<SmState>,
    control: &ControlCell,
    attempts: &mut u32,
    reporter: &mut Reporter,
) -> bool {
    if resume.is_none() || !control.borrow().closing.is_empty() || *attempts >= RESUME_ATTEMPTS {
        return false;
    }
    if *attempts > 0 {
        BrowserClock
            .sleep_until(BrowserClock.now() + RESUME_DELAY)
            .await;
    }
    *attempts += 1;
    reporter.transcript(
        "info",
        &format!("-- link lost; resuming the session (attempt {attempts}) --"),
    );
    reporter.new_connection();
    true
}

/// RFC 7395 straight to the server: TLS is the browser's (`wss://`), no STARTTLS.
async fn websocket_mode(
    options: &Options,
    mut reporter: Reporter,
    ready: &mut Option<oneshot::Sender<Result<String, Failure>>>,
    control: &ControlCell,
) -> Result<(), Failure> {
    let mut resume = None;
    let mut attempts = 0;
    loop {
        let socket = match open(options, Carrying::Elements, &reporter).await {
            Err(_) if resume_again(&resume, control, &mut attempts, &mut reporter).await => {
                continue
            }
            socket => socket?,
        };
        let mut config = initiator(options);
        config.framing = Framing::WebSocket;
        let mut upgrade = tls::no_tls();
        let result = connection(
            options,
            config,
            &socket,
            &mut upgrade,
            &mut reporter,
            ready,
            control,
            &mut resume,
        )
        .await;
        if lost(&result, &mut attempts)
            && resume_again(&resume, control, &mut attempts, &mut reporter).await
        {
            continue;
        }
        let closed =
            result.map_err(|e| fail(&reporter, Failure::from_core(&e, socket.end_reason())))?;
        return finish(closed, &reporter, control, &socket);
    }
}

/// Whether a connection's `result` is a lost link (the stream failed, or a connection
/// made to resume failed to negotiate); a connection that bound resets `attempts`.
fn lost(result: &Result<Closed, Error>, attempts: &mut u32) -> bool {
    match result {
        Ok(Closed::Failed(_)) => {
            *attempts = 0;
            true
        }
        Ok(_) => false,
        Err(_) => *attempts > 0,
    }
}

/// The raw stream through the bridge, STARTTLS and TLS in the page.
#[cfg(feature = "tunnel")]
async fn tunnel_mode(
    options: &Options,
    mut reporter: Reporter,
    tls_cell: TlsCell,
    ready: &mut Option<oneshot::Sender<Result<String, Failure>>>,
    control: &ControlCell,
) -> Result<(), Failure> {
    let reference = ReferenceIdentity::client_to_server(options.jid.domain())
        .map_err(|e| fail(&reporter, Failure::config(format!("jid domain: {e}"))))?;
    let policy = tls::policy(!options.anchors.is_empty(), options.trust_first_use);
    let mut pins = LocalStoragePins::open();
    pins.get(reference.domain())
        .map_err(|e| fail(&reporter, Failure::config(e)))?;
    let anchors: Vec<&[u8]> = options.anchors.iter().map(Vec::as_slice).collect();
    let mut read = vec![0u8; tls::READ_BUFFER];
    let mut write = vec![0u8; tls::WRITE_BUFFER];
    let mut accepted_once = false;
    let mut resume = None;
    let mut attempts = 0;
    loop {
        let socket = match open(options, Carrying::Bytes, &reporter).await {
            Err(_) if resume_again(&resume, control, &mut attempts, &mut reporter).await => {
                continue
            }
            socket => socket?,
        };
        let mut upgrade = TunnelTls::new(
            &mut read,
            &mut write,
            reference.clone(),
            policy.clone(),
            &anchors,
            &mut pins,
            tls_cell.clone(),
        );
        let result = connection(
            options,
            initiator(options),
            &socket,
            &mut upgrade,
            &mut reporter,
            ready,
            control,
            &mut resume,
        )
        .await;
        if lost(&result, &mut attempts)
            && resume_again(&resume, control, &mut attempts, &mut reporter).await
        {
            // The buffers are free again once `upgrade` is gone.
            drop(upgrade);
            read.fill(0);
            write.fill(0);
            continue;
        }
        let e = match result {
            Ok(closed) => return finish(closed, &reporter, control, &socket),
            Err(e) => e,
        };
        if let Some(cert @ CertError::PinChanged(change)) = e.tls().and_then(TlsError::certificate)
        {
            let wanted = match &options.accept_changed_key {
                AcceptChangedKey::No => false,
                AcceptChangedKey::Any => true,
                AcceptChangedKey::Only(f) => *f == change.new_cert.to_string(),
            };
            if let (true, false, Some(pins)) = (wanted, accepted_once, upgrade.pins_mut()) {
                accept_changed_certificate(pins, cert).map_err(|e| {
                    fail(
                        &reporter,
                        Failure::config(format!("accepting the key: {e}")),
                    )
                })?;
                reporter.transcript(
                    "info",
                    &format!(
                        "-- changed certificate for {} accepted (key {}); reconnecting --",
                        change.domain, change.new_spki
                    ),
                );
                accepted_once = true;
                // The buffers are free again once `upgrade` is gone.
                drop(upgrade);
                read.fill(0);
                write.fill(0);
                continue;
            }
        }
        let failure = Failure::from_core(&e, socket.end_reason());
        return Err(fail(&reporter, failure));
    }
}

/// One connection on `socket`, in either mode: the core's `Connection`, negotiated with
/// `driver::negotiate` (`Err`: why it failed), resuming `resume` when there is one, then the
/// bound stream (see [`bound`]) until it ends; then TLS is closed. A stream that failed
/// leaves its stream-management session in `resume`, to be resumed; a closed one none.
#[allow(clippy::too_many_arguments)]
async fn connection(
    options: &Options,
    config: InitiatorConfig,
    socket: &Socket,
    upgrade: &mut Upgrade<'_>,
    reporter: &mut Reporter,
    ready: &mut Option<oneshot::Sender<Result<String, Failure>>>,
    control: &ControlCell,
    resume: &mut Option<SmState>,
) -> Result<Closed, Error> {
    let mut settings = ConnectionOptions::default();
    settings.timeouts.negotiation = Some(Duration::from_millis(options.timeout_ms.into()));
    let mut config = config;
    // A copy: the session stays here until a negotiation has taken it over.
    config.resume.clone_from(resume);
    let mut connection =
        InitiatingConnection::initiate(config, BrowserRng, settings, BrowserClock.now());
    let mut io = MaybeTls::Plain(socket.clone());
    let outcome = negotiate(&mut io, upgrade, &mut connection, reporter, &BrowserClock).await?;
    // Resumed or reported (`resumed`, `resume-failed`): the connection has it now.
    *resume = None;
    let closed = {
        let (mut reader, mut writer) = tls::split(&mut io, socket);
        bound(
            &mut reader,
            &mut writer,
            &mut connection,
            outcome,
            reporter,
            ready,
            control,
        )
        .await
    };
    if let Closed::Failed(_) = closed {
        *resume = connection.take_sm_state();
    }
    // After the closing tags (§4.4): close_notify; the WebSocket closes with its last
    // handle, when the caller is done with it.
    #[cfg(feature = "tunnel")]
    if let MaybeTls::Tls(stream) = io.take() {
        let _ = stream.close().await;
    }
    Ok(closed)
}

/// Opens the WebSocket and reports `connect`.
async fn open(
    options: &Options,
    carrying: Carrying,
    reporter: &Reporter,
) -> Result<Socket, Failure> {
    let socket = Socket::open(&options.url, carrying)
        .await
        .map_err(|e| fail(reporter, Failure::transport(e.0)))?;
    let mode = match options.mode {
        Mode::WebSocket => "websocket",
        #[cfg(feature = "tunnel")]
        Mode::Tunnel => "tunnel",
    };
    reporter.transcript(
        "info",
        &format!(
            "-- connected to {} ({mode}{}) --",
            options.url,
            if options.wss {
                ", wss"
            } else if options.mode == Mode::WebSocket {
                ", ws:// to loopback: NOT encrypted"
            } else {
                ", ws:// to loopback; the stream will use STARTTLS"
            }
        ),
    );
    reporter.event(
        "connect",
        detail(&[
            ("url", options.url.as_str().into()),
            ("mode", mode.into()),
            ("secure", options.wss.into()),
        ]),
    );
    Ok(socket)
}

/// Reports `error` and returns it.
fn fail(reporter: &Reporter, failure: Failure) -> Failure {
    reporter.transcript(
        "info",
        &format!("-- {} error: {} --", failure.kind, failure.message),
    );
    reporter.event(
        "error",
        detail(&[
            ("kind", failure.kind.into()),
            ("message", failure.message.as_str().into()),
        ]),
    );
    failure
}

/// The bound stream: report `bound`, hand the session to the page, then `driver::run`
/// until the stream ends (the caller then ends TLS and the WebSocket).
async fn bound(
    reader: &mut Reader<'_>,
    writer: &mut Writer<'_>,
    connection: &mut InitiatingConnection<BrowserRng>,
    outcome: Outcome,
    reporter: &mut Reporter,
    ready: &mut Option<oneshot::Sender<Result<String, Failure>>>,
    control: &ControlCell,
) -> Closed {
    let jid = outcome.jid.unwrap_or_default();
    reporter.event(
        "bound",
        detail(&[
            ("jid", jid.as_str().into()),
            (
                "mechanism",
                outcome.mechanism.map_or(JsValue::NULL, |m| m.name().into()),
            ),
        ]),
    );
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(jid));
    }
    let callbacks = reporter.callbacks().clone();
    let mut deliver = PageDeliver {
        control,
        callbacks: &callbacks,
    };
    let mut buf = vec![0u8; READ_CHUNK];
    driver::run(
        reader,
        writer,
        connection,
        &mut PageCommands(control),
        &mut deliver,
        reporter,
        &BrowserClock,
        &mut buf,
    )
    .await
}

/// Reports how the bound stream ended and settles what the page waits for.
fn finish(
    closed: Closed,
    reporter: &Reporter,
    control: &ControlCell,
    socket: &Socket,
) -> Result<(), Failure> {
    let (in_flight, closing) = {
        let mut c = control.borrow_mut();
        (c.in_flight.take(), mem::take(&mut c.closing))
    };
    let by = |who: &str| reporter.event("closed", detail(&[("by", who.into())]));
    let (settled, result) = match closed {
        // Everything sent before the closing tags went out (§4.4).
        Closed::ByUs => {
            by("client");
            (Ok(None), Ok(()))
        }
        Closed::ByPeer => {
            by("server");
            (
                Ok(None),
                Err(Failure::transport("the server closed the stream")),
            )
        }
        Closed::Failed(e) => {
            let failure = Failure::from_core(&e, socket.end_reason());
            if closing.is_empty() {
                by("error");
                (Err(failure.clone()), Err(fail(reporter, failure)))
            } else {
                by("client");
                (Err(failure), Ok(()))
            }
        }
    };
    let in_flight = in_flight.map(|(done, _)| done);
    for done in in_flight.into_iter().chain(closing) {
        let _ = done.send(settled.clone());
    }
    result
}
