//! # xmpp-handshake-core
//!
//! Sans-IO XMPP stream negotiation (RFC 6120) for both roles, `no_std` + `alloc`.
//!
//! The negotiation, in the order RFC 6120 gives it and the order of the code:
//!
//! 1. §4.7: the initiating entity sends a stream header with `version='1.0'`
//!    ([`stream::header`]); the receiving entity answers with its own and a fresh `id`.
//! 2. §4.3.2: the receiving entity sends `<stream:features/>` ([`stream::features`]).
//! 3. §5.4.2: `<starttls/>`, answered by `<proceed/>` or `<failure/>` ([`starttls`]).
//! 4. §5.4.3: TLS, right after the `>` of `<proceed/>`; the transport is upgraded by the
//!    caller ([`driver::TlsUpgrade`]); everything learned before it is forgotten.
//! 5. §4.3.3: stream restart: a new header, a new id, new features without STARTTLS.
//! 6. §6: SASL ([`sasl`]), then a restart again.
//! 7. §7: resource binding.
//! 8. XEP-0198: stream management on the bound stream (acks, resumption) ([`sm`]).
//!
//! [`initiator`] and [`receiver`] are the two state machines; they take parsed frames and
//! return bytes to send and actions. [`xml::framer`] cuts bytes into frames in a bounded
//! buffer. [`driver`] runs a machine over an `embedded-io-async` transport.
//! [`jid`] is the XMPP address (RFC 7622) every part of the workspace parses JIDs with.
//! [`login::LoginMemory`] is what one login keeps for the next (SCRAM keys, the post-TLS
//! offer), in one versioned byte format for every wrapper.
//! No I/O, clock or RNG lives here: they come in through traits and arguments.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

#[macro_use]
mod fmt;

pub mod bidi;
pub mod bind;
pub mod connection;
#[cfg(feature = "dialback")]
pub mod dialback;
pub mod driver;
pub mod error;
pub mod initiator;
pub mod jid;
pub mod login;
mod negotiation;
pub mod receiver;
pub mod resolve;
pub mod sasl;
pub mod sasl2;
pub mod sm;
pub mod stanza;
pub mod starttls;
pub mod stream;
pub mod transcript;
pub mod trust;
pub mod xml;

pub use error::{Error, ErrorKind, TlsError};
pub use jid::{Jid, JidError};
