//! Reference identity and the matching rules of RFC 6120 §13.7.2.1 / RFC 6125 §6.
//!
//! Domains compare as RFC 7622 §3.2 domainparts: ASCII case-insensitively, with one trailing
//! dot ignored, internationalized labels in their A-label (`xn--…`) form. Without the `idna`
//! feature a reference must already be ASCII; U-labels are refused with
//! [`ReferenceError::NotAscii`] rather than compared wrongly.

use alloc::string::String;
use core::fmt;

use crate::jid::{ipv4_octets, ipv6_groups, Jid};

/// Which XMPP service the reference identity names: the SRV-ID service label
/// (RFC 6120 §13.7.1.2, RFC 6125 §6.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// A client connecting to its server: SRV-ID `_xmpp-client.DOMAIN`.
    Client,
    /// A server connecting to a peer server: SRV-ID `_xmpp-server.DOMAIN`.
    Server,
}

impl Service {
    /// The SRV service label, `_xmpp-client` or `_xmpp-server`.
    pub fn srv_label(self) -> &'static str {
        match self {
            Service::Client => "_xmpp-client",
            Service::Server => "_xmpp-server",
        }
    }
}

/// What the certificate must be for: the XMPP domain the user configured.
///
/// RFC 6120 §13.7.2.1 and RFC 6125 §6.2.1: the reference identity is the domain the user
/// typed (the domainpart of the account JID, or for S2S the peer domain of the stream),
/// **never** a DNS SRV target, a `<see-other-host/>` redirect or anything else learned
/// over the network. Build it from configuration only; the connection layer may dial
/// `xmpp.hosting.example` but still verifies against `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferenceIdentity {
    domain: String,
    service: Service,
}

impl ReferenceIdentity {
    /// A reference identity for `configured_domain` (normalized: lowercase A-labels, no
    /// trailing dot).
    pub fn new(configured_domain: &str, service: Service) -> Result<Self, ReferenceError> {
        Ok(ReferenceIdentity {
            domain: normalize_reference(configured_domain)?,
            service,
        })
    }

    /// Client-to-server: the domainpart of the user's JID, SRV-ID `_xmpp-client`.
    pub fn client_to_server(configured_domain: &str) -> Result<Self, ReferenceError> {
        Self::new(configured_domain, Service::Client)
    }

    /// Server-to-server: the peer domain, SRV-ID `_xmpp-server`.
    pub fn server_to_server(peer_domain: &str) -> Result<Self, ReferenceError> {
        Self::new(peer_domain, Service::Server)
    }

    /// The normalized domain (lowercase, A-labels, no trailing dot). Also the key of the
    /// pin store.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The service whose SRV-ID matches.
    pub fn service(&self) -> Service {
        self.service
    }
}

impl fmt::Display for ReferenceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.domain)
    }
}

/// A configured domain that cannot be a reference identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Empty domain.
    Empty,
    /// Longer than 253 octets (RFC 1035 §2.3.4) after normalization.
    TooLong,
    /// An empty label (`a..b`, leading dot).
    EmptyLabel,
    /// A label longer than 63 octets.
    LabelTooLong,
    /// A character outside letters, digits and `-` (RFC 5890 LDH rule).
    InvalidCharacter(char),
    /// A label that starts or ends with `-`.
    HyphenAtLabelEdge,
    /// Contains `*`: a reference identity is never a wildcard.
    Wildcard,
    /// An IP address literal: this policy matches DNS domains only (no IP-ID).
    IpAddress,
    /// Non-ASCII (a U-label) and the `idna` feature is off: give the A-label form.
    NotAscii,
    /// The `idna` conversion to A-labels failed (not a valid IDN).
    InvalidIdn,
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            // Without the `error-text` feature: the rule as a short name.
            return match self {
                ReferenceError::Empty => f.write_str("empty"),
                ReferenceError::TooLong => f.write_str("too-long"),
                ReferenceError::EmptyLabel => f.write_str("empty-label"),
                ReferenceError::LabelTooLong => f.write_str("label-too-long"),
                ReferenceError::InvalidCharacter(c) => {
                    write!(f, "invalid-character {}", crate::jid::CodePoint(*c))
                }
                ReferenceError::HyphenAtLabelEdge => f.write_str("hyphen-at-label-edge"),
                ReferenceError::Wildcard => f.write_str("wildcard"),
                ReferenceError::IpAddress => f.write_str("ip-address"),
                ReferenceError::NotAscii => f.write_str("not-ascii"),
                ReferenceError::InvalidIdn => f.write_str("invalid-idn"),
            };
        }
        match self {
            ReferenceError::Empty => f.write_str("the configured XMPP domain is empty"),
            ReferenceError::TooLong => {
                f.write_str("the configured XMPP domain is longer than 253 characters")
            }
            ReferenceError::EmptyLabel => {
                f.write_str("the configured XMPP domain has an empty label (`..` or a leading dot)")
            }
            ReferenceError::LabelTooLong => {
                f.write_str("the configured XMPP domain has a label longer than 63 characters")
            }
            ReferenceError::InvalidCharacter(c) => write!(
                f,
                "the configured XMPP domain contains {c:?}; only letters, digits, `-` and `.` \
                 are allowed (is it a JID or URL instead of a domain?)"
            ),
            ReferenceError::HyphenAtLabelEdge => {
                f.write_str("a label of the configured XMPP domain starts or ends with `-`")
            }
            ReferenceError::Wildcard => {
                f.write_str("the configured XMPP domain contains `*`; configure the real domain")
            }
            ReferenceError::IpAddress => f.write_str(
                "the configured XMPP domain is an IP address; certificates are matched against \
                 DNS domains only, configure the domain name",
            ),
            ReferenceError::NotAscii => f.write_str(
                "the configured XMPP domain is not ASCII: give its A-label (punycode) form, \
                 e.g. `xn--bcher-kva.example` for `bücher.example`, or build with the `idna` \
                 feature to have it converted",
            ),
            ReferenceError::InvalidIdn => f.write_str(
                "the configured XMPP domain is not a valid internationalized domain name",
            ),
        }
    }
}

impl core::error::Error for ReferenceError {}

/// RFC 7622 §3.2 / RFC 5890: normalize a configured domain to lowercase A-labels.
pub(crate) fn normalize_reference(input: &str) -> Result<String, ReferenceError> {
    let trimmed = input.strip_suffix('.').unwrap_or(input);
    if trimmed.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if trimmed.contains('*') {
        return Err(ReferenceError::Wildcard);
    }
    // The JID module's address parsers, not `core::net`'s (~3 KB of code in every image).
    if trimmed.starts_with('[') || ipv4_octets(trimmed).is_some() || ipv6_groups(trimmed).is_some()
    {
        return Err(ReferenceError::IpAddress);
    }
    let ascii = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        to_a_labels(trimmed)?
    };
    check_ldh(&ascii)?;
    Ok(ascii)
}

#[cfg(feature = "idna")]
fn to_a_labels(unicode: &str) -> Result<String, ReferenceError> {
    let out = idna::domain_to_ascii_strict(unicode).map_err(|_| ReferenceError::InvalidIdn)?;
    Ok(out.to_ascii_lowercase())
}

#[cfg(not(feature = "idna"))]
fn to_a_labels(_unicode: &str) -> Result<String, ReferenceError> {
    Err(ReferenceError::NotAscii)
}

fn check_ldh(domain: &str) -> Result<(), ReferenceError> {
    if domain.len() > 253 {
        return Err(ReferenceError::TooLong);
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(ReferenceError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(ReferenceError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(ReferenceError::InvalidCharacter(c));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ReferenceError::HyphenAtLabelEdge);
        }
    }
    Ok(())
}

/// A presented DNS name, lowercased, one trailing dot removed; `None` if it cannot be a
/// DNS name (non-ASCII, empty labels).
fn normalize_presented(presented: &str) -> Option<String> {
    let p = presented.strip_suffix('.').unwrap_or(presented);
    if p.is_empty() || !p.is_ascii() || p.split('.').any(str::is_empty) {
        return None;
    }
    Some(p.to_ascii_lowercase())
}

/// DNS-ID rule (RFC 6125 §6.4.1, §6.4.3 as restricted here): exact match, or a wildcard
/// that is the whole left-most label (`*.example.org`), matching exactly one label (never
/// the bare `example.org`, never `a.b.example.org`), over a base of at least two labels.
/// Partial wildcards (`x*.example.org`) never match.
pub(crate) fn dns_id_matches(presented: &str, reference: &str) -> bool {
    let Some(p) = normalize_presented(presented) else {
        return false;
    };
    match p.strip_prefix("*.") {
        Some(base) => {
            if base.contains('*') || base.split('.').count() < 2 {
                return false;
            }
            match reference.split_once('.') {
                Some((first, rest)) => !first.is_empty() && rest == base,
                None => false,
            }
        }
        None => !p.contains('*') && p == reference,
    }
}

/// SRV-ID rule (RFC 6125 §6.5.1, RFC 4985): `_service.DOMAIN`, service label equal to the
/// reference service (case-insensitive), domain equal to the reference. No wildcards.
pub(crate) fn srv_id_matches(presented: &str, reference: &str, service: Service) -> bool {
    let Some((label, domain)) = presented.split_once('.') else {
        return false;
    };
    if !label.eq_ignore_ascii_case(service.srv_label()) || domain.contains('*') {
        return false;
    }
    normalize_presented(domain).is_some_and(|d| d == reference)
}

/// XmppAddr rule (RFC 6120 §13.7.1.4, §13.7.2.1): for a server, the XmppAddr is a bare
/// domain JID equal to the reference. The UTF8String may carry U-labels; those compare
/// after conversion to A-labels (`idna` feature) and otherwise never match.
pub(crate) fn xmpp_addr_matches_domain(presented: &str, reference: &str) -> bool {
    // A JID (RFC 7622) with a domainpart only: no localpart, no resourcepart, no `*`.
    let domain_only = Jid::parse(presented).is_ok_and(|j| j.local().is_none() && j.is_bare());
    domain_only && domain_equals(presented, reference)
}

/// CN-ID fallback (RFC 6125 §6.4.4): exact DNS comparison, no wildcard.
pub(crate) fn cn_matches(presented: &str, reference: &str) -> bool {
    !presented.contains('*') && dns_id_matches(presented, reference)
}

/// Domainpart equality (RFC 7622 §3.2) of a presented UTF-8 domain and a normalized
/// reference.
pub(crate) fn domain_equals(presented: &str, reference: &str) -> bool {
    if presented.is_ascii() {
        return normalize_presented(presented).is_some_and(|p| p == reference);
    }
    match normalize_reference(presented) {
        Ok(p) => p == reference,
        Err(_) => {
            debug!("non-ASCII presented domain not compared (enable the `idna` feature)");
            false
        }
    }
}

/// A JID as (lowercased-ASCII localpart or `None`, normalized domainpart), any resource
/// dropped. `None` if it is not a JID (RFC 7622, parsed by [`Jid`]) or its domain is not
/// a DNS domain usable as a reference.
pub(crate) fn split_bare_jid(jid: &str) -> Option<(Option<String>, String)> {
    let jid = Jid::parse(jid).ok()?;
    let domain = normalize_reference(jid.domain()).ok()?;
    Some((jid.local().map(str::to_ascii_lowercase), domain))
}

/// `true` when two JIDs name the same bare JID: domainparts per RFC 7622 §3.2, localparts
/// ASCII-case-insensitively (non-ASCII localparts compare exactly; full PRECIS
/// UsernameCaseMapped is the caller's to apply beforehand).
pub(crate) fn bare_jid_equals(a: &str, b: &str) -> bool {
    match (split_bare_jid(a), split_bare_jid(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}
