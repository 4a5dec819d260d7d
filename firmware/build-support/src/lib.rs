//! What every board's `build.rs` does, in one place: check the configuration in the
//! environment (a missing or malformed setting stops the build with an error naming the
//! variable and what it expects, instead of a device that gives up at run time), rebuild
//! when it changes, put the trust anchors named by `XMPP_CA` (a PEM bundle of one or more
//! certificates, or DER) into `OUT_DIR/ca.der`, the certificates' DER one after the other,
//! which the board splits at run time (`xmpp_handshake_core::trust::x509::concatenated`),
//! and the key pins of `XMPP_PIN` into `OUT_DIR/pins.bin`. The host build checks its
//! environment with the same [`check`] at start.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use xmpp_handshake_core::jid::{self, JidParts};
use xmpp_handshake_core::resolve::ServerSetting;
use xmpp_handshake_core::trust::Fingerprint;

/// The build-time configuration every board reads (see firmware/README.md).
pub const CONFIG_ENV: [&str; 10] = [
    "XMPP_JID",
    "XMPP_PASSWORD",
    "XMPP_SERVER",
    "XMPP_CA",
    "XMPP_PIN",
    "XMPP_TRUST_FIRST_USE",
    "XMPP_RESOURCE",
    "XMPP_REPORT_TO",
    "XMPP_PERIOD_MS",
    "XMPP_NTP",
];

/// The settings of a Wi-Fi board.
pub const WIFI_ENV: [&str; 2] = ["WIFI_SSID", "WIFI_PASSWORD"];

/// A setting that is missing or malformed: `Display` names the variable and says what it
/// expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (see firmware/README.md, Configuration)",
            self.variable, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

fn error(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// How the device trusts the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustSetting {
    /// `XMPP_CA`: a chain to this anchor file.
    Anchor(PathBuf),
    /// `XMPP_PIN`: only these keys (SHA-256 of the SubjectPublicKeyInfo).
    Pins(Vec<Fingerprint>),
    /// `XMPP_TRUST_FIRST_USE=1`: the first key seen is kept in the flash store, a
    /// changed key is refused; with `XMPP_CA`, a first certificate that chains to it.
    FirstUse(Option<PathBuf>),
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `XMPP_JID`, `user@domain`.
    pub jid: String,
    /// `XMPP_PASSWORD`.
    pub password: String,
    /// `XMPP_SERVER`, as written (empty: the JID's domain).
    pub server: String,
    /// `XMPP_CA`, `XMPP_PIN`, `XMPP_TRUST_FIRST_USE`.
    pub trust: TrustSetting,
    /// `XMPP_RESOURCE`, if set.
    pub resource: Option<String>,
    /// `XMPP_REPORT_TO`, if set.
    pub report_to: Option<String>,
    /// `XMPP_PERIOD_MS`, if set.
    pub period_ms: Option<u64>,
    /// `XMPP_NTP`, if set: `a.b.c.d` or a host name, or `off`.
    pub ntp: Option<String>,
    /// `WIFI_SSID` and `WIFI_PASSWORD` of a Wi-Fi board.
    pub wifi: Option<(String, String)>,
}

/// Checks the configuration `var` gives (`std::env::var` in a build script; a map in
/// tests). `wifi`: the board needs `WIFI_SSID` (and optionally `WIFI_PASSWORD`).
pub fn check(var: impl Fn(&str) -> Option<String>, wifi: bool) -> Result<Settings, ConfigError> {
    // Unset and empty are the same: a shell's `VAR= cargo build` clears a setting.
    let get = |name: &str| var(name).filter(|v| !v.is_empty());

    let jid = get("XMPP_JID").ok_or_else(|| {
        error(
            "XMPP_JID",
            "not set: expected the device's account, user@domain",
        )
    })?;
    let parts = JidParts::parse(&jid)
        .map_err(|e| error("XMPP_JID", format!("{e}: expected user@domain")))?;
    if parts.local.is_none() {
        return Err(error(
            "XMPP_JID",
            "no user: expected user@domain (the account to log in to)",
        ));
    }
    let password = get("XMPP_PASSWORD")
        .ok_or_else(|| error("XMPP_PASSWORD", "not set: expected the account's password"))?;
    let server = get("XMPP_SERVER").unwrap_or_default();
    ServerSetting::parse(&server).map_err(|e| error("XMPP_SERVER", e.to_string()))?;

    let ca = get("XMPP_CA").map(PathBuf::from);
    if let Some(path) = &ca {
        if !path.is_file() {
            return Err(error(
                "XMPP_CA",
                format!(
                    "{} is not a file: expected the CA certificate (PEM or DER)",
                    path.display()
                ),
            ));
        }
    }
    let first_use = match get("XMPP_TRUST_FIRST_USE").as_deref() {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(error(
                "XMPP_TRUST_FIRST_USE",
                format!("`{other}`: expected 1 (keep the first key seen) or 0"),
            ))
        }
    };
    let pins = get("XMPP_PIN").map(|text| parse_pins(&text)).transpose()?;
    let trust = match (ca, pins, first_use) {
        (Some(_), Some(_), _) => {
            return Err(error(
                "XMPP_PIN",
                "set together with XMPP_CA: a pin replaces the CA, set one of them",
            ))
        }
        (None, Some(_), true) => {
            return Err(error(
                "XMPP_PIN",
                "set together with XMPP_TRUST_FIRST_USE=1: configured pins or trust on first \
                 use, not both",
            ))
        }
        (None, Some(pins), false) => TrustSetting::Pins(pins),
        (ca, None, true) => TrustSetting::FirstUse(ca),
        (Some(ca), None, false) => TrustSetting::Anchor(ca),
        (None, None, false) => {
            return Err(error(
                "XMPP_CA",
                "not set, nor XMPP_PIN or XMPP_TRUST_FIRST_USE=1: the device would refuse \
                 every server; expected the path of the CA certificate that issued the \
                 server's (PEM or DER), or XMPP_PIN with the server key's SHA-256",
            ))
        }
    };

    let resource = get("XMPP_RESOURCE");
    if let Some(r) = &resource {
        jid::check_resource(r)
            .map_err(|e| error("XMPP_RESOURCE", format!("{e}: expected a resourcepart")))?;
    }
    let report_to = get("XMPP_REPORT_TO");
    if let Some(to) = &report_to {
        JidParts::parse(to).map_err(|e| error("XMPP_REPORT_TO", format!("{e}: expected a JID")))?;
    }
    let period_ms = get("XMPP_PERIOD_MS")
        .map(|p| match p.parse::<u32>() {
            Ok(ms) if ms > 0 => Ok(u64::from(ms)),
            _ => Err(error(
                "XMPP_PERIOD_MS",
                format!("`{p}`: expected milliseconds between readings, 1 to 4294967295"),
            )),
        })
        .transpose()?;
    let ntp = get("XMPP_NTP");
    if let Some(ntp) = ntp.as_deref().filter(|n| *n != "off") {
        match ServerSetting::parse(ntp) {
            Ok(ServerSetting::Address { .. } | ServerSetting::Host { .. })
                if !ntp.contains(':') => {}
            _ => {
                return Err(error(
                    "XMPP_NTP",
                    format!(
                        "`{ntp}`: expected the SNTP server as a.b.c.d or a host name (port \
                         123), or off"
                    ),
                ))
            }
        }
    }
    let wifi = if wifi {
        let ssid = get("WIFI_SSID").ok_or_else(|| {
            error(
                "WIFI_SSID",
                "not set: expected the name of the Wi-Fi network",
            )
        })?;
        if ssid.len() > 32 {
            return Err(error("WIFI_SSID", "longer than 32 bytes"));
        }
        let password = get("WIFI_PASSWORD").unwrap_or_default();
        if !password.is_empty() && !(8..=63).contains(&password.len()) {
            return Err(error(
                "WIFI_PASSWORD",
                "expected 8 to 63 characters (WPA2-Personal), or unset for an open network",
            ));
        }
        Some((ssid, password))
    } else {
        None
    };
    Ok(Settings {
        jid,
        password,
        server,
        trust,
        resource,
        report_to,
        period_ms,
        ntp,
        wifi,
    })
}

/// `XMPP_PIN`: one or more SHA-256 fingerprints of the server's SubjectPublicKeyInfo,
/// separated by commas, each in the form the core reads
/// ([`Fingerprint`]'s `FromStr`: `AB:CD:…` or 64 hex digits).
fn parse_pins(text: &str) -> Result<Vec<Fingerprint>, ConfigError> {
    text.split(',')
        .map(|pin| {
            pin.parse::<Fingerprint>().map_err(|e| {
                error(
                    "XMPP_PIN",
                    format!(
                        "`{}`: {e}; a server key's pin is the `key SHA-256` a refusal \
                         logs, or `openssl x509 -in cert.pem -noout -pubkey | openssl pkey \
                         -pubin -outform der | sha256sum`",
                        pin.trim()
                    ),
                )
            })
        })
        .collect()
}

/// Call from `build.rs`: `extra_env` names the board's own variables ([`WIFI_ENV`] on a
/// Wi-Fi board). Panics with the [`ConfigError`] of a missing or malformed setting.
pub fn embed_config(extra_env: &[&str]) {
    for var in CONFIG_ENV.iter().chain(extra_env) {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let wifi = extra_env.contains(&"WIFI_SSID");
    let settings = check(|name| std::env::var(name).ok(), wifi).unwrap_or_else(|e| panic!("{e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let (ca, pins) = match &settings.trust {
        TrustSetting::Anchor(ca) | TrustSetting::FirstUse(Some(ca)) => (Some(ca), &[][..]),
        TrustSetting::Pins(pins) => (None, pins.as_slice()),
        TrustSetting::FirstUse(None) => (None, &[][..]),
    };
    let der = match ca {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.display());
            read_anchors(path).unwrap_or_else(|e| panic!("XMPP_CA {}: {e}", path.display()))
        }
        None => Vec::new(),
    };
    std::fs::write(out.join("ca.der"), der).expect("OUT_DIR is writable");
    let pins: Vec<u8> = pins.iter().flat_map(|p| p.0).collect();
    std::fs::write(out.join("pins.bin"), pins).expect("OUT_DIR is writable");
}

/// Every certificate of a PEM file, as DER one after the other; a file that is not PEM is
/// taken as DER (one certificate, or several concatenated). Either way the result must
/// split into certificates.
pub fn read_anchors(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    anchors_der(bytes)
}

fn anchors_der(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let der = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let mut der = Vec::new();
        for certificate in CertificateDer::pem_slice_iter(&bytes) {
            der.extend_from_slice(
                &certificate.map_err(|e| format!("not a PEM certificate bundle: {e}"))?,
            );
        }
        if der.is_empty() {
            return Err("no CERTIFICATE block in the PEM file".into());
        }
        der
    } else {
        bytes
    };
    match xmpp_handshake_core::trust::x509::concatenated(&der) {
        Ok(certificates) if !certificates.is_empty() => Ok(der),
        _ => Err("not DER certificates".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const DER: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x05];
    const PIN: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:\
                       AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
    const OTHER: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x07];

    #[test]
    fn der_is_kept_as_is() {
        assert_eq!(anchors_der(DER.to_vec()).unwrap(), DER);
    }

    #[test]
    fn every_certificate_of_a_pem_bundle_is_kept() {
        let pem = "# comment\n-----BEGIN CERTIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n\
                   other text\n-----BEGIN CERTIFICATE-----\nMAMCAQc=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            anchors_der(pem.as_bytes().to_vec()).unwrap(),
            [DER, OTHER].concat()
        );
    }

    #[test]
    fn broken_pem_and_non_certificates_are_errors() {
        let pem = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(anchors_der(pem.as_bytes().to_vec()).is_err());
        let key = "-----BEGIN PRIVATE KEY-----\nMAMCAQU=\n-----END PRIVATE KEY-----\n";
        assert!(anchors_der(key.as_bytes().to_vec()).is_err());
        assert!(anchors_der(b"hello".to_vec()).is_err());
        assert!(anchors_der([DER, &[0x02]].concat()).is_err());
    }

    /// A complete configuration with a pin (no file needed), changed by `edits`
    /// (`(name, None)` removes a variable).
    fn env(edits: &[(&str, Option<&str>)], wifi: bool) -> Result<Settings, ConfigError> {
        let mut vars: HashMap<&str, String> = [
            ("XMPP_JID", "device@example.test"),
            ("XMPP_PASSWORD", "secret"),
            ("XMPP_PIN", PIN),
            ("WIFI_SSID", "home"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
        for (name, value) in edits {
            match value {
                Some(v) => vars.insert(name, v.to_string()),
                None => vars.remove(name),
            };
        }
        check(|name| vars.get(name).cloned(), wifi)
    }

    /// The variable the error names.
    fn refused(edits: &[(&str, Option<&str>)]) -> &'static str {
        match env(edits, true) {
            Ok(s) => panic!("{edits:?} accepted: {s:?}"),
            Err(e) => e.variable,
        }
    }

    #[test]
    fn a_complete_configuration_is_read() {
        let s = env(
            &[
                ("XMPP_SERVER", Some("xmpp.example.test:5223")),
                ("XMPP_PERIOD_MS", Some("1500")),
                ("XMPP_RESOURCE", Some("kitchen")),
                ("XMPP_NTP", Some("192.0.2.123")),
            ],
            true,
        )
        .unwrap();
        assert_eq!(s.jid, "device@example.test");
        assert_eq!(s.server, "xmpp.example.test:5223");
        assert_eq!(s.period_ms, Some(1500));
        assert_eq!(s.resource.as_deref(), Some("kitchen"));
        assert_eq!(s.wifi, Some(("home".into(), String::new())));
        assert_eq!(
            s.trust,
            TrustSetting::Pins(vec![PIN.parse::<Fingerprint>().unwrap()])
        );
        // Unset XMPP_SERVER: the JID's domain. Two pins, without colons and lowercase.
        let two = format!("{PIN},{}", "0f".repeat(32));
        let s = env(&[("XMPP_PIN", Some(&two))], false).unwrap();
        assert_eq!((s.server.as_str(), s.wifi), ("", None));
        assert!(matches!(s.trust, TrustSetting::Pins(p) if p.len() == 2));
        let s = env(
            &[("XMPP_PIN", None), ("XMPP_TRUST_FIRST_USE", Some("1"))],
            false,
        )
        .unwrap();
        assert_eq!(s.trust, TrustSetting::FirstUse(None));
    }

    #[test]
    fn each_missing_or_malformed_setting_names_its_variable() {
        for (edits, variable) in [
            (&[("XMPP_JID", None)][..], "XMPP_JID"),
            (&[("XMPP_JID", Some(""))], "XMPP_JID"),
            (&[("XMPP_JID", Some("example.test"))], "XMPP_JID"),
            (&[("XMPP_JID", Some("a b@example.test"))], "XMPP_JID"),
            (&[("XMPP_PASSWORD", None)], "XMPP_PASSWORD"),
            (&[("XMPP_SERVER", Some("10.0.0.1:99999"))], "XMPP_SERVER"),
            (&[("XMPP_SERVER", Some("bad_host"))], "XMPP_SERVER"),
            (&[("XMPP_SERVER", Some("300.1.1.1"))], "XMPP_SERVER"),
            (&[("XMPP_PIN", Some("AB:CD"))], "XMPP_PIN"),
            (&[("XMPP_PIN", Some(&format!("{PIN},")))], "XMPP_PIN"),
            (&[("XMPP_PIN", None)], "XMPP_CA"),
            (&[("XMPP_CA", Some("/nonexistent/ca.pem"))], "XMPP_CA"),
            (&[("XMPP_TRUST_FIRST_USE", Some("1"))], "XMPP_PIN"),
            (
                &[("XMPP_TRUST_FIRST_USE", Some("yes"))],
                "XMPP_TRUST_FIRST_USE",
            ),
            (&[("XMPP_RESOURCE", Some("a\u{7}b"))], "XMPP_RESOURCE"),
            (&[("XMPP_REPORT_TO", Some("@x"))], "XMPP_REPORT_TO"),
            (&[("XMPP_PERIOD_MS", Some("0"))], "XMPP_PERIOD_MS"),
            (&[("XMPP_PERIOD_MS", Some("1.5s"))], "XMPP_PERIOD_MS"),
            (&[("XMPP_NTP", Some("pool.ntp.org:123"))], "XMPP_NTP"),
            (&[("XMPP_NTP", Some("bad_host"))], "XMPP_NTP"),
            (&[("WIFI_SSID", None)], "WIFI_SSID"),
            (&[("WIFI_SSID", Some(&"x".repeat(33)))], "WIFI_SSID"),
            (&[("WIFI_PASSWORD", Some("short"))], "WIFI_PASSWORD"),
        ] {
            assert_eq!(refused(edits), variable, "{edits:?}");
        }
    }

    #[test]
    fn a_pin_and_a_ca_together_are_refused() {
        let dir = std::env::temp_dir().join(format!("fw-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.der");
        std::fs::write(&ca, DER).unwrap();
        let ca = ca.to_str().unwrap();
        assert_eq!(refused(&[("XMPP_CA", Some(ca))]), "XMPP_PIN");
        let s = env(&[("XMPP_CA", Some(ca)), ("XMPP_PIN", None)], false).unwrap();
        assert_eq!(s.trust, TrustSetting::Anchor(ca.into()));
        let s = env(
            &[
                ("XMPP_CA", Some(ca)),
                ("XMPP_PIN", None),
                ("XMPP_TRUST_FIRST_USE", Some("1")),
            ],
            false,
        )
        .unwrap();
        assert_eq!(s.trust, TrustSetting::FirstUse(Some(ca.into())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_error_names_the_variable_and_what_it_expects() {
        let e = env(&[("XMPP_SERVER", Some("x:0"))], false).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("XMPP_SERVER: "), "{text}");
        assert!(text.contains("a.b.c.d[:port]"), "{text}");
    }
}
