//! Board-independent firmware app; see the firmware issue.
#![no_std]
pub use xmpp_handshake_core as core;
