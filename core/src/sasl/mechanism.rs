//! The SASL mechanisms this crate knows (RFC 4422 §3.1 names, offered in `<mechanisms/>`,
//! RFC 6120 §6.3), the client's order of preference among them, and a two-byte set of them.

use core::fmt;

use super::scram::ScramHash;

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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn mechanism_sets_keep_known_names_and_their_bits() {
        for (i, m) in Mechanism::ALL.into_iter().enumerate() {
            assert_eq!(m as usize, i, "ALL is in declaration order");
        }
        let set = MechanismSet::from_names(["PLAIN", "X-OAUTH2", "SCRAM-SHA-1", "PLAIN"]);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
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
}
