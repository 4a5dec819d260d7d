//! One connection, run as a task of the page (`spawn_local`): open the WebSocket, negotiate
//! with the core's driver, then the stanza phase until the page or the server closes.
//!
//! The task owns everything the connection borrows (TLS record buffers, anchors, pins), so
//! nothing outlives it. The page talks to it through [`Control`]: `send` and `close` queue a
//! [`Command`] and make the pending read give way (see `websocket`), the task serves the
//! queue and reads on.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use embedded_io::ErrorKind;
use embedded_io_async::{Read, Write};
use futures_channel::oneshot;
use wasm_bindgen::JsValue;
use xmpp_handshake_core::driver::{negotiate, MaybeTls, NoTls, Session};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::sasl::{Minimum, SaslPolicy};
use xmpp_handshake_core::stream::header::Framing;
use xmpp_handshake_core::trust::{accept_changed_certificate, CertError, ReferenceIdentity};
use xmpp_handshake_core::xml::element;
use xmpp_handshake_core::Error;
use xmpp_handshake_embedded_tls::{Aes128GcmSha256, EmbeddedTlsError, EmbeddedTlsStream};

use crate::error::Failure;
use crate::events::{detail, Reporter, TlsCell};
use crate::options::{AcceptChangedKey, Mode, Options};
use crate::pins::LocalStoragePins;
use crate::rng::BrowserRng;
use crate::tls::{self, TunnelTls};
use crate::websocket::{end_reason, Carrying, GiveWay, Socket};

/// What the page asks of a running session.
pub enum Command {
    /// Send one top-level element.
    Send(String, oneshot::Sender<Result<(), Failure>>),
    /// Close the stream (RFC 6120 §4.4).
    Close(oneshot::Sender<Result<(), Failure>>),
}

/// Shared between the page's `Session` object and the task.
#[derive(Default)]
pub struct Control {
    commands: VecDeque<Command>,
    give_way: Option<GiveWay>,
    /// The task ended: commands fail at once.
    ended: Option<Failure>,
}

/// The page's end of a [`Control`].
pub type ControlCell = Rc<RefCell<Control>>;

/// Queues `command`, or fails it when the session already ended.
pub fn submit(control: &ControlCell, command: Command) {
    let mut c = control.borrow_mut();
    if let Some(ended) = &c.ended {
        let failure = ended.clone();
        match command {
            Command::Send(_, done) => {
                let _ = done.send(Err(failure));
            }
            // Closing a closed session is done.
            Command::Close(done) => {
                let _ = done.send(Ok(()));
            }
        }
        return;
    }
    c.commands.push_back(command);
    if let Some(g) = &c.give_way {
        g.request();
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
    let result = match options.mode {
        Mode::WebSocket => websocket_mode(&options, reporter, &mut ready, &control).await,
        Mode::Tunnel => tunnel_mode(&options, reporter, tls_cell, &mut ready, &control).await,
    };
    let failure = match result {
        Ok(()) => Failure::transport("the session is closed"),
        Err(f) => f,
    };
    let mut c = control.borrow_mut();
    c.give_way = None;
    for command in c.commands.drain(..) {
        match command {
            Command::Send(_, done) => {
                let _ = done.send(Err(failure.clone()));
            }
            Command::Close(done) => {
                let _ = done.send(Ok(()));
            }
        }
    }
    c.ended = Some(failure.clone());
    if let Some(ready) = ready {
        let _ = ready.send(Err(failure));
    }
}

fn initiator(options: &Options) -> InitiatorConfig {
    let mut config = InitiatorConfig::client(&options.domain);
    config.from = Some(format!("{}@{}", options.username, options.domain));
    let mut sasl = ClientSasl::password(
        &options.username,
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
    config
}

/// RFC 7395 straight to the server: TLS is the browser's (`wss://`), no STARTTLS.
async fn websocket_mode(
    options: &Options,
    mut reporter: Reporter,
    ready: &mut Option<oneshot::Sender<Result<String, Failure>>>,
    control: &ControlCell,
) -> Result<(), Failure> {
    let socket = open(options, Carrying::Elements, &reporter).await?;
    let give_way = socket.give_way();
    let mut config = initiator(options);
    config.framing = Framing::WebSocket;
    let machine = InitiatingEntity::new(config, BrowserRng);
    let negotiated = timed(
        options.timeout_ms,
        negotiate(socket, &mut NoTls, machine, &mut reporter),
    )
    .await
    .unwrap_or(Err(Error::Timeout))
    .map_err(|e| {
        fail(
            &reporter,
            Failure::from_core(&e, None, end_reason(&give_way)),
        )
    })?;
    serve(Session::new(negotiated), reporter, give_way, ready, control).await
}

/// The raw stream through the bridge, STARTTLS and TLS in the page.
async fn tunnel_mode(
    options: &Options,
    mut reporter: Reporter,
    tls_cell: TlsCell,
    ready: &mut Option<oneshot::Sender<Result<String, Failure>>>,
    control: &ControlCell,
) -> Result<(), Failure> {
    let reference = ReferenceIdentity::client_to_server(&options.domain)
        .map_err(|e| fail(&reporter, Failure::config(format!("jid domain: {e}"))))?;
    let policy = tls::policy(!options.anchors.is_empty(), options.trust_first_use);
    let mut pins = LocalStoragePins::open();
    pins.get(reference.domain())
        .map_err(|e| fail(&reporter, Failure::config(e)))?;
    let anchors: Vec<&[u8]> = options.anchors.iter().map(Vec::as_slice).collect();
    let mut read = vec![0u8; tls::READ_BUFFER];
    let mut write = vec![0u8; tls::WRITE_BUFFER];
    let mut accepted_once = false;
    loop {
        let socket = open(options, Carrying::Bytes, &reporter).await?;
        let give_way = socket.give_way();
        let mut upgrade = TunnelTls::new(
            &mut read,
            &mut write,
            reference.clone(),
            policy.clone(),
            &anchors,
            &mut pins,
            tls_cell.clone(),
        );
        let machine = InitiatingEntity::new(initiator(options), BrowserRng);
        let result = timed(
            options.timeout_ms,
            negotiate(socket, &mut upgrade, machine, &mut reporter),
        )
        .await
        .unwrap_or(Err(Error::Timeout));
        match result {
            Ok(negotiated) => {
                return serve(Session::new(negotiated), reporter, give_way, ready, control).await
            }
            Err(e) => {
                let tls_error = upgrade.error().cloned();
                if let Some(EmbeddedTlsError::Certificate(cert @ CertError::PinChanged(change))) =
                    &tls_error
                {
                    let wanted = match &options.accept_changed_key {
                        AcceptChangedKey::No => false,
                        AcceptChangedKey::Any => true,
                        AcceptChangedKey::Only(f) => *f == change.new_cert.to_string(),
                    };
                    if wanted && !accepted_once {
                        accept_changed_certificate(upgrade.pins_mut(), cert).map_err(|e| {
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
                let failure = Failure::from_core(&e, tls_error.as_ref(), end_reason(&give_way));
                return Err(fail(&reporter, failure));
            }
        }
    }
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

/// How a protected transport ends after the stream's closing tags (RFC 6120 §4.4).
trait Shutdown {
    async fn shutdown(self);
}

impl Shutdown for MaybeTls<Socket, Socket> {
    async fn shutdown(self) {
        if let MaybeTls::Plain(s) | MaybeTls::Tls(s) = self {
            s.close();
        }
    }
}

impl Shutdown for MaybeTls<Socket, EmbeddedTlsStream<'_, Socket, Aes128GcmSha256>> {
    async fn shutdown(self) {
        match self {
            MaybeTls::Plain(s) => s.close(),
            // close_notify, then the WebSocket.
            MaybeTls::Tls(tls) => match tls.close().await {
                Ok(s) | Err((s, _)) => s.close(),
            },
            MaybeTls::Closed => {}
        }
    }
}

/// The stanza phase: report `bound`, then read stanzas and serve the page's commands.
async fn serve<S>(
    mut session: Session<Socket, S>,
    reporter: Reporter,
    give_way: GiveWay,
    ready: &mut Option<oneshot::Sender<Result<String, Failure>>>,
    control: &ControlCell,
) -> Result<(), Failure>
where
    S: Read + Write,
    MaybeTls<Socket, S>: Shutdown,
{
    let jid = session.outcome.jid.clone().unwrap_or_default();
    reporter.event(
        "bound",
        detail(&[
            ("jid", jid.as_str().into()),
            (
                "mechanism",
                session
                    .outcome
                    .mechanism
                    .map_or(JsValue::NULL, |m| m.name().into()),
            ),
        ]),
    );
    control.borrow_mut().give_way = Some(give_way.clone());
    give_way.enable(true);
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(jid));
    }
    loop {
        match session.next_element().await {
            Ok(Some(xml)) => reporter.stanza(&xml),
            Ok(None) => {
                // The server closed the stream: answer with ours (§4.4) and end.
                give_way.enable(false);
                let transport = session.close().await;
                reporter.event("closed", detail(&[("by", "server".into())]));
                if let Ok(t) = transport {
                    t.shutdown().await;
                }
                return Err(Failure::transport("the server closed the stream"));
            }
            Err(Error::Transport(ErrorKind::Interrupted)) => {
                give_way.clear();
                loop {
                    let command = control.borrow_mut().commands.pop_front();
                    match command {
                        None => break,
                        Some(Command::Send(xml, done)) => {
                            let result = send(&mut session, &reporter, &xml, &give_way).await;
                            let broken = matches!(&result, Err(f) if f.kind == "transport");
                            let _ = done.send(result);
                            if broken {
                                return Err(fail(
                                    &reporter,
                                    Failure::transport("the connection broke while sending"),
                                ));
                            }
                        }
                        Some(Command::Close(done)) => {
                            give_way.enable(false);
                            reporter.transcript("info", "-- closing the stream --");
                            let result = session.close().await;
                            reporter.event("closed", detail(&[("by", "client".into())]));
                            match result {
                                Ok(t) => {
                                    t.shutdown().await;
                                    let _ = done.send(Ok(()));
                                }
                                Err(e) => {
                                    let _ = done.send(Err(Failure::from_core(&e, None, None)));
                                }
                            }
                            return Ok(());
                        }
                    }
                }
            }
            Err(e) => {
                let failure = Failure::from_core(&e, None, end_reason(&give_way));
                reporter.event("closed", detail(&[("by", "error".into())]));
                return Err(fail(&reporter, failure));
            }
        }
    }
}

/// Sends one element the page gave, after checking it is exactly one well-formed element
/// (anything else could end or corrupt the stream).
async fn send<S: Read + Write>(
    session: &mut Session<Socket, S>,
    reporter: &Reporter,
    xml: &str,
    give_way: &GiveWay,
) -> Result<(), Failure> {
    let xml = xml.trim();
    let checked = element::parse(xml, session.peer_header(), |node| {
        let name = node.tag_name();
        name.namespace() != Some(xmpp_handshake_core::stream::header::NS_FRAMING)
            && name.namespace() != Some(xmpp_handshake_core::stream::header::NS_STREAMS)
    });
    match checked {
        Ok(true) => {}
        Ok(false) => {
            return Err(Failure::config(
                "send() takes a stanza; use close() to end the stream",
            ))
        }
        Err(e) => {
            return Err(Failure::config(format!(
                "send() takes one well-formed XML element: {}",
                e.condition
            )))
        }
    }
    reporter.transcript("out", xml);
    session
        .send(xml)
        .await
        .map_err(|e| Failure::from_core(&e, None, end_reason(give_way)))
}

/// `future`, or `None` after `ms` milliseconds.
async fn timed<F: Future>(ms: u32, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut timer = pin!(sleep(ms));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Resolves after `ms` milliseconds (`setTimeout`).
async fn sleep(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        // Without a window (never in a page) there is no timer, and no time limit.
        if let Some(window) = web_sys::window() {
            let ms = i32::try_from(ms).unwrap_or(i32::MAX);
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
