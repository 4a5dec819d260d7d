//! rustls as the core's [`TlsUpgrade`] for both roles (RFC 6120 §5.4.3).
//!
//! The client connects with SNI = the domain the user configured (the core hands it
//! over, never a DNS answer); certificate checks live in the `ClientConfig`'s verifier.
//! The server picks its certificate by SNI, or by the stream's `to` domain when the
//! client sent no SNI (§5.4.3.1).

use std::collections::HashMap;
use std::sync::Arc;

use embedded_io_adapters::tokio_1::FromTokio;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use xmpp_handshake_core::connection::{Connection, Negotiator, TlsInfo};
use xmpp_handshake_core::driver::TlsUpgrade;
use xmpp_handshake_core::sasl::ChannelBindingData;
use xmpp_handshake_core::trust::{self, CertificatePolicy, Service};
use xmpp_handshake_core::TlsError;

use crate::tls::verify::{self, external_identity, OptionalClientCertificate};

/// A failed tokio-rustls handshake in the core's terms: the rustls error inside (the
/// certificate policy's refusal among them, see [`verify::classify`]), the peer closing
/// the connection, an invalid server name, or the transport's I/O error.
pub fn classify(error: std::io::Error) -> TlsError {
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return verify::classify(tls);
    }
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => TlsError::Closed,
        std::io::ErrorKind::InvalidInput => {
            TlsError::Config("the server name is not a valid DNS name or IP address")
        }
        _ => TlsError::Io(embedded_io::Error::kind(&error)),
    }
}

/// Channel-binding data of a finished handshake: `tls-exporter` (RFC 9266, TLS 1.3 only:
/// on TLS 1.2 it is unsafe without extended master secret) and `tls-server-end-point`
/// (RFC 5929) from the server's end-entity certificate.
fn channel_binding<D>(
    conn: &rustls::ConnectionCommon<D>,
    server_cert: Option<&[u8]>,
) -> ChannelBindingData {
    let exporter = (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
        .then(|| {
            let mut out = [0u8; 32];
            conn.export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
                .ok()?;
            Some(out)
        })
        .flatten();
    ChannelBindingData {
        exporter,
        server_end_point: server_cert.and_then(|der| trust::tls_server_end_point(der).ok()),
        ..ChannelBindingData::default()
    }
}

/// The TLS client side.
#[derive(Clone)]
pub struct RustlsClient {
    connector: TlsConnector,
}

impl RustlsClient {
    /// Uses `config` (trust anchors, verifier, ALPN) for every upgrade.
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        RustlsClient {
            connector: TlsConnector::from(config),
        }
    }
}

impl RustlsClient {
    /// Connects to `server_name` over `transport` and sends what `connection` (built with
    /// [`Connection::initiate_with_tls`] before the handshake) has queued, its first header
    /// and a FAST `<authenticate/>`: as TLS 1.3 early data (0-RTT, RFC 8446 §2.3) in the
    /// first flight when the configuration enables it and a kept session ticket allows
    /// it, otherwise (and again, after the handshake, when the server refused the early
    /// data) as application data, so that it arrives exactly once. Returns once the
    /// handshake is done, with `connection` told what it established
    /// ([`Connection::handle_tls_confirmed`]), and what was sent.
    pub async fn connect_with_early_data<T, M>(
        &self,
        transport: T,
        server_name: &str,
        connection: &mut Connection<M>,
    ) -> std::io::Result<(FromTokio<tokio_rustls::client::TlsStream<T>>, String)>
    where
        T: AsyncRead + AsyncWrite + Unpin,
        M: Negotiator,
    {
        use tokio::io::AsyncWriteExt as _;
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut first = String::new();
        while let Some(unit) = connection.poll_transmit() {
            first.push_str(&unit);
        }
        let mut tls = self
            .connector
            .clone()
            .early_data(true)
            .connect(name, transport)
            .await?;
        tls.write_all(first.as_bytes()).await?;
        // Completes the handshake; data the server refused goes out again.
        tls.flush().await?;
        let stream = FromTokio::new(tls);
        connection.handle_tls_confirmed(TlsUpgrade::<FromTokio<T>>::tls_info(self, &stream));
        Ok((stream, first))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> TlsUpgrade<FromTokio<T>> for RustlsClient {
    type Stream = FromTokio<tokio_rustls::client::TlsStream<T>>;
    type Error = std::io::Error;

    async fn upgrade(
        &mut self,
        transport: FromTokio<T>,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = self.connector.connect(name, transport.into_inner()).await?;
        Ok(FromTokio::new(tls))
    }

    fn classify(error: std::io::Error) -> TlsError {
        classify(error)
    }

    fn tls_info(&self, stream: &Self::Stream) -> TlsInfo {
        let conn = stream.inner().get_ref().1;
        let leaf = conn.peer_certificates().and_then(|c| c.first());
        TlsInfo {
            version: conn.protocol_version().map(u16::from),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| u16::from(s.suite())),
            channel_binding: channel_binding(conn, leaf.map(|c| c.as_ref())),
            peer_identities: Vec::new(),
        }
    }
}

/// Certificates of the domains a server hosts.
#[derive(Debug, Default, Clone)]
pub struct Certificates {
    by_domain: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    /// Serves `key` for `domain`.
    pub fn insert(&mut self, domain: &str, key: Arc<CertifiedKey>) {
        self.by_domain.insert(domain.to_ascii_lowercase(), key);
    }

    fn get(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.by_domain
            .get(&domain.trim_end_matches('.').to_ascii_lowercase())
            .cloned()
    }
}

/// Picks by SNI, else by the stream's `to` domain.
#[derive(Debug)]
struct ByNameOrStreamTo {
    certificates: Arc<Certificates>,
    stream_to: String,
}

impl ResolvesServerCert for ByNameOrStreamTo {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|sni| self.certificates.get(sni))
            .or_else(|| self.certificates.get(&self.stream_to))
    }
}

/// The TLS server side.
#[derive(Clone)]
pub struct RustlsServer {
    certificates: Arc<Certificates>,
    template: Arc<rustls::ServerConfig>,
    /// The stream's `to` of the last upgrade: the certificate used without SNI.
    stream_to: String,
    /// How client certificates are read for SASL EXTERNAL (§6.3.4), when requested.
    external: Option<(Arc<CertificatePolicy>, Service)>,
    /// The template's verifier lets chains through that do not verify: checked again
    /// before an identity is read from one.
    revalidate: Option<Arc<OptionalClientCertificate>>,
}

impl RustlsServer {
    /// Serves `certificates`; other settings (client-certificate verifier for SASL
    /// EXTERNAL, ALPN) come from `template`, whose certificate resolver is replaced.
    pub fn new(certificates: Certificates, template: rustls::ServerConfig) -> Self {
        RustlsServer {
            certificates: Arc::new(certificates),
            template: Arc::new(template),
            stream_to: String::new(),
            external: None,
            revalidate: None,
        }
    }

    /// The `template`'s client-certificate verifier is `verifier`, which lets a chain
    /// through that does not verify (Server Dialback needs none): such a chain gives no
    /// identity for EXTERNAL.
    pub fn revalidating(mut self, verifier: Arc<OptionalClientCertificate>) -> Self {
        self.revalidate = Some(verifier);
        self
    }

    /// Reads the identity of a client certificate (checked by the `template`'s client
    /// certificate verifier, see [`crate::tls::verify::client_cert_verifier`]) with
    /// `policy`, for SASL EXTERNAL: on C2S the certificate's only XmppAddr (XEP-0178 §4),
    /// on S2S its first DNS-ID (the peer server's domain).
    pub fn with_external(mut self, policy: CertificatePolicy, service: Service) -> Self {
        self.external = Some((Arc::new(policy), service));
        self
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> TlsUpgrade<FromTokio<T>> for RustlsServer {
    type Stream = FromTokio<tokio_rustls::server::TlsStream<T>>;
    type Error = std::io::Error;

    async fn upgrade(
        &mut self,
        transport: FromTokio<T>,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error> {
        let config = self.config_for(server_name);
        let tls = TlsAcceptor::from(Arc::new(config))
            .accept(transport.into_inner())
            .await?;
        Ok(FromTokio::new(tls))
    }

    fn classify(error: std::io::Error) -> TlsError {
        classify(error)
    }

    fn tls_info(&self, stream: &Self::Stream) -> TlsInfo {
        self.connection_info(stream.inner().get_ref().1)
    }
}

impl RustlsServer {
    /// The configuration a handshake for the stream `to` `server_name` runs with (the
    /// certificate by SNI, else by `server_name`), for a caller that drives the
    /// `rustls::ServerConnection` itself (see [`crate::early_data`]).
    pub fn config_for(&mut self, server_name: &str) -> rustls::ServerConfig {
        self.stream_to = server_name.to_owned();
        let mut config = (*self.template).clone();
        config.cert_resolver = Arc::new(ByNameOrStreamTo {
            certificates: self.certificates.clone(),
            stream_to: server_name.to_owned(),
        });
        config
    }

    /// What `conn` established, as [`TlsUpgrade::tls_info`] reports it. Before the
    /// handshake is done (answering early data) there is no `tls-exporter` yet.
    pub fn connection_info(&self, conn: &rustls::ServerConnection) -> TlsInfo {
        let ours = conn
            .server_name()
            .and_then(|sni| self.certificates.get(sni))
            .or_else(|| self.certificates.get(&self.stream_to));
        let leaf = ours.as_ref().and_then(|k| k.cert.first());
        let peer_identities = self
            .external
            .as_ref()
            .and_then(|(policy, service)| {
                let now = rustls::pki_types::UnixTime::now();
                let chain = conn.peer_certificates();
                if let (Some(verifier), Some(chain)) = (&self.revalidate, chain) {
                    if !verifier.verifies(chain) {
                        return None;
                    }
                }
                match external_identity(policy, chain, now)? {
                    Ok(cert) => Some(match service {
                        Service::Client => cert
                            .sole_xmpp_addr()
                            .map(str::to_owned)
                            .into_iter()
                            .collect(),
                        Service::Server => cert.dns_ids,
                    }),
                    Err(e) => {
                        log::warn!("client certificate not usable for EXTERNAL: {e}");
                        None
                    }
                }
            })
            .unwrap_or_default();
        TlsInfo {
            version: conn.protocol_version().map(u16::from),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| u16::from(s.suite())),
            channel_binding: channel_binding(conn, leaf.map(|c| c.as_ref())),
            peer_identities,
        }
    }
}
