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
    end_point: Result<Vec<u8>, String>,
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
        let end_point = match end_point_hash(&cert.signature_algorithm) {
            Ok(EndPointHash::Sha224) => Ok(Sha224::digest(der).to_vec()),
            Ok(EndPointHash::Sha256) => Ok(Sha256::digest(der).to_vec()),
            #[cfg(feature = "sha-512")]
            Ok(EndPointHash::Sha384) => Ok(Sha384::digest(der).to_vec()),
            #[cfg(feature = "sha-512")]
            Ok(EndPointHash::Sha512) => Ok(Sha512::digest(der).to_vec()),
            Err(oid) => Err(oid),
        };

        Ok(EndEntityCertificate {
            presented,
            has_uri_id,
            not_before: cert.not_before,
            not_after: cert.not_after,
            self_issued: cert.issuer == cert.subject,
            pin,
            end_point,
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
        self.end_point
            .clone()
            .map_err(|oid| CertError::ChannelBindingUndefined {
                signature_algorithm: oid,
            })
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
                    match value.decode_as::<Utf8StringRef<'_>>() {
                        Ok(s) => presented.push(PresentedId::XmppAddr(s.as_str().into())),
                        Err(_) => debug!("xmppAddr that is not a UTF8String ignored"),
                    }
                } else if type_id == ID_ON_DNS_SRV {
                    match value.decode_as::<Ia5StringRef<'_>>() {
                        Ok(s) => presented.push(PresentedId::SrvId(s.as_str().into())),
                        Err(_) => debug!("SRVName that is not an IA5String ignored"),
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

/// `DirectoryString` (RFC 5280 §4.1.2.4) as text; `None` for other types.
fn directory_string(value: AnyRef<'_>) -> Option<String> {
    match value.tag() {
        Tag::PrintableString => value
            .decode_as::<PrintableStringRef<'_>>()
            .ok()
            .map(|s| s.as_str().into()),
        Tag::TeletexString => value
            .decode_as::<TeletexStringRef<'_>>()
            .ok()
            .map(|s| s.as_str().into()),
        Tag::Utf8String => value
            .decode_as::<Utf8StringRef<'_>>()
            .ok()
            .map(|s| s.as_str().into()),
        Tag::BmpString => value
            .decode_as::<BmpString>()
            .ok()
            .map(|s| s.chars().collect()),
        _ => None,
    }
}

/// RFC 5929 §4.1 hash choice from the certificate's signatureAlgorithm. `Err` carries the
/// dotted OID of an algorithm for which the binding is undefined, or whose hash (SHA-384,
/// SHA-512) this build leaves out (without the `sha-512` feature).
fn end_point_hash(alg: &AlgorithmIdentifier<'_>) -> Result<EndPointHash, String> {
    use EndPointHash::*;
    let oid = alg.oid.to_string();
    match oid.as_str() {
        // md5WithRSA, sha1WithRSA, ecdsa-with-SHA1, dsa-with-sha1: SHA-256 (RFC 5929 §4.1).
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.10045.4.1"
        | "1.2.840.10040.4.3" => Ok(Sha256),
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" | "2.16.840.1.101.3.4.3.1" => Ok(Sha224),
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" | "2.16.840.1.101.3.4.3.2" => Ok(Sha256),
        #[cfg(feature = "sha-512")]
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Ok(Sha384),
        #[cfg(feature = "sha-512")]
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Ok(Sha512),
        // RSASSA-PSS: the hash named in its parameters (default SHA-1, hence SHA-256).
        "1.2.840.113549.1.1.10" => {
            let params = alg.parameters.as_ref().ok_or_else(|| oid.clone())?;
            let hash = pss_hash_oid(params.value()).map_err(|_| oid.clone())?;
            match hash.as_deref() {
                None | Some("1.3.14.3.2.26") => Ok(Sha256),
                Some("2.16.840.1.101.3.4.2.4") => Ok(Sha224),
                Some("2.16.840.1.101.3.4.2.1") => Ok(Sha256),
                #[cfg(feature = "sha-512")]
                Some("2.16.840.1.101.3.4.2.2") => Ok(Sha384),
                #[cfg(feature = "sha-512")]
                Some("2.16.840.1.101.3.4.2.3") => Ok(Sha512),
                Some(_) => Err(oid),
            }
        }
        _ => Err(oid),
    }
}

/// The `hashAlgorithm [0]` OID of RSASSA-PSS-params (RFC 4055), `None` when defaulted.
fn pss_hash_oid(params_contents: &[u8]) -> der::Result<Option<String>> {
    let mut reader = SliceReader::new(params_contents)?;
    if reader.is_finished() || Tag::peek(&reader)? != context(0, true) {
        return Ok(None);
    }
    let (inner, _) = element(&mut reader, context(0, true))?;
    let alg = read_all(inner, AlgorithmIdentifier::read)?;
    Ok(Some(alg.oid.to_string()))
}
