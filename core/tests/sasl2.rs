//! SASL2 (XEP-0388) with Bind 2 (XEP-0386), stream management inside them (XEP-0198),
//! FAST tokens (XEP-0484) and SCRAM downgrade protection (XEP-0474), client side, against a
//! scripted server whose SCRAM answers come from this crate's own server mechanism: the
//! client uses SASL2 when offered, binds and enables stream management inline (no `<iq/>`,
//! no second `<enable/>`), takes the token, logs in with it next time, falls back to the
//! password on the same stream when it is refused, and fails loudly on a changed offer.

//!
//! With a FAST token and the shape of the server's last SASL2 offer kept, `<authenticate/>`
//! goes out with the protected header (pipelined) and the live offer is checked when it
//! comes: anything the request used and the offer lacks ends the login with a typed error;
//! on STARTTLS nothing of it is ever sent before TLS.

#![cfg(feature = "sasl2")]

mod support;

use core::time::Duration;

use support::negotiation::{CountingRng, DOMAIN, ITERATIONS, USER};
use xmpp_handshake_core::connection::TlsInfo;
use xmpp_handshake_core::connection::{Connection, ConnectionOptions, Event, Negotiator, Outcome};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::login::{FastToken, LoginMemory};
use xmpp_handshake_core::sasl::base64::{decode_strict, encode};
use xmpp_handshake_core::sasl::fast::FastTokens;
use xmpp_handshake_core::sasl::{
    ChannelBindingData, CredentialStore, Mechanism, MemoryStore, SaslError, SaslFailure,
    ScramCredentials, ScramHash, ServerContext, ServerMechanism, ServerStep,
};
use xmpp_handshake_core::sm::{SmConfig, SmState};
use xmpp_handshake_core::stream::features::Sasl2Inline;
use xmpp_handshake_core::stream::header::Framing;
use xmpp_handshake_core::Error;

const T0: Duration = Duration::from_secs(1000);
const UA: &str = "7d0b1a9c-3c1e-4f4e-9d55-0e2b7c1f6a10";
const TOKEN: &str = "secret-token:fast-abc";
const HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='s1' version='1.0'>";

fn features(mechanisms: &[&str], inline: &str) -> String {
    let mut m = String::new();
    for name in mechanisms {
        m.push_str(&format!("<mechanism>{name}</mechanism>"));
    }
    format!(
        "<stream:features><authentication xmlns='urn:xmpp:sasl:2'>{m}<inline>{inline}</inline>\
         </authentication><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{m}</mechanisms>\
         </stream:features>"
    )
}

const BIND2_SM_FAST: &str = "<bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:sm:3'/>\
    </inline></bind><sm xmlns='urn:xmpp:sm:3'/><fast xmlns='urn:xmpp:fast:0'>\
    <mechanism>HT-SHA-256-NONE</mechanism></fast>";

/// Prosody's features after a SASL2 success: `<bind/>` and `<sm/>` are listed again.
const AFTER: &str = "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/>\
    </bind><sm xmlns='urn:xmpp:sm:3'><optional/></sm></stream:features>";

fn client(memory: Option<&LoginMemory>, resume: Option<SmState>) -> Connection<impl Negotiator> {
    client_over(true, memory, resume, UA)
}

/// A client over Direct TLS (`secure_transport`) or STARTTLS, with `<user-agent id='ua'>`.
fn client_over(
    secure_transport: bool,
    memory: Option<&LoginMemory>,
    resume: Option<SmState>,
    ua: &str,
) -> Connection<impl Negotiator> {
    let mut config = InitiatorConfig::client(DOMAIN);
    config.secure_transport = secure_transport;
    config.from = Some(format!("{}@{DOMAIN}", USER.0));
    let mut sasl = ClientSasl::password(USER.0, USER.1, Some("cli"));
    sasl.sasl2.user_agent_id = Some(String::from(ua));
    sasl.policy.min_iterations = ITERATIONS;
    if let Some(m) = memory {
        sasl = sasl.with_memory(m);
    }
    config.sasl = Some(sasl);
    config.stream_management = Some(SmConfig::default());
    config.resume = resume;
    Connection::new(
        InitiatingEntity::with_tls(config, CountingRng(1), TlsInfo::default()),
        Framing::Tcp,
        ConnectionOptions::default(),
        T0,
    )
}

fn sent<M: Negotiator>(c: &mut Connection<M>) -> String {
    core::iter::from_fn(|| c.poll_transmit()).collect()
}

fn events<M: Negotiator>(c: &mut Connection<M>) -> Vec<Event> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

fn outcome(events: &[Event]) -> Option<&Outcome> {
    events.iter().find_map(|e| match e {
        Event::Negotiated(o) => Some(o),
        _ => None,
    })
}

fn closed_error(events: &[Event]) -> Option<&Error> {
    events.iter().find_map(|e| match e {
        Event::Closed(c) => c.error(),
        _ => None,
    })
}

/// The text of `<name>` in `xml` (first one).
fn text_of<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let tag = xml.find(&format!("<{name}"))?;
    let start = tag + xml[tag..].find('>')? + 1;
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + end])
}

/// The attribute `name` of the first `<element …>` in `xml`.
fn attr_of<'a>(xml: &'a str, element: &str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{element} "))?;
    let tag = &xml[start..start + xml[start..].find('>')?];
    let key = format!("{name}='");
    let v = tag.find(&key)? + key.len();
    Some(&tag[v..v + tag[v..].find('\'')?])
}

/// A SCRAM server for the scripted answers (this crate's receiving side).
struct Scram {
    mechanism: ServerMechanism,
    store: MemoryStore,
}

impl Scram {
    fn start(name: &str) -> Self {
        let mut store = MemoryStore::new();
        store.add_password(USER.0, USER.1, ITERATIONS, &mut CountingRng(7));
        let offered = [
            Mechanism::ScramSha1,
            Mechanism::ScramSha256,
            Mechanism::Plain,
        ];
        let ctx = ServerContext {
            offered: &offered,
            tls: true,
            channel_binding: &ChannelBindingData::none(),
            external_identity: None,
        };
        Scram {
            mechanism: ServerMechanism::start(name, &ctx, &mut CountingRng(99)).unwrap(),
            store,
        }
    }

    fn step(&mut self, payload_b64: &str) -> ServerStep {
        let data = decode_strict(payload_b64).unwrap();
        self.mechanism.step(&self.store, Some(&data)).unwrap()
    }
}

/// Runs a SCRAM-SHA-1 SASL2 login to `<success/>` (exclusive); returns what the client sent
/// in `<authenticate/>` and the success's additional data.
fn scram_login<M: Negotiator>(c: &mut Connection<M>, offer: &str) -> (String, String) {
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(offer.as_bytes(), T0);
    let authenticate = sent(c);
    assert!(
        authenticate.contains("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-1'>"),
        "{authenticate}"
    );
    let mut server = Scram::start("SCRAM-SHA-1");
    let ServerStep::Challenge(first) =
        server.step(text_of(&authenticate, "initial-response").unwrap())
    else {
        panic!("no challenge")
    };
    c.handle_input(
        format!(
            "<challenge xmlns='urn:xmpp:sasl:2'>{}</challenge>",
            encode(&first)
        )
        .as_bytes(),
        T0,
    );
    let response = sent(c);
    let payload =
        text_of(&response, "response").unwrap_or_else(|| panic!("{response} {:?}", events(c)));
    let ServerStep::Success {
        additional_data, ..
    } = server.step(payload)
    else {
        panic!("no success")
    };
    (authenticate, encode(&additional_data.unwrap()))
}

#[test]
fn sasl2_binds_and_enables_stream_management_inline_and_takes_a_fast_token() {
    let mut c = client(None, None);
    let header = sent(&mut c);
    assert!(header.contains("from='juliet@example.com'"), "{header}");
    let (authenticate, v) =
        scram_login(&mut c, &features(&["SCRAM-SHA-1", "PLAIN"], BIND2_SM_FAST));
    assert!(
        authenticate.contains(&format!("<user-agent id='{UA}'>")),
        "{authenticate}"
    );
    assert!(
        authenticate.contains("<bind xmlns='urn:xmpp:bind:0'><tag>cli</tag><enable xmlns='urn:xmpp:sm:3' resume='true'"),
        "{authenticate}"
    );
    assert!(
        authenticate
            .contains("<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>"),
        "{authenticate}"
    );
    assert!(
        !authenticate.contains("<fast "),
        "no token yet: {authenticate}"
    );
    c.handle_input(
        format!(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>{v}</additional-data>\
             <bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='1' max='300'/></bound>\
             <token xmlns='urn:xmpp:fast:0' expiry='2026-12-28T21:15:20Z' token='{TOKEN}'/>\
             <authorization-identifier>juliet@example.com/cli~Uk5h</authorization-identifier></success>{AFTER}"
        )
        .as_bytes(),
        T0,
    );
    let ev = events(&mut c);
    let o = outcome(&ev).unwrap_or_else(|| panic!("{ev:?}"));
    assert!(o.sasl2);
    assert_eq!(o.jid.as_deref(), Some("juliet@example.com/cli~Uk5h"));
    assert_eq!(o.mechanism, Some(Mechanism::ScramSha1));
    let token = o.fast_token.clone().expect("the token");
    assert_eq!(token.token, TOKEN.as_bytes());
    assert_eq!(token.mechanism, "HT-SHA-256-NONE");
    assert_eq!(token.expires.map(|t| t.0), Some(1_798_492_520));
    assert!(ev.iter().any(|e| matches!(e,
        Event::SmEnabled { id: Some(id), max: Some(300), .. } if id == "sm-1")));
    // Bound and enabled inline: no bind `<iq/>`, no second `<enable/>`.
    let after = sent(&mut c);
    assert!(
        !after.contains("<iq") && !after.contains("<enable"),
        "{after}"
    );
    // Stream management counts from the inline `<enable/>`: the first stanza is number 1.
    assert_eq!(
        c.send_stanza("<message to='a@b'><body>1</body></message>", T0),
        Ok(Some(1))
    );
    c.handle_input(b"<a xmlns='urn:xmpp:sm:3' h='1'/>", T0);
    assert!(events(&mut c)
        .iter()
        .any(|e| matches!(e, Event::Acked { h: 1, .. })));

    // The memory keeps the token and the id; the next login uses it.
    let sasl = ClientSasl::password(USER.0, USER.1, None);
    let memory = LoginMemory {
        user_agent_id: Some(String::from(UA)),
        ..LoginMemory::from_outcome(o, &sasl.policy)
    };
    let bytes = memory.to_bytes().unwrap();
    assert_eq!(LoginMemory::from_bytes(&bytes).unwrap(), memory);
    fast_login_uses_the_token(&memory);
}

fn ht(label: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(TOKEN.as_bytes()).unwrap();
    m.update(label);
    encode(&m.finalize().into_bytes())
}

fn fast_login_uses_the_token(memory: &LoginMemory) {
    let mut c = client(Some(memory), None);
    // Pipelined with the header when the memory kept the offer's shape, else after it.
    let mut authenticate = sent(&mut c);
    assert_eq!(
        authenticate.contains("<authenticate "),
        memory.sasl2_inline.is_some()
    );
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(features(&["SCRAM-SHA-1"], BIND2_SM_FAST).as_bytes(), T0);
    authenticate.push_str(&sent(&mut c));
    assert!(
        authenticate.contains("mechanism='HT-SHA-256-NONE'")
            && authenticate.contains("<fast xmlns='urn:xmpp:fast:0'/>"),
        "{authenticate}"
    );
    assert!(!authenticate.contains("<request-token"), "{authenticate}");
    let ir = decode_strict(text_of(&authenticate, "initial-response").unwrap()).unwrap();
    let mut expected = b"juliet\0".to_vec();
    expected.extend(decode_strict(&ht(b"Initiator")).unwrap());
    assert_eq!(ir, expected, "username NUL HMAC(token, Initiator)");
    c.handle_input(
        format!(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>{}</additional-data>\
             <bound xmlns='urn:xmpp:bind:0'/>\
             <authorization-identifier>juliet@example.com/cli~Uk5h</authorization-identifier></success>{AFTER}",
            ht(b"Responder")
        )
        .as_bytes(),
        T0,
    );
    let ev = events(&mut c);
    let o = outcome(&ev).unwrap_or_else(|| panic!("{ev:?}"));
    assert_eq!(o.mechanism, None, "a token, not a SASL mechanism");
    assert!(!o.fast_token_rejected && o.fast_token.is_none());
    // What the FAST login leaves: the earlier token, id and SCRAM keys stay.
    let next = LoginMemory::from_outcome(o, &Default::default()).remembering(Some(memory), false);
    assert_eq!(next.fast_token, memory.fast_token);
    assert_eq!(next.user_agent_id, memory.user_agent_id);
    assert_eq!(next.scram, memory.scram);
}

fn token_memory() -> LoginMemory {
    LoginMemory {
        user_agent_id: Some(String::from(UA)),
        fast_token: Some(FastToken {
            mechanism: String::from("HT-SHA-256-NONE"),
            token: TOKEN.as_bytes().to_vec(),
            expires: None,
        }),
        ..LoginMemory::default()
    }
}

#[test]
fn a_refused_token_falls_back_to_the_password_on_the_same_stream_and_is_forgotten() {
    let memory = token_memory();
    let mut c = client(Some(&memory), None);
    sent(&mut c);
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(features(&["SCRAM-SHA-1"], BIND2_SM_FAST).as_bytes(), T0);
    assert!(sent(&mut c).contains("<fast xmlns='urn:xmpp:fast:0'/>"));
    c.handle_input(
        b"<failure xmlns='urn:xmpp:sasl:2'><credentials-expired xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>",
        T0,
    );
    let retry = sent(&mut c);
    assert!(
        retry.contains("mechanism='SCRAM-SHA-1'") && !retry.contains("<fast "),
        "{retry}"
    );
    assert!(
        retry.contains("<request-token"),
        "a new token is asked for: {retry}"
    );
    let mut server = Scram::start("SCRAM-SHA-1");
    let ServerStep::Challenge(first) = server.step(text_of(&retry, "initial-response").unwrap())
    else {
        panic!()
    };
    c.handle_input(
        format!(
            "<challenge xmlns='urn:xmpp:sasl:2'>{}</challenge>",
            encode(&first)
        )
        .as_bytes(),
        T0,
    );
    let response = sent(&mut c);
    let ServerStep::Success {
        additional_data, ..
    } = server.step(text_of(&response, "response").unwrap())
    else {
        panic!()
    };
    c.handle_input(
        format!(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>{}</additional-data><bound xmlns='urn:xmpp:bind:0'/>\
             <authorization-identifier>juliet@example.com/cli~Uk5h</authorization-identifier></success>{AFTER}",
            encode(&additional_data.unwrap())
        )
        .as_bytes(),
        T0,
    );
    let ev = events(&mut c);
    let o = outcome(&ev).unwrap_or_else(|| panic!("{ev:?}"));
    assert!(o.fast_token_rejected);
    let next = LoginMemory::from_outcome(o, &Default::default()).remembering(Some(&memory), true);
    assert_eq!(next.fast_token, None, "the refused token is forgotten");
}

#[test]
fn a_forged_fast_success_is_refused() {
    let mut c = client(Some(&token_memory()), None);
    sent(&mut c);
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(features(&["SCRAM-SHA-1"], BIND2_SM_FAST).as_bytes(), T0);
    sent(&mut c);
    c.handle_input(
        format!(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>{}</additional-data><bound xmlns='urn:xmpp:bind:0'/>\
             <authorization-identifier>juliet@example.com/x</authorization-identifier></success>",
            ht(b"Initiator")
        )
        .as_bytes(),
        T0,
    );
    let ev = events(&mut c);
    assert!(outcome(&ev).is_none());
    assert_eq!(
        closed_error(&ev),
        Some(&Error::Sasl(SaslError::ServerSignatureMismatch))
    );
}

#[test]
fn without_sasl2_the_client_uses_rfc_6120_sasl() {
    let mut c = client(None, None);
    sent(&mut c);
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(
        b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>",
        T0,
    );
    let out = sent(&mut c);
    assert!(
        out.contains("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"),
        "{out}"
    );
    assert!(!out.contains("authenticate"), "{out}");
}

#[test]
fn continue_is_refused_as_unsupported() {
    let mut c = client(None, None);
    sent(&mut c);
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(features(&["PLAIN"], "").as_bytes(), T0);
    assert!(sent(&mut c).contains("mechanism='PLAIN'"));
    c.handle_input(
        b"<continue xmlns='urn:xmpp:sasl:2'><tasks><task>TOTP-EXAMPLE</task></tasks></continue>",
        T0,
    );
    assert!(sent(&mut c).contains("<abort xmlns='urn:xmpp:sasl:2'/>"));
    let ev = events(&mut c);
    assert_eq!(
        closed_error(&ev),
        Some(&Error::Sasl(SaslError::ContinueRequired(String::from(
            "TOTP-EXAMPLE"
        ))))
    );
}

/// XEP-0474: the server hashed an offer with SCRAM-SHA-256 in it; the client received one
/// without (stripped on the way) and fails before sending its proof.
#[test]
fn a_stripped_mechanism_is_caught_by_the_downgrade_protection_hash() {
    use sha1::{Digest, Sha1};
    for (server_offer, caught) in [
        (&b"PLAIN\x1eSCRAM-SHA-1\x1eSCRAM-SHA-256"[..], true),
        (&b"PLAIN\x1eSCRAM-SHA-1"[..], false),
    ] {
        let mut c = client(None, None);
        sent(&mut c);
        c.handle_input(HEADER.as_bytes(), T0);
        c.handle_input(features(&["SCRAM-SHA-1", "PLAIN"], "").as_bytes(), T0);
        let authenticate = sent(&mut c);
        let mut server = Scram::start("SCRAM-SHA-1");
        let ServerStep::Challenge(first) =
            server.step(text_of(&authenticate, "initial-response").unwrap())
        else {
            panic!()
        };
        let mut first = String::from_utf8(first).unwrap();
        first.push_str(",h=");
        first.push_str(&encode(&Sha1::digest(server_offer)));
        c.handle_input(
            format!(
                "<challenge xmlns='urn:xmpp:sasl:2'>{}</challenge>",
                encode(first.as_bytes())
            )
            .as_bytes(),
            T0,
        );
        let out = sent(&mut c);
        let ev = events(&mut c);
        if caught {
            assert!(
                out.contains("<abort xmlns='urn:xmpp:sasl:2'/>") && !out.contains("<response"),
                "{out}"
            );
            assert_eq!(
                closed_error(&ev),
                Some(&Error::Sasl(SaslError::DowngradeDetected))
            );
        } else {
            assert!(out.contains("<response xmlns='urn:xmpp:sasl:2'>"), "{out}");
            assert_eq!(closed_error(&ev), None);
        }
    }
}

/// A first connection, logged in by SASL2 with XEP-0198 enabled inside Bind 2 (`sm-1`,
/// resumable), still open.
fn enabled_inline_session() -> Connection<impl Negotiator> {
    let mut first = client(None, None);
    sent(&mut first);
    let (_, v) = scram_login(&mut first, &features(&["SCRAM-SHA-1"], BIND2_SM_FAST));
    first.handle_input(
        format!(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>{v}</additional-data>\
             <bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='sm-1' resume='true'/></bound>\
             <authorization-identifier>juliet@example.com/cli~Uk5h</authorization-identifier></success>{AFTER}"
        )
        .as_bytes(),
        T0,
    );
    first
}

/// A session resumed inside SASL2 (XEP-0198 with SASL2): `<resume/>` rides in
/// `<authenticate/>`, `<resumed/>` in `<success/>`; the unacknowledged stanza is resent.
#[test]
fn a_session_resumes_inside_sasl2() {
    // A first connection: enabled inline, one stanza sent, then the link drops.
    let mut first = enabled_inline_session();
    first
        .send_stanza("<message to='a@b'><body>lost?</body></message>", T0)
        .unwrap();
    sent(&mut first);
    first.handle_eof(None);
    let state = first.take_sm_state().expect("a resumable session");

    let mut c = client(None, Some(state));
    sent(&mut c);
    let (authenticate, v) = scram_login(&mut c, &features(&["SCRAM-SHA-1"], BIND2_SM_FAST));
    assert_eq!(
        attr_of(&authenticate, "resume", "previd"),
        Some("sm-1"),
        "{authenticate}"
    );
    assert_eq!(
        attr_of(&authenticate, "resume", "h"),
        Some("0"),
        "{authenticate}"
    );
    c.handle_input(
        format!(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>{v}</additional-data>\
             <resumed xmlns='urn:xmpp:sm:3' previd='sm-1' h='0'/>\
             <authorization-identifier>juliet@example.com</authorization-identifier></success>{AFTER}"
        )
        .as_bytes(),
        T0,
    );
    let ev = events(&mut c);
    assert!(
        ev.iter().any(|e| matches!(e, Event::Resumed { h: 0, .. })),
        "{ev:?}"
    );
    let out = sent(&mut c);
    assert!(
        out.contains("<body>lost?</body>") && !out.contains("<iq"),
        "{out}"
    );
}

/// Our receiving entity offering SASL2, Bind 2 with inline stream management and XEP-0474,
/// against our client, back to back: one `<authenticate/>`, no restart, no bind `<iq/>`,
/// no `<enable/>` after it, the SCRAM `h=` checked and matching, both sides counting from
/// the inline `<enable/>`.
#[test]
fn our_client_and_receiver_negotiate_sasl2_bind2_and_inline_sm() {
    use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity, TlsOffer};
    let mut client = client(None, None);
    let mut config = ReceiverConfig::client_to_server(DOMAIN);
    config.secure_transport = true;
    config.tls = TlsOffer::None;
    config.sasl2 = true;
    config.downgrade_protection = true;
    config.stream_management = Some(SmConfig::default());
    let mut store = MemoryStore::new();
    store.add_password(USER.0, USER.1, ITERATIONS, &mut CountingRng(7));
    let mut server = Connection::new(
        ReceivingEntity::with_tls(config, CountingRng(1000), store, TlsInfo::default()),
        Framing::Tcp,
        ConnectionOptions::default(),
        T0,
    );
    let (mut client_events, mut server_events) = (Vec::new(), Vec::new());
    let mut wire = String::new();
    for _ in 0..20 {
        let c = sent(&mut client);
        let s = sent(&mut server);
        wire.push_str(&c);
        wire.push_str(&s);
        server.handle_input(c.as_bytes(), T0);
        client.handle_input(s.as_bytes(), T0);
        client_events.extend(events(&mut client));
        server_events.extend(events(&mut server));
        if client.is_bound() && server.is_bound() {
            break;
        }
    }
    let o = outcome(&client_events).unwrap_or_else(|| panic!("{client_events:?}\n{wire}"));
    assert!(o.sasl2);
    assert!(
        wire.contains("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-"),
        "{wire}"
    );
    assert!(
        !wire.contains("<iq") && !wire.contains("<enable xmlns='urn:xmpp:sm:3'/>"),
        "{wire}"
    );
    let jid = o.jid.clone().expect("bound");
    assert!(jid.starts_with("juliet@example.com/cli~"), "{jid}");
    assert_eq!(
        outcome(&server_events).and_then(|o| o.jid.clone()),
        Some(jid)
    );
    assert!(client_events
        .iter()
        .any(|e| matches!(e, Event::SmEnabled { id: Some(_), .. })));
    assert!(server_events
        .iter()
        .any(|e| matches!(e, Event::SmEnabled { id: Some(_), .. })));
    // XEP-0474: the server hashed its offer and the client found it unchanged.
    let challenge = text_of(&wire, "challenge").unwrap();
    let server_first = String::from_utf8(decode_strict(challenge).unwrap()).unwrap();
    assert!(server_first.contains(",h="), "{server_first}");
    // Both count from the inline `<enable/>`.
    assert_eq!(
        client.send_stanza("<message to='a@b'><body>1</body></message>", T0),
        Ok(Some(1))
    );
    assert!(client.request_ack(T0));
    server.handle_input(sent(&mut client).as_bytes(), T0);
    client.handle_input(sent(&mut server).as_bytes(), T0);
    assert!(events(&mut client)
        .iter()
        .any(|e| matches!(e, Event::Acked { h: 1, .. })));
}

/// A memory with a FAST token and the inline features of the offer `BIND2_SM_FAST`.
fn pipelining_memory() -> LoginMemory {
    LoginMemory {
        sasl2: true,
        sasl2_inline: Some(Sasl2Inline {
            bind2: true,
            bind2_sm: true,
            sm: true,
            fast_0rtt: false,
        }),
        ..token_memory()
    }
}

/// The FAST `<success/>` the scripted server answers the token with, and the features after.
fn fast_success() -> String {
    format!(
        "<success xmlns='urn:xmpp:sasl:2'><additional-data>{}</additional-data>\
         <bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='sm-2' resume='true'/></bound>\
         <authorization-identifier>juliet@example.com/cli~Uk5h</authorization-identifier></success>{AFTER}",
        ht(b"Responder")
    )
}

#[test]
fn a_kept_offer_sends_the_fast_authenticate_with_the_header() {
    let memory = pipelining_memory();
    let mut c = client(Some(&memory), None);
    let first = sent(&mut c);
    let header = first.find("<stream:stream").expect("a header");
    let authenticate = first
        .find("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='HT-SHA-256-NONE'>")
        .unwrap_or_else(|| panic!("<authenticate/> with the header: {first}"));
    assert!(header < authenticate, "{first}");
    assert!(
        first.contains("<bind xmlns='urn:xmpp:bind:0'><tag>cli</tag><enable xmlns='urn:xmpp:sm:3'"),
        "Bind 2 and <enable/> as the kept offer allows: {first}"
    );
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(features(&["SCRAM-SHA-1"], BIND2_SM_FAST).as_bytes(), T0);
    assert_eq!(
        sent(&mut c),
        "",
        "nothing more once the features confirm the offer"
    );
    c.handle_input(fast_success().as_bytes(), T0);
    let ev = events(&mut c);
    let o = outcome(&ev).unwrap_or_else(|| panic!("{ev:?}"));
    assert!(o.sasl2 && o.mechanism.is_none(), "{o:?}");
    assert_eq!(o.jid.as_deref(), Some("juliet@example.com/cli~Uk5h"));
    assert_eq!(
        o.sasl2_inline, memory.sasl2_inline,
        "the live offer kept again"
    );
    assert!(c.is_bound());
}

#[test]
fn a_session_resumes_inside_a_pipelined_authenticate() {
    let mut first = enabled_inline_session();
    first.handle_eof(None);
    let state = first.take_sm_state().expect("a resumable session");

    let mut c = client(Some(&pipelining_memory()), Some(state));
    let out = sent(&mut c);
    assert!(out.contains("<fast xmlns='urn:xmpp:fast:0'/>"), "{out}");
    assert_eq!(attr_of(&out, "resume", "previd"), Some("sm-1"), "{out}");
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(features(&["SCRAM-SHA-1"], BIND2_SM_FAST).as_bytes(), T0);
    c.handle_input(
        format!(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>{}</additional-data>\
             <resumed xmlns='urn:xmpp:sm:3' previd='sm-1' h='0'/>\
             <authorization-identifier>juliet@example.com</authorization-identifier></success>{AFTER}",
            ht(b"Responder")
        )
        .as_bytes(),
        T0,
    );
    let ev = events(&mut c);
    assert!(
        ev.iter().any(|e| matches!(e, Event::Resumed { h: 0, .. })),
        "{ev:?}"
    );
}

/// The pipelined `<authenticate/>` against a live offer that lacks `inline` (or SASL2):
/// the SASL2 `<abort/>`, the closing tag, and the error naming what is missing.
fn pipelined_against(offer: &str, missing: &'static str) {
    let mut c = client(Some(&pipelining_memory()), None);
    assert!(sent(&mut c).contains("<authenticate "));
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(offer.as_bytes(), T0);
    let out = sent(&mut c);
    assert!(
        out.contains("<abort xmlns='urn:xmpp:sasl:2'/>") && out.ends_with("</stream:stream>"),
        "{out}"
    );
    let ev = events(&mut c);
    assert_eq!(
        closed_error(&ev),
        Some(&Error::Sasl(SaslError::PipelinedNotOffered(missing))),
        "{ev:?}"
    );
    assert!(outcome(&ev).is_none());
}

#[test]
fn a_pipelined_token_is_refused_by_an_offer_without_its_mechanism() {
    let no_fast =
        "<bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:sm:3'/></inline></bind>\
        <sm xmlns='urn:xmpp:sm:3'/>";
    pipelined_against(
        &features(&["SCRAM-SHA-1"], no_fast),
        "the FAST token's mechanism",
    );
    let other = "<bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:sm:3'/></inline></bind>\
        <sm xmlns='urn:xmpp:sm:3'/><fast xmlns='urn:xmpp:fast:0'><mechanism>HT-SHA-256-EXPR</mechanism></fast>";
    pipelined_against(
        &features(&["SCRAM-SHA-1"], other),
        "the FAST token's mechanism",
    );
}

#[test]
fn a_pipelined_authenticate_is_refused_by_an_offer_without_sasl2_or_bind2() {
    pipelined_against(
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
         <mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>",
        "SASL2",
    );
    let no_bind2 = "<sm xmlns='urn:xmpp:sm:3'/><fast xmlns='urn:xmpp:fast:0'>\
        <mechanism>HT-SHA-256-NONE</mechanism></fast>";
    pipelined_against(&features(&["SCRAM-SHA-1"], no_bind2), "Bind 2");
    let no_sm_in_bind2 = "<bind xmlns='urn:xmpp:bind:0'/><sm xmlns='urn:xmpp:sm:3'/>\
        <fast xmlns='urn:xmpp:fast:0'><mechanism>HT-SHA-256-NONE</mechanism></fast>";
    pipelined_against(
        &features(&["SCRAM-SHA-1"], no_sm_in_bind2),
        "stream management inside Bind 2",
    );
}

const PRE_TLS_HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='s0' version='1.0'>";
const PROCEED: &str = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

#[test]
fn on_starttls_the_fast_authenticate_goes_with_the_header_after_tls_only() {
    let mut c = client_over(false, Some(&pipelining_memory()), None, UA);
    let first = sent(&mut c);
    assert!(
        first.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        "<starttls/> with the first header: {first}"
    );
    assert!(
        !first.contains("authenticate") && !first.contains("juliet"),
        "{first}"
    );
    // The pre-TLS offer (with SASL2 in it) changes nothing: only TLS comes next.
    c.handle_input(PRE_TLS_HEADER.as_bytes(), T0);
    let pre_tls = features(&["SCRAM-SHA-1"], BIND2_SM_FAST).replace(
        "<stream:features>",
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
    );
    c.handle_input(pre_tls.as_bytes(), T0);
    c.handle_input(PROCEED.as_bytes(), T0);
    assert_eq!(sent(&mut c), "", "nothing after <proceed/> in plaintext");
    c.handle_tls_established(TlsInfo::default(), T0);
    let protected = sent(&mut c);
    assert!(
        protected.contains("<stream:stream") && protected.contains("mechanism='HT-SHA-256-NONE'"),
        "header and <authenticate/> together after TLS: {protected}"
    );
    c.handle_input(HEADER.as_bytes(), T0);
    c.handle_input(features(&["SCRAM-SHA-1"], BIND2_SM_FAST).as_bytes(), T0);
    c.handle_input(fast_success().as_bytes(), T0);
    assert!(outcome(&events(&mut c)).is_some_and(|o| o.secure && o.sasl2));
}

#[test]
fn a_stripped_starttls_after_pipelining_it_sends_nothing_in_plaintext() {
    let mut c = client_over(false, Some(&pipelining_memory()), None, UA);
    assert!(sent(&mut c).contains("<starttls "));
    c.handle_input(PRE_TLS_HEADER.as_bytes(), T0);
    c.handle_input(
        features(&["SCRAM-SHA-1", "PLAIN"], BIND2_SM_FAST).as_bytes(),
        T0,
    );
    assert_eq!(
        sent(&mut c),
        "</stream:stream>",
        "no token, no <authenticate/>, nothing but the closing tag"
    );
    assert_eq!(
        closed_error(&events(&mut c)),
        Some(&Error::StartTlsNotOffered)
    );
}

/// XEP-0484 §3.4: where the server allows FAST in TLS 0-RTT (`tls-0rtt`), `<fast/>` carries
/// the attempt's `count` (the replay rule); elsewhere none. The live offer's permission is
/// kept for the next login.
#[test]
fn the_fast_count_goes_where_the_server_allows_0_rtt() {
    let allowed = LoginMemory {
        sasl2_inline: Some(Sasl2Inline {
            fast_0rtt: true,
            ..pipelining_memory().sasl2_inline.unwrap()
        }),
        fast_count: 4,
        ..pipelining_memory()
    };
    let mut c = client(Some(&allowed), None);
    let out = sent(&mut c);
    assert!(
        out.contains("<fast xmlns='urn:xmpp:fast:0' count='4'/>"),
        "{out}"
    );
    c.handle_input(HEADER.as_bytes(), T0);
    let zero_rtt = BIND2_SM_FAST.replace(
        "<fast xmlns='urn:xmpp:fast:0'>",
        "<fast xmlns='urn:xmpp:fast:0' tls-0rtt='true'>",
    );
    c.handle_input(features(&["SCRAM-SHA-1"], &zero_rtt).as_bytes(), T0);
    c.handle_input(fast_success().as_bytes(), T0);
    let ev = events(&mut c);
    let o = outcome(&ev).unwrap_or_else(|| panic!("{ev:?}"));
    assert!(o.sasl2_inline.is_some_and(|i| i.fast_0rtt), "{o:?}");

    let not_allowed = LoginMemory {
        fast_count: 4,
        ..pipelining_memory()
    };
    let out = sent(&mut client(Some(&not_allowed), None));
    assert!(out.contains("<fast xmlns='urn:xmpp:fast:0'/>"), "{out}");
}

/// A user store that issues FAST tokens (XEP-0484) from a table in memory, on a clock the
/// test moves.
struct TokenStore {
    users: MemoryStore,
    tokens: core::cell::RefCell<FastTokens>,
    now: core::cell::Cell<u64>,
    /// Each receiver's random numbers start elsewhere.
    streams: core::cell::Cell<u64>,
}

/// Tokens live this long (seconds) in [`TokenStore`].
const LIFETIME: u64 = 1000;

impl TokenStore {
    fn new() -> Self {
        let mut users = MemoryStore::new();
        users.add_password(USER.0, USER.1, ITERATIONS, &mut CountingRng(7));
        TokenStore {
            users,
            tokens: core::cell::RefCell::new(FastTokens::new(16, LIFETIME)),
            now: core::cell::Cell::new(1_800_000_000),
            streams: core::cell::Cell::new(0),
        }
    }
}

impl CredentialStore for TokenStore {
    fn scram_credentials(
        &self,
        authcid: &str,
        hash: ScramHash,
    ) -> Result<ScramCredentials, SaslFailure> {
        self.users.scram_credentials(authcid, hash)
    }

    fn fast_tokens(&self, f: &mut dyn FnMut(&mut FastTokens, u64)) -> bool {
        f(&mut self.tokens.borrow_mut(), self.now.get());
        true
    }
}

/// Our receiving entity offering SASL2, Bind 2, inline stream management and FAST, on a
/// TLS stream without channel binding.
fn receiver(store: &TokenStore) -> Connection<impl Negotiator + '_> {
    receiver_with(store, false)
}

/// [`receiver`], advertising FAST in TLS 0-RTT (`tls-0rtt`) when `fast_0rtt`.
fn receiver_with(store: &TokenStore, fast_0rtt: bool) -> Connection<impl Negotiator + '_> {
    use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity, TlsOffer};
    let mut config = ReceiverConfig::client_to_server(DOMAIN);
    config.fast_0rtt = fast_0rtt;
    config.secure_transport = true;
    config.tls = TlsOffer::None;
    config.sasl2 = true;
    config.downgrade_protection = true;
    config.stream_management = Some(SmConfig::default());
    store.streams.set(store.streams.get() + 1);
    let rng = CountingRng(store.streams.get() << 32);
    Connection::new(
        ReceivingEntity::with_tls(config, rng, store, TlsInfo::default()),
        Framing::Tcp,
        ConnectionOptions::default(),
        T0,
    )
}

/// What went over the wire and each side's events.
#[derive(Default)]
struct Run {
    wire: String,
    client: Vec<Event>,
    server: Vec<Event>,
}

/// Runs client against server until both are bound (or 20 rounds); a `<resume/>` is
/// answered from `detached`, as a server's session table does.
fn pump<C: Negotiator, S: Negotiator>(
    client: &mut Connection<C>,
    server: &mut Connection<S>,
    detached: &mut Option<SmState>,
) -> Run {
    let mut run = Run::default();
    for _ in 0..20 {
        let c = sent(client);
        let s = sent(server);
        run.wire.push_str(&c);
        run.wire.push_str(&s);
        server.handle_input(c.as_bytes(), T0);
        client.handle_input(s.as_bytes(), T0);
        while let Some(e) = server.poll_event() {
            if let Event::ResumeRequested { previd, .. } = &e {
                match detached
                    .take()
                    .filter(|s| s.previd() == Some(previd.as_str()))
                {
                    Some(state) => *detached = server.resume(state, T0),
                    None => server.refuse_resume(T0),
                }
            }
            run.server.push(e);
        }
        run.client.extend(events(client));
        if client.is_bound() && server.is_bound() && c.is_empty() && s.is_empty() {
            break;
        }
    }
    run
}

/// The memory our client keeps after `run` (its outcome over `earlier`).
fn remembered(run: &Run, earlier: Option<&LoginMemory>) -> LoginMemory {
    let o = outcome(&run.client).unwrap_or_else(|| panic!("{:?}\n{}", run.client, run.wire));
    let memory = LoginMemory {
        user_agent_id: Some(String::from(UA)),
        ..LoginMemory::from_outcome(o, &Default::default())
    };
    memory.remembering(earlier, o.fast_token_rejected)
}

/// One login of our client (with `memory`) to our receiver over `store`.
fn login(store: &TokenStore, memory: Option<&LoginMemory>) -> Run {
    let mut c = client(memory, None);
    let mut s = receiver(store);
    pump(&mut c, &mut s, &mut None)
}

/// Our receiver issues a token to our client's `<request-token/>`, with its expiry; the
/// next login uses it (one `<authenticate/>`, no SCRAM challenge), our client checks the
/// server's proof; far from its expiry the token is not replaced.
#[test]
fn our_receiver_issues_a_fast_token_and_our_client_logs_in_with_it() {
    let store = TokenStore::new();
    let first = login(&store, None);
    assert!(
        first.wire.contains(
            "<fast xmlns='urn:xmpp:fast:0'><mechanism>HT-SHA-256-NONE</mechanism></fast>"
        ),
        "{}",
        first.wire
    );
    assert!(first.wire.contains("<request-token"), "{}", first.wire);
    let memory = remembered(&first, None);
    let token = memory.fast_token.clone().expect("a token issued");
    assert_eq!(token.mechanism, "HT-SHA-256-NONE");
    assert_eq!(token.expires.map(|t| t.0), Some(store.now.get() + LIFETIME));

    store.now.set(store.now.get() + 10);
    let second = login(&store, Some(&memory));
    let o = outcome(&second.client).unwrap_or_else(|| panic!("{}", second.wire));
    assert_eq!(o.mechanism, None, "a token, not a SASL mechanism");
    assert!(!o.fast_token_rejected);
    assert!(o
        .jid
        .as_deref()
        .is_some_and(|j| j.starts_with("juliet@example.com/")));
    assert!(
        second.wire.contains("mechanism='HT-SHA-256-NONE'")
            && !second.wire.contains("<challenge")
            && !second.wire.contains("<token "),
        "{}",
        second.wire
    );
    assert!(outcome(&second.server).is_some_and(|o| o.jid == o.jid));
}

/// XEP-0386 §4 with XEP-0388's `<user-agent id>`: the resource Bind 2 makes is the same for
/// the same account and user agent on every login (the reconnecting device gets its full JID
/// back), different for another user agent, and not the id itself.
#[test]
fn bind2_gives_a_user_agent_the_same_resource_on_every_login() {
    let store = TokenStore::new();
    let jid = |run: &Run| {
        let o = outcome(&run.client).unwrap_or_else(|| panic!("{}", run.wire));
        o.jid.clone().expect("bound")
    };
    let first = jid(&login(&store, None));
    let again = jid(&login(&store, None));
    assert_eq!(first, again);
    assert!(first.starts_with("juliet@example.com/cli~"), "{first}");
    assert!(!first.contains(UA), "{first}");

    let mut other = client_over(true, None, None, "another-device");
    let run = pump(&mut other, &mut receiver(&store), &mut None);
    let second_device = jid(&run);
    assert!(second_device.starts_with("juliet@example.com/cli~"));
    assert_ne!(second_device, first);
}

/// XEP-0484 §"Token rotation": a token used with less than a quarter of its life left is
/// replaced in the success; the replaced one still logs in (the new one may have been
/// lost) and is then replaced again; once the newest was used the older ones are refused,
/// and our client falls back to the password on the same stream.
#[test]
fn tokens_are_rotated_near_expiry_and_the_previous_one_lasts_until_the_new_one_is_used() {
    let store = TokenStore::new();
    let a = remembered(&login(&store, None), None);
    store.now.set(store.now.get() + LIFETIME * 4 / 5);
    let run = login(&store, Some(&a));
    assert!(
        run.wire.contains("<token xmlns='urn:xmpp:fast:0' expiry='"),
        "{}",
        run.wire
    );
    let b = remembered(&run, Some(&a));
    assert_ne!(b.fast_token, a.fast_token, "rotated");

    // The client lost B and logs in with A again: accepted, and C replaces B.
    let run = login(&store, Some(&a));
    let c = remembered(&run, Some(&a));
    assert!(outcome(&run.client).is_some_and(|o| o.mechanism.is_none()));
    assert!(
        c.fast_token != a.fast_token && c.fast_token != b.fast_token,
        "{}",
        run.wire
    );
    // B is gone: refused; the password logs in on the same stream and D comes.
    let run = login(&store, Some(&b));
    assert!(
        outcome(&run.client).is_some_and(|o| o.fast_token_rejected),
        "{}",
        run.wire
    );
    let d = remembered(&run, Some(&b));
    // D logs in, far from its expiry: no new token; after that every older one is refused.
    let run = login(&store, Some(&d));
    assert!(!run.wire.contains("<token "), "{}", run.wire);
    assert!(outcome(&run.client).is_some_and(|o| o.mechanism.is_none() && !o.fast_token_rejected));
    for old in [&a, &c] {
        let run = login(&store, Some(old));
        let o = outcome(&run.client).unwrap_or_else(|| panic!("{}", run.wire));
        assert!(o.fast_token_rejected && o.mechanism == Some(Mechanism::ScramSha256));
    }
    // Expired: refused as well.
    store.now.set(store.now.get() + LIFETIME);
    let run = login(&store, Some(&d));
    assert!(outcome(&run.client).is_some_and(|o| o.fast_token_rejected));
}

fn ht_proof(token: &str, label: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).unwrap();
    m.update(label);
    encode(&m.finalize().into_bytes())
}

/// A hand-written FAST `<authenticate/>` with `fast` (the `<fast/>` element's attributes)
/// and the initial response `proof`, to a new stream of our receiver: what it answered.
fn raw_fast_login(store: &TokenStore, fast: &str, proof: &str) -> String {
    let mut s = receiver(store);
    s.handle_input(
        format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             to='{DOMAIN}' version='1.0'>"
        )
        .as_bytes(),
        T0,
    );
    sent(&mut s);
    let mut ir = b"juliet\0".to_vec();
    ir.extend(decode_strict(proof).unwrap());
    s.handle_input(
        format!(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='HT-SHA-256-NONE'>\
             <initial-response>{}</initial-response><user-agent id='{UA}'/>\
             <fast xmlns='urn:xmpp:fast:0'{fast}/></authenticate>",
            encode(&ir)
        )
        .as_bytes(),
        T0,
    );
    sent(&mut s)
}

/// A forged proof is refused; `count` must grow with every use (the replay rule XEP-0484
/// sets for TLS 0-RTT); `invalidate` ends the token after the login it rides on; the
/// server proves it knows the token.
#[test]
fn forged_proofs_replayed_counts_and_invalidated_tokens_are_refused() {
    let store = TokenStore::new();
    let token = store
        .tokens
        .borrow_mut()
        .issue(
            "juliet@example.com",
            UA,
            xmpp_handshake_core::sasl::HtMechanism::Sha256None,
            &mut CountingRng(5),
            store.now.get(),
        )
        .unwrap()
        .token;
    let proof = ht_proof(&token, b"Initiator");
    let forged = ht_proof("secret-token:guessed", b"Initiator");
    let refused = "<failure xmlns='urn:xmpp:sasl:2'><not-authorized";
    assert!(raw_fast_login(&store, "", &forged).contains(refused));

    let ok = raw_fast_login(&store, " count='5'", &proof);
    assert!(ok.contains("<success"), "{ok}");
    assert_eq!(
        text_of(&ok, "additional-data"),
        Some(ht_proof(&token, b"Responder").as_str()),
        "{ok}"
    );
    for replay in [" count='5'", " count='4'"] {
        let out = raw_fast_login(&store, replay, &proof);
        assert!(out.contains(refused) && out.contains("replay"), "{out}");
    }
    assert!(raw_fast_login(&store, " count='6' invalidate='true'", &proof).contains("<success"));
    assert!(raw_fast_login(&store, " count='7'", &proof).contains(refused));
    assert!(raw_fast_login(&store, "", &proof).contains(refused));
}

/// XEP-0198 inside SASL2 on our receiver: a `<resume/>` in `<authenticate/>` resumes the
/// detached session; `<resumed/>` rides in `<success/>`; each side resends exactly what
/// the other had not acknowledged, and nothing is bound anew.
#[test]
fn inline_resume_resends_exactly_the_unacknowledged() {
    let store = TokenStore::new();
    let mut c = client(None, None);
    let mut s = receiver(&store);
    let run = pump(&mut c, &mut s, &mut None);
    assert!(c.is_bound() && s.is_bound(), "{}", run.wire);
    // The server sends 1, asks for an ack and gets it; then 2 and 3 are lost with the link;
    // the client's "up" is lost too.
    s.send_stanza(
        "<message to='juliet@example.com'><body>1</body></message>",
        T0,
    )
    .unwrap();
    assert!(s.request_ack(T0));
    c.handle_input(sent(&mut s).as_bytes(), T0);
    s.handle_input(sent(&mut c).as_bytes(), T0);
    assert!(events(&mut s)
        .iter()
        .any(|e| matches!(e, Event::Acked { h: 1, .. })));
    for body in ["2", "3"] {
        s.send_stanza(
            &format!("<message to='juliet@example.com'><body>{body}</body></message>"),
            T0,
        )
        .unwrap();
    }
    c.send_stanza(
        "<message to='romeo@example.net'><body>up</body></message>",
        T0,
    )
    .unwrap();
    sent(&mut s);
    sent(&mut c);
    events(&mut c);
    c.handle_eof(None);
    s.handle_eof(None);
    let client_state = c.take_sm_state().expect("client session");
    let mut detached = s.take_sm_state();

    let mut c = client(None, Some(client_state));
    let mut s = receiver(&store);
    let run = pump(&mut c, &mut s, &mut detached);
    assert!(detached.is_none(), "the session was taken");
    assert!(
        run.wire.contains("<resume xmlns='urn:xmpp:sm:3'")
            && run.wire.contains("<resumed xmlns='urn:xmpp:sm:3'")
            && !run.wire.contains("<bound"),
        "{}",
        run.wire
    );
    assert!(
        run.client
            .iter()
            .any(|e| matches!(e, Event::Resumed { h: 0, .. })),
        "{:?}",
        run.client
    );
    assert!(
        run.server
            .iter()
            .any(|e| matches!(e, Event::Resumed { h: 1, .. })),
        "{:?}",
        run.server
    );
    let bodies = |events: &[Event]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Stanza(st) => st.parse(|n| {
                    n.descendants()
                        .find(|d| d.has_tag_name("body"))
                        .and_then(|b| b.text())
                        .map(String::from)
                })?,
                _ => None,
            })
            .collect()
    };
    assert_eq!(bodies(&run.client), ["2", "3"], "{}", run.wire);
    assert_eq!(bodies(&run.server), ["up"], "{}", run.wire);
}

/// An inline `<resume/>` of a session that is not there: `<failed/>` inside `<success/>`
/// and Bind 2 binds a new resource in the same answer.
#[test]
fn a_failed_inline_resume_goes_on_with_bind2() {
    let store = TokenStore::new();
    let mut c = client(None, None);
    let mut s = receiver(&store);
    pump(&mut c, &mut s, &mut None);
    c.handle_eof(None);
    let mut c = client(None, Some(c.take_sm_state().unwrap()));
    let mut s = receiver(&store);
    let run = pump(&mut c, &mut s, &mut None);
    assert!(
        run.wire
            .contains("<failed xmlns='urn:xmpp:sm:3'><item-not-found")
            && run.wire.contains("<bound xmlns='urn:xmpp:bind:0'>"),
        "{}",
        run.wire
    );
    assert!(c.is_bound() && s.is_bound());
    assert!(
        run.client
            .iter()
            .any(|e| matches!(e, Event::ResumeFailed { .. })),
        "{:?}",
        run.client
    );
}

/// A token of juliet's on [`UA`] in `store`, and the proof of a login with it.
fn issued_token(store: &TokenStore) -> (String, String) {
    let token = store
        .tokens
        .borrow_mut()
        .issue(
            "juliet@example.com",
            UA,
            xmpp_handshake_core::sasl::HtMechanism::Sha256None,
            &mut CountingRng(9),
            store.now.get(),
        )
        .unwrap()
        .token;
    let mut ir = b"juliet\0".to_vec();
    ir.extend(decode_strict(&ht_proof(&token, b"Initiator")).unwrap());
    (token, encode(&ir))
}

const CLIENT_HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

/// A FAST `<authenticate/>` with `initial` and `extra` children.
fn fast_authenticate(initial: &str, extra: &str) -> String {
    format!(
        "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='HT-SHA-256-NONE'>\
         <initial-response>{initial}</initial-response><user-agent id='{UA}'/>\
         <bind xmlns='urn:xmpp:bind:0'/>{extra}</authenticate>"
    )
}

/// `early` as TLS 0-RTT early data to a new stream of our receiver: what it answered and
/// its events.
fn early_login(store: &TokenStore, early: &str) -> (String, Vec<Event>) {
    let mut s = receiver_with(store, true);
    s.handle_early_data(early.as_bytes(), T0);
    (sent(&mut s), events(&mut s))
}

/// XEP-0484 §3.4 on the receiving side of TLS 1.3 0-RTT: `tls-0rtt` is advertised only
/// when configured; in early data (which an attacker may replay) only the header and a
/// FAST `<authenticate/>` with a `count` above the last are admitted: no count, a token
/// request or invalidation, another mechanism get SASL2 `<failure/>`; a stanza (even
/// behind the login), another element, or early data ending inside an element get
/// `<policy-violation/>`. The same elements sent after the handshake are served as usual.
#[test]
fn only_a_counted_fast_authenticate_is_admitted_in_tls_early_data() {
    let store = TokenStore::new();
    let (_, initial) = issued_token(&store);
    let advertised = |fast_0rtt: bool| {
        let mut s = receiver_with(&store, fast_0rtt);
        s.handle_input(CLIENT_HEADER.as_bytes(), T0);
        sent(&mut s)
    };
    assert!(advertised(true).contains("<fast xmlns='urn:xmpp:fast:0' tls-0rtt='true'>"));
    assert!(!advertised(false).contains("tls-0rtt"));

    let counted = |n: u32| format!("<fast xmlns='urn:xmpp:fast:0' count='{n}'/>");
    let (out, ev) = early_login(
        &store,
        &format!(
            "{CLIENT_HEADER}{}",
            fast_authenticate(&initial, &counted(1))
        ),
    );
    assert!(out.contains("<success xmlns='urn:xmpp:sasl:2'>"), "{out}");
    assert!(outcome(&ev).is_some(), "{ev:?}");

    let refused = |out: &str, why: &str| {
        assert!(
            out.contains("<failure xmlns='urn:xmpp:sasl:2'><not-authorized") && out.contains(why),
            "{why}: {out}"
        );
    };
    let fast_uncounted = "<fast xmlns='urn:xmpp:fast:0'/>";
    for (extra, why) in [
        ("", "needs a count"),
        (fast_uncounted, "needs a count"),
        (
            "<fast xmlns='urn:xmpp:fast:0' count='9'/>\
             <request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>",
            "no token request",
        ),
        (
            "<fast xmlns='urn:xmpp:fast:0' count='9' invalidate='true'/>",
            "no token request or invalidation",
        ),
        (&counted(1), "replay"),
    ] {
        let (out, _) = early_login(
            &store,
            &format!("{CLIENT_HEADER}{}", fast_authenticate(&initial, extra)),
        );
        refused(&out, why);
    }
    let (out, _) = early_login(
        &store,
        &format!(
            "{CLIENT_HEADER}<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'>\
             <initial-response>{}</initial-response></authenticate>",
            encode(b"n,,n=juliet,r=abcdefgh")
        ),
    );
    refused(&out, "only a FAST token login");

    let violation = |early: String| {
        let (out, ev) = early_login(&store, &early);
        assert!(out.contains("<policy-violation"), "{early}: {out}");
        assert!(
            matches!(closed_error(&ev), Some(Error::StreamErrorSent(e)) if e.condition.name() == "policy-violation"),
            "{ev:?}"
        );
        assert!(!ev.iter().any(|e| matches!(e, Event::Stanza(_))), "{ev:?}");
        out
    };
    let message = "<message to='romeo@example.com'><body>replayed</body></message>";
    violation(format!("{CLIENT_HEADER}{message}"));
    let behind = violation(format!(
        "{CLIENT_HEADER}{}{message}",
        fast_authenticate(&initial, &counted(2))
    ));
    assert!(
        behind.contains("<success"),
        "the login itself was fine: {behind}"
    );
    let whole = format!(
        "{CLIENT_HEADER}{}",
        fast_authenticate(&initial, &counted(3))
    );
    violation(whole[..whole.len() - 20].to_string());

    // After the handshake (not early) the same uncounted login is served.
    let mut s = receiver_with(&store, true);
    s.handle_early_data(CLIENT_HEADER.as_bytes(), T0);
    s.handle_input(fast_authenticate(&initial, fast_uncounted).as_bytes(), T0);
    let out = sent(&mut s);
    assert!(out.contains("<success xmlns='urn:xmpp:sasl:2'>"), "{out}");
}
