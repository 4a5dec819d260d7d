//! What one stream-management session keeps (XEP-0198 §4, §5): the counts and the bounded
//! queue of stanzas sent and not yet acknowledged. It outlives the connection: it is what a
//! resumption needs, on either side.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::{SmConfig, SmError};
use crate::connection::SendError;

/// One session's stream-management state, kept across connections for resumption (§5):
/// the session id (`previd`), the count of stanzas handled from the peer (`h`), and the
/// stanzas sent and not acknowledged, each with its number.
///
/// Numbers name the stanzas to the application: every stanza this state tracks gets the
/// next one (from 1), and numbers go on across resumptions and fresh sessions started
/// from a state that could not be resumed, so that one number never means two stanzas.
/// [`Event::Acked`](crate::connection::Event::Acked) and the resumption events report
/// them.
///
/// A client passes it in [`InitiatorConfig::resume`](crate::initiator::InitiatorConfig)
/// for the next connection; a server keeps a detached session's for
/// [`Connection::resume`](crate::connection::Connection::resume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmState {
    pub(crate) id: Option<String>,
    pub(crate) max: Option<u32>,
    pub(crate) location: Option<String>,
    pub(crate) jid: Option<String>,
    /// Stanzas handled from the peer (§4 `h`), mod 2^32.
    pub(crate) handled: u32,
    /// The peer's last `h`: stanzas of ours it acknowledged, mod 2^32.
    acked: u32,
    /// Stanzas of ours sent (the peer's `h` can be at most this), mod 2^32.
    sent: u32,
    /// Stanzas not acknowledged, oldest first: the first `sent - acked` were sent, the
    /// rest queued while no stream was up ([`SmState::queue`]).
    queue: VecDeque<(u64, String)>,
    next_number: u64,
    max_unacked: usize,
}

impl SmState {
    /// A new session's state: nothing sent, nothing handled.
    pub(crate) fn new(config: &SmConfig, next_number: u64) -> Self {
        SmState {
            id: None,
            max: None,
            location: None,
            jid: None,
            handled: 0,
            acked: 0,
            sent: 0,
            queue: VecDeque::new(),
            next_number,
            max_unacked: config.max_unacked,
        }
    }

    /// The session id to resume with (`previd`, §5); `None` when the peer did not allow
    /// resumption.
    pub fn previd(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Where the server asked to be reconnected to for resumption (`location`, §3), as
    /// `host[:port]`. Informational: the certificate is still checked against the
    /// configured domain.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// How long the peer keeps the session after a drop, in seconds (`max`, §3).
    pub fn max(&self) -> Option<u32> {
        self.max
    }

    /// The full JID the session is bound to.
    pub fn jid(&self) -> Option<&str> {
        self.jid.as_deref()
    }

    /// Stanzas handled from the peer (§4 `h`, mod 2^32).
    pub fn handled(&self) -> u32 {
        self.handled
    }

    /// The stanzas not acknowledged, oldest first, with their numbers.
    pub fn unacked(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.queue.iter().map(|(n, s)| (*n, s.as_str()))
    }

    /// How many stanzas are not acknowledged.
    pub fn unacked_len(&self) -> usize {
        self.queue.len()
    }

    /// Queues a stanza while no stream is up (a client between connections, a server for a
    /// detached session): it goes out after the unacknowledged ones when the session
    /// resumes, and is reported as not delivered if it does not. Returns its number;
    /// [`SendError::UnackedFull`] at the bound ([`SmConfig::max_unacked`]).
    pub fn queue(&mut self, stanza: &str) -> Result<u64, SendError> {
        self.push(stanza)
    }

    /// The number the next tracked stanza gets.
    pub(crate) fn next_number(&self) -> u64 {
        self.next_number
    }

    fn push(&mut self, stanza: &str) -> Result<u64, SendError> {
        if self.queue.len() >= self.max_unacked {
            return Err(SendError::UnackedFull);
        }
        let number = self.next_number;
        self.next_number += 1;
        self.queue.push_back((number, String::from(stanza)));
        Ok(number)
    }

    /// A stanza goes out on the stream: tracked until acknowledged.
    pub(crate) fn track(&mut self, stanza: &str) -> Result<u64, SendError> {
        let number = self.push(stanza)?;
        self.sent = self.sent.wrapping_add(1);
        Ok(number)
    }

    /// A stanza of the peer's was handled (§4: `h` counts mod 2^32).
    pub(crate) fn count_handled(&mut self) {
        self.handled = self.handled.wrapping_add(1);
    }

    /// The numbers of the stanzas queued from the front, `n` of them.
    fn front_numbers(&self, n: u32) -> Range<u64> {
        let start = self.queue.front().map_or(self.next_number, |(n, _)| *n);
        start..start + u64::from(n)
    }

    /// The peer handled `h` of our stanzas (§4): the ones it had not acknowledged yet are
    /// dropped from the queue; their numbers are returned. An `h` beyond what was sent
    /// (counted mod 2^32 from the last acknowledgement) is
    /// [`SmError::HandledCountTooHigh`], and nothing changes.
    pub(crate) fn ack(&mut self, h: u32) -> Result<Range<u64>, SmError> {
        let in_flight = self.sent.wrapping_sub(self.acked);
        let newly = h.wrapping_sub(self.acked);
        if newly > in_flight {
            return Err(SmError::HandledCountTooHigh { h, sent: self.sent });
        }
        let numbers = self.front_numbers(newly);
        for _ in 0..newly {
            self.queue.pop_front();
        }
        self.acked = h;
        Ok(numbers)
    }

    /// After a resumption (§5) and [`SmState::ack`] of the peer's `h`: every stanza still
    /// queued goes out (again, or for the first time), in order; their numbers and texts.
    pub(crate) fn resend(&mut self) -> (Range<u64>, Vec<String>) {
        let len = u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
        self.sent = self.acked.wrapping_add(len);
        let numbers = self.front_numbers(len);
        (numbers, self.queue.iter().map(|(_, s)| s.clone()).collect())
    }

    /// The session is over for good: what it still held, with the numbers.
    pub(crate) fn into_unacked(self) -> Vec<(u64, String)> {
        self.queue.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(max_unacked: usize) -> SmState {
        SmState::new(
            &SmConfig {
                max_unacked,
                ..SmConfig::default()
            },
            1,
        )
    }

    #[test]
    fn acks_drop_exactly_the_acknowledged_stanzas() {
        let mut s = state(8);
        for i in 0..5 {
            assert_eq!(s.track(&alloc::format!("<message id='{i}'/>")), Ok(i + 1));
        }
        assert_eq!(s.ack(2), Ok(1..3));
        assert_eq!(s.ack(2), Ok(3..3), "the same h again acknowledges nothing");
        assert_eq!(s.unacked().map(|(n, _)| n).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(s.ack(5), Ok(3..6));
        assert_eq!(s.unacked_len(), 0);
    }

    #[test]
    fn h_above_what_was_sent_is_refused_and_changes_nothing() {
        let mut s = state(8);
        s.track("<presence/>").unwrap();
        s.track("<presence/>").unwrap();
        assert_eq!(
            s.ack(3),
            Err(SmError::HandledCountTooHigh { h: 3, sent: 2 })
        );
        // An h below the last one is, mod 2^32, far above what was sent.
        assert_eq!(s.ack(1), Ok(1..2));
        assert_eq!(
            s.ack(0),
            Err(SmError::HandledCountTooHigh { h: 0, sent: 2 })
        );
        assert_eq!(s.unacked_len(), 1);
    }

    #[test]
    fn counts_wrap_at_two_to_the_32() {
        let mut s = state(8);
        s.acked = u32::MAX - 1;
        s.sent = u32::MAX - 1;
        s.handled = u32::MAX;
        s.count_handled();
        assert_eq!(s.handled(), 0);
        for _ in 0..4 {
            s.track("<message/>").unwrap();
        }
        // Sent: MAX-1 + 4 = 2 (mod 2^32).
        assert_eq!(s.sent, 2);
        assert_eq!(s.ack(u32::MAX), Ok(1..2));
        assert_eq!(s.ack(1), Ok(2..4));
        assert_eq!(
            s.ack(3),
            Err(SmError::HandledCountTooHigh { h: 3, sent: 2 })
        );
        assert_eq!(s.ack(2), Ok(4..5));
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut s = state(2);
        s.track("<message/>").unwrap();
        s.queue("<message/>").unwrap();
        assert_eq!(s.track("<message/>"), Err(SendError::UnackedFull));
        assert_eq!(s.queue("<message/>"), Err(SendError::UnackedFull));
        assert_eq!(s.unacked_len(), 2);
        assert_eq!(s.next_number(), 3, "a refused stanza takes no number");
    }

    #[test]
    fn resend_covers_what_was_queued_offline() {
        let mut s = state(8);
        s.track("<message id='1'/>").unwrap();
        s.track("<message id='2'/>").unwrap();
        s.queue("<message id='3'/>").unwrap();
        // The peer cannot acknowledge a stanza that was never sent.
        assert!(s.ack(3).is_err());
        assert_eq!(s.ack(1), Ok(1..2));
        let (numbers, texts) = s.resend();
        assert_eq!(numbers, 2..4);
        assert_eq!(texts, ["<message id='2'/>", "<message id='3'/>"]);
        assert_eq!(s.ack(3), Ok(2..4));
    }
}
