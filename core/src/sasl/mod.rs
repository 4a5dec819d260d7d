//! SASL (RFC 6120 §6): mechanisms for both roles, as pure byte exchanges.
//!
//! Nothing here knows XML: the state machines wrap what these types produce in `<auth>`,
//! `<challenge>`, `<response>`, `<success>` and `<failure>`, using [`base64`] for the
//! element text. Every payload in and out of this module is raw bytes, never base64.
//!
//! # API
//!
//! Choosing (client, §6.3.3–§6.3.4, see [`select`](mod@select)):
//!
//! ```text
//! select(offered: &[String], server_cb_types: Option<&[String]>, tls: bool,
//!        cb: &ChannelBindingData, creds: CredentialKind, policy: &SaslPolicy)
//!     -> Result<Mechanism, SaslError>
//! choose(...same...) -> Result<Selection, SaslError>   // + the gs2 channel-binding flag
//! check_offered(mechanism, offered: &[String]) -> Result<(), SaslError>  // pipelined <auth>
//! ```
//!
//! Authenticating (client, [`ClientMechanism`]):
//!
//! ```text
//! ClientMechanism::new(&Selection, Credentials, &ChannelBindingData, &SaslPolicy, &mut rng)
//! ClientMechanism::with_nonce(&Selection, Credentials, &ChannelBindingData, &SaslPolicy, &str)
//!   .initial_response() -> Result<Option<Vec<u8>>, SaslError>   // payload of <auth>
//!   .challenge(&[u8])   -> Result<Vec<u8>, SaslError>           // <challenge> -> <response>
//!   .success(Option<&[u8]>) -> Result<(), SaslError>            // <success>: SCRAM v= checked
//!   .failure(SaslFailure) -> SaslError                          // <failure>
//!   .cache_entry() -> Option<ScramCacheEntry>                   // after a verified success
//! ```
//!
//! Authenticating (server, [`ServerMechanism`]):
//!
//! ```text
//! ServerOptions::offer(tls, &ChannelBindingData, external_identity) -> Vec<Mechanism>
//! ServerMechanism::start(name: &str, &ServerContext, &mut rng) -> Result<Self, SaslFailure>
//!   .step(&store, response: Option<&[u8]>) -> Result<ServerStep, SaslFailure>
//! ServerStep::Challenge(Vec<u8>) | ServerStep::Success { additional_data, authcid, authzid }
//! trait CredentialStore { scram_credentials(authcid, hash), authorize(authcid, authzid) }
//! ScramCredentials::derive(hash, password, salt, iterations); MemoryStore::add_password(..)
//! ```
//!
//! Errors: [`SaslFailure`] is one variant per condition of RFC 6120 §6.5 (what a server sends
//! and a client receives); [`SaslError`] is everything a client can run into, each with a
//! `Display` that says what to do. No `Debug` or `Display` output carries a password, a key,
//! a proof or channel-binding bytes.
//!
//! # Channel binding (RFC 5802 §6, RFC 5929, RFC 9266, XEP-0440)
//!
//! The TLS layer fills [`ChannelBindingData`]; the client binds with the first type, in the
//! order `tls-exporter`, `tls-server-end-point`, `tls-unique`, that it has data for and that
//! the server accepts (its XEP-0440 list when it sent one; any type otherwise).
//!
//! The rule against servers that offer `-PLUS` but cannot verify the binding (ejabberd 23.01
//! on TLS 1.3 offers SCRAM-SHA-1-PLUS and answers `<not-authorized/>` to both `tls-exporter`
//! and `tls-server-end-point`): with [`CbPolicy::WhenOffered`] and no XEP-0440 list, the
//! client still prefers `-PLUS`. If the server then fails it, [`ClientMechanism::failure`]
//! reports [`SaslError::ChannelBindingRejected`] instead of a bare `not-authorized`, and
//! nothing here retries on its own: not with plain SCRAM (a man in the middle who breaks
//! the binding would get exactly that retry) and never with PLAIN. A user who knows the
//! server is merely old sets [`CbPolicy::Off`] for that server, which selects plain SCRAM
//! with the gs2 flag `n`. When the server offers no `-PLUS` at all but the client could
//! bind, the client sends `y`, so a server that does support binding detects the stripped
//! offer ([`ServerMechanism`] does, and fails with `not-authorized`).
//!
//! # Not done here
//!
//! SASLprep (RFC 4013) is not applied: names and passwords go out as given (UTF-8). ASCII
//! credentials are unaffected; a non-ASCII password must already be in the form the server
//! stored it in. Secrets are dropped, not zeroised.

pub mod base64;
mod client;
mod credentials;
#[cfg(feature = "digest-md5")]
mod digest_md5;
pub mod element;
mod error;
mod scram;
pub mod select;
mod server;
mod simple;

pub use client::{ClientMechanism, Credentials};
pub use credentials::{CredentialStore, MemoryStore};
pub use error::{SaslError, SaslFailure};
pub use scram::{escape_saslname, unescape_saslname, ScramCacheEntry, ScramCredentials, ScramHash};
pub use select::{
    check_offered, choose, choose_from, select, CbPolicy, CredentialKind, Gs2CbFlag, Minimum,
    SaslPolicy, Selection,
};
pub use server::{ServerContext, ServerMechanism, ServerOptions, ServerStep};

use alloc::vec::Vec;
use core::fmt;

/// A SASL mechanism this crate knows (RFC 4422 names, case-sensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mechanism {
    /// `SCRAM-SHA-1` (RFC 5802); mandatory to implement (RFC 6120 §13.8).
    ScramSha1,
    /// `SCRAM-SHA-1-PLUS`: SCRAM-SHA-1 with channel binding (RFC 5802 §6).
    ScramSha1Plus,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-256-PLUS` (RFC 7677).
    ScramSha256Plus,
    /// `SCRAM-SHA-512` (same construction with SHA-512). Known by name always; used only
    /// with the `sha-512` feature.
    ScramSha512,
    /// `SCRAM-SHA-512-PLUS`.
    ScramSha512Plus,
    /// `PLAIN` (RFC 4616): the password in clear; only over TLS.
    Plain,
    /// `EXTERNAL` (RFC 4422 appendix A): identity from the TLS client certificate.
    External,
    /// `ANONYMOUS` (RFC 4505).
    Anonymous,
    /// `DIGEST-MD5` (RFC 2831), deprecated by RFC 6331; opt-in, client only.
    DigestMd5,
}

impl Mechanism {
    /// Every mechanism, in declaration order.
    pub const ALL: [Mechanism; 10] = [
        Mechanism::ScramSha1,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha512,
        Mechanism::ScramSha512Plus,
        Mechanism::Plain,
        Mechanism::External,
        Mechanism::Anonymous,
        Mechanism::DigestMd5,
    ];

    /// The client's preference order, strongest first (§6.3.4: the initiating entity picks
    /// in its own order). EXTERNAL leads: it is only a candidate when the TLS layer presented
    /// a client certificate, and then the key never leaves the client. Channel-bound SCRAM
    /// comes before unbound SCRAM, longer hashes before shorter; DIGEST-MD5 before PLAIN
    /// because it does not hand the password to the server; ANONYMOUS authenticates nobody.
    pub const PREFERENCE: [Mechanism; 10] = [
        Mechanism::External,
        Mechanism::ScramSha512Plus,
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha512,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::DigestMd5,
        Mechanism::Plain,
        Mechanism::Anonymous,
    ];

    /// The registered name, e.g. `SCRAM-SHA-1-PLUS`.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::ScramSha512Plus => "SCRAM-SHA-512-PLUS",
            Mechanism::Plain => "PLAIN",
            Mechanism::External => "EXTERNAL",
            Mechanism::Anonymous => "ANONYMOUS",
            Mechanism::DigestMd5 => "DIGEST-MD5",
        }
    }

    /// The mechanism with this exact name; `None` for names this crate does not implement
    /// (`KERBEROS_V4`, `X-OAUTH2`, ...), which callers ignore.
    pub fn from_name(name: &str) -> Option<Self> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Strength rank, higher is stronger; the reverse of [`Mechanism::PREFERENCE`].
    pub fn strength(self) -> u8 {
        let pos = Mechanism::PREFERENCE
            .iter()
            .position(|m| *m == self)
            .unwrap_or(Mechanism::PREFERENCE.len() - 1);
        (Mechanism::PREFERENCE.len() - 1 - pos) as u8
    }

    /// The SCRAM hash, for the six SCRAM mechanisms (`None` for SCRAM-SHA-512 without the
    /// `sha-512` feature: this build does not implement it).
    pub const fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            #[cfg(feature = "sha-512")]
            Mechanism::ScramSha512 | Mechanism::ScramSha512Plus => Some(ScramHash::Sha512),
            _ => None,
        }
    }

    /// A `-PLUS` (channel-bound) mechanism.
    pub const fn is_plus(self) -> bool {
        matches!(
            self,
            Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus | Mechanism::ScramSha512Plus
        )
    }

    /// The SCRAM mechanism for `hash`, channel-bound or not.
    pub const fn scram(hash: ScramHash, plus: bool) -> Self {
        match (hash, plus) {
            (ScramHash::Sha1, false) => Mechanism::ScramSha1,
            (ScramHash::Sha1, true) => Mechanism::ScramSha1Plus,
            (ScramHash::Sha256, false) => Mechanism::ScramSha256,
            (ScramHash::Sha256, true) => Mechanism::ScramSha256Plus,
            #[cfg(feature = "sha-512")]
            (ScramHash::Sha512, false) => Mechanism::ScramSha512,
            #[cfg(feature = "sha-512")]
            (ScramHash::Sha512, true) => Mechanism::ScramSha512Plus,
        }
    }
}

/// A set of [`Mechanism`]s, such as what a server offered on the TLS-protected stream
/// (RFC 6120 §6.3.3), in two bytes: bit `i` is [`Mechanism::ALL`]`[i]`, an order that
/// therefore never changes (firmware keeps [`MechanismSet::bits`] in flash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MechanismSet(u16);

impl MechanismSet {
    /// The mechanisms among `names` that this crate knows; other names are ignored, as in
    /// a live offer (§6.3.3).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        names
            .into_iter()
            .filter_map(Mechanism::from_name)
            .fold(MechanismSet::default(), MechanismSet::with)
    }

    /// This set and `m`.
    #[must_use]
    pub fn with(self, m: Mechanism) -> Self {
        MechanismSet(self.0 | Self::bit(m))
    }

    /// Whether `m` is in the set.
    pub fn contains(self, m: Mechanism) -> bool {
        self.0 & Self::bit(m) != 0
    }

    /// The members, in [`Mechanism::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Mechanism> {
        Mechanism::ALL
            .into_iter()
            .filter(move |m| self.contains(*m))
    }

    /// The bits, for storage.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The set stored as `bits`; bits of no known mechanism are dropped.
    pub fn from_bits(bits: u16) -> Self {
        MechanismSet(bits & ((1 << Mechanism::ALL.len()) - 1))
    }

    fn bit(m: Mechanism) -> u16 {
        // ALL is in declaration order (a test holds it to that).
        1 << (m as u16)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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

/// Test helpers: a deterministic RNG and a client-against-server driver.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use alloc::string::String;

    /// xorshift64*: deterministic, NOT cryptographic; the marker trait is for tests only.
    pub(crate) struct TestRng(u64);

    impl rand_core::RngCore for TestRng {
        fn next_u32(&mut self) -> u32 {
            (self.next_u64() >> 32) as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            rand_core::impls::fill_bytes_via_next(self, dest)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl rand_core::CryptoRng for TestRng {}

    pub(crate) fn rng(seed: u64) -> TestRng {
        TestRng(seed | 1)
    }

    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Outcome {
        Success {
            authcid: String,
            authzid: Option<String>,
        },
        ServerFailed(SaslFailure),
        ClientFailed(SaslError),
    }

    /// Runs one exchange, each payload through the XML layer's base64 both ways.
    pub(crate) fn exchange<S: CredentialStore>(
        client: &mut ClientMechanism,
        server: &mut ServerMechanism,
        store: &S,
    ) -> Outcome {
        let wire = |d: Option<&[u8]>| {
            base64::decode_payload(&base64::encode_payload(d)).expect("own base64 decodes")
        };
        let mut to_server = match client.initial_response() {
            Ok(r) => wire(r.as_deref()),
            Err(e) => return Outcome::ClientFailed(e),
        };
        for _ in 0..10 {
            match server.step(store, to_server.as_deref()) {
                Err(f) => return Outcome::ServerFailed(f),
                Ok(ServerStep::Challenge(c)) => {
                    let c = wire(Some(&c)).unwrap_or_default();
                    match client.challenge(&c) {
                        Ok(r) => to_server = wire(Some(&r)),
                        Err(e) => return Outcome::ClientFailed(e),
                    }
                }
                Ok(ServerStep::Success {
                    additional_data,
                    authcid,
                    authzid,
                }) => {
                    let data = wire(additional_data.as_deref());
                    return match client.success(data.as_deref()) {
                        Ok(()) => Outcome::Success { authcid, authzid },
                        Err(e) => Outcome::ClientFailed(e),
                    };
                }
            }
        }
        panic!("exchange did not end");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_sets_keep_known_names_and_their_bits() {
        for (i, m) in Mechanism::ALL.into_iter().enumerate() {
            assert_eq!(m as usize, i, "ALL is in declaration order");
        }
        let set = MechanismSet::from_names(["PLAIN", "X-OAUTH2", "SCRAM-SHA-1", "PLAIN"]);
        assert_eq!(
            set.iter().collect::<alloc::vec::Vec<_>>(),
            [Mechanism::ScramSha1, Mechanism::Plain]
        );
        assert!(set.contains(Mechanism::Plain) && !set.contains(Mechanism::ScramSha256));
        assert_eq!(set.bits(), 0b100_0001);
        assert_eq!(MechanismSet::from_bits(set.bits()), set);
        assert_eq!(
            MechanismSet::from_bits(0xffff).iter().count(),
            Mechanism::ALL.len()
        );
        assert_eq!(MechanismSet::default().iter().count(), 0);
    }

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(Mechanism::from_name("KERBEROS_V4"), None);
        assert_eq!(
            Mechanism::from_name("scram-sha-1"),
            None,
            "names are case-sensitive"
        );
    }

    #[test]
    fn strength_order_puts_plus_above_plain_scram_above_plain() {
        use Mechanism::*;
        assert!(ScramSha1Plus.strength() > ScramSha512.strength());
        assert!(ScramSha256.strength() > ScramSha1.strength());
        assert!(ScramSha1.strength() > DigestMd5.strength());
        assert!(DigestMd5.strength() > Plain.strength());
        assert!(Plain.strength() > Anonymous.strength());
        assert_eq!(Anonymous.strength(), 0);
    }

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
