//! Link scripts; the configuration and trust anchor (`XMPP_CA`) into the image; the
//! network settings (`NET_ADDR`, `NET_GATEWAY`, `NET_DNS`) checked; the TEST-ONLY random
//! seed (`MPS2_TEST_ONLY_SEED`, 64 hex digits, or fresh bytes of the build machine).

use std::net::Ipv4Addr;
use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    // Identical code folding: functions and read-only data with the same bytes are kept
    // once (generic code that compiles to the same instructions for different types; Rust
    // promises no distinct addresses for distinct functions). 1.8 KB less flash on the
    // F767 (docs/firmware-size.md); the emulated board (tests/tests/firmware_qemu.rs) runs
    // an image linked the same way.
    println!("cargo:rustc-link-arg-bins=--icf=all");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::copy("memory.x", out.join("memory.x")).expect("memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    xmpp_handshake_firmware_build::embed_config(&[]);

    for var in [
        "NET_ADDR",
        "NET_GATEWAY",
        "NET_DNS",
        "MPS2_TEST_ONLY_SEED",
        "MPS2_REPORT_MS",
        "MPS2_SOAK",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(addr) = set("NET_ADDR") {
        let ok = addr.split_once('/').is_some_and(|(a, len)| {
            a.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
        });
        assert!(ok, "NET_ADDR: {addr:?}: expected a.b.c.d/len (unset: DHCP)");
    }
    for name in ["NET_GATEWAY", "NET_DNS"] {
        if let Some(v) = set(name) {
            assert!(
                v.parse::<Ipv4Addr>().is_ok(),
                "{name}: {v:?}: expected a.b.c.d"
            );
        }
    }
    if let Some(ms) = set("MPS2_REPORT_MS") {
        assert!(
            ms.parse::<u64>().is_ok(),
            "MPS2_REPORT_MS: {ms:?}: expected milliseconds"
        );
    }
    let seed: Vec<u8> = match set("MPS2_TEST_ONLY_SEED") {
        Some(hex) => {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            match bytes {
                Some(b) if b.len() == 32 => b,
                _ => panic!("MPS2_TEST_ONLY_SEED: expected 64 hex digits"),
            }
        }
        None => {
            let mut b = vec![0; 32];
            use std::io::Read;
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut b))
                .expect("reading the build machine's random bytes for the test-only seed");
            b
        }
    };
    std::fs::write(out.join("test-only-seed.bin"), seed).expect("seed");
}
