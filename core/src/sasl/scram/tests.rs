//! Fixtures for the SCRAM tests (the example exchanges of RFC 5802 §5 and RFC 7677 §3, a
//! client, a server and a store), and the tests that run the two roles against each other:
//! channel binding (RFC 5802 §6) and its downgrade, failures that must look alike, the
//! authzid, and secrets kept out of `Debug`.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::{ScramCacheEntry, ScramCredentials, ScramHash};
use crate::sasl::base64::{decode_strict, encode};
use crate::sasl::testutil::{exchange, rng, Outcome};
use crate::sasl::{
    ChannelBindingData, ChannelBindingType, ClientMechanism, Credentials, Gs2CbFlag, Mechanism,
    MemoryStore, SaslError, SaslFailure, SaslPolicy, Selection, ServerContext, ServerMechanism,
};

pub(super) const RFC5802_CLIENT_NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
pub(super) const RFC5802_SERVER_FIRST: &str =
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
pub(super) const RFC5802_CLIENT_FINAL: &str =
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
pub(super) const RFC5802_SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

pub(super) const RFC7677_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
pub(super) const RFC7677_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
pub(super) const RFC7677_CLIENT_FINAL: &str =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
pub(super) const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

pub(super) fn client(mechanism: Mechanism, creds: Credentials, nonce: &str) -> ClientMechanism {
    ClientMechanism::with_nonce(
        &Selection::unbound(mechanism),
        creds,
        &ChannelBindingData::none(),
        &SaslPolicy::default(),
        nonce,
    )
    .unwrap()
}

pub(super) fn rfc5802_client() -> ClientMechanism {
    client(
        Mechanism::ScramSha1,
        Credentials::password("user", "pencil"),
        RFC5802_CLIENT_NONCE,
    )
}

pub(super) fn rfc5802_after_client_final() -> ClientMechanism {
    let mut c = rfc5802_client();
    c.initial_response().unwrap();
    assert_eq!(
        c.challenge(RFC5802_SERVER_FIRST.as_bytes()).unwrap(),
        RFC5802_CLIENT_FINAL.as_bytes()
    );
    c
}

pub(super) fn store_with(user: &str, password: &str) -> MemoryStore {
    let mut store = MemoryStore::new();
    store.add_password(user, password, 4096, &mut rng(7));
    store
}

pub(super) fn server(
    mechanism: Mechanism,
    offered: &[Mechanism],
    cb: &ChannelBindingData,
) -> ServerMechanism {
    let ctx = ServerContext {
        offered,
        tls: true,
        channel_binding: cb,
        external_identity: None,
    };
    ServerMechanism::start(mechanism.name(), &ctx, &mut rng(3)).unwrap()
}

pub(super) fn client_with(
    selection: Selection,
    creds: Credentials,
    cb: &ChannelBindingData,
) -> ClientMechanism {
    ClientMechanism::new(&selection, creds, cb, &SaslPolicy::default(), &mut rng(5)).unwrap()
}

pub(super) fn both_cb() -> ChannelBindingData {
    ChannelBindingData {
        exporter: Some([0x42; 32]),
        server_end_point: Some(vec![0x17; 32]),
        unique: Some(vec![0x99; 12]),
    }
}

#[test]
fn own_server_accepts_own_client_for_every_scram_variant() {
    let store = store_with("juliet", "r0m30");
    let cb = both_cb();
    for hash in ScramHash::ALL {
        let plain = Mechanism::scram(hash, false);
        let plus = Mechanism::scram(hash, true);
        let offered = [plus, plain];
        let mut selections = vec![Selection::unbound(plain)];
        for t in ChannelBindingType::PREFERENCE {
            selections.push(Selection {
                mechanism: plus,
                cb_flag: Gs2CbFlag::Used(t),
            });
        }
        for sel in selections {
            let mut c = client_with(sel, Credentials::password("juliet", "r0m30"), &cb);
            let mut s = server(sel.mechanism, &offered, &cb);
            assert_eq!(
                exchange(&mut c, &mut s, &store),
                Outcome::Success {
                    authcid: "juliet".into(),
                    authzid: None
                },
                "{sel:?}"
            );
            assert!(c.cache_entry().is_some());
        }
    }
}

#[test]
fn channel_binding_mismatch_fails_and_is_reported_as_binding_rejection() {
    // A man in the middle terminates TLS: each side sees different exporter bytes.
    let store = store_with("juliet", "r0m30");
    let client_cb = ChannelBindingData {
        exporter: Some([1; 32]),
        ..Default::default()
    };
    let server_cb = ChannelBindingData {
        exporter: Some([2; 32]),
        ..Default::default()
    };
    let sel = Selection {
        mechanism: Mechanism::ScramSha256Plus,
        cb_flag: Gs2CbFlag::Used(ChannelBindingType::TlsExporter),
    };
    let mut c = client_with(sel, Credentials::password("juliet", "r0m30"), &client_cb);
    let mut s = server(
        Mechanism::ScramSha256Plus,
        &[Mechanism::ScramSha256Plus, Mechanism::ScramSha256],
        &server_cb,
    );
    let out = exchange(&mut c, &mut s, &store);
    assert_eq!(out, Outcome::ServerFailed(SaslFailure::NotAuthorized));
    assert_eq!(s.failure_reason(), Some("channel bindings do not match"));
    assert_eq!(
        c.failure(SaslFailure::NotAuthorized),
        SaslError::ChannelBindingRejected {
            mechanism: Mechanism::ScramSha256Plus,
            cb_type: ChannelBindingType::TlsExporter,
            xep0440: false,
        }
    );
}

/// ejabberd 23.01 on TLS 1.3: offers -PLUS, cannot verify tls-exporter. Modelled as a
/// server with no exporter data. The client reports the rejection and does not retry.
#[test]
fn ejabberd_tls13_plus_rejection_is_reported_not_retried() {
    let store = store_with("juliet", "r0m30");
    let client_cb = ChannelBindingData {
        exporter: Some([1; 32]),
        ..Default::default()
    };
    let server_cb = ChannelBindingData {
        unique: Some(vec![3; 12]),
        ..Default::default()
    };
    let offered_names: Vec<String> = ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"]
        .iter()
        .map(|s| String::from(*s))
        .collect();
    let creds = Credentials::password("juliet", "r0m30");
    let sel = crate::sasl::choose(
        &offered_names,
        None,
        true,
        &client_cb,
        creds.kind(),
        &SaslPolicy::default(),
    )
    .unwrap();
    assert_eq!(sel.mechanism, Mechanism::ScramSha1Plus);
    let mut c = client_with(sel, creds, &client_cb);
    let mut s = server(
        Mechanism::ScramSha1Plus,
        &[
            Mechanism::ScramSha1Plus,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ],
        &server_cb,
    );
    let Outcome::ServerFailed(cond) = exchange(&mut c, &mut s, &store) else {
        panic!("server must fail");
    };
    let err = c.failure(cond);
    assert!(matches!(err, SaslError::ChannelBindingRejected { .. }));
    if cfg!(feature = "error-text") {
        assert!(format!("{err}").contains("CbPolicy::Off"));
    }
    // The user's explicit per-server choice: CbPolicy::Off gives SCRAM with `n`.
    let off = SaslPolicy {
        channel_binding: crate::sasl::CbPolicy::Off,
        ..Default::default()
    };
    let creds = Credentials::password("juliet", "r0m30");
    let sel =
        crate::sasl::choose(&offered_names, None, true, &client_cb, creds.kind(), &off).unwrap();
    assert_eq!(sel, Selection::unbound(Mechanism::ScramSha1));
    let mut c = client_with(sel, creds, &client_cb);
    let mut s = server(
        Mechanism::ScramSha1,
        &[
            Mechanism::ScramSha1Plus,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ],
        &server_cb,
    );
    assert!(matches!(
        exchange(&mut c, &mut s, &store),
        Outcome::Success { .. }
    ));
}

#[test]
fn server_detects_y_flag_downgrade_when_it_offers_plus() {
    let store = store_with("juliet", "r0m30");
    let cb = both_cb();
    let sel = Selection {
        mechanism: Mechanism::ScramSha1,
        cb_flag: Gs2CbFlag::SupportedNotUsed,
    };
    // The attacker stripped SCRAM-SHA-1-PLUS from what the client saw; the server did offer it.
    let mut c = client_with(sel, Credentials::password("juliet", "r0m30"), &cb);
    let mut s = server(
        Mechanism::ScramSha1,
        &[Mechanism::ScramSha1Plus, Mechanism::ScramSha1],
        &cb,
    );
    assert_eq!(
        exchange(&mut c, &mut s, &store),
        Outcome::ServerFailed(SaslFailure::NotAuthorized)
    );
    assert!(s.failure_reason().unwrap().contains("downgrade"));
    // A server that really offers no -PLUS accepts `y`.
    let mut c = client_with(sel, Credentials::password("juliet", "r0m30"), &cb);
    let mut s = server(Mechanism::ScramSha1, &[Mechanism::ScramSha1], &cb);
    assert!(matches!(
        exchange(&mut c, &mut s, &store),
        Outcome::Success { .. }
    ));
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    let store = store_with("juliet", "r0m30");
    let cb = ChannelBindingData::none();
    for creds in [
        Credentials::password("juliet", "wrong"),
        Credentials::password("romeo", "r0m30"),
    ] {
        let mut c = client_with(Selection::unbound(Mechanism::ScramSha256), creds, &cb);
        let mut s = server(Mechanism::ScramSha256, &[Mechanism::ScramSha256], &cb);
        assert_eq!(
            exchange(&mut c, &mut s, &store),
            Outcome::ServerFailed(SaslFailure::NotAuthorized)
        );
        assert_eq!(s.failure_reason(), Some("unknown user or wrong password"));
    }
}

#[test]
fn authzid_is_checked_by_the_store() {
    let store = store_with("juliet", "r0m30");
    let cb = ChannelBindingData::none();
    let mut c = client_with(
        Selection::unbound(Mechanism::ScramSha1),
        Credentials::password("juliet", "r0m30").with_authzid("juliet@example.com"),
        &cb,
    );
    let mut s = server(Mechanism::ScramSha1, &[Mechanism::ScramSha1], &cb);
    assert_eq!(
        exchange(&mut c, &mut s, &store),
        Outcome::Success {
            authcid: "juliet".into(),
            authzid: Some("juliet@example.com".into())
        }
    );
    let mut c = client_with(
        Selection::unbound(Mechanism::ScramSha1),
        Credentials::password("juliet", "r0m30").with_authzid("romeo@example.com"),
        &cb,
    );
    let mut s = server(Mechanism::ScramSha1, &[Mechanism::ScramSha1], &cb);
    assert_eq!(
        exchange(&mut c, &mut s, &store),
        Outcome::ServerFailed(SaslFailure::InvalidAuthzid)
    );
}

#[test]
fn debug_output_contains_no_secret() {
    let salt = decode_strict("QSXCR+Q6sek8bf92").unwrap();
    let entry = ScramCacheEntry::from_password(ScramHash::Sha1, "pencil", &salt, 4096);
    let creds = ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096);
    let secrets = [
        String::from("pencil"),
        format!("{:?}", entry.keys().0),
        format!("{:?}", entry.keys().1),
        format!("{:?}", creds.stored_key),
        encode(entry.keys().0),
    ];
    let mut c = rfc5802_after_client_final();
    let err = c
        .success(Some(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
        .unwrap_err();
    let outputs = [
        format!("{entry:?}"),
        format!("{creds:?}"),
        format!(
            "{:?}",
            Credentials::password("user", "pencil").with_scram_cache(entry.clone())
        ),
        format!("{:?}", rfc5802_after_client_final()),
        format!("{:?}", store_with("user", "pencil")),
        format!("{err:?} {err}"),
    ];
    for o in &outputs {
        for s in &secrets {
            assert!(!o.contains(s.as_str()), "{o} leaks {s}");
        }
    }
    assert!(outputs[2].contains("<redacted>"));
}
