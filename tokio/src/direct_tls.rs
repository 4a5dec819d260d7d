//! Direct TLS (XEP-0368): TLS from the first byte on a port of its own, ALPN
//! `xmpp-client`, then the XMPP stream exactly as on a STARTTLS-protected connection
//! (no `<starttls/>`; RFC 6120 §5.4.3.3 from the first header on).
//!
//! [`Stream`] lets one session type carry either a TCP connection that may later be
//! upgraded (STARTTLS) or one that was TLS from the start.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The ALPN protocol id of client-to-server XMPP over Direct TLS (XEP-0368 §3).
pub const ALPN_CLIENT: &[u8] = b"xmpp-client";

/// The port used when the user asks for Direct TLS and neither DNS nor `--port` names one
/// (the customary `xmpps-client` port; XEP-0368 itself relies on SRV).
pub const DEFAULT_PORT: u16 = 5223;

/// A TCP connection, or TLS (`S`) over one from its first byte.
#[derive(Debug)]
pub enum Stream<S> {
    /// Plain TCP (STARTTLS may follow).
    Tcp(TcpStream),
    /// Direct TLS.
    Tls(Box<S>),
}

impl<S: AsyncRead + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
