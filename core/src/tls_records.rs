//! Where a TLS byte stream is between records (RFC 8446 §5.1: a 5-byte header whose last
//! two bytes are the length, then that many bytes), for transports whose reads must give
//! way to something else (a timer, a send) without breaking the TLS layer above them.
//!
//! A TLS client such as embedded-tls reads a record header into a local buffer: a read
//! cancelled after part of a header was delivered loses those bytes. A transport that tracks
//! what it delivered with [`RecordBoundary`] lets a read give way (returning an error such
//! as `TimedOut` or `Interrupted`, with nothing consumed) only while no record is partly
//! read; the next read continues where this one stopped.

/// Follows the TLS record framing of delivered bytes. See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordBoundary {
    header: [u8; 5],
    header_len: usize,
    body_left: usize,
}

impl RecordBoundary {
    /// `true` when no record is partly delivered.
    pub fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }

    /// `data` was delivered to the TLS layer.
    pub fn consume(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len());
                self.body_left -= n;
                data = &data[n..];
            } else {
                self.header[self.header_len] = data[0];
                self.header_len += 1;
                data = &data[1..];
                if self.header_len == 5 {
                    self.body_left =
                        usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    self.header_len = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_record_framing_across_split_reads() {
        let mut r = RecordBoundary::default();
        assert!(r.at_boundary());
        r.consume(&[23, 3, 3]);
        assert!(!r.at_boundary());
        r.consume(&[0, 4, 1, 2]);
        assert!(!r.at_boundary());
        r.consume(&[3, 4, 23, 3, 3, 0, 0]);
        assert!(r.at_boundary(), "an empty record ends at its header");
        r.consume(&[23, 3, 3, 0, 1, 9]);
        assert!(r.at_boundary());
    }
}
