//! The tokio clock the core's connection timers run on ([`driver::Clock`]).

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;
use xmpp_handshake_core::driver;

/// Tokio's monotonic clock, counted from the first time any `TokioClock` was read in this
/// process (so every connection shares one origin).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl driver::Clock for TokioClock {
    fn now(&self) -> Duration {
        origin().elapsed()
    }

    async fn sleep_until(&self, at: Duration) {
        tokio::time::sleep_until(origin() + at).await
    }
}
