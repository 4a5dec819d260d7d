//! Signature checks through the browser's WebCrypto (`crypto.subtle`, W3C Web Cryptography
//! API): the page carries no RSA or P-384 arithmetic; the browser verifies.
//!
//! * `importKey("spki", …)` takes the DER SubjectPublicKeyInfo as a certificate carries it
//!   (RFC 5280 §4.1.2.7): `rsaEncryption` keys for RSASSA-PKCS1-v1_5 and RSA-PSS,
//!   `id-ecPublicKey` with the named curve for ECDSA (a key on another curve than the
//!   algorithm's is refused by the browser).
//! * `verify(…)` with the algorithm's parameters: RSASSA-PKCS1-v1_5 (RFC 8017 §8.2, the
//!   `sha*WithRSAEncryption` certificate signatures), RSA-PSS with MGF1 on the same hash and
//!   a salt as long as the hash (RFC 8446 §4.2.3: TLS 1.3 `rsa_pss_rsae_*`
//!   CertificateVerify; RFC 4055 certificates signed so), ECDSA (FIPS 186-4, the
//!   `ecdsa-with-SHA*` certificate signatures and `ecdsa_secp*r1_sha*` CertificateVerify).
//! * ECDSA signatures come DER-encoded (`Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER,
//!   s INTEGER }`, RFC 5480 §2.2 / RFC 8446 §4.2.3); WebCrypto takes `r || s`, each
//!   left-padded to the curve's size (IEEE P1363): [`ecdsa_der_to_p1363`] converts, strictly
//!   (a signature that is not minimal DER is refused, as a DER verifier would).
//!
//! Both calls are asynchronous (Promises), so the checks run after the TLS handshake and
//! before any XMPP byte goes out on the tunnel (see `tls.rs`).

use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// `crypto.subtle.importKey(format, keyData, algorithm, extractable, keyUsages)`; throws
    /// (caught) where the page has no `crypto.subtle` (not a secure context).
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey, catch)]
    fn import_key(
        format: &str,
        key_data: &[u8],
        algorithm: &Object,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    /// `crypto.subtle.verify(algorithm, key, signature, data)`.
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = verify, catch)]
    fn subtle_verify(
        algorithm: &Object,
        key: &JsValue,
        signature: &[u8],
        data: &[u8],
    ) -> Result<Promise, JsValue>;
}

/// A signature scheme of a certificate or of a TLS 1.3 CertificateVerify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256Sha256,
    /// ECDSA on P-256 with SHA-384 (a P-384 CA's hash over a P-256 key: not in TLS 1.3's
    /// list, but in certificates).
    EcdsaP256Sha384,
    /// ECDSA on P-384 with SHA-256.
    EcdsaP384Sha256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSA-PSS, MGF1 and salt on SHA-256.
    RsaPssSha256,
    /// RSA-PSS, MGF1 and salt on SHA-384.
    RsaPssSha384,
    /// RSA-PSS, MGF1 and salt on SHA-512.
    RsaPssSha512,
}

/// The WebCrypto parameters of a [`Scheme`].
enum Params {
    /// Curve name and the byte length of a coordinate (and of `r`, `s`).
    Ecdsa(&'static str, usize),
    RsaPkcs1,
    /// Salt length in bytes.
    RsaPss(u32),
}

impl Scheme {
    /// The hash's WebCrypto name, and the scheme's parameters.
    fn params(self) -> (&'static str, Params) {
        const P256: Params = Params::Ecdsa("P-256", 32);
        const P384: Params = Params::Ecdsa("P-384", 48);
        match self {
            Scheme::EcdsaP256Sha256 => ("SHA-256", P256),
            Scheme::EcdsaP256Sha384 => ("SHA-384", P256),
            Scheme::EcdsaP384Sha256 => ("SHA-256", P384),
            Scheme::EcdsaP384Sha384 => ("SHA-384", P384),
            Scheme::RsaPkcs1Sha256 => ("SHA-256", Params::RsaPkcs1),
            Scheme::RsaPkcs1Sha384 => ("SHA-384", Params::RsaPkcs1),
            Scheme::RsaPkcs1Sha512 => ("SHA-512", Params::RsaPkcs1),
            Scheme::RsaPssSha256 => ("SHA-256", Params::RsaPss(32)),
            Scheme::RsaPssSha384 => ("SHA-384", Params::RsaPss(48)),
            Scheme::RsaPssSha512 => ("SHA-512", Params::RsaPss(64)),
        }
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebCryptoError {
    /// The signature does not verify with the key: wrong key, or altered data.
    Invalid,
    /// The key or signature cannot be used with the scheme (a key of another type or curve,
    /// an ECDSA signature that is not DER or does not fit the curve).
    Unsupported(&'static str),
    /// The page has no WebCrypto (`crypto.subtle` exists in secure contexts only: `https:`
    /// or a loopback host), or the browser failed otherwise.
    Unavailable(String),
}

impl core::fmt::Display for WebCryptoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WebCryptoError::Invalid => f.write_str("the signature does not verify"),
            WebCryptoError::Unsupported(why) => write!(f, "not verifiable: {why}"),
            WebCryptoError::Unavailable(why) => write!(
                f,
                "the browser's WebCrypto cannot verify signatures here ({why}); serve the \
                 page over https:// or from a loopback host"
            ),
        }
    }
}

/// `{ name, … }` for `importKey` and `verify`.
fn algorithm(name: &str, pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    let _ = Reflect::set(&o, &"name".into(), &name.into());
    for (key, value) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(key), value);
    }
    o
}

/// The text of a thrown or rejected JS value (a `DOMException`'s name and message).
fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.to_string()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

/// Verifies `signature` over `message` with the key in `spki` (DER SubjectPublicKeyInfo).
/// ECDSA signatures are DER, as certificates and CertificateVerify carry them.
pub async fn verify(
    scheme: Scheme,
    spki: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), WebCryptoError> {
    let (hash, params) = scheme.params();
    let p1363;
    let (import, check, signature) = match params {
        Params::Ecdsa(curve, size) => {
            p1363 = ecdsa_der_to_p1363(signature, size)?;
            (
                algorithm("ECDSA", &[("namedCurve", curve.into())]),
                algorithm("ECDSA", &[("hash", hash.into())]),
                p1363.as_slice(),
            )
        }
        Params::RsaPkcs1 => (
            algorithm("RSASSA-PKCS1-v1_5", &[("hash", hash.into())]),
            algorithm("RSASSA-PKCS1-v1_5", &[]),
            signature,
        ),
        Params::RsaPss(salt) => (
            algorithm("RSA-PSS", &[("hash", hash.into())]),
            algorithm("RSA-PSS", &[("saltLength", salt.into())]),
            signature,
        ),
    };
    let unavailable = |e: JsValue| WebCryptoError::Unavailable(describe(&e));
    let usages = Array::of1(&"verify".into());
    let imported = import_key("spki", spki, &import, false, &usages).map_err(unavailable)?;
    // A rejected import: the browser's DataError for a key of another type or curve.
    let key = JsFuture::from(imported).await.map_err(|_| {
        WebCryptoError::Unsupported("a key WebCrypto does not take for this algorithm")
    })?;
    let verified = subtle_verify(&check, &key, signature, message).map_err(unavailable)?;
    match JsFuture::from(verified).await {
        Ok(v) if v.as_bool() == Some(true) => Ok(()),
        Ok(_) => Err(WebCryptoError::Invalid),
        Err(e) => Err(unavailable(e)),
    }
}

/// `Ecdsa-Sig-Value` (DER `SEQUENCE { r INTEGER, s INTEGER }`) to `r || s`, each
/// big-endian and left-padded to `size` bytes (IEEE P1363, what WebCrypto's ECDSA takes).
/// Strict DER: definite short or one-byte long lengths, minimal positive integers, nothing
/// after the sequence; `r` and `s` must be non-zero and fit `size` bytes.
pub fn ecdsa_der_to_p1363(der: &[u8], size: usize) -> Result<Vec<u8>, WebCryptoError> {
    const MALFORMED: WebCryptoError =
        WebCryptoError::Unsupported("an ECDSA signature that is not a DER Ecdsa-Sig-Value");
    /// One TLV with `tag` at the front of `input`: (contents, rest).
    fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            // One length byte: 128..=255 (a shorter length in long form is not DER).
            0x81 => {
                let (&len, rest) = rest.split_first()?;
                (len >= 0x80).then_some((usize::from(len), rest))?
            }
            _ => return None,
        };
        (t == tag && rest.len() >= len).then(|| rest.split_at(len))
    }
    /// A minimal positive INTEGER's magnitude, without its sign byte.
    fn integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (value, rest) = tlv(input, 0x02)?;
        let magnitude = match value {
            // Negative, or empty.
            [] | [0x80..=0xff, ..] => return None,
            // A zero byte only where the next has its top bit set (else not minimal).
            [0, next, ..] if *next < 0x80 => return None,
            [0, magnitude @ ..] => magnitude,
            _ => value,
        };
        Some((magnitude, rest))
    }
    let (contents, rest) = tlv(der, 0x30).ok_or(MALFORMED)?;
    let (r, after_r) = integer(contents).ok_or(MALFORMED)?;
    let (s, after_s) = integer(after_r).ok_or(MALFORMED)?;
    if !rest.is_empty() || !after_s.is_empty() {
        return Err(MALFORMED);
    }
    let mut out = vec![0u8; 2 * size];
    for (value, half) in [r, s].into_iter().zip(out.chunks_exact_mut(size)) {
        if value.is_empty() || value.len() > size || value.iter().all(|&b| b == 0) {
            return Err(WebCryptoError::Unsupported(
                "an ECDSA signature whose r or s does not fit the curve",
            ));
        }
        half[size - value.len()..].copy_from_slice(value);
    }
    Ok(out)
}
