//! What feeds a board's hardware watchdog: the app proves progress with [`beat`] (each
//! connection attempt, each stanza in or out, and a tick of the bound stream's loop every
//! [`TICK`]), and the board's watchdog task ([`keep_fed`]) pets the hardware only while the
//! last beat is recent. A busy loop stops the executor and with it the petting; a future
//! that never completes stops the beats. Either way the hardware resets the board.

use core::sync::atomic::{AtomicU32, Ordering};

use embassy_time::{Duration, Instant, Timer};

/// How often the bound stream's loop beats while nothing else happens.
pub const TICK: Duration = Duration::from_secs(30);

/// The longest the app may go without a beat: the longest step between two beats (a
/// backoff of up to 60 s, a TCP connect of 10 s, DNS and SNTP of a few seconds, a
/// negotiation of 30 s) with room to spare.
pub const LIMIT: Duration = Duration::from_secs(180);

/// Seconds since boot at the last beat. Loads and stores only (the ESP32-C3 has no
/// atomic read-modify-write).
static LAST_BEAT: AtomicU32 = AtomicU32::new(0);

/// The app made progress.
pub fn beat() {
    LAST_BEAT.store(Instant::now().as_secs() as u32, Ordering::Relaxed);
}

/// Pets the hardware watchdog (`pet`) every second for as long as the app beats at least
/// every [`LIMIT`]; then stops, logs why, and lets the watchdog reset the board. Run it in
/// a task of its own; the hardware's timeout must be longer than a second.
pub async fn keep_fed(mut pet: impl FnMut()) -> ! {
    beat();
    loop {
        let now = Instant::now().as_secs() as u32;
        if now.wrapping_sub(LAST_BEAT.load(Ordering::Relaxed)) > LIMIT.as_secs() as u32 {
            error!(
                "no progress for {} s: the watchdog will reset the board",
                LIMIT.as_secs()
            );
            loop {
                Timer::after(Duration::from_secs(3600)).await;
            }
        }
        pet();
        Timer::after(Duration::from_secs(1)).await;
    }
}
