//! SASL errors: the §6.5 failure conditions and the client's own errors.

use alloc::string::String;
use core::fmt;

use super::channel_binding::ChannelBindingType;
use super::mechanism::Mechanism;

macro_rules! failures {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $advice:literal;)*) => {
        /// A SASL failure condition (RFC 6120 §6.5): what a receiving entity puts in
        /// `<failure/>` and what an initiating entity reads from it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum SaslFailure {
            $($(#[$doc])* $variant,)*
        }

        impl SaslFailure {
            /// Every condition, in §6.5 order.
            pub const ALL: &'static [SaslFailure] = &[$(SaslFailure::$variant,)*];

            /// The element name, e.g. `not-authorized`.
            pub const fn name(self) -> &'static str {
                match self { $(SaslFailure::$variant => $name,)* }
            }

            /// The condition for an element name; `None` for an undefined one (a client
            /// treats that as `not-authorized`, §6.5).
            pub fn from_name(name: &str) -> Option<Self> {
                // A search of the names, as `StreamErrorCondition::from_name`.
                SaslFailure::ALL.iter().copied().find(|c| c.name() == name)
            }

            const fn advice(self) -> &'static str {
                match self { $(SaslFailure::$variant => $advice,)* }
            }
        }
    };
}

failures! {
    /// §6.5.1: the initiating entity sent `<abort/>`.
    Aborted = "aborted", "the exchange was aborted; start again if that was not intended";
    /// §6.5.2
    AccountDisabled = "account-disabled", "the account is disabled; ask the server's administrator";
    /// §6.5.3
    CredentialsExpired = "credentials-expired", "the credentials have expired; change the password by other means";
    /// §6.5.4: the mechanism needs TLS first.
    EncryptionRequired = "encryption-required", "this mechanism needs TLS; negotiate STARTTLS first";
    /// §6.5.5: the base64 was not strict RFC 4648 §4.
    IncorrectEncoding = "incorrect-encoding", "the base64 payload was malformed; a bug in the sender: report it";
    /// §6.5.6
    InvalidAuthzid = "invalid-authzid", "the authorization identity was refused; leave it empty or use one the account may act as";
    /// §6.5.7: not offered or not supported.
    InvalidMechanism = "invalid-mechanism", "the mechanism was not offered; choose one from the advertised list";
    /// §6.5.8: the data violates the mechanism's syntax or arrived in the wrong step.
    MalformedRequest = "malformed-request", "the request violated the mechanism's syntax; a bug in the sender: report it";
    /// §6.5.9
    MechanismTooWeak = "mechanism-too-weak", "the server's policy wants a stronger mechanism; allow one in the SASL policy";
    /// §6.5.10: bad credentials (or a binding the server could not verify).
    NotAuthorized = "not-authorized", "authentication failed; check the user name and password";
    /// §6.5.11
    TemporaryAuthFailure = "temporary-auth-failure", "the server had a temporary problem; try again later";
}

impl fmt::Display for SaslFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            return write!(f, "<{}/>", self.name());
        }
        write!(f, "SASL failure <{}/>: {}", self.name(), self.advice())
    }
}

/// Base64 that is not strict RFC 4648 §4 (RFC 6120 §6.4.2); becomes `incorrect-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncorrectEncoding;

impl fmt::Display for IncorrectEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("incorrect base64 (RFC 6120 §6.4.2 wants strict RFC 4648 §4, no whitespace)")
    }
}

impl From<IncorrectEncoding> for SaslFailure {
    fn from(_: IncorrectEncoding) -> Self {
        SaslFailure::IncorrectEncoding
    }
}

impl From<IncorrectEncoding> for SaslError {
    fn from(_: IncorrectEncoding) -> Self {
        SaslError::IncorrectEncoding
    }
}

/// Everything that can stop the initiating entity's SASL negotiation. One variant per
/// rule, so a test can assert which one fired; `Display` says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SaslError {
    /// The server answered `<failure/>` with this condition.
    Failure(SaslFailure),
    /// The server failed a channel-bound (`-PLUS`) exchange with `not-authorized`. Either the
    /// password is wrong, or the server cannot verify this binding type (ejabberd 23.01 on
    /// TLS 1.3 offers `-PLUS` and rejects `tls-exporter`), or someone in the middle broke
    /// the binding. Never retried by the core; a caller that keeps a per-server memory may
    /// retry once with [`CbPolicy::RetryUnbound`](super::CbPolicy::RetryUnbound) when
    /// `xep0440` is false and the server never bound before.
    ChannelBindingRejected {
        /// The `-PLUS` mechanism used.
        mechanism: Mechanism,
        /// The binding type sent.
        cb_type: ChannelBindingType,
        /// The server advertised its binding types (XEP-0440) on this stream, so it claimed
        /// to verify this one: no excuse for refusing it.
        xep0440: bool,
    },
    /// No offered mechanism is allowed by the policy and the credentials.
    NoAcceptableMechanism,
    /// PLAIN is the only usable mechanism and the stream is not encrypted.
    PlainRequiresTls,
    /// The policy requires channel binding and the server offers no `-PLUS` mechanism (it
    /// does not support binding, or the offer was stripped on the way).
    ChannelBindingDowngrade,
    /// A channel-bound mechanism is needed or chosen, but the TLS layer has no binding data of
    /// a type the server accepts.
    ChannelBindingUnavailable,
    /// The mechanism is not in the server's (post-TLS) offer (§6.3.4).
    MechanismNotOffered(Mechanism),
    /// The mechanism is not compiled in or not implemented for this role.
    MechanismNotSupported(Mechanism),
    /// The credentials lack what this mechanism needs (the `&str` names it).
    MissingCredentials(&'static str),
    /// The user name, authzid or password cannot be encoded for this mechanism.
    InvalidCredentials(&'static str),
    /// SCRAM: the server signature `v=` did not match: the server does not know the
    /// password (RFC 5802 §9); do not trust this `<success/>`.
    ServerSignatureMismatch,
    /// SCRAM (XEP-0474): the server's hash of the mechanisms and channel-binding types it
    /// advertised differs from what arrived here: someone changed the offer on the way.
    DowngradeDetected,
    /// SASL2 (XEP-0388 §2.6.3): the server wants more than the mechanism (a second factor,
    /// a password change: these tasks) before it authenticates; not supported here.
    ContinueRequired(String),
    /// SASL2 (XEP-0388 §2.2): `<authenticate/>` went out with the header, before the
    /// features, shaped by this server's offer at the last login, and the live offer lacks
    /// what it used (named): a kept choice the server no longer confirms.
    PipelinedNotOffered(&'static str),
    /// SCRAM: `<success/>` came without the server signature and none was received before.
    MissingServerSignature,
    /// SCRAM: the server-final message carried `e=` with this value.
    ServerError(String),
    /// SCRAM: the server nonce does not extend the client nonce (RFC 5802 §5.1).
    NonceNotExtended,
    /// SCRAM: the iteration count is below the policy floor.
    IterationsTooLow {
        /// What the server asked for.
        iterations: u32,
        /// The policy floor.
        minimum: u32,
    },
    /// SCRAM: the iteration count is above the policy ceiling (a cheap denial of service).
    IterationsTooHigh {
        /// What the server asked for.
        iterations: u32,
        /// The policy ceiling.
        maximum: u32,
    },
    /// SCRAM: the server sent the reserved `m=` (mandatory extension) attribute.
    MandatoryExtension,
    /// The server's message violates the mechanism's syntax (the `&str` says where).
    MalformedChallenge(&'static str),
    /// Base64 that is not strict (RFC 6120 §6.4.2).
    IncorrectEncoding,
    /// SCRAM: only cached keys were given and the server's salt or iteration count changed.
    CachedKeysStale,
    /// A stored [`super::ScramCacheEntry`] could not be read back.
    InvalidCacheEntry,
    /// A `<challenge/>` arrived when the mechanism expected none.
    UnexpectedChallenge,
    /// A `<success/>` arrived before the mechanism finished.
    UnexpectedSuccess,
    /// More challenges than `SaslPolicy::max_rounds`.
    TooManyRounds,
    /// The caller used the API out of order (e.g. `initial_response` twice).
    OutOfOrder,
}

impl From<SaslFailure> for SaslError {
    fn from(f: SaslFailure) -> Self {
        SaslError::Failure(f)
    }
}

impl SaslError {
    /// The rule that fired, as a short name: what `Display` starts with in a build without
    /// the `error-text` feature.
    fn rule(&self) -> &'static str {
        match self {
            SaslError::Failure(_) => "failure",
            SaslError::ChannelBindingRejected { .. } => "channel-binding-rejected",
            SaslError::NoAcceptableMechanism => "no-acceptable-mechanism",
            SaslError::PlainRequiresTls => "plain-requires-tls",
            SaslError::ChannelBindingDowngrade => "channel-binding-downgrade",
            SaslError::ChannelBindingUnavailable => "channel-binding-unavailable",
            SaslError::MechanismNotOffered(_) => "mechanism-not-offered",
            SaslError::MechanismNotSupported(_) => "mechanism-not-supported",
            SaslError::MissingCredentials(_) => "missing-credentials",
            SaslError::InvalidCredentials(_) => "invalid-credentials",
            SaslError::ServerSignatureMismatch => "server-signature-mismatch",
            SaslError::DowngradeDetected => "downgrade-detected",
            SaslError::ContinueRequired(_) => "continue-required",
            SaslError::PipelinedNotOffered(_) => "pipelined-not-offered",
            SaslError::MissingServerSignature => "missing-server-signature",
            SaslError::ServerError(_) => "server-error",
            SaslError::NonceNotExtended => "nonce-not-extended",
            SaslError::IterationsTooLow { .. } => "iterations-too-low",
            SaslError::IterationsTooHigh { .. } => "iterations-too-high",
            SaslError::MandatoryExtension => "mandatory-extension",
            SaslError::MalformedChallenge(_) => "malformed-challenge",
            SaslError::IncorrectEncoding => "incorrect-encoding",
            SaslError::CachedKeysStale => "cached-keys-stale",
            SaslError::InvalidCacheEntry => "invalid-cache-entry",
            SaslError::UnexpectedChallenge => "unexpected-challenge",
            SaslError::UnexpectedSuccess => "unexpected-success",
            SaslError::TooManyRounds => "too-many-rounds",
            SaslError::OutOfOrder => "out-of-order",
        }
    }

    /// `Display` without the `error-text` feature: the rule and its details.
    fn fmt_short(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rule())?;
        match self {
            SaslError::Failure(c) => write!(f, " {c}"),
            SaslError::ChannelBindingRejected {
                mechanism, cb_type, ..
            } => write!(f, " {mechanism} {cb_type}"),
            SaslError::MechanismNotOffered(m) | SaslError::MechanismNotSupported(m) => {
                write!(f, " {m}")
            }
            SaslError::MissingCredentials(what)
            | SaslError::InvalidCredentials(what)
            | SaslError::PipelinedNotOffered(what)
            | SaslError::MalformedChallenge(what) => write!(f, " {what}"),
            SaslError::ContinueRequired(what) | SaslError::ServerError(what) => {
                write!(f, " {what}")
            }
            SaslError::IterationsTooLow {
                iterations,
                minimum: bound,
            }
            | SaslError::IterationsTooHigh {
                iterations,
                maximum: bound,
            } => write!(f, " {iterations} (bound {bound})"),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            return self.fmt_short(f);
        }
        match self {
            SaslError::Failure(c) => fmt::Display::fmt(c, f),
            SaslError::ChannelBindingRejected {
                mechanism, cb_type, ..
            } => write!(
                f,
                "the server refused {mechanism} with {cb_type} channel binding: a wrong \
                 password, a server that offers -PLUS but cannot verify {cb_type} (ejabberd \
                 23.01 on TLS 1.3), or an interception. Not retried without binding; if you \
                 trust the path to this server, set CbPolicy::Off for it"
            ),
            SaslError::NoAcceptableMechanism => f.write_str(
                "no offered SASL mechanism is allowed by the policy and credentials; relax \
                 SaslPolicy or supply the credentials the server wants",
            ),
            SaslError::PlainRequiresTls => f.write_str(
                "the server offers only PLAIN and the stream is not encrypted; negotiate TLS \
                 (or set allow_plain_without_tls for a local test server)",
            ),
            SaslError::ChannelBindingDowngrade => f.write_str(
                "channel binding is required but the server offers no -PLUS mechanism: the \
                 offer may have been stripped; do not connect, or relax CbPolicy::Required",
            ),
            SaslError::ChannelBindingUnavailable => f.write_str(
                "no channel-binding data of a type the server accepts: use a TLS layer that \
                 gives tls-exporter or tls-server-end-point, or relax CbPolicy::Required",
            ),
            SaslError::MechanismNotOffered(m) => write!(
                f,
                "{m} is not in the server's offer after TLS; abort and choose again from it"
            ),
            SaslError::MechanismNotSupported(m) => write!(
                f,
                "{m} is not available in this build or role (DIGEST-MD5 needs the \
                 `digest-md5` feature); choose another mechanism, or a build with it"
            ),
            SaslError::MissingCredentials(what) => {
                write!(
                    f,
                    "the credentials have no {what}, which this mechanism needs; supply it"
                )
            }
            SaslError::InvalidCredentials(what) => {
                write!(
                    f,
                    "the {what} cannot be encoded for this mechanism; check it for characters \
                     the mechanism cannot carry"
                )
            }
            SaslError::ServerSignatureMismatch => f.write_str(
                "the SCRAM server signature is wrong: the server does not know the password; \
                 treat the connection as hostile and close it",
            ),
            SaslError::DowngradeDetected => f.write_str(
                "the server's downgrade-protection hash (XEP-0474) does not match the \
                 mechanisms and channel-binding types received: someone in the middle changed \
                 the offer; do not retry on this network",
            ),
            SaslError::PipelinedNotOffered(what) => write!(
                f,
                "the server no longer offers {what}, which this login sent ahead of its \
                 features because it offered it last time; aborted. Discard what the login \
                 memory kept of its SASL2 offer and reconnect: that login waits for the \
                 features"
            ),
            SaslError::ContinueRequired(tasks) => write!(
                f,
                "the server requires further steps after authentication ({tasks}), which \
                 this client does not support: complete them with another client, or ask \
                 the server's operator"
            ),
            SaslError::MissingServerSignature => f.write_str(
                "the server reported success without a SCRAM server signature; not trusted, \
                 close the connection",
            ),
            SaslError::ServerError(e) => write!(
                f,
                "the SCRAM server reported e={e}; check the user name and password"
            ),
            SaslError::NonceNotExtended => f.write_str(
                "the SCRAM server nonce does not extend ours (replay or broken server); close",
            ),
            SaslError::IterationsTooLow {
                iterations,
                minimum,
            } => write!(
                f,
                "the server asks for {iterations} SCRAM iterations, below the floor of \
                 {minimum}; have the server rehash, or lower SaslPolicy::min_iterations"
            ),
            SaslError::IterationsTooHigh {
                iterations,
                maximum,
            } => write!(
                f,
                "the server asks for {iterations} SCRAM iterations, above the ceiling of \
                 {maximum}; raise SaslPolicy::max_iterations if that is really meant"
            ),
            SaslError::MandatoryExtension => f.write_str(
                "the SCRAM server demands an extension (m=) this client does not know; \
                     use another mechanism, or report it to the server's operator",
            ),
            SaslError::MalformedChallenge(w) => {
                write!(
                    f,
                    "malformed server SASL message ({w}); the server is broken: report it to \
                     its operator"
                )
            }
            SaslError::IncorrectEncoding => f.write_str(
                "the server sent malformed base64; the server is broken: report it to its \
                 operator",
            ),
            SaslError::CachedKeysStale => f.write_str(
                "the server's SCRAM salt or iteration count changed and only cached keys are \
                 stored; supply the password once to refresh the cache",
            ),
            SaslError::InvalidCacheEntry => {
                f.write_str("the stored SCRAM cache entry is corrupt; discard it")
            }
            SaslError::UnexpectedChallenge => f.write_str(
                "the server sent a challenge the mechanism did not expect; the server is \
                     broken: report it to its operator",
            ),
            SaslError::UnexpectedSuccess => f.write_str(
                "the server sent <success/> before the exchange was complete; not \
                     trusted: close, and report it to its operator",
            ),
            SaslError::TooManyRounds => f.write_str(
                "the server sent more challenges than SaslPolicy::max_rounds; raise it only \
                     if the mechanism really needs more",
            ),
            SaslError::OutOfOrder => {
                f.write_str("SASL client API called out of order; a bug in the caller: report it")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_conditions_are_rfc6120_section_6_5() {
        let names = [
            "aborted",
            "account-disabled",
            "credentials-expired",
            "encryption-required",
            "incorrect-encoding",
            "invalid-authzid",
            "invalid-mechanism",
            "malformed-request",
            "mechanism-too-weak",
            "not-authorized",
            "temporary-auth-failure",
        ];
        assert_eq!(SaslFailure::ALL.len(), names.len());
        for (c, n) in SaslFailure::ALL.iter().zip(names) {
            assert_eq!(c.name(), n);
            assert_eq!(SaslFailure::from_name(n), Some(*c));
        }
        assert_eq!(SaslFailure::from_name("bad-protocol"), None);
    }
}
