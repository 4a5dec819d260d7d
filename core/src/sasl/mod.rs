//! SASL (RFC 6120 §6): mechanisms for both roles, as pure byte exchanges.
//!
//! Nothing here knows XML: the state machines wrap what these types produce in `<auth>`,
//! `<challenge>`, `<response>`, `<success>` and `<failure>`, using [`base64`] for the
//! element text. Every payload in and out of this module is raw bytes, never base64.
//!
//! # API
//!
//! Choosing (client, §6.3.3–§6.3.4, see [`select`](mod@select)):
//!
//! ```text
//! select(offered: &[String], server_cb_types: Option<&[String]>, tls: bool,
//!        cb: &ChannelBindingData, creds: CredentialKind, policy: &SaslPolicy)
//!     -> Result<Mechanism, SaslError>
//! choose(...same...) -> Result<Selection, SaslError>   // + the gs2 channel-binding flag
//! check_offered(mechanism, offered: &[String]) -> Result<(), SaslError>  // pipelined <auth>
//! ```
//!
//! Authenticating (client, [`ClientMechanism`]):
//!
//! ```text
//! ClientMechanism::new(&Selection, Credentials, &ChannelBindingData, &SaslPolicy, &mut rng)
//! ClientMechanism::with_nonce(&Selection, Credentials, &ChannelBindingData, &SaslPolicy, &str)
//!   .initial_response() -> Result<Option<Vec<u8>>, SaslError>   // payload of <auth>
//!   .challenge(&[u8])   -> Result<Vec<u8>, SaslError>           // <challenge> -> <response>
//!   .success(Option<&[u8]>) -> Result<(), SaslError>            // <success>: SCRAM v= checked
//!   .failure(SaslFailure) -> SaslError                          // <failure>
//!   .cache_entry() -> Option<ScramCacheEntry>                   // after a verified success
//! ```
//!
//! Authenticating (server, [`ServerMechanism`]):
//!
//! ```text
//! ServerOptions::offer(tls, &ChannelBindingData, external_identity) -> Vec<Mechanism>
//! ServerMechanism::start(name: &str, &ServerContext, &mut rng) -> Result<Self, SaslFailure>
//!   .step(&store, response: Option<&[u8]>) -> Result<ServerStep, SaslFailure>
//! ServerStep::Challenge(Vec<u8>) | ServerStep::Success { additional_data, authcid, authzid }
//! trait CredentialStore { scram_credentials(authcid, hash), authorize(authcid, authzid) }
//! ScramCredentials::derive(hash, password, salt, iterations); MemoryStore::add_password(..)
//! ```
//!
//! Errors: [`SaslFailure`] is one variant per condition of RFC 6120 §6.5 (what a server sends
//! and a client receives); [`SaslError`] is everything a client can run into, each with a
//! `Display` that says what to do. No `Debug` or `Display` output carries a password, a key,
//! a proof or channel-binding bytes.
//!
//! # Channel binding (RFC 5802 §6, RFC 5929, RFC 9266, XEP-0440)
//!
//! The TLS layer fills [`ChannelBindingData`]; the client binds with the first type, in the
//! order `tls-exporter`, `tls-server-end-point`, `tls-unique`, that it has data for and that
//! the server accepts (its XEP-0440 list when it sent one; any type otherwise).
//!
//! The rule against servers that offer `-PLUS` but cannot verify the binding (ejabberd 23.01
//! on TLS 1.3 offers SCRAM-SHA-1-PLUS and answers `<not-authorized/>` to both `tls-exporter`
//! and `tls-server-end-point`): with [`CbPolicy::WhenOffered`] and no XEP-0440 list, the
//! client still prefers `-PLUS`. If the server then fails it, [`ClientMechanism::failure`]
//! reports [`SaslError::ChannelBindingRejected`] instead of a bare `not-authorized`, and
//! nothing here retries on its own: not with plain SCRAM (a man in the middle who breaks
//! the binding would get exactly that retry) and never with PLAIN. A user who knows the
//! server is merely old sets [`CbPolicy::Off`] for that server, which selects plain SCRAM
//! with the gs2 flag `n`. A caller that remembers per server whether it ever bound (the
//! CLI's login memory, [`crate::login::LoginMemory::channel_bound`]) may retry once with
//! [`CbPolicy::RetryUnbound`] (plain SCRAM, gs2 flag `y`, RFC 5802 §6) when the refused
//! server sent no XEP-0440 list and never bound before. When the server offers no `-PLUS` at all but the client could
//! bind, the client sends `y`, so a server that does support binding detects the stripped
//! offer ([`ServerMechanism`] does, and fails with `not-authorized`).
//!
//! # Not done here
//!
//! SASLprep (RFC 4013) is not applied: names and passwords go out as given (UTF-8). ASCII
//! credentials are unaffected; a non-ASCII password must already be in the form the server
//! stored it in. Secrets are dropped, not zeroised.

pub mod base64;
mod channel_binding;
mod client;
mod credentials;
#[cfg(feature = "digest-md5")]
mod digest_md5;
pub mod element;
mod error;
pub mod fast;
mod ht;
mod mechanism;
mod scram;
pub mod select;
mod server;
mod simple;
pub mod ssdp;
#[cfg(test)]
pub(crate) mod testutil;

pub use channel_binding::{
    ChannelBindingData, ChannelBindingType, TLS_EXPORTER_LABEL, TLS_EXPORTER_LEN,
};
pub use client::{ClientMechanism, Credentials};
pub use credentials::{CredentialStore, MemoryStore};
pub use error::{SaslError, SaslFailure};
pub use ht::{
    initiator_proof_matches, responder_proof, split_initial_response, HtClient, HtMechanism,
};
pub use mechanism::{Mechanism, MechanismSet};
pub use scram::{escape_saslname, unescape_saslname, ScramCacheEntry, ScramCredentials, ScramHash};
pub use select::{
    check_offered, choose, choose_from, select, CbPolicy, CredentialKind, Gs2CbFlag, Minimum,
    SaslPolicy, Selection,
};
pub use server::{ServerContext, ServerMechanism, ServerOptions, ServerStep};
