//! Resource binding (RFC 6120 §7): the `<bind/>` request and its result, both roles.

use alloc::string::String;

use crate::jid::Jid;
use crate::stream::features::NS_BIND;
use crate::xml::escape::{escape_attr, escape_text};
use crate::Error;

/// The id of our bind request.
pub const REQUEST_ID: &str = "bind_1";

/// `<bind/>` offered as a stream feature (§7.2).
pub const FEATURE: &str = "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>";

/// The largest resourcepart, in bytes (RFC 7622 §3.4).
pub const MAX_RESOURCE_BYTES: usize = crate::jid::MAX_PART_BYTES;

/// The client's request: a resource of its choice, or one the server picks (§7.5, §7.6).
pub fn request(resource: Option<&str>) -> String {
    let mut s = String::from("<iq type='set' id='");
    s.push_str(REQUEST_ID);
    s.push_str("'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'");
    match resource {
        Some(r) => {
            s.push_str("><resource>");
            escape_text(r, &mut s);
            s.push_str("</resource></bind></iq>");
        }
        None => s.push_str("/></iq>"),
    }
    s
}

/// The server's answer carrying the full JID (§7.6.1).
pub fn result(id: &str, jid: &str) -> String {
    let mut s = String::from("<iq type='result' id='");
    escape_attr(id, &mut s);
    s.push_str("'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>");
    escape_text(jid, &mut s);
    s.push_str("</jid></bind></iq>");
    s
}

/// A bind error (§7.6.2): `bad-request`, `not-allowed`, `conflict`, ...
pub fn error(id: &str, error_type: &str, condition: &str) -> String {
    let mut s = String::from("<iq type='error' id='");
    escape_attr(id, &mut s);
    s.push_str("'><error type='");
    s.push_str(error_type);
    s.push_str("'><");
    s.push_str(condition);
    s.push_str(" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
    s
}

fn bind_child<'a, 'i>(node: roxmltree::Node<'a, 'i>) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| {
        c.is_element() && c.tag_name().namespace() == Some(NS_BIND) && c.tag_name().name() == "bind"
    })
}

/// A bind request received: its id and the requested resource, if any. `None` if `node`
/// is not a bind request.
pub fn parse_request(node: roxmltree::Node<'_, '_>) -> Option<(String, Option<String>)> {
    if node.tag_name().name() != "iq" || node.attribute("type") != Some("set") {
        return None;
    }
    let bind = bind_child(node)?;
    let resource = bind
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "resource")
        .map(|r| String::from(r.text().unwrap_or("").trim()));
    Some((String::from(node.attribute("id").unwrap_or("")), resource))
}

/// The answer to our request: `Ok(full JID)`, or [`Error::Bind`] with the condition.
/// `None` if `node` is not the answer to [`REQUEST_ID`].
///
/// The `<jid/>` of a result must be a full JID (§7.6.1, RFC 7622): one that [`Jid::parse`]
/// refuses, or one without a resourcepart, is [`Error::BoundJid`] with the rule it breaks.
pub fn parse_response(node: roxmltree::Node<'_, '_>) -> Option<Result<Jid, Error>> {
    if node.tag_name().name() != "iq" || node.attribute("id") != Some(REQUEST_ID) {
        return None;
    }
    match node.attribute("type") {
        Some("result") => Some(
            bind_child(node)
                .and_then(|b| b.children().find(|c| c.tag_name().name() == "jid"))
                .and_then(|j| j.text())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Error::Bind(String::from("result without a JID")))
                .and_then(|t| {
                    Jid::parse(t)
                        .and_then(Jid::require_resource)
                        .map_err(Error::BoundJid)
                }),
        ),
        Some("error") => {
            let condition = node
                .children()
                .find(|c| c.tag_name().name() == "error")
                .and_then(|e| e.children().find(|c| c.is_element()))
                .map(|c| String::from(c.tag_name().name()))
                .unwrap_or_else(|| String::from("undefined-condition"));
            Some(Err(Error::Bind(condition)))
        }
        _ => None,
    }
}
