//! The configuration and trust anchor (`XMPP_CA`) into the image. Link scripts
//! (linkall.x, defmt.x) are set in .cargo/config.toml.

fn main() {
    xmpp_handshake_firmware_build::embed_config(&xmpp_handshake_firmware_build::WIFI_ENV);
}
