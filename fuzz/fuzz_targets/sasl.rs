//! SASL for both roles (RFC 6120 §6): every client and server mechanism fed arbitrary
//! messages, the SASL, bind, features and stream-error elements parsed from arbitrary XML,
//! and the SCRAM helpers (saslname escaping, base64, the key cache format).
//!
//! Input: byte 0 picks the mode, byte 1 the mechanism and its options; the rest is split
//! at 0xFF bytes (never in UTF-8) into messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xmpp_handshake_core::bind;
use xmpp_handshake_core::sasl::element as sasl_element;
use xmpp_handshake_core::sasl::{
    base64, escape_saslname, unescape_saslname, ChannelBindingData, ChannelBindingType,
    ClientMechanism, Credentials, Gs2CbFlag, Mechanism, MemoryStore, SaslFailure, SaslPolicy,
    ScramCacheEntry, Selection, ServerContext, ServerMechanism, ServerStep,
};
use xmpp_handshake_core::starttls::Answer;
use xmpp_handshake_core::stream::error::StreamError;
use xmpp_handshake_core::stream::features::StreamFeatures;
use xmpp_handshake_core::stream::header::StreamHeader;
use xmpp_handshake_core::xml::element;
use xmpp_handshake_fuzz::negotiation::CountingRng;

/// The RFC 5802 §5 example's client nonce (its user is `user`, its password `pencil`).
const NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";

fn channel_binding() -> ChannelBindingData {
    ChannelBindingData {
        exporter: Some([7; 32]),
        server_end_point: Some(vec![9; 32]),
        ..ChannelBindingData::default()
    }
}

fn client(options: u8, messages: &[&[u8]]) {
    let mechanism = Mechanism::ALL[usize::from(options) % Mechanism::ALL.len()];
    let cb_flag = match (options >> 4) % 4 {
        0 => Gs2CbFlag::NoSupport,
        1 => Gs2CbFlag::SupportedNotUsed,
        2 => Gs2CbFlag::Used(ChannelBindingType::TlsExporter),
        _ => Gs2CbFlag::Used(ChannelBindingType::TlsServerEndPoint),
    };
    let mut credentials = Credentials::password("user", "pencil").with_domain("example.com");
    if mechanism == Mechanism::External {
        credentials = Credentials::external(None);
    } else if mechanism == Mechanism::Anonymous {
        credentials = Credentials::anonymous(Some("trace"));
    }
    if options & 0x40 != 0 {
        credentials = credentials.with_authzid("admin@example.com");
    }
    let policy = SaslPolicy {
        allow_digest_md5: true,
        min_iterations: 1,
        max_iterations: 4096,
        ..SaslPolicy::default()
    };
    let selection = Selection { mechanism, cb_flag };
    let Ok(mut m) =
        ClientMechanism::with_nonce(&selection, credentials, &channel_binding(), &policy, NONCE)
    else {
        return;
    };
    if m.initial_response().is_err() {
        return;
    }
    let Some((last, challenges)) = messages.split_last() else {
        return;
    };
    for c in challenges {
        if m.challenge(c).is_err() {
            return;
        }
    }
    let result = if options & 0x80 != 0 {
        m.success(None)
    } else {
        m.success(Some(last))
    };
    if result.is_ok() {
        let _ = m.cache_entry();
    }
    let _ = m.failure(SaslFailure::NotAuthorized).to_string();
}

fn server(options: u8, messages: &[&[u8]]) {
    let offered = [
        Mechanism::ScramSha1,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha512,
        Mechanism::ScramSha512Plus,
        Mechanism::Plain,
        Mechanism::External,
        Mechanism::Anonymous,
    ];
    let name = offered[usize::from(options) % offered.len()].name();
    let cb = channel_binding();
    let ctx = ServerContext {
        offered: &offered[..if options & 0x40 != 0 {
            1
        } else {
            offered.len()
        }],
        tls: options & 0x80 == 0,
        channel_binding: &cb,
        external_identity: Some("user@example.com"),
    };
    let mut rng = CountingRng(u64::from(options));
    let mut store = MemoryStore::new();
    store.add_password("user", "pencil", 16, &mut rng);
    let Ok(mut m) = ServerMechanism::start(name, &ctx, &mut rng) else {
        return;
    };
    for (i, message) in messages.iter().enumerate() {
        let response = (!(i == 0 && message.is_empty())).then_some(*message);
        match m.step(&store, response) {
            Ok(ServerStep::Challenge(_)) => {}
            Ok(ServerStep::Success { .. }) | Err(_) => break,
        }
    }
    let _ = m.failure_reason();
}

fn elements(raw: &[u8]) {
    let Ok(raw) = std::str::from_utf8(raw) else {
        return;
    };
    let header = StreamHeader {
        default_ns: Some("jabber:client".into()),
        stream_prefix: "stream".into(),
        ..StreamHeader::default()
    };
    let _ = element::parse(raw, &header, |node| {
        let _ = sasl_element::parse(node);
        let _ = bind::parse_response(node);
        let _ = bind::parse_request(node);
        let _ = Answer::parse(node);
        let _ = StreamFeatures::parse(node);
        let mut text = String::new();
        StreamError::parse(node).write(&mut text);
    });
}

fn helpers(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        // Names with NUL are refused before they are escaped (RFC 5802 §7).
        if !s.contains('\0') {
            assert_eq!(unescape_saslname(&escape_saslname(s)).as_deref(), Some(s));
        }
        let _ = unescape_saslname(s);
        if let Ok(Some(bytes)) = base64::decode_payload(s) {
            assert_eq!(
                base64::encode_payload(Some(&bytes)),
                s,
                "strict base64 round trip"
            );
        }
    }
    if let Ok(entry) = ScramCacheEntry::from_bytes(data) {
        assert_eq!(entry.to_bytes(), data, "the key cache format round trips");
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, options, rest @ ..] = data else {
        return;
    };
    let messages: Vec<&[u8]> = rest.split(|b| *b == 0xff).collect();
    match mode % 4 {
        0 => client(*options, &messages),
        1 => server(*options, &messages),
        2 => elements(rest),
        _ => helpers(rest),
    }
});
