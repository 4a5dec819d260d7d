//! Where the server is (RFC 6120 §3.2): `XMPP_SERVER`'s address; a host name's A record;
//! or, with nothing configured, the JID's domain by SRV `_xmpp-client._tcp`, in the order
//! the core's [`resolve::merged`] gives (the CLI's order), falling back to the domain
//! itself on port 5222. Each lookup is one DNS message over a UDP socket, written and read
//! by the core's [`dns`] codec: smoltcp asks only for A/AAAA, and its DNS socket (the
//! embassy-net `dns` feature) cost more flash than the codec's A query on the UDP socket
//! that SRV and SNTP need anyway. The app speaks STARTTLS only, so `_xmpps-client._tcp` (Direct TLS, XEP-0368) is
//! not asked for.
//!
//! The certificate is checked against the JID's domain whatever this finds, never
//! against an SRV target or a host name (RFC 6120 §13.7.2.1).

use alloc::string::String;
use alloc::vec::Vec;

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpEndpoint, Ipv4Address, Stack};
use embassy_time::{with_timeout, Duration};
use rand_core::RngCore;
use xmpp_handshake_core::resolve::dns::{self, DnsError, MAX_UDP_MESSAGE};
use xmpp_handshake_core::resolve::{self, ServerSetting, CLIENT_PORT, CLIENT_SERVICES};

/// The DNS port (RFC 1035 §4.2.1).
const DNS_PORT: u16 = 53;
/// How long one DNS query may take (tried twice).
const DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// Why no address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ResolveFailure {
    /// The A query failed (no DNS server, no answer, a malformed or failed one).
    Dns(DnsError),
    /// The name has no A record.
    NoAddress,
    /// The domain announces that it has no XMPP client service (SRV target `.`, RFC 2782;
    /// XEP-0368 §4: no fallback to the domain's address then).
    NoService,
}

impl core::fmt::Display for ResolveFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ResolveFailure::Dns(e) => write!(f, "DNS query failed: {e}"),
            ResolveFailure::NoAddress => f.write_str("the name has no IPv4 address"),
            ResolveFailure::NoService => {
                f.write_str("the domain announces no XMPP client service (SRV target \".\")")
            }
        }
    }
}

/// The first IPv4 address of `name` (an address in text form is taken as it is). `rx`
/// and `tx` are the UDP socket's buffers, as for [`endpoints`].
pub async fn lookup_a(
    stack: Stack<'_>,
    name: &str,
    rng: &mut impl RngCore,
    rx: &mut [u8],
    tx: &mut [u8],
) -> Result<Ipv4Address, ResolveFailure> {
    if let Ok(ServerSetting::Address { octets, .. }) = ServerSetting::parse(name) {
        return Ok(Ipv4Address::from(octets));
    }
    let addresses = ask(stack, name, rng, rx, tx, dns::a_query, dns::a_answers)
        .await
        .map_err(ResolveFailure::Dns)?;
    match addresses.first() {
        Some(&octets) => Ok(Ipv4Address::from(octets)),
        None => Err(ResolveFailure::NoAddress),
    }
}

/// Where to connect, in order, for `server` and the JID's `domain`. `rx` and `tx` are
/// the buffers of the UDP socket of the DNS queries (the TCP socket's, before it is made;
/// `rx` holds 1024 bytes at least).
pub async fn endpoints(
    stack: Stack<'_>,
    server: ServerSetting<'_>,
    domain: &str,
    rng: &mut impl RngCore,
    rx: &mut [u8],
    tx: &mut [u8],
) -> Result<Vec<IpEndpoint>, ResolveFailure> {
    let (name, port) = match server {
        ServerSetting::Address { octets, port } => {
            return Ok([IpEndpoint::new(Ipv4Address::from(octets).into(), port)].into())
        }
        ServerSetting::Host { name, port } => (name, port),
        ServerSetting::Domain => {
            let mut srv_name = String::from(CLIENT_SERVICES.1);
            srv_name.push('.');
            srv_name.push_str(domain);
            let records = match ask(
                stack,
                &srv_name,
                rng,
                rx,
                tx,
                dns::srv_query,
                dns::srv_answers,
            )
            .await
            {
                Ok(records) => records,
                // RFC 6120 §3.2.2: a failed lookup allows the fallback.
                Err(e) => {
                    warn!("SRV lookup of {} failed: {}", srv_name.as_str(), e);
                    Vec::new()
                }
            };
            let records = resolve::announced(records).ok_or(ResolveFailure::NoService)?;
            let mut found = Vec::new();
            for (record, _) in resolve::merged(Vec::new(), records) {
                match lookup_a(stack, &record.target, rng, &mut *rx, &mut *tx).await {
                    Ok(address) => {
                        info!(
                            "SRV: {}:{} at {}",
                            record.target.as_str(),
                            record.port,
                            address
                        );
                        found.push(IpEndpoint::new(address.into(), record.port));
                    }
                    Err(e) => warn!("SRV target {} not found: {}", record.target.as_str(), e),
                }
            }
            if !found.is_empty() {
                return Ok(found);
            }
            (domain, CLIENT_PORT)
        }
    };
    let address = lookup_a(stack, name, rng, rx, tx).await?;
    Ok([IpEndpoint::new(address.into(), port)].into())
}

/// One DNS question about `name` (`query` writes it, `answers` reads the answer), to the
/// first DNS server the network configuration gives.
async fn ask<T>(
    stack: Stack<'_>,
    name: &str,
    rng: &mut impl RngCore,
    rx: &mut [u8],
    tx: &mut [u8],
    query: fn(u16, &str, &mut [u8]) -> Result<usize, DnsError>,
    answers: fn(u16, &str, &[u8]) -> Result<T, DnsError>,
) -> Result<T, DnsError> {
    let server = stack
        .config_v4()
        .and_then(|c| c.dns_servers.first().copied())
        .ok_or(DnsError::Failed(2))?;
    // The answer is read out of the socket's buffer into the other half of `rx`.
    let (rx, answer) = rx
        .split_at_mut_checked(MAX_UDP_MESSAGE)
        .ok_or(DnsError::Malformed)?;
    let answer = answer
        .get_mut(..MAX_UDP_MESSAGE)
        .ok_or(DnsError::Malformed)?;
    let (message, tx) = tx.split_at_mut(tx.len() / 2);
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx_meta = [PacketMetadata::EMPTY; 1];
    let mut socket = UdpSocket::new(stack, &mut rx_meta, rx, &mut tx_meta, tx);
    socket.bind(0).map_err(|_| DnsError::Failed(2))?;
    let mut last = DnsError::Failed(2);
    for _ in 0..2 {
        let id = rng.next_u32() as u16;
        let len = query(id, name, message)?;
        let to = IpEndpoint::new(server.into(), DNS_PORT);
        if socket.send_to(&message[..len], to).await.is_err() {
            continue;
        }
        let read = with_timeout(DNS_TIMEOUT, async {
            loop {
                match socket.recv_from(answer).await {
                    // Only the server asked, only the answer to this query.
                    Ok((n, meta)) if meta.endpoint == to => match answers(id, name, &answer[..n]) {
                        Err(DnsError::NotOurs) => continue,
                        other => return other,
                    },
                    _ => continue,
                }
            }
        })
        .await;
        match read {
            Ok(result) => return result,
            Err(_) => last = DnsError::Failed(2),
        }
    }
    Err(last)
}
