//! Reconnect delays: exponential with full jitter, so a fleet of devices that lost the same
//! server does not come back in lockstep.

use embassy_time::Duration;
use rand_core::RngCore;

/// Exponential backoff between `initial` and `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub initial: Duration,
    /// The largest upper bound.
    pub max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(60))
    }
}

impl Backoff {
    /// A backoff starting at `initial`, doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next delay: uniform in [bound/2, bound], bound doubling per failed attempt.
    pub fn next_delay(&mut self, rng: &mut impl RngCore) -> Duration {
        let shift = self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let bound = self
            .initial
            .as_millis()
            .saturating_mul(1 << shift)
            .min(self.max.as_millis())
            .max(1);
        let half = bound / 2;
        Duration::from_millis(half + u64::from(rng.next_u32()) % (bound - half + 1))
    }

    /// A session got as far as a bound resource: start again from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(7919);
            self.0
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(self.next_u32() as u8)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    #[test]
    fn doubles_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut rng = Counter(0);
        let bounds = [100, 200, 400, 800, 1000, 1000];
        for bound in bounds {
            let d = b.next_delay(&mut rng).as_millis();
            assert!(
                d >= bound / 2 && d <= bound,
                "{d} not in [{}, {bound}]",
                bound / 2
            );
        }
        b.reset();
        assert!(b.next_delay(&mut rng).as_millis() <= 100);
    }
}
