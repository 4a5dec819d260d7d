//! # xmpp-handshake-tokio
//!
//! XMPP streams (RFC 6120) for tokio programs, on the sans-IO core
//! [`xmpp_handshake_core`]: [`Client::connect`] resolves the JID's domain (DNS SRV,
//! XEP-0368), connects, negotiates STARTTLS or Direct TLS with rustls and the XMPP
//! certificate policy (RFC 6120 §13.7.2), authenticates (SCRAM, RFC 5802) and binds a
//! resource (§7); the bound stream's stanzas come as an async `Stream`. The receiving
//! role is a [`Listener`] whose accepted connections negotiate into a [`Peer`] with the
//! same stream API.
//!
//! ```no_run
//! use futures_util::StreamExt as _;
//! use xmpp_handshake_tokio::{Client, ClientOptions};
//! use xmpp_handshake_tokio::core::stanza;
//!
//! # async fn run() -> Result<(), xmpp_handshake_tokio::client::Error> {
//! let mut client = Client::connect("sensor@example.com", "secret", ClientOptions::default()).await?;
//! client.send(&stanza::presence(None)).await?;
//! client.send(&stanza::message("owner@example.com", "21.5 °C", None)).await?;
//! while let Some(stanza) = client.next().await {
//!     println!("{}", stanza.raw());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The pieces it is built on are public for those who drive the core themselves: the
//! bound stream's task ([`BoundStream::spawn`], after their own
//! [`negotiate`](xmpp_handshake_core::driver::negotiate)), the receiving role over any tokio transport
//! ([`server::receive`]), the rustls upgrade for both roles ([`upgrade`]), the certificate verifier ([`tls::verify`]),
//! the SRV resolution ([`resolve`]), the pin store ([`pins`]) and the tokio
//! [`clock::TokioClock`] the core's timers run on.
#![warn(missing_docs)]

pub use xmpp_handshake_core as core;

pub mod bound;
pub mod client;
pub mod clock;
pub mod direct_tls;
pub mod early_data;
pub mod pins;
pub mod resolve;
pub mod server;
pub mod tls;
pub mod transport;
pub mod upgrade;

pub use bound::{BoundStream, Incoming};
pub use client::{Client, ClientOptions, TlsSessions, Trust};
pub use server::{Listener, Peer, ServerOptions};

/// The README's snippets, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
