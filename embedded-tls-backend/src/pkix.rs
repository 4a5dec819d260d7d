//! The PKIX half of the embedded-tls backend: a chain walk from the end entity to a
//! configured trust anchor (RFC 5280 §6, reduced to what a TLS client needs), and ECDSA
//! signature checks on RustCrypto's `p256` (and `p384` with the `p384` feature). No name
//! check here: identity is [`CertificatePolicy`]'s.
//!
//! What it checks, per link of the path:
//! * issuer/subject name chaining (the issuer's subject equals the child's issuer);
//! * the child's signature with the issuer's key (ecdsa-with-SHA256, and ecdsa-with-SHA384
//!   with the `sha-512` feature, over the TBSCertificate bytes exactly as received);
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
//! and constraints are not checked. The walk is greedy (the first issuer candidate that
//! verifies is taken, no backtracking), which suffices for the ordered or unordered chains
//! servers send; cross-signed alternatives beyond that are not searched. RSA and Ed25519
//! signatures are not supported (a chain using them fails with `PkixOutcome::Other`).
//!
//! [`CertificatePolicy`]: xmpp_handshake_core::trust::CertificatePolicy

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use der::asn1::ObjectIdentifier;
use der::{Reader, SliceReader, Tag};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
#[cfg(feature = "sha-512")]
use sha2::{Digest, Sha384};

use xmpp_handshake_core::trust::x509::{
    element, oid, only_element, read_bit_string, read_bool, read_oid, read_u8, Certificate,
    PublicKeyInfo, ID_CE_SUBJECT_ALT_NAME,
};
use xmpp_handshake_core::trust::{Fingerprint, PkixOutcome, UnixTime};

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
pub(crate) const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
pub(crate) const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
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

/// Which hash a signature is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashAlg {
    Sha256,
    /// Without the `sha-512` feature: refused as unsupported.
    Sha384,
}

impl HashAlg {
    fn digest(self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        match self {
            // SHA-256 through the core's `Fingerprint::of`: firmware then links one copy
            // of SHA-256's `digest` (an instance of our own cost ~0.3 KB of flash).
            HashAlg::Sha256 => Ok(Fingerprint::of(message).as_bytes().to_vec()),
            #[cfg(feature = "sha-512")]
            HashAlg::Sha384 => Ok(Sha384::digest(message).to_vec()),
            #[cfg(not(feature = "sha-512"))]
            HashAlg::Sha384 => Err(SignatureError::Unsupported(
                "SHA-384 signature (enable the `sha-512` feature)",
            )),
        }
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// The math failed: wrong key, or altered data.
    Invalid,
    /// A key, curve or algorithm this backend does not implement, or an undecodable key or
    /// signature.
    Unsupported(&'static str),
}

/// Runs `f` on a reader over `contents`, which it must consume entirely (the core's
/// certificate view has the same helper, crate-private: its instances would be this crate's
/// closures anyway, and exporting it from the core cost the core's own callers their
/// inlining).
fn read_all<'a, T>(
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

    fn spki(&self) -> &PublicKeyInfo<'d> {
        &self.cert.public_key
    }

    /// This certificate's signature, made by `issuer`'s key, verifies.
    fn signed_by(&self, issuer: &PublicKeyInfo<'_>) -> Result<(), SignatureError> {
        // RFC 5280 §4.1.1.2: the signed and the outer algorithm must be the same.
        if self.cert.tbs_signature != self.cert.signature_algorithm.der {
            return Err(SignatureError::Invalid);
        }
        let alg = &self.cert.signature_algorithm.oid;
        let hash = if *alg == ECDSA_WITH_SHA256 {
            HashAlg::Sha256
        } else if *alg == ECDSA_WITH_SHA384 {
            HashAlg::Sha384
        } else {
            return Err(SignatureError::Unsupported(
                "certificate signature algorithm (only ecdsa-with-SHA256/SHA384)",
            ));
        };
        let signature = self
            .cert
            .signature
            .as_bytes()
            .ok_or(SignatureError::Unsupported("signature bit string"))?;
        verify_ecdsa_der(issuer, hash, self.cert.tbs, signature)
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
            PkixOutcome::Other(format!("unsupported or undecodable {what}"))
        }
    }
}

/// The chain walk: `chain` is the presented chain (end entity first, intermediates in any
/// order), `anchors` DER certificates. `NotChecked` without anchors.
pub(crate) fn check_chain(
    chain: &[&[u8]],
    anchors: &[&[u8]],
    now: Option<UnixTime>,
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
    let intermediates: Vec<Option<Parsed<'_>>> =
        chain[1..].iter().map(|der| Parsed::decode(der)).collect();
    let anchors: Vec<Parsed<'_>> = anchors.iter().filter_map(|d| Parsed::decode(d)).collect();
    if anchors.is_empty() {
        return PkixOutcome::Other("no trust anchor could be decoded".into());
    }

    let mut used = [false; MAX_INTERMEDIATES];
    let mut current = &leaf;
    // The most specific failure seen on a candidate whose name matched.
    let mut failure: Option<PkixOutcome> = None;
    for depth in 0..=MAX_INTERMEDIATES {
        let issuer_name = current.cert.issuer;
        for anchor in &anchors {
            if anchor.cert.subject != issuer_name {
                continue;
            }
            match current.signed_by(anchor.spki()) {
                Ok(()) => return PkixOutcome::Valid,
                Err(e) => failure = Some(unsupported(e)),
            }
        }
        if depth == MAX_INTERMEDIATES {
            break;
        }
        let mut next = None;
        for (i, candidate) in intermediates.iter().enumerate().take(MAX_INTERMEDIATES) {
            let Some(candidate) = candidate else { continue };
            if used[i] || candidate.cert.subject != issuer_name {
                continue;
            }
            let verdict = candidate
                .may_issue(depth)
                .and_then(|()| candidate.dates(now))
                .and_then(|()| current.signed_by(candidate.spki()).map_err(unsupported));
            match verdict {
                Ok(()) => {
                    next = Some(i);
                    break;
                }
                Err(e) => failure = Some(e),
            }
        }
        match next {
            Some(i) => {
                used[i] = true;
                current = intermediates[i].as_ref().expect("decoded above");
            }
            None => break,
        }
    }
    failure.unwrap_or(PkixOutcome::UnknownIssuer)
}

/// Verifies a DER ECDSA signature (`Ecdsa-Sig-Value`, as in certificates and TLS 1.3
/// CertificateVerify) over `message` hashed with `hash`, with the key in `spki`.
pub(crate) fn verify_ecdsa_der(
    spki: &PublicKeyInfo<'_>,
    hash: HashAlg,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let curve = ec_curve(spki)?;
    let point = spki
        .key
        .as_bytes()
        .ok_or(SignatureError::Unsupported("public key bit string"))?;
    if curve == SECP256R1 {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| SignatureError::Unsupported("P-256 public key"))?;
        let sig = p256::ecdsa::Signature::from_slice(&ecdsa_sig_value(signature, 32)?)
            .map_err(|_| SignatureError::Invalid)?;
        return key
            .verify_prehash(&hash.digest(message)?, &sig)
            .map_err(|_| SignatureError::Invalid);
    }
    #[cfg(feature = "p384")]
    if curve == SECP384R1 {
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| SignatureError::Unsupported("P-384 public key"))?;
        let sig = p384::ecdsa::Signature::from_slice(&ecdsa_sig_value(signature, 48)?)
            .map_err(|_| SignatureError::Invalid)?;
        return key
            .verify_prehash(&hash.digest(message)?, &sig)
            .map_err(|_| SignatureError::Invalid);
    }
    if curve == SECP384R1 {
        return Err(SignatureError::Unsupported(
            "P-384 key (enable the `p384` feature)",
        ));
    }
    Err(SignatureError::Unsupported("elliptic curve"))
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 5480 §2.2, RFC 8446
/// §4.2.3) as the fixed-size `r || s` of a curve with `field_len`-byte scalars. Decoded with
/// the same `der` 0.8 as the certificates, so no second DER decoder is linked for it.
fn ecdsa_sig_value(der: &[u8], field_len: usize) -> Result<Vec<u8>, SignatureError> {
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
fn uint<'a>(reader: &mut SliceReader<'a>) -> der::Result<&'a [u8]> {
    match element(reader, Tag::Integer)?.0 {
        [] => Err(Tag::Integer.length_error().into()),
        contents @ [0] => Ok(contents),
        [0, next, ..] if *next < 0x80 => Err(Tag::Integer.non_canonical_error().into()),
        [0, magnitude @ ..] => Ok(magnitude),
        [first, ..] if *first >= 0x80 => Err(Tag::Integer.value_error().into()),
        contents => Ok(contents),
    }
}

/// The named curve of an id-ecPublicKey SubjectPublicKeyInfo.
pub(crate) fn ec_curve(spki: &PublicKeyInfo<'_>) -> Result<ObjectIdentifier, SignatureError> {
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(SignatureError::Unsupported("public key type (only ECDSA)"));
    }
    spki.algorithm
        .parameters
        .and_then(|p| oid(p).ok())
        .ok_or(SignatureError::Unsupported(
            "EC parameters (only named curves)",
        ))
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
