//! Memory stays under the configured bound (RFC 6120 §13.12), measured with a counting
//! allocator: what a machine allocates while it processes peer bytes depends on its
//! limits, never on how many bytes arrive. The framer's buffer is allocated once, when the
//! machine is made; an element is parsed (roxmltree) only once it is complete and within
//! `max_element_bytes`.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use support::negotiation::{negotiate, prefix, Replay, Scenario};
use xmpp_handshake_core::connection::{Negotiator, TlsInfo};
use xmpp_handshake_core::initiator::{InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sasl::MemoryStore;
use xmpp_handshake_core::stream::error::StreamErrorCondition;
use xmpp_handshake_core::stream::header::StreamHeader;
use xmpp_handshake_core::xml::element;
use xmpp_handshake_core::xml::framer::Limits;
use xmpp_handshake_core::Error;

/// Counts the bytes each thread has allocated and not freed, and its peak (per thread,
/// so that tests running in parallel do not see each other's allocations).
struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: the allocator also runs while a thread's locals are torn down.
    let _ = CURRENT.try_with(|c| {
        let now = c.get() + delta;
        c.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        count(-(layout.size() as isize));
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most `f` allocated (on this thread) on top of what was allocated before it.
fn peak_growth(f: impl FnOnce()) -> usize {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    usize::try_from(PEAK.with(Cell::get) - base).unwrap_or(0)
}

const SMALL: Limits = Limits {
    max_element_bytes: 8 * 1024,
    max_header_bytes: 1024,
    max_depth: 16,
    max_attributes: 16,
    max_parse_bytes: usize::MAX,
};

/// roxmltree's tree of one element: 7–10× the element's size for real stanzas (FACTS.md),
/// up to ~29× for an element made only of `<a/>`s (one node per four bytes, the most its
/// node limit allows); the bound is 32× plus the output and the events.
fn bound(limits: Limits) -> usize {
    32 * limits.max_element_bytes + 16 * 1024
}

const R_HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.com' version='1.0'>";
const I_HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

fn initiator(limits: Limits) -> InitiatingEntity<support::CountingRng> {
    let mut config = InitiatorConfig::client("example.com");
    config.limits = limits;
    InitiatingEntity::new(config, support::CountingRng(1))
}

fn receiver(limits: Limits) -> ReceivingEntity<support::CountingRng, MemoryStore> {
    let mut config = ReceiverConfig::client_to_server("example.com");
    config.limits = limits;
    ReceivingEntity::new(config, support::CountingRng(1), MemoryStore::new())
}

/// Feeds `head`, then `body` repeated until `total` bytes went in (or the machine
/// stopped), in reads of `read` bytes; returns the peak growth over the machine's own
/// size and the error it stopped with.
fn flood<M: Negotiator>(
    mut m: M,
    head: &[u8],
    body: &[u8],
    total: usize,
) -> (usize, Option<Error>) {
    let mut error = support::feed(&mut m, head, 4096).err();
    let mut fed = 0;
    let peak = peak_growth(|| {
        while error.is_none() && fed < total {
            error = support::feed(&mut m, body, 4096).err();
            fed += body.len();
            support::take_output(&mut m);
            while m.poll_event().is_some() {}
        }
    });
    (peak, error)
}

#[test]
fn keepalive_floods_take_no_memory_per_byte() {
    let spaces = [b' '; 4096];
    for total in [64 * 1024, 4 * 1024 * 1024] {
        let (peak, error) = flood(initiator(SMALL), R_HEADER.as_bytes(), &spaces, total);
        assert_eq!(error, None);
        assert!(
            peak < 4096,
            "initiator: {peak} bytes for {total} bytes of keepalives"
        );
        let (peak, error) = flood(receiver(SMALL), I_HEADER.as_bytes(), &spaces, total);
        assert_eq!(error, None);
        assert!(
            peak < 4096,
            "receiver: {peak} bytes for {total} bytes of keepalives"
        );
    }
}

#[test]
fn an_endless_element_stops_at_the_bound_with_policy_violation() {
    let text = [b'x'; 4096];
    for (role, head) in [("initiator", R_HEADER), ("receiver", I_HEADER)] {
        let head = format!("{head}<stream:features><x>");
        let (peak, error) = match role {
            "initiator" => flood(initiator(SMALL), head.as_bytes(), &text, 1 << 20),
            _ => flood(receiver(SMALL), head.as_bytes(), &text, 1 << 20),
        };
        assert!(
            matches!(&error, Some(Error::StreamErrorSent(e)) if e.condition == StreamErrorCondition::PolicyViolation),
            "{role}: {error:?}"
        );
        assert!(
            peak < 4096,
            "{role}: {peak} bytes beyond the framer's buffer"
        );
    }
}

#[test]
fn the_largest_allowed_element_parses_within_the_bound() {
    // Features of nearly `max_element_bytes` made of the smallest elements: the most
    // nodes an element of that size can make roxmltree build.
    let mut features = String::from("<stream:features>");
    while features.len() + 4 + "</stream:features>".len() <= SMALL.max_element_bytes {
        features.push_str("<a/>");
    }
    features.push_str("</stream:features>");
    let mut m = initiator(SMALL);
    support::feed(&mut m, R_HEADER.as_bytes(), 4096).unwrap();
    let mut result = Ok(());
    let peak = peak_growth(|| result = support::feed(&mut m, features.as_bytes(), 4096));
    // No STARTTLS offered: the machine refuses (§5.3.1), after parsing the features.
    assert_eq!(result, Err(Error::StartTlsNotOffered));
    assert!(
        peak <= bound(SMALL),
        "{peak} bytes for a {} byte element",
        features.len()
    );
}

/// Elements chosen to make roxmltree allocate the most for their size: what it reserves per
/// `<` and per `=`, text it must decode, namespace scopes it copies, deep nesting.
fn adversarial(size: usize) -> Vec<(&'static str, String)> {
    let fill = |open: &str, unit: &str, close: &str| {
        let n = size.saturating_sub(open.len() + close.len()) / unit.len();
        [open, &unit.repeat(n), close].concat()
    };
    let mut deep = String::new();
    let mut scopes = String::new();
    for i in 0..16 {
        deep.push_str("<a x='=' y='&lt;'>");
        scopes.push_str("<a");
        for j in 0..16 {
            scopes.push_str(&format!(" xmlns:n{i}x{j}='u'"));
        }
        scopes.push('>');
    }
    let deep = fill(&deep, "<a/>", &"</a>".repeat(16));
    let scopes = fill(&scopes, "<b xmlns:z='u'/>", &"</a>".repeat(16));
    vec![
        (
            "all `=` text",
            fill("<message><body>", "=", "</body></message>"),
        ),
        ("many <a/>", fill("<message>", "<a/>", "</message>")),
        (
            "text between elements",
            fill("<message>", "x<a/>", "</message>"),
        ),
        (
            "many attributes",
            fill("<message>", "<a a='' b='' c=''/>", "</message>"),
        ),
        (
            "many attribute references",
            fill("<message>", "<a a='&amp;'/>", "</message>"),
        ),
        (
            "values with tabs and newlines",
            fill("<message>", "<a a='\t\n' b=\"'\t\n\"/>", "</message>"),
        ),
        (
            "one long value with newlines",
            fill("<message a='", "\n=", "'/>"),
        ),
        (
            "text with newlines",
            fill("<message><body>", "\n", "</body></message>"),
        ),
        ("deep nesting", deep),
        ("namespace scopes copied", scopes),
        (
            "CDATA with `<`",
            fill("<message><body><![CDATA[", "<", "]]></body></message>"),
        ),
        (
            "CDATA split by text",
            fill("<message><body>", "<![CDATA[<]]>&amp;", "</body></message>"),
        ),
        (
            "text with references",
            fill("<message><body>", "&lt;=", "</body></message>"),
        ),
        (
            "text with CRs",
            fill("<message><body>", "\r=", "</body></message>"),
        ),
        (
            "a plain message",
            fill(
                "<message to='a@b' type='chat'><body>",
                "hello ",
                "</body></message>",
            ),
        ),
    ]
}

fn client_header() -> StreamHeader {
    StreamHeader {
        default_ns: Some("jabber:client".into()),
        stream_prefix: "stream".into(),
        prefixes: Vec::new(),
        version: Some("1.0".into()),
        ..StreamHeader::default()
    }
}

/// `element::parse_cost` is an upper bound of what parsing takes: measured on adversarial
/// elements of several sizes, each accepted (the bound set to its cost) and parsed.
#[test]
fn parse_cost_bounds_the_measured_parse() {
    let header = client_header();
    for size in [256, 4096, 16 * 1024, 64 * 1024] {
        for (name, raw) in adversarial(size) {
            let limits = Limits {
                max_element_bytes: size,
                max_parse_bytes: usize::MAX,
                ..SMALL
            };
            let cost = element::parse_cost(&raw, &header, &limits);
            let limits = Limits {
                max_parse_bytes: cost,
                ..limits
            };
            let mut parsed = Err(None);
            let peak = peak_growth(|| {
                parsed = element::parse_within(&raw, &header, &limits, |_| ()).map_err(Some)
            });
            assert_eq!(parsed, Ok(()), "{name} ({size} bytes) must parse");
            assert!(
                peak <= cost,
                "{name} ({} bytes): {peak} bytes measured, bound {cost}",
                raw.len()
            );
            eprintln!(
                "{name} ({} bytes): measured {peak}, bound {cost} ({:.1}x)",
                raw.len(),
                cost as f64 / peak.max(1) as f64
            );
        }
    }
}

/// Over the bound, an element is refused before roxmltree reserves anything: a
/// `policy-violation` (§4.9.3.14), and the heap barely moves.
#[test]
fn an_element_over_the_parse_bound_is_refused_unparsed() {
    let header = client_header();
    let raw = ["<message><body>", &"=".repeat(4000), "</body></message>"].concat();
    let limits = Limits {
        max_parse_bytes: 16 * 1024,
        ..SMALL
    };
    assert!(element::parse_cost(&raw, &header, &limits) > limits.max_parse_bytes);
    let mut parsed = Ok(());
    let peak = peak_growth(|| parsed = element::parse_within(&raw, &header, &limits, |_| ()));
    let error = parsed.unwrap_err();
    assert_eq!(error.condition, StreamErrorCondition::PolicyViolation);
    assert!(peak < 256, "{peak} bytes allocated to refuse it");
    // A plain message of the same size passes the same bound.
    let plain = ["<message><body>", &"x".repeat(4000), "</body></message>"].concat();
    assert_eq!(
        element::parse_within(&plain, &header, &limits, |_| ()),
        Ok(())
    );
}

/// The machines refuse it with that stream error, during negotiation.
#[test]
fn a_costly_element_in_negotiation_is_a_policy_violation() {
    let limits = Limits {
        max_parse_bytes: 16 * 1024,
        ..SMALL
    };
    let body = "=".repeat(4000);
    let features = format!("<stream:features><x>{body}</x></stream:features>");
    let mut m = initiator(limits);
    support::feed(&mut m, R_HEADER.as_bytes(), 4096).unwrap();
    let mut result = Ok(());
    let peak = peak_growth(|| result = support::feed(&mut m, features.as_bytes(), 4096));
    assert!(
        matches!(&result, Err(Error::StreamErrorSent(e)) if e.condition == StreamErrorCondition::PolicyViolation),
        "{result:?}"
    );
    assert!(peak < 4096, "{peak} bytes");
    let mut m = receiver(limits);
    let result = support::feed(&mut m, I_HEADER.as_bytes(), 4096)
        .and_then(|()| support::feed(&mut m, format!("<auth>{body}</auth>").as_bytes(), 4096));
    assert!(
        matches!(&result, Err(Error::StreamErrorSent(e)) if e.condition == StreamErrorCondition::PolicyViolation),
        "{result:?}"
    );
    // A stream header full of `=` is refused the same way.
    let header = format!(
        "<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='{}' version='1.0'>",
        "=".repeat(900)
    );
    let limits = Limits {
        max_parse_bytes: 8 * 1024,
        ..SMALL
    };
    let result = support::feed(&mut initiator(limits), header.as_bytes(), 4096);
    assert!(
        matches!(&result, Err(Error::StreamErrorSent(e)) if e.condition == StreamErrorCondition::PolicyViolation),
        "{result:?}"
    );
}

/// The default refuses nothing the other default limits let through.
#[test]
fn the_default_parse_bound_refuses_no_element_of_the_default_size() {
    let limits = Limits::default();
    let header = client_header();
    for (name, raw) in adversarial(limits.max_element_bytes) {
        let cost = element::parse_cost(&raw, &header, &limits);
        assert!(cost <= limits.max_parse_bytes, "{name}: {cost}");
    }
    // The figure the docs give (README, `Limits::max_parse_bytes`).
    #[cfg(target_pointer_width = "64")]
    assert_eq!(limits.max_parse_bytes / 1_000_000, 140);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever follows any valid prefix of a real negotiation, the heap each machine grows
    /// by stays under the bound its limits imply.
    #[test]
    fn any_input_stays_under_the_bound(
        k in any::<usize>(),
        parts in proptest::collection::vec(
            prop_oneof![
                Just("<a>"), Just("</a>"), Just("<b x='1' y='2'/>"), Just("text"),
                Just("<stream:features>"), Just("</stream:features>"), Just("   "),
                Just("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"),
                Just("<mechanism>PLAIN</mechanism>"), Just("</mechanisms>"),
                Just("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"), Just("</response>"),
                Just("&amp;"), Just("<![CDATA[x]]>"),
            ],
            0..400,
        ),
        repeat in 1usize..64,
    ) {
            let scenario = Scenario::ScramPlus;
        let t = negotiate(scenario);
        let tail = parts.concat().repeat(repeat);
        for (initiating, peer) in [(true, &t.to_initiator), (false, &t.to_receiver)] {
            let total: usize = peer.iter().map(Vec::len).sum();
            let epochs = prefix(peer, k % (total + 1));
            let tls: TlsInfo = scenario.tls_info(initiating);
            let peak = if initiating {
                let mut replay = Replay::new(scenario.initiator(), tls);
                epochs.iter().for_each(|e| replay.feed(e));
                peak_growth(|| tail.as_bytes().chunks(997).for_each(|c| replay.feed(c)))
            } else {
                let mut replay = Replay::new(scenario.receiver(), tls);
                epochs.iter().for_each(|e| replay.feed(e));
                peak_growth(|| tail.as_bytes().chunks(997).for_each(|c| replay.feed(c)))
            };
            prop_assert!(peak <= bound(Limits::default()), "{peak} bytes for {} bytes", tail.len());
        }
    }
}
