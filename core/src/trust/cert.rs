//! The end-entity certificate as the policy sees it: its presented identifiers (RFC 6125
//! §6.3), validity dates, fingerprints and the `tls-server-end-point` hash (RFC 5929 §4).
//!
//! DER decoding is the borrowed certificate view shared with the chain walk (on the `der`
//! crate, strict DER). Nothing here checks signatures:
//! the chain walk and all signature math belong to the TLS backend's PKIX verifier.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use der::asn1::{AnyRef, BmpString, Ia5StringRef, ObjectIdentifier, PrintableStringRef};
use der::asn1::{TeletexStringRef, Utf8StringRef};
use der::{Reader, SliceReader, Tag, Tagged};
use sha2::{Digest, Sha224, Sha256};
#[cfg(feature = "sha-512")]
use sha2::{Sha384, Sha512};

use super::fingerprint::Fingerprint;
use super::pin::Pin;
use super::x509::{
    context, element, only_element, read_all, read_oid, AlgorithmIdentifier, Certificate,
    ID_CE_SUBJECT_ALT_NAME,
};
use super::{CertError, UnixTime};

/// id-on-xmppAddr (RFC 6120 §13.7.1.4): otherName, UTF8String JID.
pub const ID_ON_XMPP_ADDR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.8.5");
/// id-on-dnsSRV (RFC 4985): otherName, IA5String `_service.DOMAIN`.
pub const ID_ON_DNS_SRV: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.8.7");
const ID_AT_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// One identifier the certificate presents (RFC 6125 §1.8), as it appears in the
/// certificate (not normalized).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PresentedId {
    /// subjectAltName dNSName.
    DnsId(String),
    /// subjectAltName otherName id-on-dnsSRV, e.g. `_xmpp-client.example.org`.
    SrvId(String),
    /// subjectAltName otherName id-on-xmppAddr: a JID (a bare domain on a server
    /// certificate, a bare JID on a client certificate).
    XmppAddr(String),
    /// Subject commonName: only a fallback, see `CertificatePolicy::allow_cn_fallback`.
    CommonName(String),
}

impl fmt::Display for PresentedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresentedId::DnsId(s) => write!(f, "DNS-ID {s}"),
            PresentedId::SrvId(s) => write!(f, "SRV-ID {s}"),
            PresentedId::XmppAddr(s) => write!(f, "XmppAddr {s}"),
            PresentedId::CommonName(s) => write!(f, "CN {s}"),
        }
    }
}

/// How RFC 5929 §4.1 hashes this certificate for `tls-server-end-point`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum EndPointHash {
    Sha224,
    Sha256,
    #[cfg(feature = "sha-512")]
    Sha384,
    #[cfg(feature = "sha-512")]
    Sha512,
}

/// The server's (or client's) end-entity certificate, decoded.
#[derive(Debug, Clone)]
pub struct EndEntityCertificate {
    presented: Vec<PresentedId>,
    has_uri_id: bool,
    not_before: UnixTime,
    not_after: UnixTime,
    self_issued: bool,
    pin: Pin,
    /// `tls-server-end-point` data, `None` when undefined for `signature_algorithm`.
    end_point: Option<Vec<u8>>,
    signature_algorithm: ObjectIdentifier,
}

impl EndEntityCertificate {
    /// Decode a DER certificate. Fails with [`CertError::BadEncoding`] on anything that is
    /// not a well-formed X.509 v3 certificate (including a malformed subjectAltName).
    pub fn parse(der: &[u8]) -> Result<Self, CertError> {
        let cert = Certificate::parse(der).map_err(|_| CertError::BadEncoding)?;

        let mut presented = Vec::new();
        let mut has_uri_id = false;
        if let Some(san) = cert.extension(ID_CE_SUBJECT_ALT_NAME) {
            subject_alt_names(san.value, &mut presented, &mut has_uri_id)
                .map_err(|_| CertError::BadEncoding)?;
        }
        cert.subject_attributes(|oid, value| {
            if oid == ID_AT_COMMON_NAME {
                if let Some(cn) = directory_string(value) {
                    presented.push(PresentedId::CommonName(cn));
                }
            }
        });

        let pin = Pin {
            spki_sha256: Fingerprint::of(cert.public_key.der),
            cert_sha256: Fingerprint::of(der),
        };
        let end_point = end_point_hash(&cert.signature_algorithm).map(|hash| match hash {
            EndPointHash::Sha224 => Sha224::digest(der).to_vec(),
            EndPointHash::Sha256 => Sha256::digest(der).to_vec(),
            #[cfg(feature = "sha-512")]
            EndPointHash::Sha384 => Sha384::digest(der).to_vec(),
            #[cfg(feature = "sha-512")]
            EndPointHash::Sha512 => Sha512::digest(der).to_vec(),
        });

        Ok(EndEntityCertificate {
            presented,
            has_uri_id,
            not_before: cert.not_before,
            not_after: cert.not_after,
            self_issued: cert.issuer == cert.subject,
            pin,
            end_point,
            signature_algorithm: cert.signature_algorithm.oid,
        })
    }

    /// Every identifier presented: SAN dNSName, SRV-ID, XmppAddr in certificate order,
    /// then subject CNs.
    pub fn presented(&self) -> &[PresentedId] {
        &self.presented
    }

    /// `true` when the subjectAltName holds an identifier this policy knows (DNS-ID,
    /// SRV-ID, XmppAddr) or a URI-ID: then CN-IDs are never consulted (RFC 6125 §6.4.4).
    pub fn has_san_identifiers(&self) -> bool {
        self.has_uri_id
            || self
                .presented
                .iter()
                .any(|p| !matches!(p, PresentedId::CommonName(_)))
    }

    /// notBefore.
    pub fn not_before(&self) -> UnixTime {
        self.not_before
    }

    /// notAfter.
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }

    /// Issuer name equals subject name (a self-signed certificate, if its signature
    /// verifies with its own key).
    pub fn is_self_issued(&self) -> bool {
        self.self_issued
    }

    /// SHA-256 of the SubjectPublicKeyInfo and of the whole certificate.
    pub fn pin(&self) -> Pin {
        self.pin
    }

    /// `tls-server-end-point` channel-binding data (RFC 5929 §4.1): the certificate hashed
    /// with the hash of its signature algorithm, SHA-256 when that is MD5 or SHA-1.
    /// Undefined (an error) for signature algorithms without exactly one hash (Ed25519,
    /// Ed448) or unknown ones.
    pub fn tls_server_end_point(&self) -> Result<Vec<u8>, CertError> {
        self.tls_server_end_point_data()
            .ok_or_else(|| CertError::ChannelBindingUndefined {
                signature_algorithm: self.signature_algorithm.to_string(),
            })
    }

    /// [`EndEntityCertificate::tls_server_end_point`] without the error (whose text an
    /// image that never asks for it does not link).
    pub(crate) fn tls_server_end_point_data(&self) -> Option<Vec<u8>> {
        self.end_point.clone()
    }
}

/// `SubjectAltName ::= GeneralNames ::= SEQUENCE OF GeneralName` (RFC 5280 §4.2.1.6): the
/// identifiers RFC 6125 §6.3 and RFC 6120 §13.7.1.4 read, in certificate order. Every
/// GeneralName must be one of the nine kinds; the IA5String ones must be ASCII.
fn subject_alt_names(
    der: &[u8],
    presented: &mut Vec<PresentedId>,
    has_uri_id: &mut bool,
) -> der::Result<()> {
    let (names, _) = only_element(der, Tag::Sequence)?;
    let mut names = SliceReader::new(names)?;
    while !names.is_finished() {
        let name = names.decode::<AnyRef<'_>>()?;
        match name.tag() {
            // otherName: SEQUENCE { type-id OID, value [0] EXPLICIT ANY } (IMPLICIT [0]).
            t if t == context(0, true) => {
                let (type_id, value) = read_all(name.value(), |r| {
                    let type_id = read_oid(r)?;
                    let (explicit, _) = element(r, context(0, true))?;
                    Ok((type_id, read_all(explicit, |v| v.decode::<AnyRef<'_>>())?))
                })?;
                if type_id == ID_ON_XMPP_ADDR {
                    match string(value, Tag::Utf8String, Utf8StringRef::new) {
                        Some(s) => presented.push(PresentedId::XmppAddr(s.as_str().into())),
                        None => debug!("xmppAddr that is not a UTF8String ignored"),
                    }
                } else if type_id == ID_ON_DNS_SRV {
                    match string(value, Tag::Ia5String, Ia5StringRef::new) {
                        Some(s) => presented.push(PresentedId::SrvId(s.as_str().into())),
                        None => debug!("SRVName that is not an IA5String ignored"),
                    }
                }
            }
            // rfc822Name [1], dNSName [2], uniformResourceIdentifier [6]: IA5String.
            t if t == context(1, false) || t == context(2, false) || t == context(6, false) => {
                let s = Ia5StringRef::new(name.value())?;
                if t == context(2, false) {
                    presented.push(PresentedId::DnsId(s.as_str().into()));
                } else if t == context(6, false) {
                    *has_uri_id = true;
                }
            }
            // x400Address [3], directoryName [4], ediPartyName [5]: constructed;
            // iPAddress [7], registeredID [8]: primitive. Not identities for XMPP.
            t if t == context(3, true)
                || t == context(4, true)
                || t == context(5, true)
                || t == context(7, false)
                || t == context(8, false) => {}
            t => return Err(t.unexpected_error(None).into()),
        }
    }
    Ok(())
}

/// `value` as the string type whose tag is `tag`, checked by its `new` (what der's
/// `decode_as` does for these types, without one generic instance per type): `None` for
/// another tag or a value outside the type's character set.
fn string<'a, T>(value: AnyRef<'a>, tag: Tag, new: fn(&'a [u8]) -> der::Result<T>) -> Option<T> {
    if value.tag() == tag {
        new(value.value()).ok()
    } else {
        None
    }
}

/// `DirectoryString` (RFC 5280 §4.1.2.4) as text; `None` for other types.
fn directory_string(value: AnyRef<'_>) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::PrintableString => PrintableStringRef::new(bytes)
            .ok()
            .map(|s| s.as_str().into()),
        Tag::TeletexString => TeletexStringRef::new(bytes).ok().map(|s| s.as_str().into()),
        Tag::Utf8String => Utf8StringRef::new(bytes).ok().map(|s| s.as_str().into()),
        Tag::BmpString => BmpString::from_ucs2(bytes)
            .ok()
            .map(|s| s.chars().collect()),
        _ => None,
    }
}

const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// RFC 5929 §4.1: the hash of each signature algorithm with exactly one (MD5 and SHA-1
/// give SHA-256).
const SIGNATURE_HASHES: &[(EndPointHash, &str)] = &[
    // md5WithRSA, sha1WithRSA, ecdsa-with-SHA1, dsa-with-sha1.
    (EndPointHash::Sha256, "1.2.840.113549.1.1.4"),
    (EndPointHash::Sha256, "1.2.840.113549.1.1.5"),
    (EndPointHash::Sha256, "1.2.840.10045.4.1"),
    (EndPointHash::Sha256, "1.2.840.10040.4.3"),
    (EndPointHash::Sha224, "1.2.840.113549.1.1.14"),
    (EndPointHash::Sha224, "1.2.840.10045.4.3.1"),
    (EndPointHash::Sha224, "2.16.840.1.101.3.4.3.1"),
    (EndPointHash::Sha256, "1.2.840.113549.1.1.11"),
    (EndPointHash::Sha256, "1.2.840.10045.4.3.2"),
    (EndPointHash::Sha256, "2.16.840.1.101.3.4.3.2"),
    #[cfg(feature = "sha-512")]
    (EndPointHash::Sha384, "1.2.840.113549.1.1.12"),
    #[cfg(feature = "sha-512")]
    (EndPointHash::Sha384, "1.2.840.10045.4.3.3"),
    #[cfg(feature = "sha-512")]
    (EndPointHash::Sha512, "1.2.840.113549.1.1.13"),
    #[cfg(feature = "sha-512")]
    (EndPointHash::Sha512, "1.2.840.10045.4.3.4"),
];

/// RSASSA-PSS (RFC 4055): the hash of its parameters' `hashAlgorithm` (SHA-1 gives
/// SHA-256).
const PSS_HASHES: &[(EndPointHash, &str)] = &[
    (EndPointHash::Sha256, "1.3.14.3.2.26"),
    (EndPointHash::Sha224, "2.16.840.1.101.3.4.2.4"),
    (EndPointHash::Sha256, "2.16.840.1.101.3.4.2.1"),
    #[cfg(feature = "sha-512")]
    (EndPointHash::Sha384, "2.16.840.1.101.3.4.2.2"),
    #[cfg(feature = "sha-512")]
    (EndPointHash::Sha512, "2.16.840.1.101.3.4.2.3"),
];

/// The tables above as flash holds them, built at compile time: per entry the length of
/// the OID's DER contents, the hash, the contents. Neither the dotted text (only built for
/// an error) nor an `ObjectIdentifier` (40 bytes each) is kept.
const SIGNATURE_TABLE: [u8; packed_len(SIGNATURE_HASHES)] = pack(SIGNATURE_HASHES);
const PSS_TABLE: [u8; packed_len(PSS_HASHES)] = pack(PSS_HASHES);

const fn packed_len(entries: &[(EndPointHash, &str)]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < entries.len() {
        len += 2 + ObjectIdentifier::new_unwrap(entries[i].1).as_bytes().len();
        i += 1;
    }
    len
}

const fn pack<const N: usize>(entries: &[(EndPointHash, &str)]) -> [u8; N] {
    let mut out = [0u8; N];
    let (mut at, mut i) = (0, 0);
    while i < entries.len() {
        let oid = ObjectIdentifier::new_unwrap(entries[i].1);
        let der = oid.as_bytes();
        out[at] = der.len() as u8;
        out[at + 1] = entries[i].0 as u8;
        let mut j = 0;
        while j < der.len() {
            out[at + 2 + j] = der[j];
            j += 1;
        }
        at += 2 + der.len();
        i += 1;
    }
    out
}

/// The hash `table` (packed) gives `oid`.
fn hash_of(table: &[u8], oid: &ObjectIdentifier) -> Option<EndPointHash> {
    let der = oid.as_bytes();
    let mut rest = table;
    while let [len, hash, tail @ ..] = rest {
        let (entry, next) = tail.split_at_checked(usize::from(*len))?;
        if entry == der {
            return [
                EndPointHash::Sha224,
                EndPointHash::Sha256,
                #[cfg(feature = "sha-512")]
                EndPointHash::Sha384,
                #[cfg(feature = "sha-512")]
                EndPointHash::Sha512,
            ]
            .into_iter()
            .find(|h| *h as u8 == *hash);
        }
        rest = next;
    }
    None
}

/// RFC 5929 §4.1 hash choice from the certificate's signatureAlgorithm. `None` for an
/// algorithm for which the binding is undefined, or whose hash (SHA-384, SHA-512) this
/// build leaves out (without the `sha-512` feature).
fn end_point_hash(alg: &AlgorithmIdentifier<'_>) -> Option<EndPointHash> {
    if alg.oid != RSASSA_PSS {
        return hash_of(&SIGNATURE_TABLE, &alg.oid);
    }
    // RSASSA-PSS: the hash named in its parameters (default SHA-1, hence SHA-256).
    match pss_hash_oid(alg.parameters.as_ref()?.value()).ok()? {
        None => Some(EndPointHash::Sha256),
        Some(hash) => hash_of(&PSS_TABLE, &hash),
    }
}

/// The `hashAlgorithm [0]` OID of RSASSA-PSS-params (RFC 4055), `None` when defaulted.
fn pss_hash_oid(params_contents: &[u8]) -> der::Result<Option<ObjectIdentifier>> {
    let mut reader = SliceReader::new(params_contents)?;
    if reader.is_finished() || Tag::peek(&reader)? != context(0, true) {
        return Ok(None);
    }
    let (inner, _) = element(&mut reader, context(0, true))?;
    let alg = read_all(inner, AlgorithmIdentifier::read)?;
    Ok(Some(alg.oid))
}

#[cfg(test)]
mod tests {
    use der::Decode;

    use super::*;

    fn oid(dotted: &str) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(dotted)
    }

    fn hash(dotted: &str) -> Option<EndPointHash> {
        hash_of(&SIGNATURE_TABLE, &oid(dotted))
    }

    #[test]
    fn rfc5929_4_1_hash_of_each_signature_algorithm() {
        use EndPointHash::*;
        for (dotted, expected) in [
            ("1.2.840.113549.1.1.4", Some(Sha256)),
            ("1.2.840.113549.1.1.5", Some(Sha256)),
            ("1.2.840.10045.4.1", Some(Sha256)),
            ("1.2.840.10040.4.3", Some(Sha256)),
            ("1.2.840.113549.1.1.14", Some(Sha224)),
            ("1.2.840.10045.4.3.1", Some(Sha224)),
            ("2.16.840.1.101.3.4.3.1", Some(Sha224)),
            ("1.2.840.113549.1.1.11", Some(Sha256)),
            ("1.2.840.10045.4.3.2", Some(Sha256)),
            ("2.16.840.1.101.3.4.3.2", Some(Sha256)),
            // id-dsa-with-sha384: not in RFC 5929's list here.
            ("2.16.840.1.101.3.4.3.3", None),
            ("1.2.840.10045.4.3.5", None),
            ("1.2.840.113549.1.1.15", None),
            // Ed25519: no single hash.
            ("1.3.101.112", None),
            // RSASSA-PSS: from its parameters, not from this table.
            ("1.2.840.113549.1.1.10", None),
        ] {
            assert_eq!(hash(dotted), expected, "{dotted}");
        }
        #[cfg(feature = "sha-512")]
        for (dotted, expected) in [
            ("1.2.840.113549.1.1.12", Sha384),
            ("1.2.840.10045.4.3.3", Sha384),
            ("1.2.840.113549.1.1.13", Sha512),
            ("1.2.840.10045.4.3.4", Sha512),
        ] {
            assert_eq!(hash(dotted), Some(expected), "{dotted}");
        }
        #[cfg(not(feature = "sha-512"))]
        for dotted in ["1.2.840.113549.1.1.12", "1.2.840.10045.4.3.4"] {
            assert_eq!(hash(dotted), None, "{dotted}");
        }
    }

    #[test]
    fn strings_read_as_ders_decode_as_reads_them() {
        let samples: [&[u8]; 7] = [
            b"example.org",
            b"a b'()+,-./:=?",
            b"under_score*",
            "bücher".as_bytes(),
            &[0xff, 0xfe],
            &[0, 0x41, 0xd8, 0x00],
            b"",
        ];
        // UTF8String, PrintableString, TeletexString, IA5String, BMPString, OCTET STRING.
        for tag in [0x0c, 0x13, 0x14, 0x16, 0x1e, 0x04] {
            for sample in samples {
                let mut tlv = alloc::vec![tag, sample.len() as u8];
                tlv.extend_from_slice(sample);
                let any = AnyRef::from_der(&tlv).unwrap();
                assert_eq!(
                    string(any, Tag::Utf8String, Utf8StringRef::new).map(|s| s.as_str()),
                    any.decode_as::<Utf8StringRef<'_>>()
                        .ok()
                        .map(|s| s.as_str()),
                    "{tlv:02x?}"
                );
                assert_eq!(
                    string(any, Tag::Ia5String, Ia5StringRef::new).map(|s| s.as_str()),
                    any.decode_as::<Ia5StringRef<'_>>().ok().map(|s| s.as_str()),
                    "{tlv:02x?}"
                );
                let theirs = match any.tag() {
                    Tag::PrintableString => any
                        .decode_as::<PrintableStringRef<'_>>()
                        .ok()
                        .map(|s| String::from(s.as_str())),
                    Tag::TeletexString => any
                        .decode_as::<TeletexStringRef<'_>>()
                        .ok()
                        .map(|s| String::from(s.as_str())),
                    Tag::Utf8String => any
                        .decode_as::<Utf8StringRef<'_>>()
                        .ok()
                        .map(|s| String::from(s.as_str())),
                    Tag::BmpString => any
                        .decode_as::<BmpString>()
                        .ok()
                        .map(|s| s.chars().collect()),
                    _ => None,
                };
                assert_eq!(directory_string(any), theirs, "{tlv:02x?}");
            }
        }
    }

    /// AlgorithmIdentifier { id-RSASSA-PSS, RSASSA-PSS-params } with `params` as the
    /// parameters' contents.
    fn pss(params: &[u8]) -> Option<EndPointHash> {
        let oid = [0x06, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 10];
        let mut der = alloc::vec![0x30, (oid.len() + 2 + params.len()) as u8];
        der.extend_from_slice(&oid);
        der.extend_from_slice(&[0x30, params.len() as u8]);
        der.extend_from_slice(params);
        let mut reader = SliceReader::new(&der).unwrap();
        end_point_hash(&AlgorithmIdentifier::read(&mut reader).unwrap())
    }

    /// `hashAlgorithm [0]` holding the AlgorithmIdentifier of the hash whose OID's
    /// contents are `hash_oid` (parameters NULL).
    fn hash_algorithm(hash_oid: &[u8]) -> alloc::vec::Vec<u8> {
        let len = hash_oid.len() as u8;
        let mut der = alloc::vec![0xa0, len + 6, 0x30, len + 4, 0x06, len];
        der.extend_from_slice(hash_oid);
        der.extend_from_slice(&[0x05, 0]);
        der
    }

    #[test]
    fn rfc5929_4_1_rsassa_pss_hashes_with_its_parameters_hash() {
        // Defaulted hashAlgorithm: SHA-1, hence SHA-256.
        assert_eq!(pss(&[]), Some(EndPointHash::Sha256));
        let sha256 = hash_algorithm(oid("2.16.840.1.101.3.4.2.1").as_bytes());
        assert_eq!(pss(&sha256), Some(EndPointHash::Sha256));
        let sha1 = hash_algorithm(oid("1.3.14.3.2.26").as_bytes());
        assert_eq!(pss(&sha1), Some(EndPointHash::Sha256));
        let sha224 = hash_algorithm(oid("2.16.840.1.101.3.4.2.4").as_bytes());
        assert_eq!(pss(&sha224), Some(EndPointHash::Sha224));
        let sha384 = hash_algorithm(oid("2.16.840.1.101.3.4.2.2").as_bytes());
        #[cfg(feature = "sha-512")]
        assert_eq!(pss(&sha384), Some(EndPointHash::Sha384));
        #[cfg(not(feature = "sha-512"))]
        assert_eq!(pss(&sha384), None);
        // An unknown hash: undefined.
        let md2 = hash_algorithm(oid("1.2.840.113549.2.2").as_bytes());
        assert_eq!(pss(&md2), None);
    }
}
