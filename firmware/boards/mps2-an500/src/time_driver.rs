//! embassy-time on SysTick: an interrupt every millisecond from the 25 MHz system clock
//! (QEMU's MPS2 SYSCLK), `now` in microseconds from the millisecond count and SysTick's
//! current value; the timer queue is checked at each millisecond, so a timer fires up to
//! 1 ms late.
//!
//! The instruction figure: under `-icount shift=0` QEMU's virtual clock advances one
//! nanosecond per instruction while the CPU runs, and by the real time while it sleeps in
//! WFI. The time asleep (and the board's own reports) is summed and taken off, so
//! [`instructions`] is what the CPU executed, to SysTick's 40-instruction resolution per
//! sleep.

use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;
use critical_section::{CriticalSection, Mutex};
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// SysTick counts per millisecond at 25 MHz.
const PER_MS: u64 = 25_000;
/// SysTick counts per embassy tick (1 MHz).
const PER_TICK: u64 = 25;
/// Virtual nanoseconds (instructions under `-icount shift=0`) per SysTick count.
const NS_PER_COUNT: u64 = 40;
const ICSR_PENDSTSET: u32 = 1 << 26;

struct SysTickDriver {
    /// Milliseconds since `start`.
    ms: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
    /// The next expiration, in embassy ticks.
    alarm: Mutex<Cell<u64>>,
    /// SysTick counts spent asleep or in the board's reports.
    uncounted: Mutex<Cell<u64>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ms: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
    alarm: Mutex::new(Cell::new(u64::MAX)),
    uncounted: Mutex::new(Cell::new(0)),
});

impl SysTickDriver {
    /// SysTick counts (25 MHz) since `start`.
    fn counts(&self, cs: CriticalSection) -> u64 {
        let ms = self.ms.borrow(cs).get();
        let before = SYST::get_current();
        // SAFETY: a read of ICSR.
        let wrapped = unsafe { (*SCB::PTR).icsr.read() } & ICSR_PENDSTSET != 0;
        let after = SYST::get_current();
        // A wrap not yet counted by the interrupt (masked here): one more millisecond, and
        // the value read after it.
        if wrapped {
            (ms + 1) * PER_MS + (PER_MS - 1 - u64::from(after))
        } else {
            ms * PER_MS + (PER_MS - 1 - u64::from(before))
        }
    }

    fn check_alarm(&self, cs: CriticalSection) {
        let now = self.counts(cs) / PER_TICK;
        if now >= self.alarm.borrow(cs).get() {
            let next = self.queue.borrow(cs).borrow_mut().next_expiration(now);
            self.alarm.borrow(cs).set(next);
        }
    }
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.counts(cs) / PER_TICK)
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut queue = self.queue.borrow(cs).borrow_mut();
            if queue.schedule_wake(at, waker) {
                let now = self.counts(cs) / PER_TICK;
                let next = queue.next_expiration(now);
                self.alarm.borrow(cs).set(next);
            }
        })
    }
}

/// SysTick at 1 kHz from the processor clock, its interrupt on.
pub fn start(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload((PER_MS - 1) as u32);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let ms = DRIVER.ms.borrow(cs);
        ms.set(ms.get() + 1);
        DRIVER.check_alarm(cs);
    })
}

/// Sleeps in WFI until an interrupt, unless `pended` (a task was woken since the last
/// poll); the time asleep is not counted as instructions.
pub fn sleep_unless(pended: &AtomicBool) {
    critical_section::with(|cs| {
        if pended.swap(false, Ordering::AcqRel) {
            return;
        }
        let before = DRIVER.counts(cs);
        // With interrupts masked, WFI still wakes on a pending one; it is taken once the
        // critical section ends.
        cortex_m::asm::wfi();
        let asleep = DRIVER.counts(cs) - before;
        let uncounted = DRIVER.uncounted.borrow(cs);
        uncounted.set(uncounted.get() + asleep);
    })
}

/// Runs `f` without counting its instructions (the board's reports).
pub fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    let before = critical_section::with(|cs| DRIVER.counts(cs));
    let r = f();
    critical_section::with(|cs| {
        let spent = DRIVER.counts(cs) - before;
        let uncounted = DRIVER.uncounted.borrow(cs);
        uncounted.set(uncounted.get() + spent);
    });
    r
}

/// Instructions executed since boot, asleep and reports excluded (with `-icount shift=0`;
/// without it, nanoseconds of busy CPU at QEMU's speed).
pub fn instructions() -> u64 {
    critical_section::with(|cs| {
        (DRIVER.counts(cs) - DRIVER.uncounted.borrow(cs).get()) * NS_PER_COUNT
    })
}
