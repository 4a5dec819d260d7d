//! A borrowed view of a DER X.509 v3 certificate (RFC 5280 §4.1): one decoder, on the
//! `der` crate's slice reader, shared by the policy (identity, dates, pins,
//! `tls-server-end-point`) and TLS backends outside the core that walk chains themselves
//! (the embedded-tls backend, crate `xmpp-handshake-embedded-tls`). Every field is a
//! slice of the input; nothing is re-encoded, so the pins hash the SubjectPublicKeyInfo
//! and the signatures cover the TBSCertificate exactly as received.
//!
//! Decoding is strict DER for every element read (definite minimal lengths, no trailing
//! data, the tag each field of RFC 5280 §4.1 requires, version v1–v3, no extension twice
//! (RFC 5280 §4.2)), and names are checked to be sequences of sets of attribute type and
//! value pairs. Values are interpreted only where someone reads them: the extensions'
//! contents by [`Certificate::extension`]'s callers, attribute values by the CN lookup.
//!
//! The DER helpers ([`element`], [`only_element`], [`read_oid`], [`read_bit_string`],
//! [`read_bool`], [`read_u8`], [`oid`]) are public so that a backend decodes extensions and signatures with this same
//! code rather than with `der`'s generic decoders (each generic instance costs flash on
//! microcontrollers). They are not generic, so one copy serves the core and the backend;
//! the one generic helper, `read_all`, stays private (exported, its instances were no
//! longer inlined into their callers: +5 KB of wasm). The types in this module's API are
//! those of `der` 0.8: a backend depends on that same version.

use alloc::vec::Vec;

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der::{DateTime, Decode, Reader, SliceReader, Tag, TagNumber, Tagged};

use super::UnixTime;

/// id-ce-subjectAltName (RFC 5280 §4.2.1.6), which the policy processes (a chain walk
/// counts it among the extensions it understands).
pub const ID_CE_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// `[n]` with the constructed bit as given (RFC 5280 uses both kinds).
pub(crate) const fn context(number: u8, constructed: bool) -> Tag {
    Tag::ContextSpecific {
        constructed,
        number: TagNumber(number as u32),
    }
}

/// The next element of `reader`, which must carry `tag`: its contents and its whole
/// encoding (tag, length and contents).
pub fn element<'a>(reader: &mut SliceReader<'a>, tag: Tag) -> der::Result<(&'a [u8], &'a [u8])> {
    let tlv = reader.tlv_bytes()?;
    let any = AnyRef::try_from(tlv)?;
    any.tag().assert_eq(tag)?;
    Ok((any.value(), tlv))
}

/// An OBJECT IDENTIFIER element's value (X.690 §8.19), checked by const-oid. Every OID
/// goes through here and [`element`] rather than through der's generic `Decode` for
/// `ObjectIdentifier`: one copy of the code fewer (~0.5 KB of flash on Cortex-M).
pub fn oid(value: AnyRef<'_>) -> der::Result<ObjectIdentifier> {
    value.tag().assert_eq(Tag::ObjectIdentifier)?;
    ObjectIdentifier::from_bytes(value.value())
        .map_err(|_| Tag::ObjectIdentifier.value_error().into())
}

/// The next element of `reader`, an OBJECT IDENTIFIER.
pub fn read_oid(reader: &mut SliceReader<'_>) -> der::Result<ObjectIdentifier> {
    oid(AnyRef::decode(reader)?)
}

/// The next element of `reader`, a BIT STRING (X.690 §8.6: the count of unused bits, then
/// the bits), checked by der's `BitStringRef::new` as der's own decoder does.
pub fn read_bit_string<'a>(reader: &mut SliceReader<'a>) -> der::Result<BitStringRef<'a>> {
    let (value, _) = element(reader, Tag::BitString)?;
    let (&unused_bits, bits) = value
        .split_first()
        .ok_or_else(|| der::Error::from(Tag::BitString.length_error()))?;
    BitStringRef::new(unused_bits, bits)
}

/// The next element of `reader`, a BOOLEAN (X.690 §11.1: one contents octet, `0x00` or
/// `0xFF`), read as der's own decoder reads one but without its generic instance (with
/// [`read_u8`]'s, ~1.1 KB of flash on Cortex-M).
pub fn read_bool(reader: &mut SliceReader<'_>) -> der::Result<bool> {
    match element(reader, Tag::Boolean)?.0 {
        [0x00] => Ok(false),
        [0xff] => Ok(true),
        [_] => Err(Tag::Boolean.non_canonical_error().into()),
        _ => Err(Tag::Boolean.length_error().into()),
    }
}

/// The next element of `reader`, an INTEGER from 0 to 255 in its minimal encoding (X.690
/// §8.3: from 128 on, with a leading zero octet), read as der's decoder for `u8` reads one.
pub fn read_u8(reader: &mut SliceReader<'_>) -> der::Result<u8> {
    match element(reader, Tag::Integer)?.0 {
        [value] if *value < 0x80 => Ok(*value),
        [0x00, value] if *value >= 0x80 => Ok(*value),
        // Negative.
        [_] => Err(Tag::Integer.value_error().into()),
        _ => Err(Tag::Integer.non_canonical_error().into()),
    }
}

/// The one element `der` holds, which must carry `tag`: as [`element`]. Not generic: one
/// copy for the callers that read a whole encoding as one element.
pub fn only_element(der: &[u8], tag: Tag) -> der::Result<(&[u8], &[u8])> {
    read_all(der, |r| element(r, tag))
}

/// The certificates of a bundle: DER certificates one after the other (what a PEM file of
/// several `CERTIFICATE` blocks decodes to), each a SEQUENCE, nothing else between or
/// after them. `Err` if the bytes are not such a sequence.
pub fn concatenated(bundle: &[u8]) -> der::Result<Vec<&[u8]>> {
    let mut reader = SliceReader::new(bundle)?;
    let mut certificates = Vec::new();
    while !reader.is_finished() {
        certificates.push(element(&mut reader, Tag::Sequence)?.1);
    }
    Ok(certificates)
}

/// Runs `f` on a reader over `contents`, which it must consume entirely.
pub(crate) fn read_all<'a, T>(
    contents: &'a [u8],
    f: impl FnOnce(&mut SliceReader<'a>) -> der::Result<T>,
) -> der::Result<T> {
    let mut reader = SliceReader::new(contents)?;
    let value = f(&mut reader)?;
    reader.finish()?;
    Ok(value)
}

/// `AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AlgorithmIdentifier<'a> {
    /// The whole encoding (RFC 5280 §4.1.1.2 compares the two signature algorithms).
    pub der: &'a [u8],
    /// The algorithm.
    pub oid: ObjectIdentifier,
    /// The parameters, undecoded (e.g. the named curve of an id-ecPublicKey key).
    pub parameters: Option<AnyRef<'a>>,
}

impl<'a> AlgorithmIdentifier<'a> {
    pub(crate) fn read(reader: &mut SliceReader<'a>) -> der::Result<Self> {
        let (contents, der) = element(reader, Tag::Sequence)?;
        let (oid, parameters) = read_all(contents, |r| {
            let oid = read_oid(r)?;
            let parameters = if r.is_finished() {
                None
            } else {
                Some(AnyRef::decode(r)?)
            };
            Ok((oid, parameters))
        })?;
        Ok(AlgorithmIdentifier {
            der,
            oid,
            parameters,
        })
    }
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT
/// STRING }`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PublicKeyInfo<'a> {
    /// The whole encoding (what key pins hash).
    pub der: &'a [u8],
    /// The key's algorithm and its parameters.
    pub algorithm: AlgorithmIdentifier<'a>,
    /// subjectPublicKey (for an EC key, the SEC1-encoded point).
    pub key: BitStringRef<'a>,
}

impl<'a> PublicKeyInfo<'a> {
    /// Decodes one DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), nothing after it.
    pub fn parse(der: &'a [u8]) -> der::Result<Self> {
        read_all(der, Self::read)
    }

    fn read(reader: &mut SliceReader<'a>) -> der::Result<Self> {
        let (contents, der) = element(reader, Tag::Sequence)?;
        let (algorithm, key) = read_all(contents, |r| {
            Ok((AlgorithmIdentifier::read(r)?, read_bit_string(r)?))
        })?;
        Ok(PublicKeyInfo {
            der,
            algorithm,
            key,
        })
    }
}

/// One extension (RFC 5280 §4.1.2.9): `SEQUENCE { extnID OID, critical BOOLEAN DEFAULT
/// FALSE, extnValue OCTET STRING }`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Extension<'a> {
    /// extnID.
    pub oid: ObjectIdentifier,
    /// critical (FALSE when absent).
    pub critical: bool,
    /// The contents of extnValue: the extension's own DER.
    pub value: &'a [u8],
}

/// A decoded certificate, borrowing the DER it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Certificate<'a> {
    /// The TBSCertificate's whole encoding: the bytes the signature covers.
    pub tbs: &'a [u8],
    /// TBSCertificate.signature (whole encoding), which must equal `signature_algorithm`
    /// (RFC 5280 §4.1.1.2; checking it is the signature checker's job).
    pub tbs_signature: &'a [u8],
    /// signatureAlgorithm.
    pub signature_algorithm: AlgorithmIdentifier<'a>,
    /// signatureValue.
    pub signature: BitStringRef<'a>,
    /// The issuer Name, whole encoding (compared bytewise: DER is canonical).
    pub issuer: &'a [u8],
    /// The subject Name, whole encoding (compared bytewise: DER is canonical).
    pub subject: &'a [u8],
    /// Start of the validity period.
    pub not_before: UnixTime,
    /// End of the validity period.
    pub not_after: UnixTime,
    /// subjectPublicKeyInfo.
    pub public_key: PublicKeyInfo<'a>,
    /// The extensions in encoding order (empty for v1 and v2 certificates).
    pub extensions: Vec<Extension<'a>>,
}

impl<'a> Certificate<'a> {
    /// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`,
    /// decoded as described in the module docs. Signatures are not checked here.
    pub fn parse(der: &'a [u8]) -> der::Result<Self> {
        let (contents, _) = only_element(der, Tag::Sequence)?;
        let (tbs_contents, tbs, signature_algorithm, signature) = read_all(contents, |r| {
            let (tbs_contents, tbs) = element(r, Tag::Sequence)?;
            let algorithm = AlgorithmIdentifier::read(r)?;
            Ok((tbs_contents, tbs, algorithm, read_bit_string(r)?))
        })?;
        read_all(tbs_contents, |r| {
            let mut version = 0;
            if Tag::peek(r)? == context(0, true) {
                let (explicit, _) = element(r, context(0, true))?;
                version = read_all(explicit, read_u8)?;
                if version > 2 {
                    return Err(Tag::Integer.value_error().into());
                }
            }
            element(r, Tag::Integer)?; // serialNumber
            let (_, tbs_signature) = element(r, Tag::Sequence)?;
            let issuer = name(r)?;
            let (validity, _) = element(r, Tag::Sequence)?;
            let (not_before, not_after) = read_all(validity, |v| Ok((time(v)?, time(v)?)))?;
            let subject = name(r)?;
            let public_key = PublicKeyInfo::read(r)?;
            // issuerUniqueID [1], subjectUniqueID [2] (v2 and v3 only).
            for number in [1, 2] {
                if !r.is_finished() && Tag::peek(r)? == context(number, false) {
                    if version < 1 {
                        return Err(Tag::peek(r)?.unexpected_error(None).into());
                    }
                    element(r, context(number, false))?;
                }
            }
            let mut extensions = Vec::new();
            if !r.is_finished() {
                if version < 2 {
                    return Err(Tag::peek(r)?.unexpected_error(None).into());
                }
                let (explicit, _) = element(r, context(3, true))?;
                let (list, _) = only_element(explicit, Tag::Sequence)?;
                let mut list = SliceReader::new(list)?;
                while !list.is_finished() {
                    let (contents, _) = element(&mut list, Tag::Sequence)?;
                    let extension = read_all(contents, |x| {
                        let oid = read_oid(x)?;
                        let critical = if Tag::peek(x)? == Tag::Boolean {
                            read_bool(x)?
                        } else {
                            false
                        };
                        let (value, _) = element(x, Tag::OctetString)?;
                        Ok(Extension {
                            oid,
                            critical,
                            value,
                        })
                    })?;
                    if extensions
                        .iter()
                        .any(|e: &Extension<'_>| e.oid == extension.oid)
                    {
                        return Err(Tag::Sequence.value_error().into());
                    }
                    extensions.push(extension);
                }
            }
            Ok(Certificate {
                tbs,
                tbs_signature,
                signature_algorithm,
                signature,
                issuer,
                subject,
                not_before,
                not_after,
                public_key,
                extensions,
            })
        })
    }

    /// The extension with `oid`, if present (at most one: checked by [`Certificate::parse`]).
    pub fn extension(&self, oid: ObjectIdentifier) -> Option<&Extension<'a>> {
        self.extensions.iter().find(|e| e.oid == oid)
    }

    /// Calls `f` with every (type, value) of the subject, in encoding order.
    pub(crate) fn subject_attributes(&self, mut f: impl FnMut(ObjectIdentifier, AnyRef<'a>)) {
        // Checked by `parse`: the walk cannot fail here.
        let _ = for_each_attribute(self.subject, &mut f);
    }
}

/// `Time ::= CHOICE { utcTime UTCTime, generalTime GeneralizedTime }` (RFC 5280 §4.1.2.5):
/// `YYMMDDHHMMSSZ` (`YY` of 50 and above is 19YY, below 20YY) or `YYYYMMDDHHMMSSZ`, seconds
/// and `Z` mandatory. The digits are read here and checked and converted by der's
/// `DateTime` (1970 to 9999, real calendar dates): the rules of der's own UTCTime and
/// GeneralizedTime decoders, whose two generic instances cost ~2 KB of flash on Cortex-M.
fn time(reader: &mut SliceReader<'_>) -> der::Result<UnixTime> {
    let time = AnyRef::decode(reader)?;
    let bad = || der::Error::from(time.tag().value_error());
    let digits = |pair: &[u8]| match pair {
        [hi @ b'0'..=b'9', lo @ b'0'..=b'9'] => Ok((hi - b'0') * 10 + (lo - b'0')),
        _ => Err(bad()),
    };
    let (year, rest) = match (time.tag(), time.value()) {
        (Tag::UtcTime, v) if v.len() == 13 => {
            let yy = u16::from(digits(&v[..2])?);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
        }
        (Tag::GeneralizedTime, v) if v.len() == 15 => (
            u16::from(digits(&v[..2])?) * 100 + u16::from(digits(&v[2..4])?),
            &v[4..],
        ),
        _ => return Err(bad()),
    };
    if rest[10] != b'Z' {
        return Err(bad());
    }
    let date = DateTime::new(
        year,
        digits(&rest[..2])?,
        digits(&rest[2..4])?,
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    )?;
    Ok(UnixTime(date.unix_duration().as_secs()))
}

/// A Name (RFC 5280 §4.1.2.4), checked, returned whole.
fn name<'a>(reader: &mut SliceReader<'a>) -> der::Result<&'a [u8]> {
    let (_, der) = element(reader, Tag::Sequence)?;
    for_each_attribute(der, &mut |_, _| {})?;
    Ok(der)
}

/// Calls `f` with each (type, value) of a Name, `SEQUENCE OF SET OF SEQUENCE { type OID,
/// value ANY }`, in encoding order. (`dyn`: one copy of the walk for both callers.)
fn for_each_attribute<'a>(
    name: &'a [u8],
    f: &mut dyn FnMut(ObjectIdentifier, AnyRef<'a>),
) -> der::Result<()> {
    let (rdns, _) = only_element(name, Tag::Sequence)?;
    let mut rdns = SliceReader::new(rdns)?;
    while !rdns.is_finished() {
        let (set, _) = element(&mut rdns, Tag::Set)?;
        let mut set = SliceReader::new(set)?;
        while !set.is_finished() {
            let (pair, _) = element(&mut set, Tag::Sequence)?;
            let (oid, value) = read_all(pair, |p| Ok((read_oid(p)?, AnyRef::decode(p)?)))?;
            f(oid, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use der::asn1::{GeneralizedTime, UtcTime};
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_bundle_splits_into_its_certificates_and_nothing_else() {
        let a: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x05];
        let b: &[u8] = &[0x30, 0x02, 0x05, 0x00];
        assert_eq!(concatenated(&[a, b].concat()).unwrap(), [a, b]);
        assert_eq!(concatenated(&[]).unwrap(), Vec::<&[u8]>::new());
        // Not a SEQUENCE, a truncated one, trailing bytes.
        assert!(concatenated(&[0x02, 0x01, 0x05]).is_err());
        assert!(concatenated(&a[..4]).is_err());
        assert!(concatenated(&[a, &[0x30]].concat()).is_err());
    }

    /// `time` on one TLV.
    fn ours(tlv: &[u8]) -> Option<u64> {
        read_all(tlv, time).ok().map(|t| t.0)
    }

    /// der's own decoders on the same TLV.
    fn ders(tlv: &[u8]) -> Option<u64> {
        match tlv.first() {
            Some(0x17) => UtcTime::from_der(tlv).ok().map(|t| t.to_unix_duration()),
            Some(0x18) => GeneralizedTime::from_der(tlv)
                .ok()
                .map(|t| t.to_unix_duration()),
            _ => None,
        }
        .map(|d| d.as_secs())
    }

    fn tlv(tag: u8, text: &[u8]) -> Vec<u8> {
        let mut out = alloc::vec![tag, text.len() as u8];
        out.extend_from_slice(text);
        out
    }

    /// `read` and der's decoder for `T` on a TLV of `tag` and `contents`.
    fn same_verdict<T: PartialEq + core::fmt::Debug + for<'a> Decode<'a>>(
        tag: u8,
        contents: &[u8],
        read: fn(&mut SliceReader<'_>) -> der::Result<T>,
    ) {
        let encoded = tlv(tag, contents);
        let ours = read_all(&encoded, read).ok();
        let theirs = T::from_der(&encoded).ok();
        assert_eq!(ours, theirs, "{encoded:02x?}");
    }

    #[test]
    fn booleans_and_small_integers_read_as_der_reads_them() {
        for tag in [0x01, 0x02, 0x04] {
            same_verdict::<bool>(tag, &[], read_bool);
            same_verdict::<u8>(tag, &[], read_u8);
            for a in 0..=255u8 {
                same_verdict::<bool>(tag, &[a], read_bool);
                same_verdict::<u8>(tag, &[a], read_u8);
                for b in 0..=255u8 {
                    same_verdict::<bool>(tag, &[a, b], read_bool);
                    same_verdict::<u8>(tag, &[a, b], read_u8);
                }
                same_verdict::<u8>(tag, &[0, 0, a], read_u8);
                same_verdict::<u8>(tag, &[0, a, 0], read_u8);
            }
        }
    }

    #[test]
    fn known_times() {
        assert_eq!(ours(&tlv(0x17, b"210101000000Z")), Some(1_609_459_200));
        assert_eq!(ours(&tlv(0x18, b"20900101000000Z")), Some(3_786_912_000));
        assert_eq!(ours(&tlv(0x17, b"700101000000Z")), Some(0));
        // 1969 is before what DateTime holds; no seconds; a time zone offset.
        assert_eq!(ours(&tlv(0x17, b"691231235959Z")), None);
        assert_eq!(ours(&tlv(0x17, b"2101010000Z")), None);
        assert_eq!(ours(&tlv(0x18, b"20210101000000+0100")), None);
        assert_eq!(ours(&tlv(0x04, b"210101000000Z")), None);
    }

    proptest! {
        /// The same verdict and value as der's UTCTime and GeneralizedTime decoders, on
        /// calendar fields around their valid ranges and on single-byte corruptions.
        #[test]
        fn same_as_der(
            generalized in any::<bool>(),
            year in 1940u16..2100,
            fields in (0u8..14, 0u8..33, 0u8..25, 0u8..61, 0u8..61),
            corrupt in proptest::option::of((0usize..15, any::<u8>())),
        ) {
            let (month, day, hour, minute, second) = fields;
            let mut text = if generalized {
                alloc::format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}Z")
            } else {
                alloc::format!("{:02}{month:02}{day:02}{hour:02}{minute:02}{second:02}Z", year % 100)
            }
            .into_bytes();
            if let Some((at, byte)) = corrupt {
                let at = at % text.len();
                text[at] = byte;
            }
            let encoded = tlv(if generalized { 0x18 } else { 0x17 }, &text);
            prop_assert_eq!(ours(&encoded), ders(&encoded));
        }
    }
}
