//! A minimal stanza API for after negotiation (RFC 6120 §8): build `<message/>`,
//! `<presence/>` and `<iq/>` with correct escaping. Received stanzas are raw top-level
//! elements; parse them with [`crate::xml::element::parse`].

use alloc::string::String;

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
}
