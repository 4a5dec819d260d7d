//! # xmpp-handshake-firmware
//!
//! One board-independent XMPP client app on embassy, `no_std` + `alloc`. A board binary
//! brings up its network interface (Ethernet, Wi-Fi, or a TAP device on the host), a
//! random number generator, a store for the SCRAM cache and the memory, then calls
//! [`app::run`], which never returns:
//!
//! 1. set the clock from SNTP while it is unknown ([`time`]; certificate dates are checked
//!    from then on), find the server (an address, a host name's A record, or the JID's
//!    domain by SRV: [`net`]) and connect over TCP, with exponential backoff and jitter
//!    ([`backoff`]) on every failure;
//! 2. negotiate with the core's [`driver::negotiate`](xmpp_handshake_core::driver::negotiate):
//!    STARTTLS through a [`tls::EmbeddedTlsConnector`] (embedded-tls, TLS 1.3, P-256), SCRAM
//!    with the keys cached in [`store`] (PBKDF2 runs once per password and salt, not per
//!    boot), bind; the core's connection keeps the timers, on [`clock::EmbassyClock`];
//! 3. send initial presence, then echo incoming chat messages and/or send a periodic
//!    sensor-style message ([`config::Behaviour`]); answer IQs as RFC 6120 §8.2.3 requires.
//!    The core's [`driver::run`](xmpp_handshake_core::driver::run) carries the bound stream
//!    over the TLS stream split into a reader and a writer ([`transport::Duplex`]): it waits
//!    on the read, the app's replies and readings and the core's timers together, and never
//!    drops a pending read (embedded-tls's reads are not cancel-safe);
//! 4. on any loss (TCP reset, stream error, server shutdown) start over at 1.
//!
//! Every step proves progress to [`watchdog`], whose board task feeds the hardware
//! watchdog only while the app keeps making it: a hang resets the board.
//!
//! Memory is the caller's: socket buffers, TLS record buffers and the framer's bound all
//! come from [`config::Memory`]; the heap holds the parsed elements (see the README).
//! Logging goes through `defmt` on boards and `log` on the host (feature `defmt` / `log`).
//! The errors' sentences and the `<text/>` of the stream errors this side sends (RFC 6120
//! §4.9.2) come with the feature `error-text` (the host build); the boards leave them out
//! and log each error typed.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[macro_use]
mod fmt;

pub mod app;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod meter;
pub mod net;
pub mod store;
pub mod time;
pub mod tls;
pub mod transport;
pub mod watchdog;

pub use app::run;

#[doc(hidden)]
pub mod __private {
    pub use static_cell::ConstStaticCell;
}

/// The board's [`config::BuildEnv`]: every `XMPP_*` setting as `option_env!` reads it
/// where this expands, in the board crate, whose build script checked them.
#[macro_export]
macro_rules! build_env {
    () => {
        $crate::config::BuildEnv {
            jid: option_env!("XMPP_JID"),
            password: option_env!("XMPP_PASSWORD"),
            server: option_env!("XMPP_SERVER"),
            resource: option_env!("XMPP_RESOURCE"),
            report_to: option_env!("XMPP_REPORT_TO"),
            period_ms: option_env!("XMPP_PERIOD_MS"),
            ntp: option_env!("XMPP_NTP"),
        }
    };
}

/// The statics every board binary needs for [`run`]: socket buffers and TLS record buffers
/// sized by `$memory` (a [`Memory`] const), zero-initialized in `.bss` (`ConstStaticCell`:
/// a `StaticCell::init([0; N])` would build each array on the main task's stack first and
/// copy it), and an [`tls::EmbeddedTlsConnector`] with the certificates of `$anchor` (DER
/// certificates one after the other, see [`trust_anchors`]; empty = none) as its trust
/// anchors, `$pins` (`XMPP_PIN`: SHA-256 of the key, 32 bytes each;
/// empty = none) or, with `$first_use`, trust on first use, and `$domain` as the
/// reference identity. Boards have no real-time clock: certificate dates are checked once
/// SNTP gave the time ([`time`]), skipped (and logged) before. Evaluates to
/// `(SocketBuffers, Result<EmbeddedTlsConnector, ReferenceError>)`; use it once.
#[macro_export]
macro_rules! board_session {
    ($memory:path, $anchor:expr, $pins:expr, $first_use:expr, $domain:expr) => {{
        use $crate::__private::ConstStaticCell;
        static SOCKET_RX: ConstStaticCell<[u8; $memory.socket_rx]> =
            ConstStaticCell::new([0; $memory.socket_rx]);
        static SOCKET_TX: ConstStaticCell<[u8; $memory.socket_tx]> =
            ConstStaticCell::new([0; $memory.socket_tx]);
        static TLS_READ: ConstStaticCell<[u8; $memory.tls_read]> =
            ConstStaticCell::new([0; $memory.tls_read]);
        static TLS_WRITE: ConstStaticCell<[u8; $memory.tls_write]> =
            ConstStaticCell::new([0; $memory.tls_write]);
        let buffers = $crate::app::SocketBuffers {
            rx: SOCKET_RX.take(),
            tx: SOCKET_TX.take(),
        };
        let anchors = $crate::trust_anchors($anchor);
        let pins: &'static [u8] = $pins;
        let trust = if $first_use {
            $crate::tls::TrustSetting::FirstUse
        } else if pins.is_empty() {
            $crate::tls::TrustSetting::Anchors
        } else {
            $crate::tls::TrustSetting::Pins(pins)
        };
        let tls = $crate::tls::EmbeddedTlsConnector::new(
            TLS_READ.take(),
            TLS_WRITE.take(),
            anchors,
            trust,
            $domain,
            $crate::tls::Clock::Sntp,
        );
        (buffers, tls)
    }};
}
pub use config::{Behaviour, Config, Memory};

/// The trust anchors of `bundle`: DER certificates one after the other, as the boards'
/// build scripts write `XMPP_CA` (every certificate of a PEM bundle) into the image. The
/// build checked that it splits; should it not, there are no anchors and every server
/// certificate is refused.
pub fn trust_anchors(bundle: &'static [u8]) -> &'static [&'static [u8]] {
    let anchors = xmpp_handshake_core::trust::x509::concatenated(bundle).unwrap_or_default();
    alloc::vec::Vec::leak(anchors)
}
pub use xmpp_handshake_core as core;
pub use xmpp_handshake_embedded_tls as embedded_tls;
