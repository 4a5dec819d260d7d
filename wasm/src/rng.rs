//! Randomness for SCRAM nonces and the TLS key share: the browser's
//! `crypto.getRandomValues` (through `getrandom`'s `wasm_js` backend).

use core::num::NonZeroU32;

use rand_core::{CryptoRng, RngCore};

/// The browser's cryptographic RNG. [`BrowserRng::check`] it once before use: after a
/// successful check a failure is not expected, and one would end the page's module.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrowserRng;

impl BrowserRng {
    /// Whether the browser gives randomness at all (no `crypto` in some embedded contexts).
    pub fn check() -> Result<Self, getrandom::Error> {
        let mut probe = [0u8; 16];
        getrandom::fill(&mut probe)?;
        Ok(BrowserRng)
    }
}

impl RngCore for BrowserRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if let Err(e) = getrandom::fill(dest) {
            // Checked at connect; failing later leaves no safe way to go on.
            panic!("crypto.getRandomValues failed: {e}");
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        // rand_core 0.6 errors carry a code only: report "custom error" (getrandom's own
        // code is not of rand_core's kind).
        let custom = NonZeroU32::MIN.saturating_add(rand_core::Error::CUSTOM_START - 1);
        getrandom::fill(dest).map_err(|_| rand_core::Error::from(custom))
    }
}

impl CryptoRng for BrowserRng {}
