//! Cutting a byte stream into stream headers, top-level elements and closing tags, without
//! parsing them: for transcripts, and for RFC 7395 transports, which send one element per
//! WebSocket message (RFC 7395 §3.3.3).
//!
//! Unlike [`framer`](super::framer), nothing here checks well-formedness: it only follows
//! tags, quotes and nesting depth, for output we produced ourselves or input the framer
//! checks anyway.

use alloc::string::String;
use alloc::vec::Vec;

/// Cuts a byte stream into stream headers, top-level elements and closing tags.
///
/// Markup is ASCII, so bytes are scanned as they come; an element split across reads is
/// held until it is complete. Whitespace between elements (keepalives) is dropped.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Nesting below the stream root.
    depth: u32,
    in_tag: bool,
    quote: Option<u8>,
    tag_start: usize,
}

impl Splitter {
    /// Feeds `bytes`; returns what became complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if !self.in_tag && self.depth == 0 && self.buf.is_empty() && b.is_ascii_whitespace() {
                continue;
            }
            self.buf.push(b);
            if self.in_tag {
                match (self.quote, b) {
                    (Some(q), _) if q == b => self.quote = None,
                    (Some(_), _) => {}
                    (None, b'\'' | b'"') => self.quote = Some(b),
                    (None, b'>') => {
                        self.in_tag = false;
                        if self.end_of_tag() {
                            out.push(String::from_utf8_lossy(&self.buf).into_owned());
                            self.buf.clear();
                        }
                    }
                    _ => {}
                }
            } else if b == b'<' {
                self.in_tag = true;
                self.tag_start = self.buf.len() - 1;
            }
        }
        out
    }

    /// Bytes held for an item not complete yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// A tag ended at the end of `buf`: adjusts the depth; true when an item is complete.
    fn end_of_tag(&mut self) -> bool {
        let tag = &self.buf[self.tag_start..];
        let inner = &tag[1..tag.len() - 1];
        if inner.starts_with(b"?") || inner.starts_with(b"!") {
            // XML declaration or comment: part of what follows.
            return false;
        }
        if let Some(name) = inner.strip_prefix(b"/") {
            if self.depth == 0 || is_stream_root(name) {
                // The closing tag of the stream.
                self.depth = 0;
                return true;
            }
            self.depth -= 1;
            return self.depth == 0;
        }
        if inner.ends_with(b"/") {
            return self.depth == 0;
        }
        if self.depth == 0 && is_stream_root(inner) {
            // The stream header (TCP framing): the root stays open.
            return true;
        }
        self.depth += 1;
        false
    }
}

fn is_stream_root(tag: &[u8]) -> bool {
    let name_end = tag
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/')
        .unwrap_or(tag.len());
    let name = &tag[..name_end];
    name == b"stream" || name.ends_with(b":stream")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn splits_header_elements_and_closing_tag() {
        let mut s = Splitter::default();
        let input = "<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client' \
                     xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\
                     <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features> \
                     <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>";
        let mut items = Vec::new();
        // Byte by byte: elements split across reads are held until complete.
        for b in input.as_bytes() {
            items.extend(s.feed(&[*b]));
        }
        assert_eq!(items.len(), 4, "{items:#?}");
        assert!(items[0].starts_with("<?xml version='1.0'?><stream:stream"));
        assert!(items[1].starts_with("<stream:features>"));
        assert!(items[1].ends_with("</stream:features>"));
        assert_eq!(
            items[2],
            "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        );
        assert_eq!(items[3], "</stream:stream>");
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn splits_rfc7395_open_elements_and_close() {
        let mut s = Splitter::default();
        let items = s.feed(
            b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x' version='1.0'/>\
              <iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>\
              <close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/><message",
        );
        assert_eq!(items.len(), 3, "{items:#?}");
        assert!(items[0].starts_with("<open "));
        assert!(items[1].starts_with("<iq ") && items[1].ends_with("</iq>"));
        assert!(items[2].starts_with("<close "));
        assert_eq!(s.pending(), "<message".len());
    }

    #[test]
    fn quoted_angle_brackets_do_not_end_a_tag() {
        let mut s = Splitter::default();
        let items = s.feed(b"<message to='a>b'><body>x</body></message>");
        assert_eq!(items, vec!["<message to='a>b'><body>x</body></message>"]);
    }
}
