//! A TCP transport whose reads give way to the app's timer, without ever losing a byte.
//!
//! The app waits for the next element and, at the same time, for its next periodic reading.
//! Dropping a pending read is not safe above TCP: embedded-tls reads a record header into a
//! local buffer, so a read cancelled mid-record loses bytes and breaks the stream. Here the
//! race happens *below* TLS, and only between records: [`Interruptible`] follows the TLS
//! record framing of what it delivers (the core's `RecordBoundary`), and while no
//! record is partly read it lets the deadline win with [`ErrorKind::TimedOut`]. That error
//! passes through embedded-tls (`TlsError::Io`) and the core's session (`Error::Transport`)
//! with nothing consumed, and the next read continues where this one stopped.
//!
//! The inner transport's `read` must itself be cancel-safe (embassy-net's `TcpSocket` is).

use core::cell::Cell;

use embassy_futures::select::{select, Either};
use embassy_time::{Instant, Timer};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use xmpp_handshake_core::connection::TlsInfo;
use xmpp_handshake_core::driver::{TlsUpgrade, TransportError};
use xmpp_handshake_core::tls_records::RecordBoundary;

/// When reads should give way; `None`: never (during the negotiation).
pub type Deadline = Cell<Option<Instant>>;

/// See the module docs.
pub struct Interruptible<'d, T> {
    inner: T,
    deadline: &'d Deadline,
    /// `Some` once TLS started: reads give way only at record boundaries.
    records: Option<RecordBoundary>,
}

impl<'d, T> Interruptible<'d, T> {
    /// Wraps `inner`; reads give way when `deadline` holds a passed instant.
    pub fn new(inner: T, deadline: &'d Deadline) -> Self {
        Interruptible {
            inner,
            deadline,
            records: None,
        }
    }

    /// From now on the bytes are TLS records.
    pub fn tls_started(&mut self) {
        self.records = Some(RecordBoundary::default());
    }
}

fn kind<E: embedded_io_async::Error>(e: E) -> TransportError {
    TransportError(e.kind())
}

impl<T: ErrorType> ErrorType for Interruptible<'_, T> {
    type Error = TransportError;
}

impl<T: Read> Read for Interruptible<'_, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let may_yield = self
            .records
            .as_ref()
            .is_none_or(RecordBoundary::at_boundary);
        let n = match (self.deadline.get(), may_yield) {
            (Some(at), true) => match select(self.inner.read(buf), Timer::at(at)).await {
                Either::First(r) => r.map_err(kind)?,
                Either::Second(()) => return Err(TransportError(ErrorKind::TimedOut)),
            },
            _ => self.inner.read(buf).await.map_err(kind)?,
        };
        if let Some(records) = &mut self.records {
            records.consume(&buf[..n]);
        }
        Ok(n)
    }
}

impl<T: Write> Write for Interruptible<'_, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.inner.write(buf).await.map_err(kind)
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await.map_err(kind)
    }
}

/// Wraps a [`TlsUpgrade`] so the transport learns that TLS started.
pub struct Tracking<U>(pub U);

impl<'d, T, U> TlsUpgrade<Interruptible<'d, T>> for Tracking<U>
where
    T: Read + Write,
    U: TlsUpgrade<Interruptible<'d, T>>,
{
    type Stream = U::Stream;
    type Error = U::Error;

    async fn upgrade(
        &mut self,
        mut transport: Interruptible<'d, T>,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error> {
        transport.tls_started();
        self.0.upgrade(transport, server_name).await
    }

    fn describe(error: &Self::Error) -> alloc::string::String {
        U::describe(error)
    }

    fn tls_info(&self, stream: &Self::Stream) -> TlsInfo {
        self.0.tls_info(stream)
    }
}
