//! What the app is told: account, server, behaviour, timeouts and memory.
//!
//! Boards fill this from build-time environment variables (`XMPP_JID`, `XMPP_PASSWORD`,
//! `XMPP_SERVER`, `XMPP_CA`, ...: see the README), the host build from the process
//! environment. Nothing here is learned from the network: the domain of the JID is the
//! stream's `to`, the TLS server name and the certificate's reference identity
//! (RFC 6120 §13.7.2.1), even when the server is reached by IP address.

use embassy_net::IpEndpoint;
use embassy_time::Duration;
use xmpp_handshake_core::jid::{JidError, JidParts};
use xmpp_handshake_core::xml::framer::Limits;

use crate::backoff::Backoff;

/// The app's configuration.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    /// The account's localpart (SASL authentication identity).
    pub username: &'a str,
    /// The account's domain (stream `to`, SNI, certificate reference identity).
    pub domain: &'a str,
    /// The password. PBKDF2 runs once; afterwards the SCRAM cache serves the login.
    pub password: &'a str,
    /// The resource to request (§7.6).
    pub resource: &'a str,
    /// Where the server listens (no DNS on the device: an address).
    pub server: IpEndpoint,
    /// What to do once bound.
    pub behaviour: Behaviour<'a>,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// From TCP connect to bound resource.
    pub negotiate_timeout: Duration,
    /// Bounds for the framer (`max_element_bytes` is also its buffer size).
    pub limits: Limits,
}

/// What the app does on a bound stream.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour<'a> {
    /// Answer every incoming chat message with `echo: <body>` to its sender.
    pub echo: bool,
    /// Send a sensor-style reading to this JID every `period`.
    pub report_to: Option<&'a str>,
    /// The period of the readings.
    pub period: Duration,
    /// Reconnect soak: close each stream right after binding and reconnect at once (no
    /// backoff), to show a reconnect leaks nothing. Off on devices.
    pub soak: bool,
}

impl<'a> Config<'a> {
    /// `jid` is `user@domain` (RFC 7622, checked by core's [`JidParts`], which borrows it:
    /// the domain as written, without a trailing dot; a resource in it is ignored, see
    /// [`Config::resource`]); echo on, no readings, defaults for the rest. `Err` says what
    /// is wrong with `jid`.
    pub fn new(jid: &'a str, password: &'a str, server: IpEndpoint) -> Result<Self, JidError> {
        let jid = JidParts::parse(jid)?;
        let username = jid.local.ok_or(JidError::MissingLocal)?;
        let domain = jid.domain;
        Ok(Config {
            username,
            domain,
            password,
            resource: "device",
            server,
            behaviour: Behaviour {
                echo: true,
                report_to: None,
                period: Duration::from_secs(60),
                soak: false,
            },
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            negotiate_timeout: Duration::from_secs(30),
            limits: Memory::DEFAULT.limits(),
        })
    }
}

/// The configuration from build-time environment variables (boards pass
/// `option_env!("XMPP_JID")` etc.): `jid` (`user@domain`), `password`, `server`
/// (`a.b.c.d:port`), optional `report_to` (a JID for periodic readings) and `period_ms`.
/// `None` if one of the first three is missing or malformed.
pub fn from_build_env<'a>(
    jid: Option<&'a str>,
    password: Option<&'a str>,
    server: Option<&'a str>,
    report_to: Option<&'a str>,
    period_ms: Option<&'a str>,
) -> Option<Config<'a>> {
    let mut config = Config::new(jid?, password?, server_address(server?)?).ok()?;
    config.behaviour.report_to = report_to.filter(|r| !r.is_empty());
    if let Some(ms) = period_ms.and_then(|p| p.parse().ok()) {
        config.behaviour.period = Duration::from_millis(ms);
    }
    Some(config)
}

/// `a.b.c.d:port`, read bytewise: `core::net`'s address parser is ~1.5 KB of a board's
/// flash. The address as `core::net` reads one (four decimal octets up to 255, without
/// leading zeros), the port 1 to 5 decimal digits up to 65535.
fn server_address(text: &str) -> Option<IpEndpoint> {
    let (address, port) = text.split_once(':')?;
    let mut octets = [0u8; 4];
    let mut fields = address.split('.');
    for octet in &mut octets {
        let field = fields.next()?;
        if field.len() > 1 && field.starts_with('0') {
            return None;
        }
        *octet = u8::try_from(decimal(field, 3)?).ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    let port = u16::try_from(decimal(port, 5)?).ok()?;
    Some((embassy_net::Ipv4Address::from(octets), port).into())
}

/// 1 to `max_digits` ASCII digits.
fn decimal(text: &str, max_digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits {
        return None;
    }
    text.bytes().try_fold(0u32, |value, b| {
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

/// Buffer sizes. The board allocates them (statics); the app borrows them for its lifetime.
///
/// TLS: with the max_fragment_length extension (RFC 6066, 2^12 bytes, which Prosody
/// honours) a received record is at most 4096 bytes of plaintext plus overhead, so the read
/// buffer is 4096 + 256. The write buffer bounds our own records: it must hold the
/// ClientHello (about 250 bytes here); a longer write goes out as several records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// TCP receive window.
    pub socket_rx: usize,
    /// TCP send buffer.
    pub socket_tx: usize,
    /// TLS record read buffer (decryption happens in place).
    pub tls_read: usize,
    /// TLS record write buffer.
    pub tls_write: usize,
    /// Largest element accepted from the server (the framer's buffer).
    pub max_element: usize,
    /// Most heap one element's parse may take (`Limits::max_parse_bytes`, as bounded by
    /// `xml::element::parse_cost` before parsing); a costlier element is skipped unparsed.
    /// The bound counts roxmltree's records, which are made of machine words, so the
    /// default is given per word: 14 KiB on 32-bit boards, twice that on the 64-bit host.
    pub max_parse: usize,
}

impl Memory {
    /// What the boards use: ~15 KiB of buffers, elements up to 4 KiB.
    pub const DEFAULT: Memory = Memory {
        socket_rx: 2048,
        socket_tx: 2048,
        tls_read: 4096 + 256,
        tls_write: 1024,
        max_element: 4096,
        // A plain 4 KiB message bounds at ~12 KiB on 32-bit; with the framer's 4 KiB, the
        // echo (up to 4.2 KiB) and the session's few hundred bytes, 14 KiB keeps one parse
        // inside the F767's 24 KiB heap.
        max_parse: 3584 * core::mem::size_of::<usize>(),
    };

    /// Framer limits for `max_element`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_element_bytes: self.max_element,
            max_header_bytes: 1024,
            max_depth: 16,
            max_attributes: 16,
            max_parse_bytes: self.max_parse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_env_needs_jid_password_and_server() {
        let c = from_build_env(
            Some("alice@example.test"),
            Some("pw"),
            Some("10.0.0.1:5222"),
            Some("bob@example.test"),
            Some("1500"),
        )
        .unwrap();
        assert_eq!((c.username, c.domain), ("alice", "example.test"));
        assert_eq!(c.server.port, 5222);
        assert_eq!(c.behaviour.report_to, Some("bob@example.test"));
        assert_eq!(c.behaviour.period, Duration::from_millis(1500));
        assert!(from_build_env(None, Some("pw"), Some("10.0.0.1:5222"), None, None).is_none());
        assert!(
            from_build_env(Some("alice"), Some("pw"), Some("10.0.0.1:5222"), None, None).is_none()
        );
        assert!(
            from_build_env(Some("a@b"), Some("pw"), Some("example.test"), None, None).is_none()
        );
    }

    #[test]
    fn server_is_read_as_core_net_reads_it() {
        for text in [
            "10.0.0.1:5222",
            "192.0.2.1:5222",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "10.0.0.1",
            "10.0.0.1:",
            "10.0.0.1:65536",
            "10.0.0.1:99999",
            "10.0.0.1:123456",
            "10.0.0.1:+52",
            "10.0.0.1:05222",
            "10.0.0.1:5222:1",
            "010.0.0.1:5222",
            "256.0.0.1:5222",
            "10.0.0:5222",
            "10.0.0.1.2:5222",
            "example.test:5222",
            "[::1]:5222",
            ":5222",
            "",
        ] {
            let theirs = text
                .parse::<core::net::SocketAddrV4>()
                .ok()
                .map(|s| IpEndpoint::from((*s.ip(), s.port())));
            assert_eq!(server_address(text), theirs, "{text}");
        }
    }

    fn server() -> IpEndpoint {
        (core::net::Ipv4Addr::new(10, 0, 0, 1), 5222).into()
    }

    #[test]
    fn jid_is_checked_by_rfc7622() {
        // As written (the domain is not lowercased), the trailing dot and a resource left
        // out.
        let c = Config::new("alice@Example.test./desk", "pw", server()).unwrap();
        assert_eq!(
            (c.username, c.domain, c.resource),
            ("alice", "Example.test", "device")
        );
        for (jid, e) in [
            ("alice", JidError::MissingLocal),
            ("alice@", JidError::EmptyDomain),
            ("@example.test", JidError::EmptyLocal),
            ("alice@example.test/", JidError::EmptyResource),
            ("al ice@example.test", JidError::ForbiddenLocalChar(' ')),
        ] {
            assert_eq!(Config::new(jid, "pw", server()).unwrap_err(), e, "{jid}");
        }
        assert!(matches!(
            Config::new("alice@example.test@x", "pw", server()),
            Err(JidError::InvalidDomain(_))
        ));
    }
}
