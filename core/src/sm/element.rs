//! The XEP-0198 elements (v1.6, `urn:xmpp:sm:3`): built as text, read from a parsed node.
//! They are "nonzas" (§1): top-level elements that are not stanzas and are never counted.

use alloc::string::String;
use core::fmt::Write as _;

use crate::xml::decimal::push_decimal;
use crate::xml::escape::escape_attr;

use super::NS_SM;

/// `urn:ietf:params:xml:ns:xmpp-stanzas`: the conditions inside `<failed/>` (§6).
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// A stream-management element that arrived, read into owned values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Nonza {
    /// `<enable/>` (§3).
    Enable { resume: bool, max: Option<u32> },
    /// `<enabled/>` (§3).
    Enabled {
        id: Option<String>,
        resume: bool,
        max: Option<u32>,
        location: Option<String>,
    },
    /// `<failed/>` (§3, §5, §6), with `h` when the server gives it (v1.6).
    Failed {
        h: Option<u32>,
        condition: Option<String>,
    },
    /// `<r/>` (§4).
    Request,
    /// `<a h=…/>` (§4).
    Ack { h: u32 },
    /// `<resume previd=… h=…/>` (§5).
    Resume { previd: String, h: u32 },
    /// `<resumed previd=… h=…/>` (§5).
    Resumed { previd: String, h: u32 },
}

/// Why a stream-management element could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// `node` as a stream-management element: `None` when it is not one (another namespace or
/// an unknown name), `Err` when a required attribute is missing or not a number.
pub(crate) fn parse(node: roxmltree::Node<'_, '_>) -> Option<Result<Nonza, Malformed>> {
    if node.tag_name().namespace() != Some(NS_SM) {
        return None;
    }
    let attr = |name| node.attribute(name).map(String::from);
    Some(match node.tag_name().name() {
        "enable" => Ok(Nonza::Enable {
            resume: flag(node.attribute("resume")),
            max: number(node.attribute("max")),
        }),
        "enabled" => Ok(Nonza::Enabled {
            id: attr("id"),
            resume: flag(node.attribute("resume")),
            max: number(node.attribute("max")),
            location: attr("location"),
        }),
        "failed" => Ok(Nonza::Failed {
            h: number(node.attribute("h")),
            condition: node
                .children()
                .find(|c| c.is_element() && c.tag_name().namespace() == Some(NS_STANZAS))
                .map(|c| String::from(c.tag_name().name())),
        }),
        "r" => Ok(Nonza::Request),
        "a" => required_h(node).map(|h| Nonza::Ack { h }),
        "resume" | "resumed" => {
            let h = match required_h(node) {
                Ok(h) => h,
                Err(e) => return Some(Err(e)),
            };
            let Some(previd) = attr("previd") else {
                return Some(Err(Malformed("previd missing")));
            };
            Ok(if node.tag_name().name() == "resume" {
                Nonza::Resume { previd, h }
            } else {
                Nonza::Resumed { previd, h }
            })
        }
        _ => return None,
    })
}

/// §4: `h` is an `xs:unsignedInt`.
fn required_h(node: roxmltree::Node<'_, '_>) -> Result<u32, Malformed> {
    number(node.attribute("h")).ok_or(Malformed("h missing or not a 32-bit count"))
}

fn number(value: Option<&str>) -> Option<u32> {
    value.and_then(|v| v.trim().parse().ok())
}

/// `xs:boolean`.
fn flag(value: Option<&str>) -> bool {
    matches!(value.map(str::trim), Some("true" | "1"))
}

/// `<enable/>` (§3), asking for resumption and proposing `max` seconds.
pub(crate) fn enable(resume: bool, max: Option<u32>) -> String {
    let mut s = String::from("<enable xmlns='urn:xmpp:sm:3'");
    if resume {
        s.push_str(" resume='true'");
    }
    if let Some(max) = max {
        s.push_str(" max='");
        push_decimal(&mut s, max);
        s.push('\'');
    }
    s.push_str("/>");
    s
}

/// `<enabled/>` (§3): `id` only when the session can be resumed (§5).
pub(crate) fn enabled(id: Option<&str>, max: Option<u32>) -> String {
    let mut s = String::from("<enabled xmlns='urn:xmpp:sm:3'");
    if let Some(id) = id {
        s.push_str(" id='");
        escape_attr(id, &mut s);
        s.push_str("' resume='true'");
        if let Some(max) = max {
            s.push_str(" max='");
            push_decimal(&mut s, max);
            s.push('\'');
        }
    }
    s.push_str("/>");
    s
}

/// `<failed/>` with a stanza error condition (§6) and, when known, our `h` (v1.6).
pub(crate) fn failed(condition: &str, h: Option<u32>) -> String {
    let mut s = String::from("<failed xmlns='urn:xmpp:sm:3'");
    if let Some(h) = h {
        s.push_str(" h='");
        push_decimal(&mut s, h);
        s.push('\'');
    }
    let _ = write!(s, "><{condition} xmlns='{NS_STANZAS}'/></failed>");
    s
}

/// `<r/>` (§4).
pub(crate) const REQUEST: &str = "<r xmlns='urn:xmpp:sm:3'/>";

/// `<a h=…/>` (§4).
pub(crate) fn ack(h: u32) -> String {
    let mut s = String::from("<a xmlns='urn:xmpp:sm:3' h='");
    push_decimal(&mut s, h);
    s.push_str("'/>");
    s
}

/// `<resume/>` (§5).
pub(crate) fn resume(previd: &str, h: u32) -> String {
    previd_h("resume", previd, h)
}

/// `<resumed/>` (§5).
pub(crate) fn resumed(previd: &str, h: u32) -> String {
    previd_h("resumed", previd, h)
}

fn previd_h(name: &str, previd: &str, h: u32) -> String {
    let mut s = String::from("<");
    s.push_str(name);
    s.push_str(" xmlns='urn:xmpp:sm:3' h='");
    push_decimal(&mut s, h);
    s.push_str("' previd='");
    escape_attr(previd, &mut s);
    s.push_str("'/>");
    s
}

/// The stream error for an `h` above what was sent (§4): `<undefined-condition/>` with
/// `<handled-count-too-high/>`.
pub(crate) fn handled_count_too_high(h: u32, send_count: u32) -> String {
    // Digits by hand: `write!` linked the integers' `Display` into firmware for this.
    let mut s = String::from(
        "<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
         <handled-count-too-high xmlns='urn:xmpp:sm:3' h='",
    );
    push_decimal(&mut s, h);
    s.push_str("' send-count='");
    push_decimal(&mut s, send_count);
    s.push_str("'/>");
    // `<text/>` is OPTIONAL (RFC 6120 §4.9.2): only with `error-text`.
    if cfg!(feature = "error-text") {
        s.push_str(
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>You acknowledged \
             more stanzas than were sent</text>",
        );
    }
    s.push_str("</stream:error>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(xml: &str) -> Option<Result<Nonza, Malformed>> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        parse(doc.root_element())
    }

    #[test]
    fn reads_what_it_writes() {
        assert_eq!(
            read(&enable(true, Some(60))),
            Some(Ok(Nonza::Enable {
                resume: true,
                max: Some(60)
            }))
        );
        assert_eq!(
            read(&enabled(Some("a'b"), Some(300))),
            Some(Ok(Nonza::Enabled {
                id: Some(String::from("a'b")),
                resume: true,
                max: Some(300),
                location: None
            }))
        );
        assert_eq!(
            read(&failed("item-not-found", Some(7))),
            Some(Ok(Nonza::Failed {
                h: Some(7),
                condition: Some(String::from("item-not-found"))
            }))
        );
        assert_eq!(read(REQUEST), Some(Ok(Nonza::Request)));
        assert_eq!(read(&ack(u32::MAX)), Some(Ok(Nonza::Ack { h: u32::MAX })));
        assert_eq!(
            read(&resume("x", 3)),
            Some(Ok(Nonza::Resume {
                previd: String::from("x"),
                h: 3
            }))
        );
        assert_eq!(
            read(&resumed("x", 4)),
            Some(Ok(Nonza::Resumed {
                previd: String::from("x"),
                h: 4
            }))
        );
    }

    #[test]
    fn h_is_a_32_bit_count() {
        assert!(read("<a xmlns='urn:xmpp:sm:3' h='4294967296'/>")
            .unwrap()
            .is_err());
        assert!(read("<a xmlns='urn:xmpp:sm:3'/>").unwrap().is_err());
        assert!(read("<a xmlns='urn:xmpp:sm:3' h='-1'/>").unwrap().is_err());
        assert!(read("<resume xmlns='urn:xmpp:sm:3' h='1'/>")
            .unwrap()
            .is_err());
        assert_eq!(read("<a xmlns='urn:xmpp:sm:2' h='1'/>"), None);
        assert_eq!(read("<x xmlns='urn:xmpp:sm:3'/>"), None);
    }
}
