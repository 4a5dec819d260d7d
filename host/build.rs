//! Linker arguments for the `xmpp-handshake` binary on x86_64 Linux with glibc, when rustc
//! links with its own LLD (the default there since Rust 1.90; not with a linker configured
//! by the user), both about a login's peak RSS (README, Performance), most of which is
//! the pages of the binary that it touches:
//! - packed relative relocations (DT_RELR, glibc ≥ 2.36): the loader reads a few KiB of
//!   relocations at start instead of a table of ~200 KiB;
//! - `hot-symbols.txt` (written by `host/hot-symbols`) as the symbol ordering file: the
//!   functions a login runs are placed together instead of across 5 MiB of code. Names
//!   that are not in the binary are skipped: a stale list only costs memory.
fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    if (
        target("CARGO_CFG_TARGET_ARCH"),
        target("CARGO_CFG_TARGET_OS"),
        target("CARGO_CFG_TARGET_ENV"),
    ) != ("x86_64".into(), "linux".into(), "gnu".into())
        || std::env::var_os("RUSTC_LINKER").is_some()
        || !rustc_links_with_lld()
    {
        return;
    }
    // The linker gets a copy in OUT_DIR, not the source path: cargo reuses this script's
    // output for another checkout sharing the target dir (the list's mtime unchanged), and
    // a path into a checkout that is gone would fail the link.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let order = std::path::Path::new(&out).join("hot-symbols.txt");
    if std::fs::copy(std::path::Path::new(&dir).join("hot-symbols.txt"), &order).is_err() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Rust ≥ 1.90 (x86_64 Linux links with rust-lld from then on; older ones call the
/// system linker, which may not know these options).
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
