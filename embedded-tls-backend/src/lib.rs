//! # xmpp-handshake-embedded-tls
//!
//! The embedded-tls backend of xmpp-handshake (firmware, wasm), `no_std` + `alloc`: a TLS
//! 1.3 client [`TlsUpgrade`] over any `embedded-io-async` transport, whose certificate
//! decision is the core's one policy, [`CertificatePolicy::verify_server`] (RFC 6120
//! §13.7.2), as on the host with rustls. The core itself stays TLS-agnostic: this crate
//! plugs into it through [`TlsUpgrade`], as the host's rustls wrapper does, and reads
//! certificates with the core's view (`xmpp_handshake_core::trust::x509`).
//!
//! * [`EmbeddedTls`]: wraps the transport in `embedded_tls::TlsConnection` (returned as
//!   [`EmbeddedTlsStream`]) with SNI = the server name the core hands over (the configured
//!   domain), record buffers the caller sizes, the caller's RNG, and the verifier below.
//!   `tls_info` gives `tls-server-end-point` (RFC 5929) of the certificate the verifier
//!   accepted.
//! * [`ServerVerifier`]: embedded-tls's `TlsVerifier`. It does **not** use embedded-tls's
//!   own `pki::CertVerifier` (that one matches only SAN dNSName or CN, so never an XmppAddr
//!   or SRV-ID, refuses every named certificate when no hostname is set, and does not check
//!   CA flags, path length or key usage). Instead:
//!   1. [`CertificatePolicy::verify_server`] decides identity (DNS-ID, SRV-ID, XmppAddr),
//!      dates (with the time given by [`ServerVerifier::with_time`]), pins and
//!      trust-on-first-use;
//!   2. when the policy needs it (not for configured or stored pins), a PKIX path search
//!      to the configured DER trust anchors (name chaining with backtracking over
//!      cross-signed alternatives, signatures through a [`signature::SignatureVerifier`]:
//!      ECDSA P-256, and with the `p384` and `rsa` features P-384 and RSA 2048-4096;
//!      basicConstraints CA, keyUsage and extendedKeyUsage on issuers, path length, dates
//!      of intermediates, server usage of the end entity, no unprocessed critical extension
//!      such as nameConstraints) supplies the
//!      [`PkixOutcome`](xmpp_handshake_core::trust::PkixOutcome);
//!   3. always, pinned or not, the TLS 1.3 CertificateVerify signature is checked with the
//!      accepted end entity's key (proof of possession): a replayed certificate fails.
//!
//! A handshake that ends without a certificate accepted by the policy **and** a verified
//! CertificateVerify is refused ([`EmbeddedTlsError::NotVerified`]), whatever embedded-tls
//! concluded.
//!
//! # Limits (embedded-tls 0.19)
//! * TLS 1.3 only; key exchange P-256 only (no X25519, no HelloRetryRequest: the server must
//!   accept the P-256 key share); one cipher suite per connection, by type parameter
//!   ([`Aes128GcmSha256`] by default, or [`Aes256GcmSha384`]). No client certificate
//!   (no SASL EXTERNAL).
//! * Handshake signatures: ECDSA P-256/SHA-256; with `p384` ECDSA P-384/SHA-384; with
//!   `rsa` RSA-PSS (rsa_pss_rsae_sha256/384/512, and the RSA schemes are then listed in
//!   the ClientHello). A verifier that defers ([`signature::Deferred`], the browser's
//!   WebCrypto) lists them too. A server that picks Ed25519 (embedded-tls lists it) fails
//!   with [`EmbeddedTlsError::UnsupportedHandshakeSignature`].
//! * **No `tls-exporter`** channel binding (RFC 9266): embedded-tls exposes no exporter
//!   and no key schedule. SCRAM `-PLUS` uses `tls-server-end-point` (RFC 5929) only; a
//!   server that binds only with `tls-exporter` gets plain SCRAM or nothing, per the SASL
//!   policy.
//! * After the handshake: a server KeyUpdate makes `read` fail (`TlsError::Unimplemented`),
//!   and some other post-handshake handshake messages reach an `unimplemented!()` (a
//!   panic) inside embedded-tls; NewSessionTicket is ignored. Long-lived sessions against
//!   servers that rotate keys must reconnect. ([`EmbeddedTlsStream`] turns a close_notify
//!   into `Ok(0)`; embedded-tls itself reports it as `Err(ConnectionClosed)`.)
//! * Buffers: the read buffer must hold a whole TLS record: 16640 bytes without max
//!   fragment length; with [`EmbeddedTls::with_max_fragment_length`] `Bits12`, 4352 bytes
//!   sufficed against OpenSSL-based servers (the server must honour the extension; rustls
//!   does not implement it). The larger buffer also encodes the ClientHello. Writes are
//!   split into records of the write buffer's size minus 128 bytes of overhead.
//!
//! # Size
//! Measured on thumbv7em-none-eabihf (release, opt-level "s", fat LTO, panic abort), an
//! initiating entity with SCRAM over a stub transport: 127 KB of flash without TLS; with
//! this backend (embedded-tls, AES-128-GCM, P-256 ECDH/ECDSA, the policy) 256 KB and with
//! `p384` 380 KB, both while certificates were decoded with `x509-cert`'s owned types (and
//! the backend was part of the core); the borrowed certificate view that replaced them
//! (`trust::x509`) saved 27.8 KB on the NUCLEO-F767ZI firmware. RAM: the two record buffers (e.g. 16640 + 4096
//! bytes) plus the heap the certificate decision uses while it runs (the decoded
//! certificates borrow the received chain; the heap holds the presented identifiers, the
//! extension lists and the end entity kept until CertificateVerify); it grows with
//! certificate size and extension count.
//!
//! # Features
//! * `sha-512`: SHA-384/512 signatures (ecdsa-with-SHA384 in chains, and the core's
//!   `sha-512`).
//! * `p384`: P-384 keys in chains and CertificateVerify (implies `sha-512`), on
//!   crypto-bigint: Let's Encrypt's ECDSA hierarchy (ISRG Root X2).
//! * `rsa`: RSA keys of 2048 to 4096 bits (implies `sha-512`), on RustCrypto's `rsa`: Let's
//!   Encrypt's RSA hierarchy (ISRG Root X1). With both, 28 KB more flash on the
//!   NUCLEO-F767ZI than with P-256 alone.
//! * `log` or `defmt`: where this crate, the core and embedded-tls log.
//! * `error-text`: the core's `error-text`, and the configuration and unsupported-feature
//!   details this crate hands the core in sentences (without it, a few words).
//! * `terse-errors`: no effect any more, kept so that builds naming it still build: a
//!   failure reaches the caller typed (`TlsUpgrade::classify` into the core's `TlsError`),
//!   so no `Display` text is linked unless the application displays the error.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

#[macro_use]
mod fmt;

#[cfg(feature = "p384")]
mod p384;
#[cfg(all(test, feature = "rsa", feature = "p384"))]
mod parity_tests;
mod pkix;
#[cfg(feature = "rsa")]
mod rsa;
pub mod signature;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::marker::PhantomData;

use ::embedded_tls::TlsReader;
pub use ::embedded_tls::{
    Aes128GcmSha256, Aes256GcmSha384, MaxFragmentLength, TlsCipherSuite, TlsConfig, TlsConnection,
    TlsContext, TlsError, TlsWriter,
};
use ::embedded_tls::{
    CertificateEntryRef, CertificateRef, CertificateVerifyRef, CryptoProvider, SignatureScheme,
    TlsVerifier, TLS_RECORD_OVERHEAD,
};
use embedded_io_async::{Read, Write};
use rand_core::{CryptoRng, RngCore};
use sha2::Digest;

use xmpp_handshake_core::connection::TlsInfo;
use xmpp_handshake_core::driver::TlsUpgrade;
use xmpp_handshake_core::error::{Alert, HandshakeFailure, TlsError as CoreTlsError};
use xmpp_handshake_core::sasl::ChannelBindingData;
use xmpp_handshake_core::trust::{
    CertError, CertificatePolicy, PinStore, ReferenceIdentity, UnixTime, Verdict,
};

use signature::{
    ecdsa_curve_is_p256, HashAlg, SignatureAlgorithm, SignatureCheck, SignatureError,
    SignatureVerifier, Software,
};

/// The context string of a server CertificateVerify (RFC 8446 §4.4.3).
const SERVER_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";

/// Why the embedded-tls upgrade failed.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EmbeddedTlsError {
    /// The certificate policy refused the server's certificate (the typed reason, exactly
    /// as with rustls on the host).
    Certificate(CertError),
    /// The server's CertificateVerify signature does not verify with the key of the
    /// certificate it presented: it does not hold that key (a replayed certificate).
    HandshakeSignature,
    /// The server signed the handshake with a scheme or key this backend does not
    /// implement.
    UnsupportedHandshakeSignature(&'static str),
    /// The handshake finished without a certificate accepted by the policy and a verified
    /// CertificateVerify (e.g. a server that skipped CertificateVerify). Refused.
    NotVerified,
    /// The write buffer cannot hold one record's overhead (embedded-tls needs more than
    /// `TLS_RECORD_OVERHEAD`, 128 bytes; a few KiB in practice).
    BufferTooSmall,
    /// The record buffers were used by an earlier upgrade: one `EmbeddedTls` serves one
    /// connection.
    AlreadyUsed,
    /// embedded-tls failed (I/O, alert from the server, protocol error, buffer too small).
    Tls(TlsError),
}

impl EmbeddedTlsError {
    /// A few words for the kind of failure, without the details `Display` gives.
    pub fn summary(&self) -> &'static str {
        match self {
            EmbeddedTlsError::Certificate(_) => "certificate refused",
            EmbeddedTlsError::HandshakeSignature => "handshake signature does not verify",
            EmbeddedTlsError::UnsupportedHandshakeSignature(_) => "unsupported handshake signature",
            EmbeddedTlsError::NotVerified => "handshake not verified",
            EmbeddedTlsError::BufferTooSmall => "TLS write buffer too small",
            EmbeddedTlsError::AlreadyUsed => "TLS buffers already used",
            EmbeddedTlsError::Tls(_) => "TLS protocol error",
        }
    }
}

impl core::fmt::Display for EmbeddedTlsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EmbeddedTlsError::Certificate(e) => core::fmt::Display::fmt(e, f),
            EmbeddedTlsError::HandshakeSignature => f.write_str(
                "the server's handshake signature does not verify with its certificate's key: \
                 it presented a certificate whose key it does not hold. Do not connect.",
            ),
            EmbeddedTlsError::UnsupportedHandshakeSignature(what) => write!(
                f,
                "the server's handshake signature uses an unsupported {what}; this TLS \
                 backend verifies ECDSA P-256 (and P-384 with the `p384` feature)"
            ),
            EmbeddedTlsError::NotVerified => f.write_str(
                "the TLS handshake ended without a verified certificate and handshake \
                 signature; refused",
            ),
            EmbeddedTlsError::BufferTooSmall => write!(
                f,
                "the TLS write buffer must be larger than {TLS_RECORD_OVERHEAD} bytes"
            ),
            EmbeddedTlsError::AlreadyUsed => f.write_str(
                "this EmbeddedTls already served a connection: create one per connection",
            ),
            EmbeddedTlsError::Tls(e) => write!(
                f,
                "TLS handshake failed: {e:?} (the server must offer TLS 1.3 with the P-256 \
                 group and the configured AES-GCM suite; check the record buffer sizes)"
            ),
        }
    }
}

impl core::error::Error for EmbeddedTlsError {}

impl From<EmbeddedTlsError> for CoreTlsError {
    fn from(error: EmbeddedTlsError) -> Self {
        match error {
            EmbeddedTlsError::Certificate(e) => CoreTlsError::Certificate(e),
            EmbeddedTlsError::HandshakeSignature => CoreTlsError::KeyNotProven,
            EmbeddedTlsError::UnsupportedHandshakeSignature(what) => {
                CoreTlsError::Handshake(HandshakeFailure::Unsupported(what))
            }
            EmbeddedTlsError::NotVerified => CoreTlsError::NotVerified,
            EmbeddedTlsError::BufferTooSmall => CoreTlsError::Config(sentence(
                "the TLS write buffer must be larger than one record's overhead (128 bytes; a \
                 few KiB in practice)",
                "TLS write buffer too small",
            )),
            EmbeddedTlsError::AlreadyUsed => CoreTlsError::Config(sentence(
                "this EmbeddedTls already served a connection: create one per connection",
                "TLS buffers already used",
            )),
            EmbeddedTlsError::Tls(e) => classify_library(e),
        }
    }
}

/// The sentence that says what to do with the `error-text` feature, else a few words (the
/// error stays typed either way).
fn sentence(long: &'static str, short: &'static str) -> &'static str {
    if cfg!(feature = "error-text") {
        long
    } else {
        short
    }
}

/// embedded-tls's own error, in the core's terms.
fn classify_library(error: TlsError) -> CoreTlsError {
    use HandshakeFailure as H;
    match error {
        TlsError::HandshakeAborted(_, alert) => CoreTlsError::Alert(Alert(alert as u8)),
        TlsError::AbortHandshake(_, alert) => {
            CoreTlsError::Handshake(H::AlertSent(Alert(alert as u8)))
        }
        TlsError::ConnectionClosed => CoreTlsError::Closed,
        TlsError::Io(kind) => CoreTlsError::Io(kind),
        TlsError::IoError => CoreTlsError::Io(embedded_io::ErrorKind::Other),
        TlsError::InvalidCipherSuite
        | TlsError::InvalidSupportedVersions
        | TlsError::InvalidKeyShare
        | TlsError::InvalidSignatureScheme => CoreTlsError::Handshake(H::Incompatible),
        TlsError::Unimplemented => CoreTlsError::Handshake(H::Unsupported(sentence(
            "a TLS feature embedded-tls does not implement (e.g. a HelloRetryRequest)",
            "unimplemented TLS feature",
        ))),
        TlsError::InsufficientSpace => CoreTlsError::Config(sentence(
            "a TLS record does not fit the read buffer: give it 16640 bytes, or ask for a \
             smaller max_fragment_length the server honours",
            "TLS record over the read buffer",
        )),
        TlsError::CryptoError => CoreTlsError::Handshake(H::Decrypt),
        TlsError::InternalError
        | TlsError::OutOfMemory
        | TlsError::EncodeError
        | TlsError::UnableToInitializeCryptoEngine
        | TlsError::InvalidPrivateKey => CoreTlsError::Handshake(H::Internal),
        // The verifier records its verdict before it returns these, and `accepted` reports
        // that verdict first; reaching here means no verdict was recorded.
        TlsError::InvalidCertificate | TlsError::InvalidSignature => CoreTlsError::NotVerified,
        TlsError::MissingHandshake
        | TlsError::InvalidRecord
        | TlsError::UnknownContentType
        | TlsError::InvalidNonceLength
        | TlsError::InvalidTicketLength
        | TlsError::UnknownExtensionType
        | TlsError::InvalidHandshake
        | TlsError::InvalidExtensionsLength
        | TlsError::InvalidSessionIdLength
        | TlsError::InvalidApplicationData
        | TlsError::InvalidCertificateEntry
        | TlsError::InvalidCertificateRequest
        | TlsError::ParseError(_)
        | TlsError::DecodeError => CoreTlsError::Handshake(H::PeerMisbehaved),
    }
}

/// embedded-tls's `TlsVerifier` that applies [`CertificatePolicy::verify_server`], a PKIX
/// chain walk to DER trust anchors, and the CertificateVerify check (see the module docs).
///
/// One verifier serves one reference identity, fixed at construction from configuration;
/// the SNI embedded-tls reports is not used for matching.
pub struct ServerVerifier<'a, P, V = Software> {
    reference: ReferenceIdentity,
    policy: CertificatePolicy,
    anchors: &'a [&'a [u8]],
    pins: P,
    signatures: V,
    now: Option<UnixTime>,
    leaf: Option<Vec<u8>>,
    transcript_hash: Option<Vec<u8>>,
    verdict: Option<Result<Verdict, CertError>>,
    proof: Option<Result<(), SignatureError>>,
    /// What a verifier that defers signature checks decides again on: the presented chain
    /// and the CertificateVerify (empty otherwise).
    deferred: Option<DeferredInputs>,
}

/// The handshake's inputs to the certificate decision, kept while signature checks are
/// deferred (see [`signature::Deferred`]).
#[derive(Debug)]
struct DeferredInputs {
    chain: Vec<Vec<u8>>,
    certificate_verify: Option<(SignatureScheme, Vec<u8>)>,
}

impl<P, V> core::fmt::Debug for ServerVerifier<'_, P, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerVerifier")
            .field("reference", &self.reference)
            .field("policy", &self.policy)
            .field("anchors", &self.anchors.len())
            .field("now", &self.now)
            .field("verdict", &self.verdict)
            .finish_non_exhaustive()
    }
}

impl<'a, P: PinStore> ServerVerifier<'a, P> {
    /// A verifier for `reference` under `policy`, checking signatures in software
    /// ([`Software`]; see [`ServerVerifier::with_signature_verifier`]).
    ///
    /// * `anchors`: DER trust anchors (CA certificates, e.g. `include_bytes!` in flash);
    ///   empty when the policy never needs them (`Trust::Pinned`). A policy that does then
    ///   fails closed with `ChainInvalid { NotChecked }`.
    /// * `pins`: the pin store for `Trust::TrustOnFirstUse` (`NoPins` otherwise;
    ///   `&mut store` to keep it across connections).
    ///
    /// Without [`ServerVerifier::with_time`], validity dates follow `policy.clock`.
    pub fn new(
        reference: ReferenceIdentity,
        policy: CertificatePolicy,
        anchors: &'a [&'a [u8]],
        pins: P,
    ) -> Self {
        ServerVerifier {
            reference,
            policy,
            anchors,
            pins,
            signatures: Software,
            now: None,
            leaf: None,
            transcript_hash: None,
            verdict: None,
            proof: None,
            deferred: None,
        }
    }

    /// Checks signatures with `signatures` instead (e.g. [`signature::Deferred`], which
    /// puts them off until after the handshake).
    pub fn with_signature_verifier<W: SignatureVerifier>(
        self,
        signatures: W,
    ) -> ServerVerifier<'a, P, W> {
        ServerVerifier {
            reference: self.reference,
            policy: self.policy,
            anchors: self.anchors,
            pins: self.pins,
            signatures,
            now: self.now,
            leaf: self.leaf,
            transcript_hash: self.transcript_hash,
            verdict: self.verdict,
            proof: self.proof,
            deferred: self.deferred,
        }
    }
}

impl<'a, P: PinStore, V: SignatureVerifier> ServerVerifier<'a, P, V> {
    /// The current time (seconds since the epoch, from SNTP, an RTC or the browser), for
    /// the validity dates of the end entity and the intermediates.
    pub fn with_time(mut self, now: UnixTime) -> Self {
        self.now = Some(now);
        self
    }

    /// Sets or clears the time (see [`ServerVerifier::with_time`]).
    pub fn set_time(&mut self, now: Option<UnixTime>) {
        self.now = now;
    }

    /// The reference identity this verifier checks against.
    pub fn reference(&self) -> &ReferenceIdentity {
        &self.reference
    }

    /// The policy's decision about the last certificate (`None` before any). Carries the
    /// fingerprints, the matched identity and `tls-server-end-point`. After
    /// [`EmbeddedTls`]'s upgrade failed on a refused certificate, the refusal is in its
    /// error ([`EmbeddedTlsError::Certificate`]) and this is `None`.
    pub fn verdict(&self) -> Option<&Result<Verdict, CertError>> {
        self.verdict.as_ref()
    }

    /// `true` once the server's CertificateVerify verified with the accepted key.
    pub fn handshake_signature_verified(&self) -> bool {
        matches!(self.proof, Some(Ok(())))
    }

    /// `tls-server-end-point` (RFC 5929) of the accepted end entity, if any.
    pub fn tls_server_end_point(&self) -> Option<Vec<u8>> {
        match &self.verdict {
            Some(Ok(v)) => v.tls_server_end_point.clone(),
            _ => None,
        }
    }

    /// The pin store (for [`accept_changed_certificate`] and [`approve_first_use`]).
    ///
    /// [`accept_changed_certificate`]: xmpp_handshake_core::trust::accept_changed_certificate
    /// [`approve_first_use`]: xmpp_handshake_core::trust::approve_first_use
    pub fn pins_mut(&mut self) -> &mut P {
        &mut self.pins
    }

    /// A `CryptoProvider` for `embedded_tls::TlsConnection::open` that verifies with this
    /// verifier and draws randomness from `rng`: for callers that drive embedded-tls
    /// themselves (e.g. Direct TLS, XEP-0368). Check [`ServerVerifier::accepted`] after
    /// `open` succeeds.
    pub fn crypto_provider<'v, R, CS>(
        &'v mut self,
        rng: &'v mut R,
    ) -> XmppCryptoProvider<'v, 'a, R, P, CS, V> {
        self.reset();
        XmppCryptoProvider {
            rng,
            verifier: self,
            _suite: PhantomData,
        }
    }

    /// After a handshake: `Ok` only when the policy accepted the certificate and the
    /// CertificateVerify verified; otherwise the most specific reason. `opened` is what
    /// `TlsConnection::open` returned.
    pub fn accepted(&self, opened: Result<(), TlsError>) -> Result<(), EmbeddedTlsError> {
        if let Some(Err(e)) = &self.verdict {
            return Err(EmbeddedTlsError::Certificate(e.clone()));
        }
        self.proven(opened)
    }

    /// [`ServerVerifier::accepted`] for [`EmbeddedTls`]'s own upgrade, which serves one
    /// connection: a refusal moves into the error rather than being cloned (a `Clone` of
    /// `CertError` is ~0.5 KB of flash on Cortex-M), and [`ServerVerifier::verdict`] is
    /// `None` afterwards.
    fn settle(&mut self, opened: Result<(), TlsError>) -> Result<(), EmbeddedTlsError> {
        if let Some(Err(_)) = &self.verdict {
            if let Some(Err(e)) = self.verdict.take() {
                return Err(EmbeddedTlsError::Certificate(e));
            }
        }
        self.proven(opened)
    }

    /// The checks of [`ServerVerifier::accepted`] after the certificate's.
    fn proven(&self, opened: Result<(), TlsError>) -> Result<(), EmbeddedTlsError> {
        match &self.proof {
            Some(Err(SignatureError::Invalid)) => return Err(EmbeddedTlsError::HandshakeSignature),
            Some(Err(SignatureError::Unsupported(what))) => {
                return Err(EmbeddedTlsError::UnsupportedHandshakeSignature(what))
            }
            _ => {}
        }
        opened.map_err(EmbeddedTlsError::Tls)?;
        match (&self.verdict, &self.proof) {
            (Some(Ok(_)), Some(Ok(()))) => Ok(()),
            _ => Err(EmbeddedTlsError::NotVerified),
        }
    }

    fn reset(&mut self) {
        self.leaf = None;
        self.transcript_hash = None;
        self.verdict = None;
        self.proof = None;
        self.deferred = None;
    }

    fn decide(&mut self, chain: &[&[u8]]) -> Result<Verdict, CertError> {
        let anchors = self.anchors;
        let now = self.now;
        let signatures = &mut self.signatures;
        self.policy.verify_server(
            chain,
            &self.reference,
            || pkix::check_chain(chain, anchors, now, signatures),
            now,
            &mut self.pins,
        )
    }

    /// After the handshake: answers the signature checks the verifier put off and decides
    /// again on the answers, until the verdict rests on answers only (a synchronous
    /// verifier puts nothing off, and this returns at once). Each round answers what the
    /// last decision assumed, so a search that backtracks takes a few rounds; bounded by
    /// [`signature::MAX_DEFERRED_CHECKS`].
    pub async fn settle_signatures(&mut self) {
        while self.signatures.settle().await {
            let Some(inputs) = self.deferred.take() else {
                return;
            };
            let chain: Vec<&[u8]> = inputs.chain.iter().map(Vec::as_slice).collect();
            let verdict = self.decide(&chain);
            self.verdict = Some(verdict);
            if let Some((scheme, signature)) = &inputs.certificate_verify {
                self.proof = Some(self.check_certificate_verify(*scheme, signature));
            }
            self.deferred = Some(inputs);
        }
    }

    /// RFC 8446 §4.4.3: the signature over 64 spaces, the context string and the
    /// transcript hash up to Certificate, with the accepted end entity's key.
    fn check_certificate_verify(
        &mut self,
        scheme: SignatureScheme,
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let (Some(Ok(_)), Some(leaf), Some(hash)) =
            (&self.verdict, &self.leaf, &self.transcript_hash)
        else {
            return Err(SignatureError::Invalid);
        };
        // TLS 1.3 ties each ECDSA scheme to one curve; RSA keys sign with PSS only.
        let (algorithm, p256_key) = match scheme {
            SignatureScheme::EcdsaSecp256r1Sha256 => {
                (SignatureAlgorithm::Ecdsa(HashAlg::Sha256), Some(true))
            }
            SignatureScheme::EcdsaSecp384r1Sha384 => {
                (SignatureAlgorithm::Ecdsa(HashAlg::Sha384), Some(false))
            }
            SignatureScheme::RsaPssRsaeSha256 => {
                (SignatureAlgorithm::RsaPss(HashAlg::Sha256), None)
            }
            SignatureScheme::RsaPssRsaeSha384 => {
                (SignatureAlgorithm::RsaPss(HashAlg::Sha384), None)
            }
            SignatureScheme::RsaPssRsaeSha512 => {
                (SignatureAlgorithm::RsaPss(HashAlg::Sha512), None)
            }
            _ => return Err(SignatureError::Unsupported("signature scheme")),
        };
        let spki = pkix::leaf_spki(leaf).ok_or(SignatureError::Invalid)?;
        if p256_key.is_some() && ecdsa_curve_is_p256(&spki) != p256_key {
            return Err(SignatureError::Invalid);
        }
        let mut message = Vec::with_capacity(64 + SERVER_CONTEXT.len() + hash.len());
        message.resize(64, 0x20);
        message.extend_from_slice(SERVER_CONTEXT);
        message.extend_from_slice(hash);
        let check = SignatureCheck {
            algorithm,
            key: spki,
            message: &message,
            signature,
        };
        self.signatures.verify(&check)
    }
}

impl<P: PinStore, V: SignatureVerifier, CS: TlsCipherSuite> TlsVerifier<CS>
    for ServerVerifier<'_, P, V>
{
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        if !hostname
            .trim_end_matches('.')
            .eq_ignore_ascii_case(self.reference.domain())
        {
            debug!(
                "SNI {} differs from the reference identity {}; verifying against the latter",
                hostname,
                self.reference.domain()
            );
        }
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &CS::Hash,
        cert: CertificateRef<'_>,
    ) -> Result<(), TlsError> {
        self.reset();
        let mut chain: Vec<&[u8]> = Vec::with_capacity(cert.entries.len());
        for entry in cert.entries.iter() {
            match entry {
                CertificateEntryRef::X509(der) => chain.push(der),
                CertificateEntryRef::RawPublicKey(_) => {
                    self.verdict = Some(Err(CertError::BadEncoding));
                    return Err(TlsError::InvalidCertificate);
                }
            }
        }
        let result = self.decide(&chain);
        if V::DEFERS {
            self.deferred = Some(DeferredInputs {
                chain: chain.iter().map(|c| c.to_vec()).collect(),
                certificate_verify: None,
            });
        }
        match &result {
            Ok(_) => {
                debug!("certificate for {} accepted", self.reference.domain());
                self.leaf = chain.first().map(|leaf| leaf.to_vec());
                self.transcript_hash = Some(transcript.clone().finalize().to_vec());
            }
            Err(_) => warn!("certificate for {} refused", self.reference.domain()),
        }
        let accepted = result.is_ok();
        self.verdict = Some(result);
        if accepted {
            Ok(())
        } else {
            Err(TlsError::InvalidCertificate)
        }
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        let result = self.check_certificate_verify(verify.signature_scheme, verify.signature);
        if let Some(inputs) = &mut self.deferred {
            inputs.certificate_verify = Some((verify.signature_scheme, verify.signature.to_vec()));
        }
        let error = match &result {
            Ok(()) => None,
            Err(SignatureError::Invalid) => Some(TlsError::InvalidSignature),
            Err(SignatureError::Unsupported(_)) => Some(TlsError::InvalidSignatureScheme),
        };
        if error.is_some() {
            warn!("server CertificateVerify refused");
        }
        self.proof = Some(result);
        error.map_or(Ok(()), Err)
    }
}

/// The `CryptoProvider` handed to embedded-tls: the caller's RNG and a [`ServerVerifier`].
/// No client certificate.
pub struct XmppCryptoProvider<'v, 'a, R, P, CS, V = Software> {
    rng: &'v mut R,
    verifier: &'v mut ServerVerifier<'a, P, V>,
    _suite: PhantomData<CS>,
}

impl<R, P, CS, V> CryptoProvider for XmppCryptoProvider<'_, '_, R, P, CS, V>
where
    R: RngCore + CryptoRng,
    P: PinStore,
    V: SignatureVerifier,
    CS: TlsCipherSuite,
{
    type CipherSuite = CS;
    type Signature = p256::ecdsa::DerSignature;

    fn rng(&mut self) -> impl ::embedded_tls::CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<CS>, TlsError> {
        Ok(&mut *self.verifier)
    }
}

/// The protected transport [`EmbeddedTls`] returns: embedded-tls's `TlsConnection` with
/// end-of-stream semantics fixed for `embedded-io`: the server's close_notify reads as
/// `Ok(0)` (embedded-tls reports it as `Err(ConnectionClosed)`), so the driver sees a clean
/// close; a connection cut without close_notify stays an error (truncation).
pub struct EmbeddedTlsStream<'a, T, CS>
where
    T: Read + Write + 'a,
    CS: TlsCipherSuite + 'static,
{
    connection: TlsConnection<'a, T, CS>,
    peer_closed: bool,
}

impl<'a, T, CS> EmbeddedTlsStream<'a, T, CS>
where
    T: Read + Write + 'a,
    CS: TlsCipherSuite + 'static,
{
    /// Sends close_notify and returns the transport (after the XMPP stream was closed,
    /// RFC 6120 §4.4).
    pub async fn close(self) -> Result<T, (T, TlsError)> {
        self.connection.close().await
    }

    /// `true` once the server's close_notify arrived.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// embedded-tls's connection (e.g. to split it into reader and writer).
    pub fn connection_mut(&mut self) -> &mut TlsConnection<'a, T, CS> {
        &mut self.connection
    }

    /// Splits the stream into a reader and a writer usable at the same time (for
    /// [`driver::run`](xmpp_handshake_core::driver::run), which writes while a read is pending and never
    /// cancels that read: embedded-tls's reads are not cancel-safe). The transport must be
    /// a handle that clones to the same connection. The reader keeps this stream's
    /// end-of-stream semantics (close_notify reads as `Ok(0)`); once both halves are gone,
    /// [`EmbeddedTlsStream::close`] sends close_notify.
    pub fn split(&mut self) -> (EmbeddedTlsReader<'_, T, CS>, TlsWriter<'_, T, CS>)
    where
        T: Clone,
    {
        let (reader, writer) = self.connection.split();
        let reader = EmbeddedTlsReader {
            reader,
            peer_closed: &mut self.peer_closed,
        };
        (reader, writer)
    }
}

/// The reading half of a split [`EmbeddedTlsStream`] ([`EmbeddedTlsStream::split`]).
pub struct EmbeddedTlsReader<'s, T, CS>
where
    CS: TlsCipherSuite + 'static,
{
    reader: TlsReader<'s, T, CS>,
    peer_closed: &'s mut bool,
}

impl<T, CS> embedded_io::ErrorType for EmbeddedTlsReader<'_, T, CS>
where
    CS: TlsCipherSuite + 'static,
{
    type Error = TlsError;
}

impl<'s, T, CS> Read for EmbeddedTlsReader<'s, T, CS>
where
    T: Read + 's,
    CS: TlsCipherSuite + 'static,
{
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if *self.peer_closed {
            return Ok(0);
        }
        match self.reader.read(buf).await {
            Err(TlsError::ConnectionClosed) => {
                *self.peer_closed = true;
                Ok(0)
            }
            other => other,
        }
    }
}

impl<'a, T, CS> embedded_io::ErrorType for EmbeddedTlsStream<'a, T, CS>
where
    T: Read + Write + 'a,
    CS: TlsCipherSuite + 'static,
{
    type Error = TlsError;
}

impl<'a, T, CS> Read for EmbeddedTlsStream<'a, T, CS>
where
    T: Read + Write + 'a,
    CS: TlsCipherSuite + 'static,
{
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if self.peer_closed {
            return Ok(0);
        }
        match self.connection.read(buf).await {
            Err(TlsError::ConnectionClosed) => {
                self.peer_closed = true;
                Ok(0)
            }
            other => other,
        }
    }
}

impl<'a, T, CS> Write for EmbeddedTlsStream<'a, T, CS>
where
    T: Read + Write + 'a,
    CS: TlsCipherSuite + 'static,
{
    async fn write(&mut self, buf: &[u8]) -> Result<usize, TlsError> {
        self.connection.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), TlsError> {
        self.connection.flush().await
    }
}

/// The embedded-tls client upgrade (RFC 6120 §5.4.3) for one connection.
///
/// ```ignore
/// let mut rx = [0; 16640];
/// let mut tx = [0; 4096];
/// let anchors: &[&[u8]] = &[include_bytes!("ca.der")];
/// let verifier = ServerVerifier::new(reference, CertificatePolicy::anchors(), anchors, NoPins)
///     .with_time(now);
/// let mut tls = EmbeddedTls::new(&mut rx, &mut tx, rng, verifier);
/// let negotiated = negotiate(socket, &mut tls, machine, &mut ()).await?;
/// ```
pub struct EmbeddedTls<'a, R, P, CS = Aes128GcmSha256, V = Software> {
    read_buffer: Option<&'a mut [u8]>,
    write_buffer: Option<&'a mut [u8]>,
    rng: R,
    verifier: ServerVerifier<'a, P, V>,
    max_fragment_length: Option<MaxFragmentLength>,
    _suite: PhantomData<CS>,
}

impl<'a, R, P, V> EmbeddedTls<'a, R, P, Aes128GcmSha256, V> {
    /// An upgrade with TLS_AES_128_GCM_SHA256, the caller's record buffers (see the module
    /// docs for sizes), RNG and verifier.
    pub fn new(
        read_buffer: &'a mut [u8],
        write_buffer: &'a mut [u8],
        rng: R,
        verifier: ServerVerifier<'a, P, V>,
    ) -> Self {
        EmbeddedTls {
            read_buffer: Some(read_buffer),
            write_buffer: Some(write_buffer),
            rng,
            verifier,
            max_fragment_length: None,
            _suite: PhantomData,
        }
    }
}

impl<'a, R, P, CS, V> EmbeddedTls<'a, R, P, CS, V> {
    /// Offers another cipher suite instead ([`Aes256GcmSha384`]).
    pub fn with_cipher_suite<Other: TlsCipherSuite>(self) -> EmbeddedTls<'a, R, P, Other, V> {
        EmbeddedTls {
            read_buffer: self.read_buffer,
            write_buffer: self.write_buffer,
            rng: self.rng,
            verifier: self.verifier,
            max_fragment_length: self.max_fragment_length,
            _suite: PhantomData,
        }
    }

    /// Asks the server for smaller records (RFC 6066 §4), so a smaller read buffer fits.
    pub fn with_max_fragment_length(mut self, length: MaxFragmentLength) -> Self {
        self.max_fragment_length = Some(length);
        self
    }

    /// The verifier (its verdict after a handshake).
    pub fn verifier(&self) -> &ServerVerifier<'a, P, V> {
        &self.verifier
    }

    /// The verifier, mutably (the pin store, the time).
    pub fn verifier_mut(&mut self) -> &mut ServerVerifier<'a, P, V> {
        &mut self.verifier
    }
}

impl<'a, T, R, P, CS, V> TlsUpgrade<T> for EmbeddedTls<'a, R, P, CS, V>
where
    T: Read + Write + 'a,
    R: RngCore + CryptoRng,
    P: PinStore,
    V: SignatureVerifier,
    CS: TlsCipherSuite + 'static,
{
    type Stream = EmbeddedTlsStream<'a, T, CS>;
    type Error = EmbeddedTlsError;

    async fn upgrade(
        &mut self,
        transport: T,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error> {
        let (Some(read), Some(write)) = (self.read_buffer.take(), self.write_buffer.take()) else {
            return Err(EmbeddedTlsError::AlreadyUsed);
        };
        if write.len() <= TLS_RECORD_OVERHEAD {
            return Err(EmbeddedTlsError::BufferTooSmall);
        }
        let mut config = TlsConfig::new().with_server_name(server_name);
        // RSA schemes in signature_algorithms (RFC 8446 §4.2.3): a server with an RSA key
        // would otherwise abort the handshake. Offered whenever a verifier may check them
        // (the `rsa` feature, or one that defers to an outside verifier).
        if cfg!(feature = "rsa") || V::DEFERS {
            config = config.enable_rsa_signatures();
        }
        if let Some(length) = self.max_fragment_length {
            config = config.with_max_fragment_length(length);
        }
        let mut connection = TlsConnection::new(transport, read, write);
        let provider = self.verifier.crypto_provider::<R, CS>(&mut self.rng);
        let opened = connection.open(TlsContext::new(&config, provider)).await;
        // Before any application byte: checks a verifier put off are answered now.
        if V::DEFERS && opened.is_ok() {
            self.verifier.settle_signatures().await;
        }
        self.verifier.settle(opened)?;
        Ok(EmbeddedTlsStream {
            connection,
            peer_closed: false,
        })
    }

    /// The typed failure: the certificate policy's refusal as it was decided
    /// ([`EmbeddedTlsError::Certificate`] becomes [`CoreTlsError::Certificate`]), a failed
    /// proof of possession, the server's alert, I/O. No text is formatted: on firmware the
    /// typed error is logged through `defmt` and no `Display` text is linked.
    fn classify(error: EmbeddedTlsError) -> CoreTlsError {
        error.into()
    }

    /// `tls-server-end-point` of the accepted certificate; never `tls-exporter` (see the
    /// module docs).
    fn tls_info(&self, _stream: &Self::Stream) -> TlsInfo {
        TlsInfo {
            // embedded-tls speaks TLS 1.3 only, with the one suite of its type parameter.
            version: Some(0x0304),
            cipher_suite: Some(CS::CODE_POINT),
            channel_binding: ChannelBindingData {
                server_end_point: self.verifier.tls_server_end_point(),
                ..ChannelBindingData::default()
            },
            ..TlsInfo::default()
        }
    }
}
