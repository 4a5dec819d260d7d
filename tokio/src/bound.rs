//! A bound stream run by a task: the core's [`Connection`] driven with [`driver::run`] over
//! a tokio socket split in two halves. [`crate::Client`] and [`crate::server::Peer`] are
//! this handle with what their negotiation learned.

use std::task::{Context, Poll};

use embedded_io_adapters::tokio_1::FromTokio;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use xmpp_handshake_core::connection::{Closed, Connection, Negotiator, SendError, Stanza};
use xmpp_handshake_core::driver::{self, Command, Commands, Deliver, MaybeTls};

use crate::client::Error;
use crate::clock::TokioClock;

/// A socket tokio can split in two halves.
trait Socket: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Socket for T {}

/// The application's side of a bound stream.
pub(crate) struct BoundStream {
    commands: mpsc::Sender<Command>,
    stanzas: mpsc::Receiver<Stanza>,
    ended: Option<oneshot::Receiver<Closed>>,
}

impl BoundStream {
    /// Runs the bound stream of `connection` over `io` (plain or TLS) in a task; at most
    /// `receive_queue` received stanzas wait for the application.
    pub(crate) fn spawn<T, S, M>(
        io: MaybeTls<FromTokio<T>, FromTokio<S>>,
        mut connection: Connection<M>,
        receive_queue: usize,
    ) -> Result<Self, Error>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        M: Negotiator + Send + 'static,
    {
        let socket: Box<dyn Socket> = match io {
            MaybeTls::Plain(t) => Box::new(t.into_inner()),
            MaybeTls::Tls(s) => Box::new(s.into_inner()),
            MaybeTls::Closed => return Err(Error::Closed),
        };
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let (stanzas_tx, stanzas_rx) = mpsc::channel(receive_queue.max(1));
        let (ended_tx, ended_rx) = oneshot::channel();
        tokio::spawn(async move {
            let (read, write) = tokio::io::split(socket);
            let mut reader = FromTokio::new(read);
            let mut writer = FromTokio::new(write);
            let mut commands = Queue(commands_rx);
            let mut deliver = ToApplication {
                tx: stanzas_tx,
                full: false,
            };
            let mut buf = vec![0; 16 * 1024];
            let closed = driver::run(
                &mut reader,
                &mut writer,
                &mut connection,
                &mut commands,
                &mut deliver,
                &mut (),
                &TokioClock,
                &mut buf,
            )
            .await;
            // End TLS (close_notify) and the TCP connection.
            let _ = writer.inner_mut().shutdown().await;
            let _ = ended_tx.send(closed);
        });
        Ok(BoundStream {
            commands: commands_tx,
            stanzas: stanzas_rx,
            ended: Some(ended_rx),
        })
    }

    pub(crate) async fn send(&self, stanza: &str) -> Result<(), Error> {
        self.commands
            .send(Command::Send(stanza.to_string()))
            .await
            .map_err(|_| Error::Closed)
    }

    pub(crate) async fn close(mut self) -> Result<(), Error> {
        let _ = self.commands.send(Command::Close).await;
        self.stanzas.close();
        match self.ended.take() {
            Some(ended) => match ended.await {
                Ok(Closed::ByUs | Closed::ByPeer) => Ok(()),
                Ok(Closed::Failed(e)) => Err(Error::Xmpp(e)),
                Err(_) => Err(Error::Closed),
            },
            None => Err(Error::Closed),
        }
    }

    pub(crate) async fn ended(&mut self) -> Option<Closed> {
        self.ended.take()?.await.ok()
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Stanza>> {
        self.stanzas.poll_recv(cx)
    }
}

/// The application's commands.
struct Queue(mpsc::Receiver<Command>);

impl Commands for Queue {
    async fn next(&mut self) -> Option<Command> {
        self.0.recv().await
    }
}

/// Received stanzas, to the application: a bounded queue.
struct ToApplication {
    tx: mpsc::Sender<Stanza>,
    full: bool,
}

impl Deliver for ToApplication {
    fn stanza(&mut self, stanza: Stanza) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(stanza) {
            self.full = true;
        }
    }

    fn refused(&mut self, _stanza: String, error: SendError) {
        log::warn!("a stanza was not sent: {error}");
    }

    fn backlog_full(&self) -> bool {
        self.full
    }
}
