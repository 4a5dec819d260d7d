//! Choosing a mechanism (RFC 6120 §6.3.3–§6.3.4): the client's policy and preference order.
//!
//! The rules, in the order [`choose`] applies them:
//!
//! 1. Only mechanisms in the server's offer count, and only the post-TLS offer (§6.3.4);
//!    names this crate does not know (`KERBEROS_V4`, ...) are ignored.
//! 2. Candidates are tried in [`Mechanism::PREFERENCE`] order; the first one the credentials
//!    and the [`SaslPolicy`] allow wins. PLAIN therefore never wins while SCRAM is offered
//!    and usable.
//! 3. PLAIN needs TLS unless `allow_plain_without_tls`; DIGEST-MD5 needs `allow_digest_md5`
//!    and the `digest-md5` feature; EXTERNAL needs TLS and a client certificate; ANONYMOUS
//!    needs anonymous credentials.
//! 4. `-PLUS` needs TLS, a [`CbPolicy`] other than `Off`, and binding data of a type the
//!    server accepts: its XEP-0440 list when it sent one, otherwise any type. With
//!    [`CbPolicy::WhenOffered`] and no XEP-0440 list, `-PLUS` is preferred even though some
//!    servers (ejabberd 23.01 on TLS 1.3) offer it and then fail it; that failure is reported
//!    as [`SaslError::ChannelBindingRejected`] and never turned into a silent retry here (see
//!    the [module docs](super); a caller with a per-server memory may retry once with
//!    [`CbPolicy::RetryUnbound`]).
//! 5. For SCRAM without `-PLUS` the gs2 flag is `y` when the client could bind but the
//!    server offers no `-PLUS` (so a server that can bind detects the stripped offer), and `n`
//!    otherwise (binding off, no data, or no type in common with the server).
//! 6. [`CbPolicy::RetryUnbound`] never picks `-PLUS` and sends `y` whenever binding data
//!    exists on a TLS stream, `-PLUS` offered or not: the one retry after a server that
//!    never bound before refused the binding (RFC 5802 §6).

use alloc::string::String;

use super::channel_binding::{ChannelBindingData, ChannelBindingType};
use super::error::SaslError;
use super::mechanism::{Mechanism, MechanismSet};
use super::scram::ScramHash;

/// The weakest mechanism the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Minimum {
    /// Whatever the other policy fields allow (PLAIN over TLS included).
    #[default]
    Any,
    /// Never send the password itself: no PLAIN (nor ANONYMOUS).
    NoPlaintext,
    /// SCRAM, SCRAM-PLUS or EXTERNAL only ("SCRAM only"; EXTERNAL counts because it rests on
    /// the TLS client certificate and sends no password at all).
    Scram,
}

/// When the client uses channel binding (RFC 5802 §6, RFC 9266).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CbPolicy {
    /// Only channel-bound SCRAM (or EXTERNAL); anything else is an error.
    Required,
    /// `-PLUS` whenever the server offers it and binding data of an accepted type exists.
    #[default]
    WhenOffered,
    /// Never bind; SCRAM goes out with the gs2 flag `n`. For servers known to offer `-PLUS`
    /// and fail it (ejabberd 23.01 on TLS 1.3), set per server by the user.
    Off,
    /// Never bind, but say that we could: SCRAM goes out with the gs2 flag `y` whenever the
    /// TLS layer gives binding data, even though the server offers `-PLUS` (`n` without
    /// data). For the single retry after a server offered `-PLUS` without a XEP-0440 list
    /// and then refused the binding (ejabberd 23.01 on TLS 1.3), when nothing records that
    /// it ever bound. RFC 5802 §6: `y` means "the client supports channel binding but thinks
    /// the server does not"; a server that does support it MUST then fail the exchange, so
    /// a man in the middle who broke the binding of a binding-capable server gains nothing
    /// from the retry. Never chosen by default: the caller (the CLI's login memory) decides.
    RetryUnbound,
}

/// The client's SASL policy. [`Default`] is the safe choice: PLAIN only over TLS, no
/// DIGEST-MD5, channel binding when offered, at least 4096 SCRAM iterations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslPolicy {
    /// The weakest acceptable mechanism.
    pub minimum: Minimum,
    /// Channel-binding use.
    pub channel_binding: CbPolicy,
    /// Allow PLAIN on an unencrypted stream (local test servers only).
    pub allow_plain_without_tls: bool,
    /// Allow DIGEST-MD5 (RFC 6331 deprecated it; old servers only). Needs the `digest-md5`
    /// feature as well.
    pub allow_digest_md5: bool,
    /// SCRAM iteration floor (RFC 7677 §4 asks for at least 4096).
    pub min_iterations: u32,
    /// SCRAM iteration ceiling: a hostile server could otherwise keep a small device busy
    /// for minutes.
    pub max_iterations: u32,
    /// Most challenges accepted in one exchange.
    pub max_rounds: u32,
}

impl Default for SaslPolicy {
    fn default() -> Self {
        SaslPolicy {
            minimum: Minimum::Any,
            channel_binding: CbPolicy::WhenOffered,
            allow_plain_without_tls: false,
            allow_digest_md5: false,
            min_iterations: 4096,
            max_iterations: 1_000_000,
            max_rounds: 4,
        }
    }
}

/// What the client can authenticate with; derived from [`super::Credentials::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredentialKind {
    /// A password is known.
    pub password: bool,
    /// Only cached SCRAM keys are known (no password): SCRAM with this hash only.
    pub scram_keys: Option<ScramHash>,
    /// The TLS layer presented a client certificate (EXTERNAL).
    pub client_certificate: bool,
    /// Anonymous login wanted (ANONYMOUS).
    pub anonymous: bool,
}

/// The SCRAM gs2 channel-binding flag (RFC 5802 §7 `gs2-cbind-flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gs2CbFlag {
    /// `n`: the client does not bind.
    NoSupport,
    /// `y`: the client could bind but believes the server cannot.
    SupportedNotUsed,
    /// `p=<type>`: bound with this type (the `-PLUS` mechanisms).
    Used(ChannelBindingType),
}

/// A chosen mechanism and, for SCRAM, the channel-binding flag to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// The mechanism for `<auth mechanism='...'>`.
    pub mechanism: Mechanism,
    /// The gs2 flag (meaningful for SCRAM only; `NoSupport` otherwise).
    pub cb_flag: Gs2CbFlag,
}

impl Selection {
    /// A selection without channel binding (flag `n`), e.g. for tests or a fixed mechanism.
    pub const fn unbound(mechanism: Mechanism) -> Self {
        Selection {
            mechanism,
            cb_flag: Gs2CbFlag::NoSupport,
        }
    }
}

/// The binding type to use: the first we have data for that the server accepts.
fn usable_cb_type(
    cb: &ChannelBindingData,
    server_cb_types: Option<&[String]>,
) -> Option<ChannelBindingType> {
    cb.available().find(|t| match server_cb_types {
        Some(list) => list.iter().any(|n| n == t.name()),
        None => true,
    })
}

enum Refusal {
    Other,
    PlainNeedsTls,
}

/// Whether `m` may be used, given it is offered.
fn allowed(
    m: Mechanism,
    tls: bool,
    cb_type: Option<ChannelBindingType>,
    creds: CredentialKind,
    policy: &SaslPolicy,
) -> Result<(), Refusal> {
    let min_strength = match policy.minimum {
        Minimum::Any => 0,
        Minimum::NoPlaintext => Mechanism::DigestMd5.strength(),
        Minimum::Scram => Mechanism::ScramSha1.strength(),
    };
    if m.strength() < min_strength {
        return Err(Refusal::Other);
    }
    if policy.channel_binding == CbPolicy::Required && !(m.is_plus() || m == Mechanism::External) {
        return Err(Refusal::Other);
    }
    let ok = match m {
        Mechanism::External => tls && creds.client_certificate,
        Mechanism::Anonymous => creds.anonymous,
        Mechanism::Plain => {
            if !creds.password {
                false
            } else if !tls && !policy.allow_plain_without_tls {
                return Err(Refusal::PlainNeedsTls);
            } else {
                true
            }
        }
        Mechanism::DigestMd5 => {
            cfg!(feature = "digest-md5") && policy.allow_digest_md5 && creds.password
        }
        scram => {
            let hash = scram.scram_hash();
            let has_secret =
                creds.password || (creds.scram_keys.is_some() && creds.scram_keys == hash);
            hash.is_some() && has_secret && (!scram.is_plus() || (tls && cb_type.is_some()))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::Other)
    }
}

/// Chooses the strongest offered mechanism the policy and credentials allow, with its gs2
/// channel-binding flag. See the [module docs](self) for the rules.
///
/// `offered`: the `<mechanism/>` names of the post-TLS `<mechanisms/>`. `server_cb_types`:
/// the XEP-0440 `<sasl-channel-binding/>` type names, `None` when the server sent none.
/// `tls`: the stream is encrypted. `cb`: what the TLS layer gives.
pub fn choose(
    offered: &[String],
    server_cb_types: Option<&[String]>,
    tls: bool,
    cb: &ChannelBindingData,
    creds: CredentialKind,
    policy: &SaslPolicy,
) -> Result<Selection, SaslError> {
    let offered = MechanismSet::from_names(offered.iter().map(String::as_str));
    choose_from(offered, server_cb_types, tls, cb, creds, policy)
}

/// [`choose`] from an offer already reduced to the mechanisms this crate knows (a live
/// one, or one kept from an earlier connection: `ClientSasl::pipeline_offer`).
pub fn choose_from(
    offered: MechanismSet,
    server_cb_types: Option<&[String]>,
    tls: bool,
    cb: &ChannelBindingData,
    creds: CredentialKind,
    policy: &SaslPolicy,
) -> Result<Selection, SaslError> {
    let is_offered = |m: Mechanism| offered.contains(m);
    let server_offers_plus = Mechanism::ALL
        .into_iter()
        .any(|m| m.is_plus() && is_offered(m));
    let binding_on = tls
        && !matches!(
            policy.channel_binding,
            CbPolicy::Off | CbPolicy::RetryUnbound
        );
    // RFC 5802 §6: after the binding was refused, `y` ("we could bind, we think you
    // cannot") so that a server that can bind fails the exchange.
    let retry_unbound = tls && policy.channel_binding == CbPolicy::RetryUnbound && !cb.is_empty();
    let cb_type = if binding_on {
        usable_cb_type(cb, server_cb_types)
    } else {
        None
    };
    let mut plain_needs_tls = false;
    for m in Mechanism::PREFERENCE {
        if !is_offered(m) {
            continue;
        }
        match allowed(m, tls, cb_type, creds, policy) {
            Ok(()) => {
                let cb_flag = match (m.is_plus(), cb_type) {
                    (true, Some(t)) => Gs2CbFlag::Used(t),
                    _ if binding_on && !cb.is_empty() && !server_offers_plus => {
                        Gs2CbFlag::SupportedNotUsed
                    }
                    _ if retry_unbound && m.scram_hash().is_some() => Gs2CbFlag::SupportedNotUsed,
                    _ => Gs2CbFlag::NoSupport,
                };
                debug!("SASL: chose {}", m.name());
                return Ok(Selection {
                    mechanism: m,
                    cb_flag,
                });
            }
            Err(Refusal::PlainNeedsTls) => plain_needs_tls = true,
            Err(Refusal::Other) => {}
        }
    }
    if policy.channel_binding == CbPolicy::Required {
        return Err(if !server_offers_plus {
            SaslError::ChannelBindingDowngrade
        } else {
            SaslError::ChannelBindingUnavailable
        });
    }
    Err(if plain_needs_tls {
        SaslError::PlainRequiresTls
    } else {
        SaslError::NoAcceptableMechanism
    })
}

/// [`choose`] without the gs2 flag: the mechanism to name in `<auth/>`.
pub fn select(
    offered: &[String],
    server_cb_types: Option<&[String]>,
    tls: bool,
    cb: &ChannelBindingData,
    creds: CredentialKind,
    policy: &SaslPolicy,
) -> Result<Mechanism, SaslError> {
    choose(offered, server_cb_types, tls, cb, creds, policy).map(|s| s.mechanism)
}

/// Checks a mechanism chosen early (a pipelined `<auth/>` sent before the post-TLS features)
/// against the post-TLS offer when it arrives (§6.3.4); on `Err` the caller aborts cleanly.
pub fn check_offered(mechanism: Mechanism, offered: &[String]) -> Result<(), SaslError> {
    if offered.iter().any(|n| n == mechanism.name()) {
        Ok(())
    } else {
        Err(SaslError::MechanismNotOffered(mechanism))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| String::from(*s)).collect()
    }

    const PASSWORD: CredentialKind = CredentialKind {
        password: true,
        scram_keys: None,
        client_certificate: false,
        anonymous: false,
    };

    fn exporter() -> ChannelBindingData {
        ChannelBindingData {
            exporter: Some([7; 32]),
            ..Default::default()
        }
    }

    fn end_point() -> ChannelBindingData {
        ChannelBindingData {
            server_end_point: Some(alloc::vec![9; 32]),
            ..Default::default()
        }
    }

    #[test]
    fn seed_offer_before_tls_refuses_digest_md5_and_plain_by_default() {
        let offered = names(&["DIGEST-MD5", "PLAIN"]);
        let r = select(
            &offered,
            None,
            false,
            &ChannelBindingData::none(),
            PASSWORD,
            &SaslPolicy::default(),
        );
        assert_eq!(r, Err(SaslError::PlainRequiresTls));
    }

    #[test]
    fn digest_md5_only_when_enabled() {
        let offered = names(&["DIGEST-MD5", "PLAIN"]);
        let policy = SaslPolicy {
            allow_digest_md5: true,
            ..Default::default()
        };
        let r = select(
            &offered,
            None,
            false,
            &ChannelBindingData::none(),
            PASSWORD,
            &policy,
        );
        if cfg!(feature = "digest-md5") {
            assert_eq!(r, Ok(Mechanism::DigestMd5));
        } else {
            assert_eq!(r, Err(SaslError::PlainRequiresTls));
        }
        // Over TLS without the opt-in, DIGEST-MD5 is skipped for PLAIN.
        let r = select(
            &offered,
            None,
            true,
            &ChannelBindingData::none(),
            PASSWORD,
            &SaslPolicy::default(),
        );
        assert_eq!(r, Ok(Mechanism::Plain));
    }

    #[test]
    fn seed_offer_after_tls_picks_plus_and_ignores_kerberos() {
        let offered = names(&[
            "KERBEROS_V4",
            "EXTERNAL",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-1",
            "PLAIN",
        ]);
        let s = choose(
            &offered,
            None,
            true,
            &exporter(),
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(s.mechanism, Mechanism::ScramSha1Plus);
        assert_eq!(s.cb_flag, Gs2CbFlag::Used(ChannelBindingType::TlsExporter));
        // Without binding data: plain SCRAM with `n` (the server can bind, we cannot).
        let s = choose(
            &offered,
            None,
            true,
            &ChannelBindingData::none(),
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::ScramSha1));
        // EXTERNAL only with a client certificate.
        let cert = CredentialKind {
            client_certificate: true,
            ..PASSWORD
        };
        assert_eq!(
            select(
                &offered,
                None,
                true,
                &exporter(),
                cert,
                &SaslPolicy::default()
            ),
            Ok(Mechanism::External)
        );
    }

    #[test]
    fn only_unknown_mechanisms_is_no_acceptable_mechanism() {
        let offered = names(&["KERBEROS_V4", "X-OAUTH2"]);
        let r = select(
            &offered,
            None,
            true,
            &exporter(),
            PASSWORD,
            &SaslPolicy::default(),
        );
        assert_eq!(r, Err(SaslError::NoAcceptableMechanism));
    }

    #[test]
    fn prosody_tls13_offer_picks_scram_sha1_with_y_flag_never_plain() {
        let offered = names(&["PLAIN", "SCRAM-SHA-1"]);
        let s = choose(
            &offered,
            None,
            true,
            &exporter(),
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(s.mechanism, Mechanism::ScramSha1);
        assert_eq!(s.cb_flag, Gs2CbFlag::SupportedNotUsed);
        // Same without binding data: `n`.
        let s = choose(
            &offered,
            None,
            true,
            &ChannelBindingData::none(),
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::ScramSha1));
    }

    /// The documented rule for ejabberd 23.01 on TLS 1.3 (offers SCRAM-SHA-1-PLUS, no
    /// XEP-0440 list, rejects tls-exporter): `WhenOffered` still picks -PLUS; `Off` picks
    /// SCRAM-SHA-1 with `n`; neither ever picks PLAIN.
    #[test]
    fn ejabberd_tls13_without_xep0440_prefers_plus_and_off_gives_scram_not_plain() {
        let offered = names(&["SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "PLAIN", "X-OAUTH2"]);
        let s = choose(
            &offered,
            None,
            true,
            &exporter(),
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(s.mechanism, Mechanism::ScramSha1Plus);
        assert_eq!(s.cb_flag, Gs2CbFlag::Used(ChannelBindingType::TlsExporter));
        let off = SaslPolicy {
            channel_binding: CbPolicy::Off,
            ..Default::default()
        };
        let s = choose(&offered, None, true, &exporter(), PASSWORD, &off).unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::ScramSha1));
    }

    #[test]
    fn xep0440_list_decides_the_binding_type() {
        let offered = names(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        let both = ChannelBindingData {
            exporter: Some([1; 32]),
            server_end_point: Some(alloc::vec![2; 32]),
            unique: None,
        };
        let only_sep = names(&["tls-server-end-point"]);
        let s = choose(
            &offered,
            Some(&only_sep),
            true,
            &both,
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(
            s.cb_flag,
            Gs2CbFlag::Used(ChannelBindingType::TlsServerEndPoint)
        );
        // The server accepts only tls-unique, which we lack: plain SCRAM with `n`.
        let only_unique = names(&["tls-unique"]);
        let s = choose(
            &offered,
            Some(&only_unique),
            true,
            &both,
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::ScramSha256));
        // embedded-tls gives only tls-server-end-point and the server lists tls-exporter only.
        let only_exp = names(&["tls-exporter"]);
        let s = choose(
            &offered,
            Some(&only_exp),
            true,
            &end_point(),
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::ScramSha256));
    }

    #[test]
    fn never_selects_a_mechanism_not_offered() {
        let offered = names(&["SCRAM-SHA-1"]);
        for tls in [false, true] {
            let s = select(
                &offered,
                None,
                tls,
                &exporter(),
                PASSWORD,
                &SaslPolicy::default(),
            )
            .unwrap();
            assert_eq!(s, Mechanism::ScramSha1);
        }
        assert_eq!(check_offered(Mechanism::ScramSha1, &offered), Ok(()));
        assert_eq!(
            check_offered(Mechanism::ScramSha256, &offered),
            Err(SaslError::MechanismNotOffered(Mechanism::ScramSha256))
        );
    }

    #[test]
    fn plain_requires_tls_unless_allowed() {
        let offered = names(&["PLAIN"]);
        let none = ChannelBindingData::none();
        assert_eq!(
            select(
                &offered,
                None,
                false,
                &none,
                PASSWORD,
                &SaslPolicy::default()
            ),
            Err(SaslError::PlainRequiresTls)
        );
        let lax = SaslPolicy {
            allow_plain_without_tls: true,
            ..Default::default()
        };
        assert_eq!(
            select(&offered, None, false, &none, PASSWORD, &lax),
            Ok(Mechanism::Plain)
        );
        assert_eq!(
            select(
                &offered,
                None,
                true,
                &none,
                PASSWORD,
                &SaslPolicy::default()
            ),
            Ok(Mechanism::Plain)
        );
    }

    #[test]
    fn scram_only_policy_refuses_a_plain_only_server() {
        let offered = names(&["PLAIN"]);
        let policy = SaslPolicy {
            minimum: Minimum::Scram,
            ..Default::default()
        };
        assert_eq!(
            select(&offered, None, true, &exporter(), PASSWORD, &policy),
            Err(SaslError::NoAcceptableMechanism)
        );
        let offered = names(&["PLAIN", "SCRAM-SHA-1"]);
        assert_eq!(
            select(&offered, None, true, &exporter(), PASSWORD, &policy),
            Ok(Mechanism::ScramSha1)
        );
    }

    #[test]
    fn required_channel_binding_reports_stripped_plus_as_downgrade() {
        let policy = SaslPolicy {
            channel_binding: CbPolicy::Required,
            ..Default::default()
        };
        let offered = names(&["SCRAM-SHA-1", "PLAIN"]);
        assert_eq!(
            select(&offered, None, true, &exporter(), PASSWORD, &policy),
            Err(SaslError::ChannelBindingDowngrade)
        );
        let offered = names(&["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"]);
        assert_eq!(
            select(
                &offered,
                None,
                true,
                &ChannelBindingData::none(),
                PASSWORD,
                &policy
            ),
            Err(SaslError::ChannelBindingUnavailable)
        );
        assert_eq!(
            select(&offered, None, true, &end_point(), PASSWORD, &policy),
            Ok(Mechanism::ScramSha1Plus)
        );
    }

    #[test]
    fn plus_needs_tls() {
        let offered = names(&["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"]);
        let s = choose(
            &offered,
            None,
            false,
            &exporter(),
            PASSWORD,
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::ScramSha1));
    }

    #[test]
    fn prefers_longer_hash_and_cached_keys_restrict_hash() {
        let offered = names(&["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
        let none = ChannelBindingData::none();
        // Without the `sha-512` feature, SCRAM-SHA-512 is offered but not implemented here.
        let longest = if cfg!(feature = "sha-512") {
            Mechanism::ScramSha512
        } else {
            Mechanism::ScramSha256
        };
        assert_eq!(
            select(
                &offered,
                None,
                true,
                &none,
                PASSWORD,
                &SaslPolicy::default()
            ),
            Ok(longest)
        );
        let keys = CredentialKind {
            password: false,
            scram_keys: Some(ScramHash::Sha1),
            ..Default::default()
        };
        assert_eq!(
            select(&offered, None, true, &none, keys, &SaslPolicy::default()),
            Ok(Mechanism::ScramSha1)
        );
    }

    #[test]
    fn anonymous_only_with_anonymous_credentials() {
        let offered = names(&["ANONYMOUS", "PLAIN"]);
        let none = ChannelBindingData::none();
        assert_eq!(
            select(
                &offered,
                None,
                true,
                &none,
                PASSWORD,
                &SaslPolicy::default()
            ),
            Ok(Mechanism::Plain)
        );
        let anon = CredentialKind {
            anonymous: true,
            ..Default::default()
        };
        assert_eq!(
            select(&offered, None, true, &none, anon, &SaslPolicy::default()),
            Ok(Mechanism::Anonymous)
        );
        let strict = SaslPolicy {
            minimum: Minimum::NoPlaintext,
            ..Default::default()
        };
        assert_eq!(
            select(&offered, None, true, &none, anon, &strict),
            Err(SaslError::NoAcceptableMechanism)
        );
    }

    /// The retry after ejabberd 23.01 on TLS 1.3 refused the binding: plain SCRAM with `y`
    /// although -PLUS is offered (RFC 5802 §6), never -PLUS, never PLAIN; `n` without TLS
    /// or without binding data; `Required` keeps refusing anything unbound.
    #[test]
    fn retry_unbound_sends_y_even_though_plus_is_offered() {
        let offered = names(&["SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "PLAIN", "X-OAUTH2"]);
        let retry = SaslPolicy {
            channel_binding: CbPolicy::RetryUnbound,
            ..Default::default()
        };
        for cb in [exporter(), end_point()] {
            let s = choose(&offered, None, true, &cb, PASSWORD, &retry).unwrap();
            assert_eq!(s.mechanism, Mechanism::ScramSha1);
            assert_eq!(s.cb_flag, Gs2CbFlag::SupportedNotUsed);
        }
        // With an XEP-0440 list as well (the CLI does not retry then, the core still never binds).
        let types = names(&["tls-exporter"]);
        let s = choose(&offered, Some(&types), true, &exporter(), PASSWORD, &retry).unwrap();
        assert_eq!(s.mechanism, Mechanism::ScramSha1);
        assert_eq!(s.cb_flag, Gs2CbFlag::SupportedNotUsed);
        // No binding data: nothing to claim, `n`.
        let s = choose(
            &offered,
            None,
            true,
            &ChannelBindingData::none(),
            PASSWORD,
            &retry,
        )
        .unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::ScramSha1));
        // No TLS: `n`.
        let s = choose(&offered, None, false, &exporter(), PASSWORD, &retry).unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::ScramSha1));
        // A server offering PLAIN only: PLAIN (no gs2 flag at all).
        let plain = names(&["PLAIN"]);
        let s = choose(&plain, None, true, &exporter(), PASSWORD, &retry).unwrap();
        assert_eq!(s, Selection::unbound(Mechanism::Plain));
        // Only -PLUS offered: nothing acceptable (it never binds).
        let plus = names(&["SCRAM-SHA-1-PLUS"]);
        assert_eq!(
            choose(&plus, None, true, &exporter(), PASSWORD, &retry),
            Err(SaslError::NoAcceptableMechanism)
        );
    }
}
