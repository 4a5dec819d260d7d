//! The DNS exchanges a device needs: an SRV query (RFC 2782) or an A query (RFC 1035
//! §3.2.2) in a DNS message over UDP (RFC 1035 §4.1), and the SRV records or IPv4
//! addresses of its answer.
//!
//! Written here rather than taken from a crate: smoltcp (under embassy-net) asks only for
//! A/AAAA and keeps its message code private (and its DNS socket costs more flash than
//! this codec with a UDP socket the device has anyway), and the DNS message crates decode
//! every record type into owned values (several KB of flash for one record type on a
//! board whose budget is counted in hundreds of bytes). This is a query builder and a
//! bounded reader for one question and its answers; the names in the answer may be
//! compressed (RFC 1035 §4.1.4), the pointers are followed backwards only.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::SrvRecord;

/// Record type SRV (RFC 2782).
const TYPE_SRV: u16 = 33;
/// Record type A (RFC 1035 §3.2.2).
const TYPE_A: u16 = 1;
/// Record type CNAME (RFC 1035 §3.2.2).
const TYPE_CNAME: u16 = 5;
/// Class IN.
const CLASS_IN: u16 = 1;
/// Longest name in text form (RFC 1035 §2.3.4: 255 octets on the wire).
const MAX_NAME: usize = 253;
/// SRV records (or IPv4 addresses) kept from one answer; more are ignored.
pub const MAX_RECORDS: usize = 8;
/// Largest DNS message over UDP without EDNS (RFC 1035 §4.2.1): what a reader's buffer
/// needs.
pub const MAX_UDP_MESSAGE: usize = 512;

/// Why a DNS message could not be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DnsError {
    /// The name to look up is not a host name of 253 bytes at most, or the buffer is too
    /// small for the query.
    BadName,
    /// The message is cut short or inconsistent.
    Malformed,
    /// Not the answer to this query (another id, not a response, another question).
    NotOurs,
    /// The answer did not fit in UDP (TC bit): the records are incomplete.
    Truncated,
    /// The server answered with this RCODE (2: server failure, 5: refused, ...).
    Failed(u8),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::BadName => f.write_str("not a DNS name"),
            DnsError::Malformed => f.write_str("malformed DNS message"),
            DnsError::NotOurs => f.write_str("not the answer to this DNS query"),
            DnsError::Truncated => f.write_str("the DNS answer was truncated"),
            DnsError::Failed(code) => write!(f, "the DNS server answered with RCODE {code}"),
        }
    }
}

impl core::error::Error for DnsError {}

/// Writes a recursive query (RD set) for the SRV records of `name` with `id` into `out`;
/// returns its length.
pub fn srv_query(id: u16, name: &str, out: &mut [u8]) -> Result<usize, DnsError> {
    query(id, name, TYPE_SRV, out)
}

/// Writes a recursive query (RD set) for the A records (IPv4 addresses) of the host
/// `name` with `id` into `out`; returns its length.
pub fn a_query(id: u16, name: &str, out: &mut [u8]) -> Result<usize, DnsError> {
    query(id, name, TYPE_A, out)
}

/// One question for `kind` records of `name`.
fn query(id: u16, name: &str, kind: u16, out: &mut [u8]) -> Result<usize, DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    // Service labels start with `_`: checked as host names once it is dropped.
    let plain = name.split('.').all(|label| {
        let label = label.strip_prefix('_').unwrap_or(label);
        super::is_host_name(label)
    });
    if name.is_empty() || name.len() > MAX_NAME || !plain {
        return Err(DnsError::BadName);
    }
    let len = 12 + name.len() + 2 + 4;
    let out = out.get_mut(..len).ok_or(DnsError::BadName)?;
    out.fill(0);
    out[..2].copy_from_slice(&id.to_be_bytes());
    out[2] = 0x01; // RD
    out[5] = 1; // QDCOUNT
    let mut at = 12;
    for label in name.split('.') {
        out[at] = label.len() as u8;
        out[at + 1..at + 1 + label.len()].copy_from_slice(label.as_bytes());
        at += 1 + label.len();
    }
    at += 1; // the root label
    out[at..at + 2].copy_from_slice(&kind.to_be_bytes());
    out[at + 2..at + 4].copy_from_slice(&CLASS_IN.to_be_bytes());
    Ok(len)
}

/// The SRV records for `name` in `message`, the answer to [`srv_query`] with `id`: at
/// most [`MAX_RECORDS`], in the order of the message. A name that does not exist
/// (NXDOMAIN) has no records: `Ok` and empty.
pub fn srv_answers(id: u16, name: &str, message: &[u8]) -> Result<Vec<SrvRecord>, DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let Some((mut at, answers)) = answer_section(id, name, message)? else {
        return Ok(Vec::new());
    };
    let mut owner = String::new();
    let mut records = Vec::new();
    for _ in 0..answers {
        let (kind, class, data) = record(message, &mut at, &mut owner)?;
        // Other records (a CNAME on the way, say) and other owners are skipped.
        if kind != TYPE_SRV || class != CLASS_IN || !owner.eq_ignore_ascii_case(name) {
            continue;
        }
        let [p0, p1, w0, w1, o0, o1, ..] = *data else {
            return Err(DnsError::Malformed);
        };
        let mut target = String::new();
        if read_name(message, at - data.len() + 6, &mut target)? > at {
            return Err(DnsError::Malformed);
        }
        if target.is_empty() {
            target.push('.');
        }
        if records.len() < MAX_RECORDS {
            records.push(SrvRecord {
                priority: u16::from_be_bytes([p0, p1]),
                weight: u16::from_be_bytes([w0, w1]),
                port: u16::from_be_bytes([o0, o1]),
                target,
            });
        }
    }
    Ok(records)
}

/// The IPv4 addresses of `name` in `message`, the answer to [`a_query`] with `id`: at most
/// [`MAX_RECORDS`], in the order of the message, following the CNAME records on the way
/// (an alias's A records are owned by its canonical name). A name that does not exist
/// (NXDOMAIN) has no addresses: `Ok` and empty.
pub fn a_answers(id: u16, name: &str, message: &[u8]) -> Result<Vec<[u8; 4]>, DnsError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let Some((mut at, answers)) = answer_section(id, name, message)? else {
        return Ok(Vec::new());
    };
    let mut wanted = String::from(name);
    let mut owner = String::new();
    let mut addresses = Vec::new();
    for _ in 0..answers {
        let (kind, class, data) = record(message, &mut at, &mut owner)?;
        if class != CLASS_IN || !owner.eq_ignore_ascii_case(&wanted) {
            continue;
        }
        match kind {
            TYPE_CNAME => {
                let mut target = String::new();
                if read_name(message, at - data.len(), &mut target)? > at {
                    return Err(DnsError::Malformed);
                }
                wanted = target;
            }
            TYPE_A => {
                let address = <[u8; 4]>::try_from(data).map_err(|_| DnsError::Malformed)?;
                if addresses.len() < MAX_RECORDS {
                    addresses.push(address);
                }
            }
            _ => {}
        }
    }
    Ok(addresses)
}

/// Checks that `message` answers the query `id` for `name` and skips its question: where
/// the answer section starts and how many records it holds, or `None` for a name that does
/// not exist (NXDOMAIN).
fn answer_section(id: u16, name: &str, message: &[u8]) -> Result<Option<(usize, u16)>, DnsError> {
    let header = message.get(..12).ok_or(DnsError::Malformed)?;
    let field = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let flags = field(2);
    // QR set, opcode QUERY.
    if field(0) != id || flags & 0x8000 == 0 || flags & 0x7800 != 0 {
        return Err(DnsError::NotOurs);
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    let (questions, answers) = (field(4), field(6));
    if questions != 1 {
        return Err(DnsError::NotOurs);
    }
    let mut owner = String::new();
    let mut at = read_name(message, 12, &mut owner)?;
    if !owner.eq_ignore_ascii_case(name) || at + 4 > message.len() {
        return Err(DnsError::NotOurs);
    }
    at += 4;
    match (flags & 0x000f) as u8 {
        0 => Ok(Some((at, answers))),
        3 => Ok(None),
        code => Err(DnsError::Failed(code)),
    }
}

/// Reads the resource record at `*at` (RFC 1035 §4.1.3): its owner into `owner`, and its
/// type, class and data; `*at` moves past it.
fn record<'m>(
    message: &'m [u8],
    at: &mut usize,
    owner: &mut String,
) -> Result<(u16, u16, &'m [u8]), DnsError> {
    owner.clear();
    let fixed_at = read_name(message, *at, owner)?;
    let fixed = message
        .get(fixed_at..fixed_at + 10)
        .ok_or(DnsError::Malformed)?;
    let word = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
    let (kind, class, length) = (word(0), word(2), usize::from(word(8)));
    let data_at = fixed_at + 10;
    *at = data_at + length;
    let data = message.get(data_at..*at).ok_or(DnsError::Malformed)?;
    Ok((kind, class, data))
}

/// Appends the name at `at` in `message` in text form (labels joined by `.`, no trailing
/// dot, the root as ``) and returns where the record goes on after it. Compression
/// pointers (RFC 1035 §4.1.4) must point before the label that holds them, so they cannot
/// loop; the text is bounded by [`MAX_NAME`].
fn read_name(message: &[u8], mut at: usize, out: &mut String) -> Result<usize, DnsError> {
    let mut end = None;
    loop {
        let len = *message.get(at).ok_or(DnsError::Malformed)?;
        match len {
            0 => return Ok(end.unwrap_or(at + 1)),
            0xc0.. => {
                let low = *message.get(at + 1).ok_or(DnsError::Malformed)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= at {
                    return Err(DnsError::Malformed);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            1..=63 => {
                let label = message
                    .get(at + 1..at + 1 + usize::from(len))
                    .ok_or(DnsError::Malformed)?;
                if !out.is_empty() {
                    out.push('.');
                }
                if out.len() + label.len() > MAX_NAME {
                    return Err(DnsError::Malformed);
                }
                // Host names are ASCII; anything else is kept visible but harmless.
                out.extend(label.iter().map(|&b| {
                    if b.is_ascii_graphic() {
                        char::from(b)
                    } else {
                        '?'
                    }
                }));
                at += 1 + usize::from(len);
            }
            _ => return Err(DnsError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const NAME: &str = "_xmpp-client._tcp.example.test";

    /// An answer as a server writes it: the question, then `records` with the owner as a
    /// pointer to the question's name and the target uncompressed.
    fn answer(id: u16, rcode: u8, records: &[(u16, u16, u16, &str)]) -> Vec<u8> {
        let mut query = vec![0; 512];
        let len = srv_query(id, NAME, &mut query).unwrap();
        let mut m = query[..len].to_vec();
        m[2] |= 0x80; // QR
        m[3] = 0x80 | rcode; // RA, RCODE
        m[7] = records.len() as u8;
        for &(priority, weight, port, target) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&[0, 33, 0, 1, 0, 0, 0, 60]);
            let mut data = Vec::new();
            for v in [priority, weight, port] {
                data.extend_from_slice(&v.to_be_bytes());
            }
            for label in target.split('.').filter(|l| !l.is_empty()) {
                data.push(label.len() as u8);
                data.extend_from_slice(label.as_bytes());
            }
            data.push(0);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(&data);
        }
        m
    }

    #[test]
    fn query_is_one_srv_question_with_recursion_desired() {
        let mut out = [0u8; 64];
        let len = srv_query(0xabcd, "_xmpp-client._tcp.example.test.", &mut out).unwrap();
        let expected: &[u8] = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
            \x0c_xmpp-client\x04_tcp\x07example\x04test\x00\x00\x21\x00\x01";
        assert_eq!(&out[..len], expected);
        assert_eq!(srv_query(1, "a..b", &mut out), Err(DnsError::BadName));
        assert_eq!(srv_query(1, "a b.test", &mut out), Err(DnsError::BadName));
        assert_eq!(srv_query(1, NAME, &mut out[..20]), Err(DnsError::BadName));
    }

    #[test]
    fn answers_are_read_with_their_targets() {
        let m = answer(7, 0, &[(10, 5, 5222, "a.example.test"), (0, 0, 0, "")]);
        let records = srv_answers(7, NAME, &m).unwrap();
        assert_eq!(
            records,
            vec![
                SrvRecord {
                    priority: 10,
                    weight: 5,
                    port: 5222,
                    target: "a.example.test".into()
                },
                SrvRecord {
                    priority: 0,
                    weight: 0,
                    port: 0,
                    target: ".".into()
                },
            ]
        );
        // The owner name compares case-insensitively.
        assert_eq!(
            srv_answers(7, "_XMPP-client._tcp.Example.test.", &m),
            Ok(records)
        );
    }

    #[test]
    fn nxdomain_is_no_records_and_other_failures_are_errors() {
        assert_eq!(srv_answers(7, NAME, &answer(7, 3, &[])), Ok(vec![]));
        assert_eq!(
            srv_answers(7, NAME, &answer(7, 2, &[])),
            Err(DnsError::Failed(2))
        );
    }

    #[test]
    fn foreign_truncated_or_cut_messages_are_refused() {
        let m = answer(7, 0, &[(10, 5, 5222, "a.example.test")]);
        assert_eq!(srv_answers(8, NAME, &m), Err(DnsError::NotOurs));
        assert_eq!(
            srv_answers(7, "_xmpp-client._tcp.other.test", &m),
            Err(DnsError::NotOurs)
        );
        let mut query = m.clone();
        query[2] &= 0x7f;
        assert_eq!(srv_answers(7, NAME, &query), Err(DnsError::NotOurs));
        let mut truncated = m.clone();
        truncated[2] |= 0x02;
        assert_eq!(srv_answers(7, NAME, &truncated), Err(DnsError::Truncated));
        for cut in 0..m.len() {
            assert!(srv_answers(7, NAME, &m[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn compression_pointers_only_point_backwards() {
        let mut m = answer(7, 0, &[(1, 2, 3, "t.test")]);
        // The answer's owner pointer aimed at itself: a loop, refused.
        let owner = m.len() - (2 + 10 + 6 + 8);
        m[owner + 1] = owner as u8;
        assert_eq!(srv_answers(7, NAME, &m), Err(DnsError::Malformed));
    }

    /// An answer to an A query for `name`: `records` are (owner, type, data), the owner
    /// written uncompressed.
    fn a_answer(id: u16, name: &str, records: &[(&str, u16, &[u8])]) -> Vec<u8> {
        let mut query = vec![0; 512];
        let len = a_query(id, name, &mut query).unwrap();
        let mut m = query[..len].to_vec();
        m[2] |= 0x80;
        m[3] = 0x80;
        m[7] = records.len() as u8;
        let labels = |m: &mut Vec<u8>, name: &str| {
            for label in name.split('.') {
                m.push(label.len() as u8);
                m.extend_from_slice(label.as_bytes());
            }
            m.push(0);
        };
        for &(owner, kind, data) in records {
            labels(&mut m, owner);
            m.extend_from_slice(&kind.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn a_query_is_one_a_question() {
        let mut out = [0u8; 64];
        let len = a_query(0x0102, "xmpp.example.test", &mut out).unwrap();
        let expected: &[u8] = b"\x01\x02\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
            \x04xmpp\x07example\x04test\x00\x00\x01\x00\x01";
        assert_eq!(&out[..len], expected);
    }

    #[test]
    fn a_answers_follow_cnames_and_skip_other_owners() {
        let cname = b"\x04real\x07example\x04test\x00";
        let m = a_answer(
            9,
            "xmpp.example.test",
            &[
                ("other.example.test", TYPE_A, &[10, 0, 0, 9]),
                ("xmpp.example.test", TYPE_CNAME, cname),
                ("real.example.test", TYPE_A, &[192, 0, 2, 1]),
                ("real.example.test", TYPE_A, &[192, 0, 2, 2]),
            ],
        );
        assert_eq!(
            a_answers(9, "XMPP.example.test.", &m),
            Ok(vec![[192, 0, 2, 1], [192, 0, 2, 2]])
        );
        assert_eq!(
            a_answers(10, "xmpp.example.test", &m),
            Err(DnsError::NotOurs)
        );
        for cut in 0..m.len() {
            assert!(
                a_answers(9, "xmpp.example.test", &m[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let bad = a_answer(
            9,
            "xmpp.example.test",
            &[("xmpp.example.test", TYPE_A, &[1, 2, 3])],
        );
        assert_eq!(
            a_answers(9, "xmpp.example.test", &bad),
            Err(DnsError::Malformed)
        );
        let mut nxdomain = a_answer(9, "xmpp.example.test", &[]);
        nxdomain[3] |= 3;
        assert_eq!(a_answers(9, "xmpp.example.test", &nxdomain), Ok(vec![]));
    }

    #[test]
    fn records_other_than_srv_are_skipped_and_the_count_is_bounded() {
        let many: Vec<(u16, u16, u16, &str)> = (0..12).map(|i| (i, 0, 5222, "x.test")).collect();
        let mut m = answer(7, 0, &many);
        assert_eq!(srv_answers(7, NAME, &m).unwrap().len(), MAX_RECORDS);
        // The first record turned into a CNAME-typed one: skipped.
        let first = 12 + NAME.len() + 2 + 4;
        m[first + 3] = 5;
        let records = srv_answers(7, NAME, &m).unwrap();
        assert_eq!(records.first().map(|r| r.priority), Some(1));
    }
}
