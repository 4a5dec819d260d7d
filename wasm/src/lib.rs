//! Browser wrapper of the core (wasm-bindgen); see the wasm issue.
pub use xmpp_handshake_core as core;
