//! The FAST tokens a server issues (XEP-0484), kept in memory with their expiry: per
//! account and user agent (`<user-agent id=…>`, XEP-0388 §2.2.1) one current and one
//! previous token, bound to the HT mechanism they were issued for, in a table of bounded
//! size.
//!
//! Token rotation (XEP-0484 §"Token rotation"): a new token does not end the one before
//! it at once, since the client may never have received the `<token/>`; the previous one
//! stays valid (until it expires) until the client logs in with the new one. A login with
//! the previous token means the new one was lost: it is dropped and another is issued. A
//! login with the current token close to its expiry gets a new one too.
//!
//! Replay (XEP-0484 §"Security considerations", TLS 0-RTT): a login that carries
//! `<fast count=…/>` must carry a count above every count already seen for that token.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rand_core::{CryptoRng, RngCore};

use super::ht::{initiator_proof_matches, responder_proof, HtMechanism};

/// Longest user agent id a token is kept for (XEP-0388 suggests a UUID).
pub const MAX_USER_AGENT_ID: usize = 128;

/// One token: the secret as sent, its expiry (Unix seconds), the highest `count` seen.
#[derive(Clone)]
struct Token {
    secret: String,
    expires: u64,
    count: Option<u32>,
}

struct Entry {
    account: String,
    user_agent: String,
    mechanism: HtMechanism,
    current: Option<Token>,
    previous: Option<Token>,
}

/// A token just issued: what goes into `<token token=… expiry=…/>` (XEP-0484 §3.3).
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The secret.
    pub token: String,
    /// Its expiry, Unix seconds.
    pub expires: u64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why a token login was refused (all are `<not-authorized/>` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefused {
    /// No valid token of this account, user agent and mechanism matches the proof (never
    /// issued, expired, invalidated, or replaced twice since).
    Unknown,
    /// `count` not above one already seen for this token (XEP-0484 replay rule).
    CountReplayed,
}

/// A token login that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUsed {
    /// A new token should go into the success (rotation).
    pub rotate: bool,
    /// The server's proof for the success's additional data (`HMAC(token, "Responder"
    /// || cb-data)`).
    pub server_proof: Vec<u8>,
}

/// The server's FAST token table. See the module docs.
pub struct FastTokens {
    entries: Vec<Entry>,
    max_entries: usize,
    lifetime: u64,
    rotate_within: u64,
}

impl fmt::Debug for FastTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastTokens")
            .field("entries", &self.entries.len())
            .field("max_entries", &self.max_entries)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl FastTokens {
    /// A table of at most `max_entries` account and user agent pairs whose tokens live
    /// `lifetime` seconds and are rotated when used with less than a quarter of it left.
    pub fn new(max_entries: usize, lifetime: u64) -> Self {
        FastTokens {
            entries: Vec::new(),
            max_entries: max_entries.max(1),
            lifetime,
            rotate_within: lifetime / 4,
        }
    }

    /// Seconds a token lives.
    pub fn lifetime(&self) -> u64 {
        self.lifetime
    }

    fn find(&mut self, account: &str, user_agent: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.account == account && e.user_agent == user_agent)
    }

    /// Issues a token to `account` on `user_agent` for `mechanism` at `now`: it becomes the
    /// current one and the current one the previous (XEP-0484 §3.3, rotation). `None` when
    /// the user agent id is longer than [`MAX_USER_AGENT_ID`]. When the table is full, the
    /// pair whose token expires first is forgotten.
    pub fn issue<R: RngCore + CryptoRng>(
        &mut self,
        account: &str,
        user_agent: &str,
        mechanism: HtMechanism,
        rng: &mut R,
        now: u64,
    ) -> Option<IssuedToken> {
        if user_agent.is_empty() || user_agent.len() > MAX_USER_AGENT_ID {
            return None;
        }
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let token = Token {
            secret: alloc::format!(
                "secret-token:fast-{}",
                base16ct::lower::encode_string(&secret)
            ),
            expires: now.saturating_add(self.lifetime),
            count: None,
        };
        self.entries.retain(|e| {
            e.current.as_ref().is_some_and(|t| t.expires > now)
                || e.previous.as_ref().is_some_and(|t| t.expires > now)
        });
        let index = match self.find(account, user_agent) {
            Some(i) => i,
            None => {
                if self.entries.len() >= self.max_entries {
                    let soonest = self
                        .entries
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, e)| e.current.as_ref().map_or(0, |t| t.expires))
                        .map(|(i, _)| i);
                    if let Some(i) = soonest {
                        self.entries.swap_remove(i);
                    }
                }
                self.entries.push(Entry {
                    account: String::from(account),
                    user_agent: String::from(user_agent),
                    mechanism,
                    current: None,
                    previous: None,
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        if entry.mechanism != mechanism {
            // A token for another mechanism replaces both: a token is only ever good for
            // the mechanism it was issued for.
            entry.mechanism = mechanism;
            entry.current = None;
        }
        entry.previous = entry.current.take().filter(|t| t.expires > now);
        let issued = IssuedToken {
            token: token.secret.clone(),
            expires: token.expires,
        };
        entry.current = Some(token);
        Some(issued)
    }

    /// Checks a token login of `account` on `user_agent` with `mechanism` at `now`: the
    /// client's `proof` against each valid token, in constant time, over `cb_data` (the
    /// mechanism's channel-binding data, empty for `-NONE`); `count` is the
    /// `<fast count=…/>` sent, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &mut self,
        account: &str,
        user_agent: &str,
        mechanism: HtMechanism,
        cb_data: &[u8],
        proof: &[u8],
        count: Option<u32>,
        now: u64,
    ) -> Result<TokenUsed, TokenRefused> {
        let index = self
            .find(account, user_agent)
            .ok_or(TokenRefused::Unknown)?;
        let entry = &mut self.entries[index];
        if entry.mechanism != mechanism {
            return Err(TokenRefused::Unknown);
        }
        let valid = |t: &Option<Token>| {
            t.as_ref().is_some_and(|t| {
                t.expires > now && initiator_proof_matches(t.secret.as_bytes(), cb_data, proof)
            })
        };
        let with_current = valid(&entry.current);
        if !with_current && !valid(&entry.previous) {
            return Err(TokenRefused::Unknown);
        }
        let used = if with_current {
            &mut entry.current
        } else {
            &mut entry.previous
        };
        if let (Some(token), Some(count)) = (used.as_mut(), count) {
            if token.count.is_some_and(|seen| count <= seen) {
                return Err(TokenRefused::CountReplayed);
            }
            token.count = Some(count);
        }
        let server_proof = used
            .as_ref()
            .map(|t| responder_proof(t.secret.as_bytes(), cb_data))
            .unwrap_or_default();
        let rotate = if with_current {
            // The client has the current token: the previous one is of no more use.
            entry.previous = None;
            let left = entry.current.as_ref().map_or(0, |t| t.expires - now);
            left < self.rotate_within
        } else {
            // The current token never reached the client: it goes, and the one the client
            // holds is replaced by a new one in this success.
            entry.current = entry.previous.take();
            true
        };
        Ok(TokenUsed {
            rotate,
            server_proof,
        })
    }

    /// XEP-0484 §3.5, `<fast invalidate='true'/>`: forgets every token of `account` on
    /// `user_agent`.
    pub fn invalidate(&mut self, account: &str, user_agent: &str) {
        self.entries
            .retain(|e| !(e.account == account && e.user_agent == user_agent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::testutil::rng;
    use crate::sasl::ScramHash;

    const M: HtMechanism = HtMechanism::Sha256None;

    /// A login at `now` with the proof of `token`: `Ok(rotate)`.
    fn login(
        t: &mut FastTokens,
        account: &str,
        user_agent: &str,
        mechanism: HtMechanism,
        count: Option<u32>,
        now: u64,
        token: &IssuedToken,
    ) -> Result<bool, TokenRefused> {
        let proof = ScramHash::Sha256.hmac(token.token.as_bytes(), b"Initiator");
        t.verify(account, user_agent, mechanism, b"", &proof, count, now)
            .map(|used| {
                assert_eq!(
                    used.server_proof,
                    ScramHash::Sha256.hmac(token.token.as_bytes(), b"Responder")
                );
                used.rotate
            })
    }

    #[test]
    fn a_new_token_keeps_the_previous_until_the_new_one_is_used() {
        let mut t = FastTokens::new(8, 1000);
        let rng = &mut rng(1);
        let first = t.issue("a", "ua", M, rng, 0).unwrap();
        let second = t.issue("a", "ua", M, rng, 10).unwrap();
        assert_ne!(first.token, second.token);
        // The previous one still logs in (the `<token/>` may have been lost), and is
        // then replaced by a new one: the lost one is gone.
        assert_eq!(login(&mut t, "a", "ua", M, None, 20, &first), Ok(true));
        assert_eq!(
            login(&mut t, "a", "ua", M, None, 21, &second),
            Err(TokenRefused::Unknown)
        );
        let third = t.issue("a", "ua", M, rng, 22).unwrap();
        assert_eq!(login(&mut t, "a", "ua", M, None, 30, &third), Ok(false));
        // Once the new one was used, the previous one is over.
        assert_eq!(
            login(&mut t, "a", "ua", M, None, 31, &first),
            Err(TokenRefused::Unknown)
        );
    }

    #[test]
    fn tokens_expire_rotate_near_expiry_and_bind_to_their_mechanism() {
        let mut t = FastTokens::new(8, 1000);
        let tok = t.issue("a", "ua", M, &mut rng(2), 0).unwrap();
        assert_eq!(tok.expires, 1000);
        assert_eq!(
            login(&mut t, "a", "ua", HtMechanism::Sha256Expr, None, 1, &tok),
            Err(TokenRefused::Unknown)
        );
        assert_eq!(
            login(&mut t, "a", "other-ua", M, None, 1, &tok),
            Err(TokenRefused::Unknown)
        );
        assert_eq!(login(&mut t, "a", "ua", M, None, 800, &tok), Ok(true));
        assert_eq!(
            login(&mut t, "a", "ua", M, None, 1000, &tok),
            Err(TokenRefused::Unknown)
        );
    }

    #[test]
    fn a_count_not_above_the_last_is_refused() {
        let mut t = FastTokens::new(8, 1000);
        let tok = t.issue("a", "ua", M, &mut rng(3), 0).unwrap();
        assert!(login(&mut t, "a", "ua", M, Some(5), 1, &tok).is_ok());
        assert_eq!(
            login(&mut t, "a", "ua", M, Some(5), 2, &tok),
            Err(TokenRefused::CountReplayed)
        );
        assert_eq!(
            login(&mut t, "a", "ua", M, Some(4), 2, &tok),
            Err(TokenRefused::CountReplayed)
        );
        assert!(login(&mut t, "a", "ua", M, Some(6), 3, &tok).is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_invalidation_forgets() {
        let mut t = FastTokens::new(2, 1000);
        let rng = &mut rng(4);
        let a = t.issue("a", "ua", M, rng, 0).unwrap();
        t.issue("b", "ua", M, rng, 5).unwrap();
        let c = t.issue("c", "ua", M, rng, 6).unwrap();
        assert_eq!(t.entries.len(), 2);
        // "a" expired first: it was forgotten.
        assert_eq!(
            login(&mut t, "a", "ua", M, None, 7, &a),
            Err(TokenRefused::Unknown)
        );
        t.invalidate("c", "ua");
        assert_eq!(
            login(&mut t, "c", "ua", M, None, 8, &c),
            Err(TokenRefused::Unknown)
        );
        assert!(t
            .issue("d", &"x".repeat(MAX_USER_AGENT_ID + 1), M, rng, 9)
            .is_none());
    }
}
