//! RSA signature verification (RFC 8017: RSASSA-PKCS1-v1_5 §8.2.2, RSASSA-PSS §8.1.2) on
//! RustCrypto's `rsa`, for keys of 2048 to 4096 bits: Let's Encrypt's RSA hierarchy (an
//! RSA-4096 root, RSA-2048 intermediates and leaves) and TLS 1.3 servers with RSA keys,
//! which sign CertificateVerify with RSA-PSS.

use der::{SliceReader, Tag};
use rsa::{BigUint, Pkcs1v15Sign, Pss, RsaPublicKey};
use sha2::{Sha256, Sha384, Sha512};

use xmpp_handshake_core::trust::x509::only_element;

use crate::pkix::{read_all, uint};
use crate::signature::{HashAlg, SignatureAlgorithm, SignatureError};

/// webpki's lower bound; the upper one is `rsa`'s (and covers ISRG Root X1's 4096 bits).
const MIN_BITS: usize = 2048;

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017
/// §A.1.1), the contents of an rsaEncryption SubjectPublicKeyInfo's bit string.
fn public_key(der: &[u8]) -> Result<RsaPublicKey, SignatureError> {
    let bad = SignatureError::Unsupported("RSA public key encoding");
    let (contents, _) = only_element(der, Tag::Sequence).map_err(|_| bad.clone())?;
    let (n, e) =
        read_all(contents, |r: &mut SliceReader<'_>| Ok((uint(r)?, uint(r)?))).map_err(|_| bad)?;
    let n = BigUint::from_bytes_be(n);
    if n.bits() < MIN_BITS {
        return Err(SignatureError::Unsupported("RSA key under 2048 bits"));
    }
    RsaPublicKey::new(n, BigUint::from_bytes_be(e))
        .map_err(|_| SignatureError::Unsupported("RSA key (over 4096 bits, or a bad exponent)"))
}

/// Verifies `signature` over `message` with the RSA key `key` (the SubjectPublicKeyInfo's
/// bit string contents).
pub(crate) fn verify(
    key: &[u8],
    algorithm: SignatureAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let key = public_key(key)?;
    let hashed = algorithm.hash().digest(message)?;
    let verified = match algorithm {
        SignatureAlgorithm::RsaPkcs1(HashAlg::Sha256) => {
            key.verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, signature)
        }
        SignatureAlgorithm::RsaPkcs1(HashAlg::Sha384) => {
            key.verify(Pkcs1v15Sign::new::<Sha384>(), &hashed, signature)
        }
        SignatureAlgorithm::RsaPkcs1(HashAlg::Sha512) => {
            key.verify(Pkcs1v15Sign::new::<Sha512>(), &hashed, signature)
        }
        // The salt is as long as the hash (RFC 8446 §4.2.3): `Pss::new`.
        SignatureAlgorithm::RsaPss(HashAlg::Sha256) => {
            key.verify(Pss::new::<Sha256>(), &hashed, signature)
        }
        SignatureAlgorithm::RsaPss(HashAlg::Sha384) => {
            key.verify(Pss::new::<Sha384>(), &hashed, signature)
        }
        SignatureAlgorithm::RsaPss(HashAlg::Sha512) => {
            key.verify(Pss::new::<Sha512>(), &hashed, signature)
        }
        SignatureAlgorithm::Ecdsa(_) => return Err(SignatureError::Invalid),
    };
    verified.map_err(|_| SignatureError::Invalid)
}
