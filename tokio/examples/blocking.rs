//! No async runtime: a blocking `std` client that drives the core's sans-IO connection by
//! hand over a `TcpStream` and rustls. It logs in (STARTTLS, SCRAM, bind), sends one
//! message to itself, prints it when it comes back, and closes the stream (RFC 6120 §4.4).
//!
//! ```sh
//! XMPP_JID=juliet@example.com XMPP_PASSWORD=secret XMPP_HOST=127.0.0.1 XMPP_CA=ca.pem \
//!     cargo run -p xmpp-handshake-tokio --example blocking
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xmpp_handshake_tokio::core::connection::{
    Closed, Connection, ConnectionOptions, Event, TlsInfo,
};
use xmpp_handshake_tokio::core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_tokio::core::jid::Jid;
use xmpp_handshake_tokio::core::sasl::ChannelBindingData;
use xmpp_handshake_tokio::core::stanza;
use xmpp_handshake_tokio::core::trust::{CertificatePolicy, NoPins, ReferenceIdentity};
use xmpp_handshake_tokio::tls::verify::{client_config, roots_from_pem, XmppServerVerifier};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let jid = Jid::parse(&std::env::var("XMPP_JID")?)?.require_local()?;
    let password = std::env::var("XMPP_PASSWORD")?;
    let host = std::env::var("XMPP_HOST").unwrap_or_else(|_| jid.domain().to_string());
    let port: u16 = std::env::var("XMPP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5222);
    let ca = std::fs::read(std::env::var("XMPP_CA")?)?;

    // rustls with the XMPP certificate policy: PKIX to the CA, the JID's domain as the
    // reference identity (RFC 6120 §13.7.2).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(XmppServerVerifier::new(
        ReferenceIdentity::client_to_server(jid.domain())?,
        CertificatePolicy::anchors(),
        Some(Arc::new(roots_from_pem(&ca)?)),
        Arc::new(Mutex::new(NoPins)),
        &provider,
    ));
    let tls_config = Arc::new(client_config(verifier, provider)?);

    let started = Instant::now();
    let now = || started.elapsed();
    let mut config = InitiatorConfig::client(jid.domain());
    config.from = Some(jid.bare().to_string());
    config.sasl = Some(ClientSasl::password(
        jid.local().unwrap_or_default(),
        &password,
        None,
    ));
    let mut connection = Connection::initiate(
        config,
        rand_core::OsRng,
        ConnectionOptions::default(),
        now(),
    );

    let mut tcp = TcpStream::connect((host.as_str(), port))?;
    tcp.set_nodelay(true)?;
    let mut tls: Option<rustls::ClientConnection> = None;
    let mut buf = [0u8; 4096];
    let mut me = None;
    loop {
        // 1. Send what the connection has (TLS-protected once TLS runs).
        while let Some(unit) = connection.poll_transmit() {
            match &mut tls {
                Some(t) => rustls::Stream::new(t, &mut tcp).write_all(unit.as_bytes())?,
                None => tcp.write_all(unit.as_bytes())?,
            }
        }
        // 2. Act on its events; what they queue is sent before the next read.
        let mut acted = false;
        while let Some(event) = connection.poll_event() {
            acted = true;
            match event {
                Event::StartTls { server_name } => {
                    // §5.4.3: TLS right after <proceed/>, nothing else read or written.
                    let name = rustls::pki_types::ServerName::try_from(server_name)?;
                    let mut t = rustls::ClientConnection::new(tls_config.clone(), name)?;
                    while t.is_handshaking() {
                        t.complete_io(&mut tcp)?;
                    }
                    let mut exporter = [0u8; 32];
                    t.export_keying_material(&mut exporter, b"EXPORTER-Channel-Binding", None)?;
                    let info = TlsInfo {
                        channel_binding: ChannelBindingData {
                            exporter: Some(exporter),
                            ..ChannelBindingData::default()
                        },
                        ..TlsInfo::default()
                    };
                    tls = Some(t);
                    connection.handle_tls_established(info, now());
                }
                Event::Negotiated(outcome) => {
                    let bound = outcome.jid.unwrap_or_default();
                    println!("online as {bound}");
                    connection.send_stanza(
                        &stanza::message(&bound, "hello, myself", Some("b1")),
                        now(),
                    )?;
                    me = Some(bound);
                }
                Event::Stanza(s) => {
                    println!("received {}", s.raw());
                    if me.is_some() && s.raw().contains("hello, myself") {
                        connection.close(now());
                    }
                }
                Event::Closed(Closed::ByUs | Closed::ByPeer) => {
                    println!("closed");
                    return Ok(());
                }
                Event::Closed(Closed::Failed(e)) => return Err(e.to_string().into()),
                // Steps, skipped elements, stream-management events: not used here.
                _ => {}
            }
        }
        if acted {
            continue;
        }
        // 3. Read, until the connection's next timer at the latest.
        let wait = connection
            .poll_timeout()
            .map(|at| at.saturating_sub(now()).max(Duration::from_millis(1)));
        tcp.set_read_timeout(wait)?;
        let read = match &mut tls {
            Some(t) => rustls::Stream::new(t, &mut tcp).read(&mut buf),
            None => tcp.read(&mut buf),
        };
        match read {
            Ok(0) => connection.handle_eof(None),
            Ok(n) => connection.handle_input(&buf[..n], now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                connection.handle_timeout(now())
            }
            Err(e) => return Err(e.into()),
        }
    }
}
