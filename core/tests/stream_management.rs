//! XEP-0198 stream management on the sans-IO connection, both roles back to back: enabling
//! after binding (§3), counting and acks (§4: only stanzas count; an `h` above what was sent
//! ends the stream), the bounded queue of unacknowledged stanzas, and resumption on a new
//! connection (§5): exactly the unacknowledged stanzas sent again, what the server queued
//! for the detached session delivered, and a refused resumption reported as which stanzas
//! are known delivered and which are not.

#![cfg(feature = "stream-management")]

mod support;

use core::time::Duration;

use support::negotiation::{CountingRng, Scenario};
use xmpp_handshake_core::connection::{
    Closed, Connection, ConnectionOptions, Event, Negotiator, SendError,
};
use xmpp_handshake_core::initiator::InitiatingEntity;
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sm::{SmConfig, SmError, SmState};
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::stream::header::Framing;
use xmpp_handshake_core::Error;

const T0: Duration = Duration::from_secs(1000);
const SCENARIO: Scenario = Scenario::ScramSha1;

fn sm(request_every: u32, max_unacked: usize) -> SmConfig {
    SmConfig {
        request_every,
        max_unacked,
        request_after: None,
        ..SmConfig::default()
    }
}

fn client(config: SmConfig, resume: Option<SmState>) -> Connection<impl Negotiator> {
    let mut c = SCENARIO.initiator().config().clone();
    c.stream_management = Some(config);
    c.resume = resume;
    Connection::new(
        InitiatingEntity::new(c, CountingRng(1)),
        Framing::Tcp,
        ConnectionOptions::default(),
        T0,
    )
}

fn server(config: SmConfig) -> Connection<impl Negotiator> {
    server_with(config, ConnectionOptions::default())
}

fn server_with(config: SmConfig, options: ConnectionOptions) -> Connection<impl Negotiator> {
    let mut c = ReceiverConfig::client_to_server(support::negotiation::DOMAIN);
    c.stream_management = Some(config);
    let mut store = xmpp_handshake_core::sasl::MemoryStore::new();
    let (user, password) = support::negotiation::USER;
    store.add_password(
        user,
        password,
        support::negotiation::ITERATIONS,
        &mut CountingRng(7),
    );
    Connection::new(
        ReceivingEntity::new(c, CountingRng(1000), store),
        Framing::Tcp,
        options,
        T0,
    )
}

fn transmits<M: Negotiator>(c: &mut Connection<M>) -> String {
    core::iter::from_fn(|| c.poll_transmit()).collect()
}

/// A client and a server connection, back to back; the server answers `<resume/>` from
/// `detached` (or refuses).
struct Pair<I, R> {
    client: Connection<I>,
    server: Connection<R>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    detached: Option<SmState>,
}

impl<I: Negotiator, R: Negotiator> Pair<I, R> {
    fn new(client: Connection<I>, server: Connection<R>, detached: Option<SmState>) -> Self {
        let mut p = Pair {
            client,
            server,
            client_events: Vec::new(),
            server_events: Vec::new(),
            detached,
        };
        p.pump();
        p
    }

    fn pump(&mut self) {
        loop {
            let to_server = transmits(&mut self.client);
            let to_client = transmits(&mut self.server);
            if !to_server.is_empty() {
                self.server.handle_input(to_server.as_bytes(), T0);
            }
            if !to_client.is_empty() {
                self.client.handle_input(to_client.as_bytes(), T0);
            }
            let mut acted = !to_server.is_empty() || !to_client.is_empty();
            while let Some(e) = self.client.poll_event() {
                if let Event::StartTls { .. } = e {
                    self.client
                        .handle_tls_established(SCENARIO.tls_info(true), T0);
                    acted = true;
                }
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                match &e {
                    Event::StartTls { .. } => {
                        let proceed = transmits(&mut self.server);
                        self.client.handle_input(proceed.as_bytes(), T0);
                        self.server
                            .handle_tls_established(SCENARIO.tls_info(false), T0);
                    }
                    Event::ResumeRequested { .. } => match self.detached.take() {
                        Some(state) => assert!(self.server.resume(state, T0).is_none()),
                        None => self.server.refuse_resume(T0),
                    },
                    _ => {}
                }
                acted = true;
                self.server_events.push(e);
            }
            if !acted {
                return;
            }
        }
    }

    /// Ends both connections as a dropped link does (no closing tags).
    fn drop_link(mut self) -> (SmState, SmState) {
        self.client.handle_eof(None);
        self.server.handle_eof(None);
        let client = self.client.take_sm_state().expect("client state");
        let server = self.server.take_sm_state().expect("server state");
        (client, server)
    }
}

fn received_bodies(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Stanza(s) => s.parse(|n| {
                n.children()
                    .find(|c| c.has_tag_name("body"))
                    .and_then(|b| b.text())
                    .map(String::from)
            })?,
            _ => None,
        })
        .collect()
}

fn message(n: u32) -> String {
    stanza::message("romeo@example.com", &format!("m{n}"), None)
}

fn enabled_pair(config: SmConfig) -> Pair<impl Negotiator, impl Negotiator> {
    let p = Pair::new(client(config, None), server(config), None);
    let id = p.client_events.iter().find_map(|e| match e {
        Event::SmEnabled { id, .. } => Some(id.clone()),
        _ => None,
    });
    assert!(
        matches!(&id, Some(Some(_))),
        "the client enabled resumable SM: {:?}",
        p.client_events
    );
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::SmEnabled { id: Some(_), .. })));
    p
}

#[test]
fn enables_after_binding_and_acks_by_number() {
    let mut p = enabled_pair(sm(2, 16));
    for n in 1..=4 {
        let number = p.client.send_stanza(&message(n), T0).unwrap();
        assert_eq!(number, Some(u64::from(n)), "stanzas are numbered from 1");
    }
    // Not a stanza: neither numbered nor counted by the server.
    assert_eq!(
        p.client
            .send_stanza("<x xmlns='urn:example'/>", T0)
            .unwrap(),
        None
    );
    p.pump();
    let acked: Vec<_> = p
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::Acked { h, numbers } => Some((*h, numbers.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(acked, [(2, 1..3), (4, 3..5)], "<r/> after every 2 stanzas");
    assert_eq!(received_bodies(&p.server_events), ["m1", "m2", "m3", "m4"]);
}

#[test]
fn answers_r_with_the_count_of_stanzas_only() {
    let mut p = enabled_pair(sm(0, 16));
    for n in 1..=3 {
        p.server.send_stanza(&message(n), T0).unwrap();
    }
    p.server
        .send_stanza("<x xmlns='urn:example'/>", T0)
        .unwrap();
    assert!(p.server.request_ack(T0));
    let to_client = transmits(&mut p.server);
    p.client.handle_input(to_client.as_bytes(), T0);
    let answer = transmits(&mut p.client);
    assert!(
        answer.contains("<a xmlns='urn:xmpp:sm:3' h='3'/>"),
        "{answer}"
    );
}

#[test]
fn h_above_what_was_sent_ends_the_stream() {
    let mut p = enabled_pair(sm(0, 16));
    p.client.send_stanza(&message(1), T0).unwrap();
    p.client.send_stanza(&message(2), T0).unwrap();
    transmits(&mut p.client);
    p.client
        .handle_input(b"<a xmlns='urn:xmpp:sm:3' h='3'/>", T0);
    let out = transmits(&mut p.client);
    assert!(
        out.contains("<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
            && out.contains("<handled-count-too-high xmlns='urn:xmpp:sm:3' h='3' send-count='2'/>")
            && out.ends_with("</stream:stream>"),
        "{out}"
    );
    let closed = core::iter::from_fn(|| p.client.poll_event()).find_map(|e| match e {
        Event::Closed(c) => Some(c),
        _ => None,
    });
    assert_eq!(
        closed,
        Some(Closed::Failed(Error::StreamManagement(
            SmError::HandledCountTooHigh { h: 3, sent: 2 }
        )))
    );
}

#[test]
fn the_unacknowledged_queue_is_bounded() {
    let mut p = enabled_pair(sm(0, 3));
    for n in 1..=3 {
        p.client.send_stanza(&message(n), T0).unwrap();
    }
    assert_eq!(
        p.client.send_stanza(&message(4), T0),
        Err(SendError::UnackedFull)
    );
    assert!(p.client.request_ack(T0));
    p.pump();
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Acked { h: 3, .. })));
    assert_eq!(p.client.send_stanza(&message(4), T0), Ok(Some(4)));
    assert_eq!(received_bodies(&p.server_events), ["m1", "m2", "m3"]);
}

#[test]
fn resumption_resends_exactly_the_unacknowledged() {
    let config = sm(2, 16);
    let mut p = enabled_pair(config);
    p.client.send_stanza(&message(1), T0).unwrap();
    p.client.send_stanza(&message(2), T0).unwrap();
    p.pump(); // m1, m2 arrive and are acknowledged.
    for n in 3..=5 {
        p.client.send_stanza(&message(n), T0).unwrap();
    }
    // The link drops inside m4: m3 arrives, the server's answer never does.
    let sent = transmits(&mut p.client);
    let cut = sent.find("m4").expect("m4 sent");
    p.server.handle_input(&sent.as_bytes()[..cut], T0);
    transmits(&mut p.server);
    p.server_events
        .extend(core::iter::from_fn(|| p.server.poll_event()));
    let first_bodies = received_bodies(&p.server_events);
    assert_eq!(first_bodies, ["m1", "m2", "m3"]);
    let (client_state, mut server_state) = p.drop_link();
    assert_eq!(
        client_state.unacked().map(|(n, _)| n).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    // The server queues a message for the detached session.
    server_state
        .queue(&stanza::message("juliet@example.com", "while away", None))
        .unwrap();

    let mut p = Pair::new(
        client(config, Some(client_state)),
        server(config),
        Some(server_state),
    );
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Negotiated(o) if o.jid.is_some())),
        "{:?}",
        p.client_events
    );
    let resumed = p.client_events.iter().find_map(|e| match e {
        Event::Resumed { h, acked, resent } => Some((*h, acked.clone(), resent.clone())),
        _ => None,
    });
    assert_eq!(resumed, Some((3, 3..4, 4..6)), "{:?}", p.client_events);
    // The client had handled none of the server's stanzas: the one queued while detached
    // goes out.
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Resumed { h: 0, resent, .. } if *resent == (1..2))));
    let mut all = first_bodies;
    all.extend(received_bodies(&p.server_events));
    assert_eq!(all, ["m1", "m2", "m3", "m4", "m5"], "each exactly once");
    assert_eq!(received_bodies(&p.client_events), ["while away"]);
    // Numbers go on; the session keeps counting.
    assert_eq!(p.client.send_stanza(&message(6), T0), Ok(Some(6)));
    p.pump();
    assert_eq!(received_bodies(&p.server_events).last().unwrap(), "m6");
}

#[test]
fn refused_resumption_reports_what_is_not_known_delivered_and_binds() {
    let config = sm(0, 16);
    let mut p = enabled_pair(config);
    for n in 1..=3 {
        p.client.send_stanza(&message(n), T0).unwrap();
    }
    p.pump();
    let (client_state, _) = p.drop_link();
    // The server lost the session (restarted): `<failed/>` without `h`.
    let p = Pair::new(client(config, Some(client_state)), server(config), None);
    let failed = p.client_events.iter().find_map(|e| match e {
        Event::ResumeFailed {
            h,
            condition,
            delivered,
            not_delivered,
        } => Some((
            *h,
            condition.clone(),
            delivered.clone(),
            not_delivered.clone(),
        )),
        _ => None,
    });
    let (h, condition, delivered, not_delivered) = failed.expect("ResumeFailed");
    assert_eq!(h, None);
    assert_eq!(condition.as_deref(), Some("item-not-found"));
    assert!(delivered.is_empty());
    assert_eq!(
        not_delivered.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(not_delivered[0].1.contains("m1"));
    // A resource was bound, and stream management enabled anew; nothing was resent.
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Negotiated(o) if o.jid.is_some())));
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::SmEnabled { id: Some(_), .. })));
    assert!(received_bodies(&p.server_events).is_empty());
}

#[test]
fn failed_with_h_reports_the_delivered_ones() {
    let config = sm(0, 16);
    let mut p = enabled_pair(config);
    for n in 1..=4 {
        p.client.send_stanza(&message(n), T0).unwrap();
    }
    p.pump();
    let (client_state, _) = p.drop_link();
    let mut client = client(config, Some(client_state));
    let mut server = server(config);
    // Negotiate up to `<resume/>`; the server's `<failed/>` is replaced by one with h='2'.
    let mut events = Vec::new();
    loop {
        let to_server = transmits(&mut client);
        let to_client = transmits(&mut server);
        let mut acted = !to_server.is_empty() || !to_client.is_empty();
        server.handle_input(to_server.as_bytes(), T0);
        client.handle_input(to_client.as_bytes(), T0);
        while let Some(e) = client.poll_event() {
            if let Event::StartTls { .. } = e {
                client.handle_tls_established(SCENARIO.tls_info(true), T0);
            }
            events.push(e);
            acted = true;
        }
        if !acted {
            break;
        }
        while let Some(e) = server.poll_event() {
            match e {
                Event::StartTls { .. } => {
                    let proceed = transmits(&mut server);
                    client.handle_input(proceed.as_bytes(), T0);
                    server.handle_tls_established(SCENARIO.tls_info(false), T0);
                }
                Event::ResumeRequested { .. } => {
                    server.refuse_resume(T0);
                    transmits(&mut server);
                    client.handle_input(
                        b"<failed xmlns='urn:xmpp:sm:3' h='2'>\
                          <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>",
                        T0,
                    );
                }
                _ => {}
            }
        }
    }
    events.extend(core::iter::from_fn(|| client.poll_event()));
    let (delivered, not_delivered) = events
        .iter()
        .find_map(|e| match e {
            Event::ResumeFailed {
                h: Some(2),
                delivered,
                not_delivered,
                ..
            } => Some((delivered.clone(), not_delivered.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("ResumeFailed with h: {events:?}"));
    assert_eq!(delivered, 1..3);
    assert_eq!(
        not_delivered.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(client.is_bound());
    // The new session's numbers do not reuse the old ones.
    assert_eq!(client.send_stanza(&message(5), T0), Ok(Some(5)));
}

/// XEP-0198 §4 with an idle peer (RFC 6120 §4.6.1): the liveness probe is `<r/>`, which is
/// not counted; a ping iq would be counted by the peer and not by us, and its next `h`
/// would then be "too high".
#[test]
fn an_idle_peer_is_asked_for_an_ack_not_pinged() {
    use xmpp_handshake_core::connection::Timeouts;
    let idle = Duration::from_secs(10);
    let options = ConnectionOptions {
        timeouts: Timeouts {
            idle: Some(idle),
            ping_when_idle: true,
            ..Timeouts::default()
        },
        ..ConnectionOptions::default()
    };
    let config = sm(0, 16);
    let mut p = Pair::new(client(config, None), server_with(config, options), None);
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::SmEnabled { id: Some(_), .. })));
    p.server.send_stanza(&message(1), T0).unwrap();
    p.pump();
    p.server.handle_timeout(T0 + idle);
    let probe = transmits(&mut p.server);
    assert_eq!(probe, "<r xmlns='urn:xmpp:sm:3'/>", "no ping iq with SM on");
    p.client.handle_input(probe.as_bytes(), T0 + idle);
    let answer = transmits(&mut p.client);
    assert!(answer.contains("h='1'"), "{answer}");
    p.server
        .handle_input(answer.as_bytes(), T0 + idle + Duration::from_secs(1));
    p.server.handle_timeout(T0 + 2 * idle);
    assert!(!p.server.is_closed(), "the answer showed the peer alive");
    let events: Vec<Event> = core::iter::from_fn(|| p.server.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Acked { h: 1, numbers } if *numbers == (1..2))),
        "{events:?}"
    );
}
