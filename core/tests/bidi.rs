//! Bidirectional server-to-server streams (XEP-0288) in both S2S machines, sans-IO: the
//! offer, the request and what each side records; the refusals; and, on the negotiated
//! stream, stanzas from the receiving server to the initiating one, checked there as the
//! receiving server checks the other direction (RFC 6120 §4.9.3.9).

mod support;

use core::time::Duration;

use support::*;
use xmpp_handshake_core::connection::{
    Connection, ConnectionOptions, Event, InitiatingConnection, Outcome, ReceivingConnection,
    TlsInfo,
};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sasl::{Credentials, MemoryStore};
use xmpp_handshake_core::stanza::check_server_addresses;
use xmpp_handshake_core::stream::error::StreamErrorCondition as C;
use xmpp_handshake_core::{bidi, Error};

const INITIATING: &str = "verona.example";
const RECEIVING: &str = "padua.example";
const T0: Duration = Duration::from_secs(100);

/// Padua's S2S receiver on a Direct TLS transport where the peer's certificate verified
/// for verona: EXTERNAL offered; bidirectional streams as `bidi` says.
fn receiver_config(bidi: bool) -> ReceiverConfig {
    let mut config = ReceiverConfig::server_to_server(RECEIVING);
    config.secure_transport = true;
    config.bidi = bidi;
    config
}

fn verona_certificate() -> TlsInfo {
    TlsInfo {
        peer_identities: vec![INITIATING.to_string()],
        ..TlsInfo::default()
    }
}

/// Verona to padua over Direct TLS, SASL EXTERNAL; asks for bidi as `bidi` says.
fn initiator_config(bidi: bool) -> InitiatorConfig {
    let mut config = InitiatorConfig::server(RECEIVING, INITIATING);
    config.secure_transport = true;
    let mut sasl = ClientSasl::password("", "", None);
    sasl.credentials = Credentials::external(None);
    sasl.pipeline_bind = false;
    config.sasl = Some(sasl);
    config.bidi = bidi;
    config
}

/// Both connections back to back until neither has anything to say; returns what went
/// over the wire and both sides' events.
fn pump(
    i: &mut InitiatingConnection<CountingRng>,
    r: &mut ReceivingConnection<CountingRng, MemoryStore>,
) -> (String, Vec<Event>, Vec<Event>) {
    let (mut wire, mut i_events, mut r_events) = (String::new(), Vec::new(), Vec::new());
    loop {
        let to_r: String = core::iter::from_fn(|| i.poll_transmit()).collect();
        let to_i: String = core::iter::from_fn(|| r.poll_transmit()).collect();
        if to_r.is_empty() && to_i.is_empty() {
            break;
        }
        wire.push_str(&to_r);
        wire.push_str(&to_i);
        r.handle_input(to_r.as_bytes(), T0);
        i.handle_input(to_i.as_bytes(), T0);
        i_events.extend(core::iter::from_fn(|| i.poll_event()));
        r_events.extend(core::iter::from_fn(|| r.poll_event()));
    }
    (wire, i_events, r_events)
}

fn outcome(events: &[Event]) -> &Outcome {
    events
        .iter()
        .find_map(|e| match e {
            Event::Negotiated(o) => Some(o),
            _ => None,
        })
        .expect("negotiated")
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

/// Verona and padua negotiate with these switches.
fn negotiate(
    initiator_bidi: bool,
    receiver_bidi: bool,
) -> (
    InitiatingConnection<CountingRng>,
    ReceivingConnection<CountingRng, MemoryStore>,
    String,
    (Outcome, Outcome),
) {
    let options = ConnectionOptions::default;
    let mut i = Connection::initiate_with_tls(
        initiator_config(initiator_bidi),
        CountingRng(3),
        TlsInfo::default(),
        options(),
        T0,
    );
    let mut r = Connection::accept_with_tls(
        receiver_config(receiver_bidi),
        CountingRng(7),
        MemoryStore::new(),
        verona_certificate(),
        options(),
        T0,
    );
    let (wire, i_events, r_events) = pump(&mut i, &mut r);
    let outcomes = (outcome(&i_events).clone(), outcome(&r_events).clone());
    (i, r, wire, outcomes)
}

#[test]
fn bidi_is_offered_requested_before_auth_and_recorded_by_both() {
    let (_, _, wire, (ours, theirs)) = negotiate(true, true);
    assert!(ours.bidi && theirs.bidi, "{ours:?} {theirs:?}");
    assert_eq!(ours.mechanism.map(|m| m.name()), Some("EXTERNAL"));
    assert_eq!(theirs.jid.as_deref(), Some(INITIATING));
    // Offered beside SASL on the unauthenticated stream; asked for before `<auth/>`, once.
    let feature = wire.find(bidi::FEATURE).expect("offered");
    let request = wire.find(bidi::REQUEST).expect("requested");
    let auth = wire.find("<auth ").expect("EXTERNAL");
    assert!(feature < request && request < auth, "{wire}");
    assert_eq!(wire.matches(bidi::FEATURE).count(), 1, "not after auth");
    assert_eq!(wire.matches(bidi::REQUEST).count(), 1);
}

#[test]
fn no_request_when_the_initiator_does_not_want_it() {
    let (_, _, wire, (ours, theirs)) = negotiate(false, true);
    assert!(wire.contains(bidi::FEATURE));
    assert!(!wire.contains(bidi::REQUEST));
    assert!(!ours.bidi && !theirs.bidi);
}

#[test]
fn no_request_where_it_is_not_offered() {
    let (_, _, wire, (ours, theirs)) = negotiate(true, false);
    assert!(!wire.contains("urn:xmpp:features:bidi"));
    assert!(!wire.contains(bidi::REQUEST));
    assert!(!ours.bidi && !theirs.bidi);
}

/// XEP-0288 §2: after authentication the receiving server sends stanzas from its domain on
/// the initiator's stream; the initiator checks them as the receiver checks its stanzas:
/// `from` in the domain it connected to, `to` in its own.
#[test]
fn receiving_server_sends_on_a_bidi_stream_and_the_initiator_checks_the_mirror_direction() {
    let (mut i, mut r, _, _) = negotiate(true, true);
    let to_padua = "<message from='romeo@verona.example/a' to='juliet@padua.example'><body>hi</body></message>";
    let back = "<message from='juliet@padua.example/b' to='romeo@verona.example'><body>hello</body></message>";
    let forged = "<message from='tybalt@capulet.example' to='romeo@verona.example'/>";
    let reflected = "<message from='mercutio@verona.example' to='romeo@verona.example'/>";
    i.send_stanza(to_padua, T0).unwrap();
    for s in [back, forged, reflected] {
        r.send_stanza(s, T0).unwrap();
    }
    let (_, i_events, r_events) = pump(&mut i, &mut r);
    let at_padua = stanzas(&r_events);
    let at_verona = stanzas(&i_events);
    assert_eq!(at_padua, [to_padua]);
    assert_eq!(at_verona, [back, forged, reflected]);
    // Padua's check of verona's stanza, and verona's of padua's: the same rule, mirrored.
    assert_eq!(
        check_server_addresses(&at_padua[0], INITIATING, RECEIVING).unwrap(),
        "romeo@verona.example/a"
    );
    assert_eq!(
        check_server_addresses(&at_verona[0], RECEIVING, INITIATING).unwrap(),
        "juliet@padua.example/b"
    );
    // A domain not authenticated on this stream, even the initiator's own, is invalid-from.
    for s in &at_verona[1..] {
        let e = check_server_addresses(s, RECEIVING, INITIATING).unwrap_err();
        assert_eq!(e.condition, C::InvalidFrom, "{s}");
    }
    // Padua's stanza read as if it had come the unidirectional way is refused too.
    let e = check_server_addresses(&at_verona[0], INITIATING, RECEIVING).unwrap_err();
    assert_eq!(e.condition, C::InvalidFrom);
}

#[test]
fn server_addresses_need_both_and_to_in_our_domain() {
    let elsewhere = "<message from='juliet@padua.example/x' to='romeo@capulet.example'/>";
    let e = check_server_addresses(elsewhere, RECEIVING, INITIATING).unwrap_err();
    assert_eq!(e.condition, C::HostUnknown);
    let e = check_server_addresses(
        "<message to='romeo@verona.example'/>",
        RECEIVING,
        INITIATING,
    )
    .unwrap_err();
    assert_eq!(e.condition, C::ImproperAddressing);
    let e = check_server_addresses("<message from='x' to='y'", RECEIVING, INITIATING).unwrap_err();
    assert_eq!(e.condition, C::ImproperAddressing);
}

/// Padua (the bare machine) up to the features of the protected stream; returns them.
fn receiver_at_features(bidi: bool) -> (ReceivingEntity<CountingRng, MemoryStore>, String) {
    let mut r = ReceivingEntity::with_tls(
        receiver_config(bidi),
        CountingRng(7),
        MemoryStore::new(),
        verona_certificate(),
    );
    let header = format!(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         to='{RECEIVING}' from='{INITIATING}' version='1.0'>"
    );
    feed(&mut r, header.as_bytes(), 4096).unwrap();
    let out = output(&mut r);
    (r, out)
}

fn sent_error(result: Result<(), Error>) -> C {
    match result {
        Err(Error::StreamErrorSent(e)) => e.condition,
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[test]
fn unoffered_bidi_is_an_unsupported_stanza_type() {
    let (mut r, features) = receiver_at_features(false);
    assert!(!features.contains("bidi"));
    let condition = sent_error(feed(&mut r, bidi::REQUEST.as_bytes(), 4096));
    assert_eq!(condition, C::UnsupportedStanzaType);
}

#[test]
fn bidi_twice_is_a_policy_violation() {
    let (mut r, features) = receiver_at_features(true);
    assert!(features.contains(bidi::FEATURE));
    feed(&mut r, bidi::REQUEST.as_bytes(), 4096).unwrap();
    assert_eq!(output(&mut r), "", "nothing answers <bidi/>");
    let condition = sent_error(feed(&mut r, bidi::REQUEST.as_bytes(), 4096));
    assert_eq!(condition, C::PolicyViolation);
}

/// Only on a protected stream: before TLS, with TLS required, nothing but STARTTLS goes.
#[test]
fn bidi_before_tls_is_refused() {
    let mut config = receiver_config(true);
    config.secure_transport = false;
    let mut r = ReceivingEntity::new(config, CountingRng(7), MemoryStore::new());
    let header = format!(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         to='{RECEIVING}' from='{INITIATING}' version='1.0'>"
    );
    feed(&mut r, header.as_bytes(), 4096).unwrap();
    assert!(!output(&mut r).contains("bidi"));
    let condition = sent_error(feed(&mut r, bidi::REQUEST.as_bytes(), 4096));
    assert_eq!(condition, C::PolicyViolation);
}

/// On C2S the switch does nothing: never offered to a client.
#[test]
fn never_offered_to_clients() {
    let mut config = ReceiverConfig::client_to_server(RECEIVING);
    config.secure_transport = true;
    config.bidi = true;
    let mut r = ReceivingEntity::with_tls(
        config,
        CountingRng(7),
        MemoryStore::new(),
        TlsInfo::default(),
    );
    let header = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         to='{RECEIVING}' version='1.0'>"
    );
    feed(&mut r, header.as_bytes(), 4096).unwrap();
    assert!(!output(&mut r).contains("bidi"));
}
