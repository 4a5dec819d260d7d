//! Link scripts, and the configuration and trust anchor (`XMPP_CA`) into the image.

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
    xmpp_handshake_firmware_build::embed_config(&[]);
}
