//! The TCP socket as the core driver's transport: a handle that copies, so that the TLS
//! stream can be split into the reader and the writer `driver::run` needs (embedded-tls's
//! split hands its transport to both halves; an embassy-net `TcpSocket` does not clone).
//!
//! The handle reads through the socket's read half and writes through its write half, each
//! in a `RefCell` of its own: the TLS reader only reads and the TLS writer only writes, so
//! each cell has one user at a time, and a read stays pending while the writer sends.

use core::cell::RefCell;

use embassy_net::tcp::{Error, TcpReader, TcpWriter};
use embedded_io_async::{ErrorType, Read, Write};

/// One TCP connection's halves, shared by the copies of a [`Duplex`].
pub struct Halves<'s> {
    reader: RefCell<TcpReader<'s>>,
    writer: RefCell<TcpWriter<'s>>,
}

impl<'s> Halves<'s> {
    /// The halves of `TcpSocket::split`.
    pub fn new((reader, writer): (TcpReader<'s>, TcpWriter<'s>)) -> Self {
        Halves {
            reader: RefCell::new(reader),
            writer: RefCell::new(writer),
        }
    }

    /// A handle on them.
    pub fn duplex(&self) -> Duplex<'_, 's> {
        Duplex { halves: self }
    }
}

/// See the module docs.
#[derive(Clone, Copy)]
pub struct Duplex<'h, 's> {
    halves: &'h Halves<'s>,
}

impl ErrorType for Duplex<'_, '_> {
    type Error = Error;
}

// Each borrow lasts for one read or write: one reader and one writer at a time (see the
// module docs); a second one at once would be a bug in the TLS layer, and panics.
#[allow(clippy::await_holding_refcell_ref)]
impl Read for Duplex<'_, '_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.halves.reader.borrow_mut().read(buf).await
    }
}

#[allow(clippy::await_holding_refcell_ref)]
impl Write for Duplex<'_, '_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.halves.writer.borrow_mut().write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.halves.writer.borrow_mut().flush().await
    }
}
