//! The sans-IO connection of both roles, from the first byte to the closing tag: the
//! negotiation handed over to the bound stream without losing a byte, stanzas both ways,
//! the closing handshake (RFC 6120 §4.4), stream errors (§4.9), and the timers that live in
//! core: the negotiation deadline, the idle ping and `<connection-timeout/>` (§4.6.1,
//! §4.9.3.4, XEP-0199), the whitespace keep-alive, and the bounded send queue.

mod support;

use core::time::Duration;

use support::negotiation::{Scenario, SCENARIOS};
use xmpp_handshake_core::connection::{
    Closed, Connection, ConnectionOptions, Event, Negotiator, SendError, Timeouts,
};
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::stream::error::StreamErrorCondition;
use xmpp_handshake_core::stream::header::Framing;
use xmpp_handshake_core::Error;

const T0: Duration = Duration::from_secs(1000);

fn connection<M: Negotiator>(machine: M, timeouts: Timeouts) -> Connection<M> {
    let options = ConnectionOptions {
        timeouts,
        ..ConnectionOptions::default()
    };
    Connection::new(machine, Framing::Tcp, options, T0)
}

/// Everything `c` has to send, one string per unit.
fn transmits<M: Negotiator>(c: &mut Connection<M>) -> Vec<String> {
    core::iter::from_fn(|| c.poll_transmit()).collect()
}

fn events<M: Negotiator>(c: &mut Connection<M>) -> Vec<Event> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

/// Both roles of `scenario`, connected back to back, every unit delivered as TCP bytes.
struct Pair<I, R> {
    scenario: Scenario,
    client: Connection<I>,
    server: Connection<R>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

impl<I: Negotiator, R: Negotiator> Pair<I, R> {
    /// Moves bytes and acts on TLS requests until neither side has anything to say.
    fn pump(&mut self, now: Duration) {
        loop {
            let to_server: String = transmits(&mut self.client).concat();
            let to_client: String = transmits(&mut self.server).concat();
            if !to_server.is_empty() {
                self.server.handle_input(to_server.as_bytes(), now);
            }
            if !to_client.is_empty() {
                self.client.handle_input(to_client.as_bytes(), now);
            }
            let mut acted = !to_server.is_empty() || !to_client.is_empty();
            for e in events(&mut self.client) {
                if let Event::StartTls { .. } = e {
                    self.client
                        .handle_tls_established(self.scenario.tls_info(true), now);
                    acted = true;
                }
                self.client_events.push(e);
            }
            for e in events(&mut self.server) {
                if let Event::StartTls { .. } = e {
                    // The server's <proceed/> must reach the client before TLS starts.
                    let proceed: String = transmits(&mut self.server).concat();
                    self.client.handle_input(proceed.as_bytes(), now);
                    self.server
                        .handle_tls_established(self.scenario.tls_info(false), now);
                    acted = true;
                }
                self.server_events.push(e);
            }
            if !acted {
                return;
            }
        }
    }
}

fn pair(scenario: Scenario, timeouts: Timeouts) -> Pair<impl Negotiator, impl Negotiator> {
    let mut p = Pair {
        scenario,
        client: connection(scenario.initiator(), timeouts),
        server: connection(scenario.receiver(), timeouts),
        client_events: Vec::new(),
        server_events: Vec::new(),
    };
    p.pump(T0);
    p
}

fn negotiated(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::Negotiated(_)))
}

fn stanzas(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Stanza(s) => Some(s.raw().to_string()),
            _ => None,
        })
        .collect()
}

fn closed(events: &[Event]) -> Option<&Closed> {
    events.iter().find_map(|e| match e {
        Event::Closed(c) => Some(c),
        _ => None,
    })
}

#[test]
fn every_scenario_negotiates_then_carries_stanzas_and_closes_cleanly() {
    for scenario in SCENARIOS {
        let mut p = pair(scenario, Timeouts::default());
        assert!(
            negotiated(&p.client_events),
            "{scenario:?}: {:?}",
            p.client_events
        );
        assert!(
            negotiated(&p.server_events),
            "{scenario:?}: {:?}",
            p.server_events
        );
        assert!(p.client.is_bound() && p.server.is_bound());

        let hello = stanza::message("romeo@example.net", "hello", Some("m1"));
        p.client.send_stanza(&hello, T0).unwrap();
        let back = stanza::message("juliet@example.com", "back", Some("m2"));
        p.server.send_stanza(&back, T0).unwrap();
        p.pump(T0);
        assert_eq!(stanzas(&p.server_events), [hello], "{scenario:?}");
        assert_eq!(stanzas(&p.client_events), [back], "{scenario:?}");

        // §4.4: our closing tag, the peer's answer, both sides report how it ended.
        p.client.close(T0);
        assert!(matches!(
            p.client.send_stanza("<presence/>", T0),
            Err(SendError::Closed)
        ));
        p.pump(T0);
        assert_eq!(
            closed(&p.client_events),
            Some(&Closed::ByUs),
            "{scenario:?}"
        );
        assert_eq!(
            closed(&p.server_events),
            Some(&Closed::ByPeer),
            "{scenario:?}"
        );
        assert!(p.client.is_closed() && p.server.is_closed());
        assert_eq!(p.client.poll_timeout(), None);
    }
}

#[test]
fn each_transmit_is_one_unit() {
    let mut p = pair(Scenario::ScramPlus, Timeouts::default());
    p.client.send_stanza("<presence/>", T0).unwrap();
    p.client
        .send_stanza(&stanza::message("a@b", "x", None), T0)
        .unwrap();
    let units = transmits(&mut p.client);
    assert_eq!(
        units,
        ["<presence/>".to_string(), stanza::message("a@b", "x", None)]
    );
    p.client.close(T0);
    assert_eq!(transmits(&mut p.client), ["</stream:stream>"]);
}

#[test]
fn stanzas_pipelined_behind_the_bind_result_are_delivered() {
    let scenario = Scenario::ScramSha1;
    let mut client = connection(scenario.initiator(), Timeouts::default());
    let mut server = connection(scenario.receiver(), Timeouts::default());
    let early = stanza::message("juliet@example.com", "early", None);
    let mut client_events = Vec::new();
    for _ in 0..50 {
        let up: String = transmits(&mut client).concat();
        server.handle_input(up.as_bytes(), T0);
        let mut server_negotiated = false;
        for e in events(&mut server) {
            match e {
                Event::StartTls { .. } => {
                    let proceed: String = transmits(&mut server).concat();
                    client.handle_input(proceed.as_bytes(), T0);
                    server.handle_tls_established(scenario.tls_info(false), T0);
                }
                Event::Negotiated(_) => server_negotiated = true,
                _ => {}
            }
        }
        if server_negotiated {
            server.send_stanza(&early, T0).unwrap();
        }
        // The bind result and the stanza behind it reach the client in one read.
        let down: String = transmits(&mut server).concat();
        client.handle_input(down.as_bytes(), T0);
        for e in events(&mut client) {
            if let Event::StartTls { .. } = e {
                client.handle_tls_established(scenario.tls_info(true), T0);
            }
            client_events.push(e);
        }
        if negotiated(&client_events) {
            break;
        }
    }
    let after: Vec<_> = client_events
        .iter()
        .skip_while(|e| !matches!(e, Event::Negotiated(_)))
        .collect();
    assert!(
        matches!(after.get(1), Some(Event::Stanza(s)) if s.raw() == early),
        "{client_events:?}"
    );
}

#[test]
fn stanzas_wait_for_the_bound_stream() {
    let mut client = connection(Scenario::ScramPlus.initiator(), Timeouts::default());
    assert_eq!(
        client.send_stanza("<presence/>", T0),
        Err(SendError::NotBound)
    );
}

#[test]
fn the_send_queue_is_bounded() {
    let scenario = Scenario::Plain;
    let mut p = Pair {
        scenario,
        client: Connection::new(
            scenario.initiator(),
            Framing::Tcp,
            ConnectionOptions {
                max_queued_bytes: 64,
                ..ConnectionOptions::default()
            },
            T0,
        ),
        server: connection(scenario.receiver(), Timeouts::default()),
        client_events: Vec::new(),
        server_events: Vec::new(),
    };
    p.pump(T0);
    assert!(p.client.is_bound());
    let small = "<presence/>";
    let big = stanza::message("romeo@example.net", &"x".repeat(64), None);
    assert_eq!(p.client.send_stanza(&big, T0), Err(SendError::QueueFull));
    for _ in 0..5 {
        p.client.send_stanza(small, T0).unwrap();
    }
    assert_eq!(p.client.send_stanza(small, T0), Err(SendError::QueueFull));
    // Nothing refused was queued; what was taken frees room again.
    assert_eq!(transmits(&mut p.client).len(), 5);
    p.client.send_stanza(small, T0).unwrap();
}

#[test]
fn negotiation_deadline_ends_the_stream_with_connection_timeout() {
    let timeouts = Timeouts {
        negotiation: Some(Duration::from_secs(5)),
        ..Timeouts::default()
    };
    let mut client = connection(Scenario::ScramPlus.initiator(), timeouts);
    transmits(&mut client);
    assert_eq!(client.poll_timeout(), Some(T0 + Duration::from_secs(5)));
    client.handle_timeout(T0 + Duration::from_secs(4));
    assert!(!client.is_closed());
    client.handle_timeout(T0 + Duration::from_secs(5));
    let out = transmits(&mut client).concat();
    assert!(out.contains("<connection-timeout"), "{out}");
    assert!(out.ends_with("</stream:stream>"), "{out}");
    assert_eq!(
        closed(&events(&mut client)),
        Some(&Closed::Failed(Error::Timeout))
    );
}

#[test]
fn a_silent_peer_is_pinged_then_timed_out() {
    let idle = Duration::from_secs(10);
    let timeouts = Timeouts {
        negotiation: None,
        idle: Some(idle),
        ping_when_idle: true,
        ..Timeouts::default()
    };
    let mut p = pair(Scenario::ScramPlus, timeouts);
    assert!(p.server.is_bound());
    assert_eq!(p.server.poll_timeout(), Some(T0 + idle));
    p.server.handle_timeout(T0 + idle);
    let ping = transmits(&mut p.server).concat();
    assert!(
        ping.contains("urn:xmpp:ping") && ping.contains("type='get'"),
        "{ping}"
    );
    assert!(
        ping.contains("to='juliet@example.com/"),
        "a server pings the bound JID: {ping}"
    );

    // A whitespace keep-alive is a sign of life (§4.6.1): no timeout yet; so is the next
    // one (the framer reports a run of spaces once).
    p.server
        .handle_input(b" ", T0 + idle + Duration::from_secs(5));
    p.server.handle_timeout(T0 + 2 * idle);
    assert!(p.server.is_bound());
    p.server
        .handle_input(b" ", T0 + 2 * idle + Duration::from_secs(5));
    p.server.handle_timeout(T0 + 3 * idle);
    assert!(p.server.is_bound());
    assert!(
        transmits(&mut p.server).concat().is_empty(),
        "neither ping nor timeout"
    );

    // A stanza dribbled without end is not.
    p.server.handle_input(b"<message><bo", T0 + 3 * idle);
    let silent_since = T0 + 2 * idle + Duration::from_secs(5);
    p.server.handle_timeout(silent_since + idle);
    assert!(transmits(&mut p.server).concat().contains("urn:xmpp:ping"));
    p.server.handle_timeout(silent_since + 2 * idle);
    let out = transmits(&mut p.server).concat();
    assert!(out.contains("<connection-timeout"), "{out}");
    assert_eq!(
        closed(&events(&mut p.server)),
        Some(&Closed::Failed(Error::Timeout))
    );
}

#[test]
fn whitespace_keepalive_after_our_silence_over_tcp_only() {
    let keepalive = Duration::from_secs(30);
    let timeouts = Timeouts {
        negotiation: None,
        keepalive: Some(keepalive),
        ..Timeouts::default()
    };
    let mut p = pair(Scenario::ScramPlus, timeouts);
    assert_eq!(p.client.poll_timeout(), Some(T0 + keepalive));
    p.client.handle_timeout(T0 + keepalive);
    assert_eq!(transmits(&mut p.client), [" "]);
    // A stanza sent counts as traffic: the next keep-alive is due after it.
    p.client
        .send_stanza("<presence/>", T0 + keepalive + Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        p.client.poll_timeout(),
        Some(T0 + 2 * keepalive + Duration::from_secs(10))
    );
}

#[test]
fn a_stream_error_from_the_peer_ends_the_bound_stream() {
    let mut p = pair(Scenario::ScramPlus, Timeouts::default());
    p.server
        .stream_error(xmpp_handshake_core::stream::error::StreamError::new(
            StreamErrorCondition::Conflict,
        ));
    p.pump(T0);
    match closed(&p.client_events) {
        Some(Closed::Failed(Error::StreamErrorReceived(e))) => {
            assert_eq!(e.condition, StreamErrorCondition::Conflict)
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        closed(&p.server_events),
        Some(Closed::Failed(Error::StreamErrorSent(_)))
    ));
}

#[test]
fn a_broken_element_on_the_bound_stream_is_a_stream_error() {
    let mut p = pair(Scenario::ScramPlus, Timeouts::default());
    p.server.handle_input(b"<message><a></b></message>", T0);
    let out = transmits(&mut p.server).concat();
    assert!(
        out.contains("not-well-formed") || out.contains("invalid-xml"),
        "{out}"
    );
    assert!(p.server.is_closed());
}

#[test]
fn plaintext_behind_proceed_never_starts_tls() {
    let mut client = connection(Scenario::ScramPlus.initiator(), Timeouts::default());
    transmits(&mut client);
    client.handle_input(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='s1' \
          version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>\
          <required/></starttls></stream:features>\
          <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='result' id='x'/>",
        T0,
    );
    let events = events(&mut client);
    assert!(
        !events.iter().any(|e| matches!(e, Event::StartTls { .. })),
        "{events:?}"
    );
    assert_eq!(
        closed(&events),
        Some(&Closed::Failed(Error::PlaintextAfterProceed))
    );
}

#[test]
fn the_transport_ending_without_a_closing_tag_is_reported() {
    let mut p = pair(Scenario::ScramPlus, Timeouts::default());
    p.client.handle_eof(None);
    assert_eq!(
        closed(&events(&mut p.client)),
        Some(&Closed::Failed(Error::ConnectionClosed))
    );
    // After our closing tag the peer may just hang up (§4.4).
    p.server.close(T0);
    p.server.handle_eof(None);
    assert_eq!(closed(&events(&mut p.server)), Some(&Closed::ByUs));
}
