//! The package without the `tunnel` feature: RFC 7395 only, TLS is the browser's
//! (`wss://`), so the page carries no TLS code. The same names as `tls.rs` (which the
//! `tunnel` feature compiles instead), so that the session reads the same in both.

use xmpp_handshake_core::driver::{MaybeTls, NoTls};

use crate::websocket::Socket;

/// The TLS upgrade of an RFC 7395 stream: none. The core never sends `<starttls/>` on such
/// a stream (RFC 7395 §3.10: TLS belongs to the WebSocket, `wss://`; a server's offer is
/// ignored).
pub type Upgrade<'a> = NoTls;

/// The upgrade of an RFC 7395 stream.
pub fn no_tls<'a>() -> Upgrade<'a> {
    NoTls
}

/// The reading half of a bound stream: the socket itself.
pub type Reader<'s> = Socket;

/// The writing half of a bound stream: the socket itself.
pub type Writer<'s> = Socket;

/// The halves the core's `driver::run` reads and writes at the same time.
pub fn split<'s>(
    _io: &'s mut MaybeTls<Socket, Socket>,
    socket: &Socket,
) -> (Reader<'s>, Writer<'s>) {
    (socket.clone(), socket.clone())
}
