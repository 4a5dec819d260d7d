//! The receiving role for a tokio program: a [`Listener`] accepts TCP connections, and each
//! [`Incoming`] negotiates as RFC 6120's receiving entity (STARTTLS, or Direct TLS from the
//! first byte, XEP-0368; SASL against a [`CredentialStore`]; resource binding) into a
//! [`Peer`]: the client's bound stream, its stanzas as an async [`Stream`], [`BoundStream::send`](crate::BoundStream::send)
//! and [`Peer::close`] as on a [`crate::Client`].

use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use embedded_io_adapters::tokio_1::FromTokio;
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use xmpp_handshake_core::connection::{
    Connection, ConnectionOptions, Negotiator, Stanza, Timeouts,
};
use xmpp_handshake_core::driver::{
    self, Clock as _, DialbackAuthority, MaybeTls, Observer, SessionTable, TlsUpgrade,
};
use xmpp_handshake_core::jid::Jid;
use xmpp_handshake_core::receiver::ReceiverConfig;
use xmpp_handshake_core::sasl::CredentialStore;

use crate::bound::BoundStream;
use crate::client::{bound_jid, Error};
use crate::clock::TokioClock;
use crate::direct_tls::Stream as MaybeDirect;
use crate::upgrade::RustlsServer;

/// What a [`Listener`] serves.
#[derive(Clone)]
pub struct ServerOptions<S> {
    /// The receiving entity: the hosted domains, STARTTLS offer, SASL mechanisms, limits
    /// (`ReceiverConfig::client_to_server(domain)` for a client-to-server port).
    pub receiver: ReceiverConfig,
    /// The certificates of the hosted domains (by the stream's `to`, or by SNI).
    pub tls: RustlsServer,
    /// The users' salted credentials.
    pub store: S,
    /// TLS from the first byte (a XEP-0368 port) instead of STARTTLS.
    pub direct_tls: bool,
    /// The connection's timers: the negotiation deadline bounds a client that stalls;
    /// the idle timeout (with a ping) ends streams of clients that went away.
    pub timeouts: Timeouts,
    /// Received stanzas held for the application at most (see
    /// [`crate::ClientOptions::receive_queue`]).
    pub receive_queue: usize,
}

impl<S> ServerOptions<S> {
    /// A client-to-server port for `domain` with `tls` and `store`: STARTTLS required,
    /// the core's default mechanisms, 30 s to negotiate.
    pub fn client_to_server(domain: &str, tls: RustlsServer, store: S) -> Self {
        ServerOptions {
            receiver: ReceiverConfig::client_to_server(domain),
            tls,
            store,
            direct_tls: false,
            timeouts: Timeouts::default(),
            receive_queue: 1024,
        }
    }
}

/// Accepts connections. See the module docs.
pub struct Listener<S> {
    tcp: TcpListener,
    options: Arc<ServerOptions<S>>,
}

impl<S: CredentialStore + Clone + Send + Sync + 'static> Listener<S> {
    /// Listens on `addr`.
    pub async fn bind(addr: impl ToSocketAddrs, options: ServerOptions<S>) -> io::Result<Self> {
        Ok(Listener {
            tcp: TcpListener::bind(addr).await?,
            options: Arc::new(options),
        })
    }

    /// The address it listens on (to learn a port chosen by the system).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The next connection, not negotiated yet: negotiate it in a task of its own, so that
    /// a slow client does not hold up the others.
    pub async fn accept(&self) -> io::Result<Incoming<S>> {
        let (tcp, peer) = self.tcp.accept().await?;
        tcp.set_nodelay(true)?;
        Ok(Incoming {
            tcp,
            peer,
            options: self.options.clone(),
        })
    }
}

/// An accepted connection. See [`Listener::accept`].
pub struct Incoming<S> {
    tcp: TcpStream,
    peer: SocketAddr,
    options: Arc<ServerOptions<S>>,
}

impl<S: CredentialStore + Clone + Send + Sync + 'static> Incoming<S> {
    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Negotiates the stream (bounded by the negotiation deadline) up to the bound
    /// resource.
    pub async fn negotiate(self) -> Result<Peer, Error> {
        let options = &self.options;
        let connection_options = ConnectionOptions {
            timeouts: options.timeouts,
            ..ConnectionOptions::default()
        };
        let mut tls = options.tls.clone();
        let mut receiver = options.receiver.clone();
        let (connection, transport) = if options.direct_tls {
            let name = receiver.domains.first().cloned().unwrap_or_default();
            let deadline = options.timeouts.negotiation;
            let handshake = tls.upgrade(FromTokio::new(self.tcp), &name);
            let stream = match deadline {
                Some(limit) => tokio::time::timeout(limit, handshake)
                    .await
                    .map_err(|_| Error::Xmpp(xmpp_handshake_core::Error::Timeout))?,
                None => handshake.await,
            }
            .map_err(|e| {
                Error::Xmpp(xmpp_handshake_core::Error::Tls(crate::upgrade::classify(e)))
            })?;
            let info = tls.tls_info(&stream);
            receiver.secure_transport = true;
            let connection = Connection::accept_with_tls(
                receiver,
                rand_core::OsRng,
                options.store.clone(),
                info,
                connection_options,
                TokioClock.now(),
            );
            (connection, MaybeDirect::Tls(Box::new(stream.into_inner())))
        } else {
            let connection = Connection::accept(
                receiver,
                rand_core::OsRng,
                options.store.clone(),
                connection_options,
                TokioClock.now(),
            );
            (connection, MaybeDirect::Tcp(self.tcp))
        };
        receive(
            FromTokio::new(transport),
            &mut tls,
            connection,
            &mut (),
            options.receive_queue,
        )
        .await
    }
}

/// The receiving role over a transport the caller accepted (a TCP connection, a TLS
/// stream of its own Direct TLS port, an RFC 7395 WebSocket): negotiates `connection`
/// (built with [`Connection::accept`] or [`Connection::accept_with_tls`]) up to the bound
/// resource, upgrading with `tls` on `<starttls/>` ([`NoTls`](driver::NoTls) where TLS is
/// not the stream's business), reporting to `observer` (a transcript), then runs the bound
/// stream in a task. At most `receive_queue` received stanzas wait for the application.
pub async fn receive<T, S, U, M, O>(
    transport: FromTokio<T>,
    tls: &mut U,
    connection: Connection<M>,
    observer: &mut O,
    receive_queue: usize,
) -> Result<Peer, Error>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    U: TlsUpgrade<FromTokio<T>, Stream = FromTokio<S>>,
    M: Negotiator + Send + 'static,
    O: Observer + ?Sized,
{
    receive_with_sessions(transport, tls, connection, observer, receive_queue, &mut ()).await
}

/// As [`receive`], for a server that keeps detached stream-management sessions
/// (XEP-0198 §5): a `<resume/>` in place of binding takes the session it names from
/// `sessions` ([`SessionTable::take`]); the core checks that it is the authenticated
/// account's, and gives it back ([`SessionTable::put_back`]) when it is not. The
/// [`Peer`] of a resumed session has the session's full JID, and the stanzas its client
/// had not acknowledged go out again first. Once the stream is over,
/// [`BoundStream::take_sm_state`] gives what to keep for the next resumption.
pub async fn receive_with_sessions<T, S, U, M, O, Q>(
    transport: FromTokio<T>,
    tls: &mut U,
    connection: Connection<M>,
    observer: &mut O,
    receive_queue: usize,
    sessions: &mut Q,
) -> Result<Peer, Error>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    U: TlsUpgrade<FromTokio<T>, Stream = FromTokio<S>>,
    M: Negotiator + Send + 'static,
    O: Observer + ?Sized,
    Q: SessionTable + ?Sized,
{
    receive_with_authority(
        transport,
        tls,
        connection,
        observer,
        receive_queue,
        sessions,
        &mut (),
    )
    .await
}

/// As [`receive_with_sessions`], for a server-to-server listener with Server Dialback
/// (XEP-0220): a `<db:result/>` the core admits is checked with `authority` (the
/// authoritative server of the claimed domain) before the stream counts as authenticated.
pub async fn receive_with_authority<T, S, U, M, O, Q, A>(
    transport: FromTokio<T>,
    tls: &mut U,
    mut connection: Connection<M>,
    observer: &mut O,
    receive_queue: usize,
    sessions: &mut Q,
    authority: &mut A,
) -> Result<Peer, Error>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    U: TlsUpgrade<FromTokio<T>, Stream = FromTokio<S>>,
    M: Negotiator + Send + 'static,
    O: Observer + ?Sized,
    Q: SessionTable + ?Sized,
    A: DialbackAuthority + ?Sized,
{
    let mut io = MaybeTls::Plain(transport);
    let outcome = driver::negotiate_with_authority(
        &mut io,
        tls,
        &mut connection,
        observer,
        &TokioClock,
        sessions,
        authority,
    )
    .await?;
    let jid = bound_jid(&outcome)?;
    let stream = BoundStream::spawn(io, connection, outcome, receive_queue)?;
    Ok(Peer { jid, stream })
}

/// A client's bound stream on the server side. What the stream does (send, receive,
/// close) is its [`BoundStream`]'s, reached through `Deref`.
pub struct Peer {
    jid: Jid,
    stream: BoundStream,
}

impl Peer {
    /// The client's full JID, as bound (§7.6.1).
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// Closes the stream (§4.4) and waits for the client's closing tag (or the close
    /// timeout).
    pub async fn close(self) -> Result<(), Error> {
        self.stream.close().await
    }
}

impl Deref for Peer {
    type Target = BoundStream;

    fn deref(&self) -> &BoundStream {
        &self.stream
    }
}

impl DerefMut for Peer {
    fn deref_mut(&mut self) -> &mut BoundStream {
        &mut self.stream
    }
}

impl Stream for Peer {
    type Item = Stanza;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Stanza>> {
        Pin::new(&mut self.stream).poll_next(cx)
    }
}
