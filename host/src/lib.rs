//! std home of the core: tokio transport, rustls TLS for both roles.
pub use xmpp_handshake_core as core;

pub mod tls;
pub mod transport;
pub mod upgrade;
