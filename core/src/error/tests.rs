//! Every variant of [`Error`], [`TlsError`] and [`SaslError`] walked: its kind, and a
//! `Display` that says what to do.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::sasl::{ChannelBindingType, Mechanism, SaslFailure};
use crate::trust::{CertError, Fingerprint, PinChange, PkixOutcome};

/// Words of an instruction; every `Display` text must hold one.
const ADVICE: &[&str] = &[
    "check",
    "retry",
    "try again",
    "do not",
    "report",
    "configure",
    "use ",
    "set ",
    "ask",
    "supply",
    "raise",
    "relax",
    "lower",
    "have the server",
    "fix",
    "compare",
    "trust",
    "pin",
    "choose",
    "close",
    "discard",
    "treat",
    "reconnect",
    "nothing to do",
    "enable",
    "authenticate",
    "start again",
    "give",
    "leave it",
    "change",
    "negotiate",
    "approve",
    "accept",
    "allow",
];

/// With `error-text`, `text` says what to do; without it, it starts with the name of the
/// rule that fired (`starttls-not-offered`, `tls: ...`).
fn assert_explains(text: &str) {
    if cfg!(feature = "error-text") {
        let lower = text.to_lowercase();
        assert!(
            ADVICE.iter().any(|w| lower.contains(w)),
            "says what happened but not what to do: {text}"
        );
    } else {
        let rule = rule(text);
        assert!(
            !rule.is_empty() && rule.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "does not start with the rule's name: {text}"
        );
    }
}

/// The first word of a short `Display` (without `error-text`): the rule's name.
fn rule(text: &str) -> &str {
    text.split([' ', ':']).next().unwrap_or_default()
}

/// Without `error-text`, one sample per variant gives as many rule names.
fn assert_rules_distinct(texts: &[String]) {
    if cfg!(feature = "error-text") {
        return;
    }
    let mut rules: Vec<&str> = texts.iter().map(|t| rule(t)).collect();
    rules.sort_unstable();
    rules.dedup();
    assert_eq!(
        rules.len(),
        texts.len(),
        "two variants print one rule: {texts:?}"
    );
}

/// The position of `e`'s variant; no wildcard, so a new variant does not compile here
/// until it is sampled in [`errors`].
fn variant(e: &Error) -> usize {
    match e {
        Error::StreamErrorSent(_) => 0,
        Error::StreamErrorReceived(_) => 1,
        Error::SeeOtherHost(_) => 2,
        Error::PeerClosed => 3,
        Error::ConnectionClosed => 4,
        Error::Transport(_) => 5,
        Error::StartTlsNotOffered => 6,
        Error::StartTlsFailed => 7,
        Error::StartTlsAfterTls => 8,
        Error::PlaintextAfterProceed => 9,
        Error::PlaintextAfterStartTls => 10,
        Error::WhitespaceDuringStartTls => 11,
        Error::Tls(_) => 12,
        Error::UnexpectedElement { .. } => 13,
        Error::UnsupportedVersion => 14,
        Error::WrongNamespace => 15,
        Error::TlsRequiredByPeer => 16,
        Error::Sasl(_) => 17,
        Error::AuthenticationFailed { .. } => 18,
        Error::SaslAfterSuccess => 19,
        Error::Bind(_) => 20,
        Error::Timeout => 21,
        Error::Aborted => 22,
        Error::BoundJid(_) => 23,
        Error::StreamManagement(_) => 24,
        #[cfg(feature = "dialback")]
        Error::DialbackRefused(_) => 25,
    }
}
const ERROR_VARIANTS: usize = 25 + cfg!(feature = "dialback") as usize;

fn tls_variant(e: &TlsError) -> usize {
    match e {
        TlsError::Certificate(_) => 0,
        TlsError::KeyNotProven => 1,
        TlsError::NotVerified => 2,
        TlsError::Alert(_) => 3,
        TlsError::Handshake(_) => 4,
        TlsError::Closed => 5,
        TlsError::Io(_) => 6,
        TlsError::Config(_) => 7,
        TlsError::Other(_) => 8,
    }
}
const TLS_VARIANTS: usize = 9;

fn sasl_variant(e: &SaslError) -> usize {
    match e {
        SaslError::Failure(_) => 0,
        SaslError::ChannelBindingRejected { .. } => 1,
        SaslError::NoAcceptableMechanism => 2,
        SaslError::PlainRequiresTls => 3,
        SaslError::ChannelBindingDowngrade => 4,
        SaslError::ChannelBindingUnavailable => 5,
        SaslError::MechanismNotOffered(_) => 6,
        SaslError::MechanismNotSupported(_) => 7,
        SaslError::MissingCredentials(_) => 8,
        SaslError::InvalidCredentials(_) => 9,
        SaslError::ServerSignatureMismatch => 10,
        SaslError::MissingServerSignature => 11,
        SaslError::ServerError(_) => 12,
        SaslError::NonceNotExtended => 13,
        SaslError::IterationsTooLow { .. } => 14,
        SaslError::IterationsTooHigh { .. } => 15,
        SaslError::MandatoryExtension => 16,
        SaslError::MalformedChallenge(_) => 17,
        SaslError::IncorrectEncoding => 18,
        SaslError::CachedKeysStale => 19,
        SaslError::InvalidCacheEntry => 20,
        SaslError::UnexpectedChallenge => 21,
        SaslError::UnexpectedSuccess => 22,
        SaslError::TooManyRounds => 23,
        SaslError::OutOfOrder => 24,
        SaslError::DowngradeDetected => 25,
        SaslError::ContinueRequired(_) => 26,
        SaslError::PipelinedNotOffered(_) => 27,
    }
}
const SASL_VARIANTS: usize = 28;

fn fingerprint(byte: u8) -> Fingerprint {
    Fingerprint([byte; 32])
}

/// One of each TLS failure, with its kind.
fn tls_errors() -> Vec<(TlsError, ErrorKind)> {
    let change = PinChange {
        domain: "example.com".into(),
        old_spki: fingerprint(1),
        new_spki: fingerprint(2),
        old_cert: fingerprint(3),
        new_cert: fingerprint(4),
    };
    vec![
        (
            TlsError::Certificate(CertError::PinChanged(Box::new(change))),
            ErrorKind::Certificate,
        ),
        (TlsError::KeyNotProven, ErrorKind::Certificate),
        (TlsError::NotVerified, ErrorKind::Certificate),
        (TlsError::Alert(Alert::HANDSHAKE_FAILURE), ErrorKind::Tls),
        (
            TlsError::Handshake(HandshakeFailure::Incompatible),
            ErrorKind::Tls,
        ),
        (TlsError::Closed, ErrorKind::Tls),
        (
            TlsError::Io(embedded_io::ErrorKind::ConnectionReset),
            ErrorKind::Transport,
        ),
        (
            TlsError::Config("the write buffer is too small"),
            ErrorKind::Config,
        ),
        (TlsError::Other("bad things".into()), ErrorKind::Tls),
    ]
}

/// One of each SASL error, with its kind.
fn sasl_errors() -> Vec<(SaslError, ErrorKind)> {
    use ErrorKind::{Auth, Config, Policy, Protocol};
    vec![
        (SaslError::Failure(SaslFailure::NotAuthorized), Auth),
        (
            SaslError::ChannelBindingRejected {
                mechanism: Mechanism::ScramSha1Plus,
                cb_type: ChannelBindingType::TlsExporter,
                xep0440: false,
            },
            Auth,
        ),
        (SaslError::NoAcceptableMechanism, Policy),
        (SaslError::PlainRequiresTls, Policy),
        (SaslError::ChannelBindingDowngrade, Policy),
        (SaslError::ChannelBindingUnavailable, Policy),
        (
            SaslError::MechanismNotOffered(Mechanism::ScramSha256),
            Policy,
        ),
        (
            SaslError::MechanismNotSupported(Mechanism::DigestMd5),
            Config,
        ),
        (SaslError::MissingCredentials("password"), Config),
        (SaslError::InvalidCredentials("user name"), Config),
        (SaslError::ServerSignatureMismatch, Auth),
        (SaslError::MissingServerSignature, Protocol),
        (SaslError::ServerError("invalid-proof".into()), Auth),
        (SaslError::NonceNotExtended, Protocol),
        (
            SaslError::IterationsTooLow {
                iterations: 1,
                minimum: 4096,
            },
            Policy,
        ),
        (
            SaslError::IterationsTooHigh {
                iterations: u32::MAX,
                maximum: 1_000_000,
            },
            Policy,
        ),
        (SaslError::MandatoryExtension, Protocol),
        (SaslError::MalformedChallenge("no nonce"), Protocol),
        (SaslError::IncorrectEncoding, Protocol),
        (SaslError::CachedKeysStale, Auth),
        (SaslError::InvalidCacheEntry, Config),
        (SaslError::UnexpectedChallenge, Protocol),
        (SaslError::UnexpectedSuccess, Protocol),
        (SaslError::TooManyRounds, Protocol),
        (SaslError::OutOfOrder, Config),
        (SaslError::DowngradeDetected, Policy),
        (SaslError::ContinueRequired(String::from("TOTP")), Policy),
        (SaslError::PipelinedNotOffered("Bind 2"), Policy),
    ]
}

/// One of each error (a TLS and a SASL error stand for their groups, walked above), with
/// its kind.
fn errors() -> Vec<(Error, ErrorKind)> {
    use StreamErrorCondition as C;
    vec![
        (
            Error::StreamErrorSent(StreamError::new(C::NotWellFormed)),
            ErrorKind::Stream(C::NotWellFormed),
        ),
        (
            Error::StreamErrorReceived(StreamError::with_text(C::HostUnknown, "who?")),
            ErrorKind::Stream(C::HostUnknown),
        ),
        (
            Error::SeeOtherHost("other.example".into()),
            ErrorKind::Stream(C::SeeOtherHost),
        ),
        (Error::PeerClosed, ErrorKind::Transport),
        (Error::ConnectionClosed, ErrorKind::Transport),
        (
            Error::Transport(embedded_io::ErrorKind::TimedOut),
            ErrorKind::Transport,
        ),
        (Error::StartTlsNotOffered, ErrorKind::TlsRequired),
        (Error::StartTlsFailed, ErrorKind::Tls),
        (Error::StartTlsAfterTls, ErrorKind::Protocol),
        (Error::PlaintextAfterProceed, ErrorKind::Protocol),
        (Error::PlaintextAfterStartTls, ErrorKind::Protocol),
        (Error::WhitespaceDuringStartTls, ErrorKind::Protocol),
        (Error::Tls(TlsError::Closed), ErrorKind::Tls),
        (
            Error::UnexpectedElement {
                expected: "<stream:features/>",
                got: "{jabber:client}message".into(),
            },
            ErrorKind::Protocol,
        ),
        (Error::UnsupportedVersion, ErrorKind::Protocol),
        (Error::WrongNamespace, ErrorKind::Protocol),
        (Error::TlsRequiredByPeer, ErrorKind::TlsRequired),
        (
            Error::Sasl(SaslError::NoAcceptableMechanism),
            ErrorKind::Policy,
        ),
        (
            Error::AuthenticationFailed {
                error: SaslError::Failure(SaslFailure::NotAuthorized),
                text: Some("wrong".into()),
            },
            ErrorKind::Auth,
        ),
        (Error::SaslAfterSuccess, ErrorKind::Protocol),
        (Error::Bind("conflict".into()), ErrorKind::Bind),
        (
            Error::BoundJid(crate::jid::JidError::MissingResource),
            ErrorKind::Bind,
        ),
        (Error::Timeout, ErrorKind::Transport),
        (Error::Aborted, ErrorKind::Aborted),
        (
            Error::StreamManagement(crate::sm::SmError::HandledCountTooHigh { h: 3, sent: 2 }),
            ErrorKind::Protocol,
        ),
        #[cfg(feature = "dialback")]
        (
            Error::DialbackRefused(crate::dialback::Verdict::Invalid),
            ErrorKind::Auth,
        ),
    ]
}

#[test]
fn every_error_variant_has_its_kind_and_says_what_to_do() {
    let samples = errors();
    let mut seen: Vec<usize> = samples.iter().map(|(e, _)| variant(e)).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..ERROR_VARIANTS).collect::<Vec<_>>());
    let mut texts = Vec::new();
    for (error, kind) in samples {
        assert_eq!(error.kind(), kind, "{error:?}");
        assert_explains(&error.to_string());
        texts.push(error.to_string());
    }
    assert_rules_distinct(&texts);
}

#[test]
fn every_tls_failure_has_its_kind_and_says_what_to_do() {
    let samples = tls_errors();
    let mut seen: Vec<usize> = samples.iter().map(|(e, _)| tls_variant(e)).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..TLS_VARIANTS).collect::<Vec<_>>());
    let mut texts = Vec::new();
    for (tls, kind) in samples {
        texts.push(tls.to_string());
        assert_eq!(tls.kind(), kind, "{tls:?}");
        let error = Error::Tls(tls.clone());
        assert_eq!(error.kind(), kind);
        assert_eq!(error.tls(), Some(&tls));
        assert_explains(&error.to_string());
    }
    assert_rules_distinct(&texts);
    for reason in [
        HandshakeFailure::Incompatible,
        HandshakeFailure::PeerMisbehaved,
        HandshakeFailure::Decrypt,
        HandshakeFailure::Unsupported("Ed25519 signatures"),
        HandshakeFailure::AlertSent(Alert(50)),
        HandshakeFailure::Internal,
    ] {
        assert_explains(&TlsError::Handshake(reason).to_string());
    }
    for alert in 0..=u8::MAX {
        assert_explains(&TlsError::Alert(Alert(alert)).to_string());
    }
}

#[test]
fn every_sasl_error_has_its_kind_and_says_what_to_do() {
    let samples = sasl_errors();
    let mut seen: Vec<usize> = samples.iter().map(|(e, _)| sasl_variant(e)).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..SASL_VARIANTS).collect::<Vec<_>>());
    let mut texts = Vec::new();
    for (sasl, kind) in samples {
        assert_eq!(sasl.kind(), kind, "{sasl:?}");
        assert_eq!(Error::Sasl(sasl.clone()).kind(), kind);
        assert_eq!(
            Error::AuthenticationFailed {
                error: sasl.clone(),
                text: None
            }
            .kind(),
            kind
        );
        assert_explains(&sasl.to_string());
        texts.push(sasl.to_string());
    }
    assert_rules_distinct(&texts);
    for failure in SaslFailure::ALL {
        assert_explains(&SaslError::Failure(*failure).to_string());
    }
}

#[test]
fn every_stream_condition_received_says_what_to_do() {
    for name in [
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "remote-connection-failed",
        "reset",
        "resource-constraint",
        "restricted-xml",
        "see-other-host",
        "system-shutdown",
        "undefined-condition",
        "unsupported-encoding",
        "unsupported-feature",
        "unsupported-stanza-type",
        "unsupported-version",
    ] {
        let condition = StreamErrorCondition::from_name(name).unwrap();
        let error = Error::StreamErrorReceived(StreamError::new(condition));
        assert_eq!(error.kind(), ErrorKind::Stream(condition));
        assert_eq!(error.kind().condition(), Some(condition));
        assert_explains(&error.to_string());
        let text: String = error.to_string();
        assert!(text.contains(name), "{text}");
    }
}

#[test]
fn tls_failures_carry_the_certificate_verdict_and_name_the_alert() {
    let refused = CertError::ChainInvalid {
        outcome: PkixOutcome::Revoked,
    };
    let error = Error::from(TlsError::from(refused.clone()));
    assert_eq!(error.tls().and_then(TlsError::certificate), Some(&refused));
    assert!(error.to_string().contains("revoked"), "{error}");
    assert_eq!(Alert::UNKNOWN_CA.to_string(), "unknown_ca (48)");
    assert_eq!(Alert(255).to_string(), "alert 255");
    let unrecognized_name = TlsError::Alert(Alert::UNRECOGNIZED_NAME).to_string();
    if cfg!(feature = "error-text") {
        assert!(unrecognized_name.contains("configured domain"));
    } else {
        assert_eq!(unrecognized_name, "alert unrecognized_name (112)");
    }
}

#[test]
fn kinds_have_names() {
    let kinds = [
        ErrorKind::Auth,
        ErrorKind::Certificate,
        ErrorKind::TlsRequired,
        ErrorKind::Tls,
        ErrorKind::Stream(StreamErrorCondition::Conflict),
        ErrorKind::Protocol,
        ErrorKind::Bind,
        ErrorKind::Transport,
        ErrorKind::Policy,
        ErrorKind::Config,
        ErrorKind::Aborted,
    ];
    let mut names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), kinds.len());
    assert_eq!(
        ErrorKind::Stream(StreamErrorCondition::Conflict).to_string(),
        "stream (conflict)"
    );
}

#[cfg(not(feature = "error-text"))]
#[test]
fn without_error_text_display_names_the_rule_and_its_details() {
    let chain = Error::from(TlsError::from(CertError::ChainInvalid {
        outcome: PkixOutcome::BadSignature,
    }));
    assert_eq!(
        chain.to_string(),
        "tls: certificate: chain-invalid: a signature in the chain does not verify"
    );
    // As the parser reads it: the peer's `<text/>` is kept without `error-text` too (only
    // the texts this side would send are left out).
    let conflict = Error::StreamErrorReceived(StreamError {
        condition: StreamErrorCondition::Conflict,
        text: Some("replaced by a new connection".into()),
    });
    assert_eq!(
        conflict.to_string(),
        "stream-error-received <conflict/>: replaced by a new connection"
    );
    let refused = Error::AuthenticationFailed {
        error: SaslFailure::NotAuthorized.into(),
        text: Some("wrong password".into()),
    };
    assert_eq!(
        refused.to_string(),
        "authentication-failed: failure <not-authorized/> (server says: wrong password)"
    );
}
