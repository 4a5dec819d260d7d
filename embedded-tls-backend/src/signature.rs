//! Signature checks: the one question the certificate path search and the TLS 1.3
//! CertificateVerify check ask, "does this signature over this message verify with this
//! key?", behind [`SignatureVerifier`], so that where the arithmetic runs is the caller's
//! choice:
//!
//! * [`Software`] answers at once on RustCrypto: ECDSA P-256 always (`p256`, which
//!   embedded-tls links for the key exchange anyway), P-384 with the `p384` feature, RSA
//!   with the `rsa` feature. Microcontrollers use it.
//! * [`Deferred`] answers from what it already knows and otherwise records the check as
//!   pending and assumes it holds; after the handshake, [`SignatureVerifier::settle`] runs
//!   the pending checks through an [`AsyncCheck`] (in the browser: WebCrypto) and the
//!   verifier decides again on the known answers, until the verdict rests on answers only.
//!   No application byte is sent before that (the upgrade returns only then), so a page
//!   carries no RSA or P-384 arithmetic and gets the same verdicts.
//!
//! Algorithms (what webpki accepts for server certificates and TLS 1.3):
//! * in certificates: ecdsa-with-SHA256/SHA384 (RFC 5758 §3.2) with P-256 or P-384 keys;
//!   sha256/384/512WithRSAEncryption (RFC 8017 §A.2.4, PKCS #1 v1.5) with RSA keys of
//!   2048 to 4096 bits;
//! * in CertificateVerify (RFC 8446 §4.2.3): ecdsa_secp256r1_sha256 (P-256 key),
//!   ecdsa_secp384r1_sha384 (P-384 key), rsa_pss_rsae_sha256/384/512 (RSA key, salt as long
//!   as the hash). TLS 1.3 allows PKCS #1 v1.5 only in certificates; a CertificateVerify
//!   with it is refused, as rustls refuses it.

use alloc::vec::Vec;
use core::future::Future;

use der::asn1::ObjectIdentifier;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
#[cfg(feature = "sha-512")]
use sha2::{Digest, Sha384, Sha512};

use xmpp_handshake_core::trust::x509::{oid, PublicKeyInfo};
use xmpp_handshake_core::trust::Fingerprint;

use crate::pkix::ecdsa_sig_value;

const fn oid_of(dotted: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(dotted)
}

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
pub(crate) const RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The hash a signature is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HashAlg {
    /// SHA-256.
    Sha256,
    /// SHA-384 (without the `sha-512` feature: refused as unsupported).
    Sha384,
    /// SHA-512 (without the `sha-512` feature: refused as unsupported).
    Sha512,
}

impl HashAlg {
    /// The digest of `message`.
    pub fn digest(self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        match self {
            // SHA-256 through the core's `Fingerprint::of`: firmware then links one copy
            // of SHA-256's `digest` (an instance of our own cost ~0.3 KB of flash).
            HashAlg::Sha256 => Ok(Fingerprint::of(message).as_bytes().to_vec()),
            #[cfg(feature = "sha-512")]
            HashAlg::Sha384 => Ok(Sha384::digest(message).to_vec()),
            #[cfg(feature = "sha-512")]
            HashAlg::Sha512 => Ok(Sha512::digest(message).to_vec()),
            #[cfg(not(feature = "sha-512"))]
            HashAlg::Sha384 | HashAlg::Sha512 => Err(SignatureError::Unsupported(
                "SHA-384/512 signature (enable the `sha-512` feature)",
            )),
        }
    }
}

/// A signature algorithm as a certificate or a CertificateVerify names it. For ECDSA the
/// curve is the key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SignatureAlgorithm {
    /// ECDSA over the hash; the signature is a DER `Ecdsa-Sig-Value` (RFC 5480 §2.2).
    Ecdsa(HashAlg),
    /// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2) over the hash.
    RsaPkcs1(HashAlg),
    /// RSASSA-PSS (RFC 8017 §8.1) with MGF1 of the same hash and a salt as long as the
    /// hash (RFC 8446 §4.2.3).
    RsaPss(HashAlg),
}

impl SignatureAlgorithm {
    /// The algorithm of a certificate's `signatureAlgorithm` (RFC 5758 §3.2, RFC 8017
    /// §A.2.4), if supported.
    pub(crate) fn of_certificate(algorithm: &ObjectIdentifier) -> Option<Self> {
        const TABLE: [(ObjectIdentifier, SignatureAlgorithm); 5] = [
            (
                oid_of("1.2.840.10045.4.3.2"),
                SignatureAlgorithm::Ecdsa(HashAlg::Sha256),
            ),
            (
                oid_of("1.2.840.10045.4.3.3"),
                SignatureAlgorithm::Ecdsa(HashAlg::Sha384),
            ),
            (
                oid_of("1.2.840.113549.1.1.11"),
                SignatureAlgorithm::RsaPkcs1(HashAlg::Sha256),
            ),
            (
                oid_of("1.2.840.113549.1.1.12"),
                SignatureAlgorithm::RsaPkcs1(HashAlg::Sha384),
            ),
            (
                oid_of("1.2.840.113549.1.1.13"),
                SignatureAlgorithm::RsaPkcs1(HashAlg::Sha512),
            ),
        ];
        TABLE
            .iter()
            .find(|(oid, _)| oid == algorithm)
            .map(|(_, alg)| *alg)
    }

    /// The hash.
    pub fn hash(self) -> HashAlg {
        match self {
            SignatureAlgorithm::Ecdsa(h)
            | SignatureAlgorithm::RsaPkcs1(h)
            | SignatureAlgorithm::RsaPss(h) => h,
        }
    }
}

/// One signature to check.
#[derive(Debug, Clone, Copy)]
pub struct SignatureCheck<'a> {
    /// How it was made.
    pub algorithm: SignatureAlgorithm,
    /// The signer's SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), decoded; `key.der` is its
    /// DER.
    pub key: PublicKeyInfo<'a>,
    /// What was signed (before hashing): a TBSCertificate, or the TLS 1.3 CertificateVerify
    /// content (RFC 8446 §4.4.3).
    pub message: &'a [u8],
    /// The signature as received: a DER `Ecdsa-Sig-Value` for ECDSA, the octet string for
    /// RSA.
    pub signature: &'a [u8],
}

impl SignatureCheck<'_> {
    /// An owned copy (for a check answered later).
    pub fn to_owned(&self) -> OwnedCheck {
        OwnedCheck {
            algorithm: self.algorithm,
            spki: self.key.der.to_vec(),
            message: self.message.to_vec(),
            signature: self.signature.to_vec(),
        }
    }
}

/// A [`SignatureCheck`] that owns its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedCheck {
    /// See [`SignatureCheck::algorithm`].
    pub algorithm: SignatureAlgorithm,
    /// The DER of [`SignatureCheck::key`].
    pub spki: Vec<u8>,
    /// See [`SignatureCheck::message`].
    pub message: Vec<u8>,
    /// See [`SignatureCheck::signature`].
    pub signature: Vec<u8>,
}

impl OwnedCheck {
    /// The borrowed view; `Err` when the key does not decode.
    pub fn as_check(&self) -> Result<SignatureCheck<'_>, SignatureError> {
        Ok(SignatureCheck {
            algorithm: self.algorithm,
            key: PublicKeyInfo::parse(&self.spki)
                .map_err(|_| SignatureError::Unsupported("public key encoding"))?,
            message: &self.message,
            signature: &self.signature,
        })
    }

    /// Is this the check `check` asks for?
    fn is(&self, check: &SignatureCheck<'_>) -> bool {
        self.algorithm == check.algorithm
            && self.spki == check.key.der
            && self.message == check.message
            && self.signature == check.signature
    }

    /// The key's type.
    fn key(&self) -> Option<KeyType> {
        key_type(&self.as_check().ok()?.key).ok()
    }

    /// For an ECDSA check: the signature as the fixed-size `r || s` (IEEE P1363) that
    /// WebCrypto and most APIs other than X.509 take, for the key's curve. `None` for RSA,
    /// an unknown curve or a malformed signature.
    pub fn ecdsa_fixed_signature(&self) -> Option<Vec<u8>> {
        let len = match self.key()? {
            KeyType::P256 => 32,
            KeyType::P384 => 48,
            KeyType::Rsa => return None,
        };
        ecdsa_sig_value(&self.signature, len).ok()
    }

    /// The key's type, as WebCrypto names its algorithm parameters: `Some("P-256")`,
    /// `Some("P-384")` for ECDSA keys, `Some("RSA")` for RSA keys, `None` otherwise.
    pub fn key_type(&self) -> Option<&'static str> {
        self.key().map(|key| match key {
            KeyType::P256 => "P-256",
            KeyType::P384 => "P-384",
            KeyType::Rsa => "RSA",
        })
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SignatureError {
    /// The math failed: wrong key, or altered data.
    Invalid,
    /// A key, curve or algorithm this build does not implement, or an undecodable key or
    /// signature.
    Unsupported(&'static str),
}

/// Answers signature checks (see the module docs).
pub trait SignatureVerifier {
    /// `true` for a verifier that puts checks off ([`Deferred`]): the certificate decision
    /// then keeps its inputs until [`SignatureVerifier::settle`] has answered them.
    const DEFERS: bool = false;

    /// Does `check` verify? A deferring verifier may answer `Ok` for a check it has put
    /// off; [`SignatureVerifier::settle`] then reports that it did.
    fn verify(&mut self, check: &SignatureCheck<'_>) -> Result<(), SignatureError>;

    /// Answers the checks put off since the last call; `true` if there were any (the
    /// verdicts that assumed them must be decided again). A synchronous verifier puts
    /// nothing off.
    fn settle(&mut self) -> impl Future<Output = bool> {
        core::future::ready(false)
    }
}

impl<V: SignatureVerifier> SignatureVerifier for &mut V {
    const DEFERS: bool = V::DEFERS;

    fn verify(&mut self, check: &SignatureCheck<'_>) -> Result<(), SignatureError> {
        (**self).verify(check)
    }

    fn settle(&mut self) -> impl Future<Output = bool> {
        (**self).settle()
    }
}

/// The synchronous verifier on RustCrypto (see the module docs for what each feature adds).
#[derive(Debug, Default, Clone, Copy)]
pub struct Software;

impl SignatureVerifier for Software {
    fn verify(&mut self, check: &SignatureCheck<'_>) -> Result<(), SignatureError> {
        verify_in_software(check)
    }
}

/// The key types this backend knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    P256,
    P384,
    Rsa,
}

fn key_type(spki: &PublicKeyInfo<'_>) -> Result<KeyType, SignatureError> {
    if spki.algorithm.oid == RSA_ENCRYPTION {
        return Ok(KeyType::Rsa);
    }
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(SignatureError::Unsupported("public key type"));
    }
    let curve = spki
        .algorithm
        .parameters
        .and_then(|p| oid(p).ok())
        .ok_or(SignatureError::Unsupported("EC parameters"))?;
    if curve == SECP256R1 {
        Ok(KeyType::P256)
    } else if curve == SECP384R1 {
        Ok(KeyType::P384)
    } else {
        Err(SignatureError::Unsupported("elliptic curve"))
    }
}

/// `true` if `spki` is an ECDSA key on P-256 (`Some(false)`: on P-384; `None`: not an
/// ECDSA key this backend knows). TLS 1.3 ties each ECDSA scheme to one curve.
pub(crate) fn ecdsa_curve_is_p256(spki: &PublicKeyInfo<'_>) -> Option<bool> {
    match key_type(spki).ok()? {
        KeyType::P256 => Some(true),
        KeyType::P384 => Some(false),
        KeyType::Rsa => None,
    }
}

/// [`Software`]'s answer.
fn verify_in_software(check: &SignatureCheck<'_>) -> Result<(), SignatureError> {
    let key = key_type(&check.key)?;
    let point = check
        .key
        .key
        .as_bytes()
        .ok_or(SignatureError::Unsupported("public key bit string"))?;
    match (key, check.algorithm) {
        (KeyType::P256, SignatureAlgorithm::Ecdsa(hash)) => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| SignatureError::Unsupported("P-256 public key"))?;
            let sig = p256::ecdsa::Signature::from_slice(&ecdsa_sig_value(check.signature, 32)?)
                .map_err(|_| SignatureError::Invalid)?;
            key.verify_prehash(&hash.digest(check.message)?, &sig)
                .map_err(|_| SignatureError::Invalid)
        }
        #[cfg(feature = "p384")]
        (KeyType::P384, SignatureAlgorithm::Ecdsa(hash)) => crate::p384::verify(
            point,
            &hash.digest(check.message)?,
            &ecdsa_sig_value(check.signature, 48)?,
        ),
        #[cfg(not(feature = "p384"))]
        (KeyType::P384, SignatureAlgorithm::Ecdsa(_)) => {
            Err(SignatureError::Unsupported("P-384 key (feature p384)"))
        }
        #[cfg(feature = "rsa")]
        (KeyType::Rsa, SignatureAlgorithm::RsaPkcs1(_) | SignatureAlgorithm::RsaPss(_)) => {
            crate::rsa::verify(point, check.algorithm, check.message, check.signature)
        }
        #[cfg(not(feature = "rsa"))]
        (KeyType::Rsa, SignatureAlgorithm::RsaPkcs1(_) | SignatureAlgorithm::RsaPss(_)) => {
            Err(SignatureError::Unsupported("RSA key (feature rsa)"))
        }
        // An ECDSA signature by an RSA key, or the other way round, never verifies.
        _ => Err(SignatureError::Invalid),
    }
}

/// Answers a put-off check later, asynchronously (in the browser: WebCrypto).
pub trait AsyncCheck {
    /// Does `check` verify?
    fn check(&mut self, check: &OwnedCheck) -> impl Future<Output = Result<(), SignatureError>>;
}

/// Most checks one verification may put off or remember (a chain walk makes a few per
/// candidate path; webpki allows 100 per chain).
pub const MAX_DEFERRED_CHECKS: usize = 64;

/// The deferring verifier (see the module docs): answers from `known`, puts the rest off.
///
/// With trust on first use, the policy writes a first-use pin at its first decision, which
/// rests on assumed answers: give the verifier a pin store that holds writes back until
/// the verdict is final (the wasm crate's `HeldPins`), or a forged chain's key stays pinned.
#[derive(Debug)]
pub struct Deferred<A> {
    checker: A,
    known: Vec<(OwnedCheck, Result<(), SignatureError>)>,
    pending: Vec<OwnedCheck>,
}

impl<A: AsyncCheck> Deferred<A> {
    /// A verifier that puts checks off to `checker`.
    pub fn new(checker: A) -> Self {
        Deferred {
            checker,
            known: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The checks answered so far, with their answers.
    pub fn known(&self) -> impl Iterator<Item = (&OwnedCheck, &Result<(), SignatureError>)> {
        self.known.iter().map(|(c, r)| (c, r))
    }
}

impl<A: AsyncCheck> SignatureVerifier for Deferred<A> {
    const DEFERS: bool = true;

    fn verify(&mut self, check: &SignatureCheck<'_>) -> Result<(), SignatureError> {
        if let Some((_, answer)) = self.known.iter().find(|(c, _)| c.is(check)) {
            return answer.clone();
        }
        if self.pending.iter().any(|c| c.is(check)) {
            return Ok(());
        }
        if self.known.len() + self.pending.len() >= MAX_DEFERRED_CHECKS {
            return Err(SignatureError::Unsupported(
                "more signature checks than one verification allows",
            ));
        }
        self.pending.push(check.to_owned());
        Ok(())
    }

    async fn settle(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        for check in core::mem::take(&mut self.pending) {
            let answer = self.checker.check(&check).await;
            self.known.push((check, answer));
        }
        true
    }
}
