//! TEST ONLY: the AN500 has no random number generator. The TLS handshake's keys and
//! SCRAM's nonce come from ChaCha20 seeded with `MPS2_TEST_ONLY_SEED`, fixed when the image
//! was built (build.rs: 64 hex digits, or fresh bytes from the build machine), mixed with
//! the boot count so that a reset does not repeat the previous boot's numbers. Anyone
//! holding the image can predict every key it makes: never do this on a real board (the
//! F767 and ESP32-C3 crates use their hardware RNGs).

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

static SEED: &[u8; 32] = include_bytes!(concat!(env!("OUT_DIR"), "/test-only-seed.bin"));

/// The test-only generator for boot number `boots`.
pub fn test_only_rng(boots: u32) -> ChaCha20Rng {
    let mut seed = *SEED;
    for (s, b) in seed.iter_mut().zip(boots.to_le_bytes()) {
        *s ^= b;
    }
    ChaCha20Rng::from_seed(seed)
}
