//! Channel binding (RFC 5056; RFC 5802 §6 for SCRAM): the types a client can bind with,
//! `tls-exporter` (RFC 9266), `tls-server-end-point` and `tls-unique` (RFC 5929), and the
//! data the TLS layer gives for each.

use alloc::vec::Vec;
use core::fmt;

/// A channel-binding type (RFC 5056 registry names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChannelBindingType {
    /// `tls-exporter` (RFC 9266): the TLS exporter with label `EXPORTER-Channel-Binding`,
    /// empty context, 32 bytes. The type for TLS 1.3 (and TLS 1.2 with extended master secret).
    TlsExporter,
    /// `tls-server-end-point` (RFC 5929 §4): a hash of the server's certificate. Binds to the
    /// certificate, not the session; the only type embedded-tls can give.
    TlsServerEndPoint,
    /// `tls-unique` (RFC 5929 §3): TLS 1.2 and older only (RFC 9266 §3).
    TlsUnique,
}

impl ChannelBindingType {
    /// The client's preference order.
    pub const PREFERENCE: [ChannelBindingType; 3] = [
        ChannelBindingType::TlsExporter,
        ChannelBindingType::TlsServerEndPoint,
        ChannelBindingType::TlsUnique,
    ];

    /// The registered name, e.g. `tls-exporter`.
    pub const fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
            ChannelBindingType::TlsUnique => "tls-unique",
        }
    }

    /// The type with this exact name.
    pub fn from_name(name: &str) -> Option<Self> {
        ChannelBindingType::PREFERENCE
            .into_iter()
            .find(|t| t.name() == name)
    }
}

impl fmt::Display for ChannelBindingType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The RFC 9266 exporter label for `tls-exporter`.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// The length of `tls-exporter` data (RFC 9266 §2).
pub const TLS_EXPORTER_LEN: usize = 32;

/// Channel-binding data the TLS layer has for this connection; empty before TLS.
///
/// Both roles fill it the same way (each side computes the same bytes). `Debug` shows which
/// types are present, never the bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChannelBindingData {
    /// `tls-exporter`: `export_keying_material(32, "EXPORTER-Channel-Binding", empty
    /// context)` ([`TLS_EXPORTER_LABEL`]); rustls gives it, embedded-tls cannot. On TLS 1.2
    /// only with the extended master secret (RFC 9266 §2, RFC 7627); else leave it `None`.
    pub exporter: Option<[u8; TLS_EXPORTER_LEN]>,
    /// `tls-server-end-point`: the hash of the server's leaf certificate (DER) per RFC 5929
    /// §4.1: SHA-256 when the certificate is signed with MD5 or SHA-1, otherwise the hash of
    /// its signature algorithm.
    pub server_end_point: Option<Vec<u8>>,
    /// `tls-unique`: the first Finished message of a TLS ≤ 1.2 handshake. Neither rustls nor
    /// embedded-tls exposes it; here for TLS layers that do. Must stay `None` on TLS 1.3.
    pub unique: Option<Vec<u8>>,
}

impl ChannelBindingData {
    /// No channel binding (before TLS, or a TLS layer that exposes nothing).
    pub fn none() -> Self {
        ChannelBindingData::default()
    }

    /// The data for one type, if the TLS layer supplied it.
    pub fn get(&self, cb_type: ChannelBindingType) -> Option<&[u8]> {
        match cb_type {
            ChannelBindingType::TlsExporter => self.exporter.as_ref().map(|e| &e[..]),
            ChannelBindingType::TlsServerEndPoint => self.server_end_point.as_deref(),
            ChannelBindingType::TlsUnique => self.unique.as_deref(),
        }
    }

    /// Whether any type is available.
    pub fn is_empty(&self) -> bool {
        self.available().next().is_none()
    }

    /// The available types, in preference order (also what a server advertises, XEP-0440).
    pub fn available(&self) -> impl Iterator<Item = ChannelBindingType> + '_ {
        ChannelBindingType::PREFERENCE
            .into_iter()
            .filter(move |t| self.get(*t).is_some())
    }
}

impl fmt::Debug for ChannelBindingData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelBindingData")
            .field("exporter", &self.exporter.is_some())
            .field("server_end_point", &self.server_end_point.is_some())
            .field("unique", &self.unique.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_binding_type_names_are_rfc_names() {
        assert_eq!(ChannelBindingType::TlsExporter.name(), "tls-exporter");
        assert_eq!(
            ChannelBindingType::from_name("tls-server-end-point"),
            Some(ChannelBindingType::TlsServerEndPoint)
        );
        assert_eq!(
            ChannelBindingType::from_name("tls-unique"),
            Some(ChannelBindingType::TlsUnique)
        );
        assert_eq!(ChannelBindingType::from_name("TLS-EXPORTER"), None);
    }

    #[test]
    fn channel_binding_debug_hides_bytes() {
        let cb = ChannelBindingData {
            exporter: Some([0xAB; 32]),
            ..Default::default()
        };
        let s = alloc::format!("{cb:?}");
        assert!(
            !s.contains("171") && !s.to_lowercase().contains("ab, "),
            "{s}"
        );
    }
}
