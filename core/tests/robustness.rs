//! Property tests on both machines with the bytes of real negotiations (recorded by
//! support/negotiation.rs): a stream split anywhere yields the same events and output; any
//! bytes after any valid prefix end in events or a typed error, never a panic.
//! (The framer's own properties are in src/xml/framer.rs; memory bounds in memory_bound.rs.)

mod support;

use proptest::prelude::*;
use support::negotiation::*;
use xmpp_handshake_core::connection::{Event, Negotiator, Step, TlsInfo};

/// Feeds `epochs` to `machine`, each epoch cut at `cuts` (sorted positions per epoch).
fn split_run<M: Negotiator>(machine: M, tls: TlsInfo, epochs: &[Vec<u8>], cuts: &[usize]) -> Run {
    let mut replay = Replay::new(machine, tls);
    for epoch in epochs {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (epoch.len() + 1)).collect();
        points.sort_unstable();
        let mut last = 0;
        for p in points.into_iter().chain([epoch.len()]) {
            replay.feed(&epoch[last..p]);
            last = p;
        }
    }
    replay.finish()
}

fn whole_run<M: Negotiator>(machine: M, tls: TlsInfo, epochs: &[Vec<u8>]) -> Run {
    split_run(machine, tls, epochs, &[])
}

#[test]
fn recorded_negotiations_replay_to_the_same_outcome() {
    for scenario in SCENARIOS {
        let t = negotiate(scenario);
        assert_eq!(t.to_receiver.len(), 2, "{scenario:?}: one TLS upgrade");
        assert_eq!(t.to_initiator.len(), 2, "{scenario:?}: one TLS upgrade");
        let i = whole_run(
            scenario.initiator(),
            scenario.tls_info(true),
            &t.to_initiator,
        );
        let r = whole_run(
            scenario.receiver(),
            scenario.tls_info(false),
            &t.to_receiver,
        );
        for (role, run, sent) in [
            ("initiator", &i, &t.to_receiver),
            ("receiver", &r, &t.to_initiator),
        ] {
            assert_eq!(run.error, None, "{scenario:?} {role}");
            assert!(run.negotiated(), "{scenario:?} {role}");
            assert_eq!(
                run.output,
                sent.concat(),
                "{scenario:?} {role} sends what it sent live"
            );
        }
        let jid = |run: &Run| {
            run.events.iter().find_map(|e| match e {
                Event::Negotiated(o) => o.jid.clone(),
                _ => None,
            })
        };
        match scenario {
            Scenario::S2sExternal => assert_eq!(jid(&r).as_deref(), Some("verona.example")),
            _ => {
                assert!(
                    jid(&i).unwrap().starts_with("juliet@example.com/"),
                    "{scenario:?}"
                );
                assert_eq!(jid(&i), jid(&r), "{scenario:?}");
            }
        }
    }
}

/// The run went through TLS and authentication before it reported success.
fn secured(run: &Run) -> bool {
    let step = |s| run.events.contains(&Event::Step(s));
    step(Step::TlsEstablished) && step(Step::Authenticated)
}

fn any_scenario() -> impl Strategy<Value = Scenario> {
    proptest::sample::select(SCENARIOS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Both directions of a real negotiation, split at any points (within each transport
    /// epoch), give each machine exactly the events and output of the unsplit stream.
    #[test]
    fn split_anywhere_yields_identical_events(
        scenario in any_scenario(),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let t = negotiate(scenario);
        let whole = whole_run(scenario.initiator(), scenario.tls_info(true), &t.to_initiator);
        let split = split_run(scenario.initiator(), scenario.tls_info(true), &t.to_initiator, &cuts);
        prop_assert!(whole.negotiated());
        prop_assert_eq!(&split, &whole);
        let whole = whole_run(scenario.receiver(), scenario.tls_info(false), &t.to_receiver);
        let split = split_run(scenario.receiver(), scenario.tls_info(false), &t.to_receiver, &cuts);
        prop_assert!(whole.negotiated());
        prop_assert_eq!(&split, &whole);
    }

    /// Arbitrary bytes after any valid prefix of a real negotiation, in reads of any size:
    /// each machine ends in events or a typed error, never a panic (the replay also panics
    /// on a full buffer without an error, or output that is not UTF-8), and no input makes
    /// it report a negotiated stream that skipped TLS or authentication.
    #[test]
    fn any_bytes_after_any_prefix_end_in_events_or_an_error(
        scenario in any_scenario(),
        k in any::<usize>(),
        tail in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(
                prop_oneof![
                    Just("<"), Just(">"), Just("/>"), Just("</"), Just("'"), Just("="),
                    Just(" "), Just("&amp;"), Just("<![CDATA["), Just("]]>"),
                    Just("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"),
                    Just("</stream:stream>"), Just("<stream:features>"), Just("</stream:features>"),
                    Just("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                    Just("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"), Just("</success>"),
                    Just("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"), Just("</challenge>"),
                    Just("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"), Just("</response>"),
                    Just("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"),
                    Just("</auth>"), Just("cj1h"), Just("dj1"), Just("="),
                    Just("<iq type='result' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>a@b/c</jid></bind></iq>"),
                    Just("<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"),
                ],
                0..40,
            ).prop_map(|parts| parts.concat().into_bytes()),
        ],
        chunk in 1usize..64,
    ) {
        let t = negotiate(scenario);
        let total: usize = t.to_initiator.iter().map(Vec::len).sum();
        let run = replay_with_tail(
            scenario.initiator(),
            scenario.tls_info(true),
            &prefix(&t.to_initiator, k % (total + 1)),
            &tail,
            chunk,
        );
        prop_assert!(!run.negotiated() || secured(&run), "{:?}", run.events);
        let total: usize = t.to_receiver.iter().map(Vec::len).sum();
        let run = replay_with_tail(
            scenario.receiver(),
            scenario.tls_info(false),
            &prefix(&t.to_receiver, k % (total + 1)),
            &tail,
            chunk,
        );
        prop_assert!(!run.negotiated() || secured(&run), "{:?}", run.events);
    }
}
