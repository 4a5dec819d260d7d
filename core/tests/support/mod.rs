//! Shared helpers for the sans-IO tests: feed bytes, collect output and events.
#![allow(dead_code)]

use xmpp_handshake_core::connection::{Event, Negotiator, Step};
use xmpp_handshake_core::Error;

pub mod negotiation;
#[allow(unused_imports)]
pub use negotiation::CountingRng;

/// Feeds `bytes` to `m` in chunks of `chunk` bytes; stops at the first error.
pub fn feed<M: Negotiator>(m: &mut M, bytes: &[u8], chunk: usize) -> Result<(), Error> {
    for piece in bytes.chunks(chunk.max(1)) {
        let mut rest = piece;
        while !rest.is_empty() {
            let buf = m.receive_buffer();
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            m.received(n)?;
            rest = &rest[n..];
        }
    }
    Ok(())
}

/// Takes everything the machine wants to send.
pub fn output<M: Negotiator>(m: &mut M) -> String {
    String::from_utf8(take_output(m)).expect("we send UTF-8")
}

pub use negotiation::take_output;

/// Takes all events, split into steps and the rest.
pub fn events<M: Negotiator>(m: &mut M) -> (Vec<Step>, Vec<Event>) {
    let mut steps = Vec::new();
    let mut other = Vec::new();
    while let Some(e) = m.poll_event() {
        match e {
            Event::Step(s) => steps.push(s),
            e => other.push(e),
        }
    }
    (steps, other)
}

/// Parses a run of top-level elements (or a header) we sent, for semantic comparison:
/// wraps it so it is one document, closing an open stream header.
pub fn parse_sent(out: &str) -> Vec<(String, Vec<(String, String)>)> {
    let body = out.trim_start_matches("<?xml version='1.0'?>");
    let closed = if body.starts_with("<stream:stream") {
        let end = body.find('>').expect("header ends");
        format!("{}/>{}", &body[..end], &body[end + 1..])
    } else {
        body.to_string()
    };
    let doc_text = format!(
        "<w xmlns:stream='http://etherx.jabber.org/streams'>{}</w>",
        closed.replace("</stream:stream>", "")
    );
    let doc = roxmltree::Document::parse(&doc_text).expect("we send well-formed XML");
    doc.root_element()
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            let name = format!(
                "{{{}}}{}",
                n.tag_name().namespace().unwrap_or(""),
                n.tag_name().name()
            );
            let mut attrs: Vec<(String, String)> = n
                .attributes()
                .map(|a| (a.name().to_string(), a.value().to_string()))
                .collect();
            attrs.sort();
            (name, attrs)
        })
        .collect()
}

pub fn attr<'a>(el: &'a (String, Vec<(String, String)>), name: &str) -> Option<&'a str> {
    el.1.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

pub const STREAMS: &str = "http://etherx.jabber.org/streams";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
