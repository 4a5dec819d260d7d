//! The second client of the firmware suites (host build over TAP, the emulated board):
//! bob, logged in with the host's rustls stack, who watches what the device sends; and a
//! Prosody restart that keeps its data, for the device's reconnect from the SCRAM cache.

use std::time::Duration;

use xmpp_handshake_core::connection::{ConnectionOptions, InitiatingConnection};
use xmpp_handshake_core::driver::{self, Clock as _, MaybeTls};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::sasl::{Credentials, SaslPolicy};
use xmpp_handshake_core::stanza;
use xmpp_handshake_host::clock::TokioClock;
use xmpp_handshake_host::transport::connect;
use xmpp_handshake_host::upgrade::RustlsClient;
use xmpp_handshake_tokio::BoundStream;

use crate::process::{RunAs, ServerProcess};
use crate::{Prosody, ServerInfo};

/// Runs `f` on a current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The second client: bob, with the host's rustls stack, over 127.0.0.1 in the namespace.
pub async fn bob(server: &ServerInfo) -> BoundStream {
    let user = server.user(1);
    let mut config = InitiatorConfig::client(&server.domain);
    config.sasl = Some(ClientSasl {
        credentials: Credentials::password(&user.name, &user.password),
        policy: SaslPolicy::default(),
        resource: Some("observer".into()),
        pipeline_mechanism: None,
        pipeline_offer: None,
        pipeline_bind: true,
        sasl2: Default::default(),
    });
    let transport = connect(server.c2s_addr()).await.expect("bob connects");
    let mut tls = RustlsClient::new(server.tls_client_config());
    let connection = InitiatingConnection::initiate(
        config,
        rand_core::OsRng,
        ConnectionOptions::default(),
        TokioClock.now(),
    );
    let mut connection = connection;
    let mut io = MaybeTls::Plain(transport);
    let outcome = driver::negotiate(&mut io, &mut tls, &mut connection, &mut (), &TokioClock)
        .await
        .expect("bob logs in");
    let session = BoundStream::spawn(io, connection, outcome, 1024).expect("bob's stream");
    session.send(&stanza::presence(None)).await.unwrap();
    session
}

/// The next message whose text contains `needle`, within `limit`.
pub async fn message_containing(
    session: &mut BoundStream,
    needle: &str,
    limit: Duration,
) -> String {
    let wait = async {
        loop {
            let element = session
                .next_stanza()
                .await
                .expect("bob's stream")
                .expect("bob's stream stays open")
                .to_string();
            if element.starts_with("<message") && element.contains(needle) {
                return element;
            }
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .unwrap_or_else(|_| panic!("bob got no message with {needle:?} within {limit:?}"))
}

/// Stops `server` and starts it again on the same config and data (accounts, the device's
/// SCRAM salt kept); the new process, ready for connections.
pub fn restart(server: &mut Prosody) -> ServerProcess {
    server.stop();
    let run_as = RunAs::system_user("prosody").expect("prosody user");
    let mut cmd = run_as.command("prosody");
    cmd.arg("-F")
        .arg("--config")
        .arg(&server.config_path)
        .current_dir(&server.dir);
    let mut process = ServerProcess::spawn("prosody", cmd, &server.console_log_path, None)
        .expect("prosody restarts");
    process
        .wait_ready(&[server.c2s_addr()], Duration::from_secs(30))
        .expect("prosody accepts connections again");
    process
}
