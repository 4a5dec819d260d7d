//! Raw XMPP over tokio, by hand: enough to poke a real server without any XMPP code of
//! ours (stream headers, reading until a marker with a timeout, STARTTLS, direct TLS).
//!
//! Servers vary attribute and element order per connection: look for markers
//! (`contains`), never compare server bytes literally.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Default time limit for one read-until.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The initial client stream header (`jabber:client`, version 1.0) for `domain`.
pub fn client_stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
    )
}

/// TCP connect with TCP_NODELAY.
pub async fn connect(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    let s = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect {addr}")))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Write all of `data` and flush.
pub async fn send<S: AsyncWrite + Unpin>(stream: &mut S, data: &str) -> io::Result<()> {
    stream.write_all(data.as_bytes()).await?;
    stream.flush().await
}

/// Read until the text received so far contains `marker`; returns all of it.
///
/// Fails on timeout or EOF, with what was received in the message. Reads in small chunks
/// but may read past the marker: only use where the peer then waits for us (e.g. a stream
/// header + features, `<proceed/>`, a SASL result).
pub async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    marker: &str,
    timeout: Duration,
) -> io::Result<String> {
    let mut buf = Vec::new();
    let fut = async {
        let mut chunk = [0u8; 4096];
        loop {
            if String::from_utf8_lossy(&buf).contains(marker) {
                return Ok(());
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let res = tokio::time::timeout(timeout, fut).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    match res {
        Ok(Ok(())) => Ok(text),
        Ok(Err(e)) => Err(io::Error::new(
            e.kind(),
            format!("{e} while waiting for {marker:?}; got {text:?}"),
        )),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no {marker:?} within {timeout:?}; got {text:?}"),
        )),
    }
}

/// Read a stream header and its `<stream:features>` (up to `</stream:features>`).
pub async fn read_features<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<String> {
    read_until(stream, "</stream:features>", READ_TIMEOUT).await
}

/// A rustls client config (ring provider, TLS 1.2 and 1.3) that trusts `ca_der` only.
pub fn tls_client_config(ca_der: &[u8]) -> Arc<ClientConfig> {
    tls_client_config_with_versions(ca_der, rustls::DEFAULT_VERSIONS)
}

/// Like [`tls_client_config`], restricted to `versions` (e.g. `&[&rustls::version::TLS12]`).
pub fn tls_client_config_with_versions(
    ca_der: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .expect("test CA parses");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions supported by ring")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// TLS client handshake over `io`, verifying the server certificate for `domain`.
pub async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    config: Arc<ClientConfig>,
    domain: &str,
) -> io::Result<TlsStream<S>> {
    let name = ServerName::try_from(domain.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio::time::timeout(READ_TIMEOUT, TlsConnector::from(config).connect(name, io))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// STARTTLS by hand on a fresh TCP stream: header, features, `<starttls/>`, `<proceed/>`,
/// TLS handshake. Returns the TLS stream (no new header sent yet) and the pre-TLS features.
pub async fn starttls(
    mut tcp: TcpStream,
    config: Arc<ClientConfig>,
    domain: &str,
) -> io::Result<(TlsStream<TcpStream>, String)> {
    send(&mut tcp, &client_stream_header(domain)).await?;
    let features = read_features(&mut tcp).await?;
    send(
        &mut tcp,
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    )
    .await?;
    read_until(&mut tcp, "<proceed", READ_TIMEOUT).await?;
    let tls = tls_connect(tcp, config, domain).await?;
    Ok((tls, features))
}

/// The `<mechanism>` texts in a features blob, in order.
pub fn mechanisms(features: &str) -> Vec<String> {
    features
        .split("<mechanism>")
        .skip(1)
        .filter_map(|s| s.split("</mechanism>").next())
        .map(|s| s.trim().to_string())
        .collect()
}

/// SASL PLAIN `<auth>` element for `user` / `password` (for harness checks only).
pub fn sasl_plain_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let raw = format!("\0{user}\0{password}");
    format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Minimal RFC 6455 client for RFC 7395 (XMPP over WebSocket) checks: handshake, masked
/// text frames out, unmasked text frames in. No fragmentation, no extensions.
pub mod ws {
    use super::*;

    /// The RFC 7395 `<open/>` for `domain`.
    pub fn open(domain: &str) -> String {
        format!("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' version='1.0'/>")
    }

    /// Send the HTTP upgrade (subprotocol `xmpp`) and read the response head.
    /// Returns the response head; fails unless it is `101` with `xmpp` accepted.
    pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        stream: &mut S,
        host: &str,
        path: &str,
    ) -> io::Result<String> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: xmpp\r\n\r\n"
        );
        send(stream, &req).await?;
        // Read byte by byte up to the blank line, so no frame bytes are consumed.
        let mut head = Vec::new();
        let fut = async {
            while !head.ends_with(b"\r\n\r\n") {
                let b = stream.read_u8().await?;
                head.push(b);
            }
            Ok::<_, io::Error>(())
        };
        tokio::time::timeout(READ_TIMEOUT, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "websocket handshake"))??;
        let head = String::from_utf8_lossy(&head).into_owned();
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        if !head.starts_with("HTTP/1.1 101")
            || header("sec-websocket-protocol").as_deref() != Some("xmpp")
            || header("sec-websocket-accept").as_deref() != Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        {
            return Err(io::Error::other(format!(
                "websocket upgrade refused: {head}"
            )));
        }
        Ok(head)
    }

    /// Send one masked text frame.
    pub async fn send_text<S: AsyncWrite + Unpin>(stream: &mut S, text: &str) -> io::Result<()> {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        stream.write_all(&frame).await?;
        stream.flush().await
    }

    /// Read the next text frame (skipping pings/pongs), with [`READ_TIMEOUT`].
    pub async fn read_text<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<String> {
        let fut = async {
            loop {
                let b0 = stream.read_u8().await?;
                let b1 = stream.read_u8().await?;
                let len = match b1 & 0x7f {
                    126 => stream.read_u16().await? as u64,
                    127 => stream.read_u64().await?,
                    n => n as u64,
                };
                let mask = if b1 & 0x80 != 0 {
                    let mut m = [0u8; 4];
                    stream.read_exact(&mut m).await?;
                    Some(m)
                } else {
                    None
                };
                let mut payload = vec![0u8; len as usize];
                stream.read_exact(&mut payload).await?;
                if let Some(m) = mask {
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= m[i % 4];
                    }
                }
                match b0 & 0x0f {
                    0x1 => return Ok(String::from_utf8_lossy(&payload).into_owned()),
                    0x8 => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "websocket closed by server",
                        ))
                    }
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(READ_TIMEOUT, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "websocket read"))?
    }

    /// Read text frames until one contains `marker`; returns all of them concatenated.
    pub async fn read_until<S: AsyncRead + Unpin>(
        stream: &mut S,
        marker: &str,
    ) -> io::Result<String> {
        let mut all = String::new();
        loop {
            let t = read_text(stream).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{e} while waiting for {marker:?}; got {all:?}"),
                )
            })?;
            all.push_str(&t);
            if t.contains(marker) {
                return Ok(all);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_are_extracted_in_order() {
        let f = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                 <mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>\
                 </stream:features>";
        assert_eq!(mechanisms(f), ["SCRAM-SHA-1", "PLAIN"]);
        assert!(mechanisms("<stream:features/>").is_empty());
    }

    #[test]
    fn plain_auth_is_base64_of_nul_separated_credentials() {
        let a = sasl_plain_auth("alice", "pw");
        assert!(a.contains("mechanism='PLAIN'>AGFsaWNlAHB3</auth>"), "{a}");
    }

    #[tokio::test]
    async fn websocket_frames_round_trip_through_masking() {
        let (mut a, mut b) = tokio::io::duplex(1 << 17);
        for text in ["<open/>".to_string(), "x".repeat(300), "y".repeat(70_000)] {
            ws::send_text(&mut a, &text).await.unwrap();
            // Client frames are masked; read_text unmasks them.
            assert_eq!(ws::read_text(&mut b).await.unwrap(), text);
        }
    }

    #[tokio::test]
    async fn read_until_reports_what_it_got_on_timeout() {
        let (mut a, mut b) = tokio::io::duplex(64);
        send(&mut a, "<stream:stream>").await.unwrap();
        let e = read_until(&mut b, "</stream:features>", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("<stream:stream>"), "{e}");
    }
}
