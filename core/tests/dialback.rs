//! Server Dialback (XEP-0220, keys as XEP-0185) wired into both S2S machines: the
//! originating, receiving and authoritative roles, and every refusal, sans-IO.
#![cfg(feature = "dialback")]

mod support;

use support::*;
use xmpp_handshake_core::connection::{Event, Negotiator, Outcome, TlsInfo};
use xmpp_handshake_core::dialback::{self, Dialback, DialbackConfig, Verdict};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sasl::{Credentials, MemoryStore};
use xmpp_handshake_core::starttls::TlsPolicy;
use xmpp_handshake_core::stream::error::StreamErrorCondition as C;
use xmpp_handshake_core::Error;

const ORIGINATING: &str = "verona.example";
const RECEIVING: &str = "padua.example";
const SECRET_O: &[u8] = b"verona's secret";
const SECRET_R: &[u8] = b"padua's secret";

/// The peer's S2S header to padua.example, binding `db`.
fn header(from: &str) -> String {
    format!(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns:db='jabber:server:dialback' to='{RECEIVING}' from='{from}' version='1.0'>"
    )
}

/// The receiving server (padua) on a protected transport; its peer's certificate verified
/// for `names` (none: no certificate, or one that did not verify).
fn receiver(names: &[&str], secure: bool) -> ReceivingEntity<CountingRng, MemoryStore> {
    let mut config = ReceiverConfig::server_to_server(RECEIVING);
    config.secure_transport = secure;
    config.dialback = Some(DialbackConfig::new(SECRET_R));
    let tls = TlsInfo {
        peer_identities: names.iter().map(|n| n.to_string()).collect(),
        ..TlsInfo::default()
    };
    ReceivingEntity::with_tls(config, CountingRng(7), MemoryStore::new(), tls)
}

/// The stream id padua gave in its header (what a key is bound to).
fn stream_id(out: &str) -> String {
    let at = out.find(" id='").expect("a stream id") + 5;
    out[at..].split('\'').next().unwrap().to_string()
}

/// The originating server (verona) to padua: EXTERNAL configured, dialback as fallback.
fn initiator(tls: TlsPolicy) -> InitiatingEntity<CountingRng> {
    let mut config = InitiatorConfig::server(RECEIVING, ORIGINATING);
    config.tls = tls;
    config.pipeline_starttls = false;
    let mut sasl = ClientSasl::password("", "", None);
    sasl.credentials = Credentials::external(None);
    sasl.pipeline_bind = false;
    config.sasl = Some(sasl);
    config.dialback = Some(DialbackConfig::new(SECRET_O));
    InitiatingEntity::new(config, CountingRng(3))
}

fn negotiated(events: &[Event]) -> Option<&Outcome> {
    events.iter().find_map(|e| match e {
        Event::Negotiated(o) => Some(o),
        _ => None,
    })
}

fn requested(events: &[Event]) -> Option<&Dialback> {
    events.iter().find_map(|e| match e {
        Event::DialbackRequested { verify } => Some(verify),
        _ => None,
    })
}

fn sent_error(result: Result<(), Error>) -> C {
    match result {
        Err(Error::StreamErrorSent(e)) => e.condition,
        other => panic!("expected a stream error, got {other:?}"),
    }
}

/// Both machines over a pretend TLS; padua asks verona's authoritative role (the same
/// secret verona's originating role keys with) about every key. Runs until verona is
/// negotiated; returns both outcomes.
#[test]
fn originating_receiving_and_authoritative_roles_authenticate_a_stream() {
    let mut i = initiator(TlsPolicy::Required);
    let mut r = receiver(&[], false);
    let mut wire = String::new();
    let mut receiver_outcome = None;
    let mut asked = 0;
    for _ in 0..30 {
        let to_r = output(&mut i);
        wire.push_str(&to_r);
        feed(&mut r, to_r.as_bytes(), 4096).unwrap();
        let to_i = output(&mut r);
        wire.push_str(&to_i);
        feed(&mut i, to_i.as_bytes(), 4096).unwrap();
        let (_, server_events) = events(&mut r);
        for e in server_events {
            match e {
                Event::StartTls { .. } => r.tls_established(TlsInfo::default()).unwrap(),
                Event::DialbackRequested { verify } => {
                    asked += 1;
                    let answer =
                        dialback::answer_verify(&verify, SECRET_O, |d| d == ORIGINATING).unwrap();
                    assert!(r.dialback_verdict(answer.verdict.unwrap()).unwrap());
                }
                Event::Negotiated(o) => receiver_outcome = Some(o),
                _ => {}
            }
        }
        let (_, client_events) = events(&mut i);
        if client_events
            .iter()
            .any(|e| matches!(e, Event::StartTls { .. }))
        {
            i.tls_established(TlsInfo::default()).unwrap();
        }
        if let Some(o) = negotiated(&client_events) {
            assert!(o.dialback, "{o:?}");
            assert_eq!(o.mechanism, None);
            break;
        }
    }
    assert_eq!(asked, 1);
    let theirs = receiver_outcome.expect("padua authenticated verona");
    assert!(theirs.dialback);
    assert_eq!(theirs.jid.as_deref(), Some(ORIGINATING));
    // Both headers bind `db`; padua offered dialback and no EXTERNAL (no certificate);
    // verona sent its key; no restart followed.
    assert_eq!(wire.matches("xmlns:db='jabber:server:dialback'").count(), 4);
    assert!(wire.contains("<dialback xmlns='urn:xmpp:features:dialback'>"));
    assert!(!wire.contains("EXTERNAL"));
    assert!(wire.contains("<db:result from='verona.example' to='padua.example'>"));
    assert!(wire.contains("type='valid'/>"));
}

/// XEP-0178 first: where EXTERNAL is offered it is tried before dialback (a certificate
/// that verifies proves more than DNS); its `<failure/>` leaves the stream as it was and
/// dialback follows on it with the key for that stream's id.
#[test]
fn external_is_preferred_and_its_failure_falls_back_to_dialback() {
    let mut i = initiator(TlsPolicy::Required);
    output(&mut i);
    let pre = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>";
    let r_header = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='padua.example' id='s2' version='1.0'>";
    feed(&mut i, format!("{r_header}{pre}").as_bytes(), 4096).unwrap();
    output(&mut i);
    feed(
        &mut i,
        b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        4096,
    )
    .unwrap();
    i.tls_established(TlsInfo::default()).unwrap();
    output(&mut i);
    let post = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>";
    feed(&mut i, format!("{r_header}{post}").as_bytes(), 4096).unwrap();
    let out = output(&mut i);
    assert!(out.contains("mechanism='EXTERNAL'"), "{out}");
    assert!(!out.contains("db:result"), "{out}");
    let failure = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>";
    feed(&mut i, failure.as_bytes(), 4096).unwrap();
    let key = dialback::key(SECRET_O, RECEIVING, ORIGINATING, "s2");
    assert_eq!(
        output(&mut i),
        format!("<db:result from='verona.example' to='padua.example'>{key}</db:result>")
    );
    // The verdict `invalid` ends it with a typed error.
    let invalid = "<db:result from='padua.example' to='verona.example' type='invalid'/>";
    let result = feed(&mut i, invalid.as_bytes(), 4096);
    assert_eq!(result, Err(Error::DialbackRefused(Verdict::Invalid)));
}

/// By default the originating role does not use dialback on a stream without TLS: with
/// nothing else to authenticate with, it gives up instead.
#[test]
fn originating_refuses_dialback_without_tls() {
    let mut i = initiator(TlsPolicy::Disabled);
    output(&mut i);
    let r_header = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='padua.example' id='s1' version='1.0'>";
    let features =
        "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>";
    let result = feed(&mut i, format!("{r_header}{features}").as_bytes(), 4096);
    assert!(result.is_err(), "{result:?}");
    assert!(!output(&mut i).contains("db:result"));
}

/// §2.1.3: the authoritative role answers `<db:verify/>` on a stream that never
/// authenticates, `valid` for its own key and `invalid` for another; the stream goes on.
#[test]
fn authoritative_role_answers_verify_before_authentication() {
    let mut r = receiver(&[], true);
    feed(&mut r, header("lucca.example").as_bytes(), 4096).unwrap();
    output(&mut r);
    let key = dialback::key(SECRET_R, "lucca.example", RECEIVING, "their-id");
    let ask = |key: &str| {
        format!(
            "<db:verify from='lucca.example' to='padua.example' id='their-id'>{key}</db:verify>"
        )
    };
    feed(&mut r, ask(&key).as_bytes(), 4096).unwrap();
    assert_eq!(
        output(&mut r),
        "<db:verify from='padua.example' to='lucca.example' id='their-id' type='valid'/>"
    );
    feed(&mut r, ask("0123abcd").as_bytes(), 4096).unwrap();
    assert!(output(&mut r).ends_with("type='invalid'/>"));
    let (_, ev) = events(&mut r);
    assert!(negotiated(&ev).is_none(), "{ev:?}");
}

/// A receiving server that admitted a key.
fn asked_receiver() -> (ReceivingEntity<CountingRng, MemoryStore>, Dialback) {
    let mut r = receiver(&[], true);
    feed(&mut r, header(ORIGINATING).as_bytes(), 4096).unwrap();
    let id = stream_id(&output(&mut r));
    let key = dialback::key(SECRET_O, RECEIVING, ORIGINATING, &id);
    let request = format!("<db:result from='{ORIGINATING}' to='{RECEIVING}'>{key}</db:result>");
    feed(&mut r, request.as_bytes(), 4096).unwrap();
    let (_, ev) = events(&mut r);
    let verify = requested(&ev).expect("a verify request").clone();
    assert_eq!(verify.id.as_deref(), Some(id.as_str()));
    assert_eq!(verify.key.as_deref(), Some(key.as_str()));
    (r, verify)
}

/// A key the authoritative server calls `invalid` ends the stream with `<not-authorized/>`
/// after the `invalid` verdict is passed on.
#[test]
fn key_that_does_not_verify_is_not_authorized() {
    let (mut r, _) = asked_receiver();
    let result = r.dialback_verdict(Verdict::Invalid).map(|_| ());
    assert_eq!(sent_error(result), C::NotAuthorized);
    let out = output(&mut r);
    assert!(out.contains("type='invalid'/>"), "{out}");
    assert!(out.contains("<not-authorized"), "{out}");
}

/// An error verdict (the authoritative server could not be reached) is passed on; the
/// stream stays unauthenticated and may try again.
#[test]
fn unreachable_authority_is_an_error_verdict_and_the_stream_stays_unauthenticated() {
    let (mut r, _) = asked_receiver();
    assert!(r
        .dialback_verdict(Verdict::Error("remote-server-not-found".into()))
        .unwrap());
    let out = output(&mut r);
    assert!(out.contains("type='error'"), "{out}");
    assert!(out.contains("<remote-server-not-found"), "{out}");
    let result = feed(
        &mut r,
        b"<message from='a@verona.example' to='b@padua.example'/>",
        4096,
    );
    assert_eq!(sent_error(result), C::NotAuthorized);
}

/// Before authentication only dialback requests are accepted: a stanza before the key, or
/// while it is being verified, is `<not-authorized/>`; so is a second key meanwhile
/// refused (one at a time).
#[test]
fn stanzas_before_the_verdict_are_not_authorized() {
    let mut r = receiver(&[], true);
    feed(&mut r, header(ORIGINATING).as_bytes(), 4096).unwrap();
    let result = feed(
        &mut r,
        b"<message from='a@verona.example' to='b@padua.example'/>",
        4096,
    );
    assert_eq!(sent_error(result), C::NotAuthorized);

    let (mut r, _) = asked_receiver();
    let result = feed(
        &mut r,
        b"<presence from='a@verona.example' to='b@padua.example'/>",
        4096,
    );
    assert_eq!(sent_error(result), C::NotAuthorized);

    let (mut r, _) = asked_receiver();
    let again = "<db:result from='verona.example' to='padua.example'>00</db:result>";
    assert_eq!(
        sent_error(feed(&mut r, again.as_bytes(), 4096)),
        C::PolicyViolation
    );
}

/// By default dialback is refused on a stream without TLS: not offered before STARTTLS,
/// and a key sent anyway is `<policy-violation/>`, never verified.
#[test]
fn dialback_is_refused_over_plaintext_by_default() {
    let mut r = receiver(&[], false);
    feed(&mut r, header(ORIGINATING).as_bytes(), 4096).unwrap();
    let out = output(&mut r);
    assert!(!out.contains("dialback xmlns"), "{out}");
    let id = stream_id(&out);
    let key = dialback::key(SECRET_O, RECEIVING, ORIGINATING, &id);
    let request = format!("<db:result from='{ORIGINATING}' to='{RECEIVING}'>{key}</db:result>");
    assert_eq!(
        sent_error(feed(&mut r, request.as_bytes(), 4096)),
        C::PolicyViolation
    );
    let (_, ev) = events(&mut r);
    assert!(requested(&ev).is_none());
}

/// A peer whose verified certificate names another domain cannot claim this one through
/// DNS: `<not-authorized/>`, never verified. Its own domain passes.
#[test]
fn dialback_is_refused_for_a_domain_the_certificate_contradicts() {
    let mut r = receiver(&["lucca.example"], true);
    feed(&mut r, header(ORIGINATING).as_bytes(), 4096).unwrap();
    let out = output(&mut r);
    assert!(!out.contains("EXTERNAL"), "{out}");
    let request = format!("<db:result from='{ORIGINATING}' to='{RECEIVING}'>abcd</db:result>");
    assert_eq!(
        sent_error(feed(&mut r, request.as_bytes(), 4096)),
        C::NotAuthorized
    );
    let (_, ev) = events(&mut r);
    assert!(requested(&ev).is_none());
}

/// The key must be for one of our domains (`<host-unknown/>`) and from the domain the
/// stream's `from` named (`<improper-addressing/>`).
#[test]
fn dialback_addressing_is_checked() {
    let mut r = receiver(&[], true);
    feed(&mut r, header(ORIGINATING).as_bytes(), 4096).unwrap();
    let request = format!("<db:result from='{ORIGINATING}' to='elsewhere.example'>ab</db:result>");
    assert_eq!(
        sent_error(feed(&mut r, request.as_bytes(), 4096)),
        C::HostUnknown
    );

    let mut r = receiver(&[], true);
    feed(&mut r, header(ORIGINATING).as_bytes(), 4096).unwrap();
    let request = format!("<db:result from='lucca.example' to='{RECEIVING}'>ab</db:result>");
    assert_eq!(
        sent_error(feed(&mut r, request.as_bytes(), 4096)),
        C::ImproperAddressing
    );
}
