//! The tokio TCP transport, seen by the core as `embedded-io-async` Read + Write.

use std::io;

use embedded_io_adapters::tokio_1::FromTokio;
use tokio::net::{TcpStream, ToSocketAddrs};

/// A tokio stream as the core's transport.
pub type Transport<T = TcpStream> = FromTokio<T>;

/// Connects over TCP with Nagle off: every negotiation step is a small write that must
/// leave at once (with Nagle, the TLS 1.3 Finished waits for an ACK: one more round trip).
pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<Transport> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(FromTokio::new(tcp))
}

/// Wraps an accepted TCP connection the same way (Nagle off).
pub fn accepted(tcp: TcpStream) -> io::Result<Transport> {
    tcp.set_nodelay(true)?;
    Ok(FromTokio::new(tcp))
}
