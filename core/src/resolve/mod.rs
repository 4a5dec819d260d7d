//! Where to connect for a domain (RFC 6120 §3.2, XEP-0368), without I/O: the rules every
//! wrapper applies to what its resolver answered, so that the CLI (hickory) and the
//! firmware (its own UDP query, [`dns`]) try servers in the same order.
//!
//! * [`ServerSetting`]: a configured server, `a.b.c.d[:port]`, `name[:port]` or nothing
//!   (then the JID's domain is looked up).
//! * [`announced`]: an SRV answer with RFC 2782's `.` target ("no such service here").
//! * [`merged`]: the `_xmpps-client._tcp` (Direct TLS, XEP-0368) and `_xmpp-client._tcp`
//!   (STARTTLS) records as one list in the order to try them.
//!
//! Whatever DNS answers, the certificate is checked against the configured domain, never
//! against an SRV target (RFC 6120 §13.7.2.1): nothing here changes the reference
//! identity.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub mod dns;

/// The default c2s port (RFC 6120 §14.7, the IANA registration).
pub const CLIENT_PORT: u16 = 5222;

/// The SRV service names of client-to-server XMPP (RFC 6120 §3.2.1, XEP-0368 §3):
/// `(Direct TLS, STARTTLS)`.
pub const CLIENT_SERVICES: (&str, &str) = ("_xmpps-client._tcp", "_xmpp-client._tcp");

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, higher is tried first.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Host name, without the trailing dot; `.` means "no service here" (RFC 2782).
    pub target: String,
}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Security {
    /// TCP, then STARTTLS (RFC 6120 §5).
    StartTls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

impl Security {
    /// `STARTTLS` or `Direct TLS`, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Security::StartTls => "STARTTLS",
            Security::DirectTls => "Direct TLS",
        }
    }
}

/// The records of one service as answered (the `.` target removed); `None` when the
/// domain announces that it has no such service: a sole record with target `.` (RFC 2782;
/// XEP-0368 §4 then forbids falling back to the domain's own address).
pub fn announced(mut records: Vec<SrvRecord>) -> Option<Vec<SrvRecord>> {
    if let [only] = records.as_slice() {
        if only.target == "." {
            return None;
        }
    }
    records.retain(|r| r.target != ".");
    Some(records)
}

/// Both services' records as one list in the order to try them (XEP-0368 §2 rule 1, RFC
/// 2782): lower priority first; among equal priorities, higher weight first (a fixed order
/// rather than RFC 2782's weighted random pick: one client, one login); at equal priority
/// and weight Direct TLS first (the client's preference XEP-0368 allows: a round trip
/// less, no STARTTLS to strip). A client without Direct TLS passes no `direct` records.
pub fn merged(direct: Vec<SrvRecord>, starttls: Vec<SrvRecord>) -> Vec<(SrvRecord, Security)> {
    let mut records: Vec<(SrvRecord, Security)> = direct
        .into_iter()
        .map(|r| (r, Security::DirectTls))
        .chain(starttls.into_iter().map(|r| (r, Security::StartTls)))
        .collect();
    records.sort_by(|(a, sa), (b, sb)| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then((*sa == Security::StartTls).cmp(&(*sb == Security::StartTls)))
    });
    records
}

/// A configured server (the firmware's `XMPP_SERVER`): where to connect instead of
/// looking the JID's domain up. Read once, by [`ServerSetting::parse`], at build time
/// and on the device alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServerSetting<'a> {
    /// `a.b.c.d[:port]`: that IPv4 address (port 5222 when not given).
    Address {
        /// The address's four octets.
        octets: [u8; 4],
        /// The port.
        port: u16,
    },
    /// `name[:port]`: that host's DNS A record (port 5222 when not given).
    Host {
        /// The host name as written, without a trailing dot.
        name: &'a str,
        /// The port.
        port: u16,
    },
    /// Nothing configured: the JID's domain, by SRV `_xmpp-client._tcp` (RFC 6120
    /// §3.2.1), else the domain itself on port 5222 (§3.2.2).
    Domain,
}

/// Why a server setting is not `a.b.c.d[:port]`, `name[:port]` or empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ServerSettingError {
    /// A port was given without a host (`:5222`).
    EmptyHost,
    /// The port is not a decimal number from 1 to 65535.
    BadPort,
    /// Only digits and dots, but not four decimal octets up to 255.
    BadAddress,
    /// Not a DNS host name: ASCII letters, digits and hyphens in dot-separated labels of
    /// 1 to 63 bytes (no hyphen at either end), 253 bytes at most (RFC 1035 §2.3.1,
    /// RFC 1123 §2.1). IPv6 literals are not supported.
    BadHostName,
}

impl fmt::Display for ServerSettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerSettingError::EmptyHost => "a port without a host",
            ServerSettingError::BadPort => "the port is not a number from 1 to 65535",
            ServerSettingError::BadAddress => "not an IPv4 address (four numbers up to 255)",
            ServerSettingError::BadHostName => {
                "not a host name (ASCII letters, digits, hyphens and dots; no IPv6 literal)"
            }
        })?;
        f.write_str(": expected a.b.c.d[:port], host.name[:port], or nothing for the JID's domain")
    }
}

impl core::error::Error for ServerSettingError {}

impl<'a> ServerSetting<'a> {
    /// Reads `a.b.c.d[:port]`, `name[:port]` or `` (nothing: [`ServerSetting::Domain`]).
    pub fn parse(text: &'a str) -> Result<Self, ServerSettingError> {
        if text.is_empty() {
            return Ok(ServerSetting::Domain);
        }
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, parse_port(port)?),
            None => (text, CLIENT_PORT),
        };
        if host.is_empty() {
            return Err(ServerSettingError::EmptyHost);
        }
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let octets = crate::jid::ipv4_octets(host).ok_or(ServerSettingError::BadAddress)?;
            return Ok(ServerSetting::Address { octets, port });
        }
        let name = host.strip_suffix('.').unwrap_or(host);
        if !is_host_name(name) {
            return Err(ServerSettingError::BadHostName);
        }
        Ok(ServerSetting::Host { name, port })
    }
}

/// 1 to 5 decimal digits, 1 to 65535.
fn parse_port(text: &str) -> Result<u16, ServerSettingError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ServerSettingError::BadPort);
    }
    let value = text.bytes().fold(0u32, |v, b| v * 10 + u32::from(b - b'0'));
    match u16::try_from(value) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ServerSettingError::BadPort),
    }
}

/// RFC 1123 §2.1 host name (letters, digits, hyphens; labels of 1–63 bytes without a
/// hyphen at either end; 253 bytes at most), as a DNS query can carry it.
pub(crate) fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes.first() != Some(&b'-')
                && bytes.last() != Some(&b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn rec(priority: u16, weight: u16, target: &str, port: u16) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    #[test]
    fn merged_orders_by_priority_then_weight_direct_tls_first_on_a_tie() {
        let order = merged(
            vec![rec(10, 5, "tie", 5223), rec(10, 1, "light", 443)],
            vec![
                rec(10, 5, "tie", 5222),
                rec(20, 0, "last", 5222),
                rec(0, 0, "first", 5222),
                rec(10, 90, "heavy", 5222),
            ],
        );
        let got: Vec<(&str, u16, Security)> = order
            .iter()
            .map(|(r, s)| (r.target.as_str(), r.port, *s))
            .collect();
        assert_eq!(
            got,
            vec![
                ("first", 5222, Security::StartTls),
                ("heavy", 5222, Security::StartTls),
                ("tie", 5223, Security::DirectTls),
                ("tie", 5222, Security::StartTls),
                ("light", 443, Security::DirectTls),
                ("last", 5222, Security::StartTls),
            ]
        );
    }

    #[test]
    fn a_sole_dot_target_announces_no_service() {
        assert_eq!(announced(vec![rec(0, 0, ".", 0)]), None);
        assert_eq!(announced(vec![]), Some(vec![]));
        assert_eq!(
            announced(vec![rec(0, 0, ".", 0), rec(1, 0, "x.test", 5222)]),
            Some(vec![rec(1, 0, "x.test", 5222)])
        );
    }

    #[test]
    fn server_setting_reads_address_host_or_nothing() {
        use ServerSetting::*;
        for (text, expected) in [
            ("", Ok(Domain)),
            (
                "10.0.0.1",
                Ok(Address {
                    octets: [10, 0, 0, 1],
                    port: 5222,
                }),
            ),
            (
                "192.0.2.1:15222",
                Ok(Address {
                    octets: [192, 0, 2, 1],
                    port: 15222,
                }),
            ),
            (
                "xmpp.example.org",
                Ok(Host {
                    name: "xmpp.example.org",
                    port: 5222,
                }),
            ),
            (
                "Server-1.example.:5223",
                Ok(Host {
                    name: "Server-1.example",
                    port: 5223,
                }),
            ),
            (
                "localhost:65535",
                Ok(Host {
                    name: "localhost",
                    port: 65535,
                }),
            ),
            (":5222", Err(ServerSettingError::EmptyHost)),
            ("10.0.0.1:", Err(ServerSettingError::BadPort)),
            ("10.0.0.1:0", Err(ServerSettingError::BadPort)),
            ("10.0.0.1:65536", Err(ServerSettingError::BadPort)),
            ("10.0.0.1:+52", Err(ServerSettingError::BadPort)),
            ("10.0.0.1:5222:1", Err(ServerSettingError::BadPort)),
            ("256.0.0.1", Err(ServerSettingError::BadAddress)),
            ("10.0.0", Err(ServerSettingError::BadAddress)),
            ("010.0.0.1", Err(ServerSettingError::BadAddress)),
            ("[::1]:5222", Err(ServerSettingError::BadPort)),
            ("bad_name.example", Err(ServerSettingError::BadHostName)),
            ("-x.example", Err(ServerSettingError::BadHostName)),
            ("a..example", Err(ServerSettingError::BadHostName)),
            ("bücher.example", Err(ServerSettingError::BadHostName)),
        ] {
            assert_eq!(ServerSetting::parse(text), expected, "{text}");
        }
        let long = "a".repeat(64);
        assert_eq!(
            ServerSetting::parse(&long),
            Err(ServerSettingError::BadHostName)
        );
        let many = ["abcdefghi"; 26].join(".");
        assert!(many.len() > 253);
        assert_eq!(
            ServerSetting::parse(&many),
            Err(ServerSettingError::BadHostName)
        );
    }
}
