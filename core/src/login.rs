//! What one login keeps for the next: [`LoginMemory`], and its versioned, bounded byte
//! format, the same for every wrapper (the host's cache file, firmware's flash record, a
//! page's storage).
//!
//! A login learns what makes the next one cheaper: the SCRAM keys (RFC 5802 §5.1 lets the
//! client keep ClientKey and ServerKey: no PBKDF2 next time), the mechanisms the server
//! offered after TLS (RFC 6120 §6.3.3: the next `<auth/>` can be pipelined behind the first
//! protected header, chosen from that offer by the policy of the day), and the mechanism
//! and channel-binding policy it used. [`LoginMemory::from_outcome`] takes them from a
//! negotiation's [`Outcome`]; [`ClientSasl::with_memory`] hands them to the next one.
//!
//! # Byte format ([`LoginMemory::to_bytes`], [`LoginMemory::from_bytes`])
//!
//! ```text
//! version    u8   = 4 (1, 2 and 3 are still read)
//! flags      u8   bit 0 SCRAM entry, 1 offer, 2 mechanism, 3 channel-binding policy,
//!                 4 FAST token, 5 bound before, 6 channel-bound before (version 2);
//!                 bit 7 is 0 (and bit 6 in version 1)
//! flags 2    u8   versions 3 and 4: bit 0 user agent id, 1 SASL2 offered; version 4:
//!                 bit 2 SASL2's inline features kept, then 3 Bind 2, 4 `<enable/>` in
//!                 Bind 2, 5 `<resume/>` inline, 6 FAST in TLS 0-RTT (3-6 only with 2);
//!                 bit 7 is 0
//! offer      u16  BE, MechanismSet::bits                    (flag 1)
//! mechanism  u8   index in Mechanism::ALL                    (flag 2)
//! cb policy  u8   0 required, 1 when-offered, 2 off,
//!                 3 retry-unbound (version 2)                (flag 3)
//! SCRAM      u16  BE length, then ScramCacheEntry::to_bytes  (flag 0)
//! FAST       u8 length, mechanism name (ASCII); u16 BE length, token;
//!            u8 0 or 1, then the expiry as u64 BE seconds since the epoch if 1;
//!            version 4: u32 BE, the count of the last attempt with it  (flag 4)
//! user agent u8 length, the id (ASCII)                       (flags 2, bit 0)
//! ```
//!
//! Version 3 is version 4 without flags 2's bits 2-6 (no SASL2 inline features kept) and
//! without the FAST count (read as 0).
//! Version 1 is version 2 without bit 6 and without policy 3: it reads as a memory of a
//! server that never completed a channel-bound login.
//!
//! At most [`MAX_LEN`] bytes. Another version, a truncated or oversized input, a reserved
//! flag, a value out of range or bytes after the end are a [`LoginMemoryError`], never a
//! panic: the memory only saves time, so a caller discards what does not read and the next
//! login writes it again.
//!
//! The SCRAM keys and a FAST token log in to the account on their own: keep the bytes
//! where the password is, or seal those fields (the host's cache seals them under the
//! password). `Debug` shows neither.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::connection::Outcome;
use crate::initiator::ClientSasl;
use crate::sasl::{CbPolicy, Mechanism, MechanismSet, SaslPolicy, ScramCacheEntry};
use crate::stream::features::Sasl2Inline;
use crate::trust::UnixTime;

/// The format version [`LoginMemory::to_bytes`] writes.
pub const VERSION: u8 = 4;

/// The earlier format version [`LoginMemory::from_bytes`] still reads (no SASL2 inline
/// features).
pub const VERSION_3: u8 = 3;

/// The earlier format version [`LoginMemory::from_bytes`] still reads (no user agent id).
pub const VERSION_2: u8 = 2;

/// The earlier format version [`LoginMemory::from_bytes`] still reads (no channel-bound flag,
/// no [`CbPolicy::RetryUnbound`]).
pub const VERSION_1: u8 = 1;

/// The longest encoding [`LoginMemory::from_bytes`] reads and [`LoginMemory::to_bytes`]
/// writes: room for a SCRAM-SHA-512 entry with a 256-byte salt and a FAST token.
pub const MAX_LEN: usize = 1024;

/// Longest FAST mechanism name kept (XEP-0484 names such as `HT-SHA-256-EXPR` are short).
pub const MAX_FAST_MECHANISM: usize = 64;

/// Longest FAST token kept.
pub const MAX_FAST_TOKEN: usize = 256;

const FLAG_SCRAM: u8 = 1 << 0;
const FLAG_OFFER: u8 = 1 << 1;
const FLAG_MECHANISM: u8 = 1 << 2;
const FLAG_CB_POLICY: u8 = 1 << 3;
const FLAG_FAST: u8 = 1 << 4;
const FLAG_BOUND: u8 = 1 << 5;
const FLAG_CHANNEL_BOUND: u8 = 1 << 6;
const FLAGS_KNOWN_V1: u8 = (1 << 6) - 1;
const FLAGS_KNOWN: u8 = (1 << 7) - 1;
const FLAG2_USER_AGENT: u8 = 1 << 0;
const FLAG2_SASL2: u8 = 1 << 1;
const FLAG2_SASL2_INLINE: u8 = 1 << 2;
const FLAG2_BIND2: u8 = 1 << 3;
const FLAG2_BIND2_SM: u8 = 1 << 4;
const FLAG2_SM_INLINE: u8 = 1 << 5;
const FLAG2_FAST_0RTT: u8 = 1 << 6;
const FLAGS2_KNOWN_V3: u8 = (1 << 2) - 1;
const FLAGS2_KNOWN: u8 = (1 << 7) - 1;

/// Longest user agent id kept (XEP-0388 ids are UUIDs, 36 characters).
pub const MAX_USER_AGENT_ID: usize = 64;

/// A FAST token (XEP-0484 §3.3): what the server issued, for the mechanism it was
/// requested for; it logs in on the next connection ([`crate::initiator::Sasl2Config`]).
#[derive(Clone, PartialEq, Eq)]
pub struct FastToken {
    /// The token mechanism, e.g. `HT-SHA-256-EXPR`.
    pub mechanism: String,
    /// The token the server issued (a secret).
    pub token: Vec<u8>,
    /// When it expires, if the server said.
    pub expires: Option<UnixTime>,
}

impl fmt::Debug for FastToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastToken")
            .field("mechanism", &self.mechanism)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// What one login to an account on a server keeps for the next (see the module docs).
/// Every field is optional: an empty memory is a cold login.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LoginMemory {
    /// SCRAM keys of the last verified login (RFC 5802 §5.1): no PBKDF2 while the
    /// server's salt and iteration count stay the same.
    pub scram: Option<ScramCacheEntry>,
    /// The mechanisms the server offered on the TLS-protected stream (§6.3.3), those this
    /// crate knows; never a pre-TLS list. The next pipelined `<auth/>` is chosen from it.
    pub offer: Option<MechanismSet>,
    /// The mechanism that authenticated.
    pub mechanism: Option<Mechanism>,
    /// The channel-binding policy [`LoginMemory::mechanism`] was chosen under: without an
    /// offer, that mechanism is pipelined again only under the same policy.
    pub channel_binding: Option<CbPolicy>,
    /// A FAST token (XEP-0484): the next login uses it instead of the password.
    pub fast_token: Option<FastToken>,
    /// XEP-0484 §3.4's `count` of the last attempt with [`LoginMemory::fast_token`] (0 for
    /// a new token): [`LoginMemory::next_fast_count`] raises it before each attempt.
    pub fast_count: u32,
    /// The SASL2 `<user-agent id=…>` (XEP-0388 §2.2.1) this device logs in to this account
    /// with: the server ties the FAST token to it, so it is kept with the token.
    pub user_agent_id: Option<String>,
    /// The server offered SASL2 (XEP-0388) on the protected stream: the next login waits
    /// for its features rather than pipelining an RFC 6120 `<auth/>`.
    pub sasl2: bool,
    /// What the server's SASL2 offer carried inline at the last login (XEP-0388 §2.1):
    /// with a FAST token, the next `<authenticate/>` is shaped by it and sent before the
    /// features ([`crate::initiator::Sasl2Config::pipeline`]).
    pub sasl2_inline: Option<Sasl2Inline>,
    /// The server bound a resource for this account before (for later: e.g. to pipeline
    /// binding only with servers known to accept it).
    pub bound_before: bool,
    /// This server completed a channel-bound (`-PLUS`) login to this account before: like
    /// HSTS, once set it stays set. A server that offers `-PLUS` without XEP-0440 and
    /// refuses the binding may be retried once without binding
    /// ([`CbPolicy::RetryUnbound`]) only while this is false; once a server has bound, a
    /// refusal is an error (it can be an attack), never a retry.
    pub channel_bound: bool,
}

impl fmt::Debug for LoginMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginMemory")
            .field("scram", &self.scram)
            .field("offer", &self.offer)
            .field("mechanism", &self.mechanism)
            .field("channel_binding", &self.channel_binding)
            .field("fast_token", &self.fast_token)
            .field("fast_count", &self.fast_count)
            .field("bound_before", &self.bound_before)
            .field("channel_bound", &self.channel_bound)
            .field("user_agent_id", &self.user_agent_id)
            .field("sasl2", &self.sasl2)
            .field("sasl2_inline", &self.sasl2_inline)
            .finish()
    }
}

/// Why bytes are not a [`LoginMemory`], or a memory does not fit the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LoginMemoryError {
    /// The input ends before the memory does (a torn write, a cut record).
    Truncated,
    /// More than [`MAX_LEN`] bytes (or a field longer than its bound when writing).
    TooLong {
        /// The length found or needed.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Written by another version of the format.
    UnknownVersion(u8),
    /// A reserved flag, or a field whose value is out of range (the name says which).
    Invalid(&'static str),
    /// Bytes follow the end of the memory.
    TrailingBytes,
}

impl fmt::Display for LoginMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginMemoryError::Truncated => f.write_str("the stored login memory is cut short"),
            LoginMemoryError::TooLong { len, max } => {
                write!(
                    f,
                    "the login memory is {len} bytes, more than the {max} allowed"
                )
            }
            LoginMemoryError::UnknownVersion(v) => {
                write!(
                    f,
                    "the login memory is of format version {v}, not {VERSION}, {VERSION_3}, \
                     {VERSION_2} or {VERSION_1}"
                )
            }
            LoginMemoryError::Invalid(what) => write!(f, "the login memory's {what} is invalid"),
            LoginMemoryError::TrailingBytes => f.write_str("bytes follow the login memory"),
        }?;
        f.write_str("; discard it: the next login derives and stores it again")
    }
}

impl core::error::Error for LoginMemoryError {}

const CB_POLICIES: [CbPolicy; 4] = [
    CbPolicy::Required,
    CbPolicy::WhenOffered,
    CbPolicy::Off,
    CbPolicy::RetryUnbound,
];

/// Reads `bytes` front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LoginMemoryError> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(LoginMemoryError::Truncated)?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, LoginMemoryError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, LoginMemoryError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, LoginMemoryError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, LoginMemoryError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
}

impl LoginMemory {
    /// What the negotiation that ended with `outcome` teaches the next login: the SCRAM
    /// keys, the post-TLS offer, the mechanism and `policy`'s channel-binding policy (the
    /// one it was chosen under), whether a resource was bound and whether the login was
    /// channel-bound (a verified `-PLUS` mechanism), a FAST token the server issued, and
    /// what its SASL2 offer carried inline.
    /// The caller keeps what the earlier memory knew ([`LoginMemory::remembering`]).
    pub fn from_outcome(outcome: &Outcome, policy: &SaslPolicy) -> Self {
        LoginMemory {
            scram: outcome.scram_cache.clone(),
            offer: outcome.sasl_offer,
            mechanism: outcome.mechanism,
            channel_binding: outcome.mechanism.map(|_| policy.channel_binding),
            fast_token: outcome.fast_token.as_deref().cloned(),
            fast_count: 0,
            user_agent_id: None,
            sasl2: outcome.sasl2,
            sasl2_inline: outcome.sasl2_inline,
            bound_before: outcome.jid.is_some(),
            channel_bound: outcome.mechanism.is_some_and(Mechanism::is_plus),
        }
    }

    /// This memory (of the login that started from `earlier`), keeping what `earlier`
    /// knew for good: that the server bound the channel once
    /// ([`LoginMemory::channel_bound`]), even if this login did not bind
    /// (`--channel-binding off`); the user agent id; the FAST token unless this login
    /// replaced it or the server refused it (`fast_token_rejected`); and, after a login
    /// without a SASL mechanism (a FAST token), the SCRAM keys and offer of the last
    /// password login.
    #[must_use]
    pub fn remembering(mut self, earlier: Option<&LoginMemory>, fast_token_rejected: bool) -> Self {
        let Some(earlier) = earlier else {
            return self;
        };
        self.channel_bound |= earlier.channel_bound;
        if self.user_agent_id.is_none() {
            self.user_agent_id.clone_from(&earlier.user_agent_id);
        }
        self.sasl2 |= earlier.sasl2 && self.mechanism.is_none();
        if self.fast_token.is_none() && !fast_token_rejected {
            self.fast_token.clone_from(&earlier.fast_token);
            // The same token: its count goes on (a new one starts at 0).
            self.fast_count = earlier.fast_count;
        }
        if self.mechanism.is_none() {
            self.scram = self.scram.or_else(|| earlier.scram.clone());
            self.offer = self.offer.or(earlier.offer);
            self.mechanism = earlier.mechanism;
            self.channel_binding = earlier.channel_binding;
        }
        self
    }

    /// The `count` for the next attempt with the FAST token (XEP-0484 §3.4), one above the
    /// last: keep the memory again before connecting, so that no count is ever sent twice
    /// (a server that saw it refuses it in TLS 0-RTT as a replay). `None` without a token
    /// (or once the count would overflow: log in with the password for a new token).
    pub fn next_fast_count(&mut self) -> Option<u32> {
        self.fast_token.as_ref()?;
        self.fast_count = self.fast_count.checked_add(1)?;
        Some(self.fast_count)
    }

    /// Before each login attempt: where the server allows FAST in TLS 0-RTT (the kept
    /// offer's `tls-0rtt`), `<fast/>` carries the count, so it is raised
    /// ([`LoginMemory::next_fast_count`]) and this memory must be kept again before the
    /// attempt; elsewhere no count is sent and nothing changes (`None`).
    pub fn next_attempt_count(&mut self) -> Option<u32> {
        if !self.sasl2_inline.is_some_and(|i| i.fast_0rtt) {
            return None;
        }
        self.next_fast_count()
    }

    /// The post-TLS offer the next `<auth/>` is pipelined from under `policy`: the kept
    /// offer; without one (nothing kept it), the mechanism that authenticated, if it was
    /// chosen under the same channel-binding policy; otherwise none.
    pub fn pipeline_offer(&self, policy: &SaslPolicy) -> Option<MechanismSet> {
        match (self.offer, self.mechanism) {
            (Some(offer), _) => Some(offer),
            (None, Some(m)) if self.channel_binding == Some(policy.channel_binding) => {
                Some(MechanismSet::default().with(m))
            }
            _ => None,
        }
    }

    /// The encoding (see the module docs); [`LoginMemoryError::TooLong`] when a field
    /// exceeds its bound or the whole [`MAX_LEN`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, LoginMemoryError> {
        let mut flags = 0;
        let mut body = Vec::new();
        if let Some(offer) = self.offer {
            flags |= FLAG_OFFER;
            body.extend_from_slice(&offer.bits().to_be_bytes());
        }
        if let Some(m) = self.mechanism {
            flags |= FLAG_MECHANISM;
            body.push(m as u8);
        }
        if let Some(cb) = self.channel_binding {
            flags |= FLAG_CB_POLICY;
            body.push(match cb {
                CbPolicy::Required => 0,
                CbPolicy::WhenOffered => 1,
                CbPolicy::Off => 2,
                CbPolicy::RetryUnbound => 3,
            });
        }
        if let Some(entry) = &self.scram {
            flags |= FLAG_SCRAM;
            let bytes = entry.to_bytes();
            let len = bounded(bytes.len(), MAX_LEN)?;
            body.extend_from_slice(&(len as u16).to_be_bytes());
            body.extend_from_slice(&bytes);
        }
        if let Some(fast) = &self.fast_token {
            flags |= FLAG_FAST;
            if !fast.mechanism.is_ascii() {
                return Err(LoginMemoryError::Invalid("FAST mechanism name"));
            }
            let name = bounded(fast.mechanism.len(), MAX_FAST_MECHANISM)?;
            body.push(name as u8);
            body.extend_from_slice(fast.mechanism.as_bytes());
            let token = bounded(fast.token.len(), MAX_FAST_TOKEN)?;
            body.extend_from_slice(&(token as u16).to_be_bytes());
            body.extend_from_slice(&fast.token);
            match fast.expires {
                Some(at) => {
                    body.push(1);
                    body.extend_from_slice(&at.0.to_be_bytes());
                }
                None => body.push(0),
            }
            body.extend_from_slice(&self.fast_count.to_be_bytes());
        }
        if self.bound_before {
            flags |= FLAG_BOUND;
        }
        if self.channel_bound {
            flags |= FLAG_CHANNEL_BOUND;
        }
        let mut flags2 = 0;
        if self.sasl2 {
            flags2 |= FLAG2_SASL2;
        }
        if let Some(inline) = self.sasl2_inline {
            flags2 |= FLAG2_SASL2_INLINE;
            for (on, flag) in [
                (inline.bind2, FLAG2_BIND2),
                (inline.bind2_sm, FLAG2_BIND2_SM),
                (inline.sm, FLAG2_SM_INLINE),
                (inline.fast_0rtt, FLAG2_FAST_0RTT),
            ] {
                if on {
                    flags2 |= flag;
                }
            }
        }
        if let Some(id) = &self.user_agent_id {
            flags2 |= FLAG2_USER_AGENT;
            if !id.is_ascii() {
                return Err(LoginMemoryError::Invalid("user agent id"));
            }
            let len = bounded(id.len(), MAX_USER_AGENT_ID)?;
            body.push(len as u8);
            body.extend_from_slice(id.as_bytes());
        }
        bounded(3 + body.len(), MAX_LEN)?;
        let mut out = Vec::with_capacity(3 + body.len());
        out.push(VERSION);
        out.push(flags);
        out.push(flags2);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads what [`LoginMemory::to_bytes`] wrote, exactly: anything else is a
    /// [`LoginMemoryError`] (see the module docs).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LoginMemoryError> {
        bounded(bytes.len(), MAX_LEN)?;
        let mut r = Reader(bytes);
        let version = r.u8()?;
        let (known, policies) = match version {
            VERSION | VERSION_3 | VERSION_2 => (FLAGS_KNOWN, CB_POLICIES.len()),
            VERSION_1 => (FLAGS_KNOWN_V1, 3),
            _ => return Err(LoginMemoryError::UnknownVersion(version)),
        };
        let flags = r.u8()?;
        if flags & !known != 0 {
            return Err(LoginMemoryError::Invalid("flags"));
        }
        let (flags2, known2) = match version {
            VERSION => (r.u8()?, FLAGS2_KNOWN),
            VERSION_3 => (r.u8()?, FLAGS2_KNOWN_V3),
            _ => (0, 0),
        };
        let inline_bits = FLAG2_BIND2 | FLAG2_BIND2_SM | FLAG2_SM_INLINE | FLAG2_FAST_0RTT;
        if flags2 & !known2 != 0 || (flags2 & FLAG2_SASL2_INLINE == 0 && flags2 & inline_bits != 0)
        {
            return Err(LoginMemoryError::Invalid("flags"));
        }
        let mut memory = LoginMemory::default();
        if flags & FLAG_OFFER != 0 {
            memory.offer = Some(MechanismSet::from_bits(r.u16()?));
        }
        if flags & FLAG_MECHANISM != 0 {
            let i = usize::from(r.u8()?);
            let m = Mechanism::ALL
                .get(i)
                .ok_or(LoginMemoryError::Invalid("mechanism"))?;
            memory.mechanism = Some(*m);
        }
        if flags & FLAG_CB_POLICY != 0 {
            let i = usize::from(r.u8()?);
            let cb = CB_POLICIES[..policies]
                .get(i)
                .ok_or(LoginMemoryError::Invalid("channel-binding policy"))?;
            memory.channel_binding = Some(*cb);
        }
        if flags & FLAG_SCRAM != 0 {
            let len = usize::from(r.u16()?);
            let entry = ScramCacheEntry::from_bytes(r.take(len)?)
                .map_err(|_| LoginMemoryError::Invalid("SCRAM entry"))?;
            memory.scram = Some(entry);
        }
        if flags & FLAG_FAST != 0 {
            let len = usize::from(r.u8()?);
            if len > MAX_FAST_MECHANISM {
                return Err(LoginMemoryError::Invalid("FAST mechanism name"));
            }
            let name = r.take(len)?;
            if !name.is_ascii() {
                return Err(LoginMemoryError::Invalid("FAST mechanism name"));
            }
            let mechanism = String::from(
                core::str::from_utf8(name)
                    .map_err(|_| LoginMemoryError::Invalid("FAST mechanism name"))?,
            );
            let len = usize::from(r.u16()?);
            if len > MAX_FAST_TOKEN {
                return Err(LoginMemoryError::Invalid("FAST token"));
            }
            let token = r.take(len)?.to_vec();
            let expires = match r.u8()? {
                0 => None,
                1 => Some(UnixTime(r.u64()?)),
                _ => return Err(LoginMemoryError::Invalid("FAST token expiry")),
            };
            if version == VERSION {
                memory.fast_count = r.u32()?;
            }
            memory.fast_token = Some(FastToken {
                mechanism,
                token,
                expires,
            });
        }
        memory.bound_before = flags & FLAG_BOUND != 0;
        memory.channel_bound = flags & FLAG_CHANNEL_BOUND != 0;
        memory.sasl2 = flags2 & FLAG2_SASL2 != 0;
        memory.sasl2_inline = (flags2 & FLAG2_SASL2_INLINE != 0).then_some(Sasl2Inline {
            bind2: flags2 & FLAG2_BIND2 != 0,
            bind2_sm: flags2 & FLAG2_BIND2_SM != 0,
            sm: flags2 & FLAG2_SM_INLINE != 0,
            fast_0rtt: flags2 & FLAG2_FAST_0RTT != 0,
        });
        if flags2 & FLAG2_USER_AGENT != 0 {
            let len = usize::from(r.u8()?);
            if len > MAX_USER_AGENT_ID {
                return Err(LoginMemoryError::Invalid("user agent id"));
            }
            let id = core::str::from_utf8(r.take(len)?)
                .ok()
                .filter(|id| id.is_ascii())
                .ok_or(LoginMemoryError::Invalid("user agent id"))?;
            memory.user_agent_id = Some(String::from(id));
        }
        if !r.0.is_empty() {
            return Err(LoginMemoryError::TrailingBytes);
        }
        Ok(memory)
    }
}

fn bounded(len: usize, max: usize) -> Result<usize, LoginMemoryError> {
    if len > max {
        Err(LoginMemoryError::TooLong { len, max })
    } else {
        Ok(len)
    }
}

impl ClientSasl {
    /// Uses what an earlier login kept ([`LoginMemory`]): its SCRAM keys (the password is
    /// still needed when the server's salt or iteration count changed), and, unless a
    /// pipelined mechanism or offer is already set, the `<auth/>` pipelined after TLS is
    /// chosen from its offer ([`LoginMemory::pipeline_offer`]) under this policy. Its FAST
    /// token, user agent id and SASL2 inline features go to [`ClientSasl::sasl2`] (an id
    /// already set stays; the token and the inline features only with the id they were
    /// kept with).
    #[must_use]
    pub fn with_memory(mut self, memory: &LoginMemory) -> Self {
        if self.sasl2.user_agent_id.is_none() {
            self.sasl2.user_agent_id.clone_from(&memory.user_agent_id);
        }
        // The token is tied to the id it was issued under.
        if self.sasl2.user_agent_id == memory.user_agent_id {
            self.sasl2.fast_token.clone_from(&memory.fast_token);
            self.sasl2.pipeline = memory.sasl2_inline;
            self.sasl2.fast_count = memory.fast_token.as_ref().map(|_| memory.fast_count);
        }
        if let Some(entry) = &memory.scram {
            self.credentials.scram_cache = Some(entry.clone());
        }
        // A server that offered SASL2 gets `<authenticate/>` once its features are in, not
        // an RFC 6120 `<auth/>` ahead of them.
        let sasl2 = memory.sasl2 && self.sasl2.enabled;
        if self.pipeline_mechanism.is_none() && self.pipeline_offer.is_none() && !sasl2 {
            self.pipeline_offer = memory.pipeline_offer(&self.policy);
        }
        self
    }
}

#[cfg(test)]
mod tests;
