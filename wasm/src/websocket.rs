//! The browser's WebSocket as an `embedded-io-async` transport for the core's driver.
//!
//! * [`Carrying::Elements`] (RFC 7395): the `xmpp` subprotocol, text messages, one
//!   top-level element (or `<open/>`/`<close/>`) per message (§3.3.3). The core hands out
//!   one such unit per write (its `poll_transmit`), so each write is sent as one message;
//!   incoming messages are handed to the core's framer, which checks each element.
//! * `Carrying::Bytes` (tunnel, with the `tunnel` feature): binary messages carrying raw TCP bytes both ways, to a
//!   WebSocket-to-TCP bridge; the XMPP stream (and, after STARTTLS, TLS records) inside.
//!
//! A [`Socket`] is a handle: clones share the one WebSocket, so a reader and a writer (the
//! halves the core's `driver::run` and embedded-tls's split take) work on it at once.
//!
//! The browser pushes messages whenever they arrive and cannot be paused, so the receive
//! queue is bounded ([`MAX_QUEUED_BYTES`]): a peer that sends more than the page has
//! processed ends the connection with an error instead of growing memory without limit.
//! The send side is bounded too ([`MAX_UNSENT_BYTES`], what the browser holds unsent).

use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Poll, Waker};
use std::collections::VecDeque;
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;

use embedded_io::{ErrorKind, ErrorType};
use embedded_io_async::{Read, Write};
use js_sys::JsString;
#[cfg(feature = "tunnel")]
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

/// Most bytes received and not yet read before the connection is failed.
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// Most bytes the browser may hold unsent before writes fail (a peer that stopped reading).
pub const MAX_UNSENT_BYTES: u32 = 1024 * 1024;
/// RFC 7395 §3.1: the WebSocket subprotocol of XMPP.
pub const SUBPROTOCOL: &str = "xmpp";

/// What the WebSocket messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrying {
    /// RFC 7395: one XML element per text message, one message per write.
    Elements,
    /// A tunnel: raw stream bytes in binary messages.
    #[cfg(feature = "tunnel")]
    Bytes,
}

/// Where the WebSocket is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
    /// The close event arrived.
    Closed {
        code: u16,
        reason: String,
        clean: bool,
    },
    /// We failed the connection (and closed the WebSocket).
    Failed(String),
}

/// What the event handlers and the reader share.
struct Inbox {
    messages: VecDeque<Vec<u8>>,
    /// Bytes of the front message already read.
    offset: usize,
    queued: usize,
    state: State,
    waker: Option<Waker>,
}

impl Inbox {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// We fail the connection: nothing more is read, the reason is kept for the error.
    fn fail(&mut self, why: String) {
        self.state = State::Failed(why);
        self.messages.clear();
        self.offset = 0;
        self.queued = 0;
        self.wake();
    }
}

/// Why a WebSocket could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError(pub String);

/// The event handlers; kept alive as long as the socket, detached on drop.
struct Handlers {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
    _error: Closure<dyn FnMut(Event)>,
}

/// A WebSocket as a transport: a handle, clones share it; the WebSocket is closed (normal
/// closure) when the last one is dropped. See the module docs.
#[derive(Clone)]
pub struct Socket(Rc<Shared>);

/// What the clones of a [`Socket`] share.
struct Shared {
    ws: WebSocket,
    carrying: Carrying,
    inbox: Rc<RefCell<Inbox>>,
    _handlers: Handlers,
}

impl Socket {
    /// Opens a WebSocket to `url` and waits until it is open. RFC 7395 sockets ask for the
    /// `xmpp` subprotocol and fail unless the server agreed to it (§3.3.1).
    pub async fn open(url: &str, carrying: Carrying) -> Result<Socket, OpenError> {
        let ws = match carrying {
            Carrying::Elements => WebSocket::new_with_str(url, SUBPROTOCOL),
            #[cfg(feature = "tunnel")]
            Carrying::Bytes => WebSocket::new(url),
        }
        .map_err(|e| {
            OpenError(format!(
                "cannot open a WebSocket to {url}: {}",
                describe(&e)
            ))
        })?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let inbox = Rc::new(RefCell::new(Inbox {
            messages: VecDeque::new(),
            offset: 0,
            queued: 0,
            state: State::Connecting,
            waker: None,
        }));
        let handlers = attach(&ws, carrying, &inbox);
        let socket = Socket(Rc::new(Shared {
            ws,
            carrying,
            inbox,
            _handlers: handlers,
        }));
        poll_fn(|cx| {
            let mut inbox = socket.0.inbox.borrow_mut();
            match &inbox.state {
                State::Connecting => {
                    inbox.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                State::Open => Poll::Ready(Ok(())),
                State::Closed { code, reason, .. } => Poll::Ready(Err(OpenError(format!(
                    "the WebSocket to {url} did not open (close code {code}{}{reason})",
                    if reason.is_empty() { "" } else { ": " }
                )))),
                State::Failed(why) => Poll::Ready(Err(OpenError(why.clone()))),
            }
        })
        .await?;
        if carrying == Carrying::Elements && socket.0.ws.protocol() != SUBPROTOCOL {
            return Err(OpenError(format!(
                "the server at {url} did not accept the '{SUBPROTOCOL}' WebSocket subprotocol \
                 (RFC 7395 §3.3.1): it is not an XMPP WebSocket endpoint"
            )));
        }
        Ok(socket)
    }

    /// A human description of why reads ended, for error messages; `None` while open.
    pub fn end_reason(&self) -> Option<String> {
        match &self.0.inbox.borrow().state {
            State::Closed { code, reason, .. } => Some(format!(
                "the WebSocket closed (code {code}{}{reason})",
                if reason.is_empty() { "" } else { ": " }
            )),
            State::Failed(why) => Some(why.clone()),
            State::Connecting | State::Open => None,
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

/// Installs the event handlers that feed `inbox`.
fn attach(ws: &WebSocket, carrying: Carrying, inbox: &Rc<RefCell<Inbox>>) -> Handlers {
    let on_open = {
        let inbox = inbox.clone();
        Closure::<dyn FnMut(Event)>::new(move |_| {
            let mut inbox = inbox.borrow_mut();
            if inbox.state == State::Connecting {
                inbox.state = State::Open;
            }
            inbox.wake();
        })
    };
    let on_message = {
        let inbox = inbox.clone();
        let ws = ws.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let mut inbox = inbox.borrow_mut();
            if inbox.state != State::Open {
                return;
            }
            let data = event.data();
            let bytes = match carrying {
                Carrying::Elements => data.dyn_ref::<JsString>().map(|s| {
                    let s: String = s.into();
                    s.into_bytes()
                }),
                #[cfg(feature = "tunnel")]
                Carrying::Bytes => data
                    .dyn_ref::<ArrayBuffer>()
                    .map(|b| Uint8Array::new(b).to_vec()),
            };
            let failure = match bytes {
                None => Some(match carrying {
                    Carrying::Elements => "a binary WebSocket message on an RFC 7395 stream \
                                           (§3.3.3: text messages only)"
                        .into(),
                    #[cfg(feature = "tunnel")]
                    Carrying::Bytes => "a text WebSocket message from the bridge (it sends \
                                        the stream's bytes as binary messages)"
                        .into(),
                }),
                Some(bytes) if inbox.queued + bytes.len() > MAX_QUEUED_BYTES => Some(format!(
                    "more than {MAX_QUEUED_BYTES} bytes received and not yet processed"
                )),
                Some(bytes) => {
                    inbox.queued += bytes.len();
                    if !bytes.is_empty() {
                        inbox.messages.push_back(bytes);
                    }
                    None
                }
            };
            if let Some(why) = failure {
                inbox.fail(why);
                let _ = ws.close();
            }
            inbox.wake();
        })
    };
    let on_close = {
        let inbox = inbox.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            let mut inbox = inbox.borrow_mut();
            if !matches!(inbox.state, State::Failed(_)) {
                inbox.state = State::Closed {
                    code: event.code(),
                    reason: event.reason(),
                    clean: event.was_clean(),
                };
            }
            inbox.wake();
        })
    };
    // An error event is always followed by a close event (code 1006), which ends reads.
    let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {});
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    Handlers {
        _open: on_open,
        _message: on_message,
        _close: on_close,
        _error: on_error,
    }
}

/// The text of a JS exception.
pub fn describe(e: &wasm_bindgen::JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

impl ErrorType for Socket {
    type Error = ErrorKind;
}

impl Read for Socket {
    /// At most the rest of one message: an RFC 7395 message is never joined to the next.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            let mut inbox = self.0.inbox.borrow_mut();
            let inbox = &mut *inbox;
            if let Some(front) = inbox.messages.front() {
                let rest = &front[inbox.offset..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                inbox.offset += n;
                inbox.queued -= n;
                if inbox.offset == front.len() {
                    inbox.messages.pop_front();
                    inbox.offset = 0;
                }
                return Poll::Ready(Ok(n));
            }
            match &inbox.state {
                State::Closed { clean: true, .. } => Poll::Ready(Ok(0)),
                State::Closed { .. } => Poll::Ready(Err(ErrorKind::ConnectionReset)),
                State::Failed(_) => Poll::Ready(Err(ErrorKind::OutOfMemory)),
                State::Connecting | State::Open => {
                    inbox.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Write for Socket {
    /// One message per write: on an RFC 7395 socket `buf` is one unit of the core (a
    /// header, one element, a closing tag), sent as one text message.
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let ws = &self.0.ws;
        if ws.ready_state() != WebSocket::OPEN {
            return Err(ErrorKind::NotConnected);
        }
        if ws.buffered_amount() > MAX_UNSENT_BYTES {
            // The peer stopped reading: fail the connection rather than buffer without end.
            self.0
                .inbox
                .borrow_mut()
                .fail("1 MiB unsent: the peer is not reading".into());
            let _ = ws.close();
            return Err(ErrorKind::OutOfMemory);
        }
        let sent = match self.0.carrying {
            #[cfg(feature = "tunnel")]
            Carrying::Bytes => ws.send_with_u8_array(buf),
            Carrying::Elements => {
                let text = core::str::from_utf8(buf).map_err(|_| ErrorKind::InvalidData)?;
                ws.send_with_str(text)
            }
        };
        sent.map_err(|_| ErrorKind::BrokenPipe)?;
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}
