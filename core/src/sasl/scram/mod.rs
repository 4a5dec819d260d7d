//! SCRAM (RFC 5802; SHA-256 per RFC 7677): both roles, channel binding, the client key cache.
//!
//! Messages, in order (RFC 5802 §5, §7):
//!
//! ```text
//! client-first  = gs2-header client-first-bare       gs2-header = ("n" / "y" / "p=" type) "," [ "a=" saslname ] ","
//! client-first-bare = "n=" saslname ",r=" c-nonce
//! server-first  = "r=" c-nonce s-nonce ",s=" base64(salt) ",i=" iterations
//! client-final  = "c=" base64(gs2-header [cb-data]) ",r=" nonce ",p=" base64(ClientProof)
//! server-final  = "v=" base64(ServerSignature) / "e=" error
//! ```
//!
//! SaltedPassword = PBKDF2(password, salt, i); ClientKey = HMAC(SaltedPassword, "Client Key");
//! StoredKey = H(ClientKey); ServerKey = HMAC(SaltedPassword, "Server Key");
//! AuthMessage = client-first-bare "," server-first "," client-final-without-proof;
//! ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage);
//! ServerSignature = HMAC(ServerKey, AuthMessage).
//!
//! One file per part of the RFC, each depending only on those above it:
//!
//! - `hash`: H, HMAC, Hi and XOR for each hash (RFC 5802 §2.2, RFC 7677 §3).
//! - `keys`: SaltedPassword, ClientKey, ServerKey, StoredKey, the proof and the signatures
//!   (RFC 5802 §3); what the server stores and the client's cache entry.
//! - `message`: the four messages, built and parsed, and AuthMessage (RFC 5802 §5, §7).
//! - `client` and `server`: the two roles' exchanges (RFC 5802 §5, channel binding §6).

mod client;
mod hash;
mod keys;
mod message;
mod server;
#[cfg(test)]
mod tests;

pub(crate) use client::{ScramClient, ScramClientParams};
pub(crate) use hash::ct_eq;
pub use hash::ScramHash;
pub use keys::{ScramCacheEntry, ScramCredentials};
pub use message::{escape_saslname, unescape_saslname};
pub(crate) use server::{ScramServer, ScramServerStep};
