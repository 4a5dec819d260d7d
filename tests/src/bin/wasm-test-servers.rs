//! Runs a command with real servers for the browser unit tests of the wasm crate
//! (`wasm/tests/`), which cannot start processes themselves:
//!
//! ```text
//! wasm-test-servers -- cargo test -p xmpp-handshake-wasm --target wasm32-unknown-unknown
//! ```
//!
//! Starts two Prosodys for the same domain with different keys (the harness's defaults:
//! STARTTLS required, mod_websocket with `consider_websocket_secure`, users alice and bob)
//! and the host's WebSocket-to-TCP bridge allowed to reach both C2S ports, passes where to
//! find them in `XH_WASM_*` environment variables (the tests read them at compile time),
//! runs the command, stops everything, and exits with the command's status.

use std::process::{Command, ExitCode};
use std::sync::mpsc;

use xmpp_handshake_core::trust::Fingerprint;
use xmpp_handshake_host::bridge::{self, Bridge, BridgeConfig, Target};
use xmpp_handshake_tests::{Prosody, ProsodyOptions};

/// Starts the bridge on an ephemeral loopback port in a thread of its own; its port.
fn start_bridge(allow: Vec<Target>) -> std::io::Result<u16> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return drop(tx.send(Err(e))),
        };
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => return drop(tx.send(Err(e))),
            };
            let port = listener.local_addr().map(|a| a.port());
            let _ = tx.send(port);
            let router = bridge::router(Bridge::new(BridgeConfig::new(allow)));
            if let Err(e) = bridge::serve(listener, router).await {
                eprintln!("wasm-test-servers: bridge: {e}");
            }
        });
    });
    rx.recv()
        .map_err(|_| std::io::Error::other("the bridge thread ended"))?
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: wasm-test-servers -- COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let start = || Prosody::start(ProsodyOptions::default());
    let (prosody, other) = match (start(), start()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("wasm-test-servers: cannot start Prosody: {e}");
            return ExitCode::from(1);
        }
    };
    let target = |p: &Prosody| Target {
        host: "127.0.0.1".into(),
        port: p.ports.c2s,
    };
    let bridge = match start_bridge(vec![target(&prosody), target(&other)]) {
        Ok(port) => port,
        Err(e) => {
            eprintln!("wasm-test-servers: cannot start the bridge: {e}");
            return ExitCode::from(1);
        }
    };
    let tunnel = |p: &Prosody| format!("ws://127.0.0.1:{bridge}/bridge?target={}", target(p));
    let alice = &prosody.users[0];
    let bob = &prosody.users[1];
    let vars = [
        ("XH_WASM_WS_URL", prosody.websocket_url()),
        ("XH_WASM_DOMAIN", prosody.domain.clone()),
        ("XH_WASM_USER", alice.name.clone()),
        ("XH_WASM_PASSWORD", alice.password.clone()),
        ("XH_WASM_USER2", bob.name.clone()),
        ("XH_WASM_PASSWORD2", bob.password.clone()),
        ("XH_WASM_CA_PEM", prosody.pki.ca_pem.clone()),
        ("XH_WASM_LEAF_PEM", prosody.pki.chain_pem()),
        // SHA-256 of the leaves, computed here, to check what the page reports.
        (
            "XH_WASM_LEAF_SHA256",
            Fingerprint::of(&prosody.pki.leaf_der).to_string(),
        ),
        (
            "XH_WASM_OTHER_LEAF_SHA256",
            Fingerprint::of(&other.pki.leaf_der).to_string(),
        ),
        ("XH_WASM_TUNNEL_URL", tunnel(&prosody)),
        // The same domain with another key: the changed-key case.
        ("XH_WASM_OTHER_LEAF_PEM", other.pki.chain_pem()),
        ("XH_WASM_OTHER_TUNNEL_URL", tunnel(&other)),
    ];
    for (name, value) in &vars {
        if !name.ends_with("_PEM") {
            eprintln!("wasm-test-servers: {name}={value}");
        }
    }
    let status = Command::new(program).args(rest).envs(vars).status();
    drop(prosody);
    drop(other);
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("wasm-test-servers: {program} failed: {s}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("wasm-test-servers: cannot run {program}: {e}");
            ExitCode::from(1)
        }
    }
}
