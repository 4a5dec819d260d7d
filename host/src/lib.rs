//! std home of the core: tokio transport, rustls TLS for both roles.
pub use xmpp_handshake_core as core;

pub mod direct_tls;
pub mod tls;
pub mod transport;
pub mod upgrade;

// The `xmpp-handshake` CLI (src/main.rs), as a library so that the interop suites in
// tests/ drive the same code.
pub mod bridge;
pub mod certs;
pub mod cli;
pub mod client;
pub mod clock;
pub mod connect;
pub mod demo;
pub mod exit;
pub mod limits;
pub mod pins;
pub mod progress;
pub mod resolve;
pub mod router;
pub mod scram_cache;
pub mod serve;
pub mod tls_info;
pub mod transcript;
pub mod users;
pub mod web;
