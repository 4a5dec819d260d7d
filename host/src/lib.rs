//! The `xmpp-handshake` CLI, as a library so that the interop suites in tests/ drive the
//! same code. The tokio and rustls pieces it is built on are the library crate
//! `xmpp-handshake-tokio`, re-exported here under their old paths.
pub use xmpp_handshake_core as core;
pub use xmpp_handshake_tokio::{clock, direct_tls, pins, resolve, tls, transport, upgrade};

pub mod bridge;
pub mod certs;
// clap turns these doc comments into `--help`, where brackets and tags are literal text.
#[allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]
pub mod cli;
pub mod client;
pub mod connect;
pub mod demo;
pub mod exit;
pub mod federation;
pub mod limits;
pub mod online;
pub mod progress;
pub mod router;
pub mod s2s_check;
pub mod scram_cache;
pub mod serve;
pub mod tls_info;
pub mod transcript;
pub mod users;
pub mod web;
