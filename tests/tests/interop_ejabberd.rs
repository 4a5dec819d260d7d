//! Our initiating entity (the CLI's client code) against a real ejabberd 23.01 on loopback,
//! with each SCRAM family it can be configured for (`auth_scram_hash: sha` offers
//! SCRAM-SHA-1 and -PLUS, `sha256` SCRAM-SHA-256 and -PLUS).
//!
//! ejabberd 23.01 offers `-PLUS` on TLS 1.3 and then rejects `tls-exporter` (FACTS.md).
//! The core's default (`CbPolicy::WhenOffered`) therefore fails there, with the typed
//! [`SaslError::ChannelBindingRejected`] (no XEP-0440 list: `xep0440: false`), and never
//! retries unbound on its own; `CbPolicy::Off` (the CLI's `--channel-binding off`) logs in
//! with plain SCRAM. Both are asserted. The CLI's `connect` with default options retries
//! once with `CbPolicy::RetryUnbound` (gs2 flag `y`, which ejabberd accepts) because its
//! login memory has never seen this server bind, logs in, and says so: asserted against the
//! binary in [`cli_connect_by_default_logs_in_after_one_retry_without_binding`].

mod interop_support;

use interop_support::{block_on, close, exchange, login, How};
use xmpp_handshake_core::sasl::{CbPolicy, Mechanism, SaslError, SaslFailure};
use xmpp_handshake_core::starttls::TlsPolicy;
use xmpp_handshake_core::Error;
use xmpp_handshake_tests::cli::connect_send;
use xmpp_handshake_tests::{Ejabberd, EjabberdOptions, ScramHash, TlsPolicy as ServerTls};

const OFF: How = How {
    pipeline: None,
    tls: TlsPolicy::Required,
    cb: CbPolicy::Off,
    tls12: false,
    direct_tls: false,
};

fn each_hash(hash: ScramHash, family: &str) {
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions {
        scram_hash: hash,
        ..Default::default()
    }) else {
        return;
    };
    let (alice, bob) = (e.user(0).clone(), e.user(1).clone());
    block_on(async {
        // The retry policy: plain SCRAM of that family with the gs2 flag `y`, accepted.
        let retry = How {
            cb: CbPolicy::RetryUnbound,
            ..OFF
        };
        let a = login(&e, &alice.name, &alice.password, "retry", retry).await;
        assert_eq!(a.used().as_deref(), Some(family), "{}", a.dump());
        close(a.ok()).await;

        // Default policy: -PLUS is offered and chosen, and ejabberd rejects the binding.
        let a = login(&e, &alice.name, &alice.password, "plus", How::default()).await;
        let offered = a.offered();
        eprintln!(
            "ejabberd ({family}) offered {offered:?}; we used {:?}",
            a.used()
        );
        assert!(offered.contains(&family.to_string()), "{offered:?}");
        let plus = format!("{family}-PLUS");
        assert!(offered.contains(&plus), "{offered:?}");
        assert_eq!(a.used().as_deref(), Some(plus.as_str()));
        let dump = a.dump();
        match &a.result {
            Err(Error::AuthenticationFailed {
                error: SaslError::ChannelBindingRejected { xep0440, .. },
                ..
            }) => assert!(!xep0440, "ejabberd 23.01 sends no XEP-0440 list"),
            Ok(_) => eprintln!("NOTE: ejabberd accepted {plus} over TLS 1.3"),
            Err(other) => panic!("expected ChannelBindingRejected, got {other:?}\n{dump}"),
        }
        if let Ok(l) = a.result {
            close(l).await;
        }

        // Without binding: plain SCRAM of that family, bind, messages both ways.
        let a = login(&e, &alice.name, &alice.password, "laptop", OFF).await;
        assert_eq!(a.used().as_deref(), Some(family), "{}", a.dump());
        let round_trips = a.transcript.round_trips();
        let mut a = a.ok();
        eprintln!(
            "ejabberd: bound {} with {family} in {round_trips} round trips, {:.1} ms",
            a.jid,
            a.elapsed.as_secs_f64() * 1000.0
        );
        assert_eq!(round_trips, 6, "round trips to a bound resource");
        assert!(
            a.jid.starts_with(&format!("alice@{}/", e.domain)),
            "{}",
            a.jid
        );
        let mut b = login(&e, &bob.name, &bob.password, "phone", OFF).await.ok();
        exchange(&mut a, &mut b, "from alice <&> to bob").await;
        exchange(&mut b, &mut a, "and back").await;
        close(a).await;
        close(b).await;
    });
}

#[test]
fn scram_sha1_family() {
    each_hash(ScramHash::Sha1, "SCRAM-SHA-1");
}

#[test]
fn scram_sha256_family() {
    each_hash(ScramHash::Sha256, "SCRAM-SHA-256");
}

#[test]
fn starttls_optional_server_with_required_and_optional_client() {
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions {
        tls: ServerTls::Optional,
        ..Default::default()
    }) else {
        return;
    };
    let alice = e.user(0).clone();
    block_on(async {
        for tls in [TlsPolicy::Required, TlsPolicy::Optional] {
            let a = login(&e, &alice.name, &alice.password, "r", How { tls, ..OFF }).await;
            assert!(a.transcript.tls().is_some(), "STARTTLS used with {tls:?}");
            let l = a.ok();
            assert!(l.session.outcome().secure);
            close(l).await;
        }
    });
}

#[test]
fn wrong_password_fails_with_not_authorized() {
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions::default()) else {
        return;
    };
    let alice = e.user(0).clone();
    block_on(async {
        let a = login(&e, &alice.name, "not-her-password", "x", OFF).await;
        let dump = a.dump();
        match a.result {
            Err(Error::AuthenticationFailed {
                error: SaslError::Failure(SaslFailure::NotAuthorized),
                ..
            })
            | Err(Error::Sasl(SaslError::Failure(SaslFailure::NotAuthorized))) => {}
            Err(other) => panic!("expected not-authorized, got {other:?}\n{dump}"),
            Ok(_) => panic!("logged in with a wrong password\n{dump}"),
        }
        assert!(!dump.contains("not-her-password"));
    });
}

/// Pipelined `<auth/>` (with the post-TLS header) and bind (with the header after
/// `<success/>`): 5 round trips after the TCP connect (FACTS.md); a hint ejabberd does not
/// offer is refused by it and SASL starts again from the real offer.
#[test]
fn pipelined_login_binds_in_five_round_trips_and_recovers_from_a_wrong_hint() {
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions {
        scram_hash: ScramHash::Sha256,
        ..EjabberdOptions::default()
    }) else {
        return;
    };
    let (alice, bob) = (e.user(0).clone(), e.user(1).clone());
    block_on(async {
        let how = How {
            pipeline: Some(Mechanism::ScramSha256),
            ..OFF
        };
        let a = login(&e, &alice.name, &alice.password, "fast", how).await;
        assert_eq!(a.used().as_deref(), Some("SCRAM-SHA-256"), "{}", a.dump());
        assert_eq!(a.transcript.round_trips(), 5, "{}", a.dump());
        let mut a = a.ok();
        let mut b = login(&e, &bob.name, &bob.password, "b", OFF).await.ok();
        exchange(&mut a, &mut b, "pipelined").await;
        close(a).await;
        close(b).await;

        let wrong = How {
            pipeline: Some(Mechanism::ScramSha512),
            ..OFF
        };
        let a = login(&e, &alice.name, &alice.password, "retry", wrong).await;
        assert_eq!(a.used().as_deref(), Some("SCRAM-SHA-256"), "{}", a.dump());
        close(a.ok()).await;
    });
}

/// Direct TLS (XEP-0368) to ejabberd's `tls: true` listener: with `<auth/>` pipelined
/// behind the first header and bind behind the header after `<success/>`, 4 round trips
/// after the TCP connect (5 counting it), 5 without the hint; routes to a STARTTLS session.
#[test]
fn direct_tls_binds_in_four_round_trips_after_the_connect() {
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions {
        scram_hash: ScramHash::Sha256,
        ..EjabberdOptions::default()
    }) else {
        return;
    };
    let (alice, bob) = (e.user(0).clone(), e.user(1).clone());
    block_on(async {
        let direct = How {
            direct_tls: true,
            ..OFF
        };
        let a = login(&e, &alice.name, &alice.password, "plain-hint", direct).await;
        assert_eq!(a.transcript.round_trips(), 5, "{}", a.dump());
        close(a.ok()).await;

        let fast = How {
            pipeline: Some(Mechanism::ScramSha256),
            ..direct
        };
        let a = login(&e, &alice.name, &alice.password, "direct", fast).await;
        let dump = a.dump();
        assert!(!dump.contains("<starttls"), "{dump}");
        assert_eq!(a.used().as_deref(), Some("SCRAM-SHA-256"), "{dump}");
        assert_eq!(a.transcript.round_trips(), 4, "{dump}");
        let mut a = a.ok();
        assert!(a.session.outcome().secure);
        let mut b = login(&e, &bob.name, &bob.password, "b", OFF).await.ok();
        exchange(&mut a, &mut b, "over Direct TLS").await;
        exchange(&mut b, &mut a, "back over STARTTLS").await;
        close(a).await;
        close(b).await;
    });
}

/// `connect` with default options (channel binding when offered) on TLS 1.3: the -PLUS
/// attempt is refused, the login memory has never seen ejabberd bind, so one retry without
/// binding (gs2 flag `y`) logs in (exit 0) and the output says so; the next connect (keys
/// from the cache) again. `--channel-binding required` still fails (exit 3, no retry).
#[test]
fn cli_connect_by_default_logs_in_after_one_retry_without_binding() {
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions::default()) else {
        return;
    };
    let alice = e.user(0).clone();
    let config = tempfile::tempdir().unwrap();
    let note = "channel binding refused by a server that never bound before: retried once \
                without binding (gs2 flag y)";
    for round in 0..2 {
        let out = connect_send(&e, &alice.name, &alice.password, config.path(), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "round {round}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("xmpp-handshake: online as "))
            .unwrap_or_else(|| panic!("no summary line: {stderr}"));
        eprintln!("{line}");
        assert!(line.contains("TLS 1.3"), "{line}");
        assert!(line.contains("(SCRAM-SHA-256, STARTTLS"), "{line}");
        assert!(line.contains(note), "{line}");
        assert_eq!(stderr.matches(note).count(), 2, "{stderr}");
    }
    let out = connect_send(
        &e,
        &alice.name,
        &alice.password,
        config.path(),
        &["--channel-binding", "required"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains(note), "{stderr}");
}
