//! SASL and binding rules (RFC 6120 §6-7) on the sans-IO machines, each named after its rule.

mod support;

use support::*;
use xmpp_handshake_core::connection::{Event, Negotiator, TlsInfo};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::jid::{DomainError, JidError};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sasl::{
    base64, Credentials, Mechanism, MechanismSet, MemoryStore, SaslPolicy, ServerOptions,
};
use xmpp_handshake_core::stream::error::StreamErrorCondition as C;
use xmpp_handshake_core::Error;

const R_HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.com' version='1.0'>";
const PROCEED: &str = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const I_HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

fn features(inner: &str) -> String {
    format!("<stream:features>{inner}</stream:features>")
}

fn mechanisms(names: &[&str]) -> String {
    let list: String = names
        .iter()
        .map(|n| format!("<mechanism>{n}</mechanism>"))
        .collect();
    format!("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{list}</mechanisms>")
}

fn sasl_client() -> InitiatingEntity<CountingRng> {
    let mut config = InitiatorConfig::client("example.com");
    config.pipeline_starttls = false;
    config.sasl = Some(ClientSasl {
        credentials: Credentials::password("juliet", "r0m30"),
        policy: SaslPolicy::default(),
        resource: None,
        pipeline_mechanism: None,
        pipeline_offer: None,
        pipeline_bind: true,
        sasl2: Default::default(),
    });
    InitiatingEntity::new(config, CountingRng(1))
}

#[test]
fn no_sasl_before_tls_when_required() {
    let mut i = sasl_client();
    output(&mut i);
    let pre = features(&format!(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>{}",
        mechanisms(&["SCRAM-SHA-1", "PLAIN"])
    ));
    feed(&mut i, format!("{R_HEADER}{pre}").as_bytes(), 5).unwrap();
    let out = output(&mut i);
    assert_eq!(out, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
}

#[test]
fn mechanism_chosen_from_post_tls_offer_only() {
    // Before TLS a MITM could add or strip mechanisms; only the protected list counts.
    let mut i = sasl_client();
    output(&mut i);
    let pre = features(&format!(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>{}",
        mechanisms(&["SCRAM-SHA-512", "PLAIN"])
    ));
    feed(&mut i, format!("{R_HEADER}{pre}{PROCEED}").as_bytes(), 4096).unwrap();
    output(&mut i);
    i.tls_established(TlsInfo::default()).unwrap();
    output(&mut i);
    let post = features(&mechanisms(&["SCRAM-SHA-1"]));
    feed(&mut i, format!("{R_HEADER}{post}").as_bytes(), 4096).unwrap();
    let out = output(&mut i);
    assert!(
        out.starts_with("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"),
        "{out}"
    );
}

#[test]
fn unknown_mechanisms_are_ignored() {
    let mut i = sasl_client();
    output(&mut i);
    let pre = features("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    feed(&mut i, format!("{R_HEADER}{pre}{PROCEED}").as_bytes(), 4096).unwrap();
    i.tls_established(TlsInfo::default()).unwrap();
    output(&mut i);
    let post = features(&mechanisms(&["KERBEROS_V4", "X-UNKNOWN", "PLAIN"]));
    feed(&mut i, format!("{R_HEADER}{post}").as_bytes(), 4096).unwrap();
    assert!(output(&mut i).contains("mechanism='PLAIN'"));
}

/// A receiving entity on an already-protected transport (Direct TLS), PLAIN offered.
fn secure_server() -> ReceivingEntity<CountingRng, MemoryStore> {
    let mut config = ReceiverConfig::client_to_server("example.com");
    config.secure_transport = true;
    config.sasl = Some(ServerOptions {
        channel_binding: false,
        ..ServerOptions::default()
    });
    let mut store = MemoryStore::new();
    store.add_password("juliet", "r0m30", 4096, &mut CountingRng(9));
    ReceivingEntity::with_tls(config, CountingRng(0), store, TlsInfo::default())
}

fn plain_auth(user: &str, password: &str) -> String {
    let payload = format!("\0{user}\0{password}");
    format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        base64::encode(payload.as_bytes())
    )
}

#[test]
fn receiver_limits_failed_authentications_per_stream() {
    let mut r = secure_server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    for attempt in 1..=3 {
        let res = feed(&mut r, plain_auth("juliet", "wrong").as_bytes(), 4096);
        let out = output(&mut r);
        assert!(
            out.starts_with("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"),
            "{out}"
        );
        if attempt < 3 {
            res.unwrap();
        } else {
            assert!(
                matches!(res, Err(Error::StreamErrorSent(e)) if e.condition == C::PolicyViolation)
            );
            assert!(out.ends_with("</stream:stream>"));
        }
    }
}

#[test]
fn incorrect_base64_gets_incorrect_encoding() {
    let mut r = secure_server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    let auth =
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>not base64!</auth>";
    feed(&mut r, auth.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<incorrect-encoding/>"));
}

#[test]
fn unoffered_mechanism_gets_invalid_mechanism() {
    let mut r = secure_server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-FOO'>=</auth>";
    feed(&mut r, auth.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<invalid-mechanism/>"));
}

#[test]
fn after_success_new_id_bind_offered_and_no_sasl_again() {
    let mut r = secure_server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    let first = output(&mut r);
    feed(&mut r, plain_auth("juliet", "r0m30").as_bytes(), 4096).unwrap();
    assert_eq!(
        output(&mut r),
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'></success>"
    );
    feed(&mut r, I_HEADER.as_bytes(), 1).unwrap();
    let second = output(&mut r);
    let id = |s: &str| attr(&parse_sent(s)[0], "id").unwrap().to_string();
    assert_ne!(id(&first), id(&second));
    assert!(second.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"));
    assert!(!second.contains("mechanisms") && !second.contains("starttls"));
}

#[test]
fn stanza_before_bind_gets_not_authorized() {
    let mut r = secure_server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    feed(&mut r, plain_auth("juliet", "r0m30").as_bytes(), 4096).unwrap();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    let res = feed(
        &mut r,
        b"<message to='romeo@example.net'><body>x</body></message>",
        4096,
    );
    assert!(matches!(res, Err(Error::StreamErrorSent(e)) if e.condition == C::NotAuthorized));
}

#[test]
fn bind_assigns_requested_resource_and_rejects_empty_one() {
    let mut r = secure_server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    feed(&mut r, plain_auth("juliet", "r0m30").as_bytes(), 4096).unwrap();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    let empty = "<iq type='set' id='b0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource></resource></bind></iq>";
    feed(&mut r, empty.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<bad-request"));
    let req = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind></iq>";
    feed(&mut r, req.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<jid>juliet@example.com/balcony</jid>"));
    let (_, ev) = events(&mut r);
    assert!(ev.iter().any(|e| matches!(e, Event::Negotiated(o) if o.jid.as_deref() == Some("juliet@example.com/balcony"))));
}

/// Runs both machines against each other without TLS (policy Disabled, SCRAM allowed in
/// the clear for this test only), passing each server write through `tamper`.
fn pump(
    i: &mut InitiatingEntity<CountingRng>,
    r: &mut ReceivingEntity<CountingRng, MemoryStore>,
    tamper: impl Fn(String) -> String,
) -> Result<(), Error> {
    for _ in 0..20 {
        let to_r = output(i);
        if !to_r.is_empty() {
            feed(r, to_r.as_bytes(), 4096)?;
        }
        let to_i = tamper(output(r));
        if !to_i.is_empty() {
            feed(i, to_i.as_bytes(), 4096)?;
        }
        let (_, ev) = events(i);
        if ev.iter().any(|e| matches!(e, Event::Negotiated(_))) {
            return Ok(());
        }
    }
    panic!("no progress");
}

fn plaintext_pair() -> (
    InitiatingEntity<CountingRng>,
    ReceivingEntity<CountingRng, MemoryStore>,
) {
    let mut config = InitiatorConfig::client("example.com");
    config.tls = xmpp_handshake_core::starttls::TlsPolicy::Disabled;
    config.sasl = Some(ClientSasl {
        credentials: Credentials::password("juliet", "r0m30"),
        policy: SaslPolicy::default(),
        resource: Some("balcony".into()),
        pipeline_mechanism: None,
        pipeline_offer: None,
        pipeline_bind: true,
        sasl2: Default::default(),
    });
    let i = InitiatingEntity::new(config, CountingRng(1));
    let mut sconfig = ReceiverConfig::client_to_server("example.com");
    sconfig.tls = xmpp_handshake_core::receiver::TlsOffer::None;
    let mut store = MemoryStore::new();
    store.add_password("juliet", "r0m30", 4096, &mut CountingRng(9));
    let r = ReceivingEntity::new(sconfig, CountingRng(2), store);
    (i, r)
}

#[test]
fn scram_login_and_bind_between_our_machines() {
    let (mut i, mut r) = plaintext_pair();
    pump(&mut i, &mut r, |s| s).unwrap();
}

#[test]
fn sasl_offered_again_after_success_is_refused() {
    let (mut i, mut r) = plaintext_pair();
    let res = pump(&mut i, &mut r, |s| {
        s.replace(
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>",
            &mechanisms(&["SCRAM-SHA-1"]),
        )
    });
    assert_eq!(res, Err(Error::SaslAfterSuccess));
}

#[test]
fn forged_success_without_server_signature_is_refused() {
    // A server (or MITM) that answers the SCRAM client-first with <success/> at once.
    let (mut i, mut r) = plaintext_pair();
    let res = pump(&mut i, &mut r, |s| {
        if s.starts_with("<challenge") {
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".to_string()
        } else {
            s
        }
    });
    assert!(matches!(res, Err(Error::Sasl(_))), "{res:?}");
}

#[test]
fn external_identity_of_another_domain_is_refused() {
    let mut config = ReceiverConfig::client_to_server("example.com");
    config.secure_transport = true;
    let tls = TlsInfo {
        peer_identities: vec!["mallory@evil.example".into()],
        ..TlsInfo::default()
    };
    let mut r = ReceivingEntity::with_tls(config, CountingRng(0), MemoryStore::new(), tls);
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<mechanism>EXTERNAL</mechanism>"));
    let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>";
    feed(&mut r, auth.as_bytes(), 4096).unwrap();
    let out = output(&mut r);
    assert!(out.contains("<invalid-authzid/>"), "{out}");
    assert!(!out.contains("<success"));
}

/// Both machines over a pretend TLS (the sans-IO `tls_established` on both sides when the
/// machines ask for it), until the initiating entity is negotiated.
fn pump_with_tls(
    i: &mut InitiatingEntity<CountingRng>,
    r: &mut ReceivingEntity<CountingRng, MemoryStore>,
    writes: &mut Vec<String>,
) -> Result<xmpp_handshake_core::connection::Outcome, Error> {
    pump_with_tls_info(i, r, writes, &TlsInfo::default())
}

/// [`pump_with_tls`] with `info` (e.g. channel-binding data) from the pretend TLS.
fn pump_with_tls_info(
    i: &mut InitiatingEntity<CountingRng>,
    r: &mut ReceivingEntity<CountingRng, MemoryStore>,
    writes: &mut Vec<String>,
    info: &TlsInfo,
) -> Result<xmpp_handshake_core::connection::Outcome, Error> {
    pump_with_tls_infos(i, r, writes, info, info)
}

/// [`pump_with_tls_info`] with what each side's TLS layer reports (other binding data on
/// the two sides: a man in the middle, or a server that cannot compute it).
fn pump_with_tls_infos(
    i: &mut InitiatingEntity<CountingRng>,
    r: &mut ReceivingEntity<CountingRng, MemoryStore>,
    writes: &mut Vec<String>,
    info: &TlsInfo,
    server_info: &TlsInfo,
) -> Result<xmpp_handshake_core::connection::Outcome, Error> {
    for _ in 0..30 {
        let to_r = output(i);
        if !to_r.is_empty() {
            writes.push(to_r.clone());
            feed(r, to_r.as_bytes(), 4096)?;
        }
        let to_i = output(r);
        if !to_i.is_empty() {
            feed(i, to_i.as_bytes(), 4096)?;
        }
        let (_, server_events) = events(r);
        let (_, client_events) = events(i);
        if server_events
            .iter()
            .any(|e| matches!(e, Event::StartTls { .. }))
        {
            r.tls_established(server_info.clone())?;
        }
        for e in client_events {
            match e {
                Event::StartTls { .. } => i.tls_established(info.clone())?,
                Event::Negotiated(o) => return Ok(o),
                _ => {}
            }
        }
    }
    panic!("no progress");
}

fn tls_pair(
    pipeline: Option<xmpp_handshake_core::sasl::Mechanism>,
    server_hashes: &[xmpp_handshake_core::sasl::ScramHash],
) -> (
    InitiatingEntity<CountingRng>,
    ReceivingEntity<CountingRng, MemoryStore>,
) {
    let mut config = InitiatorConfig::client("example.com");
    let mut sasl = ClientSasl::password("juliet", "r0m30", Some("balcony"));
    sasl.pipeline_mechanism = pipeline;
    config.sasl = Some(sasl);
    let i = InitiatingEntity::new(config, CountingRng(1));
    let mut sconfig = ReceiverConfig::client_to_server("example.com");
    sconfig.sasl = Some(ServerOptions {
        scram_hashes: server_hashes.to_vec(),
        ..ServerOptions::default()
    });
    let mut store = MemoryStore::new();
    store.add_password("juliet", "r0m30", 4096, &mut CountingRng(9));
    let r = ReceivingEntity::new(sconfig, CountingRng(2), store);
    (i, r)
}

#[test]
fn pipelined_auth_goes_with_the_post_tls_header() {
    use xmpp_handshake_core::sasl::{Mechanism, ScramHash};
    let (mut i, mut r) = tls_pair(Some(Mechanism::ScramSha1), &[ScramHash::Sha1]);
    let mut writes = Vec::new();
    let outcome = pump_with_tls(&mut i, &mut r, &mut writes).unwrap();
    assert_eq!(outcome.mechanism, Some(Mechanism::ScramSha1));
    assert_eq!(outcome.jid.as_deref(), Some("juliet@example.com/balcony"));
    // Write 1: header + <starttls/>; write 2: the new header + <auth/> (before features).
    assert!(writes[0].contains("<stream:stream") && writes[0].ends_with("xmpp-tls'/>"));
    assert!(writes[1].contains("<stream:stream"), "{:?}", writes[1]);
    assert!(writes[1]
        .contains("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"));
    // After <success/>: the new header and the bind request in one write.
    let after_success = writes.iter().find(|w| w.contains("bind_1")).unwrap();
    assert!(after_success.contains("<stream:stream"), "{after_success}");
    // Nothing is sent with the SCRAM <response>.
    let response = writes.iter().find(|w| w.contains("<response")).unwrap();
    assert!(response.starts_with("<response") && response.ends_with("</response>"));
}

#[test]
#[cfg(feature = "sha-512")]
fn pipelined_mechanism_not_offered_restarts_sasl_from_the_real_offer() {
    use xmpp_handshake_core::sasl::{Mechanism, ScramHash};
    // The hint names SCRAM-SHA-512; this server only has SHA-256: it refuses the
    // pipelined <auth/> (invalid-mechanism), and the client starts again from the list.
    let (mut i, mut r) = tls_pair(Some(Mechanism::ScramSha512), &[ScramHash::Sha256]);
    let mut writes = Vec::new();
    let outcome = pump_with_tls(&mut i, &mut r, &mut writes).unwrap();
    assert_eq!(outcome.mechanism, Some(Mechanism::ScramSha256));
    assert!(writes
        .iter()
        .any(|w| w.contains("mechanism='SCRAM-SHA-512'")));
}

#[test]
fn pipelined_mechanism_the_policy_forbids_is_not_sent() {
    use xmpp_handshake_core::sasl::{Mechanism, ScramHash};
    let (_, mut r) = tls_pair(None, &[ScramHash::Sha1]);
    let mut config = InitiatorConfig::client("example.com");
    let mut sasl = ClientSasl::password("juliet", "r0m30", None);
    sasl.pipeline_mechanism = Some(Mechanism::Plain);
    sasl.policy.minimum = xmpp_handshake_core::sasl::Minimum::Scram;
    config.sasl = Some(sasl);
    let mut i = InitiatingEntity::new(config, CountingRng(1));
    let mut writes = Vec::new();
    let outcome = pump_with_tls(&mut i, &mut r, &mut writes).unwrap();
    assert!(!writes.iter().any(|w| w.contains("mechanism='PLAIN'")));
    assert_eq!(outcome.mechanism, Some(Mechanism::ScramSha1));
}

/// A client with PLAIN credentials and `pipeline_offer`, driven by hand through STARTTLS.
fn offer_client(
    offer: Option<&[xmpp_handshake_core::sasl::Mechanism]>,
) -> InitiatingEntity<CountingRng> {
    let mut config = InitiatorConfig::client("example.com");
    let mut sasl = ClientSasl::password("juliet", "r0m30", Some("balcony"));
    sasl.pipeline_offer =
        offer.map(|ms| ms.iter().fold(MechanismSet::default(), |s, m| s.with(*m)));
    config.sasl = Some(sasl);
    InitiatingEntity::new(config, CountingRng(1))
}

/// Runs `i` to TLS with `pre` as the pre-TLS mechanisms and returns what it sends right
/// after the TLS handshake (before any post-TLS features).
fn after_tls(i: &mut InitiatingEntity<CountingRng>, pre: &[&str]) -> String {
    output(i);
    let pre = features(&format!(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>{}",
        mechanisms(pre)
    ));
    feed(i, format!("{R_HEADER}{pre}{PROCEED}").as_bytes(), 4096).unwrap();
    output(i);
    i.tls_established(TlsInfo::default()).unwrap();
    output(i)
}

#[test]
fn pipelined_auth_never_comes_from_the_pre_tls_list() {
    use xmpp_handshake_core::sasl::Mechanism;
    // §6.3.4: a MITM's pre-TLS list (here PLAIN, SCRAM-SHA-1) is neither a source for the
    // pipelined <auth/> nor kept as the offer for later logins.
    let mut i = offer_client(None);
    let out = after_tls(&mut i, &["PLAIN", "SCRAM-SHA-1"]);
    assert!(
        out.contains("<stream:stream") && !out.contains("<auth"),
        "{out}"
    );
    let mut i = offer_client(Some(&[Mechanism::ScramSha256]));
    let out = after_tls(&mut i, &["PLAIN", "SCRAM-SHA-1"]);
    assert!(out.contains("mechanism='SCRAM-SHA-256'"), "{out}");
    // The post-TLS offer is what the outcome reports.
    let mut i = offer_client(Some(&[Mechanism::Plain]));
    let out = after_tls(&mut i, &["SCRAM-SHA-512", "SCRAM-SHA-1"]);
    assert!(out.contains("mechanism='PLAIN'"), "{out}");
    let post = features(&mechanisms(&["X-UNKNOWN", "PLAIN"]));
    let success = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
    feed(
        &mut i,
        format!("{R_HEADER}{post}{success}").as_bytes(),
        4096,
    )
    .unwrap();
    output(&mut i);
    let bound = "<iq type='result' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@example.com/balcony</jid></bind></iq>";
    let bind = features("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>");
    feed(&mut i, format!("{R_HEADER}{bind}{bound}").as_bytes(), 4096).unwrap();
    let outcome = events(&mut i)
        .1
        .into_iter()
        .find_map(|e| match e {
            Event::Negotiated(o) => Some(o),
            _ => None,
        })
        .expect("negotiated");
    assert_eq!(outcome.mechanism, Some(Mechanism::Plain));
    assert_eq!(
        outcome.sasl_offer,
        Some(MechanismSet::from_names(["PLAIN"]))
    );
}

#[test]
fn pipelined_mechanism_is_chosen_from_the_stored_offer_by_the_policy() {
    use xmpp_handshake_core::sasl::{CbPolicy, Mechanism, Minimum};
    // The same choice as from a live offer: SCRAM over PLAIN, the policy's floor.
    let mut i = offer_client(Some(&[Mechanism::Plain, Mechanism::ScramSha1]));
    assert!(after_tls(&mut i, &[]).contains("mechanism='SCRAM-SHA-1'"));
    // -PLUS needs channel-binding data; without it (TlsInfo::default) plain SCRAM.
    let mut i = offer_client(Some(&[Mechanism::ScramSha256Plus, Mechanism::ScramSha1]));
    assert!(after_tls(&mut i, &[]).contains("mechanism='SCRAM-SHA-1'"));
    // Nothing the policy allows: nothing pipelined (the live features decide).
    let mut config = InitiatorConfig::client("example.com");
    let mut sasl = ClientSasl::password("juliet", "r0m30", None);
    sasl.pipeline_offer = Some(MechanismSet::from_names(["PLAIN"]));
    sasl.policy.minimum = Minimum::Scram;
    sasl.policy.channel_binding = CbPolicy::Off;
    config.sasl = Some(sasl);
    let mut i = InitiatingEntity::new(config, CountingRng(1));
    let out = after_tls(&mut i, &["PLAIN"]);
    assert!(!out.contains("<auth"), "{out}");
}

#[test]
#[cfg(feature = "sha-512")]
fn stored_offer_no_longer_offered_restarts_sasl_and_reports_the_new_offer() {
    use xmpp_handshake_core::sasl::{Mechanism, ScramHash};
    // The server offered SCRAM-SHA-512 last time and SHA-256 only now: it refuses the
    // pipelined <auth/>, the client starts again from the real offer, and the outcome
    // carries the new offer for the next login.
    let (_, mut r) = tls_pair(None, &[ScramHash::Sha256]);
    let mut config = InitiatorConfig::client("example.com");
    let mut sasl = ClientSasl::password("juliet", "r0m30", Some("balcony"));
    sasl.pipeline_offer = Some(MechanismSet::from_names(["SCRAM-SHA-512", "PLAIN"]));
    config.sasl = Some(sasl);
    let mut i = InitiatingEntity::new(config, CountingRng(1));
    let mut writes = Vec::new();
    let outcome = pump_with_tls(&mut i, &mut r, &mut writes).unwrap();
    assert!(
        writes[1].contains("mechanism='SCRAM-SHA-512'"),
        "{:?}",
        writes[1]
    );
    assert_eq!(outcome.mechanism, Some(Mechanism::ScramSha256));
    let offer = outcome.sasl_offer.unwrap();
    assert!(offer.contains(Mechanism::ScramSha256), "{offer:?}");
    assert!(!offer.contains(Mechanism::ScramSha512), "{offer:?}");
}

/// The SCRAM `client-first-message` of the first `<auth/>` in `writes`, decoded.
fn client_first(writes: &[String]) -> String {
    let auth = writes
        .iter()
        .find_map(|w| w.split("<auth ").nth(1))
        .expect("an <auth/>");
    let payload = auth.split('>').nth(1).unwrap().split('<').next().unwrap();
    String::from_utf8(base64::decode_strict(payload).unwrap()).unwrap()
}

#[test]
fn stored_offer_without_plus_pipelines_the_downgrade_flag_and_aborts_when_plus_appears() {
    use xmpp_handshake_core::sasl::{ChannelBindingData, Mechanism, ScramHash};
    // RFC 5802 §6: a client that can bind but believes the server cannot sends gs2 flag
    // `y`, also when that belief is an offer kept from an earlier connection, so that a
    // server whose -PLUS an attacker stripped then still catches the downgrade.
    let info = TlsInfo {
        channel_binding: ChannelBindingData {
            exporter: Some([0x5a; 32]),
            ..ChannelBindingData::default()
        },
        ..TlsInfo::default()
    };
    let client = || {
        let mut config = InitiatorConfig::client("example.com");
        let mut sasl = ClientSasl::password("juliet", "r0m30", Some("balcony"));
        sasl.pipeline_offer = Some(MechanismSet::from_names(["SCRAM-SHA-256"]));
        config.sasl = Some(sasl);
        InitiatingEntity::new(config, CountingRng(1))
    };
    let server = |channel_binding: bool| {
        let mut sconfig = ReceiverConfig::client_to_server("example.com");
        sconfig.sasl = Some(ServerOptions {
            scram_hashes: vec![ScramHash::Sha256],
            channel_binding,
            ..ServerOptions::default()
        });
        let mut store = MemoryStore::new();
        store.add_password("juliet", "r0m30", 4096, &mut CountingRng(9));
        ReceivingEntity::new(sconfig, CountingRng(2), store)
    };

    // The offer is unchanged (no -PLUS): the pipelined exchange with `y` completes.
    let (mut i, mut r) = (client(), server(false));
    let mut writes = Vec::new();
    let outcome = pump_with_tls_info(&mut i, &mut r, &mut writes, &info).unwrap();
    assert!(
        writes[1].contains("mechanism='SCRAM-SHA-256'"),
        "{writes:?}"
    );
    assert!(client_first(&writes).starts_with("y,,"), "{writes:?}");
    assert!(!writes.iter().any(|w| w.contains("<abort")), "{writes:?}");
    assert_eq!(outcome.mechanism, Some(Mechanism::ScramSha256));

    // The server offers -PLUS now: it refuses the pipelined `y` as a downgrade, and SASL
    // starts again from the live offer, with binding.
    let (mut i, mut r) = (client(), server(true));
    let mut writes = Vec::new();
    let outcome = pump_with_tls_info(&mut i, &mut r, &mut writes, &info).unwrap();
    assert!(
        writes[1].contains("mechanism='SCRAM-SHA-256'"),
        "{writes:?}"
    );
    assert!(client_first(&writes).starts_with("y,,"), "{writes:?}");
    assert!(writes
        .iter()
        .any(|w| w.contains("mechanism='SCRAM-SHA-256-PLUS'")));
    assert_eq!(outcome.mechanism, Some(Mechanism::ScramSha256Plus));
    assert!(outcome
        .sasl_offer
        .is_some_and(|o| o.contains(Mechanism::ScramSha256Plus)));
}

#[test]
#[cfg(feature = "sha-512")]
fn pipelined_exchange_the_policy_no_longer_chooses_is_aborted_at_its_challenge() {
    use xmpp_handshake_core::sasl::{Mechanism, ScramHash};
    // Kept: SCRAM-SHA-256 only; live: SHA-256 and SHA-512. The server goes on with the
    // pipelined SHA-256 (a challenge); the client answers it with <abort/> (§6.4.4), never
    // with a response, and logs in with the policy's live choice.
    let (_, mut r) = tls_pair(None, &[ScramHash::Sha256, ScramHash::Sha512]);
    let mut config = InitiatorConfig::client("example.com");
    let mut sasl = ClientSasl::password("juliet", "r0m30", Some("balcony"));
    sasl.pipeline_offer = Some(MechanismSet::from_names(["SCRAM-SHA-256"]));
    config.sasl = Some(sasl);
    let mut i = InitiatingEntity::new(config, CountingRng(1));
    let mut writes = Vec::new();
    let outcome = pump_with_tls(&mut i, &mut r, &mut writes).unwrap();
    assert!(
        writes[1].contains("mechanism='SCRAM-SHA-256'"),
        "{writes:?}"
    );
    let abort = writes
        .iter()
        .position(|w| w.contains("<abort"))
        .expect("<abort/>");
    let again = writes
        .iter()
        .position(|w| w.contains("mechanism='SCRAM-SHA-512'"))
        .expect("SASL again");
    assert!(abort < again, "{writes:?}");
    assert!(
        !writes[..again].iter().any(|w| w.contains("<response")),
        "{writes:?}"
    );
    assert_eq!(outcome.mechanism, Some(Mechanism::ScramSha512));
}

fn plain_auth_as(authzid: &str, user: &str, password: &str) -> String {
    let payload = format!("{authzid}\0{user}\0{password}");
    format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        base64::encode(payload.as_bytes())
    )
}

/// Authenticates `auth` on a fresh [`secure_server`] with `users` added, binds `balcony`
/// and returns everything the server wrote after the `<auth/>`.
fn auth_then_bind(users: &[&str], auth: &str) -> String {
    let mut config = ReceiverConfig::client_to_server("example.com");
    config.secure_transport = true;
    config.sasl = Some(ServerOptions {
        channel_binding: false,
        ..ServerOptions::default()
    });
    let mut store = MemoryStore::new();
    for user in users {
        store.add_password(user, "r0m30", 4096, &mut CountingRng(9));
    }
    let mut r = ReceivingEntity::with_tls(config, CountingRng(0), store, TlsInfo::default());
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    feed(&mut r, auth.as_bytes(), 4096).unwrap();
    let mut out = output(&mut r);
    if out.contains("<success") {
        feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
        output(&mut r);
        let req = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind></iq>";
        feed(&mut r, req.as_bytes(), 4096).unwrap();
        out.push_str(&output(&mut r));
    }
    out
}

#[test]
fn rfc6120_6_3_8_the_authzid_is_the_bare_jid_bound_in_its_canonical_form() {
    // RFC 7622 §3.2: the domainpart compares case-insensitively; the server binds the
    // canonical form.
    let out = auth_then_bind(
        &["juliet"],
        &plain_auth_as("juliet@EXAMPLE.com.", "juliet", "r0m30"),
    );
    assert!(
        out.contains("<jid>juliet@example.com/balcony</jid>"),
        "{out}"
    );
}

#[test]
fn rfc7622_3_3_1_a_user_name_that_is_no_localpart_gets_invalid_authzid() {
    // `foo bar@example.com` is not a JID (a space in the localpart): the server has no
    // address to bind it to.
    let out = auth_then_bind(&["foo bar"], &plain_auth("foo bar", "r0m30"));
    assert!(out.contains("<invalid-authzid/>"), "{out}");
    assert!(!out.contains("<success"), "{out}");
    let out = auth_then_bind(&["juliet"], &plain_auth("juliet", "r0m30"));
    assert!(
        out.contains("<jid>juliet@example.com/balcony</jid>"),
        "{out}"
    );
}

#[test]
fn rfc7622_3_4_a_requested_resource_with_a_control_character_gets_bad_request() {
    let mut r = secure_server();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    feed(&mut r, plain_auth("juliet", "r0m30").as_bytes(), 4096).unwrap();
    feed(&mut r, I_HEADER.as_bytes(), 4096).unwrap();
    output(&mut r);
    let tab = "<iq type='set' id='b0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>a&#9;b</resource></bind></iq>";
    feed(&mut r, tab.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<bad-request"));
    // A resource may hold '@', '/' and spaces.
    let req = "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>a b/c@d</resource></bind></iq>";
    feed(&mut r, req.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<jid>juliet@example.com/a b/c@d</jid>"));
}

/// The initiating entity after SASL success, given `bound` as the bind result.
fn client_bound_with(jid: &str) -> Result<Option<String>, Error> {
    use xmpp_handshake_core::sasl::Mechanism;
    let mut i = offer_client(Some(&[Mechanism::Plain]));
    after_tls(&mut i, &["PLAIN"]);
    let post = features(&mechanisms(&["PLAIN"]));
    let success = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
    feed(
        &mut i,
        format!("{R_HEADER}{post}{success}").as_bytes(),
        4096,
    )?;
    output(&mut i);
    let bound = format!("<iq type='result' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{jid}</jid></bind></iq>");
    let bind = features("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>");
    feed(&mut i, format!("{R_HEADER}{bind}{bound}").as_bytes(), 4096)?;
    Ok(events(&mut i).1.into_iter().find_map(|e| match e {
        Event::Negotiated(o) => o.jid,
        _ => None,
    }))
}

#[test]
fn rfc6120_7_6_1_the_bind_result_must_be_a_full_jid() {
    assert_eq!(
        client_bound_with("juliet@Example.COM/balcony")
            .unwrap()
            .as_deref(),
        Some("juliet@example.com/balcony")
    );
    for (jid, why) in [
        ("juliet@example.com", JidError::MissingResource),
        ("@example.com/balcony", JidError::EmptyLocal),
        ("juliet@example.com/", JidError::EmptyResource),
        (
            "juliet@exa mple.com/balcony",
            JidError::InvalidDomain(DomainError::ForbiddenChar(' ')),
        ),
    ] {
        match client_bound_with(jid) {
            Err(Error::BoundJid(e)) => assert_eq!(e, why, "{jid}"),
            other => panic!("{jid}: {other:?}"),
        }
    }
}

/// The refused binding says whether the server had advertised its types (XEP-0440): the
/// CLI retries only when it had not. `CbPolicy::RetryUnbound` logs in to a server that
/// refuses every binding and accepts `y` (ejabberd 23.01, `BindingQuirk::Unverifiable`), and
/// is refused by a server that can bind (RFC 5802 §6): the retry gains an attacker nothing.
#[test]
fn binding_refusal_reports_xep0440_and_the_unbound_retry_sends_y() {
    use xmpp_handshake_core::receiver::BindingQuirk;
    use xmpp_handshake_core::sasl::{
        CbPolicy, ChannelBindingData, Mechanism, SaslError, SaslFailure, ScramHash,
    };
    let info = |byte| TlsInfo {
        channel_binding: ChannelBindingData {
            exporter: Some([byte; 32]),
            ..ChannelBindingData::default()
        },
        ..TlsInfo::default()
    };
    let client = |cb: CbPolicy| {
        let mut config = InitiatorConfig::client("example.com");
        let mut sasl = ClientSasl::password("juliet", "r0m30", Some("balcony"));
        sasl.policy.channel_binding = cb;
        config.sasl = Some(sasl);
        InitiatingEntity::new(config, CountingRng(1))
    };
    let server = |quirk: BindingQuirk| {
        let mut sconfig = ReceiverConfig::client_to_server("example.com");
        sconfig.sasl = Some(ServerOptions {
            scram_hashes: vec![ScramHash::Sha256],
            ..ServerOptions::default()
        });
        sconfig.binding_quirk = quirk;
        let mut store = MemoryStore::new();
        store.add_password("juliet", "r0m30", 4096, &mut CountingRng(9));
        ReceivingEntity::new(sconfig, CountingRng(2), store)
    };
    let rejected = |result: Result<_, Error>| match result {
        Err(Error::AuthenticationFailed {
            error: SaslError::ChannelBindingRejected { xep0440, .. },
            ..
        }) => xep0440,
        other => panic!("expected ChannelBindingRejected, got {other:?}"),
    };

    // Different binding data on the two sides (the binding is broken on the way).
    for (quirk, advertised) in [
        (BindingQuirk::None, true),
        (BindingQuirk::Unadvertised, false),
    ] {
        let (mut i, mut r) = (client(CbPolicy::WhenOffered), server(quirk));
        let mut writes = Vec::new();
        let result = pump_with_tls_infos(&mut i, &mut r, &mut writes, &info(0x5a), &info(0x33));
        assert!(
            writes.iter().any(|w| w.contains("SCRAM-SHA-256-PLUS")),
            "{writes:?}"
        );
        assert_eq!(rejected(result), advertised, "{quirk:?}");
    }
    // The same data, but a server that cannot verify any binding: no XEP-0440 list.
    let (mut i, mut r) = (
        client(CbPolicy::WhenOffered),
        server(BindingQuirk::Unverifiable),
    );
    let mut writes = Vec::new();
    let result = pump_with_tls_info(&mut i, &mut r, &mut writes, &info(0x5a));
    assert!(!rejected(result));

    // The retry: plain SCRAM with `y`, accepted by that server.
    let (mut i, mut r) = (
        client(CbPolicy::RetryUnbound),
        server(BindingQuirk::Unverifiable),
    );
    let mut writes = Vec::new();
    let outcome = pump_with_tls_info(&mut i, &mut r, &mut writes, &info(0x5a)).unwrap();
    assert_eq!(outcome.mechanism, Some(Mechanism::ScramSha256));
    assert!(client_first(&writes).starts_with("y,,"), "{writes:?}");

    // The same retry to a server that can bind (and offers -PLUS): refused as a downgrade.
    let (mut i, mut r) = (client(CbPolicy::RetryUnbound), server(BindingQuirk::None));
    let mut writes = Vec::new();
    match pump_with_tls_info(&mut i, &mut r, &mut writes, &info(0x5a)) {
        Err(Error::AuthenticationFailed {
            error: SaslError::Failure(SaslFailure::NotAuthorized),
            ..
        }) => {}
        other => panic!("expected not-authorized, got {other:?}"),
    }
    assert!(client_first(&writes).starts_with("y,,"), "{writes:?}");
}

/// An S2S stream header from `from` to example.com.
fn s2s_header(from: &str) -> String {
    format!(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         to='example.com' from='{from}' version='1.0'>"
    )
}

/// An S2S receiving entity on a protected transport whose peer presented a certificate
/// naming `names` (DNS-IDs).
fn s2s_receiver(names: &[&str]) -> ReceivingEntity<CountingRng, MemoryStore> {
    let mut config = ReceiverConfig::server_to_server("example.com");
    config.secure_transport = true;
    let tls = TlsInfo {
        peer_identities: names.iter().map(|n| n.to_string()).collect(),
        ..TlsInfo::default()
    };
    ReceivingEntity::with_tls(config, CountingRng(0), MemoryStore::new(), tls)
}

const EXTERNAL_EMPTY: &str =
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>";

/// XEP-0178 §3, RFC 6120 §13.7.2.2: EXTERNAL is offered to a server whose certificate names
/// the stream's `from`, among other names too, and authenticates that domain; the stream
/// restarts and ends negotiated without binding.
#[test]
fn s2s_external_for_the_domain_the_certificate_names() {
    let mut r = s2s_receiver(&["conference.verona.example", "verona.example"]);
    feed(&mut r, s2s_header("verona.example").as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<mechanism>EXTERNAL</mechanism>"));
    feed(&mut r, EXTERNAL_EMPTY.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<success"));
    feed(&mut r, s2s_header("verona.example").as_bytes(), 4096).unwrap();
    let (_, ev) = events(&mut r);
    let outcome = ev
        .iter()
        .find_map(|e| match e {
            Event::Negotiated(o) => Some(o),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{ev:?}"));
    assert_eq!(outcome.mechanism, Some(Mechanism::External));
    assert!(!output(&mut r).contains("<bind"));
}

/// A certificate for another domain never earns EXTERNAL: not offered, and with nothing
/// else to authenticate with, the stream ends with `<not-authorized/>` instead of going on
/// unauthenticated.
#[test]
fn s2s_external_is_not_offered_for_a_domain_the_certificate_does_not_name() {
    let mut r = s2s_receiver(&["verona.example"]);
    let result = feed(&mut r, s2s_header("padua.example").as_bytes(), 4096);
    let out = output(&mut r);
    assert!(!out.contains("EXTERNAL"), "{out}");
    // Nothing else could authenticate it: the stream ends, never unauthenticated.
    assert!(
        matches!(&result, Err(Error::StreamErrorSent(e)) if e.condition == C::NotAuthorized),
        "{result:?}"
    );
    assert!(!out.contains("<stream:features>"), "{out}");
    let (_, ev) = events(&mut r);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Negotiated(_))),
        "{ev:?}"
    );
}

/// XEP-0178 §2: the authzid is empty or the certified domain; one naming another domain is
/// `<invalid-authzid/>`.
#[test]
fn s2s_external_with_an_authzid_of_another_domain_is_refused() {
    let mut r = s2s_receiver(&["verona.example"]);
    feed(&mut r, s2s_header("verona.example").as_bytes(), 4096).unwrap();
    output(&mut r);
    let authzid = base64::encode(b"padua.example");
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{authzid}</auth>"
    );
    feed(&mut r, auth.as_bytes(), 4096).unwrap();
    let out = output(&mut r);
    assert!(out.contains("<invalid-authzid/>"), "{out}");
    assert!(!out.contains("<success"), "{out}");
    // Its own domain as authzid is fine.
    let mut r = s2s_receiver(&["verona.example"]);
    feed(&mut r, s2s_header("verona.example").as_bytes(), 4096).unwrap();
    output(&mut r);
    let authzid = base64::encode(b"verona.example");
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{authzid}</auth>"
    );
    feed(&mut r, auth.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<success"));
}

/// A `from` that changes between the headers of the protected stream is
/// `<improper-addressing/>` (§4.9.3.7).
#[test]
fn s2s_from_changing_after_authentication_is_improper_addressing() {
    let mut r = s2s_receiver(&["verona.example"]);
    feed(&mut r, s2s_header("verona.example").as_bytes(), 4096).unwrap();
    output(&mut r);
    feed(&mut r, EXTERNAL_EMPTY.as_bytes(), 4096).unwrap();
    assert!(output(&mut r).contains("<success"));
    let result = feed(&mut r, s2s_header("padua.example").as_bytes(), 4096);
    assert!(
        matches!(&result, Err(Error::StreamErrorSent(e)) if e.condition == C::ImproperAddressing),
        "{result:?}"
    );
    assert!(output(&mut r).contains("<improper-addressing"));
}
