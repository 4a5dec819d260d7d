//! XMPP addresses (RFC 7622): [`Jid`], the one parser of the workspace, and its rules.
//!
//! A JID is `[localpart@]domainpart[/resourcepart]` (RFC 7622 §3.1). It is cut in this
//! order (§3.1, §3.4): the resourcepart is everything after the **first** `/` (so it may
//! itself contain `@` and `/`); of what comes before, the localpart is everything before
//! the **first** `@`; the rest is the domainpart. Each part that is present is 1 to 1023
//! bytes long (§3.2, §3.3, §3.4): `a@`, `@b`, `a/`, `/r` are not JIDs.
//!
//! What is checked, without Unicode tables (this crate is `no_std` and small):
//!
//! * localpart (§3.3.1): none of `"` `&` `'` `/` `:` `<` `>` `@`, no whitespace and no
//!   control characters;
//! * domainpart (§3.2): one trailing dot is removed; an IPv6 literal `[…]` is parsed as an
//!   address; otherwise dot-separated labels, each 1 to 63 bytes when ASCII, of letters,
//!   digits and `-` (not at either end of a label, RFC 5890 LDH rule). A non-ASCII label
//!   (U-label) may hold any character but whitespace, controls and ASCII outside LDH;
//!   with the crate's `idna` feature the whole domain must also convert to A-labels
//!   (UTS #46, as [`crate::trust::ReferenceIdentity`] does);
//! * resourcepart (§3.4): no control characters.
//!
//! What is **not** done: the PRECIS profiles (RFC 8264, RFC 8265) that RFC 7622 §3.3.2
//! and §3.4.2 apply to the localpart (UsernameCaseMapped) and resourcepart (OpaqueString),
//! and the IDNA2008 mapping of §3.2.2 (U-labels are neither mapped, normalized nor
//! lowercased). Those need Unicode tables: characters those profiles disallow, such as
//! `Ⅳ` or `♚` in a localpart (§3.5's table 2), are accepted here, and two spellings that
//! PRECIS would map to one JID compare unequal. A resourcepart with a leading space
//! (`juliet@example.com/ foo`, also in table 2) is accepted: OpaqueString allows spaces
//! and no rule of RFC 7622 forbids it there.
//!
//! Comparison (§3.2, §3.3, §3.4): [`Jid`]'s `Eq`, `Ord` and `Hash` are on its canonical
//! form: the domainpart ASCII-lowercased, without its trailing dot, an IPv6 literal in
//! its shortest form; the localpart and resourcepart exactly as given. A server that
//! treats localparts case-insensitively (UsernameCaseMapped for ASCII) lowercases them
//! itself, as the certificate matching of [`crate::trust`] does.

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

/// The largest localpart, domainpart or resourcepart, in bytes (RFC 7622 §3.2, §3.3, §3.4).
pub const MAX_PART_BYTES: usize = 1023;

/// The largest ASCII domain label, in bytes (RFC 1034 §3.1, RFC 5890 §2.3.2.1).
pub const MAX_LABEL_BYTES: usize = 63;

/// Which part of a JID an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Part {
    /// The localpart, before `@` (RFC 7622 §3.3).
    Local,
    /// The domainpart (RFC 7622 §3.2).
    Domain,
    /// The resourcepart, after `/` (RFC 7622 §3.4).
    Resource,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Local => "localpart",
            Part::Domain => "domainpart",
            Part::Resource => "resourcepart",
        })
    }
}

/// Why a domainpart is not a domain (RFC 7622 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DomainError {
    /// An empty label: `a..b`, a leading dot, or two trailing dots.
    EmptyLabel,
    /// An ASCII label longer than 63 bytes.
    LabelTooLong,
    /// A character no domain label may hold: whitespace, a control character, or an ASCII
    /// character other than letters, digits and `-` (RFC 5890 LDH rule).
    ForbiddenChar(char),
    /// An ASCII label that starts or ends with `-`.
    HyphenAtLabelEdge,
    /// `[…]` that is not an IPv6 address (RFC 3986 IP-literal; IPvFuture is not taken).
    InvalidIpLiteral,
    /// With the `idna` feature: non-ASCII labels that do not convert to A-labels.
    InvalidIdn,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            // Without the `error-text` feature: the rule as a short name.
            return match self {
                DomainError::EmptyLabel => f.write_str("empty-label"),
                DomainError::LabelTooLong => f.write_str("label-too-long"),
                DomainError::ForbiddenChar(c) => write!(f, "forbidden-char {}", CodePoint(*c)),
                DomainError::HyphenAtLabelEdge => f.write_str("hyphen-at-label-edge"),
                DomainError::InvalidIpLiteral => f.write_str("invalid-ip-literal"),
                DomainError::InvalidIdn => f.write_str("invalid-idn"),
            };
        }
        match self {
            DomainError::EmptyLabel => f.write_str("it has an empty label (`..` or a leading dot)"),
            DomainError::LabelTooLong => f.write_str("a label is longer than 63 bytes"),
            DomainError::ForbiddenChar(c) => write!(
                f,
                "it contains {}; a domain label holds letters, digits and `-` only",
                CodePoint(*c)
            ),
            DomainError::HyphenAtLabelEdge => f.write_str("a label starts or ends with `-`"),
            DomainError::InvalidIpLiteral => f.write_str("`[…]` does not hold an IPv6 address"),
            DomainError::InvalidIdn => {
                f.write_str("it is not a valid internationalized domain name")
            }
        }
    }
}

/// A string that is not a JID, or not the kind of JID needed (RFC 7622).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum JidError {
    /// `@` with nothing before it (§3.3: a localpart is 1 to 1023 bytes).
    EmptyLocal,
    /// No domainpart: the empty string, `a@`, `/r`, `a@./r` (§3.2).
    EmptyDomain,
    /// `/` with nothing after it (§3.4: a resourcepart is 1 to 1023 bytes).
    EmptyResource,
    /// A part longer than [`MAX_PART_BYTES`].
    TooLong {
        /// Which part.
        part: Part,
        /// Its length in bytes.
        len: usize,
    },
    /// A character §3.3.1 forbids in a localpart: `"` `&` `'` `/` `:` `<` `>` `@`,
    /// whitespace or a control character.
    ForbiddenLocalChar(char),
    /// A control character in the resourcepart (§3.4, OpaqueString).
    ForbiddenResourceChar(char),
    /// The domainpart is not a domain name or IPv6 literal (§3.2).
    InvalidDomain(DomainError),
    /// A valid JID without the localpart the caller needs (an account: `user@domain`).
    MissingLocal,
    /// A valid JID without the resourcepart the caller needs (a full JID, RFC 6120 §7).
    MissingResource,
}

impl fmt::Display for JidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            // Without the `error-text` feature: the rule as a short name, its details.
            return match self {
                JidError::EmptyLocal => f.write_str("empty-localpart"),
                JidError::EmptyDomain => f.write_str("empty-domainpart"),
                JidError::EmptyResource => f.write_str("empty-resourcepart"),
                JidError::TooLong { part, len } => write!(f, "{part}-too-long {len}"),
                JidError::ForbiddenLocalChar(c) => {
                    write!(f, "forbidden-localpart-char {}", CodePoint(*c))
                }
                JidError::ForbiddenResourceChar(c) => {
                    write!(f, "forbidden-resourcepart-char {}", CodePoint(*c))
                }
                JidError::InvalidDomain(e) => write!(f, "invalid-domainpart: {e}"),
                JidError::MissingLocal => f.write_str("missing-localpart"),
                JidError::MissingResource => f.write_str("missing-resourcepart"),
            };
        }
        match self {
            JidError::EmptyLocal => {
                f.write_str("the localpart (before `@`) is empty (RFC 7622 §3.3)")
            }
            JidError::EmptyDomain => f.write_str("the domainpart is empty (RFC 7622 §3.2)"),
            JidError::EmptyResource => {
                f.write_str("the resourcepart (after `/`) is empty (RFC 7622 §3.4)")
            }
            JidError::TooLong { part, len } => write!(
                f,
                "the {part} is {len} bytes long; RFC 7622 allows at most {MAX_PART_BYTES}"
            ),
            JidError::ForbiddenLocalChar(c) => write!(
                f,
                "the localpart contains {}; RFC 7622 §3.3.1 forbids \", &, ', /, :, <, >, \
                 @, whitespace and control characters there",
                CodePoint(*c)
            ),
            JidError::ForbiddenResourceChar(c) => write!(
                f,
                "the resourcepart contains the control character {} (RFC 7622 §3.4)",
                CodePoint(*c)
            ),
            JidError::InvalidDomain(e) => {
                write!(f, "the domainpart is not a domain (RFC 7622 §3.2): {e}")
            }
            JidError::MissingLocal => f.write_str("the JID has no localpart; expected user@domain"),
            JidError::MissingResource => f.write_str(
                "the JID has no resourcepart; expected a full JID, user@domain/resource",
            ),
        }
    }
}

impl core::error::Error for JidError {}

/// A character in an error text: its code point, and the character itself when it is
/// printable ASCII (`U+0040 '@'`). No `{:?}`: its escaping would link Unicode tables into
/// every firmware image (~3 KB on Cortex-M).
pub(crate) struct CodePoint(pub(crate) char);

impl fmt::Display for CodePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X}", u32::from(self.0))?;
        if self.0.is_ascii_graphic() {
            write!(f, " '{}'", self.0)?;
        }
        Ok(())
    }
}

/// The parts of a JID as written, checked by the same rules as [`Jid::parse`] without
/// allocating: for callers that keep borrowing the input (firmware configuration).
///
/// `domain` is as written but for its trailing dot (removed, RFC 7622 §3.2): it is not
/// lowercased. Compare it ASCII-case-insensitively, or build a [`Jid`] with
/// [`JidParts::to_jid`] to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JidParts<'a> {
    /// The localpart, if any.
    pub local: Option<&'a str>,
    /// The domainpart, without a trailing dot.
    pub domain: &'a str,
    /// The resourcepart, if any.
    pub resource: Option<&'a str>,
}

impl<'a> JidParts<'a> {
    /// Cuts and checks `s` (RFC 7622 §3.1–§3.4; see the module docs).
    pub fn parse(s: &'a str) -> Result<Self, JidError> {
        // §3.1, §3.4: the resourcepart starts after the first '/', whatever it holds.
        let (rest, resource) = match s.split_once('/') {
            Some((rest, resource)) => (rest, Some(resource)),
            None => (s, None),
        };
        // §3.1, §3.3: the localpart ends at the first '@' before the resourcepart.
        let (local, domain) = match rest.split_once('@') {
            Some((local, domain)) => (Some(local), domain),
            None => (None, rest),
        };
        if let Some(local) = local {
            check_local(local)?;
        }
        let domain = strip_trailing_dot(domain);
        check_domainpart(domain)?;
        if let Some(resource) = resource {
            check_resource(resource)?;
        }
        Ok(JidParts {
            local,
            domain,
            resource,
        })
    }

    /// The canonical, owned JID.
    pub fn to_jid(&self) -> Jid {
        Jid::assemble(self.local, self.domain, self.resource)
    }
}

/// An XMPP address (RFC 7622): optional localpart, domainpart, optional resourcepart,
/// held in its canonical form (see the module docs for what is checked and compared).
///
/// ```
/// use xmpp_handshake_core::Jid;
///
/// let jid: Jid = "juliet@Example.COM./balcony".parse().unwrap();
/// assert_eq!(jid.local(), Some("juliet"));
/// assert_eq!(jid.domain(), "example.com");
/// assert_eq!(jid.resource(), Some("balcony"));
/// assert_eq!(jid.to_string(), "juliet@example.com/balcony");
/// assert_eq!(jid.bare(), "juliet@example.com".parse().unwrap());
/// assert!("juliet@".parse::<Jid>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Jid {
    /// Canonical text: `local@domain/resource`.
    text: String,
    /// Index of the `@` ending the localpart.
    at: Option<usize>,
    /// Index of the `/` starting the resourcepart.
    slash: Option<usize>,
}

impl Jid {
    /// Parses `s` (RFC 7622 §3.1–§3.4): the resourcepart after the first `/`, the
    /// localpart before the first `@` of what precedes it, each part 1 to 1023 bytes and
    /// checked by its rules (module docs).
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        JidParts::parse(s).map(|p| p.to_jid())
    }

    /// A JID from its parts, each checked as [`Jid::parse`] checks it; the domainpart may
    /// have a trailing dot (removed).
    pub fn from_parts(
        local: Option<&str>,
        domain: &str,
        resource: Option<&str>,
    ) -> Result<Jid, JidError> {
        if let Some(local) = local {
            check_local(local)?;
        }
        let domain = strip_trailing_dot(domain);
        check_domainpart(domain)?;
        if let Some(resource) = resource {
            check_resource(resource)?;
        }
        Ok(Jid::assemble(local, domain, resource))
    }

    /// Builds the canonical text of checked parts.
    fn assemble(local: Option<&str>, domain: &str, resource: Option<&str>) -> Jid {
        let len =
            local.map_or(0, |l| l.len() + 1) + domain.len() + resource.map_or(0, |r| r.len() + 1);
        let mut text = String::with_capacity(len);
        let at = local.map(|local| {
            text.push_str(local);
            let at = text.len();
            text.push('@');
            at
        });
        push_canonical_domain(&mut text, domain);
        let slash = resource.map(|resource| {
            let slash = text.len();
            text.push('/');
            text.push_str(resource);
            slash
        });
        Jid { text, at, slash }
    }

    /// The localpart (§3.3), if any.
    pub fn local(&self) -> Option<&str> {
        self.at.map(|at| &self.text[..at])
    }

    /// The domainpart (§3.2), canonical: ASCII-lowercased, no trailing dot.
    pub fn domain(&self) -> &str {
        let start = self.at.map_or(0, |at| at + 1);
        let end = self.slash.unwrap_or(self.text.len());
        &self.text[start..end]
    }

    /// The resourcepart (§3.4), if any.
    pub fn resource(&self) -> Option<&str> {
        self.slash.map(|slash| &self.text[slash + 1..])
    }

    /// The bare JID (§3.1: `localpart@domainpart` or `domainpart`): this one without its
    /// resourcepart.
    pub fn bare(&self) -> Jid {
        let end = self.slash.unwrap_or(self.text.len());
        Jid {
            text: String::from(&self.text[..end]),
            at: self.at,
            slash: None,
        }
    }

    /// `true` without a resourcepart.
    pub fn is_bare(&self) -> bool {
        self.slash.is_none()
    }

    /// The full JID of this bare JID and `resource` (a resourcepart it had is replaced);
    /// `resource` is checked by §3.4.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        check_resource(resource)?;
        let end = self.slash.unwrap_or(self.text.len());
        let mut text = String::with_capacity(end + 1 + resource.len());
        text.push_str(&self.text[..end]);
        text.push('/');
        text.push_str(resource);
        Ok(Jid {
            text,
            at: self.at,
            slash: Some(end),
        })
    }

    /// The canonical form, as [`Display`](fmt::Display) writes it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The canonical form, owned.
    pub fn into_string(self) -> String {
        self.text
    }

    /// `Err(MissingLocal)` unless the JID has a localpart (an account, `user@domain`).
    pub fn require_local(self) -> Result<Jid, JidError> {
        match self.at {
            Some(_) => Ok(self),
            None => Err(JidError::MissingLocal),
        }
    }

    /// `Err(MissingResource)` unless the JID is full (has a resourcepart).
    pub fn require_resource(self) -> Result<Jid, JidError> {
        match self.slash {
            Some(_) => Ok(self),
            None => Err(JidError::MissingResource),
        }
    }
}

impl FromStr for Jid {
    type Err = JidError;

    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({:?})", self.text)
    }
}

impl AsRef<str> for Jid {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl From<Jid> for String {
    fn from(jid: Jid) -> String {
        jid.text
    }
}

fn strip_trailing_dot(domain: &str) -> &str {
    domain.strip_suffix('.').unwrap_or(domain)
}

fn check_length(part: Part, s: &str) -> Result<(), JidError> {
    if s.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong { part, len: s.len() });
    }
    Ok(())
}

/// Checks a localpart (RFC 7622 §3.3): 1 to 1023 bytes, none of the characters §3.3.1
/// forbids (`"` `&` `'` `/` `:` `<` `>` `@`, whitespace, controls). PRECIS is not applied
/// (module docs).
pub fn check_local(local: &str) -> Result<(), JidError> {
    if local.is_empty() {
        return Err(JidError::EmptyLocal);
    }
    check_length(Part::Local, local)?;
    match local.chars().find(|&c| {
        matches!(c, '"' | '&' | '\'' | '/' | ':' | '<' | '>' | '@')
            || c.is_whitespace()
            || c.is_control()
    }) {
        Some(c) => Err(JidError::ForbiddenLocalChar(c)),
        None => Ok(()),
    }
}

/// Checks a resourcepart (RFC 7622 §3.4): 1 to 1023 bytes, no control characters. It may
/// hold `@`, `/` and spaces.
pub fn check_resource(resource: &str) -> Result<(), JidError> {
    if resource.is_empty() {
        return Err(JidError::EmptyResource);
    }
    check_length(Part::Resource, resource)?;
    match resource.chars().find(|c| c.is_control()) {
        Some(c) => Err(JidError::ForbiddenResourceChar(c)),
        None => Ok(()),
    }
}

/// Checks a domainpart (RFC 7622 §3.2): one trailing dot allowed, then 1 to 1023 bytes of
/// domain labels or an IPv6 literal `[…]` (module docs for the label rules).
pub fn check_domain(domain: &str) -> Result<(), JidError> {
    check_domainpart(strip_trailing_dot(domain))
}

/// [`check_domain`] of a domainpart whose trailing dot is already removed.
fn check_domainpart(domain: &str) -> Result<(), JidError> {
    if domain.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    check_length(Part::Domain, domain)?;
    let invalid = JidError::InvalidDomain;
    if let Some(inner) = domain.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(ip) if ipv6_groups(ip).is_some() => Ok(()),
            _ => Err(invalid(DomainError::InvalidIpLiteral)),
        };
    }
    for label in domain.split('.') {
        check_label(label).map_err(invalid)?;
    }
    if !domain.is_ascii() {
        check_idn(domain).map_err(invalid)?;
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), DomainError> {
    if label.is_empty() {
        return Err(DomainError::EmptyLabel);
    }
    let ldh = |c: char| c.is_ascii_alphanumeric() || c == '-';
    if let Some(c) = label.chars().find(|&c| {
        if c.is_ascii() {
            !ldh(c)
        } else {
            c.is_whitespace() || c.is_control()
        }
    }) {
        return Err(DomainError::ForbiddenChar(c));
    }
    if label.is_ascii() {
        if label.len() > MAX_LABEL_BYTES {
            return Err(DomainError::LabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::HyphenAtLabelEdge);
        }
    }
    Ok(())
}

/// With `idna`: the U-labels must convert to A-labels (UTS #46 with the STD3 and DNS length
/// rules, the conversion [`crate::trust::ReferenceIdentity`] applies).
#[cfg(feature = "idna")]
fn check_idn(domain: &str) -> Result<(), DomainError> {
    idna::domain_to_ascii_strict(domain)
        .map(drop)
        .map_err(|_| DomainError::InvalidIdn)
}

/// Without `idna` there are no tables to check U-labels against: taken as they are.
#[cfg(not(feature = "idna"))]
fn check_idn(_domain: &str) -> Result<(), DomainError> {
    Ok(())
}

/// Appends a checked domainpart in canonical form: ASCII lowercase, an IPv6 literal in
/// RFC 5952's text form (lowercase, no leading zeros, the first longest run of two or more
/// zero groups as `::`).
fn push_canonical_domain(out: &mut String, domain: &str) {
    let groups = domain
        .strip_prefix('[')
        .and_then(|d| d.strip_suffix(']'))
        .and_then(ipv6_groups);
    match groups {
        Some(groups) => {
            out.push('[');
            push_ipv6(out, &groups);
            out.push(']');
        }
        None => out.extend(domain.chars().map(|c| c.to_ascii_lowercase())),
    }
}

/// The four octets of a dotted-decimal IPv4 address (`192.0.2.1`), read as `core::net`
/// reads one: four decimal numbers up to 255, each without leading zeros. Written here,
/// bytewise, for the same reason as [`ipv6_groups`]; also the reference identity's check
/// for an IP literal ([`crate::trust::ReferenceIdentity`]).
pub(crate) fn ipv4_octets(text: &str) -> Option<[u8; 4]> {
    let mut octets = [0u8; 4];
    let mut fields = text.split('.');
    for octet in &mut octets {
        let field = fields.next()?.as_bytes();
        if field.is_empty() || field.len() > 3 || (field.len() > 1 && field.first() == Some(&b'0'))
        {
            return None;
        }
        let mut value = 0u16;
        for &b in field {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(b - b'0');
        }
        *octet = u8::try_from(value).ok()?;
    }
    match fields.next() {
        Some(_) => None,
        None => Some(octets),
    }
}

/// The eight groups of an IPv6 address in RFC 4291 §2.2 text form (`x:x:x:x:x:x:x:x`, one
/// `::`, a trailing dotted IPv4 address). Written here rather than with `core::net`, whose
/// parser and RFC 5952 printer (~3 KB on Cortex-M) every firmware image would carry; read
/// bytewise (no `from_str_radix`, no string searcher).
pub(crate) fn ipv6_groups(text: &str) -> Option<[u16; 8]> {
    let mut groups = [0u16; 8];
    // `::` found bytewise: `str::split_once` with a `&str` pattern links the two-way
    // searcher (~700 bytes on Cortex-M).
    match text.as_bytes().windows(2).position(|w| w == b"::") {
        None => {
            let head = hex_fields(text, &mut groups, true)?;
            (head == 8).then_some(groups)
        }
        Some(i) => {
            // A dotted IPv4 tail only at the very end; a second `::` leaves an empty field
            // in the tail, which is refused.
            let head = hex_fields(text.get(..i)?, &mut groups, false)?;
            let mut tail = [0u16; 8];
            let n = hex_fields(text.get(i + 2..)?, &mut tail, true)?;
            if head + n > 7 {
                return None;
            }
            let (from, to) = (tail.get(..n)?, groups.get_mut(8 - n..)?);
            to.copy_from_slice(from);
            Some(groups)
        }
    }
}

/// The `:`-separated groups of `part` (1 to 4 hex digits each; the last one may be a
/// dotted IPv4 address, two groups, when `v4_last`) into `out`; how many.
fn hex_fields(part: &str, out: &mut [u16; 8], v4_last: bool) -> Option<usize> {
    let mut n = 0;
    if part.is_empty() {
        return Some(n);
    }
    let mut fields = part.split(':').peekable();
    while let Some(field) = fields.next() {
        if v4_last && fields.peek().is_none() && field.contains('.') {
            let [a, b, c, d] = ipv4_octets(field)?;
            for group in [u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])] {
                *out.get_mut(n)? = group;
                n += 1;
            }
            continue;
        }
        if field.is_empty() || field.len() > 4 {
            return None;
        }
        let mut group = 0u16;
        for b in field.bytes() {
            group = (group << 4) | char::from(b).to_digit(16)? as u16;
        }
        *out.get_mut(n)? = group;
        n += 1;
    }
    Some(n)
}

/// RFC 5952 §4: lowercase hex without leading zeros, the first longest run of two or more
/// zero groups shortened to `::`.
fn push_ipv6(out: &mut String, groups: &[u16; 8]) {
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, g) in groups.iter().enumerate() {
        if *g == 0 {
            run = if run.1 == 0 {
                (i, 1)
            } else {
                (run.0, run.1 + 1)
            };
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let skip = if best.1 >= 2 { best } else { (8, 0) };
    let mut i = 0;
    while let Some(&group) = groups.get(i) {
        if i == skip.0 {
            out.push_str("::");
            i += skip.1;
            continue;
        }
        if i > 0 && i != skip.0 + skip.1 {
            out.push(':');
        }
        // Hex by hand: no `core::fmt` for a JID's domain.
        let digits = (16 - group.leading_zeros()).div_ceil(4).max(1);
        for shift in (0..digits).rev() {
            let nibble = u32::from(group >> (4 * shift)) & 0xf;
            out.push(char::from_digit(nibble, 16).unwrap_or('0'));
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;
    use alloc::string::ToString;

    fn parts(s: &str) -> (Option<&str>, &str, Option<&str>) {
        let p = JidParts::parse(s).unwrap();
        (p.local, p.domain, p.resource)
    }

    fn err(s: &str) -> JidError {
        Jid::parse(s).unwrap_err()
    }

    #[test]
    fn rfc7622_3_1_resource_starts_at_the_first_slash() {
        assert_eq!(parts("a@b/c/d@e"), (Some("a"), "b", Some("c/d@e")),);
        assert_eq!(parts("b/c@d"), (None, "b", Some("c@d")));
        assert_eq!(parts("b//"), (None, "b", Some("/")));
    }

    #[test]
    fn rfc7622_3_1_local_ends_at_the_first_at_before_the_resource() {
        assert_eq!(parts("a@b"), (Some("a"), "b", None));
        // The second '@' is then in the domainpart, where it is not allowed.
        assert_eq!(
            err("a@b@c"),
            JidError::InvalidDomain(DomainError::ForbiddenChar('@'))
        );
        assert_eq!(
            err("juliet@@example.com"),
            JidError::InvalidDomain(DomainError::ForbiddenChar('@'))
        );
    }

    #[test]
    fn rfc7622_3_3_empty_localpart_is_an_error() {
        assert_eq!(err("@example.com"), JidError::EmptyLocal);
        assert_eq!(err("@example.com/r"), JidError::EmptyLocal);
        assert_eq!(err("@"), JidError::EmptyLocal);
    }

    #[test]
    fn rfc7622_3_2_empty_domainpart_is_an_error() {
        assert_eq!(err(""), JidError::EmptyDomain);
        assert_eq!(err("a@"), JidError::EmptyDomain);
        assert_eq!(err("/r"), JidError::EmptyDomain);
        assert_eq!(err("a@/r"), JidError::EmptyDomain);
        assert_eq!(err("."), JidError::EmptyDomain);
        assert_eq!(err("a@."), JidError::EmptyDomain);
    }

    #[test]
    fn rfc7622_3_4_empty_resourcepart_is_an_error() {
        assert_eq!(err("a@b/"), JidError::EmptyResource);
        assert_eq!(err("b/"), JidError::EmptyResource);
    }

    #[test]
    fn rfc7622_each_part_is_at_most_1023_bytes() {
        let max = "a".repeat(MAX_PART_BYTES);
        let over = "a".repeat(MAX_PART_BYTES + 1);
        assert!(Jid::parse(&alloc::format!("{max}@b/{max}")).is_ok());
        assert_eq!(
            err(&alloc::format!("{over}@b")),
            JidError::TooLong {
                part: Part::Local,
                len: 1024
            }
        );
        assert_eq!(
            err(&alloc::format!("a@b/{over}")),
            JidError::TooLong {
                part: Part::Resource,
                len: 1024
            }
        );
        // 16 labels of 63 bytes and 15 dots: 1023 bytes.
        let label = "a".repeat(63);
        let mut domain = [label.as_str(); 16].join(".");
        assert_eq!(domain.len(), MAX_PART_BYTES);
        assert!(Jid::parse(&domain).is_ok());
        // The trailing dot does not count (§3.2: it is removed first).
        assert!(Jid::parse(&alloc::format!("{domain}.")).is_ok());
        domain.push('a');
        assert_eq!(
            err(&domain),
            JidError::TooLong {
                part: Part::Domain,
                len: 1024
            }
        );
    }

    #[test]
    fn rfc7622_3_3_1_forbidden_localpart_characters_are_errors() {
        for c in ['"', '&', '\'', ':', '<', '>'] {
            let jid = alloc::format!("a{c}b@example.com");
            assert_eq!(err(&jid), JidError::ForbiddenLocalChar(c), "{jid}");
        }
        assert_eq!(check_local("a/b"), Err(JidError::ForbiddenLocalChar('/')));
        assert_eq!(check_local("a@b"), Err(JidError::ForbiddenLocalChar('@')));
    }

    #[test]
    fn rfc7622_3_3_1_whitespace_and_controls_in_localpart_are_errors() {
        for c in [
            ' ', '\t', '\n', '\u{a0}', '\u{3000}', '\0', '\u{7f}', '\u{85}',
        ] {
            let jid = alloc::format!("a{c}b@example.com");
            assert_eq!(err(&jid), JidError::ForbiddenLocalChar(c), "{jid:?}");
        }
    }

    #[test]
    fn rfc7622_3_4_controls_in_resourcepart_are_errors() {
        assert_eq!(err("a@b/x\u{0}y"), JidError::ForbiddenResourceChar('\0'));
        assert_eq!(err("a@b/x\ny"), JidError::ForbiddenResourceChar('\n'));
        assert_eq!(Jid::parse("a@b/ x y ").unwrap().resource(), Some(" x y "));
    }

    #[test]
    fn rfc7622_3_2_trailing_dot_is_removed() {
        let jid = Jid::parse("a@example.com./r").unwrap();
        assert_eq!(jid.domain(), "example.com");
        assert_eq!(jid, Jid::parse("a@example.com/r").unwrap());
        assert_eq!(parts("example.com.").1, "example.com");
        // Only one: a second is an empty label.
        assert_eq!(
            err("example.com.."),
            JidError::InvalidDomain(DomainError::EmptyLabel)
        );
    }

    #[test]
    fn rfc7622_3_2_domainpart_compares_ascii_case_insensitively() {
        let a = Jid::parse("Juliet@Example.COM/Balcony").unwrap();
        assert_eq!(a.domain(), "example.com");
        assert_eq!(a, Jid::parse("Juliet@example.com/Balcony").unwrap());
        // Only the domainpart: the JIDs as written are kept in JidParts.
        assert_eq!(parts("Juliet@Example.COM").1, "Example.COM");
    }

    #[test]
    fn rfc7622_3_3_and_3_4_localpart_and_resourcepart_compare_exactly() {
        let a = Jid::parse("juliet@example.com/balcony").unwrap();
        assert_ne!(a, Jid::parse("Juliet@example.com/balcony").unwrap());
        assert_ne!(a, Jid::parse("juliet@example.com/Balcony").unwrap());
    }

    #[test]
    fn rfc7622_3_2_ipv6_literal_is_a_domainpart() {
        let jid = Jid::parse("a@[2001:DB8:0:0::1]/r").unwrap();
        assert_eq!(jid.domain(), "[2001:db8::1]");
        assert_eq!(jid, Jid::parse("a@[2001:db8::1]/r").unwrap());
        assert!(Jid::parse("[::1]").is_ok());
        for bad in [
            "[::1",
            "[example.com]",
            "[]",
            "[::1]x",
            "[1.2.3.4]",
            "[v1.x]",
        ] {
            assert_eq!(
                err(bad),
                JidError::InvalidDomain(DomainError::InvalidIpLiteral),
                "{bad}"
            );
        }
    }

    #[test]
    fn ipv6_literals_parse_and_print_as_core_net_does() {
        for text in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:DB8:0:0:8:800:200C:417A",
            "ff01::101",
            "0:0:0:0:0:0:0:1",
            "1:0:0:1:0:0:0:1",
            "1:0:1:0:1:0:1:0",
            "::ffff:192.0.2.1",
            "64:ff9b::192.0.2.33",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:1.2.3.4",
            "fe80::1:0:0:1",
        ] {
            let ours = ipv6_groups(text).unwrap_or_else(|| panic!("{text} refused"));
            let theirs: core::net::Ipv6Addr = text.parse().unwrap();
            assert_eq!(ours, theirs.segments(), "{text}");
            let mut printed = String::new();
            push_ipv6(&mut printed, &ours);
            let reference = alloc::format!("{theirs}");
            // core::net prints IPv4-mapped and -compatible tails in dotted form; RFC 5952
            // §5 allows both, and a JID compares what this function prints.
            if !reference.contains('.') {
                assert_eq!(printed, reference, "{text}");
            }
            assert_eq!(ipv6_groups(&printed), Some(ours), "{printed}");
        }
        for bad in [
            "",
            ":",
            ":::",
            "1:::2",
            "1::2::3",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "12345::",
            "g::",
            "1.2.3.4",
            "::1.2.3",
            "::1.2.3.4.5",
            "::256.1.1.1",
            "::01.2.3.4",
            "1.2.3.4::",
            "1:2:3:4:5:6:7:1.2.3.4",
            ":1::",
            "1:",
        ] {
            assert_eq!(ipv6_groups(bad), None, "{bad}");
            assert!(
                bad.parse::<core::net::Ipv6Addr>().is_err(),
                "{bad} (core::net agrees)"
            );
        }
    }

    #[test]
    fn ipv4_octets_agree_with_core_net() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "192.0.2.1",
            "255.255.255.255",
            "10.0.10.100",
        ] {
            let theirs: core::net::Ipv4Addr = text.parse().unwrap();
            assert_eq!(ipv4_octets(text), Some(theirs.octets()), "{text}");
        }
        for bad in [
            "",
            "1",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.",
            ".1.2.3",
            "1..2.3",
            "256.1.1.1",
            "1.2.3.1000",
            "01.2.3.4",
            "1.2.3.00",
            "+1.2.3.4",
            "1.2.3.+4",
            "1.2.3.-4",
            "1.2.3.4 ",
            "a.b.c.d",
            "0x7f.0.0.1",
            "::1",
            "\u{ff11}.2.3.4",
        ] {
            assert_eq!(ipv4_octets(bad), None, "{bad}");
            assert!(
                bad.parse::<core::net::Ipv4Addr>().is_err(),
                "{bad} (core::net agrees)"
            );
        }
    }

    #[test]
    fn rfc7622_3_2_ipv4_address_is_a_domainpart() {
        assert_eq!(Jid::parse("a@127.0.0.1").unwrap().domain(), "127.0.0.1");
    }

    #[test]
    fn rfc7622_3_2_domain_labels_follow_the_ldh_rule() {
        let e = |s: &str| err(s);
        assert_eq!(e("a..b"), JidError::InvalidDomain(DomainError::EmptyLabel));
        assert_eq!(e(".b"), JidError::InvalidDomain(DomainError::EmptyLabel));
        assert_eq!(
            e(&alloc::format!("{}.b", "a".repeat(64))),
            JidError::InvalidDomain(DomainError::LabelTooLong)
        );
        assert!(Jid::parse(&alloc::format!("{}.b", "a".repeat(63))).is_ok());
        assert_eq!(
            e("-a.b"),
            JidError::InvalidDomain(DomainError::HyphenAtLabelEdge)
        );
        assert_eq!(
            e("a-.b"),
            JidError::InvalidDomain(DomainError::HyphenAtLabelEdge)
        );
        assert!(Jid::parse("a-b.c--d.xn--bcher-kva.example").is_ok());
        for c in ['_', '*', ' ', ':', '\0', '\u{a0}'] {
            let domain = alloc::format!("a{c}b.example");
            assert_eq!(
                e(&domain),
                JidError::InvalidDomain(DomainError::ForbiddenChar(c)),
                "{domain:?}"
            );
        }
    }

    #[test]
    fn rfc7622_3_2_u_labels_are_kept_as_they_are() {
        let jid = Jid::parse("juliet@Bücher.Example").unwrap();
        // ASCII lowercased, the rest untouched (no IDNA mapping here).
        assert_eq!(jid.domain(), "bücher.example");
    }

    #[cfg(feature = "idna")]
    #[test]
    fn rfc7622_3_2_with_idna_u_labels_must_convert_to_a_labels() {
        assert!(Jid::parse("juliet@bücher.example").is_ok());
        // A label may not start with a combining mark (RFC 5891 §5.4).
        assert_eq!(
            err("juliet@\u{301}a.example"),
            JidError::InvalidDomain(DomainError::InvalidIdn)
        );
        // The same verdict as the certificate policy's reference identity, whose A-labels
        // a connection to this domain checks the certificate against.
        let long_label = alloc::format!("{}ü.example", "a".repeat(62));
        for domain in [
            "bücher.example",
            "\u{301}a.example",
            "xn--bcher-kva.example",
            "münchen.example",
            long_label.as_str(),
            "ex\u{200d}ample.example",
        ] {
            let jid = Jid::parse(&alloc::format!("juliet@{domain}")).is_ok();
            let reference = crate::trust::ReferenceIdentity::client_to_server(domain).is_ok();
            assert_eq!(jid, reference, "{domain}");
        }
    }

    #[test]
    fn rfc7622_3_5_valid_examples() {
        // RFC 7622 §3.5, table 1, with the parts each is cut into.
        let cases: [(&str, Option<&str>, &str, Option<&str>); 15] = [
            ("juliet@example.com", Some("juliet"), "example.com", None),
            (
                "juliet@example.com/foo",
                Some("juliet"),
                "example.com",
                Some("foo"),
            ),
            (
                "juliet@example.com/foo bar",
                Some("juliet"),
                "example.com",
                Some("foo bar"),
            ),
            (
                "juliet@example.com/foo@bar",
                Some("juliet"),
                "example.com",
                Some("foo@bar"),
            ),
            (
                "foo\\20bar@example.com",
                Some("foo\\20bar"),
                "example.com",
                None,
            ),
            (
                "fussball@example.com",
                Some("fussball"),
                "example.com",
                None,
            ),
            ("fußball@example.com", Some("fußball"), "example.com", None),
            ("π@example.com", Some("π"), "example.com", None),
            ("Σ@example.com/foo", Some("Σ"), "example.com", Some("foo")),
            ("σ@example.com/foo", Some("σ"), "example.com", Some("foo")),
            ("ς@example.com/foo", Some("ς"), "example.com", Some("foo")),
            ("king@example.com/♚", Some("king"), "example.com", Some("♚")),
            ("example.com", None, "example.com", None),
            ("example.com/foobar", None, "example.com", Some("foobar")),
            (
                "a.example.com/b@example.net",
                None,
                "a.example.com",
                Some("b@example.net"),
            ),
        ];
        for (s, local, domain, resource) in cases {
            let jid = Jid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(
                (jid.local(), jid.domain(), jid.resource()),
                (local, domain, resource)
            );
            assert_eq!(jid.to_string(), s);
        }
    }

    #[test]
    fn rfc7622_3_5_invalid_examples() {
        // RFC 7622 §3.5, table 2: those that need no Unicode tables.
        assert_eq!(
            err("\"juliet\"@example.com"),
            JidError::ForbiddenLocalChar('"')
        );
        assert_eq!(
            err("foo bar@example.com"),
            JidError::ForbiddenLocalChar(' ')
        );
        assert_eq!(err("@example.com/"), JidError::EmptyLocal);
        assert_eq!(err("juliet@"), JidError::EmptyDomain);
        assert_eq!(err("/foobar"), JidError::EmptyDomain);
    }

    #[test]
    fn rfc7622_3_5_invalid_examples_not_caught_without_precis_tables() {
        // Documented limits (module docs): PRECIS would refuse the compatibility character
        // U+2163 and the symbol U+265A in a localpart; no rule forbids a leading space in
        // the resourcepart (OpaqueString allows spaces).
        for s in [
            "henry\u{2163}@example.com",
            "\u{265a}@example.com",
            "juliet@example.com/ foo",
        ] {
            assert!(Jid::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn display_is_the_canonical_form() {
        let jid = Jid::parse("Juliet@EXAMPLE.com./Balcony").unwrap();
        assert_eq!(jid.to_string(), "Juliet@example.com/Balcony");
        assert_eq!(jid.as_str(), "Juliet@example.com/Balcony");
        assert_eq!(Jid::parse(jid.as_str()).unwrap(), jid);
        assert_eq!(
            alloc::format!("{jid:?}"),
            "Jid(\"Juliet@example.com/Balcony\")"
        );
    }

    #[test]
    fn from_str_is_parse() {
        let a: Jid = "a@b/c".parse().unwrap();
        assert_eq!(a, Jid::parse("a@b/c").unwrap());
        assert_eq!("a@".parse::<Jid>(), Err(JidError::EmptyDomain));
    }

    #[test]
    fn bare_drops_the_resourcepart() {
        let full = Jid::parse("a@b/c").unwrap();
        assert!(!full.is_bare());
        let bare = full.bare();
        assert!(bare.is_bare());
        assert_eq!(bare.to_string(), "a@b");
        assert_eq!(
            (bare.local(), bare.domain(), bare.resource()),
            (Some("a"), "b", None)
        );
        assert_eq!(Jid::parse("b/c").unwrap().bare().to_string(), "b");
    }

    #[test]
    fn with_resource_checks_and_replaces_the_resourcepart() {
        let bare = Jid::parse("a@b").unwrap();
        let full = bare.with_resource("x/y@z").unwrap();
        assert_eq!(full.to_string(), "a@b/x/y@z");
        assert_eq!(full.resource(), Some("x/y@z"));
        assert_eq!(full.bare(), bare);
        assert_eq!(full.with_resource("r").unwrap().to_string(), "a@b/r");
        assert_eq!(bare.with_resource(""), Err(JidError::EmptyResource));
        assert_eq!(
            bare.with_resource("a\u{7}"),
            Err(JidError::ForbiddenResourceChar('\u{7}'))
        );
    }

    #[test]
    fn from_parts_checks_every_part() {
        let jid = Jid::from_parts(Some("a"), "B.example.", Some("r")).unwrap();
        assert_eq!(jid.to_string(), "a@b.example/r");
        assert_eq!(Jid::from_parts(None, "b", None).unwrap().to_string(), "b");
        assert_eq!(
            Jid::from_parts(Some("a b"), "b", None),
            Err(JidError::ForbiddenLocalChar(' '))
        );
        assert_eq!(
            Jid::from_parts(Some("a"), "b@c", None),
            Err(JidError::InvalidDomain(DomainError::ForbiddenChar('@')))
        );
        assert_eq!(
            Jid::from_parts(Some(""), "b", None),
            Err(JidError::EmptyLocal)
        );
        assert_eq!(
            Jid::from_parts(None, "b", Some("")),
            Err(JidError::EmptyResource)
        );
    }

    #[test]
    fn require_local_and_require_resource() {
        let domain = Jid::parse("example.com").unwrap();
        assert_eq!(domain.clone().require_local(), Err(JidError::MissingLocal));
        assert_eq!(domain.require_resource(), Err(JidError::MissingResource));
        let full = Jid::parse("a@b/c").unwrap();
        assert_eq!(full.clone().require_local().unwrap(), full);
        assert_eq!(full.clone().require_resource().unwrap(), full);
    }

    #[test]
    fn eq_ord_and_hash_follow_the_canonical_form() {
        use core::hash::{Hash, Hasher};
        // FNV-1a: enough to see equal JIDs hash equally without std.
        struct Fnv(u64);
        impl Hasher for Fnv {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, bytes: &[u8]) {
                for b in bytes {
                    self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        let hash = |j: &Jid| {
            let mut h = Fnv(0xcbf2_9ce4_8422_2325);
            j.hash(&mut h);
            h.finish()
        };
        let a = Jid::parse("a@EXAMPLE.com./r").unwrap();
        let b = Jid::parse("a@example.com/r").unwrap();
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        let set: BTreeSet<Jid> = [a, b, Jid::parse("A@example.com/r").unwrap()].into();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn jid_parts_borrow_the_input_as_written() {
        let s = "Juliet@Example.COM./Balcony";
        let p = JidParts::parse(s).unwrap();
        assert_eq!(p.local, Some("Juliet"));
        assert_eq!(p.domain, "Example.COM");
        assert_eq!(p.resource, Some("Balcony"));
        assert_eq!(p.to_jid().to_string(), "Juliet@example.com/Balcony");
        assert_eq!(JidParts::parse("a@"), Err(JidError::EmptyDomain));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        // (the error, its text with `error-text`, its short form without)
        let texts = [
            (JidError::EmptyLocal, "localpart", "empty-localpart"),
            (
                JidError::EmptyDomain,
                "domainpart is empty",
                "empty-domainpart",
            ),
            (
                JidError::EmptyResource,
                "resourcepart",
                "empty-resourcepart",
            ),
            (
                JidError::TooLong {
                    part: Part::Resource,
                    len: 2000,
                },
                "resourcepart is 2000 bytes",
                "resourcepart-too-long 2000",
            ),
            (
                JidError::ForbiddenLocalChar(':'),
                "contains U+003A ':'",
                "forbidden-localpart-char U+003A ':'",
            ),
            (
                JidError::ForbiddenResourceChar('\0'),
                "control character",
                "forbidden-resourcepart-char U+0000",
            ),
            (
                JidError::InvalidDomain(DomainError::HyphenAtLabelEdge),
                "starts or ends with `-`",
                "invalid-domainpart: hyphen-at-label-edge",
            ),
            (JidError::MissingLocal, "user@domain", "missing-localpart"),
            (
                JidError::MissingResource,
                "full JID",
                "missing-resourcepart",
            ),
        ];
        for (e, sentence, short) in texts {
            let needle = if cfg!(feature = "error-text") {
                sentence
            } else {
                short
            };
            let text = e.to_string();
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    }
}
