//! The trust anchor from `XMPP_CA` (a DER or PEM file) into the image.

use std::path::PathBuf;

fn main() {
    // Link scripts (linkall.x, defmt.x) are set in .cargo/config.toml.
    for var in [
        "XMPP_JID",
        "XMPP_PASSWORD",
        "XMPP_SERVER",
        "XMPP_CA",
        "XMPP_REPORT_TO",
        "XMPP_PERIOD_MS",
        "WIFI_SSID",
        "WIFI_PASSWORD",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("ca.der");
    let der = match std::env::var("XMPP_CA") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("XMPP_CA {path}: {e}"));
            pem_to_der(bytes)
        }
        Err(_) => {
            println!(
                "cargo:warning=XMPP_CA is not set: no trust anchor, the device will refuse \
                 every server certificate"
            );
            Vec::new()
        }
    };
    std::fs::write(out, der).unwrap();
}

fn pem_to_der(bytes: Vec<u8>) -> Vec<u8> {
    let Ok(text) = String::from_utf8(bytes.clone()) else {
        return bytes;
    };
    let Some(body) = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|b| b.split("-----END CERTIFICATE-----").next())
    else {
        return bytes;
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in body
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("XMPP_CA: not a PEM certificate"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
