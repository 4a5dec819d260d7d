//! What the app is told: account, server, trust, behaviour, timeouts and memory.
//!
//! Boards fill this from build-time environment variables (`XMPP_JID`, `XMPP_PASSWORD`,
//! `XMPP_SERVER`, `XMPP_CA`, `XMPP_PIN`, ...: see the README), which their build script
//! checked (`xmpp-handshake-firmware-build`), the host build from the process environment
//! through the same check. Nothing here is learned from the network: the domain of the
//! JID is the stream's `to`, the TLS server name and the certificate's reference identity
//! (RFC 6120 §13.7.2.1), whether the server is reached by address, host name or SRV.

use alloc::string::String;

use embassy_time::Duration;
use xmpp_handshake_core::jid::{JidError, JidParts};
use xmpp_handshake_core::resolve::ServerSetting;
use xmpp_handshake_core::trust::Fingerprint;
use xmpp_handshake_core::xml::framer::Limits;

use crate::backoff::Backoff;

/// The SNTP server when `XMPP_NTP` is not set (the DHCP options embassy-net exposes carry
/// no NTP server).
pub const DEFAULT_NTP: &str = "pool.ntp.org";

/// The app's configuration.
#[derive(Debug, Clone)]
pub struct Config<'a> {
    /// The account's localpart (SASL authentication identity).
    pub username: &'a str,
    /// The account's domain (stream `to`, SNI, certificate reference identity).
    pub domain: &'a str,
    /// The password. PBKDF2 runs once; afterwards the SCRAM cache serves the login.
    pub password: &'a str,
    /// The resource to request (§7.6): unique per device ([`device_resource`]), so that
    /// two devices on one account do not replace each other's session (§7.7.2.2).
    pub resource: &'a str,
    /// The `<user-agent id>` of SASL2 (XEP-0388 §2.2.1): a UUID, the same on every boot of
    /// this device ([`device_user_agent_id`]). The server ties the FAST token (XEP-0484)
    /// it issues to it; `None`: SASL2 without FAST.
    pub user_agent_id: Option<&'a str>,
    /// Where the server is: an address, a host name, or the JID's domain by SRV
    /// ([`crate::net`]).
    pub server: ServerSetting<'a>,
    /// The SNTP server (an address or a host name), `None` for no SNTP: certificate dates
    /// are then never checked ([`crate::time`]).
    pub ntp: Option<&'a str>,
    /// What to do once bound.
    pub behaviour: Behaviour<'a>,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// From TCP connect to bound resource.
    pub negotiate_timeout: Duration,
    /// On the bound stream: after this long without a word from the server an ack request
    /// (XEP-0198 `<r/>`, or a ping without stream management) goes out, and after as long
    /// again without an answer the link counts as lost: the app reconnects and resumes.
    /// Also the longest a write may stay blocked. A link that died silently (no FIN, no
    /// RST) is found within twice this.
    pub idle: Duration,
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
    /// [`Config::resource`]); resource `device`, SNTP from [`DEFAULT_NTP`], echo on, no
    /// readings, defaults for the rest. `Err` says what is wrong with `jid`.
    pub fn new(
        jid: &'a str,
        password: &'a str,
        server: ServerSetting<'a>,
    ) -> Result<Self, JidError> {
        let jid = JidParts::parse(jid)?;
        let username = jid.local.ok_or(JidError::MissingLocal)?;
        let domain = jid.domain;
        Ok(Config {
            username,
            domain,
            password,
            resource: "device",
            user_agent_id: None,
            server,
            ntp: Some(DEFAULT_NTP),
            behaviour: Behaviour {
                echo: true,
                report_to: None,
                period: Duration::from_secs(60),
                soak: false,
            },
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            negotiate_timeout: Duration::from_secs(30),
            idle: Duration::from_secs(90),
            limits: Memory::DEFAULT.limits(),
        })
    }
}

/// The build-time settings a board passes (`option_env!("XMPP_JID")` etc., which
/// [`build_env!`](crate::build_env) reads), as its build script checked them.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildEnv<'a> {
    /// `XMPP_JID`.
    pub jid: Option<&'a str>,
    /// `XMPP_PASSWORD`.
    pub password: Option<&'a str>,
    /// `XMPP_SERVER`: `a.b.c.d[:port]`, `name[:port]`, or unset for the JID's domain.
    pub server: Option<&'a str>,
    /// `XMPP_RESOURCE`: overrides the device's own resource.
    pub resource: Option<&'a str>,
    /// `XMPP_REPORT_TO`: the JID that gets the periodic readings.
    pub report_to: Option<&'a str>,
    /// `XMPP_PERIOD_MS`: the period of the readings.
    pub period_ms: Option<&'a str>,
    /// `XMPP_NTP`: the SNTP server, `off` for none, unset for [`DEFAULT_NTP`].
    pub ntp: Option<&'a str>,
}

/// The configuration from the build-time settings; `device_resource` is the resource
/// when `XMPP_RESOURCE` is not set, `user_agent_id` the device's SASL2 user agent id
/// ([`device_user_agent_id`], `None` without FAST). `None` if a required setting is missing or malformed,
/// which the board's build script already refused with an error naming it.
pub fn from_build_env<'a>(
    env: BuildEnv<'a>,
    device_resource: &'a str,
    user_agent_id: Option<&'a str>,
) -> Option<Config<'a>> {
    let set = |v: Option<&'a str>| v.filter(|v| !v.is_empty());
    let server = ServerSetting::parse(set(env.server).unwrap_or_default()).ok()?;
    let mut config = Config::new(env.jid?, env.password?, server).ok()?;
    config.resource = set(env.resource).unwrap_or(device_resource);
    config.user_agent_id = user_agent_id;
    config.behaviour.report_to = set(env.report_to);
    if let Some(ms) = env.period_ms.and_then(|p| p.parse().ok()) {
        config.behaviour.period = Duration::from_millis(ms);
    }
    config.ntp = match set(env.ntp) {
        Some("off") => None,
        Some(server) => Some(server),
        None => Some(DEFAULT_NTP),
    };
    Some(config)
}

/// The default resource of a device: `device-` and its hardware identity in hex (a MAC
/// address, the STM32's 96-bit unique id), the same on every boot and different on every
/// board. Hex digits written by hand (no `core::fmt`).
pub fn device_resource(id: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut resource = String::with_capacity(7 + 2 * id.len());
    resource.push_str("device-");
    for b in id {
        resource.push(char::from(HEX[usize::from(b >> 4)]));
        resource.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    resource
}

/// The SASL2 user agent id of a device (XEP-0388 §2.2.1 asks for a UUID that stays the
/// same for the device): a version 8 UUID (RFC 9562 §5.8) of the first 16 bytes of
/// SHA-256 over a label and the device's hardware identity (the same bytes as
/// [`device_resource`]), so it is stable across reboots and reflashing, differs per board
/// and does not reveal the identity itself. Hex digits written by hand (no `core::fmt`).
/// `None` without the crate feature `fast`: there is no FAST token to tie to it, and the
/// image does not carry the code.
pub fn device_user_agent_id(id: &[u8]) -> Option<String> {
    if !cfg!(feature = "fast") {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut label = alloc::vec::Vec::from(&b"xmpp-handshake user agent "[..]);
    label.extend_from_slice(id);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&Fingerprint::of(&label).0[..16]);
    // Version 8 in the high nibble of byte 6, the variant `10` in the top bits of byte 8.
    uuid[6] = 0x80 | (uuid[6] & 0x0f);
    uuid[8] = 0x80 | (uuid[8] & 0x3f);
    let mut text = String::with_capacity(36);
    for (i, b) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Some(text)
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
    /// What the boards use: ~14.5 KiB of buffers, elements up to 4 KiB.
    pub const DEFAULT: Memory = Memory {
        socket_rx: 2048,
        // Holds a whole TLS record of `tls_write` (1,024 bytes and its ~30 bytes of
        // overhead) with room to spare; 512 bytes less than before kept the F767's static
        // RAM and deepest stack within 64 KiB when the connection grew XEP-0198's state.
        socket_tx: 1536,
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

    fn env<'a>(jid: Option<&'a str>, server: Option<&'a str>) -> BuildEnv<'a> {
        BuildEnv {
            jid,
            password: Some("pw"),
            server,
            report_to: Some("bob@example.test"),
            period_ms: Some("1500"),
            ..BuildEnv::default()
        }
    }

    #[test]
    fn build_env_needs_jid_and_password_and_reads_the_server_setting() {
        let c = from_build_env(
            env(Some("alice@example.test"), Some("10.0.0.1")),
            "device-1",
            Some("ua-1"),
        )
        .unwrap();
        assert_eq!((c.username, c.domain), ("alice", "example.test"));
        assert_eq!(
            c.server,
            ServerSetting::Address {
                octets: [10, 0, 0, 1],
                port: 5222
            }
        );
        assert_eq!((c.resource, c.ntp), ("device-1", Some(DEFAULT_NTP)));
        assert_eq!(c.user_agent_id, Some("ua-1"));
        assert_eq!(c.behaviour.report_to, Some("bob@example.test"));
        assert_eq!(c.behaviour.period, Duration::from_millis(1500));
        let c = from_build_env(env(Some("a@b.test"), None), "d", None).unwrap();
        assert_eq!(c.server, ServerSetting::Domain);
        let c = from_build_env(
            BuildEnv {
                resource: Some("kitchen"),
                ntp: Some("off"),
                ..env(Some("a@b.test"), Some("xmpp.b.test:5223"))
            },
            "d",
            None,
        )
        .unwrap();
        assert_eq!((c.resource, c.ntp), ("kitchen", None));
        assert_eq!(
            c.server,
            ServerSetting::Host {
                name: "xmpp.b.test",
                port: 5223
            }
        );
        assert!(from_build_env(env(None, None), "d", None).is_none());
        assert!(from_build_env(env(Some("alice"), None), "d", None).is_none());
        assert!(from_build_env(env(Some("a@b"), Some("bad_name")), "d", None).is_none());
    }

    #[test]
    fn device_resource_is_the_identity_in_hex() {
        assert_eq!(
            device_resource(&[0x02, 0xab, 0x00, 0xff, 0x10, 0x9c]),
            "device-02ab00ff109c"
        );
    }

    #[cfg(feature = "fast")]
    #[test]
    fn user_agent_id_is_a_stable_version_8_uuid_per_identity() {
        let uuid = |id: &[u8]| device_user_agent_id(id).expect("an id with `fast`");
        let id = uuid(&[0x02, 0xab, 0x00, 0xff, 0x10, 0x9c]);
        assert_eq!(id, uuid(&[0x02, 0xab, 0x00, 0xff, 0x10, 0x9c]));
        assert_ne!(id, uuid(&[0x02, 0xab, 0x00, 0xff, 0x10, 0x9d]));
        let groups: alloc::vec::Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups
                .iter()
                .map(|g| g.len())
                .collect::<alloc::vec::Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(
            id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(groups[2].starts_with('8'), "version 8: {id}");
        assert!(
            matches!(&groups[3][..1], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
        assert!(
            !id.contains("02ab00ff109c"),
            "the identity is not shown: {id}"
        );
    }

    fn server() -> ServerSetting<'static> {
        ServerSetting::Domain
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
