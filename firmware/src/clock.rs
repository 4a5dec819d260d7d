//! The core's [`Clock`] on embassy-time: the connection's timers (the negotiation deadline,
//! the close wait) and its `now` run on the board's time driver.

use core::time::Duration;

use embassy_time::{Instant, Timer};
use xmpp_handshake_core::driver::Clock;

/// embassy-time's monotonic clock, counted from boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbassyClock;

impl Clock for EmbassyClock {
    fn now(&self) -> Duration {
        Duration::from_micros(Instant::now().as_micros())
    }

    async fn sleep_until(&self, at: Duration) {
        let micros = at
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(at.subsec_micros()));
        Timer::at(Instant::try_from_micros(micros).unwrap_or(Instant::MAX)).await
    }
}
