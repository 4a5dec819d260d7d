//! The host build refuses to start without its configuration, with a message naming what is
//! missing (and, as an integration test, makes cargo build the binary that
//! tests/tests/firmware_tap.rs runs).

use std::process::Command;

#[test]
fn names_the_missing_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_xmpp-firmware-host"))
        .env_clear()
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("XMPP_JID: not set"), "{stderr}");
}
