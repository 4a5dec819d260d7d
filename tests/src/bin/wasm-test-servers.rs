//! Runs a command with real servers for the browser unit tests of the wasm crate
//! (`wasm/tests/`), which cannot start processes themselves:
//!
//! ```text
//! wasm-test-servers -- cargo test -p xmpp-handshake-wasm --target wasm32-unknown-unknown
//! ```
//!
//! Starts two Prosodys for the same domain with different keys (the harness's defaults:
//! STARTTLS required, mod_websocket with `consider_websocket_secure`, users alice and bob),
//! a third with `mod_smacks` (XEP-0198) reached through two proxies a page can cut (its
//! WebSocket endpoint and its C2S port; a connection to a proxy's cut port closes the
//! proxy's newest connection on both sides), our own receiving entity, and the host's
//! WebSocket-to-TCP bridge allowed to reach the C2S ports; passes where to find them in `XH_WASM_*` environment variables (the
//! tests read them at compile time), runs the command, stops everything, and exits with
//! the command's status.

use std::process::{Command, ExitCode};
use std::sync::mpsc;

use rand_core::OsRng;

use xmpp_handshake_core::sasl::MemoryStore;
use xmpp_handshake_core::trust::Fingerprint;
use xmpp_handshake_host::bridge::{self, Bridge, BridgeConfig, Target};
use xmpp_handshake_host::certs::ServerIdentity;
use xmpp_handshake_host::serve::{ServeConfig, Server};
use xmpp_handshake_tests::proxy::CutProxy;
use xmpp_handshake_tests::{Prosody, ProsodyOptions};

/// Where the in-process servers listen.
struct InProcess {
    /// The bridge's port.
    bridge: u16,
    /// Our own receiving entity (`serve`): its C2S port and its CA (PEM).
    serve: u16,
    serve_ca: String,
    /// The proxy in front of the smacks Prosody's WebSocket endpoint, and its cut port.
    ws_proxy: u16,
    ws_cut: u16,
    /// The proxy in front of its C2S port (the bridge's target), and its cut port.
    c2s_proxy: u16,
    c2s_cut: u16,
}

/// A [`CutProxy`] to `upstream` and a port that cuts its newest connection whenever a
/// connection to it is accepted (a page opens a WebSocket there; it fails, the cut is
/// done): `(proxy port, cut port)`. Both run as long as the current runtime.
async fn cuttable(upstream: std::net::SocketAddr) -> Result<(u16, u16), String> {
    let proxy = CutProxy::start(upstream).await.map_err(|e| e.to_string())?;
    let control = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let ports = (
        proxy.addr.port(),
        control.local_addr().map_err(|e| e.to_string())?.port(),
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = control.accept().await {
            proxy.cut();
            drop(stream);
        }
    });
    Ok(ports)
}

/// Starts, in a thread of its own, the bridge (allowed to reach `allow` and our server) and
/// our receiving entity (SCRAM `-PLUS` with `tls-server-end-point`, which Prosody does not
/// offer on TLS 1.3), both on ephemeral loopback ports.
fn start_in_process(
    mut allow: Vec<Target>,
    user: (String, String),
    smacks: (std::net::SocketAddr, std::net::SocketAddr),
) -> Result<InProcess, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => return drop(tx.send(Err(e.to_string()))),
        };
        runtime.block_on(async move {
            let started = async {
                let identity = ServerIdentity::generate("localhost").map_err(|e| e.message)?;
                let serve_ca = identity.ca_pem.clone().unwrap_or_default();
                let mut store = MemoryStore::new();
                store.add_password(&user.0, &user.1, 4096, &mut OsRng);
                let config = ServeConfig::new("localhost", store, identity);
                let server = Server::start(([127, 0, 0, 1], 0).into(), config)
                    .await
                    .map_err(|e| e.message)?;
                allow.push(Target {
                    host: "127.0.0.1".into(),
                    port: server.addr.port(),
                });
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| e.to_string())?;
                let bridge = listener.local_addr().map_err(|e| e.to_string())?.port();
                let serve = server.addr.port();
                let (ws_proxy, ws_cut) = cuttable(smacks.0).await?;
                let (c2s_proxy, c2s_cut) = cuttable(smacks.1).await?;
                allow.push(Target {
                    host: "127.0.0.1".into(),
                    port: c2s_proxy,
                });
                Ok::<_, String>((
                    server,
                    listener,
                    InProcess {
                        bridge,
                        serve,
                        serve_ca,
                        ws_proxy,
                        ws_cut,
                        c2s_proxy,
                        c2s_cut,
                    },
                ))
            };
            match started.await {
                Ok((_server, listener, ports)) => {
                    let _ = tx.send(Ok(ports));
                    // The test pages come from the wasm-bindgen-test runner, another origin.
                    let mut config = BridgeConfig::new(allow);
                    config.origins = bridge::Origins::Any;
                    let router = bridge::router(Bridge::new(config));
                    if let Err(e) = bridge::serve(listener, router).await {
                        eprintln!("wasm-test-servers: bridge: {e}");
                    }
                }
                Err(e) => drop(tx.send(Err(e))),
            }
        });
    });
    rx.recv()
        .map_err(|_| "the server thread ended".to_string())?
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: wasm-test-servers -- COMMAND [ARGS...]");
        return ExitCode::from(2);
    };
    let start = || Prosody::start(ProsodyOptions::default());
    let smacks = || {
        Prosody::start(ProsodyOptions {
            extra_host_config: "  modules_enabled = { \"smacks\" }\n".into(),
            ..ProsodyOptions::default()
        })
    };
    let (prosody, other, smacks) = match (start(), start(), smacks()) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("wasm-test-servers: cannot start Prosody: {e}");
            return ExitCode::from(1);
        }
    };
    let target = |p: &Prosody| Target {
        host: "127.0.0.1".into(),
        port: p.ports.c2s,
    };
    let alice = &prosody.users[0];
    let in_process = match start_in_process(
        vec![target(&prosody), target(&other)],
        (alice.name.clone(), alice.password.clone()),
        (
            ([127, 0, 0, 1], smacks.ports.http).into(),
            smacks.c2s_addr(),
        ),
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wasm-test-servers: cannot start the bridge and serve: {e}");
            return ExitCode::from(1);
        }
    };
    let bridge = in_process.bridge;
    let tunnel = |p: &Prosody| format!("ws://127.0.0.1:{bridge}/bridge?target={}", target(p));
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
        // Our receiving entity (domain localhost, user alice), through the same bridge.
        (
            "XH_WASM_SERVE_TUNNEL_URL",
            format!(
                "ws://127.0.0.1:{bridge}/bridge?target=127.0.0.1:{}",
                in_process.serve
            ),
        ),
        ("XH_WASM_SERVE_CA_PEM", in_process.serve_ca.clone()),
        // Prosody with mod_smacks through the proxies (same domain, its own accounts).
        (
            "XH_WASM_SM_WS_URL",
            format!("ws://127.0.0.1:{}/xmpp-websocket", in_process.ws_proxy),
        ),
        (
            "XH_WASM_SM_CUT_WS_URL",
            format!("ws://127.0.0.1:{}/", in_process.ws_cut),
        ),
        (
            "XH_WASM_SM_TUNNEL_URL",
            format!(
                "ws://127.0.0.1:{bridge}/bridge?target=127.0.0.1:{}",
                in_process.c2s_proxy
            ),
        ),
        (
            "XH_WASM_SM_CUT_TUNNEL_URL",
            format!("ws://127.0.0.1:{}/", in_process.c2s_cut),
        ),
        // The second user's own way in, not through a proxy.
        ("XH_WASM_SM_DIRECT_WS_URL", smacks.websocket_url()),
        ("XH_WASM_SM_PASSWORD", smacks.users[0].password.clone()),
        ("XH_WASM_SM_PASSWORD2", smacks.users[1].password.clone()),
        ("XH_WASM_SM_CA_PEM", smacks.pki.ca_pem.clone()),
    ];
    for (name, value) in &vars {
        if !name.ends_with("_PEM") {
            eprintln!("wasm-test-servers: {name}={value}");
        }
    }
    let status = Command::new(program).args(rest).envs(vars).status();
    drop(prosody);
    drop(other);
    drop(smacks);
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
