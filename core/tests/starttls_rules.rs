//! Every MUST of the seed (RFC 6120 §4-5) as its own test, named after the rule.

mod support;

use support::*;
use xmpp_handshake_core::connection::{Event, Negotiator, Step, TlsInfo};
use xmpp_handshake_core::initiator::{InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity, TlsOffer};
use xmpp_handshake_core::sasl::MemoryStore;
use xmpp_handshake_core::starttls::TlsPolicy;
use xmpp_handshake_core::stream::error::StreamErrorCondition as C;
use xmpp_handshake_core::stream::header::Framing;
use xmpp_handshake_core::Error;

const R_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='pre-tls-id' from='example.com' version='1.0'>";
const R_HEADER_2: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='post-tls-id' from='example.com' version='1.0'>";
const STARTTLS_REQUIRED: &str = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>";
const SASL_ONLY: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
const PRE_TLS_FEATURES: &str = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms><x xmlns='urn:example:unknown'/></stream:features>";
const POST_TLS_FEATURES: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>";
const PROCEED: &str = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const I_HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

fn client(pipeline: bool, tls: TlsPolicy) -> InitiatingEntity<CountingRng> {
    let mut config = InitiatorConfig::client("example.com");
    config.pipeline_starttls = pipeline;
    config.tls = tls;
    config.from = Some("juliet@example.com".into());
    InitiatingEntity::new(config, CountingRng(100))
}

fn client_after_proceed() -> InitiatingEntity<CountingRng> {
    let mut i = client(false, TlsPolicy::Required);
    feed(
        &mut i,
        format!("{R_HEADER}{STARTTLS_REQUIRED}{PROCEED}").as_bytes(),
        4096,
    )
    .unwrap();
    output(&mut i);
    events(&mut i);
    i
}

fn server() -> ReceivingEntity<CountingRng, MemoryStore> {
    ReceivingEntity::new(
        ReceiverConfig::client_to_server("example.com"),
        CountingRng(0),
        MemoryStore::new(),
    )
}

fn sent_error(result: Result<(), Error>) -> C {
    match result {
        Err(Error::StreamErrorSent(e)) => e.condition,
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[test]
fn initiator_sends_version_1_0() {
    let mut i = client(false, TlsPolicy::Required);
    let sent = parse_sent(&output(&mut i));
    assert_eq!(attr(&sent[0], "version"), Some("1.0"));
}

#[test]
fn initiator_sends_from_only_on_protected_stream() {
    let mut i = client(false, TlsPolicy::Required);
    assert!(!output(&mut i).contains("juliet"));
    let mut i = client_after_proceed();
    i.tls_established(TlsInfo::default()).unwrap();
    let sent = parse_sent(&output(&mut i));
    assert_eq!(attr(&sent[0], "from"), Some("juliet@example.com"));
}

#[test]
fn initiator_refuses_peer_without_version_1_0() {
    let mut i = client(false, TlsPolicy::Required);
    output(&mut i);
    let old = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='example.com'>";
    assert_eq!(
        sent_error(feed(&mut i, old.as_bytes(), 1)),
        C::UnsupportedVersion
    );
}

#[test]
fn refuses_stripped_starttls() {
    // §5.3.1 + policy Required: no STARTTLS offered → refused, nothing but the header and
    // the closing tag was sent (no credentials, no other feature).
    let mut i = client(false, TlsPolicy::Required);
    let header = output(&mut i);
    let r = feed(&mut i, format!("{R_HEADER}{SASL_ONLY}").as_bytes(), 3);
    assert_eq!(r, Err(Error::StartTlsNotOffered));
    assert_eq!(output(&mut i), "</stream:stream>");
    assert!(!header.contains("auth"));
}

#[test]
fn pipelined_starttls_refuses_stripped_server() {
    let mut i = client(true, TlsPolicy::Required);
    let first = parse_sent(&output(&mut i));
    assert_eq!(first.len(), 2, "header and <starttls/> in one write");
    assert_eq!(first[1].0, format!("{{{TLS}}}starttls"));
    let r = feed(&mut i, format!("{R_HEADER}{SASL_ONLY}").as_bytes(), 1);
    assert_eq!(r, Err(Error::StartTlsNotOffered));
    assert_eq!(output(&mut i), "</stream:stream>");
}

#[test]
fn pipelined_starttls_reaches_proceed() {
    let mut i = client(true, TlsPolicy::Required);
    output(&mut i);
    feed(
        &mut i,
        format!("{R_HEADER}{STARTTLS_REQUIRED}{PROCEED}").as_bytes(),
        1,
    )
    .unwrap();
    assert_eq!(output(&mut i), "", "<starttls/> is not sent twice");
    let (_, ev) = events(&mut i);
    assert!(matches!(ev.as_slice(), [Event::StartTls { .. }]));
}

#[test]
fn optional_policy_continues_without_tls() {
    let mut i = client(false, TlsPolicy::Optional);
    output(&mut i);
    feed(&mut i, format!("{R_HEADER}{SASL_ONLY}").as_bytes(), 2).unwrap();
    let (_, ev) = events(&mut i);
    assert!(matches!(ev.as_slice(), [Event::Negotiated(o)] if !o.secure));
}

#[test]
fn optional_policy_uses_starttls_when_offered() {
    let mut i = client(false, TlsPolicy::Optional);
    output(&mut i);
    feed(
        &mut i,
        format!("{R_HEADER}{PRE_TLS_FEATURES}").as_bytes(),
        2,
    )
    .unwrap();
    assert!(output(&mut i).contains("starttls"));
}

#[test]
fn disabled_policy_refuses_server_that_requires_tls() {
    let mut i = client(false, TlsPolicy::Disabled);
    output(&mut i);
    let r = feed(
        &mut i,
        format!("{R_HEADER}{STARTTLS_REQUIRED}").as_bytes(),
        2,
    );
    assert_eq!(r, Err(Error::TlsRequiredByPeer));
}

#[test]
fn starttls_only_feature_is_mandatory_to_negotiate() {
    // §5.3.1: STARTTLS as the only feature is mandatory even without <required/>.
    let mut i = client(false, TlsPolicy::Disabled);
    output(&mut i);
    let only =
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";
    let r = feed(&mut i, format!("{R_HEADER}{only}").as_bytes(), 2);
    assert_eq!(r, Err(Error::TlsRequiredByPeer));
}

#[test]
fn discards_pre_tls_features_and_stream_id() {
    let mut i = client(false, TlsPolicy::Required);
    output(&mut i);
    feed(
        &mut i,
        format!("{R_HEADER}{PRE_TLS_FEATURES}{PROCEED}").as_bytes(),
        4096,
    )
    .unwrap();
    events(&mut i);
    i.tls_established(TlsInfo::default()).unwrap();
    feed(
        &mut i,
        format!("{R_HEADER_2}{POST_TLS_FEATURES}").as_bytes(),
        4096,
    )
    .unwrap();
    let (_, ev) = events(&mut i);
    let [Event::Negotiated(o)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(o.stream_id.as_deref(), Some("post-tls-id"));
    assert_eq!(o.features.mechanisms.as_deref().unwrap(), ["SCRAM-SHA-1"]);
    assert!(
        o.features.other.is_empty(),
        "pre-TLS unknown feature forgotten"
    );
}

#[test]
fn refuses_starttls_after_tls() {
    let mut i = client_after_proceed();
    i.tls_established(TlsInfo::default()).unwrap();
    output(&mut i);
    let r = feed(
        &mut i,
        format!("{R_HEADER_2}{PRE_TLS_FEATURES}").as_bytes(),
        4096,
    );
    assert_eq!(r, Err(Error::StartTlsAfterTls));
}

#[test]
fn plaintext_after_proceed_is_never_fed_to_tls() {
    // STARTTLS command injection: a MITM appends plaintext after <proceed/>.
    for injected in ["<stream:features/>", " ", "\x16\x03\x01"] {
        let mut i = client(false, TlsPolicy::Required);
        output(&mut i);
        let input = format!("{R_HEADER}{STARTTLS_REQUIRED}{PROCEED}{injected}");
        assert_eq!(
            feed(&mut i, input.as_bytes(), 4096),
            Err(Error::PlaintextAfterProceed)
        );
        assert_eq!(
            output(&mut i),
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            "nothing sent after <proceed/>"
        );
        assert!(
            i.tls_established(TlsInfo::default()).is_err(),
            "no TLS after the injection"
        );
    }
}

#[test]
fn no_bytes_between_proceed_and_tls() {
    let mut i = client(false, TlsPolicy::Required);
    output(&mut i);
    feed(
        &mut i,
        format!("{R_HEADER}{STARTTLS_REQUIRED}").as_bytes(),
        1,
    )
    .unwrap();
    output(&mut i);
    feed(&mut i, PROCEED.as_bytes(), 1).unwrap();
    assert_eq!(output(&mut i), "");
}

#[test]
fn whitespace_between_starttls_and_proceed_is_refused() {
    let mut i = client(false, TlsPolicy::Required);
    output(&mut i);
    let r = feed(
        &mut i,
        format!("{R_HEADER}{STARTTLS_REQUIRED} {PROCEED}").as_bytes(),
        1,
    );
    assert_eq!(r, Err(Error::WhitespaceDuringStartTls));
}

#[test]
fn no_closing_tag_before_new_header_after_tls() {
    let mut i = client_after_proceed();
    i.tls_established(TlsInfo::default()).unwrap();
    let out = output(&mut i);
    assert!(
        out.starts_with("<?xml version='1.0'?><stream:stream"),
        "{out}"
    );
    assert!(!out.contains("</stream:stream>"));
}

#[test]
fn tls_only_after_proceed() {
    let mut i = client(false, TlsPolicy::Required);
    assert!(i.tls_established(TlsInfo::default()).is_err());
    let mut r = server();
    assert!(r.tls_established(TlsInfo::default()).is_err());
}

#[test]
fn peer_stream_error_is_reported() {
    let mut i = client(false, TlsPolicy::Required);
    output(&mut i);
    let err = "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such host</text></stream:error></stream:stream>";
    match feed(&mut i, format!("{R_HEADER}{err}").as_bytes(), 3) {
        Err(Error::StreamErrorReceived(e)) => {
            assert_eq!(e.condition, C::HostUnknown);
            assert_eq!(e.text.as_deref(), Some("no such host"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn see_other_host_is_not_followed() {
    let mut i = client(false, TlsPolicy::Required);
    output(&mut i);
    let err = "<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>evil.example</see-other-host></stream:error>";
    assert_eq!(
        feed(&mut i, format!("{R_HEADER}{err}").as_bytes(), 3),
        Err(Error::SeeOtherHost("evil.example".into()))
    );
    assert_eq!(output(&mut i), "", "no new stream to the other host");
}

#[test]
fn peer_closing_tag_ends_negotiation_with_ours() {
    let mut i = client(false, TlsPolicy::Required);
    output(&mut i);
    let r = feed(&mut i, format!("{R_HEADER}</stream:stream>").as_bytes(), 3);
    assert_eq!(r, Err(Error::PeerClosed));
    assert_eq!(output(&mut i), "</stream:stream>");
}

#[test]
fn initiator_malformed_xml_gets_not_well_formed() {
    let mut i = client(false, TlsPolicy::Required);
    output(&mut i);
    let r = feed(&mut i, format!("{R_HEADER}<a><b></a>").as_bytes(), 3);
    assert_eq!(sent_error(r), C::NotWellFormed);
    let out = output(&mut i);
    assert!(out.contains("<not-well-formed") && out.ends_with("</stream:stream>"));
}

#[test]
fn receiver_answers_version_1_0_and_features_after_header() {
    let mut r = server();
    feed(&mut r, I_HEADER.as_bytes(), 1).unwrap();
    let sent = parse_sent(&output(&mut r));
    assert_eq!(attr(&sent[0], "version"), Some("1.0"));
    assert_eq!(sent[1].0, format!("{{{STREAMS}}}features"));
}

#[test]
fn receiver_offers_only_starttls_when_required() {
    let mut r = server();
    feed(&mut r, I_HEADER.as_bytes(), 1).unwrap();
    let out = output(&mut r);
    assert!(out.ends_with("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"));
}

#[test]
fn receiver_offers_voluntary_starttls_without_required() {
    let mut config = ReceiverConfig::client_to_server("example.com");
    config.tls = TlsOffer::Optional;
    let mut r = ReceivingEntity::new(config, CountingRng(0), MemoryStore::new());
    feed(&mut r, I_HEADER.as_bytes(), 1).unwrap();
    let out = output(&mut r);
    assert!(out.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"));
    assert!(!out.contains("required"));
}

#[test]
fn receiver_new_stream_id_after_every_restart_and_no_starttls_after_tls() {
    let mut r = server();
    feed(&mut r, I_HEADER.as_bytes(), 1).unwrap();
    let id1 = attr(&parse_sent(&output(&mut r))[0], "id")
        .unwrap()
        .to_string();
    feed(
        &mut r,
        b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        1,
    )
    .unwrap();
    output(&mut r);
    r.tls_established(TlsInfo::default()).unwrap();
    feed(&mut r, I_HEADER.as_bytes(), 1).unwrap();
    let out = output(&mut r);
    let id2 = attr(&parse_sent(&out)[0], "id").unwrap().to_string();
    assert_ne!(id1, id2);
    assert!(!out.contains("starttls"));
}

#[test]
fn receiver_forgets_pre_tls_from() {
    let mut r = server();
    let with_from = I_HEADER.replace("to=", "from='mallory@example.com' to=");
    feed(&mut r, with_from.as_bytes(), 7).unwrap();
    output(&mut r);
    feed(
        &mut r,
        b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        7,
    )
    .unwrap();
    r.tls_established(TlsInfo::default()).unwrap();
    assert_eq!(r.peer_header().from, None);
    feed(&mut r, I_HEADER.as_bytes(), 7).unwrap();
    let out = output(&mut r);
    assert!(
        out.contains("<proceed") && !out[out.find("<stream:stream").unwrap()..].contains("mallory")
    );
}

#[test]
fn receiver_sends_nothing_after_proceed() {
    let mut r = server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    feed(
        &mut r,
        b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        4096,
    )
    .unwrap();
    assert!(output(&mut r).ends_with(PROCEED));
    // Even input arriving now is not processed as plaintext XML.
    let buf = r.receive_buffer();
    buf[..5].copy_from_slice(b"<iq/>");
    r.received(5).unwrap();
    assert_eq!(output(&mut r), "");
}

#[test]
fn receiver_refuses_client_hello_before_proceed() {
    let mut r = server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    let mut input = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_vec();
    input.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0xc4, 0x01]);
    assert_eq!(
        feed(&mut r, &input, 4096),
        Err(Error::PlaintextAfterStartTls)
    );
    let out = output(&mut r);
    assert!(!out.contains("<proceed"), "{out}");
    assert!(out.contains("policy-violation"));
}

#[test]
fn receiver_selects_certificate_by_to_domain() {
    let mut config = ReceiverConfig::client_to_server("a.example");
    config.domains.push("b.example".into());
    let mut r = ReceivingEntity::new(config, CountingRng(0), MemoryStore::new());
    feed(
        &mut r,
        I_HEADER.replace("example.com", "B.Example").as_bytes(),
        4096,
    )
    .unwrap();
    feed(
        &mut r,
        b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        4096,
    )
    .unwrap();
    let (_, ev) = events(&mut r);
    assert_eq!(
        ev,
        vec![Event::StartTls {
            server_name: "b.example".into()
        }]
    );
}

#[test]
fn stanza_before_tls_gets_not_authorized() {
    let mut r = server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    let res = feed(
        &mut r,
        b"<message to='romeo@example.net'><body>hi</body></message>",
        4096,
    );
    assert_eq!(sent_error(res), C::NotAuthorized);
    assert!(output(&mut r).ends_with("</stream:stream>"));
}

#[test]
fn other_feature_before_mandatory_tls_is_policy_violation() {
    let mut r = server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMG15cjBtMzA=</auth>";
    assert_eq!(
        sent_error(feed(&mut r, auth.as_bytes(), 4096)),
        C::PolicyViolation
    );
}

#[test]
fn unknown_host_gets_host_unknown_after_our_header() {
    let mut r = server();
    let res = feed(
        &mut r,
        I_HEADER.replace("example.com", "other.example").as_bytes(),
        9,
    );
    assert_eq!(sent_error(res), C::HostUnknown);
    let out = output(&mut r);
    assert!(out.starts_with("<?xml version='1.0'?><stream:stream"));
    assert!(out.contains("<host-unknown") && out.ends_with("</stream:stream>"));
}

#[test]
fn wrong_content_namespace_gets_invalid_namespace() {
    let mut r = server();
    let res = feed(
        &mut r,
        I_HEADER
            .replace("jabber:client", "jabber:server")
            .as_bytes(),
        9,
    );
    assert_eq!(sent_error(res), C::InvalidNamespace);
}

#[test]
fn missing_version_gets_unsupported_version() {
    let mut r = server();
    let res = feed(&mut r, I_HEADER.replace(" version='1.0'", "").as_bytes(), 9);
    assert_eq!(sent_error(res), C::UnsupportedVersion);
}

#[test]
fn websocket_framing_never_negotiates_starttls() {
    let mut config = InitiatorConfig::client("example.com");
    config.framing = Framing::WebSocket;
    let mut i = InitiatingEntity::new(config, CountingRng(100));
    let out = output(&mut i);
    assert!(
        out.starts_with("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"),
        "{out}"
    );
    assert!(!out.contains("starttls"));
    let open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.com' id='ws1' version='1.0'/>";
    // Even if a server offers STARTTLS on a WebSocket stream, it is ignored (xmpp.js#807).
    let features = "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>";
    feed(&mut i, format!("{open}{features}").as_bytes(), 5).unwrap();
    assert_eq!(output(&mut i), "");
    let (steps, ev) = events(&mut i);
    assert!(!steps.contains(&Step::StartTlsSent));
    assert!(matches!(ev.as_slice(), [Event::Negotiated(o)] if o.secure));
}
