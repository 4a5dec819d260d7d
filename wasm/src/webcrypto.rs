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
//!   left-padded to the curve's size (IEEE P1363): the backend's
//!   [`OwnedCheck::ecdsa_fixed_signature`] converts, strictly.
//!
//! Both calls are asynchronous (Promises): [`WebCrypto`] is the backend's [`AsyncCheck`],
//! behind its [`Deferred`] verifier, which answers the checks after the TLS handshake and
//! before the upgrade returns, so before any XMPP byte goes out on the tunnel (see
//! `tls.rs`). The answers are the backend's software verifier's: the same
//! [`SignatureError`] for the same key, algorithm and signature (RSA keys of 2048 to 4096
//! bits, ECDSA on the key's own curve, an ECDSA signature with an RSA key or the other way
//! round invalid).
//!
//! [`Deferred`]: xmpp_handshake_embedded_tls::signature::Deferred

use js_sys::{Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use xmpp_handshake_embedded_tls::signature::{
    AsyncCheck, HashAlg, OwnedCheck, SignatureAlgorithm, SignatureError,
};

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

/// The browser's WebCrypto as the backend's [`AsyncCheck`]; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebCrypto;

impl AsyncCheck for WebCrypto {
    async fn check(&mut self, check: &OwnedCheck) -> Result<(), SignatureError> {
        verify(check).await
    }
}

/// RSA keys WebCrypto is asked to use: webpki's and the software verifier's bounds.
const RSA_BITS: core::ops::RangeInclusive<f64> = 2048.0..=4096.0;

/// `{ name, … }` for `importKey` and `verify`.
fn algorithm(name: &str, pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    let _ = Reflect::set(&o, &"name".into(), &name.into());
    for (key, value) in pairs {
        let _ = Reflect::set(&o, &JsValue::from_str(key), value);
    }
    o
}

/// The WebCrypto name of a hash, and its length in bytes (RSA-PSS's salt length).
fn hash(h: HashAlg) -> (&'static str, u32) {
    match h {
        HashAlg::Sha256 => ("SHA-256", 32),
        HashAlg::Sha384 => ("SHA-384", 48),
        HashAlg::Sha512 => ("SHA-512", 64),
    }
}

/// Does `check` verify, by the browser's WebCrypto? See the module docs.
pub async fn verify(check: &OwnedCheck) -> Result<(), SignatureError> {
    const UNAVAILABLE: SignatureError = SignatureError::Unsupported(
        "no WebCrypto in this page (crypto.subtle needs https:// or a loopback host)",
    );
    let key_type = check.key_type().ok_or(SignatureError::Unsupported(
        "public key type (only ECDSA and RSA)",
    ))?;
    let ecdsa_signature;
    let (import, verify, signature) = match (key_type, check.algorithm) {
        ("P-256" | "P-384", SignatureAlgorithm::Ecdsa(h)) => {
            ecdsa_signature = check
                .ecdsa_fixed_signature()
                .ok_or(SignatureError::Unsupported("ECDSA signature encoding"))?;
            (
                algorithm("ECDSA", &[("namedCurve", key_type.into())]),
                algorithm("ECDSA", &[("hash", hash(h).0.into())]),
                ecdsa_signature.as_slice(),
            )
        }
        ("RSA", SignatureAlgorithm::RsaPkcs1(h)) => (
            algorithm("RSASSA-PKCS1-v1_5", &[("hash", hash(h).0.into())]),
            algorithm("RSASSA-PKCS1-v1_5", &[]),
            check.signature.as_slice(),
        ),
        ("RSA", SignatureAlgorithm::RsaPss(h)) => (
            algorithm("RSA-PSS", &[("hash", hash(h).0.into())]),
            algorithm("RSA-PSS", &[("saltLength", hash(h).1.into())]),
            check.signature.as_slice(),
        ),
        // An ECDSA signature by an RSA key, or the other way round, never verifies.
        _ => return Err(SignatureError::Invalid),
    };
    let usages = Array::of1(&"verify".into());
    let imported =
        import_key("spki", &check.spki, &import, false, &usages).map_err(|_| UNAVAILABLE)?;
    // A rejected import: the browser's DataError for a key it cannot read.
    let key = JsFuture::from(imported)
        .await
        .map_err(|_| SignatureError::Unsupported("public key encoding"))?;
    if key_type == "RSA" {
        let bits = Reflect::get(&key, &"algorithm".into())
            .and_then(|a| Reflect::get(&a, &"modulusLength".into()))
            .ok()
            .and_then(|b| b.as_f64())
            .unwrap_or(0.0);
        if !RSA_BITS.contains(&bits) {
            return Err(SignatureError::Unsupported(
                "RSA key (only 2048 to 4096 bits)",
            ));
        }
    }
    let verified =
        subtle_verify(&verify, &key, signature, &check.message).map_err(|_| UNAVAILABLE)?;
    match JsFuture::from(verified).await {
        Ok(v) if v.as_bool() == Some(true) => Ok(()),
        Ok(_) => Err(SignatureError::Invalid),
        // The browser refused the operation itself (not the signature): nothing verified.
        Err(_) => Err(SignatureError::Unsupported(
            "WebCrypto refused the signature check",
        )),
    }
}
