//! The server side of TLS 1.3 early data (0-RTT, RFC 8446 §2.3) on a Direct TLS port
//! (XEP-0368), for FAST logins in one round trip after the TCP connect (XEP-0484 §3.4).
//!
//! tokio-rustls's acceptor neither hands early data over nor lets the server answer it
//! before the handshake is done, so [`EarlyDataStream`] drives a
//! [`rustls::ServerConnection`] itself:
//!
//! 1. [`EarlyDataStream::accept`] reads until the ClientHello (with any early data behind
//!    it) is processed;
//! 2. [`EarlyDataStream::answer_early_data`] gives the early data to the core's
//!    [`Connection`] as such ([`Connection::handle_early_data`]: only the stream header and
//!    a FAST `<authenticate/>` with a fresh `count` are admitted there) and sends what it
//!    answers (header, features, the SASL2 `<success/>` with Bind 2) as half-RTT data,
//!    in the server's first flight, until the client's Finished completes the handshake;
//!    [`EarlyDataStream::finish_handshake`] does the same without early data;
//! 3. then it is an ordinary async stream of the plaintext.
//!
//! The configuration must keep rustls's stateful session cache, its default (rustls then
//! takes every ticket once, so a replayed ClientHello finds none; with a ticketer it
//! accepts no early data), and bound early data with
//! [`rustls::ServerConfig::max_early_data_size`], which [`server_config`] sets.

use std::io::{self, Read as _, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use xmpp_handshake_core::connection::{Connection, Negotiator};
use xmpp_handshake_core::driver::{self, Clock as _, Observer, SessionTable};

use crate::clock::TokioClock;

/// Early data a connection may carry at most: a stream header and a FAST
/// `<authenticate/>` with Bind 2 and a user agent take well under 2 KiB.
pub const MAX_EARLY_DATA: u32 = 8192;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// `template` (with its certificate resolver and ALPN) accepting early data: at most
/// [`MAX_EARLY_DATA`] bytes, answered in the first flight (`send_half_rtt_data`). Tickets
/// stay stateful (rustls accepts early data only then), so each is used once.
pub fn server_config(mut template: rustls::ServerConfig) -> rustls::ServerConfig {
    template.max_early_data_size = MAX_EARLY_DATA;
    template.send_half_rtt_data = true;
    template
}

/// A server TLS connection over TCP that reads and answers early data. See the module
/// docs.
pub struct EarlyDataStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// TLS records waiting for the socket.
    out: Vec<u8>,
    read_buf: Box<[u8]>,
}

impl EarlyDataStream {
    /// Reads the client's first flight over `tcp` until the ClientHello is processed (the
    /// server's flight is then ready). The caller bounds it in time.
    pub async fn accept(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut stream = EarlyDataStream {
            tcp,
            tls,
            out: Vec::new(),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
        };
        while stream.tls.is_handshaking() && !stream.tls.wants_write() {
            stream.read_records().await?;
        }
        Ok(stream)
    }

    /// The TLS connection (its negotiated version, SNI, certificates).
    pub fn connection(&self) -> &ServerConnection {
        &self.tls
    }

    /// Whether the client sent early data and it was accepted (a resumed TLS 1.3 session
    /// whose ticket allowed it).
    pub fn early_data_accepted(&mut self) -> bool {
        self.tls.early_data().is_some()
    }

    /// Hands the early data to `connection` as it arrives and sends what it answers as
    /// half-RTT data, until the handshake is done; `observer` (a transcript) sees both. An
    /// inline `<resume/>` (XEP-0198 with SASL2) is answered from `sessions` at once, so
    /// that its `<success/>` goes in the same flight. A connection that closed (a refusal)
    /// ends it early: its stream error has gone out.
    pub async fn answer_early_data<M, O, S>(
        &mut self,
        connection: &mut Connection<M>,
        observer: &mut O,
        sessions: &mut S,
    ) -> io::Result<()>
    where
        M: Negotiator,
        O: Observer + ?Sized,
        S: SessionTable + ?Sized,
    {
        loop {
            let mut early = Vec::new();
            if let Some(mut data) = self.tls.early_data() {
                data.read_to_end(&mut early)?;
            }
            if !early.is_empty() {
                observer.received(&early);
                connection.handle_early_data(&early, TokioClock.now());
            }
            if let Some((previd, account)) = connection.take_resume_request() {
                driver::answer_resume(
                    connection,
                    sessions,
                    &previd,
                    account.as_deref(),
                    &TokioClock,
                )
                .await;
            }
            while let Some(unit) = connection.poll_transmit() {
                observer.sent(unit.as_bytes());
                self.tls.writer().write_all(unit.as_bytes())?;
            }
            self.write_records().await?;
            if !self.tls.is_handshaking() || connection.is_closed() {
                return Ok(());
            }
            self.read_records().await?;
        }
    }

    /// Completes the handshake (no early data to answer).
    pub async fn finish_handshake(&mut self) -> io::Result<()> {
        loop {
            self.write_records().await?;
            if !self.tls.is_handshaking() {
                return Ok(());
            }
            self.read_records().await?;
        }
    }

    /// Reads from the socket into rustls and processes what came; an alert for a TLS
    /// error goes out before the error is returned.
    async fn read_records(&mut self) -> io::Result<()> {
        let n = self.tcp.read(&mut self.read_buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut input = self.read_buf.get(..n).unwrap_or_default();
        while !input.is_empty() {
            self.tls.read_tls(&mut input)?;
            if let Err(e) = self.tls.process_new_packets() {
                let _ = self.write_records().await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        Ok(())
    }

    async fn write_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.out)?;
        }
        self.tcp.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Writes pending TLS records to the socket.
    fn poll_write_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.out)?;
        }
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for EarlyDataStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.tls.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let mut read = ReadBuf::new(&mut this.read_buf);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut read))?;
            let mut input = read.filled();
            if input.is_empty() {
                // The peer closed without close_notify: end of stream all the same.
                return Poll::Ready(Ok(()));
            }
            while !input.is_empty() {
                this.tls.read_tls(&mut input)?;
                if let Err(e) = this.tls.process_new_packets() {
                    let _ = this.poll_write_records(cx);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
            }
            // Tickets, a KeyUpdate answer: out as soon as possible, never waited for.
            let _ = this.poll_write_records(cx);
        }
    }
}

impl AsyncWrite for EarlyDataStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_write_records(cx))?;
        let n = this.tls.writer().write(buf)?;
        let _ = this.poll_write_records(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_records(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tls.send_close_notify();
        ready!(this.poll_write_records(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
