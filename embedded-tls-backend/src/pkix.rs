//! The PKIX half of the embedded-tls backend: a search for a path from the end entity to
//! one of the configured trust anchors (RFC 5280 §6, reduced to what a TLS client needs;
//! RFC 4158's depth-first building with backtracking), its signatures checked through a
//! [`SignatureVerifier`]. No name check here: identity is [`CertificatePolicy`]'s.
//!
//! What it checks, per link of the path:
//! * issuer/subject name chaining (the issuer's subject equals the child's issuer);
//! * the child's signature with the issuer's key, over the TBSCertificate bytes exactly as
//!   received (the algorithms of [`crate::signature`]);
//! * an intermediate is a CA: basicConstraints `cA` TRUE, keyUsage (when present) with
//!   keyCertSign, pathLenConstraint (when present) not exceeded, extendedKeyUsage (when
//!   present) allowing serverAuth;
//! * no certificate of the path carries a critical extension the walk does not process
//!   (nameConstraints and policy constraints are not implemented, so a chain using them
//!   fails rather than being accepted unchecked);
//! * validity dates of every intermediate when a time is known (the end entity's dates are
//!   the policy's, which runs first);
//! * the end entity is not a CA, its keyUsage (when present) allows digitalSignature and its
//!   extendedKeyUsage (when present) holds serverAuth.
//!
//! Trust anchors are taken as given (subject name and key, as webpki does); their own dates
//! and constraints are not checked. Every candidate issuer whose subject matches is tried,
//! anchors first, and a dead end backtracks: a chain served with a cross-signed root (Let's
//! Encrypt's ISRG Root X2 signed by X1) verifies to either root, and a bundle of anchors
//! with several roots of one name is searched. The search stops after
//! [`MAX_SIGNATURE_CHECKS`] signature checks (webpki's budget is 100).
//!
//! [`CertificatePolicy`]: xmpp_handshake_core::trust::CertificatePolicy

use alloc::string::String;
use alloc::vec::Vec;

use der::asn1::ObjectIdentifier;
use der::{Reader, SliceReader, Tag, Tagged};

use xmpp_handshake_core::trust::x509::{
    element, only_element, read_bit_string, read_bool, read_oid, read_u8, Certificate,
    PublicKeyInfo, ID_CE_SUBJECT_ALT_NAME,
};
use xmpp_handshake_core::trust::{PkixOutcome, UnixTime};

use crate::signature::{SignatureAlgorithm, SignatureCheck, SignatureError, SignatureVerifier};

const ID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
const ID_CE_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
const ID_CE_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const ID_CE_EXT_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
/// The extensions this walk (or the policy, for subjectAltName) processes; any other one
/// marked critical fails the chain (RFC 5280 §4.2), as in webpki.
const UNDERSTOOD: [ObjectIdentifier; 4] = [
    ID_CE_BASIC_CONSTRAINTS,
    ID_CE_KEY_USAGE,
    ID_CE_EXT_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME,
];

/// keyUsage bits (RFC 5280 §4.2.1.3).
const DIGITAL_SIGNATURE: usize = 0;
const KEY_CERT_SIGN: usize = 5;

/// Longest path walked: end entity + this many intermediates, then an anchor.
const MAX_INTERMEDIATES: usize = 6;

/// Most signature checks one chain's search makes before it gives up.
pub const MAX_SIGNATURE_CHECKS: usize = 48;

/// Runs `f` on a reader over `contents`, which it must consume entirely (the core's
/// certificate view has the same helper, crate-private: its instances would be this crate's
/// closures anyway, and exporting it from the core cost the core's own callers their
/// inlining).
pub(crate) fn read_all<'a, T>(
    contents: &'a [u8],
    f: impl FnOnce(&mut SliceReader<'a>) -> der::Result<T>,
) -> der::Result<T> {
    let mut reader = SliceReader::new(contents)?;
    let value = f(&mut reader)?;
    reader.finish()?;
    Ok(value)
}

/// `BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER
/// (0..MAX) OPTIONAL }` (RFC 5280 §4.2.1.9); a path length over 255 is refused.
fn basic_constraints(der: &[u8]) -> der::Result<(bool, Option<u8>)> {
    let (contents, _) = only_element(der, Tag::Sequence)?;
    read_all(contents, |r| {
        let ca = if !r.is_finished() && Tag::peek(r)? == Tag::Boolean {
            read_bool(r)?
        } else {
            false
        };
        let path_len = if r.is_finished() {
            None
        } else {
            Some(read_u8(r)?)
        };
        Ok((ca, path_len))
    })
}

/// `KeyUsage ::= BIT STRING` (RFC 5280 §4.2.1.3): bit `n` (0 = digitalSignature, 5 =
/// keyCertSign) is set. More than 16 bits is malformed.
fn key_usage(der: &[u8], n: usize) -> der::Result<bool> {
    let bits = read_all(der, read_bit_string)?;
    if bits.bit_len() > 16 {
        return Err(Tag::BitString.length_error().into());
    }
    Ok(bits.get(n).unwrap_or(false))
}

/// `ExtKeyUsageSyntax ::= SEQUENCE OF KeyPurposeId` (RFC 5280 §4.2.1.12) allows TLS server
/// authentication.
fn allows_server_auth(der: &[u8]) -> der::Result<bool> {
    let (contents, _) = only_element(der, Tag::Sequence)?;
    let mut purposes = SliceReader::new(contents)?;
    let mut allowed = false;
    while !purposes.is_finished() {
        let purpose = read_oid(&mut purposes)?;
        allowed |= purpose == ID_KP_SERVER_AUTH || purpose == ANY_EXTENDED_KEY_USAGE;
    }
    Ok(allowed)
}

/// A certificate of the path, decoded.
struct Parsed<'d> {
    cert: Certificate<'d>,
}

impl<'d> Parsed<'d> {
    fn decode(der: &'d [u8]) -> Option<Self> {
        Certificate::parse(der).ok().map(|cert| Parsed { cert })
    }

    /// This certificate's signature, made by `issuer`'s key, verifies.
    fn signed_by(
        &self,
        issuer: &PublicKeyInfo<'_>,
        verifier: &mut impl SignatureVerifier,
    ) -> Result<(), SignatureError> {
        // RFC 5280 §4.1.1.2: the signed and the outer algorithm must be the same.
        let outer = &self.cert.signature_algorithm;
        if self.cert.tbs_signature != outer.der {
            return Err(SignatureError::Invalid);
        }
        let algorithm = SignatureAlgorithm::of_certificate(&outer.oid).ok_or(
            SignatureError::Unsupported("certificate signature algorithm"),
        )?;
        // The encodings webpki accepts: ECDSA without parameters (RFC 5758 §3.2), RSA
        // with NULL (RFC 8017 §A.2.4) or, as some encoders write it, without.
        let parameters_as_specified = match (algorithm, outer.parameters) {
            (SignatureAlgorithm::Ecdsa(_), None) | (SignatureAlgorithm::RsaPkcs1(_), None) => true,
            (SignatureAlgorithm::RsaPkcs1(_), Some(p)) => {
                p.tag() == Tag::Null && p.value().is_empty()
            }
            _ => false,
        };
        if !parameters_as_specified {
            return Err(SignatureError::Unsupported(
                "certificate signature algorithm parameters",
            ));
        }
        let signature = self
            .cert
            .signature
            .as_bytes()
            .ok_or(SignatureError::Unsupported("signature bit string"))?;
        verifier.verify(&SignatureCheck {
            algorithm,
            key: *issuer,
            message: self.cert.tbs,
            signature,
        })
    }

    /// Dates of a certificate in the chain, when the time is known.
    fn dates(&self, now: Option<UnixTime>) -> Result<(), PkixOutcome> {
        let Some(now) = now else { return Ok(()) };
        if now < self.cert.not_before {
            return Err(PkixOutcome::NotYetValid);
        }
        if now > self.cert.not_after {
            return Err(PkixOutcome::Expired);
        }
        Ok(())
    }

    /// RFC 5280 §4.2: a critical extension this walk does not process (nameConstraints,
    /// policy constraints, ...) fails the chain instead of being ignored.
    fn critical_extensions(&self) -> Result<(), PkixOutcome> {
        for ext in &self.cert.extensions {
            if ext.critical && !UNDERSTOOD.contains(&ext.oid) {
                let mut text = String::from("unsupported critical extension ");
                push_dotted(&mut text, &ext.oid);
                return Err(PkixOutcome::Other(text));
            }
        }
        Ok(())
    }

    /// extendedKeyUsage, when present, allows TLS server authentication (checked on the
    /// end entity and, as webpki does, on issuers).
    fn server_auth_usage(&self) -> Result<(), PkixOutcome> {
        let Some(ext) = self.cert.extension(ID_CE_EXT_KEY_USAGE) else {
            return Ok(());
        };
        match allows_server_auth(ext.value) {
            Ok(true) => Ok(()),
            Ok(false) => Err(PkixOutcome::WrongUsage),
            Err(_) => Err(PkixOutcome::Other("malformed extendedKeyUsage".into())),
        }
    }

    /// basicConstraints (`(false, None)` when absent).
    fn basic_constraints(&self) -> Result<(bool, Option<u8>), PkixOutcome> {
        match self.cert.extension(ID_CE_BASIC_CONSTRAINTS) {
            None => Ok((false, None)),
            Some(ext) => basic_constraints(ext.value)
                .map_err(|_| PkixOutcome::Other("malformed basicConstraints".into())),
        }
    }

    /// keyUsage, when present, has bit `n`.
    fn key_usage_allows(&self, n: usize) -> Result<(), PkixOutcome> {
        match self
            .cert
            .extension(ID_CE_KEY_USAGE)
            .map(|e| key_usage(e.value, n))
        {
            Some(Ok(false)) => Err(PkixOutcome::WrongUsage),
            None | Some(Ok(true)) => Ok(()),
            Some(Err(_)) => Err(PkixOutcome::Other("malformed keyUsage".into())),
        }
    }

    /// May this certificate issue the next one down, which has `below` intermediates
    /// under it (RFC 5280 §4.2.1.9, §4.2.1.3)?
    fn may_issue(&self, below: usize) -> Result<(), PkixOutcome> {
        self.critical_extensions()?;
        self.server_auth_usage()?;
        match self.basic_constraints()? {
            (true, Some(max)) if below > usize::from(max) => {
                return Err(PkixOutcome::Other(
                    "a CA's path length constraint is exceeded".into(),
                ))
            }
            (true, _) => {}
            (false, _) => return Err(PkixOutcome::WrongUsage),
        }
        self.key_usage_allows(KEY_CERT_SIGN)
    }

    /// The end entity is fit for a TLS server (RFC 5280 §4.2.1.3, §4.2.1.9, §4.2.1.12).
    fn end_entity_usage(&self) -> Result<(), PkixOutcome> {
        self.critical_extensions()?;
        if self.basic_constraints()?.0 {
            return Err(PkixOutcome::WrongUsage);
        }
        self.key_usage_allows(DIGITAL_SIGNATURE)?;
        self.server_auth_usage()
    }
}

/// Appends `oid` in its dotted form (`2.5.29.30`), read from its DER contents (X.690
/// §8.19: base-128 arcs, the first two as one): const-oid's `Display` and its arc iterator
/// cost ~0.3 KB of flash for this one error text.
fn push_dotted(out: &mut String, oid: &ObjectIdentifier) {
    let mut arc = 0u32;
    let mut first = true;
    for &b in oid.as_bytes() {
        // const-oid checked the encoding: arcs fit in 32 bits.
        arc = (arc << 7) | u32::from(b & 0x7f);
        if b & 0x80 != 0 {
            continue;
        }
        if first {
            let top = (arc / 40).min(2);
            push_decimal(out, top);
            out.push('.');
            push_decimal(out, arc - 40 * top);
            first = false;
        } else {
            out.push('.');
            push_decimal(out, arc);
        }
        arc = 0;
    }
}

fn push_decimal(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(digit) = digits.get_mut(i) {
            *digit = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if let Ok(text) = core::str::from_utf8(digits.get(i..).unwrap_or_default()) {
        out.push_str(text);
    }
}

fn unsupported(e: SignatureError) -> PkixOutcome {
    match e {
        SignatureError::Invalid => PkixOutcome::BadSignature,
        SignatureError::Unsupported(what) => {
            let mut text = String::from("unsupported or undecodable ");
            text.push_str(what);
            PkixOutcome::Other(text)
        }
    }
}

/// The path search: `chain` is the presented chain (end entity first, intermediates in
/// any order), `anchors` DER certificates. `NotChecked` without anchors.
pub(crate) fn check_chain(
    chain: &[&[u8]],
    anchors: &[&[u8]],
    now: Option<UnixTime>,
    verifier: &mut impl SignatureVerifier,
) -> PkixOutcome {
    if anchors.is_empty() {
        return PkixOutcome::NotChecked;
    }
    let Some(leaf_der) = chain.first() else {
        return PkixOutcome::Other("empty chain".into());
    };
    let Some(leaf) = Parsed::decode(leaf_der) else {
        return PkixOutcome::Other("undecodable end-entity certificate".into());
    };
    if let Err(e) = leaf.end_entity_usage() {
        return e;
    }
    let candidates = Candidates {
        intermediates: chain[1..]
            .iter()
            .take(MAX_INTERMEDIATES)
            .map(|der| Parsed::decode(der))
            .collect(),
        anchors: anchors.iter().filter_map(|d| Parsed::decode(d)).collect(),
        now,
    };
    if candidates.anchors.is_empty() {
        return PkixOutcome::Other("no trust anchor could be decoded".into());
    }
    let mut search = Search {
        checks_left: MAX_SIGNATURE_CHECKS,
        failure: None,
        verifier,
    };
    if candidates.search(&leaf, &mut search) {
        PkixOutcome::Valid
    } else {
        search.failure.unwrap_or(PkixOutcome::UnknownIssuer)
    }
}

/// What a path may be built from.
struct Candidates<'c> {
    /// The presented intermediates; `None` for one that did not decode.
    intermediates: Vec<Option<Parsed<'c>>>,
    anchors: Vec<Parsed<'c>>,
    now: Option<UnixTime>,
}

/// The state of one search.
struct Search<'v, V> {
    checks_left: usize,
    /// The most specific failure seen on a candidate whose name matched.
    failure: Option<PkixOutcome>,
    verifier: &'v mut V,
}

impl<V: SignatureVerifier> Search<'_, V> {
    /// One signature check, within the search's budget; a failure is remembered.
    fn signed(&mut self, child: &Parsed<'_>, issuer: &PublicKeyInfo<'_>) -> bool {
        let Some(left) = self.checks_left.checked_sub(1) else {
            self.failure = Some(PkixOutcome::Other("too many candidate paths".into()));
            return false;
        };
        self.checks_left = left;
        let verdict = child.signed_by(issuer, self.verifier).map_err(unsupported);
        self.holds(verdict)
    }

    /// `true` for `Ok`; an `Err` is remembered.
    fn holds(&mut self, verdict: Result<(), PkixOutcome>) -> bool {
        match verdict {
            Ok(()) => true,
            Err(e) => {
                self.failure = Some(e);
                false
            }
        }
    }
}

impl Candidates<'_> {
    /// Depth-first, without recursion (the stack a board must reserve stays what the
    /// static estimate sees): `path[..depth]` are the intermediates above the leaf, and
    /// `next[d]` the first candidate not yet tried as the issuer of the certificate at
    /// depth `d`. Each certificate reached tries the anchors first.
    fn search<V: SignatureVerifier>(&self, leaf: &Parsed<'_>, search: &mut Search<'_, V>) -> bool {
        if self.anchored(leaf, search) {
            return true;
        }
        let mut path = [0usize; MAX_INTERMEDIATES];
        let mut next = [0usize; MAX_INTERMEDIATES];
        let mut depth = 0;
        loop {
            let issuer = if depth < MAX_INTERMEDIATES {
                let child = match depth.checked_sub(1) {
                    None => Some(leaf),
                    Some(d) => self.intermediate(path[d]),
                };
                child.and_then(|child| self.issuer(child, &path[..depth], &mut next[depth], search))
            } else {
                None
            };
            match issuer {
                Some(i) => {
                    path[depth] = i;
                    depth += 1;
                    if let Some(slot) = next.get_mut(depth) {
                        *slot = 0;
                    }
                    if self
                        .intermediate(i)
                        .is_some_and(|c| self.anchored(c, search))
                    {
                        return true;
                    }
                }
                None if depth == 0 => return false,
                None => depth -= 1,
            }
        }
    }

    fn intermediate(&self, i: usize) -> Option<&Parsed<'_>> {
        self.intermediates.get(i).and_then(Option::as_ref)
    }

    /// An anchor named as `child`'s issuer signed it.
    fn anchored<V: SignatureVerifier>(
        &self,
        child: &Parsed<'_>,
        search: &mut Search<'_, V>,
    ) -> bool {
        self.anchors.iter().any(|anchor| {
            anchor.cert.subject == child.cert.issuer
                && search.signed(child, &anchor.cert.public_key)
        })
    }

    /// The next intermediate from `*from` on, not on `path`, that issued `child`, which has
    /// `path.len()` intermediates above the leaf: its name matches, it may issue (RFC 5280
    /// §4.2.1.9, §4.2.1.3), its dates hold and its key signed `child`.
    fn issuer<V: SignatureVerifier>(
        &self,
        child: &Parsed<'_>,
        path: &[usize],
        from: &mut usize,
        search: &mut Search<'_, V>,
    ) -> Option<usize> {
        while let Some(candidate) = self.intermediates.get(*from) {
            let i = *from;
            *from += 1;
            let Some(candidate) = candidate else { continue };
            if path.contains(&i) || candidate.cert.subject != child.cert.issuer {
                continue;
            }
            let usable = candidate
                .may_issue(path.len())
                .and_then(|()| candidate.dates(self.now));
            if search.holds(usable) && search.signed(child, &candidate.cert.public_key) {
                return Some(i);
            }
        }
        None
    }
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 5480 §2.2, RFC 8446
/// §4.2.3) as the fixed-size `r || s` of a curve with `field_len`-byte scalars. Decoded with
/// the same `der` 0.8 as the certificates, so no second DER decoder is linked for it.
pub(crate) fn ecdsa_sig_value(der: &[u8], field_len: usize) -> Result<Vec<u8>, SignatureError> {
    let bad = SignatureError::Unsupported("ECDSA signature encoding");
    // Through the certificate view's element reader: no second generic DER decoder.
    let (r, s) = read_all(der, |reader| element(reader, Tag::Sequence))
        .and_then(|(pair, _)| read_all(pair, |seq| Ok((uint(seq)?, uint(seq)?))))
        .map_err(|_| bad.clone())?;
    let mut out = alloc::vec![0u8; 2 * field_len];
    for (bytes, half) in [(r, 0), (s, 1)] {
        if bytes.len() > field_len {
            return Err(bad);
        }
        let end = (half + 1) * field_len;
        out[end - bytes.len()..end].copy_from_slice(bytes);
    }
    Ok(out)
}

/// The next element of `reader`, a non-negative INTEGER in its minimal encoding (X.690
/// §8.3): its magnitude, without the leading zero octet a value whose first bit is set
/// takes. The rules of der's `UintRef`, without its generic decoder (~0.3 KB of flash).
pub(crate) fn uint<'a>(reader: &mut SliceReader<'a>) -> der::Result<&'a [u8]> {
    match element(reader, Tag::Integer)?.0 {
        [] => Err(Tag::Integer.length_error().into()),
        contents @ [0] => Ok(contents),
        [0, next, ..] if *next < 0x80 => Err(Tag::Integer.non_canonical_error().into()),
        [0, magnitude @ ..] => Ok(magnitude),
        [first, ..] if *first >= 0x80 => Err(Tag::Integer.value_error().into()),
        contents => Ok(contents),
    }
}

/// The end entity's SubjectPublicKeyInfo.
pub(crate) fn leaf_spki(der: &[u8]) -> Option<PublicKeyInfo<'_>> {
    Certificate::parse(der).ok().map(|c| c.public_key)
}

#[cfg(test)]
mod tests {
    use der::asn1::UintRef;
    use der::Decode;

    use super::*;

    #[test]
    fn oids_print_as_const_oid_prints_them() {
        for dotted in [
            "0.0",
            "0.39",
            "1.0",
            "1.39",
            "2.0",
            "2.5.29.30",
            "2.39.1",
            "1.2.840.113549.1.1.11",
            "1.3.6.1.4.1.99999.1",
            "1.3.6.1.4.1.4294967295",
        ] {
            let oid = ObjectIdentifier::new(dotted).expect(dotted);
            let mut ours = String::new();
            push_dotted(&mut ours, &oid);
            assert_eq!(ours, alloc::string::ToString::to_string(&oid), "{dotted}");
            assert_eq!(ours, dotted);
        }
    }

    #[test]
    fn integers_read_as_ders_uint_ref_reads_them() {
        let check = |contents: &[u8]| {
            let mut tlv = alloc::vec![0x02, contents.len() as u8];
            tlv.extend_from_slice(contents);
            let ours = read_all(&tlv, uint).ok();
            let theirs = UintRef::from_der(&tlv).ok();
            let theirs = theirs.as_ref().map(UintRef::as_bytes);
            assert_eq!(ours, theirs, "{tlv:02x?}");
        };
        check(&[]);
        for a in 0..=255u8 {
            check(&[a]);
            for b in 0..=255u8 {
                check(&[a, b]);
            }
            check(&[0, 0, a]);
            check(&[0, a, 0]);
            check(&[a, 0, 0, 1]);
        }
    }
}
