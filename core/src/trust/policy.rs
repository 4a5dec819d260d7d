//! The one decision every TLS backend calls (RFC 6120 §13.7.2): identity, dates, then
//! trust by anchors or pins.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::cert::{EndEntityCertificate, PresentedId};
use super::fingerprint::Fingerprint;
use super::name::{
    bare_jid_equals, cn_matches, dns_id_matches, srv_id_matches, xmpp_addr_matches_domain,
};
use super::pin::{Pin, PinStore};
use super::{CertError, PinChange, ReferenceIdentity, UnixTime};

/// How the presented certificate earns trust.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trust {
    /// PKIX: the chain must lead to a configured trust anchor (a CA bundle, or the
    /// platform roots on the host). The seed's case (1); unknown CAs and self-signed
    /// certificates fail ([`CertError::UnknownIssuer`], [`CertError::SelfSigned`]).
    Anchors,
    /// Only these keys (SHA-256 of the SubjectPublicKeyInfo), configured out of band. The
    /// chain is not consulted; identity, dates and (in the backend) the handshake
    /// signature still are.
    Pinned(Vec<Fingerprint>),
    /// Trust on first use, with a [`PinStore`]. When a pin exists for the domain the
    /// presented key must equal it, whatever the chain says ([`CertError::PinChanged`]
    /// otherwise; never a silent accept). Without a pin, a certificate that chains to an
    /// anchor is pinned and accepted; any other is handled by [`FirstUse`].
    TrustOnFirstUse(FirstUse),
    /// Accept any certificate: no identity, date, chain or pin check. Only with the
    /// `insecure-skip-verify` feature, for throwaway test servers; logged every time.
    #[cfg(feature = "insecure-skip-verify")]
    InsecureSkipVerify,
}

/// What `Trust::TrustOnFirstUse` does with a first-seen certificate no anchor vouches for
/// (the seed's cases (2) unknown CA and (3) self-signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// Pin it and accept (classic TOFU; logged with its fingerprint).
    Record,
    /// Refuse with [`CertError::NotTrustedFirstUse`] carrying the fingerprints; an
    /// interactive client shows them and calls
    /// [`approve_first_use`](super::approve_first_use). Automatic clients stay closed.
    AskUser,
}

/// What to do about validity dates when the caller has no clock (`now == None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockPolicy {
    /// Refuse with [`CertError::NoClock`]. The default.
    #[default]
    Required,
    /// Skip the date checks (logged on every connection). For devices without a real-time
    /// clock whose owner chose this; an expired or stolen certificate then still verifies.
    SkipValidityWithoutClock,
}

/// The certificate rules for one kind of connection. Every backend (rustls on the host,
/// embedded-tls on firmware and wasm) calls [`CertificatePolicy::verify_server`] with what
/// it saw, so the rules live here only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePolicy {
    /// How the certificate earns trust.
    pub trust: Trust,
    /// Consult the subject CN when the certificate has **no** subjectAltName identifiers
    /// (RFC 6125 §6.4.4; exact match, no wildcard). Off by default: only for old servers
    /// whose certificates predate SANs; CAs have not issued such certificates for years.
    pub allow_cn_fallback: bool,
    /// Validity dates without a clock.
    pub clock: ClockPolicy,
}

impl Default for CertificatePolicy {
    fn default() -> Self {
        CertificatePolicy {
            trust: Trust::Anchors,
            allow_cn_fallback: false,
            clock: ClockPolicy::Required,
        }
    }
}

/// What the backend's own PKIX chain check (signatures, issuer chaining, basic
/// constraints, key usage, and dates when it has a clock; **not** the name) concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PkixOutcome {
    /// The chain leads to a configured anchor.
    Valid,
    /// No check ran (no anchors configured). Fails closed where a chain is needed.
    NotChecked,
    /// No path to a configured anchor.
    UnknownIssuer,
    /// A certificate in the chain has expired.
    Expired,
    /// A certificate in the chain is not valid yet.
    NotYetValid,
    /// A signature in the chain does not verify.
    BadSignature,
    /// A certificate is revoked.
    Revoked,
    /// Wrong key usage / extended key usage, or a CA certificate used as end entity.
    WrongUsage,
    /// Anything else, as the backend described it.
    Other(String),
}

impl fmt::Display for PkixOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkixOutcome::Valid => f.write_str("valid"),
            PkixOutcome::NotChecked => f.write_str("no chain check was run"),
            PkixOutcome::UnknownIssuer => f.write_str("unknown issuer"),
            PkixOutcome::Expired => f.write_str("a certificate in the chain expired"),
            PkixOutcome::NotYetValid => f.write_str("a certificate in the chain is not valid yet"),
            PkixOutcome::BadSignature => f.write_str("a signature in the chain does not verify"),
            PkixOutcome::Revoked => f.write_str("a certificate is revoked"),
            PkixOutcome::WrongUsage => {
                f.write_str("a certificate is used for a purpose it is not for")
            }
            PkixOutcome::Other(s) => f.write_str(s),
        }
    }
}

/// The backend's chain check, run only when the policy needs it (a configured or stored
/// pin makes it unnecessary). Implemented for a ready [`PkixOutcome`] and for any
/// `FnOnce() -> PkixOutcome`.
pub trait ChainCheck {
    /// Run the check.
    fn check(self) -> PkixOutcome;
}

impl ChainCheck for PkixOutcome {
    fn check(self) -> PkixOutcome {
        self
    }
}

impl<F: FnOnce() -> PkixOutcome> ChainCheck for F {
    fn check(self) -> PkixOutcome {
        self()
    }
}

/// Why the certificate was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustBasis {
    /// The chain leads to a configured anchor.
    Anchors,
    /// The key is one of the configured pins (`Trust::Pinned`).
    ConfiguredPin,
    /// The key equals the pin stored on an earlier connection.
    StoredPin,
    /// First use, no anchor vouched: pinned now (`FirstUse::Record`).
    FirstUse,
    /// Nothing was checked (`insecure-skip-verify`).
    #[cfg(feature = "insecure-skip-verify")]
    InsecureSkipVerify,
}

/// An accepted certificate.
///
/// The backend must still verify the handshake signature (TLS 1.3 CertificateVerify,
/// TLS 1.2 ServerKeyExchange) with the presented key: pinning replaces the chain, never
/// the proof that the peer holds the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Why it is trusted.
    pub basis: TrustBasis,
    /// The presented identifier that matched (`None` only for `InsecureSkipVerify`).
    pub identity: Option<PresentedId>,
    /// SHA-256 of the key and of the certificate.
    pub pin: Pin,
    /// `true` if a pin was written to the store by this call.
    pub pinned_now: bool,
    /// `false` when dates were skipped for lack of a clock (`SkipValidityWithoutClock`).
    pub validity_checked: bool,
    /// `tls-server-end-point` data (RFC 5929), `None` where it is undefined.
    pub tls_server_end_point: Option<Vec<u8>>,
}

/// A verified client certificate, for SASL EXTERNAL on the receiving entity (RFC 6120
/// §6.4, XEP-0178).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// XmppAddr values (bare JIDs for a client; XEP-0178 §3).
    pub xmpp_addrs: Vec<String>,
    /// DNS-IDs (a server certificate used as a client certificate, S2S).
    pub dns_ids: Vec<String>,
    /// SHA-256 of the key and of the certificate.
    pub pin: Pin,
}

impl ClientCertificate {
    /// `true` when the certificate authorizes `jid` (an EXTERNAL authzid, or the account
    /// the server derived): some XmppAddr names the same bare JID. Domains compare per
    /// RFC 7622 §3.2; ASCII localparts case-insensitively (apply PRECIS to non-ASCII
    /// localparts before calling).
    pub fn authorizes(&self, jid: &str) -> bool {
        self.xmpp_addrs.iter().any(|a| bare_jid_equals(a, jid))
    }

    /// The single identity to use when the client sent no authzid (XEP-0178 §4): the only
    /// XmppAddr, or `None` when there are none or several.
    pub fn sole_xmpp_addr(&self) -> Option<&str> {
        match self.xmpp_addrs.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

impl CertificatePolicy {
    /// PKIX to configured anchors; no CN fallback; a clock required.
    pub fn anchors() -> Self {
        Self::default()
    }

    /// Trust on first use with `first_use` for certificates no anchor vouches for.
    pub fn trust_on_first_use(first_use: FirstUse) -> Self {
        CertificatePolicy {
            trust: Trust::TrustOnFirstUse(first_use),
            ..Self::default()
        }
    }

    /// Only these SubjectPublicKeyInfo SHA-256 values.
    pub fn pinned(spki_sha256: Vec<Fingerprint>) -> Self {
        CertificatePolicy {
            trust: Trust::Pinned(spki_sha256),
            ..Self::default()
        }
    }

    /// Does this policy ever need the backend's chain check? (`false` for `Pinned`.)
    pub fn uses_anchors(&self) -> bool {
        !matches!(self.trust, Trust::Pinned(_))
    }

    /// Decide about a peer's certificate (RFC 6120 §13.7.2). The initiating entity calls it
    /// for the receiving entity's certificate; a receiving server calls it for a connecting
    /// server's certificate with `ReferenceIdentity::server_to_server(from_domain)`.
    ///
    /// * `chain`: the presented chain, DER, end entity first.
    /// * `reference`: from configuration, never from DNS or the stream.
    /// * `pkix`: the backend's chain check without name check; run lazily.
    /// * `now`: seconds since the epoch, or `None` without a clock (see [`ClockPolicy`]).
    /// * `pins`: the pin store (`NoPins` when the policy does not pin).
    ///
    /// Order: identity, dates, then trust. A certificate is never pinned before its name and
    /// dates pass.
    pub fn verify_server(
        &self,
        chain: &[&[u8]],
        reference: &ReferenceIdentity,
        pkix: impl ChainCheck,
        now: Option<UnixTime>,
        pins: &mut dyn PinStore,
    ) -> Result<Verdict, CertError> {
        let leaf_der = chain.first().ok_or(CertError::EmptyChain)?;
        let leaf = EndEntityCertificate::parse(leaf_der)?;
        let pin = leaf.pin();
        let end_point = leaf.tls_server_end_point_data();

        #[cfg(feature = "insecure-skip-verify")]
        if self.trust == Trust::InsecureSkipVerify {
            warn!(
                "INSECURE: certificate for {} accepted without any verification",
                reference.domain()
            );
            return Ok(Verdict {
                basis: TrustBasis::InsecureSkipVerify,
                identity: self.match_identity(&leaf, reference).ok(),
                pin,
                pinned_now: false,
                validity_checked: false,
                tls_server_end_point: end_point,
            });
        }

        let identity = self.match_identity(&leaf, reference)?;
        let validity_checked = self.check_dates(&leaf, now)?;
        let domain = reference.domain();

        let (basis, pinned_now) = match &self.trust {
            Trust::Anchors => match pkix.check() {
                PkixOutcome::Valid => (TrustBasis::Anchors, false),
                other => return Err(chain_error(other, &leaf, chain.len())),
            },
            Trust::Pinned(keys) => {
                if keys.contains(&pin.spki_sha256) {
                    (TrustBasis::ConfiguredPin, false)
                } else {
                    return Err(CertError::PinMismatch {
                        domain: domain.into(),
                        expected: keys.clone(),
                        spki: pin.spki_sha256,
                        cert: pin.cert_sha256,
                    });
                }
            }
            Trust::TrustOnFirstUse(first_use) => match pins.load(domain) {
                Some(old) if old.spki_sha256 == pin.spki_sha256 => {
                    if old.cert_sha256 != pin.cert_sha256 {
                        // Same key, renewed certificate: keep the stored certificate hash
                        // current. Trust does not depend on it, so a failed write is
                        // only logged.
                        debug!("same key, new certificate for {}: pin refreshed", domain);
                        if pins.store(domain, pin).is_err() {
                            warn!("could not refresh the certificate hash for {}", domain);
                        }
                    }
                    (TrustBasis::StoredPin, false)
                }
                Some(old) => {
                    warn!("certificate key for {} changed since it was pinned", domain);
                    return Err(CertError::PinChanged(Box::new(PinChange {
                        domain: domain.into(),
                        old_spki: old.spki_sha256,
                        new_spki: pin.spki_sha256,
                        old_cert: old.cert_sha256,
                        new_cert: pin.cert_sha256,
                    })));
                }
                None => match (pkix.check(), first_use) {
                    (PkixOutcome::Valid, _) => {
                        pins.store(domain, pin).map_err(CertError::PinStore)?;
                        (TrustBasis::Anchors, true)
                    }
                    (_, FirstUse::Record) => {
                        pins.store(domain, pin).map_err(CertError::PinStore)?;
                        warn!(
                            "trust on first use: pinned a key no CA vouches for, for {}",
                            domain
                        );
                        (TrustBasis::FirstUse, true)
                    }
                    (_, FirstUse::AskUser) => {
                        return Err(CertError::NotTrustedFirstUse {
                            domain: domain.into(),
                            spki: pin.spki_sha256,
                            cert: pin.cert_sha256,
                            self_signed: leaf.is_self_issued(),
                        })
                    }
                },
            },
            #[cfg(feature = "insecure-skip-verify")]
            Trust::InsecureSkipVerify => unreachable!("handled above"),
        };

        Ok(Verdict {
            basis,
            identity: Some(identity),
            pin,
            pinned_now,
            validity_checked,
            tls_server_end_point: end_point,
        })
    }

    /// Decide about a client certificate on the receiving entity, for SASL EXTERNAL
    /// (RFC 6120 §6.4, XEP-0178). Trust comes from the anchors (`Anchors`, and
    /// `TrustOnFirstUse`, which a server does not apply to its clients) or from configured
    /// pins (`Pinned`). Returns the identities to authorize against; the EXTERNAL
    /// mechanism checks the authzid with [`ClientCertificate::authorizes`].
    ///
    /// For server-to-server, verify the peer with [`CertificatePolicy::verify_server`]
    /// and `ReferenceIdentity::server_to_server(peer_domain)` instead.
    pub fn verify_client(
        &self,
        chain: &[&[u8]],
        pkix: impl ChainCheck,
        now: Option<UnixTime>,
    ) -> Result<ClientCertificate, CertError> {
        let leaf_der = chain.first().ok_or(CertError::EmptyChain)?;
        let leaf = EndEntityCertificate::parse(leaf_der)?;
        let pin = leaf.pin();
        let mut xmpp_addrs = Vec::new();
        let mut dns_ids = Vec::new();
        for p in leaf.presented() {
            match p {
                PresentedId::XmppAddr(a) => xmpp_addrs.push(a.clone()),
                PresentedId::DnsId(d) => dns_ids.push(d.clone()),
                _ => {}
            }
        }
        let identity = ClientCertificate {
            xmpp_addrs,
            dns_ids,
            pin,
        };

        #[cfg(feature = "insecure-skip-verify")]
        if self.trust == Trust::InsecureSkipVerify {
            warn!("INSECURE: client certificate accepted without any verification");
            return Ok(identity);
        }

        if identity.xmpp_addrs.is_empty() && identity.dns_ids.is_empty() {
            return Err(CertError::NoClientIdentity);
        }
        self.check_dates(&leaf, now)?;
        match &self.trust {
            Trust::Pinned(keys) => {
                if !keys.contains(&pin.spki_sha256) {
                    return Err(CertError::PinMismatch {
                        domain: String::new(),
                        expected: keys.clone(),
                        spki: pin.spki_sha256,
                        cert: pin.cert_sha256,
                    });
                }
            }
            _ => match pkix.check() {
                PkixOutcome::Valid => {}
                other => return Err(chain_error(other, &leaf, chain.len())),
            },
        }
        Ok(identity)
    }

    /// RFC 6125 §6.4 / RFC 6120 §13.7.2.1: the first presented identifier that matches.
    fn match_identity(
        &self,
        leaf: &EndEntityCertificate,
        reference: &ReferenceIdentity,
    ) -> Result<PresentedId, CertError> {
        let domain = reference.domain();
        let cn_allowed = self.allow_cn_fallback && !leaf.has_san_identifiers();
        let found = leaf.presented().iter().find(|p| match p {
            PresentedId::DnsId(d) => dns_id_matches(d, domain),
            PresentedId::SrvId(s) => srv_id_matches(s, domain, reference.service()),
            PresentedId::XmppAddr(a) => xmpp_addr_matches_domain(a, domain),
            PresentedId::CommonName(cn) => cn_allowed && cn_matches(cn, domain),
        });
        match found {
            Some(id) => {
                if matches!(id, PresentedId::CommonName(_)) {
                    warn!("certificate for {} matched by CN fallback only", domain);
                }
                Ok(id.clone())
            }
            None => Err(CertError::NameMismatch {
                reference: domain.into(),
                presented: leaf.presented().to_vec(),
            }),
        }
    }

    /// Validity dates of the end entity. `Ok(false)` when skipped by clock policy.
    fn check_dates(
        &self,
        leaf: &EndEntityCertificate,
        now: Option<UnixTime>,
    ) -> Result<bool, CertError> {
        match now {
            Some(now) => {
                if now < leaf.not_before() {
                    return Err(CertError::NotYetValid {
                        not_before: leaf.not_before(),
                        now,
                    });
                }
                if now > leaf.not_after() {
                    return Err(CertError::Expired {
                        not_after: leaf.not_after(),
                        now,
                    });
                }
                Ok(true)
            }
            None => match self.clock {
                ClockPolicy::Required => Err(CertError::NoClock),
                ClockPolicy::SkipValidityWithoutClock => {
                    warn!("no clock: certificate validity dates NOT checked (policy choice)");
                    Ok(false)
                }
            },
        }
    }
}

/// Map a failed chain check to the error a user can act on.
fn chain_error(outcome: PkixOutcome, leaf: &EndEntityCertificate, chain_len: usize) -> CertError {
    let pin = leaf.pin();
    match outcome {
        PkixOutcome::UnknownIssuer if leaf.is_self_issued() && chain_len == 1 => {
            CertError::SelfSigned {
                spki: pin.spki_sha256,
                cert: pin.cert_sha256,
            }
        }
        PkixOutcome::UnknownIssuer => CertError::UnknownIssuer {
            spki: pin.spki_sha256,
            cert: pin.cert_sha256,
        },
        other => CertError::ChainInvalid { outcome: other },
    }
}
