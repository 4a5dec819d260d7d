//! The seed's client-server and server-server examples replayed against each role, at
//! every chunk size down to one byte, compared semantically (attribute order is free).

mod support;

use support::*;
use xmpp_handshake_core::connection::{Event, Negotiator, Step, TlsInfo};
use xmpp_handshake_core::initiator::{InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sasl::MemoryStore;
use xmpp_handshake_core::Error;

const C2S_I_HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
const C2S_R_HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='c2s_123' from='example.com' version='1.0'>";
const C2S_R_FEATURES: &str = "<stream:features>
     <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>
       <required/>
     </starttls>
     <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>
       <mechanism>DIGEST-MD5</mechanism>
       <mechanism>PLAIN</mechanism>
     </mechanisms>
   </stream:features>";
const PROCEED: &str = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const FAILURE: &str = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>";
const C2S_R_HEADER_2: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='c2s_234' version='1.0'>";
const C2S_R_FEATURES_2: &str = "<stream:features>
     <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>
       <mechanism>DIGEST-MD5</mechanism>
       <mechanism>PLAIN</mechanism>
       <mechanism>EXTERNAL</mechanism>
     </mechanisms>
   </stream:features>";

const S2S_I_HEADER: &str = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
const S2S_R_HEADER: &str = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='s2s_123' version='1.0'>";
const S2S_R_FEATURES: &str = "<stream:features>
     <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>
       <required/>
     </starttls>
     <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>
       <mechanism>DIGEST-MD5</mechanism>
       <mechanism>KERBEROS_V4</mechanism>
     </mechanisms>
   </stream:features>";
const S2S_R_HEADER_2: &str = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='s2s_234' version='1.0'>";
const S2S_R_FEATURES_2: &str = "<stream:features>
     <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>
       <mechanism>DIGEST-MD5</mechanism>
       <mechanism>KERBEROS_V4</mechanism>
       <mechanism>EXTERNAL</mechanism>
     </mechanisms>
   </stream:features>";

fn seed_initiator(config: InitiatorConfig, r: [&str; 4], expected_ns: &str, mechs: &[&str]) {
    for chunk in [1, 2, 3, 7, 64, 4096] {
        let mut config = config.clone();
        config.pipeline_starttls = false;
        // §4.7.1: a server's `from` goes on every header, the same each time; a client's
        // only once TLS protects it.
        let server = expected_ns == "jabber:server";
        let from = config.from.clone();
        let mut i = InitiatingEntity::new(config, CountingRng(100));
        // Step 1: our header, version 1.0, to the configured domain.
        let sent = parse_sent(&output(&mut i));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, format!("{{{STREAMS}}}stream"));
        assert_eq!(attr(&sent[0], "to"), Some("example.com"));
        assert_eq!(attr(&sent[0], "version"), Some("1.0"));
        let expected_from = if server { from.as_deref() } else { None };
        assert_eq!(attr(&sent[0], "from"), expected_from);
        // Steps 2-3: the receiving entity's header and features.
        feed(&mut i, format!("{}{}", r[0], r[1]).as_bytes(), chunk).unwrap();
        // Step 4: <starttls/>.
        let sent = parse_sent(&output(&mut i));
        assert_eq!(sent.len(), 1, "chunk {chunk}");
        assert_eq!(sent[0].0, format!("{{{TLS}}}starttls"));
        // Step 5: <proceed/>; TLS starts with the configured name, nothing is sent.
        feed(&mut i, PROCEED.as_bytes(), chunk).unwrap();
        assert_eq!(output(&mut i), "");
        let (_, ev) = events(&mut i);
        assert_eq!(
            ev,
            vec![Event::StartTls {
                server_name: "example.com".into()
            }]
        );
        // Step 7: a new header without a closing tag first.
        i.tls_established(TlsInfo::default()).unwrap();
        let out = output(&mut i);
        assert!(!out.contains("</stream:stream>"));
        let sent = parse_sent(&out);
        assert_eq!(sent.len(), 1);
        assert!(out.contains(&format!("xmlns='{expected_ns}'")));
        assert_eq!(attr(&sent[0], "from"), from.as_deref());
        // Step 8: new header and features; negotiation reaches the SASL seam.
        feed(&mut i, format!("{}{}", r[2], r[3]).as_bytes(), chunk).unwrap();
        let (_, ev) = events(&mut i);
        let [Event::Negotiated(outcome)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert!(outcome.secure);
        assert!(outcome.features.starttls.is_none());
        assert_eq!(outcome.features.mechanisms.as_deref().unwrap(), mechs);
    }
}

#[test]
fn seed_client_server_example_initiator() {
    seed_initiator(
        InitiatorConfig::client("example.com"),
        [
            C2S_R_HEADER,
            C2S_R_FEATURES,
            C2S_R_HEADER_2,
            C2S_R_FEATURES_2,
        ],
        "jabber:client",
        &["DIGEST-MD5", "PLAIN", "EXTERNAL"],
    );
}

#[test]
fn seed_server_server_example_initiator_tolerates_kerberos_v4() {
    seed_initiator(
        InitiatorConfig::server("example.com", "example.net"),
        [
            S2S_R_HEADER,
            S2S_R_FEATURES,
            S2S_R_HEADER_2,
            S2S_R_FEATURES_2,
        ],
        "jabber:server",
        &["DIGEST-MD5", "KERBEROS_V4", "EXTERNAL"],
    );
}

#[test]
fn seed_step5_failure_closes() {
    for config in [
        InitiatorConfig::client("example.com"),
        InitiatorConfig::server("example.com", "example.net"),
    ] {
        let r = if config.ns.as_str() == "jabber:client" {
            [C2S_R_HEADER, C2S_R_FEATURES]
        } else {
            [S2S_R_HEADER, S2S_R_FEATURES]
        };
        let mut i = InitiatingEntity::new(config, CountingRng(100));
        output(&mut i);
        let input = format!("{}{}{}", r[0], r[1], FAILURE);
        assert_eq!(
            feed(&mut i, input.as_bytes(), 5),
            Err(Error::StartTlsFailed)
        );
        assert!(output(&mut i).ends_with("</stream:stream>"));
    }
}

fn seed_receiver(config: ReceiverConfig, i_header: &str, ns: &str) {
    for chunk in [1, 3, 64, 4096] {
        let mut r = ReceivingEntity::new(config.clone(), CountingRng(0), MemoryStore::new());
        feed(&mut r, i_header.as_bytes(), chunk).unwrap();
        let out = output(&mut r);
        let sent = parse_sent(&out);
        // Steps 2-3: header (version 1.0, a fresh id, from the addressed domain), then
        // features offering only <starttls><required/></starttls>.
        assert_eq!(sent.len(), 2, "{out}");
        assert_eq!(attr(&sent[0], "version"), Some("1.0"));
        assert_eq!(attr(&sent[0], "from"), Some("example.com"));
        let id1 = attr(&sent[0], "id").expect("stream id").to_string();
        assert!(out.contains(&format!("xmlns='{ns}'")));
        assert_eq!(sent[1].0, format!("{{{STREAMS}}}features"));
        assert!(out.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"));
        // Step 4-5: <starttls/> → <proceed/>, then TLS for the addressed domain.
        feed(
            &mut r,
            b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            chunk,
        )
        .unwrap();
        assert_eq!(output(&mut r), PROCEED);
        let (steps, ev) = events(&mut r);
        assert!(steps.contains(&Step::ProceedSent));
        assert_eq!(
            ev,
            vec![Event::StartTls {
                server_name: "example.com".into()
            }]
        );
        r.tls_established(TlsInfo::default()).unwrap();
        assert_eq!(output(&mut r), "", "nothing before the new header arrives");
        // Steps 7-8: new header → a new id, features without STARTTLS.
        let result = feed(&mut r, i_header.as_bytes(), chunk);
        let out = output(&mut r);
        let sent = parse_sent(&out);
        let id2 = attr(&sent[0], "id").expect("stream id");
        assert_ne!(id1, id2, "a new stream id after TLS");
        // MUST NOT offer STARTTLS, SHOULD offer SASL (§5.4.3.3).
        assert!(!out.contains("starttls"), "{out}");
        let (_, ev) = events(&mut r);
        if ns == "jabber:client" {
            assert!(out.contains("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256</mechanism>"), "{out}");
            assert!(ev.is_empty());
            result.unwrap();
        } else {
            // S2S without a client certificate: no SASL EXTERNAL to offer and no dialback
            // here, so nothing can authenticate the peer: the stream ends with
            // <not-authorized/> rather than go on unauthenticated.
            assert!(!out.contains("<mechanisms"), "{out}");
            assert!(out.contains("<not-authorized"), "{out}");
            assert!(
                matches!(result, Err(Error::StreamErrorSent(_))),
                "{result:?}"
            );
            assert!(
                !ev.iter().any(|e| matches!(e, Event::Negotiated(_))),
                "{ev:?}"
            );
        }
    }
}

#[test]
fn seed_client_server_example_receiver() {
    seed_receiver(
        ReceiverConfig::client_to_server("example.com"),
        C2S_I_HEADER,
        "jabber:client",
    );
}

#[test]
fn seed_server_server_example_receiver() {
    seed_receiver(
        ReceiverConfig::server_to_server("example.com"),
        S2S_I_HEADER,
        "jabber:server",
    );
}

#[test]
fn seed_second_half_example_with_from_and_lang() {
    // The RFC 6120 §5.4 example of the seed's second half: juliet@im.example.com.
    let header = "<stream:stream
     from='juliet@im.example.com'
     to='im.example.com'
     version='1.0'
     xml:lang='en'
     xmlns='jabber:client'
     xmlns:stream='http://etherx.jabber.org/streams'>";
    let mut r = ReceivingEntity::new(
        ReceiverConfig::client_to_server("im.example.com"),
        CountingRng(7),
        MemoryStore::new(),
    );
    feed(&mut r, header.as_bytes(), 1).unwrap();
    let sent = parse_sent(&output(&mut r));
    assert_eq!(attr(&sent[0], "to"), Some("juliet@im.example.com"));
    assert_eq!(attr(&sent[0], "from"), Some("im.example.com"));
    assert_eq!(attr(&sent[0], "lang"), Some("en"));
}
