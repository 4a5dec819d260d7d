//! The SASL elements of RFC 6120 §6.4 (`urn:ietf:params:xml:ns:xmpp-sasl`) for both roles:
//! building what we send and reading what we receive. Payloads are base64 in element
//! text, strict (§6.4.2); an empty payload is `=`, an absent one is no text.

use alloc::string::String;
use alloc::vec::Vec;

use super::base64::{decode_payload, encode_payload};
use super::error::SaslFailure;
use super::mechanism::Mechanism;
use crate::stream::features::NS_SASL;
use crate::xml::escape::escape_text;

/// `<auth mechanism='…'>` with the initial response, if any (§6.4.2).
pub fn auth(mechanism: Mechanism, initial_response: Option<&[u8]>) -> String {
    let mut s = String::from("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='");
    s.push_str(mechanism.name());
    s.push_str("'>");
    s.push_str(&encode_payload(initial_response));
    s.push_str("</auth>");
    s
}

/// `<response>` (§6.4.3).
pub fn response(data: &[u8]) -> String {
    wrap("response", Some(data))
}

/// `<challenge>` (§6.4.3).
pub fn challenge(data: &[u8]) -> String {
    wrap("challenge", Some(data))
}

/// `<success>` with additional data, if any (§6.4.6).
pub fn success(additional_data: Option<&[u8]>) -> String {
    wrap("success", additional_data)
}

/// `<abort/>` (§6.4.4).
pub const ABORT: &str = "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";

/// `<failure>` with a defined condition and optional text (§6.4.5).
pub fn failure(condition: SaslFailure, text: Option<&str>) -> String {
    let mut s = String::from("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><");
    s.push_str(condition.name());
    s.push_str("/>");
    if let Some(text) = text {
        s.push_str("<text xml:lang='en'>");
        escape_text(text, &mut s);
        s.push_str("</text>");
    }
    s.push_str("</failure>");
    s
}

fn wrap(name: &str, data: Option<&[u8]>) -> String {
    let mut s = String::from("<");
    s.push_str(name);
    s.push_str(" xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
    s.push_str(&encode_payload(data));
    s.push_str("</");
    s.push_str(name);
    s.push('>');
    s
}

/// A SASL element received from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// `<auth>`: the mechanism name as sent, and the initial response.
    Auth {
        /// The requested mechanism (maybe unknown to us).
        mechanism: String,
        /// The initial response (`None`: no text).
        payload: Option<Vec<u8>>,
    },
    /// `<challenge>`
    Challenge(Option<Vec<u8>>),
    /// `<response>`
    Response(Option<Vec<u8>>),
    /// `<success>`
    Success(Option<Vec<u8>>),
    /// `<failure>`: the condition (unknown ones read as `not-authorized`) and text.
    Failure {
        /// The condition.
        condition: SaslFailure,
        /// `<text/>`, if any.
        text: Option<String>,
    },
    /// `<abort/>`
    Abort,
}

/// Reads a SASL element. `None` if `node` is not one; `Some(Err(()))` if its payload is
/// not strict base64 (`incorrect-encoding`, §6.4.5).
pub fn parse(node: roxmltree::Node<'_, '_>) -> Option<Result<Received, ()>> {
    if node.tag_name().namespace() != Some(NS_SASL) {
        return None;
    }
    let payload = || decode_payload(node.text().unwrap_or("").trim()).map_err(|_| ());
    Some(match node.tag_name().name() {
        "auth" => payload().map(|payload| Received::Auth {
            mechanism: String::from(node.attribute("mechanism").unwrap_or("")),
            payload,
        }),
        "challenge" => payload().map(Received::Challenge),
        "response" => payload().map(Received::Response),
        "success" => payload().map(Received::Success),
        "abort" => Ok(Received::Abort),
        "failure" => {
            let mut condition = SaslFailure::NotAuthorized;
            let mut text = None;
            for child in node.children().filter(|c| c.is_element()) {
                if child.tag_name().name() == "text" {
                    text = child.text().map(String::from);
                } else if let Some(c) = SaslFailure::from_name(child.tag_name().name()) {
                    condition = c;
                }
            }
            Ok(Received::Failure { condition, text })
        }
        _ => return None,
    })
}
