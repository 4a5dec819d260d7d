//! rustls adapter of the core certificate policy (RFC 6120 §13.7.2): one
//! [`ServerCertVerifier`] that
//!
//! 1. runs rustls-webpki's PKIX chain check against the configured roots
//!    ([`verify_server_cert_signed_by_trust_anchor`]: signatures, chaining, basic
//!    constraints, key usage, dates) but **not** its name check;
//! 2. hands the chain and that outcome to
//!    [`CertificatePolicy::verify_server`](xmpp_handshake_core::trust::CertificatePolicy::verify_server),
//!    which matches the XMPP identities (DNS-ID, SRV-ID, XmppAddr) and applies pins;
//! 3. always verifies the TLS 1.2/1.3 handshake signature with the presented key, pinned or
//!    not: a pin replaces the chain, never the proof of possession.
//!
//! Failures surface as `rustls::Error::InvalidCertificate(CertificateError::Other(..))`
//! wrapping the core's typed [`CertError`]; [`cert_error`] gets it back, and [`classify`]
//! turns any rustls error into the core's typed [`TlsError`] (the refusal as
//! [`TlsError::Certificate`]), which the driver puts in `Error::Tls`.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime as RustlsTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use xmpp_handshake_core::error::{Alert, HandshakeFailure};
use xmpp_handshake_core::trust::{
    self, CertError, CertificatePolicy, ClientCertificate, PinStore, PkixOutcome,
    ReferenceIdentity, UnixTime, Verdict,
};
use xmpp_handshake_core::TlsError;

/// A pin store shared between connections (and with the UI that accepts changes).
pub type SharedPinStore = Arc<Mutex<dyn PinStore + Send>>;

/// The platform's trust anchors (the OS certificate store). Certificates the platform
/// store holds but webpki cannot parse are skipped; an empty result is an error.
pub fn platform_roots() -> Result<RootCertStore, Error> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(Error::General(format!(
            "no usable trust anchors in the platform store ({} load errors)",
            loaded.errors.len()
        )));
    }
    Ok(roots)
}

/// Trust anchors from a PEM CA bundle.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| Error::General(format!("CA bundle: {e}")))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(Error::General("CA bundle holds no certificate".into()));
    }
    Ok(roots)
}

/// The typed core error inside a rustls error produced by [`XmppServerVerifier`].
pub fn cert_error(error: &Error) -> Option<&CertError> {
    match error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<CertError>()
        }
        _ => None,
    }
}

/// A rustls error in the core's terms: the policy's [`CertError`] from
/// [`XmppServerVerifier`] as [`TlsError::Certificate`]; a certificate rustls's own webpki
/// verifier refused as [`CertError::ChainInvalid`] with that outcome; the peer's alert;
/// the reason rustls ended the handshake.
///
/// A bare `BadSignature` is [`TlsError::KeyNotProven`]: with [`XmppServerVerifier`], whose
/// chain failures come wrapped in the policy's error, it can only be the handshake
/// signature (the peer does not hold the certificate's key). rustls's own verifier reports
/// a bad signature in the chain the same way, so behind that one it may be the chain's;
/// both are certificate failures ([`ErrorKind::Certificate`](xmpp_handshake_core::ErrorKind)).
/// The alert rustls sends stays `decrypt_error`, as RFC 8446 §4.4.3 requires.
pub fn classify(error: &Error) -> TlsError {
    if let Some(cert) = cert_error(error) {
        return TlsError::Certificate(cert.clone());
    }
    match error {
        Error::AlertReceived(alert) => TlsError::Alert(Alert(u8::from(*alert))),
        Error::InvalidCertificate(CertificateError::BadSignature) => TlsError::KeyNotProven,
        Error::InvalidCertificate(_) => TlsError::Certificate(CertError::ChainInvalid {
            outcome: pkix_outcome(Err(error.clone())),
        }),
        Error::NoCertificatesPresented => TlsError::Certificate(CertError::EmptyChain),
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => {
            TlsError::Handshake(HandshakeFailure::Incompatible)
        }
        Error::PeerMisbehaved(_)
        | Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::PeerSentOversizedRecord => TlsError::Handshake(HandshakeFailure::PeerMisbehaved),
        Error::DecryptError => TlsError::Handshake(HandshakeFailure::Decrypt),
        Error::EncryptError | Error::FailedToGetRandomBytes | Error::FailedToGetCurrentTime => {
            TlsError::Handshake(HandshakeFailure::Internal)
        }
        other => TlsError::Other(other.to_string()),
    }
}

fn to_rustls(error: CertError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

/// What rustls-webpki's chain check concluded, in the core's terms.
fn pkix_outcome(result: Result<(), Error>) -> PkixOutcome {
    match result {
        Ok(()) => PkixOutcome::Valid,
        Err(Error::InvalidCertificate(e)) => match e {
            CertificateError::UnknownIssuer => PkixOutcome::UnknownIssuer,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                PkixOutcome::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                PkixOutcome::NotYetValid
            }
            CertificateError::BadSignature => PkixOutcome::BadSignature,
            CertificateError::Revoked => PkixOutcome::Revoked,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                PkixOutcome::WrongUsage
            }
            other => PkixOutcome::Other(format!("{other:?}")),
        },
        Err(other) => PkixOutcome::Other(other.to_string()),
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The initiating entity's verifier of the receiving entity's certificate: webpki for the
/// chain, the core policy for identity and pins, webpki for the handshake signature.
///
/// One verifier serves one reference identity, fixed at construction from configuration;
/// the `ServerName` rustls passes (the SNI) is not used for matching, so a caller that
/// dials an SRV target still verifies against the configured domain.
pub struct XmppServerVerifier {
    reference: ReferenceIdentity,
    policy: CertificatePolicy,
    roots: Option<Arc<RootCertStore>>,
    pins: SharedPinStore,
    algorithms: WebPkiSupportedAlgorithms,
    last: Mutex<Option<Result<Verdict, CertError>>>,
}

impl fmt::Debug for XmppServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XmppServerVerifier")
            .field("reference", &self.reference)
            .field("policy", &self.policy)
            .field("roots", &self.roots.as_ref().map(|r| r.len()))
            .finish_non_exhaustive()
    }
}

impl XmppServerVerifier {
    /// A verifier for `reference` under `policy`.
    ///
    /// * `roots`: trust anchors ([`platform_roots`], [`roots_from_pem`]); `None` when the
    ///   policy never needs them (`Trust::Pinned`) — a policy that does then fails closed
    ///   with `ChainInvalid { NotChecked }`.
    /// * `pins`: the pin store for `Trust::TrustOnFirstUse` (any store otherwise).
    /// * `provider`: its signature algorithms verify chains and handshake signatures.
    pub fn new(
        reference: ReferenceIdentity,
        policy: CertificatePolicy,
        roots: Option<Arc<RootCertStore>>,
        pins: SharedPinStore,
        provider: &CryptoProvider,
    ) -> Self {
        XmppServerVerifier {
            reference,
            policy,
            roots,
            pins,
            algorithms: provider.signature_verification_algorithms,
            last: Mutex::new(None),
        }
    }

    /// The reference identity this verifier checks against.
    pub fn reference(&self) -> &ReferenceIdentity {
        &self.reference
    }

    /// The outcome of the last certificate decision (`None` before any, or after a resumed
    /// session, which rustls does not re-verify). Carries the fingerprints and the
    /// `tls-server-end-point` data of an accepted certificate.
    pub fn last_verdict(&self) -> Option<Result<Verdict, CertError>> {
        lock(&self.last).clone()
    }

    /// The pin store.
    pub fn pins(&self) -> &SharedPinStore {
        &self.pins
    }

    /// Interactive clients only: after the user confirmed the new fingerprint of a
    /// [`CertError::PinChanged`], pin the new key. See
    /// [`trust::accept_changed_certificate`].
    pub fn accept_changed_certificate(
        &self,
        error: &CertError,
    ) -> Result<trust::Pin, trust::AcceptError> {
        trust::accept_changed_certificate(&mut *lock(&self.pins), error)
    }

    /// Interactive clients only: pin a first-seen certificate the user approved
    /// ([`CertError::NotTrustedFirstUse`]). See [`trust::approve_first_use`].
    pub fn approve_first_use(&self, error: &CertError) -> Result<trust::Pin, trust::AcceptError> {
        trust::approve_first_use(&mut *lock(&self.pins), error)
    }

    fn chain_check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: RustlsTime,
    ) -> PkixOutcome {
        let Some(roots) = &self.roots else {
            return PkixOutcome::NotChecked;
        };
        let parsed = match ParsedCertificate::try_from(end_entity) {
            Ok(p) => p,
            Err(e) => return pkix_outcome(Err(e)),
        };
        pkix_outcome(verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        ))
    }
}

impl ServerCertVerifier for XmppServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: RustlsTime,
    ) -> Result<ServerCertVerified, Error> {
        if let ServerName::DnsName(sni) = server_name {
            if !sni.as_ref().eq_ignore_ascii_case(self.reference.domain()) {
                log::debug!(
                    "SNI {} differs from the reference identity {}; verifying against the latter",
                    sni.as_ref(),
                    self.reference.domain()
                );
            }
        }
        let chain: Vec<&[u8]> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref())
            .collect();
        let result = {
            let mut pins = lock(&self.pins);
            self.policy.verify_server(
                &chain,
                &self.reference,
                || self.chain_check(end_entity, intermediates, now),
                Some(UnixTime(now.as_secs())),
                &mut *pins,
            )
        };
        *lock(&self.last) = Some(result.clone());
        match result {
            Ok(verdict) => {
                log::debug!(
                    "certificate for {} accepted ({:?}, key SHA-256 {})",
                    self.reference.domain(),
                    verdict.basis,
                    verdict.pin.spki_sha256
                );
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => {
                log::warn!("certificate refused: {e}");
                Err(to_rustls(e))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration that verifies the server with `verifier` (TLS 1.2 and 1.3,
/// the provider's defaults otherwise, no client certificate).
pub fn client_config(
    verifier: Arc<XmppServerVerifier>,
    provider: Arc<CryptoProvider>,
) -> Result<ClientConfig, Error> {
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Receiving entity: a client-certificate verifier for SASL EXTERNAL (RFC 6120 §5.4.3.1:
/// the receiving entity SHOULD request a client certificate). webpki checks the chain
/// against `roots` and the signatures; clients without a certificate are still allowed (they
/// use another mechanism). After the handshake, [`external_identity`] gives the identities.
pub fn client_cert_verifier(
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, rustls::server::VerifierBuilderError> {
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .allow_unauthenticated()
        .build()
}

/// Receiving server: a client certificate is requested and checked as by
/// [`client_cert_verifier`], but one that does not verify (unknown issuer, no EKU
/// clientAuth, ...) does not end the handshake: a server may prove its domain by Server
/// Dialback instead (XEP-0220), and then its certificate must earn nothing. The
/// [`RustlsServer`](crate::upgrade::RustlsServer) made
/// [`revalidating`](crate::upgrade::RustlsServer::revalidating) with it reads identities
/// only from chains that verify ([`OptionalClientCertificate::verifies`]). The
/// possession proof (CertificateVerify) is always checked.
#[derive(Debug)]
pub struct OptionalClientCertificate {
    inner: Arc<dyn ClientCertVerifier>,
}

impl OptionalClientCertificate {
    /// Checks chains against `roots`.
    pub fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, rustls::server::VerifierBuilderError> {
        Ok(Arc::new(OptionalClientCertificate {
            inner: client_cert_verifier(roots, provider)?,
        }))
    }

    /// Whether `chain` (leaf first) verifies against the anchors now.
    pub fn verifies(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        self.inner
            .verify_client_cert(leaf, intermediates, RustlsTime::now())
            .is_ok()
    }
}

impl ClientCertVerifier for OptionalClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: RustlsTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            log::info!("client certificate does not verify ({e}): no SASL EXTERNAL for it");
        }
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Receiving entity, after a handshake whose client certificate was checked by
/// [`client_cert_verifier`]: the XmppAddr / DNS-ID identities of the client's certificate
/// for SASL EXTERNAL, through the core policy (dates, identity presence). `None` when the
/// client presented no certificate (do not offer EXTERNAL then).
pub fn external_identity(
    policy: &CertificatePolicy,
    peer_certificates: Option<&[CertificateDer<'_>]>,
    now: RustlsTime,
) -> Option<Result<ClientCertificate, CertError>> {
    let certs = peer_certificates.filter(|c| !c.is_empty())?;
    let chain: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
    // rustls accepted the handshake only if webpki validated this chain.
    Some(policy.verify_client(&chain, PkixOutcome::Valid, Some(UnixTime(now.as_secs()))))
}
