//! Our initiating entity (the CLI's client code) against a real Prosody on loopback:
//! STARTTLS (required and optional), SCRAM, binding, a message each way, clean close; a
//! wrong password fails with the typed error; TLS 1.2 and S2S recorded.
//!
//! Prosody 0.12 on TLS 1.3 offers SCRAM-SHA-1 and PLAIN only (no -PLUS, no SHA-256).

mod interop_support;

use interop_support::{block_on, close, exchange, login, How, LIMIT};
use xmpp_handshake_core::initiator::InitiatorConfig;
use xmpp_handshake_core::sasl::{CbPolicy, Mechanism, SaslError, SaslFailure};
use xmpp_handshake_core::starttls::TlsPolicy;
use xmpp_handshake_core::Error;
use xmpp_handshake_host::client::{self, ClientTrust};
use xmpp_handshake_host::tls_info::TlsCell;
use xmpp_handshake_host::transcript::{Side, Transcript};
use xmpp_handshake_tests::{Prosody, ProsodyOptions, TlsPolicy as ServerTls};

#[test]
fn scram_login_bind_and_message_each_way() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let (alice, bob) = (p.user(0).clone(), p.user(1).clone());
    block_on(async {
        let a = login(&p, &alice.name, &alice.password, "laptop", How::default()).await;
        let offered = a.offered();
        assert!(offered.contains(&"SCRAM-SHA-1".to_string()), "{offered:?}");
        // Every SCRAM variant Prosody offers here, each with our default policy.
        let scram: Vec<&String> = offered.iter().filter(|m| m.starts_with("SCRAM-")).collect();
        assert_eq!(a.used().as_deref(), Some("SCRAM-SHA-1"), "{}", a.dump());
        eprintln!("prosody offered {offered:?}; we used {:?}", a.used());
        let tls = a.transcript.tls().cloned().expect("TLS recorded");
        assert_eq!(tls.version, "TLS 1.3");
        let round_trips = a.transcript.round_trips();
        let mut a = a.ok();
        eprintln!(
            "prosody: bound {} with SCRAM-SHA-1 over {} {} in {round_trips} round trips, {:.1} ms",
            a.jid,
            tls.version,
            tls.cipher_suite,
            a.elapsed.as_secs_f64() * 1000.0
        );
        // 8 classic; 7 with <starttls/> pipelined; 6 with the bind request sent with the
        // header after <success/> (FACTS.md, "Pipelining against stock servers").
        assert_eq!(round_trips, 6, "round trips to a bound resource");
        assert!(
            a.jid.starts_with(&format!("alice@{}/", p.domain)),
            "{}",
            a.jid
        );
        let mut b = login(&p, &bob.name, &bob.password, "phone", How::default())
            .await
            .ok();
        exchange(&mut a, &mut b, "from alice <&> to bob").await;
        exchange(&mut b, &mut a, "and back").await;
        // A message to ourselves comes back too.
        let me = a.jid.clone();
        a.session
            .send(&xmpp_handshake_core::stanza::message(&me, "self", None))
            .await
            .unwrap();
        loop {
            let e = a.session.next_stanza().await.unwrap().unwrap().to_string();
            if e.contains("<body>self</body>") {
                break;
            }
        }
        close(a).await;
        close(b).await;
        assert!(scram.len() <= 2, "{scram:?}");
    });
}

#[test]
fn starttls_optional_server_with_required_and_optional_client() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        tls: ServerTls::Optional,
        ..Default::default()
    }) else {
        return;
    };
    let alice = p.user(0).clone();
    block_on(async {
        for tls in [TlsPolicy::Required, TlsPolicy::Optional] {
            let a = login(
                &p,
                &alice.name,
                &alice.password,
                "r",
                How {
                    tls,
                    ..How::default()
                },
            )
            .await;
            assert!(a.transcript.tls().is_some(), "STARTTLS used with {tls:?}");
            let l = a.ok();
            assert!(l.session.outcome().secure);
            close(l).await;
        }
    });
}

#[test]
fn starttls_required_server() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let alice = p.user(0).clone();
    block_on(async {
        let a = login(&p, &alice.name, &alice.password, "req", How::default()).await;
        assert!(
            a.transcript.lines().iter().any(
                |l| l.starts_with("R: <stream:features><starttls") && l.contains("<required/>")
            ),
            "{}",
            a.dump()
        );
        close(a.ok()).await;
    });
}

#[test]
fn wrong_password_fails_with_not_authorized() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let alice = p.user(0).clone();
    block_on(async {
        let a = login(&p, &alice.name, "not-her-password", "x", How::default()).await;
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
        // The CLI maps it to exit code 3.
        let e = Error::AuthenticationFailed {
            error: SaslError::Failure(SaslFailure::NotAuthorized),
            text: None,
        };
        assert_eq!(xmpp_handshake_host::exit::code_for(&e).code(), 3);
    });
}

/// Prosody on TLS 1.2 adds SCRAM-SHA-1-PLUS with `tls-unique` only, which rustls does not
/// expose. Recorded: what it offers and what our client does with it.
#[test]
fn tls12_plus_offer_is_recorded() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let alice = p.user(0).clone();
    block_on(async {
        for cb in [CbPolicy::WhenOffered, CbPolicy::Off] {
            let a = login(
                &p,
                &alice.name,
                &alice.password,
                "t12",
                How {
                    cb,
                    tls12: true,
                    ..How::default()
                },
            )
            .await;
            let tls = a.transcript.tls().cloned().expect("TLS");
            assert_eq!(tls.version, "TLS 1.2");
            eprintln!(
                "prosody TLS 1.2, {cb:?}: offered {:?}, used {:?}, result {:?}",
                a.offered(),
                a.used(),
                a.result.as_ref().map(|l| l.jid.clone())
            );
            match a.result {
                Ok(l) => close(l).await,
                // Only a typed SASL outcome is acceptable, never a protocol breakdown.
                Err(Error::AuthenticationFailed { .. }) | Err(Error::Sasl(_)) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
    });
}

async fn s2s_attempt(
    p: &Prosody,
) -> (
    Result<xmpp_handshake_host::client::ClientSession, Error>,
    Transcript,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca_der().to_vec().into()).unwrap();
    let trust = ClientTrust::anchors_s2s(&p.domain, roots).unwrap();
    let config = InitiatorConfig::server(&p.domain, "example.org");
    let transport = client::connect_tcp("127.0.0.1", p.ports.s2s).await.unwrap();
    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    let result = tokio::time::timeout(
        LIMIT,
        client::negotiate_with(transport, config, &trust, cell, &mut transcript),
    )
    .await
    .expect("in time");
    eprintln!("--- s2s transcript ---\n{}", transcript.lines().join("\n"));
    (result, transcript)
}

/// S2S: our initiating entity on `jabber:server` opens a STARTTLS stream to Prosody's s2s
/// port and stops at the features of the protected stream (no SASL configured).
///
/// With the harness's module list (no `dialback`) and no client certificate from us (so no
/// SASL EXTERNAL), Prosody completes STARTTLS and the restart, then has nothing to offer:
/// `<undefined-condition/>` "No stream features to offer". Recorded here.
#[test]
fn s2s_without_dialback_prosody_has_no_features_after_tls() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    block_on(async {
        let (result, transcript) = s2s_attempt(&p).await;
        assert!(transcript.tls().is_some(), "STARTTLS completed");
        match result {
            Err(Error::StreamErrorReceived(e)) => {
                assert_eq!(e.condition.to_string(), "undefined-condition");
            }
            Err(e) => panic!("{e:?}"),
            Ok(s) => panic!("unexpected features {:?}", s.outcome().features),
        }
    });
}

/// The same with Prosody's `dialback` module loaded: after STARTTLS and the restart it
/// offers dialback (XEP-0220), which this project does not implement; we stop there with a
/// TLS-protected, verified stream.
#[test]
fn s2s_with_dialback_prosody_offers_dialback_after_tls() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        extra_global_config: "modules_enabled = { \"disco\"; \"roster\"; \"saslauth\"; \"tls\"; \"ping\"; \"websocket\"; \"dialback\" }".into(),
        ..Default::default()
    }) else {
        return;
    };
    block_on(async {
        let (result, transcript) = s2s_attempt(&p).await;
        let dump = transcript.lines().join("\n");
        let session = result.unwrap_or_else(|e| panic!("{e:?}\n{dump}"));
        assert!(session.outcome().secure, "{dump}");
        let f = &session.outcome().features;
        let dialback = f.other.iter().any(|o| o.contains("dialback"));
        let external = f
            .mechanisms
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m == "EXTERNAL"));
        eprintln!("s2s features after TLS: dialback={dialback} external={external} {f:?}");
        assert!(dialback, "{f:?}\n{dump}");
        assert!(!external, "no client certificate was presented");
    });
}

/// Pipelined `<auth/>` (with the post-TLS header) and bind (with the header after
/// `<success/>`): 5 round trips after the TCP connect (FACTS.md); a hint Prosody does not
/// offer (SCRAM-SHA-512) is refused by it and SASL starts again from the real offer.
#[test]
fn pipelined_login_binds_in_five_round_trips_and_recovers_from_a_wrong_hint() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let (alice, bob) = (p.user(0).clone(), p.user(1).clone());
    block_on(async {
        let how = How {
            pipeline: Some(Mechanism::ScramSha1),
            ..How::default()
        };
        let a = login(&p, &alice.name, &alice.password, "fast", how).await;
        assert_eq!(a.used().as_deref(), Some("SCRAM-SHA-1"), "{}", a.dump());
        assert_eq!(a.transcript.round_trips(), 5, "{}", a.dump());
        let mut a = a.ok();
        let mut b = login(&p, &bob.name, &bob.password, "b", How::default())
            .await
            .ok();
        exchange(&mut a, &mut b, "pipelined").await;
        close(a).await;
        close(b).await;

        let wrong = How {
            pipeline: Some(Mechanism::ScramSha512),
            ..How::default()
        };
        let a = login(&p, &alice.name, &alice.password, "retry", wrong).await;
        assert_eq!(a.used().as_deref(), Some("SCRAM-SHA-1"), "{}", a.dump());
        close(a.ok()).await;
    });
}

/// Direct TLS (XEP-0368) to Prosody's `c2s_direct_tls_ports`: TLS from the first byte, no
/// `<starttls/>`; with `<auth/>` pipelined behind the first header and bind behind the
/// header after `<success/>`, 4 round trips after the TCP connect (5 counting it), 5
/// without the hint; the session routes to and from a STARTTLS one.
#[test]
fn direct_tls_binds_in_four_round_trips_after_the_connect() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let (alice, bob) = (p.user(0).clone(), p.user(1).clone());
    block_on(async {
        let direct = How {
            direct_tls: true,
            ..How::default()
        };
        let a = login(&p, &alice.name, &alice.password, "plain-hint", direct).await;
        assert_eq!(a.transcript.round_trips(), 5, "{}", a.dump());
        close(a.ok()).await;

        let fast = How {
            pipeline: Some(Mechanism::ScramSha1),
            ..direct
        };
        let a = login(&p, &alice.name, &alice.password, "direct", fast).await;
        let dump = a.dump();
        assert!(!dump.contains("<starttls"), "{dump}");
        assert_eq!(a.used().as_deref(), Some("SCRAM-SHA-1"), "{dump}");
        assert_eq!(
            a.transcript.tls().map(|t| t.version.as_str()),
            Some("TLS 1.3")
        );
        assert_eq!(a.transcript.round_trips(), 4, "{dump}");
        let mut a = a.ok();
        assert!(a.session.outcome().secure);
        eprintln!(
            "prosody Direct TLS: bound {} in 4 round trips after the connect, {:.1} ms",
            a.jid,
            a.elapsed.as_secs_f64() * 1000.0
        );
        let mut b = login(&p, &bob.name, &bob.password, "b", How::default())
            .await
            .ok();
        exchange(&mut a, &mut b, "over Direct TLS").await;
        exchange(&mut b, &mut a, "back over STARTTLS").await;
        close(a).await;
        close(b).await;
    });
}
