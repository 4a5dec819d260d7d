//! The emulated flash: the 2 MiB at the start of SSRAM1 that `memory.x` calls FLASH. QEMU
//! loads the image there and writes it back on a reset; the rest keeps what was written,
//! as flash does. The SCRAM cache lives in its last 256 KiB (the F767's sector 11), a
//! boot counter just below it.

use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, Ordering};

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

const SIZE: usize = 2048 * 1024;
/// The boot counter's word (below the cache sector, far above the image).
const BOOTS: usize = 0x1B_FFF0;
/// A counter that has never been written (SSRAM starts zeroed in QEMU) is offset by this
/// mark, so that zeroed memory reads as "no boot yet".
const BOOTS_MARK: u32 = 0xB007_0000;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The emulated flash as NOR flash: erase sets bytes to 0xff, a write clears bits.
pub struct EmulatedFlash(());

impl EmulatedFlash {
    /// The flash, once.
    pub fn take() -> Option<Self> {
        (!TAKEN.swap(true, Ordering::AcqRel)).then_some(EmulatedFlash(()))
    }
}

fn at(offset: usize) -> *mut u8 {
    // Offset 0 is the vector table: never handed out (the store's region starts at 1.75 MiB).
    offset as *mut u8
}

impl ErrorType for EmulatedFlash {
    type Error = Infallible;
}

impl ReadNorFlash for EmulatedFlash {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Infallible> {
        for (i, b) in bytes.iter_mut().enumerate() {
            // SAFETY: inside the emulated flash, outside the image (the store's region).
            *b = unsafe { core::ptr::read_volatile(at(offset as usize + i)) };
        }
        Ok(())
    }
    fn capacity(&self) -> usize {
        SIZE
    }
}

impl NorFlash for EmulatedFlash {
    const WRITE_SIZE: usize = 4;
    /// The F767's sector 11.
    const ERASE_SIZE: usize = 256 * 1024;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Infallible> {
        for o in from as usize..to as usize {
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile(at(o), 0xff) };
        }
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Infallible> {
        for (i, b) in bytes.iter().enumerate() {
            let p = at(offset as usize + i);
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile(p, core::ptr::read_volatile(p) & b) };
        }
        Ok(())
    }
}

/// Counts this boot in the emulated flash and returns the count (1 for the first boot
/// since QEMU started): it survives resets, so every boot's random numbers differ.
pub fn count_boot() -> u32 {
    let p = BOOTS as *mut u32;
    // SAFETY: the boot counter's word, outside the image and the store's region.
    unsafe {
        let old = core::ptr::read_volatile(p);
        let boots = if old & 0xffff_0000 == BOOTS_MARK {
            (old & 0xffff) + 1
        } else {
            1
        };
        core::ptr::write_volatile(p, BOOTS_MARK | (boots & 0xffff));
        boots
    }
}
