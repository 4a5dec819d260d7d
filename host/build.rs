//! Linker arguments for the `xmpp-handshake` binary on x86_64 Linux with glibc (where
//! rustc links with its LLD), both about a login's peak RSS (README, Performance), most of which
//! is the pages of the binary that it touches:
//! - packed relative relocations (DT_RELR, glibc ≥ 2.36): the loader reads a few KiB of
//!   relocations at start instead of a table of ~200 KiB;
//! - `hot-symbols.txt` (written by `host/hot-symbols`) as the symbol ordering file: the
//!   functions a login runs are placed together instead of across 5 MiB of code. Names
//!   that are not in the binary are skipped: a stale list only costs memory.
fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if (
        target("CARGO_CFG_TARGET_ARCH"),
        target("CARGO_CFG_TARGET_OS"),
        target("CARGO_CFG_TARGET_ENV"),
    ) != ("x86_64".into(), "linux".into(), "gnu".into())
    {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let order = std::path::Path::new(&dir).join("hot-symbols.txt");
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
