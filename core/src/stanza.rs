//! A minimal stanza API for after negotiation (RFC 6120 §8): build `<message/>`,
//! `<presence/>` and `<iq/>` with correct escaping. Received stanzas are raw top-level
//! elements; parse them with [`crate::xml::element::parse`].

use alloc::borrow::Cow;
use alloc::string::String;

use crate::jid::Jid;
use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{ContentNamespace, Framing};

use crate::xml::escape::{escape_attr, escape_text};

fn open(out: &mut String, name: &str, attrs: &[(&str, Option<&str>)]) {
    out.push('<');
    out.push_str(name);
    for (k, v) in attrs {
        if let Some(v) = v {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            escape_attr(v, out);
            out.push('\'');
        }
    }
}

/// `<message type='chat' to=… id=…><body>…</body></message>` (§8.2.1).
pub fn message(to: &str, body: &str, id: Option<&str>) -> String {
    let mut s = String::new();
    open(
        &mut s,
        "message",
        &[("type", Some("chat")), ("to", Some(to)), ("id", id)],
    );
    s.push_str("><body>");
    escape_text(body, &mut s);
    s.push_str("</body></message>");
    s
}

/// `<presence/>`: initial presence (RFC 6121 §4.2), optionally to someone.
pub fn presence(to: Option<&str>) -> String {
    let mut s = String::new();
    open(&mut s, "presence", &[("to", to)]);
    s.push_str("/>");
    s
}

/// `<iq type=… id=… to=…>payload</iq>` (§8.2.3); `payload` is trusted, already-built XML.
pub fn iq(iq_type: &str, id: &str, to: Option<&str>, payload: &str) -> String {
    let mut s = String::new();
    open(
        &mut s,
        "iq",
        &[("type", Some(iq_type)), ("id", Some(id)), ("to", to)],
    );
    s.push('>');
    s.push_str(payload);
    s.push_str("</iq>");
    s
}

/// `element` as it must go out with `framing`: unchanged over TCP, where stanzas inherit
/// the stream's default namespace (RFC 6120 §4.8.2); on an RFC 7395 WebSocket, where every
/// message is a document of its own, with `xmlns='jabber:client'` on the root unless it
/// declares a default namespace itself (RFC 7395 §3.3.3; Prosody refuses a stanza without
/// one with `<unsupported-stanza-type/>`).
pub fn qualified(element: &str, framing: Framing) -> Cow<'_, str> {
    if framing == Framing::Tcp {
        return Cow::Borrowed(element);
    }
    let Some(rest) = element.strip_prefix('<') else {
        return Cow::Borrowed(element);
    };
    let name_end = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    let (name, attributes) = rest.split_at(name_end);
    if declares_default_namespace(attributes) {
        return Cow::Borrowed(element);
    }
    let mut out = String::with_capacity(element.len() + 24);
    out.push('<');
    out.push_str(name);
    out.push_str(" xmlns='");
    out.push_str(ContentNamespace::Client.as_str());
    out.push('\'');
    out.push_str(attributes);
    Cow::Owned(out)
}

/// Checks a stanza read on a stream between servers, in either direction (on a
/// bidirectional stream, XEP-0288 §2, the initiating server reads too): its `from` must be
/// in `peer`, the domain the other end authenticated as on this stream (§4.9.3.9
/// `<invalid-from/>`), its `to` in `ours` (§4.9.3.6 `<host-unknown/>`), both present
/// (§4.9.3.7 `<improper-addressing/>`). Returns the `from`.
pub fn check_server_addresses(
    element: &str,
    peer: &str,
    ours: &str,
) -> Result<String, StreamError> {
    let wrapped = alloc::format!("<w xmlns='jabber:server'>{element}</w>");
    let doc = roxmltree::Document::parse(&wrapped).ok();
    let node = doc
        .as_ref()
        .and_then(|d| d.root_element().first_element_child());
    let attr = |name: &str| node.and_then(|n| n.attribute(name));
    let (Some(from), Some(to)) = (attr("from"), attr("to")) else {
        return Err(StreamError::with_text(
            StreamErrorCondition::ImproperAddressing,
            "a stanza between servers needs 'from' and 'to'",
        ));
    };
    let in_domain = |jid: &str, domain: &str| {
        Jid::parse(jid).is_ok_and(|j| {
            j.domain()
                .trim_end_matches('.')
                .eq_ignore_ascii_case(domain.trim_end_matches('.'))
        })
    };
    if !in_domain(from, peer) {
        return Err(StreamError::with_text(
            StreamErrorCondition::InvalidFrom,
            &alloc::format!("'from' is not in the authenticated domain {peer}"),
        ));
    }
    if !in_domain(to, ours) {
        return Err(StreamError::with_text(
            StreamErrorCondition::HostUnknown,
            &alloc::format!("'to' is not in {ours}"),
        ));
    }
    Ok(String::from(from))
}

/// Whether the start tag whose attributes begin `attributes` has `xmlns='…'`.
fn declares_default_namespace(attributes: &str) -> bool {
    let bytes = attributes.as_bytes();
    let mut quote = None;
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (Some(q), _) if q == b => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(b),
            (None, b'>') => return false,
            (None, c) if c.is_ascii_whitespace() => {
                let next = attributes[i + 1..].trim_start();
                if next.starts_with("xmlns=") || next.starts_with("xmlns ") {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_body_and_attributes_are_escaped() {
        assert_eq!(
            message("a'b@example.com", "1 < 2 & </body>", Some("x\"y")),
            "<message type='chat' to='a&apos;b@example.com' id='x&quot;y'><body>1 &lt; 2 &amp; &lt;/body&gt;</body></message>"
        );
    }

    #[test]
    fn presence_and_iq_are_well_formed() {
        assert_eq!(presence(None), "<presence/>");
        assert_eq!(
            iq(
                "get",
                "p1",
                Some("example.com"),
                "<ping xmlns='urn:xmpp:ping'/>"
            ),
            "<iq type='get' id='p1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
    }

    #[test]
    fn websocket_stanzas_get_the_content_namespace() {
        let ws = Framing::WebSocket;
        assert_eq!(
            qualified("<presence/>", ws),
            "<presence xmlns='jabber:client'/>"
        );
        assert_eq!(
            qualified("<iq type='set' id='b'><bind/></iq>", ws),
            "<iq xmlns='jabber:client' type='set' id='b'><bind/></iq>"
        );
        let declared = "<message xmlns=\"jabber:client\" to='a'/>";
        assert_eq!(qualified(declared, ws), declared);
        // A quoted "xmlns=" or a prefix declaration is not a default namespace.
        assert_eq!(
            qualified(
                "<message to=' xmlns=x' xmlns:a='urn:a'><body/></message>",
                ws
            ),
            "<message xmlns='jabber:client' to=' xmlns=x' xmlns:a='urn:a'><body/></message>"
        );
        // Child declarations do not count.
        assert_eq!(
            qualified("<iq><ping xmlns='urn:xmpp:ping'/></iq>", ws),
            "<iq xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        assert_eq!(qualified("<presence/>", Framing::Tcp), "<presence/>");
    }
}
