//! Wall-clock time from SNTP (RFC 4330), for the certificate's validity dates
//! (RFC 5280 §4.1.2.5). The boards have no real-time clock: until an SNTP answer arrives,
//! [`now`] is `None` and the certificate policy skips the dates, which the core logs on
//! every connection (`ClockPolicy::SkipValidityWithoutClock`); once it arrived, the dates
//! are checked against embassy-time's monotonic clock plus the offset learned.

use core::net::{IpAddr, SocketAddr};
use core::sync::atomic::{AtomicU32, Ordering};

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::Stack;
use embassy_time::{with_timeout, Duration, Instant};
use sntpc::{NtpContext, NtpTimestampGenerator};
use sntpc_net_embassy::UdpSocketWrapper;
use xmpp_handshake_core::trust::UnixTime;

/// The SNTP port (RFC 4330 §4).
const NTP_PORT: u16 = 123;
/// How long one SNTP exchange may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Unix seconds at boot, learned from SNTP; 0 while unknown. Seconds as `u32` (until
/// 2106): only loads and stores, which every target has (the ESP32-C3 has no atomic
/// read-modify-write).
static UNIX_AT_BOOT: AtomicU32 = AtomicU32::new(0);

/// The time, once SNTP has answered.
pub fn now() -> Option<UnixTime> {
    match UNIX_AT_BOOT.load(Ordering::Relaxed) {
        0 => None,
        boot => Some(UnixTime(u64::from(boot) + Instant::now().as_secs())),
    }
}

/// Sets the clock: `unix` seconds now.
fn set(unix: u64) {
    let boot = unix.saturating_sub(Instant::now().as_secs());
    UNIX_AT_BOOT.store(
        u32::try_from(boot).unwrap_or(u32::MAX).max(1),
        Ordering::Relaxed,
    );
}

/// Timestamps for the request: the wall clock once known, the uptime before (SNTP only
/// needs our transmit time echoed back, RFC 4330 §5).
#[derive(Clone, Copy, Default)]
struct Timestamps(Duration);

impl NtpTimestampGenerator for Timestamps {
    fn init(&mut self) {
        let base = now()
            .map(|t| t.0 - Instant::now().as_secs())
            .unwrap_or_default();
        self.0 = Duration::from_secs(base) + Duration::from_micros(Instant::now().as_micros());
    }

    fn timestamp_sec(&self) -> u64 {
        self.0.as_secs()
    }

    fn timestamp_subsec_micros(&self) -> u32 {
        (self.0.as_micros() % 1_000_000) as u32
    }
}

/// Why the clock was not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SntpFailure {
    /// The server's name did not resolve.
    Resolve,
    /// No UDP socket (the stack's sockets are taken).
    Socket,
    /// No valid answer within the timeout.
    NoAnswer,
}

/// Asks `server` (an IPv4 address or a host name, port 123) for the time and sets the
/// clock from its answer. `rx` and `tx` are the UDP socket's buffers for the exchange
/// and the name's lookup (the TCP socket's, before it is made, serve; see
/// [`crate::net::endpoints`]).
pub async fn sync(
    stack: Stack<'_>,
    server: &str,
    rng: &mut impl rand_core::RngCore,
    rx: &mut [u8],
    tx: &mut [u8],
) -> Result<UnixTime, SntpFailure> {
    let address = crate::net::lookup_a(stack, server, rng, &mut *rx, &mut *tx)
        .await
        .map_err(|_| SntpFailure::Resolve)?;
    let mut rx_meta = [PacketMetadata::EMPTY; 1];
    let mut tx_meta = [PacketMetadata::EMPTY; 1];
    let mut socket = UdpSocket::new(stack, &mut rx_meta, rx, &mut tx_meta, tx);
    socket.bind(0).map_err(|_| SntpFailure::Socket)?;
    let socket = UdpSocketWrapper::new(socket);
    let to = SocketAddr::new(IpAddr::V4(address), NTP_PORT);
    let context = NtpContext::new(Timestamps::default());
    let answer = with_timeout(TIMEOUT, sntpc::get_time(to, &socket, context))
        .await
        .map_err(|_| SntpFailure::NoAnswer)?
        .map_err(|_| SntpFailure::NoAnswer)?;
    set(answer.sec());
    now().ok_or(SntpFailure::NoAnswer)
}
