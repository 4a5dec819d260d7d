//! Streaming framer (RFC 6120 §4, §11): cuts an XML stream into its header, top-level
//! elements, whitespace keep-alives and closing tag, in a buffer whose size the caller sets.
//!
//! The framer is a lexer whose state survives between calls, so bytes may arrive in chunks
//! of any size, down to one, and each byte is looked at once. It steps a byte at a time
//! through markup and skips runs that cannot change its state (text, attribute values,
//! names: most of a stanza) in tight loops. It knows just enough XML to find where a
//! top-level element ends (tags, attribute values, CDATA sections, references) and to
//! refuse what RFC 6120 §11.1 forbids (comments, processing instructions, DTDs, entity
//! references other than the five predefined ones) before the element is complete. The
//! complete element is then checked to be UTF-8 (§11.6) and handed out as text;
//! [`crate::xml::element::parse`] builds the tree.
//!
//! Memory is bounded (§13.12): the buffer is allocated once in [`Framer::new`], never grown,
//! and an element that does not fit is a `policy-violation` stream error.
//!
//! With [`Framing::WebSocket`] (RFC 7395) there is no enclosing `<stream:stream>`: every
//! top-level element is a frame; `<open/>` and `<close/>` in the framing namespace become
//! [`Frame::Header`] and [`Frame::End`].

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{self, Framing, StreamHeader, NS_FRAMING};
use crate::xml::document;
use crate::xml::limits::within_cost;

// `Limits` was defined here; the path stays for the crates that use it.
pub use crate::xml::limits::Limits;

/// One unit of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The peer's stream header (§4.7) or RFC 7395 `<open/>`.
    Header(StreamHeader),
    /// One complete top-level element, as its raw text (UTF-8, restricted XML checked).
    Element(&'a str),
    /// Whitespace between top-level elements (§4.6.1 keep-alive).
    KeepAlive,
    /// `</stream:stream>` or RFC 7395 `<close/>` (§4.4).
    End,
}

/// The streaming framer. See the module docs.
///
/// Feed it with [`Framer::free_space`] + [`Framer::commit`] (read straight into the buffer)
/// or with [`Framer::push`], then call [`Framer::next_frame`] until it returns `Ok(None)`.
/// After an error every call to [`Framer::next_frame`] returns that error again.
pub struct Framer {
    buf: Box<[u8]>,
    lexer: Lexer,
    error: Option<StreamError>,
}

impl Framer {
    /// A framer for `framing` whose buffer holds `limits.max_element_bytes`.
    pub fn new(framing: Framing, limits: Limits) -> Self {
        Framer {
            buf: alloc::vec![0; limits.max_element_bytes].into_boxed_slice(),
            lexer: Lexer::new(framing, limits),
            error: None,
        }
    }

    /// The limits this framer enforces.
    pub fn limits(&self) -> Limits {
        self.lexer.limits
    }

    /// The framing this framer expects.
    pub fn framing(&self) -> Framing {
        self.lexer.framing
    }

    /// Free space at the end of the buffer to read into (compacts first).
    ///
    /// Empty only when the buffer is full, which [`Framer::next_frame`] reports as a
    /// `policy-violation`.
    pub fn free_space(&mut self) -> &mut [u8] {
        self.compact();
        self.buf.get_mut(self.lexer.end..).unwrap_or_default()
    }

    /// Marks `n` bytes written into [`Framer::free_space`] as received.
    pub fn commit(&mut self, n: usize) {
        self.lexer.end = self.lexer.end.saturating_add(n).min(self.buf.len());
    }

    /// Copies as much of `data` as fits; returns how many bytes were taken.
    pub fn push(&mut self, data: &[u8]) -> usize {
        if self.buf.len() - self.lexer.end < data.len() {
            self.compact();
        }
        let free = self.buf.get_mut(self.lexer.end..).unwrap_or_default();
        let n = data.len().min(free.len());
        if let (Some(to), Some(from)) = (free.get_mut(..n), data.get(..n)) {
            to.copy_from_slice(from);
        }
        self.lexer.end += n;
        n
    }

    /// The next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, StreamError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match self.lexer.advance(&self.buf) {
            Ok(frame) => Ok(frame),
            Err(error) => {
                self.error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Bytes received but not yet returned in a frame.
    pub fn pending(&self) -> &[u8] {
        self.buf
            .get(self.lexer.start..self.lexer.end)
            .unwrap_or_default()
    }

    /// Expect a new stream header (restart after TLS or SASL, §4.3.3).
    ///
    /// Bytes already received stay pending and are scanned again as the start of the new
    /// stream; after TLS the caller checks [`Framer::pending`] is empty first (§5.4.3.3).
    pub fn restart(&mut self) {
        self.lexer.restart();
    }

    /// Moves the pending bytes to the front of the buffer.
    fn compact(&mut self) {
        let start = self.lexer.start;
        if start > 0 {
            self.buf.copy_within(start..self.lexer.end, 0);
            self.lexer.shift(start);
        }
    }
}

/// Where the stream is (§4.2 – §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// TCP only: before `<stream:stream>`; an XML declaration and whitespace may come first.
    Header,
    /// Inside the stream: top-level elements, whitespace, the closing tag.
    Open,
    /// After `</stream:stream>` or `<close/>`: nothing more is framed.
    Closed,
}

/// A fixed string the lexer is in the middle of matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    /// `CDATA[` after `<![`.
    Cdata,
    /// `xml` after `<?`, the start of the XML declaration.
    Xml,
}

impl Keyword {
    fn bytes(self) -> &'static [u8] {
        match self {
            Keyword::Cdata => b"CDATA[",
            Keyword::Xml => b"xml",
        }
    }
}

/// The part of an entity or character reference read so far (XML 1.0 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference {
    /// Right after `&`.
    Start,
    /// An entity name; only the predefined ones (at most four bytes) are allowed.
    Name { name: [u8; 4], len: u8 },
    /// After `&#`.
    Hash,
    /// `&#` followed by decimal digits.
    Decimal(u32),
    /// After `&#x`, with `digits` read so far.
    Hex { value: u32, digits: bool },
}

/// What the lexer is in the middle of (XML 1.0 §2.4 – §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// At stream level (or before the header), between frames.
    Idle,
    /// In a run of whitespace at stream level, already reported as one keep-alive.
    Spaces,
    /// Character data inside an element.
    Text,
    /// After `<`.
    Lt,
    /// After `<!`.
    Bang,
    /// Matching `matched` bytes of a keyword so far.
    Keyword { keyword: Keyword, matched: usize },
    /// Inside the XML declaration; `question` if the last byte was `?`.
    Declaration { question: bool },
    /// In a CDATA section, counting the `]` just seen.
    Cdata { brackets: u8 },
    /// In a start tag's name.
    StartName,
    /// In a start tag, where an attribute or the tag's end may come.
    InTag,
    /// In an attribute name.
    AttributeName,
    /// After an attribute name, before `=`.
    BeforeEquals,
    /// After `=`, before the opening quote.
    BeforeValue,
    /// In an attribute value opened by `quote`.
    Value { quote: u8 },
    /// Right after an attribute value: whitespace, `/` or `>` must follow.
    AfterValue,
    /// After the `/` of an empty-element tag: `>` must follow.
    EmptyEnd,
    /// In an end tag's name, `matched` bytes of the expected name matched so far.
    EndName { matched: usize },
    /// After an end tag's name, before `>`.
    EndTail,
    /// In a reference, inside an attribute value opened by `quote` or in text (`None`).
    Reference {
        quote: Option<u8>,
        reference: Reference,
    },
}

/// What a byte completed.
enum Event {
    /// Bytes up to here belong to no frame (whitespace before the header, the declaration).
    Skip,
    /// The first byte of a run of whitespace at stream level.
    KeepAlive,
    /// The `>` of the stream header (TCP).
    Header,
    /// The end of a top-level element.
    Element,
    /// The end of `</stream:stream>`.
    End,
}

/// All of the framer's state but the buffer. Positions index the buffer.
struct Lexer {
    framing: Framing,
    limits: Limits,
    phase: Phase,
    lex: Lex,
    /// The first byte not yet returned in a frame.
    start: usize,
    /// The first byte not yet scanned.
    scan: usize,
    /// The end of received data.
    end: usize,
    /// The `<` of the start tag being read.
    tag_open: usize,
    /// The length of the start tag's name, once read.
    name_len: usize,
    /// Attributes on the start tag being read.
    attributes: usize,
    /// Names (position, length) of the elements open inside the current top-level element;
    /// capacity `max_depth`, never exceeded.
    open: Vec<(usize, usize)>,
    /// Bytes scanned since the stream (re)started, while the header is incomplete.
    header_len: usize,
    /// An XML declaration may still come: nothing has been scanned since the (re)start.
    declaration_allowed: bool,
    /// The qualified name that closes the stream, e.g. `stream:stream` (TCP).
    closing: String,
}

impl Lexer {
    fn new(framing: Framing, limits: Limits) -> Self {
        let mut lexer = Lexer {
            framing,
            limits,
            phase: Phase::Open,
            lex: Lex::Idle,
            start: 0,
            scan: 0,
            end: 0,
            tag_open: 0,
            name_len: 0,
            attributes: 0,
            open: Vec::with_capacity(limits.max_depth),
            header_len: 0,
            declaration_allowed: true,
            closing: String::new(),
        };
        lexer.restart();
        lexer
    }

    /// Forgets the partial scan and expects a header (§4.3.3).
    fn restart(&mut self) {
        self.phase = match self.framing {
            Framing::Tcp => Phase::Header,
            Framing::WebSocket => Phase::Open,
        };
        self.lex = Lex::Idle;
        self.scan = self.start;
        self.open.clear();
        self.header_len = 0;
        self.declaration_allowed = true;
    }

    /// The buffer's first `by` bytes were dropped.
    fn shift(&mut self, by: usize) {
        self.start -= by;
        self.scan -= by;
        self.end -= by;
        self.tag_open = self.tag_open.saturating_sub(by);
        for (position, _) in &mut self.open {
            *position = position.saturating_sub(by);
        }
    }

    /// Scans received bytes until a frame is complete.
    fn advance<'b>(&mut self, buf: &'b [u8]) -> Result<Option<Frame<'b>>, StreamError> {
        // After the closing tag nothing is scanned (§4.4: no data may follow it), but what
        // still arrives must not fill the buffer silently.
        while self.phase != Phase::Closed && self.scan < self.end {
            let rest = buf.get(self.scan..self.end).unwrap_or_default();
            let run = self.skip(rest, buf);
            self.scanned(run)?;
            let Some(&byte) = rest.get(run) else { break };
            let event = self.step(byte, buf)?;
            self.scanned(1)?;
            let Some(event) = event else { continue };
            let from = core::mem::replace(&mut self.start, self.scan);
            let text = || utf8(buf.get(from..self.scan).unwrap_or_default());
            match event {
                Event::Skip => {}
                Event::KeepAlive => return Ok(Some(Frame::KeepAlive)),
                Event::Header => {
                    let header = header::parse(text()?, &self.limits)?;
                    self.closing.clear();
                    self.closing.push_str(&header.stream_prefix);
                    self.closing.push_str(":stream");
                    self.phase = Phase::Open;
                    return Ok(Some(Frame::Header(header)));
                }
                Event::Element => {
                    let text = text()?;
                    let frame = match self.framing {
                        Framing::Tcp => Frame::Element(text),
                        Framing::WebSocket => websocket_frame(text, &self.limits)?,
                    };
                    if frame == Frame::End {
                        self.phase = Phase::Closed;
                    }
                    return Ok(Some(frame));
                }
                Event::End => {
                    self.phase = Phase::Closed;
                    return Ok(Some(Frame::End));
                }
            }
        }
        if self.end - self.start >= buf.len() {
            return Err(error(
                StreamErrorCondition::PolicyViolation,
                if self.phase == Phase::Closed {
                    "data after the closing tag fills the framer's buffer"
                } else {
                    "element larger than the framer's buffer"
                },
            ));
        }
        Ok(None)
    }

    /// Moves the scan position on by `n` bytes, counting them against the header's limit.
    fn scanned(&mut self, n: usize) -> Result<(), StreamError> {
        self.scan += n;
        if self.phase == Phase::Header {
            self.header_len += n;
            if self.header_len > self.limits.max_header_bytes {
                return Err(error(
                    StreamErrorCondition::PolicyViolation,
                    "stream header too long",
                ));
            }
        }
        Ok(())
    }

    /// How many bytes at the start of `rest` the current state takes as they come, with
    /// no transition and no check beyond what the loop tests: a run of text, of an
    /// attribute value or of CDATA content up to the next byte that means something there,
    /// a run of name characters, the part of an end tag's name that matches. [`Lexer::step`]
    /// would leave the state as it is on each of them, so the run is skipped in one tight
    /// loop instead, and `step` sees the byte that ends it. Most of a stanza's bytes are in
    /// such runs. `buf` holds the names of open elements.
    fn skip(&mut self, rest: &[u8], buf: &[u8]) -> usize {
        match self.lex {
            Lex::Text => run_len(rest, Run::TEXT),
            Lex::Value { quote } => run_len(rest, Run::value(quote)),
            Lex::Cdata { brackets: 0 } => run_len(rest, Run::CDATA),
            Lex::StartName | Lex::AttributeName => run_len(rest, Run::NAME),
            Lex::InTag | Lex::AfterValue => self.skip_attributes(rest),
            Lex::EndName { matched } => {
                let expected = self
                    .expected_end_name(buf)
                    .get(matched..)
                    .unwrap_or_default();
                let run = expected
                    .iter()
                    .zip(rest)
                    .take_while(|(e, b)| e == b)
                    .count();
                self.lex = Lex::EndName {
                    matched: matched + run,
                };
                run
            }
            _ => 0,
        }
    }

    /// From between two attributes of a start tag: whole attributes written the common
    /// way (`name='value'`, no reference in the value), one a turn, with the transitions
    /// [`Lexer::step`] would make. Stops, in the state reached, at the first byte that needs
    /// `step` (the tag's end, a reference, spaces around `=`, an error, or the end of `rest`).
    fn skip_attributes(&mut self, rest: &[u8]) -> usize {
        let len = |from: usize, run: Run| from + run_len(rest.get(from..).unwrap_or_default(), run);
        let mut i = 0;
        loop {
            let after_spaces = len(i, Run::SPACE);
            if after_spaces > i {
                i = after_spaces;
                self.lex = Lex::InTag;
            }
            match rest.get(i) {
                Some(&b)
                    if self.lex == Lex::InTag
                        && is_name_start(b)
                        && self.attributes < self.limits.max_attributes => {}
                _ => return i,
            }
            self.attributes += 1;
            self.lex = Lex::AttributeName;
            i = len(i + 1, Run::NAME);
            if rest.get(i) != Some(&b'=') {
                return i;
            }
            i += 1;
            self.lex = Lex::BeforeValue;
            let Some(&quote @ (b'\'' | b'"')) = rest.get(i) else {
                return i;
            };
            i += 1;
            self.lex = Lex::Value { quote };
            i = len(i, Run::value(quote));
            if rest.get(i) != Some(&quote) {
                return i;
            }
            i += 1;
            self.lex = Lex::AfterValue;
        }
    }

    /// The name the next end tag must have: the innermost open element's, or the stream's.
    fn expected_end_name<'b>(&'b self, buf: &'b [u8]) -> &'b [u8] {
        match self.open.last() {
            Some(&(position, len)) => buf.get(position..position + len),
            None => Some(self.closing.as_bytes()),
        }
        .unwrap_or_default()
    }

    /// One byte of the lexer; `buf` holds the names of open elements.
    fn step(&mut self, b: u8, buf: &[u8]) -> Result<Option<Event>, StreamError> {
        if is_forbidden_control(b) {
            if self.declaration_allowed && b == 0 {
                return Err(utf16());
            }
            return Err(error(
                StreamErrorCondition::NotWellFormed,
                "control character not allowed in XML",
            ));
        }
        let at_stream_level = self.open.is_empty();
        self.lex = match self.lex {
            Lex::Idle if is_space(b) => {
                self.declaration_allowed = false;
                if self.phase == Phase::Header {
                    return Ok(Some(Event::Skip));
                }
                self.lex = Lex::Spaces;
                return Ok(Some(Event::KeepAlive));
            }
            Lex::Spaces if is_space(b) => return Ok(Some(Event::Skip)),
            Lex::Idle | Lex::Spaces if b == b'<' => Lex::Lt,
            Lex::Idle | Lex::Spaces => {
                if self.declaration_allowed && (b == 0xfe || b == 0xff) {
                    return Err(utf16());
                }
                return Err(if self.phase == Phase::Header {
                    error(
                        StreamErrorCondition::NotWellFormed,
                        "expected the stream header",
                    )
                } else if is_ascii_or_utf8_lead(b) {
                    error(
                        StreamErrorCondition::BadFormat,
                        "character data at stream level",
                    )
                } else {
                    error(StreamErrorCondition::NotWellFormed, "invalid UTF-8")
                });
            }
            Lex::Lt => {
                let declaration_allowed = core::mem::replace(&mut self.declaration_allowed, false);
                match b {
                    b'/' if !at_stream_level
                        || (self.framing == Framing::Tcp && self.phase == Phase::Open) =>
                    {
                        Lex::EndName { matched: 0 }
                    }
                    b'!' => Lex::Bang,
                    b'?' if declaration_allowed => Lex::Keyword {
                        keyword: Keyword::Xml,
                        matched: 0,
                    },
                    b'?' => return Err(restricted("processing instruction")),
                    b if is_name_start(b) => {
                        if self.phase != Phase::Header && self.open.len() >= self.limits.max_depth {
                            return Err(error(
                                StreamErrorCondition::PolicyViolation,
                                "elements nested too deep",
                            ));
                        }
                        self.tag_open = self.scan - 1;
                        self.attributes = 0;
                        Lex::StartName
                    }
                    _ => return Err(malformed("invalid character after '<'")),
                }
            }
            Lex::Bang => match b {
                b'-' => return Err(restricted("comment")),
                b'D' => return Err(restricted("DTD")),
                b'[' if !at_stream_level => Lex::Keyword {
                    keyword: Keyword::Cdata,
                    matched: 0,
                },
                _ => return Err(malformed("invalid markup after '<!'")),
            },
            Lex::Keyword { keyword, matched } => match keyword.bytes().get(matched) {
                Some(&expected) if expected == b => {
                    if keyword == Keyword::Cdata && matched + 1 == keyword.bytes().len() {
                        Lex::Cdata { brackets: 0 }
                    } else {
                        Lex::Keyword {
                            keyword,
                            matched: matched + 1,
                        }
                    }
                }
                None if is_space(b) => Lex::Declaration { question: false },
                _ => {
                    return Err(match keyword {
                        Keyword::Cdata => malformed("invalid markup after '<!['"),
                        Keyword::Xml => restricted("processing instruction"),
                    })
                }
            },
            Lex::Declaration { question } => match b {
                b'>' if question => {
                    // `<?xml` is five bytes; the `?` is just before this `>`.
                    let body = buf.get(self.start + 5..self.scan - 1).unwrap_or_default();
                    check_declaration(body)?;
                    self.lex = Lex::Idle;
                    return Ok(Some(Event::Skip));
                }
                b'<' => return Err(malformed("'<' in the XML declaration")),
                b => Lex::Declaration {
                    question: b == b'?',
                },
            },
            Lex::Text => match b {
                b'<' => Lex::Lt,
                b'&' => Lex::Reference {
                    quote: None,
                    reference: Reference::Start,
                },
                _ => Lex::Text,
            },
            Lex::Cdata { brackets } => match b {
                b']' => Lex::Cdata {
                    brackets: (brackets + 1).min(2),
                },
                b'>' if brackets == 2 => Lex::Text,
                _ => Lex::Cdata { brackets: 0 },
            },
            Lex::StartName => {
                if is_name_char(b) {
                    Lex::StartName
                } else {
                    self.name_len = self.scan - self.tag_open - 1;
                    match b {
                        b'/' => Lex::EmptyEnd,
                        b'>' => return self.start_tag_closed(),
                        b if is_space(b) => Lex::InTag,
                        _ => return Err(malformed("invalid character in an element name")),
                    }
                }
            }
            Lex::InTag | Lex::AfterValue => match b {
                b'/' => Lex::EmptyEnd,
                b'>' => return self.start_tag_closed(),
                b if is_space(b) => Lex::InTag,
                b if is_name_start(b) && self.lex == Lex::InTag => {
                    self.attributes += 1;
                    if self.attributes > self.limits.max_attributes {
                        return Err(error(
                            StreamErrorCondition::PolicyViolation,
                            "too many attributes",
                        ));
                    }
                    Lex::AttributeName
                }
                _ => return Err(malformed("invalid character in a start tag")),
            },
            Lex::AttributeName => match b {
                b'=' => Lex::BeforeValue,
                b if is_name_char(b) => Lex::AttributeName,
                b if is_space(b) => Lex::BeforeEquals,
                _ => return Err(malformed("invalid character in an attribute name")),
            },
            Lex::BeforeEquals => match b {
                b'=' => Lex::BeforeValue,
                b if is_space(b) => Lex::BeforeEquals,
                _ => return Err(malformed("expected '=' after an attribute name")),
            },
            Lex::BeforeValue => match b {
                b'\'' | b'"' => Lex::Value { quote: b },
                b if is_space(b) => Lex::BeforeValue,
                _ => return Err(malformed("attribute value not quoted")),
            },
            Lex::Value { quote } => match b {
                b if b == quote => Lex::AfterValue,
                b'<' => return Err(malformed("'<' in an attribute value")),
                b'&' => Lex::Reference {
                    quote: Some(quote),
                    reference: Reference::Start,
                },
                _ => Lex::Value { quote },
            },
            Lex::EmptyEnd => match b {
                b'>' => {
                    if self.phase == Phase::Header {
                        return Err(error(
                            StreamErrorCondition::BadFormat,
                            "stream header closed at once",
                        ));
                    }
                    if at_stream_level {
                        self.lex = Lex::Idle;
                        return Ok(Some(Event::Element));
                    }
                    Lex::Text
                }
                _ => return Err(malformed("expected '>' after '/'")),
            },
            Lex::EndName { matched } => {
                let expected = self.expected_end_name(buf);
                if is_name_char(b) {
                    if expected.get(matched) != Some(&b) {
                        return Err(malformed("end tag does not match the start tag"));
                    }
                    Lex::EndName {
                        matched: matched + 1,
                    }
                } else if matched != expected.len() {
                    return Err(malformed("end tag does not match the start tag"));
                } else if b == b'>' {
                    return Ok(self.end_tag_closed());
                } else if is_space(b) {
                    Lex::EndTail
                } else {
                    return Err(malformed("invalid character in an end tag"));
                }
            }
            Lex::EndTail => match b {
                b'>' => return Ok(self.end_tag_closed()),
                b if is_space(b) => Lex::EndTail,
                _ => return Err(malformed("invalid character in an end tag")),
            },
            Lex::Reference { quote, reference } => {
                match reference.step(b)? {
                    Some(reference) => Lex::Reference { quote, reference },
                    // Complete: back to where the reference was.
                    None => match quote {
                        Some(quote) => Lex::Value { quote },
                        None => Lex::Text,
                    },
                }
            }
        };
        Ok(None)
    }

    /// The `>` of a start tag.
    fn start_tag_closed(&mut self) -> Result<Option<Event>, StreamError> {
        if self.phase == Phase::Header {
            self.lex = Lex::Idle;
            return Ok(Some(Event::Header));
        }
        // The depth was checked at the `<`, so this stays within the capacity.
        self.open.push((self.tag_open + 1, self.name_len));
        self.lex = Lex::Text;
        Ok(None)
    }

    /// The `>` of an end tag whose name matched.
    fn end_tag_closed(&mut self) -> Option<Event> {
        if self.open.pop().is_none() {
            return Some(Event::End);
        }
        if self.open.is_empty() {
            self.lex = Lex::Idle;
            Some(Event::Element)
        } else {
            self.lex = Lex::Text;
            None
        }
    }
}

impl Reference {
    /// The next byte of a reference: `None` when the `;` completed an allowed one.
    ///
    /// Character references must name a character XML allows (XML 1.0 §2.2, §4.1); entity
    /// references other than the five predefined ones are `restricted-xml` (RFC 6120 §11.1).
    fn step(self, b: u8) -> Result<Option<Self>, StreamError> {
        let next = match (self, b) {
            (Reference::Start, b'#') => Reference::Hash,
            (Reference::Start, b) if is_name_start(b) => Reference::Name {
                name: [b, 0, 0, 0],
                len: 1,
            },
            (Reference::Name { name, len }, b';') => {
                return match name.get(..usize::from(len)).unwrap_or_default() {
                    b"lt" | b"gt" | b"amp" | b"quot" | b"apos" => Ok(None),
                    _ => Err(restricted("entity reference")),
                };
            }
            (Reference::Name { mut name, len }, b) if is_name_char(b) => {
                match name.get_mut(usize::from(len)) {
                    Some(slot) => *slot = b,
                    None => return Err(restricted("entity reference")),
                }
                Reference::Name { name, len: len + 1 }
            }
            (Reference::Hash, b'x') => Reference::Hex {
                value: 0,
                digits: false,
            },
            (Reference::Hash, b'0'..=b'9') => Reference::Decimal(u32::from(b - b'0')),
            (Reference::Decimal(value), b'0'..=b'9') => {
                Reference::Decimal(value.saturating_mul(10).saturating_add(u32::from(b - b'0')))
            }
            (Reference::Hex { value, .. }, b) if b.is_ascii_hexdigit() => Reference::Hex {
                value: value
                    .saturating_mul(16)
                    .saturating_add(char::from(b).to_digit(16).unwrap_or(0)),
                digits: true,
            },
            (Reference::Decimal(value), b';')
            | (
                Reference::Hex {
                    value,
                    digits: true,
                },
                b';',
            ) => {
                return if is_xml_char(value) {
                    Ok(None)
                } else {
                    Err(malformed("character reference to a character XML forbids"))
                };
            }
            _ => return Err(malformed("malformed reference")),
        };
        Ok(Some(next))
    }
}

/// RFC 7395 §3.3–§3.6: `<open/>` and `<close/>` in the framing namespace are the header and
/// the end; every other element is an element.
fn websocket_frame<'b>(text: &'b str, limits: &Limits) -> Result<Frame<'b>, StreamError> {
    let name_len = text
        .bytes()
        .skip(1)
        .take_while(|&b| is_name_char(b))
        .count();
    let name = text.get(1..1 + name_len).unwrap_or_default();
    if name != "open" && name != "close" {
        return Ok(Frame::Element(text));
    }
    within_cost(text, 0, limits)?;
    let doc = document::parse(text)?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(NS_FRAMING) {
        return Ok(Frame::Element(text));
    }
    if name == "close" {
        return Ok(Frame::End);
    }
    if text.len() > limits.max_header_bytes {
        return Err(error(
            StreamErrorCondition::PolicyViolation,
            "stream header too long",
        ));
    }
    header::from_open(root).map(Frame::Header)
}

/// Checks the XML declaration's pseudo-attributes (XML 1.0 §2.8): a `version`, and an
/// `encoding`, if any, of UTF-8, the only one XMPP allows (RFC 6120 §11.6).
fn check_declaration(body: &[u8]) -> Result<(), StreamError> {
    let bad = || malformed("malformed XML declaration");
    let mut rest = utf8(body)?.trim_start();
    let mut version = false;
    while let Some((name, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let quote = after.chars().next().filter(|&q| q == '\'' || q == '"');
        let (value, after) = quote
            .and_then(|q| after.get(1..)?.split_once(q))
            .ok_or_else(bad)?;
        match name.trim_end() {
            "version" if value.starts_with("1.") => version = true,
            "encoding" if !value.eq_ignore_ascii_case("UTF-8") => {
                return Err(error(
                    StreamErrorCondition::UnsupportedEncoding,
                    "only UTF-8 is allowed",
                ))
            }
            "encoding" => {}
            "standalone" if value == "yes" || value == "no" => {}
            _ => return Err(bad()),
        }
        if !(after.is_empty() || after.starts_with(|c: char| c.is_ascii_whitespace())) {
            return Err(bad());
        }
        rest = after.trim_start();
    }
    if version && rest.is_empty() {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A kind of run [`Lexer::skip`] skips, as a set of bits: [`Run::of`] has the bits of the
/// runs a byte may be part of, so a run costs one table lookup a byte rather than a chain
/// of comparisons. The table is made from the predicates below when compiling.
#[derive(Clone, Copy)]
struct Run(u8);

impl Run {
    /// Text: character data but `<`, `&` and the controls XML forbids.
    const TEXT: Run = Run(1);
    /// An attribute value quoted with `'`: text but `'`.
    const APOS_VALUE: Run = Run(2);
    /// An attribute value quoted with `"`: text but `"`.
    const QUOT_VALUE: Run = Run(4);
    /// CDATA content: anything but `]` and the controls XML forbids.
    const CDATA: Run = Run(8);
    /// Name characters.
    const NAME: Run = Run(16);
    /// Whitespace.
    const SPACE: Run = Run(32);

    /// The runs each byte may be part of.
    const TABLE: [u8; 256] = {
        let mut table = [0; 256];
        let mut i = 0;
        while i < table.len() {
            let b = i as u8;
            let text = !is_forbidden_control(b) && b != b'<' && b != b'&';
            let runs = [
                (Run::TEXT, text),
                (Run::APOS_VALUE, text && b != b'\''),
                (Run::QUOT_VALUE, text && b != b'"'),
                (Run::CDATA, !is_forbidden_control(b) && b != b']'),
                (Run::NAME, is_name_char(b)),
                (Run::SPACE, is_space(b)),
            ];
            let mut r = 0;
            while r < runs.len() {
                if runs[r].1 {
                    table[i] |= runs[r].0 .0;
                }
                r += 1;
            }
            i += 1;
        }
        table
    };

    /// The run of an attribute value opened by `quote`.
    fn value(quote: u8) -> Run {
        if quote == b'\'' {
            Run::APOS_VALUE
        } else {
            Run::QUOT_VALUE
        }
    }

    /// The bits of the runs `b` may be part of.
    fn of(b: u8) -> u8 {
        Run::TABLE.get(usize::from(b)).copied().unwrap_or(0)
    }
}

/// How many bytes at the start of `bytes` are part of `run`. Inlined so that each caller's
/// loop tests a constant mask: left to itself the compiler may keep one shared loop, which
/// made the framer bench ~7% slower.
#[inline(always)]
fn run_len(bytes: &[u8], run: Run) -> usize {
    bytes
        .iter()
        .position(|&b| Run::of(b) & run.0 == 0)
        .unwrap_or(bytes.len())
}

fn utf8(bytes: &[u8]) -> Result<&str, StreamError> {
    core::str::from_utf8(bytes)
        .map_err(|_| error(StreamErrorCondition::NotWellFormed, "invalid UTF-8"))
}

fn error(condition: StreamErrorCondition, text: &str) -> StreamError {
    StreamError::with_text(condition, text)
}

/// `not-well-formed` (§4.9.3.13).
fn malformed(text: &str) -> StreamError {
    error(StreamErrorCondition::NotWellFormed, text)
}

/// `restricted-xml` (§4.9.3.18, §11.1): `what` is not allowed.
fn restricted(what: &str) -> StreamError {
    if !cfg!(feature = "error-text") {
        return StreamError::new(StreamErrorCondition::RestrictedXml);
    }
    let mut text = String::from(what);
    text.push_str(" not allowed in XMPP");
    StreamError::with_text(StreamErrorCondition::RestrictedXml, &text)
}

/// `unsupported-encoding` (§4.9.3.22, §11.6) for a stream that starts like UTF-16.
fn utf16() -> StreamError {
    error(
        StreamErrorCondition::UnsupportedEncoding,
        "only UTF-8 is allowed",
    )
}

/// XML 1.0 §2.3 `S`.
const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A byte below 0x20 that XML 1.0 §2.2 does not allow anywhere.
const fn is_forbidden_control(b: u8) -> bool {
    b < 0x20 && !is_space(b)
}

/// A byte that may start a UTF-8 sequence (not a continuation byte nor 0xF8 and above).
fn is_ascii_or_utf8_lead(b: u8) -> bool {
    b < 0x80 || (0xc2..=0xf4).contains(&b)
}

/// XML 1.0 §2.3 `NameStartChar`, ASCII part; any non-ASCII byte is let through and the
/// element's parse checks it.
const fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

/// XML 1.0 §2.3 `NameChar`, ASCII part.
const fn is_name_char(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// XML 1.0 §2.2 `Char`.
fn is_xml_char(c: u32) -> bool {
    matches!(c, 0x9 | 0xa | 0xd | 0x20..=0xd7ff | 0xe000..=0xfffd | 0x1_0000..=0x10_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    use StreamErrorCondition as C;

    /// A frame that owns its text, to compare runs.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Header(StreamHeader),
        Element(String),
        KeepAlive,
        End,
    }

    /// What a run produced: the frames, then the error that stopped it, if any.
    type Run = (Vec<Owned>, Option<StreamError>);

    fn drain(framer: &mut Framer, frames: &mut Vec<Owned>) -> Result<(), StreamError> {
        while let Some(frame) = framer.next_frame()? {
            frames.push(match frame {
                Frame::Header(h) => Owned::Header(h),
                Frame::Element(e) => Owned::Element(e.to_string()),
                Frame::KeepAlive => Owned::KeepAlive,
                Frame::End => Owned::End,
            });
        }
        Ok(())
    }

    /// Feeds `chunks` through [`Framer::push`], draining frames after each.
    fn run_chunks<'a>(
        framing: Framing,
        limits: Limits,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Run {
        let mut framer = Framer::new(framing, limits);
        let mut frames = Vec::new();
        for mut chunk in chunks {
            loop {
                let n = framer.push(chunk);
                chunk = &chunk[n..];
                if let Err(e) = drain(&mut framer, &mut frames) {
                    return (frames, Some(e));
                }
                if chunk.is_empty() {
                    break;
                }
                if n == 0 {
                    unreachable!("buffer full without an error");
                }
            }
        }
        (frames, None)
    }

    fn run(framing: Framing, limits: Limits, input: &[u8]) -> Run {
        run_chunks(framing, limits, [input])
    }

    fn tcp(input: &str) -> Run {
        run(Framing::Tcp, Limits::default(), input.as_bytes())
    }

    fn ws(input: &str) -> Run {
        run(Framing::WebSocket, Limits::default(), input.as_bytes())
    }

    /// The condition that stopped a TCP run of `HEADER` + `body`.
    fn error_after_header(body: &str) -> Option<C> {
        let mut input = String::from(HEADER);
        input.push_str(body);
        tcp(&input).1.map(|e| e.condition)
    }

    fn client_header() -> StreamHeader {
        StreamHeader {
            to: Some("example.com".into()),
            version: Some("1.0".into()),
            default_ns: Some("jabber:client".into()),
            stream_prefix: "stream".into(),
            prefixes: Vec::new(),
            ..StreamHeader::default()
        }
    }

    const HEADER: &str = "<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

    const FEATURES: &str = "<stream:features>\
        <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
        <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>\
        </stream:features>";
    const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    const PROCEED: &str = "<proceed xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/>";
    const MESSAGE: &str = "<message to='a@b' title=\"it's > 1\" q='say \"hi\"' \
        v = 'x/>y'><body>a &lt; b &amp;&amp; c &#62; d &#x263A; \u{e9}</body>\
        <x><![CDATA[<not-a-tag> ]] ]]]></x><y/></message>";
    const AUTH: &str = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' \
        mechanism='SCRAM-SHA-1'>biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdM</auth>";

    /// The seed's client-server stream: header, features, STARTTLS, proceed, keep-alives,
    /// a message with every lexing hazard, SASL, the closing tag.
    fn seed_stream() -> String {
        let mut s = String::from("<?xml version='1.0' encoding='UTF-8'?>\n");
        for part in [
            HEADER, FEATURES, STARTTLS, "\n", PROCEED, " \t\r\n ", MESSAGE,
        ] {
            s.push_str(part);
        }
        s.push_str(AUTH);
        s.push_str("</stream:stream>");
        s
    }

    fn seed_frames() -> Vec<Owned> {
        vec![
            Owned::Header(client_header()),
            Owned::Element(FEATURES.into()),
            Owned::Element(STARTTLS.into()),
            Owned::KeepAlive,
            Owned::Element(PROCEED.into()),
            Owned::KeepAlive,
            Owned::Element(MESSAGE.into()),
            Owned::Element(AUTH.into()),
            Owned::End,
        ]
    }

    #[test]
    fn seed_stream_frames_in_one_chunk() {
        assert_eq!(tcp(&seed_stream()), (seed_frames(), None));
    }

    #[test]
    fn seed_stream_frames_identically_at_every_split_point() {
        let input = seed_stream();
        let bytes = input.as_bytes();
        for i in 0..=bytes.len() {
            let run = run_chunks(Framing::Tcp, Limits::default(), [&bytes[..i], &bytes[i..]]);
            assert_eq!(run, (seed_frames(), None), "split at {i}");
        }
    }

    #[test]
    fn seed_stream_frames_identically_byte_at_a_time() {
        let input = seed_stream();
        let run = run_chunks(Framing::Tcp, Limits::default(), input.as_bytes().chunks(1));
        assert_eq!(run, (seed_frames(), None));

        // Same through free_space/commit, in a buffer just big enough for the largest frame.
        let largest = [HEADER, FEATURES, MESSAGE, AUTH]
            .map(str::len)
            .into_iter()
            .max();
        let limits = Limits {
            max_element_bytes: largest.unwrap_or_default(),
            ..Limits::default()
        };
        let mut framer = Framer::new(Framing::Tcp, limits);
        let mut frames = Vec::new();
        for &b in input.as_bytes() {
            let space = framer.free_space();
            assert!(!space.is_empty());
            space[0] = b;
            framer.commit(1);
            drain(&mut framer, &mut frames).unwrap();
        }
        assert_eq!(frames, seed_frames());
    }

    #[test]
    fn byte_at_a_time_scanning_is_linear() {
        // 60 KiB of one element fed a byte at a time: quadratic rescanning would take
        // billions of steps here.
        let mut input = String::from(HEADER);
        input.push_str("<message><body>");
        while input.len() < 60 * 1024 {
            input.push_str("lorem ipsum &amp; <b x='1'>dolor</b> ");
        }
        input.push_str("</body></message>");
        let mut framer = Framer::new(Framing::Tcp, Limits::default());
        let mut frames = Vec::new();
        for b in input.as_bytes().chunks(1) {
            assert_eq!(framer.push(b), 1);
            drain(&mut framer, &mut frames).unwrap();
        }
        assert_eq!(frames.len(), 2);
    }

    /// Runs of text, values, CDATA and names that the lexer skips in tight loops, cut at
    /// every point, fed a byte and three bytes at a time, frame as they do whole: the
    /// lexer's state at the end of a chunk inside a run is the state `step` would reach.
    #[test]
    fn skipped_runs_frame_identically_at_every_split_point() {
        let elements = [
            // Multi-byte UTF-8 in text, values and names; references at run ends.
            "<m\u{e9}ssage a='\u{263a}\u{1f44b}' b=\"d\u{e9}j\u{e0}\">\u{1f44b} caf\u{e9}&amp;&#x263A;\
             <\u{e9}l\u{e9}ment c='x&lt;' d=\"&quot;y\"/></m\u{e9}ssage>",
            // `]]>` and lone brackets in text; brackets in CDATA; the other quote in a value.
            "<a x=\"it's\" y='say \"hi\"'>a ]] b ]]> c<![CDATA[] ]] ]<&> ]]]>d</a>",
            // Spaces around `=`, tabs and newlines in tags, the end tag's name run cut.
            "<b\n\tx = '1'\ty\n=\"2\" z='3'\n/>",
            "<configuration><configuration-item/></configuration >",
            // Empty values, one-letter names, many attributes.
            "<c a='' b=\"\" c='' d='&#10;' e='e' f='f'></c>",
        ];
        let input = [HEADER, &elements.concat(), "</stream:stream>"].concat();
        let mut expected = vec![Owned::Header(client_header())];
        expected.extend(elements.iter().map(|&e| Owned::Element(e.into())));
        expected.push(Owned::End);
        let bytes = input.as_bytes();
        assert_eq!(tcp(&input), (expected.clone(), None));
        for i in 0..=bytes.len() {
            let run = run_chunks(Framing::Tcp, Limits::default(), [&bytes[..i], &bytes[i..]]);
            assert_eq!(run, (expected.clone(), None), "split at {i}");
        }
        for size in [1, 3] {
            let run = run_chunks(Framing::Tcp, Limits::default(), bytes.chunks(size));
            assert_eq!(run, (expected.clone(), None), "{size}-byte chunks");
        }
    }

    /// What ends a skipped run early is still refused, with the error `step` gives, wherever
    /// the input is cut.
    #[test]
    fn errors_inside_skipped_runs_are_the_same_at_every_split_point() {
        // The header has four attributes.
        let limits = Limits {
            max_attributes: 4,
            ..Limits::default()
        };
        for (body, condition, text) in [
            (
                "<a x='1<2'/>",
                C::NotWellFormed,
                "'<' in an attribute value",
            ),
            (
                "<a x=\"1<2\"/>",
                C::NotWellFormed,
                "'<' in an attribute value",
            ),
            ("<a>te\u{1}xt</a>", C::NotWellFormed, "control character"),
            ("<a x='v\u{b}w'/>", C::NotWellFormed, "control character"),
            (
                "<a><![CDATA[x\u{1f}]]></a>",
                C::NotWellFormed,
                "control character",
            ),
            ("<ab\u{0}c/>", C::NotWellFormed, "control character"),
            ("<a>x &bogus; y</a>", C::RestrictedXml, "entity reference"),
            ("<a x='&bogus;'/>", C::RestrictedXml, "entity reference"),
            (
                "<a x='1'y='2'/>",
                C::NotWellFormed,
                "invalid character in a start tag",
            ),
            (
                "<a x='1' y='2' z='3' w='4' v='5'/>",
                C::PolicyViolation,
                "too many attributes",
            ),
            ("<abc><d/></abd>", C::NotWellFormed, "does not match"),
            ("<abc><d/></ab>", C::NotWellFormed, "does not match"),
            ("<abc><d/></abcd>", C::NotWellFormed, "does not match"),
        ] {
            let input = [HEADER, body].concat();
            let bytes = input.as_bytes();
            let whole = run(Framing::Tcp, limits, bytes);
            let error = whole.1.clone().expect(body);
            assert_eq!(error.condition, condition, "{body}");
            // The text only with `error-text` (RFC 6120 §4.9.2: `<text/>` is OPTIONAL).
            if cfg!(feature = "error-text") {
                assert!(
                    error.text.as_deref().unwrap_or("").contains(text),
                    "{body}: {error:?}"
                );
            } else {
                assert_eq!(error.text, None, "{body}");
            }
            for i in HEADER.len()..=bytes.len() {
                let split = run_chunks(Framing::Tcp, limits, [&bytes[..i], &bytes[i..]]);
                assert_eq!(split, whole, "{body} split at {i}");
            }
            let bytewise = run_chunks(Framing::Tcp, limits, bytes.chunks(1));
            assert_eq!(bytewise, whole, "{body} a byte at a time");
        }
    }

    #[test]
    fn stream_closes_with_the_prefix_its_header_used() {
        let header = "<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'>";
        let mut input = String::from(header);
        input.push_str("<s:features/></s:stream >");
        let (frames, error) = tcp(&input);
        assert_eq!(error, None);
        assert_eq!(
            frames[1..],
            [Owned::Element("<s:features/>".into()), Owned::End]
        );
        input = String::from(header);
        input.push_str("</stream:stream>");
        assert_eq!(tcp(&input).1.map(|e| e.condition), Some(C::NotWellFormed));
    }

    #[test]
    fn nothing_is_framed_after_the_end() {
        let mut input = String::from(HEADER);
        input.push_str("</stream:stream><message/>");
        let (frames, error) = tcp(&input);
        assert_eq!(error, None);
        assert_eq!(frames.last(), Some(&Owned::End));
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn whitespace_run_is_one_keep_alive() {
        let mut input = String::from(HEADER);
        input.push_str("  \n\n \t<a/> <b/>\r\n");
        let (frames, error) = tcp(&input);
        assert_eq!(error, None);
        assert_eq!(
            frames[1..],
            [
                Owned::KeepAlive,
                Owned::Element("<a/>".into()),
                Owned::KeepAlive,
                Owned::Element("<b/>".into()),
                Owned::KeepAlive,
            ]
        );
    }

    #[test]
    fn keep_alives_never_fill_the_buffer() {
        let limits = Limits {
            max_element_bytes: 256,
            ..Limits::default()
        };
        let mut input = String::from(HEADER);
        input.push_str(&" ".repeat(10_000));
        input.push_str("<a/>");
        let (frames, error) = run(Framing::Tcp, limits, input.as_bytes());
        assert_eq!(error, None);
        assert_eq!(
            frames[1..],
            [Owned::KeepAlive, Owned::Element("<a/>".into())]
        );
    }

    #[test]
    fn quotes_delimit_attribute_values() {
        for element in [
            "<a x='\"' y=\"'\"/>",
            "<a x='>' y=\"/>\"></a>",
            "<a x='/a&gt;' y=\"a>b\"><b y=\"]]>\" z='!--'/></a>",
        ] {
            assert_eq!(
                tcp(&[HEADER, element].concat()),
                (
                    vec![
                        Owned::Header(client_header()),
                        Owned::Element(element.into())
                    ],
                    None
                ),
                "{element}"
            );
        }
    }

    #[test]
    fn cdata_may_contain_markup() {
        let element = "<a><![CDATA[</a><b>&foo; <!-- ]]]]><![CDATA[>]]></a>";
        assert_eq!(
            tcp(&[HEADER, element].concat()),
            (
                vec![
                    Owned::Header(client_header()),
                    Owned::Element(element.into())
                ],
                None
            )
        );
    }

    #[test]
    fn comment_is_restricted_xml() {
        assert_eq!(error_after_header("<!-- hi -->"), Some(C::RestrictedXml));
        assert_eq!(
            error_after_header("<a><!-- hi --></a>"),
            Some(C::RestrictedXml)
        );
        assert_eq!(
            tcp("<!-- hi -->").1.map(|e| e.condition),
            Some(C::RestrictedXml)
        );
    }

    #[test]
    fn processing_instruction_is_restricted_xml() {
        assert_eq!(error_after_header("<?foo bar?>"), Some(C::RestrictedXml));
        assert_eq!(error_after_header("<a><?foo?></a>"), Some(C::RestrictedXml));
        assert_eq!(
            tcp("<?xml-stylesheet href='a'?>").1.map(|e| e.condition),
            Some(C::RestrictedXml)
        );
    }

    #[test]
    fn xml_declaration_only_at_the_start_of_a_stream() {
        assert_eq!(
            error_after_header("<?xml version='1.0'?>"),
            Some(C::RestrictedXml)
        );
        assert_eq!(
            tcp(&[" <?xml version='1.0'?>", HEADER].concat())
                .1
                .map(|e| e.condition),
            Some(C::RestrictedXml)
        );
        let (frames, error) = tcp(&["<?xml version='1.0' standalone='yes'?>", HEADER].concat());
        assert_eq!(
            (frames, error),
            (vec![Owned::Header(client_header())], None)
        );
    }

    #[test]
    fn malformed_xml_declaration_is_not_well_formed() {
        for decl in [
            "<?xml?>",
            "<?xml encoding='UTF-8'?>",
            "<?xml version='1.0\"?>",
            "<?xml version='1.0'foo='x'?>",
        ] {
            let condition = tcp(&[decl, HEADER].concat()).1.map(|e| e.condition);
            assert!(
                matches!(condition, Some(C::NotWellFormed | C::RestrictedXml)),
                "{decl}: {condition:?}"
            );
        }
    }

    #[test]
    fn dtd_is_restricted_xml() {
        assert_eq!(
            tcp(&[
                "<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>",
                HEADER
            ]
            .concat())
            .1
            .map(|e| e.condition),
            Some(C::RestrictedXml)
        );
        assert_eq!(error_after_header("<!DOCTYPE a>"), Some(C::RestrictedXml));
    }

    #[test]
    fn undefined_entity_is_restricted_xml() {
        assert_eq!(error_after_header("<a>&foo;</a>"), Some(C::RestrictedXml));
        assert_eq!(error_after_header("<a>&ltx;</a>"), Some(C::RestrictedXml));
        assert_eq!(
            error_after_header("<a x='&nbsp;'/>"),
            Some(C::RestrictedXml)
        );
    }

    #[test]
    fn predefined_entities_and_character_references_are_allowed() {
        let element = "<a x='&lt;&gt;&amp;&quot;&apos;&#9;&#x1F600;'>&lt;&gt;&amp;&quot;&apos;&#65;&#x10FFFF;</a>";
        assert_eq!(error_after_header(element), None);
    }

    #[test]
    fn malformed_reference_is_not_well_formed() {
        for body in [
            "<a>&#0;</a>",
            "<a>&#x;</a>",
            "<a>&#xD800;</a>",
            "<a>& b</a>",
            "<a>&#99999999999;</a>",
            "<a>&lt</a>",
        ] {
            assert_eq!(error_after_header(body), Some(C::NotWellFormed), "{body}");
        }
    }

    #[test]
    fn mismatched_end_tag_is_not_well_formed() {
        assert_eq!(error_after_header("<a><b></a></b>"), Some(C::NotWellFormed));
        assert_eq!(error_after_header("<a></ab>"), Some(C::NotWellFormed));
        assert_eq!(error_after_header("<ab></a>"), Some(C::NotWellFormed));
        assert_eq!(error_after_header("<a></>"), Some(C::NotWellFormed));
    }

    #[test]
    fn lt_in_attribute_value_is_not_well_formed() {
        assert_eq!(error_after_header("<a x='<'/>"), Some(C::NotWellFormed));
    }

    #[test]
    fn malformed_start_tag_is_not_well_formed() {
        for body in [
            "<a x='1'y='2'/>",
            "<a x=1/>",
            "<a x/>",
            "<a / >",
            "<1a/>",
            "< a/>",
        ] {
            assert_eq!(error_after_header(body), Some(C::NotWellFormed), "{body}");
        }
    }

    #[test]
    fn invalid_utf8_is_not_well_formed() {
        let mut input = Vec::from(HEADER.as_bytes());
        input.extend_from_slice(b"<a>\xc3\x28</a>");
        let (_, error) = run(Framing::Tcp, Limits::default(), &input);
        assert_eq!(error.map(|e| e.condition), Some(C::NotWellFormed));
        let (_, error) = run(Framing::Tcp, Limits::default(), b"<stream:stream a='\xff'>");
        assert_eq!(error.map(|e| e.condition), Some(C::NotWellFormed));
    }

    #[test]
    fn non_utf8_encoding_is_unsupported_encoding() {
        assert_eq!(
            tcp(&["<?xml version='1.0' encoding='ISO-8859-1'?>", HEADER].concat())
                .1
                .map(|e| e.condition),
            Some(C::UnsupportedEncoding)
        );
        assert_eq!(
            tcp(&["<?xml version='1.0' encoding='utf-8'?>", HEADER].concat()).1,
            None
        );
        for utf16 in [
            &b"\xfe\xff\x00<"[..],
            b"\xff\xfe<\x00",
            b"<\x00s\x00",
            b"\x00<\x00s",
        ] {
            let (_, error) = run(Framing::Tcp, Limits::default(), utf16);
            assert_eq!(error.map(|e| e.condition), Some(C::UnsupportedEncoding));
        }
    }

    #[test]
    fn control_character_is_not_well_formed() {
        assert_eq!(error_after_header("<a>\u{1}</a>"), Some(C::NotWellFormed));
    }

    #[test]
    fn character_data_at_stream_level_is_bad_format() {
        assert_eq!(error_after_header("hello"), Some(C::BadFormat));
    }

    #[test]
    fn element_larger_than_the_buffer_is_policy_violation() {
        let limits = Limits {
            max_element_bytes: 512,
            ..Limits::default()
        };
        let mut input = String::from(HEADER);
        input.push_str("<a>");
        input.push_str(&"x".repeat(600));
        input.push_str("</a>");
        let (frames, error) = run(Framing::Tcp, limits, input.as_bytes());
        assert_eq!(frames.len(), 1);
        assert_eq!(error.map(|e| e.condition), Some(C::PolicyViolation));

        // One that fits exactly is fine, even after earlier frames used the buffer.
        let element = ["<a>", &"x".repeat(505), "</a>"].concat();
        assert_eq!(element.len(), 512);
        let input = [HEADER, "<b/>", &element, &element].concat();
        let run = run_chunks(Framing::Tcp, limits, input.as_bytes().chunks(100));
        assert_eq!(run.1, None);
        assert_eq!(run.0.len(), 4);
    }

    #[test]
    fn free_space_is_empty_only_when_the_buffer_is_full() {
        let limits = Limits {
            max_element_bytes: 16,
            ..Limits::default()
        };
        let mut framer = Framer::new(Framing::WebSocket, limits);
        assert_eq!(framer.free_space().len(), 16);
        assert_eq!(framer.push(b"<a/><bb/><ccc/>xxxx"), 16);
        assert_eq!(framer.free_space().len(), 0);
        assert_eq!(framer.next_frame(), Ok(Some(Frame::Element("<a/>"))));
        // The consumed bytes are compacted away.
        assert_eq!(framer.free_space().len(), 4);
        assert_eq!(framer.pending(), b"<bb/><ccc/>x");
        assert_eq!(framer.push(b"xxx"), 3);
        assert_eq!(framer.next_frame(), Ok(Some(Frame::Element("<bb/>"))));
        assert_eq!(framer.next_frame(), Ok(Some(Frame::Element("<ccc/>"))));
        assert_eq!(framer.pending(), b"xxxx");
    }

    #[test]
    fn header_longer_than_max_header_bytes_is_policy_violation() {
        let limits = Limits {
            max_header_bytes: HEADER.len(),
            ..Limits::default()
        };
        assert_eq!(run(Framing::Tcp, limits, HEADER.as_bytes()).1, None);
        let limits = Limits {
            max_header_bytes: HEADER.len() - 1,
            ..Limits::default()
        };
        let (frames, error) = run(Framing::Tcp, limits, HEADER.as_bytes());
        assert!(frames.is_empty());
        assert_eq!(error.map(|e| e.condition), Some(C::PolicyViolation));
        // Whitespace before the header counts too.
        let limits = Limits {
            max_header_bytes: 100,
            ..Limits::default()
        };
        let (_, error) = run(Framing::Tcp, limits, " ".repeat(200).as_bytes());
        assert_eq!(error.map(|e| e.condition), Some(C::PolicyViolation));
    }

    #[test]
    fn nesting_deeper_than_max_depth_is_policy_violation() {
        let limits = Limits {
            max_depth: 3,
            ..Limits::default()
        };
        let ok = [HEADER, "<a><b><c/></b></a>"].concat();
        assert_eq!(run(Framing::Tcp, limits, ok.as_bytes()).1, None);
        for deep in ["<a><b><c><d/></c></b></a>", "<a><b><c><d></d></c></b></a>"] {
            let input = [HEADER, deep].concat();
            let (_, error) = run(Framing::Tcp, limits, input.as_bytes());
            assert_eq!(
                error.map(|e| e.condition),
                Some(C::PolicyViolation),
                "{deep}"
            );
        }
    }

    #[test]
    fn more_attributes_than_max_is_policy_violation() {
        // The header has four attributes, namespace declarations included.
        let limits = Limits {
            max_attributes: 4,
            ..Limits::default()
        };
        let ok = [HEADER, "<a w='1' x='2' y='3' z='4'><b/></a>"].concat();
        assert_eq!(run(Framing::Tcp, limits, ok.as_bytes()).1, None);
        let input = [HEADER, "<a><b v='0' w='1' x='2' y='3' z='4'/></a>"].concat();
        let (_, error) = run(Framing::Tcp, limits, input.as_bytes());
        assert_eq!(error.map(|e| e.condition), Some(C::PolicyViolation));
        let limits = Limits {
            max_attributes: 3,
            ..Limits::default()
        };
        let (_, error) = run(Framing::Tcp, limits, HEADER.as_bytes());
        assert_eq!(error.map(|e| e.condition), Some(C::PolicyViolation));
    }

    #[test]
    fn self_closed_header_is_bad_format() {
        let header = HEADER.replace("'>", "'/>");
        assert_eq!(tcp(&header).1.map(|e| e.condition), Some(C::BadFormat));
    }

    #[test]
    fn tls_client_hello_is_not_well_formed() {
        let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xaa\xbb";
        let (frames, error) = run(Framing::Tcp, Limits::default(), hello);
        assert!(frames.is_empty());
        assert_eq!(error.map(|e| e.condition), Some(C::NotWellFormed));
        // Also where a top-level element is expected.
        let input = [HEADER.as_bytes(), hello].concat();
        let (_, error) = run(Framing::Tcp, Limits::default(), &input);
        assert_eq!(error.map(|e| e.condition), Some(C::NotWellFormed));
    }

    #[test]
    fn errors_carry_text() {
        let error = error_after_header("<!-- x -->");
        assert_eq!(error, Some(C::RestrictedXml));
        let (_, error) = tcp(&[HEADER, "<!-- x -->"].concat());
        let text = error.unwrap().text;
        if cfg!(feature = "error-text") {
            assert!(text.unwrap().contains("comment"));
        } else {
            assert_eq!(text, None);
        }
    }

    #[test]
    fn error_is_sticky() {
        let mut framer = Framer::new(Framing::Tcp, Limits::default());
        framer.push(HEADER.as_bytes());
        framer.push(b"<a>&foo;</a><b/>");
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        let first = framer.next_frame().unwrap_err();
        assert_eq!(first.condition, C::RestrictedXml);
        framer.push(b"<c/>");
        assert_eq!(framer.next_frame(), Err(first.clone()));
        framer.restart();
        assert_eq!(framer.next_frame(), Err(first));
    }

    #[test]
    fn restart_expects_a_new_header_and_keeps_pending_bytes() {
        let mut framer = Framer::new(Framing::Tcp, Limits::default());
        framer.push(HEADER.as_bytes());
        framer.push(PROCEED.as_bytes());
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        assert_eq!(framer.next_frame(), Ok(Some(Frame::Element(PROCEED))));
        assert_eq!(framer.pending(), b"");
        framer.restart();
        // After a restart an XML declaration is allowed again.
        framer.push(b"<?xml version='1.0'?>");
        framer.push(HEADER.as_bytes());
        framer.push(b"<stream:features>");
        assert_eq!(
            framer.next_frame(),
            Ok(Some(Frame::Header(client_header())))
        );
        // Bytes already received when restarting are kept and read as the new stream.
        framer.restart();
        assert_eq!(framer.pending(), b"<stream:features>");
        // (the restarted stream has not declared the prefix)
        assert_eq!(
            framer.next_frame().map_err(|e| e.condition),
            Err(C::BadNamespacePrefix)
        );
    }

    #[test]
    fn restart_in_the_middle_of_an_element_rescans_it_as_a_header() {
        let mut framer = Framer::new(Framing::Tcp, Limits::default());
        framer.push(HEADER.as_bytes());
        framer.push(b"<stream:stream xmlns='jabber:client' ");
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        assert_eq!(framer.next_frame(), Ok(None));
        framer.restart();
        framer.push(b"xmlns:stream='http://etherx.jabber.org/streams'>");
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
    }

    const WS_OPEN: &str =
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>";
    const WS_CLOSE: &str = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";

    #[test]
    fn websocket_open_is_header() {
        let (frames, error) = ws(WS_OPEN);
        assert_eq!(error, None);
        assert_eq!(
            frames,
            [Owned::Header(StreamHeader {
                to: Some("example.com".into()),
                version: Some("1.0".into()),
                ..StreamHeader::default()
            })]
        );
        let version_2 = WS_OPEN.replace("1.0", "2.0");
        assert_eq!(
            ws(&version_2).1.map(|e| e.condition),
            Some(C::UnsupportedVersion)
        );
    }

    #[test]
    fn websocket_close_is_end() {
        let input = [
            WS_OPEN,
            "<stream:features/>",
            "<iq type='get' id='1'><open/></iq>",
            WS_CLOSE,
        ]
        .concat();
        let (frames, error) = ws(&input);
        assert_eq!(error, None);
        assert_eq!(
            frames[1..],
            [
                Owned::Element("<stream:features/>".into()),
                Owned::Element("<iq type='get' id='1'><open/></iq>".into()),
                Owned::End
            ]
        );
    }

    #[test]
    fn websocket_open_in_another_namespace_is_an_element() {
        let (frames, error) = ws("<open/><close xmlns='jabber:client'></close>");
        assert_eq!(error, None);
        assert_eq!(
            frames,
            [
                Owned::Element("<open/>".into()),
                Owned::Element("<close xmlns='jabber:client'></close>".into())
            ]
        );
    }

    #[test]
    fn websocket_rejects_what_tcp_rejects() {
        assert_eq!(
            ws("<!-- x -->").1.map(|e| e.condition),
            Some(C::RestrictedXml)
        );
        assert_eq!(ws("</open>").1.map(|e| e.condition), Some(C::NotWellFormed));
        assert_eq!(
            ws(&[WS_OPEN, "<?xml version='1.0'?>"].concat())
                .1
                .map(|e| e.condition),
            Some(C::RestrictedXml)
        );
        assert_eq!(ws(&["<?xml version='1.0'?>", WS_OPEN].concat()).1, None);
    }

    /// Found by the `framer` fuzz target: after `</stream:stream>` the framer answered
    /// `Ok(None)` with its buffer full, breaking the promise that a full buffer comes with
    /// an error (a reader would see an empty buffer and no reason).
    #[test]
    fn bytes_after_the_closing_tag_never_fill_the_buffer_silently() {
        let limits = Limits {
            max_element_bytes: 256,
            ..Limits::default()
        };
        let input = [HEADER, "</stream:stream>", &"<a>".repeat(100)].concat();
        let (frames, error) = run(Framing::Tcp, limits, input.as_bytes());
        assert_eq!(frames, vec![Owned::Header(client_header()), Owned::End]);
        assert_eq!(error.map(|e| e.condition), Some(C::PolicyViolation));
    }

    fn garbage_never_panics(framing: Framing, prefix: &[u8], bytes: &[u8], chunk: usize) {
        let limits = Limits {
            max_element_bytes: 128,
            max_header_bytes: 100,
            max_depth: 4,
            max_attributes: 4,
            max_parse_bytes: 32 * 1024,
        };
        let input = [prefix, bytes].concat();
        let _ = run_chunks(framing, limits, input.chunks(chunk.max(1)));
    }

    proptest! {
        #[test]
        fn random_splits_yield_identical_frames(
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
        ) {
            let input = seed_stream();
            let bytes = input.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&bytes[last..p]);
                last = p;
            }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(run_chunks(Framing::Tcp, Limits::default(), chunks), (seed_frames(), None));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..8,
        ) {
            garbage_never_panics(Framing::Tcp, b"", &bytes, chunk);
            garbage_never_panics(Framing::Tcp, HEADER.as_bytes(), &bytes, chunk);
            garbage_never_panics(Framing::WebSocket, b"", &bytes, chunk);
        }

        #[test]
        fn xml_like_bytes_never_panic(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("<"), Just(">"), Just("/"), Just("a"), Just("b:c"), Just("'"),
                    Just("\""), Just("="), Just(" "), Just("&"), Just(";"), Just("#x"),
                    Just("<![CDATA["), Just("]]>"), Just("<?xml "), Just("?>"), Just("</"),
                    Just("/>"), Just("lt"), Just("1"), Just("\u{e9}"), Just("xmlns='jabber:client'"),
                    Just("</stream:stream>"), Just("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"),
                ],
                0..80,
            ),
            chunk in 1usize..8,
        ) {
            let bytes = parts.concat();
            garbage_never_panics(Framing::Tcp, b"", bytes.as_bytes(), chunk);
            garbage_never_panics(Framing::Tcp, HEADER.as_bytes(), bytes.as_bytes(), chunk);
            garbage_never_panics(Framing::WebSocket, b"", bytes.as_bytes(), chunk);
        }

        #[test]
        fn chunking_never_changes_the_outcome(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("<a>"), Just("</a>"), Just("<b x='>'/>"), Just(" "), Just("t&amp;"),
                    Just("<![CDATA[<]]>"), Just("<!--"), Just("&x;"), Just("<c y=\"'\">"), Just("</c>"),
                ],
                0..40,
            ),
            chunk in 1usize..10,
        ) {
            let input = [HEADER, &parts.concat()].concat();
            let whole = run(Framing::Tcp, Limits::default(), input.as_bytes());
            let chunked = run_chunks(Framing::Tcp, Limits::default(), input.as_bytes().chunks(chunk));
            prop_assert_eq!(whole, chunked);
        }
    }
}
