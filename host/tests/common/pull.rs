//! A negotiated stream that a test drives by pulling, one end after the other in one task:
//! the core's [`Connection`] over any TLS backend (rustls or embedded-tls), without the
//! library's task. Every rule and timer is the connection's; this only moves bytes.

use embedded_io_async::{Read, Write};
use xmpp_handshake_core::connection::{Closed, Connection, Event, Negotiator, Outcome};
use xmpp_handshake_core::driver::{self, Clock as _, MaybeTls, Observer, TlsUpgrade};
use xmpp_handshake_core::Error;
use xmpp_handshake_host::clock::TokioClock;

/// See the module docs.
pub struct Negotiated<T, S, M> {
    io: MaybeTls<T, S>,
    connection: Connection<M>,
    /// How the negotiation ended.
    pub outcome: Outcome,
}

/// Negotiates `connection` over `transport` ([`driver::negotiate`]).
pub async fn negotiate<T, U, M, O>(
    transport: T,
    tls: &mut U,
    mut connection: Connection<M>,
    observer: &mut O,
) -> Result<Negotiated<T, U::Stream, M>, Error>
where
    T: Read + Write,
    U: TlsUpgrade<T>,
    M: Negotiator,
    O: Observer + ?Sized,
{
    let mut io = MaybeTls::Plain(transport);
    let outcome = driver::negotiate(&mut io, tls, &mut connection, observer, &TokioClock).await?;
    Ok(Negotiated {
        io,
        connection,
        outcome,
    })
}

impl<T: Read + Write, S: Read + Write, M: Negotiator> Negotiated<T, S, M> {
    async fn flush(&mut self) -> Result<(), Error> {
        while let Some(unit) = self.connection.poll_transmit() {
            self.io
                .write_all(unit.as_bytes())
                .await
                .map_err(|e| Error::Transport(e.0))?;
        }
        self.io.flush().await.map_err(|e| Error::Transport(e.0))
    }

    /// Sends one stanza.
    pub async fn send(&mut self, element: &str) -> Result<(), Error> {
        self.connection
            .send_stanza(element, TokioClock.now())
            .map_err(|_| Error::ConnectionClosed)?;
        self.flush().await
    }

    /// The next element's text; `None` once the stream closed cleanly (§4.4).
    pub async fn next_element(&mut self) -> Result<Option<String>, Error> {
        self.next_element_with(|raw, _| raw.to_string()).await
    }

    /// As [`Negotiated::next_element`], with `f` given the raw text and the parse.
    pub async fn next_element_with<R>(
        &mut self,
        f: impl FnOnce(&str, roxmltree::Node<'_, '_>) -> R,
    ) -> Result<Option<R>, Error> {
        loop {
            self.flush().await?;
            match self.connection.poll_event() {
                Some(Event::Stanza(stanza)) => {
                    let raw = stanza.raw().to_string();
                    return Ok(stanza.parse(|node| f(&raw, node)));
                }
                Some(Event::Closed(Closed::ByPeer | Closed::ByUs)) => return Ok(None),
                Some(Event::Closed(Closed::Failed(e))) => return Err(e),
                Some(_) => continue,
                None if self.connection.is_closed() => return Ok(None),
                None => {}
            }
            let deadline = self.connection.poll_timeout();
            let buf = self.connection.receive_buffer();
            let read = self.io.read(buf);
            let now = match deadline {
                Some(at) => {
                    let wait = at.saturating_sub(TokioClock.now());
                    tokio::time::timeout(wait, read).await.ok()
                }
                None => Some(read.await),
            };
            match now {
                Some(Ok(0)) => self.connection.handle_eof(None),
                Some(Ok(n)) => self.connection.handle_received(n, TokioClock.now()),
                Some(Err(e)) => self.connection.handle_eof(Some(Error::Transport(e.0))),
                None => self.connection.handle_timeout(TokioClock.now()),
            }
        }
    }

    /// Closes (§4.4): our closing tag, then reads until the peer's; returns the transport.
    pub async fn close(mut self) -> Result<MaybeTls<T, S>, Error> {
        self.connection.close(TokioClock.now());
        loop {
            match self.next_element().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(self.io),
                Err(e) => return Err(e),
            }
        }
    }
}
