//! `serve`'s resource bounds (RFC 6120 §13.12): what one peer, or many, may make the
//! server hold, and for how long. Each has a safe default and a `serve` flag.
//!
//! Per connection the server holds at most: the framer's buffer (`max_element_bytes`,
//! allocated once), the stanzas queued for the client (`max_queue_bytes`; a stanza that
//! would overflow it is bounced to its sender with `<resource-constraint/>`, §8.3.3.18),
//! rustls's record buffers (one TLS record each way, about 2 × 16 KiB) and, while one
//! element is parsed, roxmltree's tree of it. Connections over `max_connections` get a
//! `<resource-constraint/>` stream error (§4.9.3.17) and are closed.
//!
//! Time: the whole negotiation (TCP accept to bound resource) must finish within
//! `handshake_timeout`, so a client that sends one byte a second is dropped then. On a
//! bound stream on which no complete top-level element or whitespace keep-alive (§4.6.1)
//! arrives for `idle_timeout` the server sends a ping (XEP-0199, which every client must
//! answer, §8.2.3); silent for another `idle_timeout` (a client dribbling a stanza byte by
//! byte, or gone), the stream gets `<connection-timeout/>` (§4.9.3.4) and is closed, as
//! when one write stays blocked for `idle_timeout` (a client that stopped reading).
//!
//! Stream management (XEP-0198): a session whose connection broke is kept for
//! `resume_timeout` (the `max` of `<enabled/>`, §3) so that its client can resume it (§5),
//! at most `max_detached_sessions` of them; the stanzas it has not acknowledged, and those
//! routed to it while it is detached, are bounded by the core's unacknowledged queue
//! ([`SmConfig::max_unacked`](xmpp_handshake_core::sm::SmConfig)): one more is bounced to its
//! sender with `<resource-constraint/>`.

use std::time::Duration;

use clap::Args;
use xmpp_handshake_core::xml::element;
use xmpp_handshake_core::xml::framer::Limits;

/// The bounds one `serve` runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Largest element, stream header, nesting depth and attribute count (the framer's).
    pub xml: Limits,
    /// Failed SASL attempts on one stream before it is closed with `<policy-violation/>`
    /// (§6.4.5). Each attempt is at most the mechanism's fixed number of round trips
    /// (SCRAM: two challenges), so this also bounds the SASL rounds of a stream.
    pub max_auth_failures: u32,
    /// TCP accept to bound resource.
    pub handshake_timeout: Duration,
    /// No complete element or keep-alive received (then a ping; twice: closed), or one
    /// write blocked, for this long.
    pub idle_timeout: Duration,
    /// Connections served at once; more are refused with a stream error.
    pub max_connections: usize,
    /// Bytes of stanzas queued for one client that has not read them yet.
    pub max_queue_bytes: usize,
    /// How long a session whose connection broke may be resumed (XEP-0198 §5; `max` on
    /// `<enabled/>`, §3).
    pub resume_timeout: Duration,
    /// Sessions kept for resumption at once; past it the one closest to expiry goes first.
    pub max_detached_sessions: usize,
    /// How long a FAST token (XEP-0484) logs in; used in its last quarter, it is replaced.
    pub fast_token_lifetime: Duration,
    /// Account and client pairs holding FAST tokens at once; past it the pair whose token
    /// expires first is forgotten.
    pub max_fast_tokens: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            xml: Limits::default(),
            max_auth_failures: 3,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_connections: 512,
            max_queue_bytes: 256 * 1024,
            resume_timeout: Duration::from_secs(300),
            max_detached_sessions: 512,
            fast_token_lifetime: Duration::from_secs(14 * 24 * 3600),
            max_fast_tokens: 4096,
        }
    }
}

/// The `serve` flags that set [`ServeLimits`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Resource bounds")]
pub struct LimitArgs {
    /// Largest top-level element a client may send, in bytes (also its buffer size).
    #[arg(long, value_name = "BYTES", default_value_t = ServeLimits::default().xml.max_element_bytes)]
    pub max_element_bytes: usize,
    /// Largest stream header, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = ServeLimits::default().xml.max_header_bytes)]
    pub max_header_bytes: usize,
    /// Deepest element nesting inside a stanza.
    #[arg(long, value_name = "N", default_value_t = ServeLimits::default().xml.max_depth)]
    pub max_depth: usize,
    /// Most attributes on one element.
    #[arg(long, value_name = "N", default_value_t = ServeLimits::default().xml.max_attributes)]
    pub max_attributes: usize,
    /// Most heap the parse of one element may take, in bytes, as bounded before parsing
    /// (an element with many `<` or `=` costs far more than its size); a larger one is a
    /// policy-violation. Default: the most any element the other limits allow can cost.
    #[arg(long, value_name = "BYTES")]
    pub max_parse_bytes: Option<usize>,
    /// Failed authentications on one stream before it is closed.
    #[arg(long, value_name = "N", default_value_t = ServeLimits::default().max_auth_failures)]
    pub max_auth_failures: u32,
    /// Seconds from TCP accept to bound resource.
    #[arg(long, value_name = "SECS", default_value_t = ServeLimits::default().handshake_timeout.as_secs())]
    pub handshake_timeout: u64,
    /// Seconds a bound stream may stay silent (no stanza, no whitespace keep-alive) or
    /// blocked on a write.
    #[arg(long, value_name = "SECS", default_value_t = ServeLimits::default().idle_timeout.as_secs())]
    pub idle_timeout: u64,
    /// Connections served at once.
    #[arg(long, value_name = "N", default_value_t = ServeLimits::default().max_connections)]
    pub max_connections: usize,
    /// Bytes of stanzas queued for one client before more are bounced.
    #[arg(long, value_name = "BYTES", default_value_t = ServeLimits::default().max_queue_bytes)]
    pub max_queue_bytes: usize,
    /// Seconds a session whose connection broke stays resumable (XEP-0198 §5).
    #[arg(long, value_name = "SECS", default_value_t = ServeLimits::default().resume_timeout.as_secs())]
    pub resume_timeout: u64,
    /// Sessions kept for resumption at once.
    #[arg(long, value_name = "N", default_value_t = ServeLimits::default().max_detached_sessions)]
    pub max_detached_sessions: usize,
    /// Seconds a FAST token (XEP-0484) logs in.
    #[arg(long, value_name = "SECS", default_value_t = ServeLimits::default().fast_token_lifetime.as_secs())]
    pub fast_token_lifetime: u64,
    /// Account and client pairs holding FAST tokens at once.
    #[arg(long, value_name = "N", default_value_t = ServeLimits::default().max_fast_tokens)]
    pub max_fast_tokens: usize,
}

impl LimitArgs {
    /// The limits, or why they are unusable.
    pub fn limits(&self) -> Result<ServeLimits, String> {
        let positive = [
            ("--max-element-bytes", self.max_element_bytes as u64),
            ("--max-header-bytes", self.max_header_bytes as u64),
            ("--max-depth", self.max_depth as u64),
            (
                "--max-parse-bytes",
                self.max_parse_bytes.map_or(1, |v| v as u64),
            ),
            ("--max-auth-failures", u64::from(self.max_auth_failures)),
            ("--handshake-timeout", self.handshake_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--max-connections", self.max_connections as u64),
            ("--max-queue-bytes", self.max_queue_bytes as u64),
            ("--resume-timeout", self.resume_timeout),
            ("--max-detached-sessions", self.max_detached_sessions as u64),
            ("--fast-token-lifetime", self.fast_token_lifetime),
            ("--max-fast-tokens", self.max_fast_tokens as u64),
        ];
        // `max` on `<enabled/>` is a 32-bit number of seconds (XEP-0198 §3).
        if u32::try_from(self.resume_timeout).is_err() {
            return Err(format!("--resume-timeout must be at most {}", u32::MAX));
        }
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{flag} must be at least 1"));
        }
        let mut xml = Limits {
            max_element_bytes: self.max_element_bytes,
            max_header_bytes: self.max_header_bytes,
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
            max_parse_bytes: 0,
        };
        xml.max_parse_bytes = self
            .max_parse_bytes
            .unwrap_or_else(|| element::parse_cost_ceiling(&xml));
        Ok(ServeLimits {
            xml,
            max_auth_failures: self.max_auth_failures,
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            max_connections: self.max_connections,
            max_queue_bytes: self.max_queue_bytes,
            resume_timeout: Duration::from_secs(self.resume_timeout),
            max_detached_sessions: self.max_detached_sessions,
            fast_token_lifetime: Duration::from_secs(self.fast_token_lifetime),
            max_fast_tokens: self.max_fast_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn flag_defaults_are_the_library_defaults_and_zero_is_refused() {
        let flags = Flags::parse_from(["serve"]);
        assert_eq!(flags.limits.limits(), Ok(ServeLimits::default()));
        let flags = Flags::parse_from(["serve", "--max-depth", "4", "--idle-timeout", "2"]);
        let limits = flags.limits.limits().unwrap();
        assert_eq!(limits.xml.max_depth, 4);
        assert_eq!(limits.idle_timeout, Duration::from_secs(2));
        // Unset, the parse bound follows the other limits; set, it is what was given.
        let flags = Flags::parse_from(["serve", "--max-element-bytes", "1000000"]);
        let limits = flags.limits.limits().unwrap();
        assert!(limits.xml.max_parse_bytes > ServeLimits::default().xml.max_parse_bytes);
        let flags = Flags::parse_from(["serve", "--max-parse-bytes", "20000"]);
        assert_eq!(flags.limits.limits().unwrap().xml.max_parse_bytes, 20000);
        let flags = Flags::parse_from(["serve", "--max-connections", "0"]);
        assert_eq!(
            flags.limits.limits(),
            Err("--max-connections must be at least 1".into())
        );
    }
}
