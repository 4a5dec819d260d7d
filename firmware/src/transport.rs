//! A TCP transport whose reads give way to the app's timer, without ever losing a byte.
//!
//! The app waits for the next element and, at the same time, for its next periodic reading.
//! Dropping a pending read is not safe above TCP: embedded-tls reads a record header into a
//! local buffer, so a read cancelled mid-record loses bytes and breaks the stream. Here the
//! race happens *below* TLS, and only between records: [`Interruptible`] follows the TLS
//! record framing of what it delivers (5-byte header, then `length` bytes), and while no
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

/// When reads should give way; `None`: never (during the negotiation).
pub type Deadline = Cell<Option<Instant>>;

/// Where the reader is in the TLS record framing.
#[derive(Debug, Default, Clone, Copy)]
struct Records {
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
}

impl Records {
    fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }

    fn consume(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
            } else {
                self.header[self.header_len] = data[0];
                self.header_len += 1;
                data = &data[1..];
                if self.header_len == 5 {
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    self.header_len = 0;
                }
            }
        }
    }
}

/// See the module docs.
pub struct Interruptible<'d, T> {
    inner: T,
    deadline: &'d Deadline,
    /// `Some` once TLS started: reads give way only at record boundaries.
    records: Option<Records>,
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
        self.records = Some(Records::default());
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
        let may_yield = self.records.as_ref().is_none_or(Records::at_boundary);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_record_framing_across_split_reads() {
        let mut r = Records::default();
        assert!(r.at_boundary());
        r.consume(&[23, 3, 3]);
        assert!(!r.at_boundary());
        r.consume(&[0, 4, 1, 2]);
        assert!(!r.at_boundary());
        r.consume(&[3, 4, 23, 3, 3, 0, 0]);
        assert!(r.at_boundary(), "an empty record ends at its header");
        r.consume(&[23, 3, 3, 0, 1, 9]);
        assert!(r.at_boundary());
    }
}
