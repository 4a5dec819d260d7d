//! Link scripts, and the configuration and trust anchor (`XMPP_CA`) into the image.

fn main() {
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    println!("cargo:rustc-link-arg-bins=--icf=all");
    xmpp_handshake_firmware_build::embed_config(&[]);
}
