//! Runs a command with real servers for the browser unit tests of the wasm crate
//! (`wasm/tests/`), which cannot start processes themselves:
//!
//! ```text
//! wasm-test-servers -- cargo test -p xmpp-handshake-wasm --target wasm32-unknown-unknown
//! ```
//!
//! Starts a Prosody (the harness's defaults: STARTTLS required, mod_websocket with
//! `consider_websocket_secure`, users alice and bob), passes where to find it in
//! `XH_WASM_*` environment variables (the tests read them at compile time), runs the
//! command, stops the server, and exits with the command's status.

use std::process::{Command, ExitCode};

use xmpp_handshake_tests::{Prosody, ProsodyOptions, TestPki};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: wasm-test-servers -- COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let prosody = match Prosody::start(ProsodyOptions::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wasm-test-servers: cannot start Prosody: {e}");
            return ExitCode::from(1);
        }
    };
    // A second certificate for the same domain with another key: the changed-key case.
    let other = match TestPki::generate(&prosody.domain) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wasm-test-servers: cannot generate a certificate: {e}");
            return ExitCode::from(1);
        }
    };
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
        ("XH_WASM_OTHER_LEAF_PEM", other.chain_pem()),
    ];
    for (name, value) in &vars {
        if !name.ends_with("_PEM") {
            eprintln!("wasm-test-servers: {name}={value}");
        }
    }
    let status = Command::new(program).args(rest).envs(vars).status();
    drop(prosody);
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
