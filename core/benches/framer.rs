//! Framer throughput against quick-xml and rxml on the same bytes (`stanza_stream.rs`), fed
//! in 4 KiB chunks as TLS records deliver them.
//!
//! What each case does with the stream:
//! - `framer`: ours; cuts it into the header and top-level elements and checks each
//!   element is UTF-8 and restricted XML (RFC 6120 §11): the work the driver does per read.
//! - `framer+parse`: the framer, then `xml::element::parse` (roxmltree) on every element,
//!   visiting every attribute and text node: what a stanza handler pays.
//! - `quick-xml/events`: quick-xml's buffered reader (its events are UTF-8 checked), event
//!   loop counting depth to find top-level elements: the framer's job.
//! - `quick-xml/decoded`: the same with every attribute value and text unescaped.
//! - `rxml`: xmpp-rs's parser (namespace-resolved events, attributes decoded).
//!
//! Run: `cargo bench -p xmpp-handshake-core --bench framer` (`-- --test` runs each once).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xmpp_handshake_core::stream::header::{Framing, StreamHeader};
use xmpp_handshake_core::xml::element;
use xmpp_handshake_core::xml::framer::{Frame, Framer, Limits};

mod stanza_stream;

const STREAM_BYTES: usize = 1 << 20;
const CHUNK: usize = 4096;

/// Feeds `data` to a framer in chunks; calls `f` with each element (and the header).
fn frame_all(data: &[u8], mut f: impl FnMut(&StreamHeader, &str)) -> usize {
    let mut framer = Framer::new(Framing::Tcp, Limits::default());
    let mut header = None;
    let mut elements = 0;
    for mut chunk in data.chunks(CHUNK) {
        while !chunk.is_empty() {
            let n = framer.push(chunk);
            chunk = &chunk[n..];
            loop {
                match framer.next_frame().expect("well-formed stream") {
                    Some(Frame::Header(h)) => header = Some(h),
                    Some(Frame::Element(raw)) => {
                        elements += 1;
                        f(header.as_ref().expect("header first"), raw);
                    }
                    Some(Frame::KeepAlive) | Some(Frame::End) => {}
                    None => break,
                }
            }
        }
    }
    elements
}

fn framer_only(data: &[u8]) -> usize {
    frame_all(data, |_, raw| {
        black_box(raw);
    })
}

fn framer_and_parse(data: &[u8]) -> usize {
    let mut visited = 0usize;
    let elements = frame_all(data, |header, raw| {
        visited += element::parse(raw, header, |root| {
            root.descendants()
                .map(|n| {
                    black_box(n.text());
                    n.attributes()
                        .map(|a| black_box(a.value()).len())
                        .sum::<usize>()
                        + 1
                })
                .sum::<usize>()
        })
        .expect("parses");
    });
    black_box(visited);
    elements
}

/// Unescapes and normalizes an attribute value (XML 1.0 §3.3.3), as a stanza handler would.
fn attribute_value(
    a: Result<
        quick_xml::events::attributes::Attribute<'_>,
        quick_xml::events::attributes::AttrError,
    >,
) -> usize {
    let a = a.expect("attribute");
    black_box(
        a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
            .expect("value"),
    )
    .len()
}

fn quick_xml(data: &[u8], decode: bool) -> usize {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(std::io::BufReader::with_capacity(CHUNK, data));
    let mut buf = Vec::with_capacity(CHUNK);
    let (mut depth, mut elements) = (0usize, 0usize);
    loop {
        match reader.read_event_into(&mut buf).expect("well-formed") {
            Event::Start(e) => {
                if decode {
                    for a in e.attributes() {
                        black_box(attribute_value(a));
                    }
                }
                depth += 1;
            }
            Event::Empty(e) => {
                if decode {
                    for a in e.attributes() {
                        black_box(attribute_value(a));
                    }
                }
                if depth == 1 {
                    elements += 1;
                }
            }
            Event::End(_) => {
                depth -= 1;
                if depth == 1 {
                    elements += 1;
                }
            }
            Event::Text(t) if decode => {
                black_box(t.xml10_content());
            }
            Event::GeneralRef(r) if decode => {
                black_box(r.resolve_char_ref().expect("reference"));
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    elements
}

fn rxml(data: &[u8]) -> usize {
    use rxml::{Event, Parse, Parser};
    let mut parser = Parser::new();
    let (mut depth, mut elements) = (0usize, 0usize);
    for mut chunk in data.chunks(CHUNK) {
        loop {
            match parser.parse(&mut chunk, false) {
                Ok(Some(Event::StartElement(_, name, attrs))) => {
                    black_box((name, attrs));
                    depth += 1;
                }
                Ok(Some(Event::EndElement(_))) => {
                    depth -= 1;
                    if depth == 1 {
                        elements += 1;
                    }
                }
                Ok(Some(ev)) => {
                    black_box(ev);
                }
                Err(rxml::error::EndOrError::NeedMoreData) => break,
                Ok(None) => break,
                Err(e) => panic!("rxml: {e:?}"),
            }
        }
    }
    elements
}

fn throughput(c: &mut Criterion) {
    let data = stanza_stream::stream(STREAM_BYTES);
    // Every parser must see the same elements, or the comparison means nothing.
    let expected = framer_only(&data);
    assert!(expected > 1000, "{expected} elements");
    assert_eq!(framer_and_parse(&data), expected);
    assert_eq!(quick_xml(&data, false), expected);
    assert_eq!(quick_xml(&data, true), expected);
    assert_eq!(rxml(&data), expected);

    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(20);
    group.bench_function("framer", |b| b.iter(|| framer_only(black_box(&data))));
    group.bench_function("framer+parse", |b| {
        b.iter(|| framer_and_parse(black_box(&data)))
    });
    group.bench_function("quick-xml/events", |b| {
        b.iter(|| quick_xml(black_box(&data), false))
    });
    group.bench_function("quick-xml/decoded", |b| {
        b.iter(|| quick_xml(black_box(&data), true))
    });
    group.bench_function("rxml", |b| b.iter(|| rxml(black_box(&data))));
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
