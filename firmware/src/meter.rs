//! An instruction counter a board may install, for the cost of a login in instructions:
//! the energy figure a battery device cares about. The emulated MPS2 board
//! (`boards/mps2-an500`, QEMU with `-icount shift=0`) installs one; real boards have none
//! (the Cortex-M7's DWT cycle counter counts cycles, not instructions, and is not wired
//! here), and the app then logs no figure.

use core::sync::atomic::{AtomicPtr, Ordering};

static COUNTER: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs `counter`: instructions the CPU executed since boot, idle time excluded. The
/// app logs `login: N instructions` for each login, from the TCP connect to the bound
/// resource.
pub fn install(counter: fn() -> u64) {
    COUNTER.store(counter as *mut (), Ordering::Relaxed);
}

/// The installed counter's reading, if a board installed one.
pub fn instructions() -> Option<u64> {
    let p = COUNTER.load(Ordering::Relaxed);
    if p.is_null() {
        return None;
    }
    // SAFETY: only `install` stores here, and it stores a `fn() -> u64`.
    let counter: fn() -> u64 = unsafe { core::mem::transmute::<*mut (), fn() -> u64>(p) };
    Some(counter())
}
