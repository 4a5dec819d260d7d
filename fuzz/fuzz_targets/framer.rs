//! The framer: arbitrary bytes in arbitrary reads. Checks that chunking never changes
//! the outcome (the frames and the error are those of the unsplit input), that the
//! buffer never holds more than its bound, and parses every element as the machines do.
//!
//! Input: byte 0 picks the framing (bit 0: RFC 7395), a stream header in front (bit 1)
//! and small limits (bit 2); the bytes after the first `\0` (if any) in bytes 1..17 are
//! read sizes (each 1..=255), the rest the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xmpp_handshake_core::stream::error::StreamError;
use xmpp_handshake_core::stream::header::{Framing, StreamHeader};
use xmpp_handshake_core::xml::element;
use xmpp_handshake_core::xml::framer::{Frame, Framer, Limits};

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

#[derive(Debug, PartialEq)]
enum Owned {
    Header(StreamHeader),
    /// The element's text and whether it parsed.
    Element(String, Result<(), StreamError>),
    KeepAlive,
    End,
}

fn run<'a>(
    framing: Framing,
    limits: Limits,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Owned>, Option<StreamError>) {
    let mut framer = Framer::new(framing, limits);
    let mut header = StreamHeader::default();
    let mut frames = Vec::new();
    for mut chunk in chunks {
        while !chunk.is_empty() {
            let n = framer.push(chunk);
            chunk = &chunk[n..];
            assert!(framer.pending().len() <= limits.max_element_bytes);
            loop {
                match framer.next_frame() {
                    Ok(Some(Frame::Header(h))) => {
                        header = h.clone();
                        frames.push(Owned::Header(h));
                    }
                    Ok(Some(Frame::Element(raw))) => {
                        let parsed = element::parse(raw, &header, |_| ());
                        frames.push(Owned::Element(raw.to_string(), parsed));
                    }
                    Ok(Some(Frame::KeepAlive)) => frames.push(Owned::KeepAlive),
                    Ok(Some(Frame::End)) => frames.push(Owned::End),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
            assert!(n > 0 || chunk.is_empty(), "buffer full without an error");
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let framing = if flags & 1 == 0 {
        Framing::Tcp
    } else {
        Framing::WebSocket
    };
    let limits = if flags & 4 == 0 {
        Limits::default()
    } else {
        Limits {
            max_element_bytes: 256,
            max_header_bytes: 200,
            max_depth: 4,
            max_attributes: 4,
            max_parse_bytes: 64 * 1024,
        }
    };
    let (sizes, body) = match rest.iter().take(17).position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let mut input = Vec::new();
    if flags & 2 != 0 {
        input.extend_from_slice(HEADER);
    }
    input.extend_from_slice(body);

    let whole = run(framing, limits, std::iter::once(&input[..]));
    let mut chunks = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= input.len() {
            break;
        }
        let end = (at + usize::from(*size)).min(input.len());
        chunks.push(&input[at..end]);
        at = end;
    }
    chunks.push(&input[at..]);
    let split = run(framing, limits, chunks.into_iter());
    assert_eq!(whole, split, "chunking changed the outcome");
});
