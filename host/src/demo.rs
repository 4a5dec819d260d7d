//! `demo`: both roles in one process on 127.0.0.1, the whole negotiation printed.
//!
//! A [`crate::serve::Server`] with a certificate made on the spot and one user
//! with a random password; a client that trusts that certificate's CA connects through
//! STARTTLS, SCRAM and resource binding, sends a message to its own full JID and waits
//! for it to come back. Success only when every step was seen and the body came back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::RngCore;
use xmpp_handshake_core::connection::Step;
use xmpp_handshake_core::stanza;

use crate::certs::ServerIdentity;
use crate::client::{self, ClientTrust, Login};
use crate::exit::Failure;
use crate::progress::Progress;
use crate::router::message_body;
use crate::serve::{ServeConfig, Server};
use crate::tls_info::TlsCell;
use crate::transcript::{Side, Transcript};

/// How long the whole demo may take.
pub const DEMO_TIMEOUT: Duration = Duration::from_secs(30);

/// What the demo found.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The transcript lines.
    pub transcript: Vec<String>,
    /// The one-line summary.
    pub summary: String,
    /// The bound JID.
    pub jid: String,
    /// The SASL mechanism.
    pub mechanism: String,
    /// `TLS 1.3` etc.
    pub tls_version: String,
    /// The cipher suite.
    pub cipher_suite: String,
    /// Round trips from the first byte to the bound resource.
    pub round_trips_to_bound: u32,
    /// Round trips including the message echo.
    pub round_trips_total: u32,
    /// TCP connect to bound resource.
    pub time_to_bound: Duration,
    /// TCP connect to the closed stream.
    pub time_total: Duration,
}

/// Runs the demo for `domain`, echoing `body`. Progress goes to `progress`.
pub async fn run(domain: &str, body: &str, progress: Progress) -> Result<DemoReport, Failure> {
    tokio::time::timeout(DEMO_TIMEOUT, run_inner(domain, body, progress))
        .await
        .map_err(|_| {
            Failure::protocol(format!("the demo did not finish within {DEMO_TIMEOUT:?}"))
        })?
}

async fn run_inner(
    domain: &str,
    body: &str,
    mut progress: Progress,
) -> Result<DemoReport, Failure> {
    progress.status("generating a certificate");
    let identity = ServerIdentity::generate(domain)?;
    let ca = identity
        .ca_der
        .clone()
        .ok_or_else(|| Failure::protocol("generated identity without a CA"))?;
    let mut secret = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut secret);
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let user = "juliet";
    let mut store = xmpp_handshake_core::sasl::MemoryStore::new();
    store.add_password(user, &password, 4096, &mut rand_core::OsRng);

    // The demo walks through RFC 6120's steps one by one (SASL, restart, resource
    // binding): SASL2's single exchange would hide them.
    let config = ServeConfig {
        sasl2: false,
        ..ServeConfig::new(domain, store, identity)
    };
    let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await?;
    progress.status(&format!("receiving entity listening on {}", server.addr));

    let login = Login::new(&format!("{user}@{domain}/balcony"), &password)?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| Failure::protocol(format!("trusting the generated CA: {e}")))?;
    let trust = ClientTrust::anchors(domain, roots)?;

    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    transcript.redact_secret(&password);
    transcript.with_progress(progress);

    let started = Instant::now();
    let transport = client::connect_tcp("127.0.0.1", server.addr.port()).await?;
    let logged_in = client::login(transport, &login, &trust, cell, &mut transcript).await?;
    let time_to_bound = started.elapsed();
    let round_trips_to_bound = transcript.round_trips();
    let mut session = logged_in.session;
    let jid = logged_in.jid.clone();

    // Every step really happened.
    let seen = |step: Step| transcript.steps().iter().any(|(s, _)| *s == step);
    for (step, what) in [
        (Step::TlsEstablished, "TLS"),
        (Step::Authenticated, "SASL success"),
        (Step::Bound, "resource binding"),
    ] {
        if !seen(step) {
            return Err(Failure::protocol(format!(
                "negotiation ended without {what}"
            )));
        }
    }
    let mechanism = session
        .outcome()
        .mechanism
        .map(|m| m.name().to_string())
        .ok_or_else(|| Failure::protocol("no SASL mechanism was used"))?;
    let tls = transcript
        .tls()
        .cloned()
        .ok_or_else(|| Failure::protocol("no TLS handshake was recorded"))?;

    let id = "demo-1";
    let message = stanza::message(&jid, body, Some(id));
    client::send(&mut session, &mut transcript, &message).await?;
    loop {
        match client::receive(&mut session, &mut transcript).await? {
            Some(element) => {
                if let Some((from, text)) = message_body(&element) {
                    if text == body && from.as_deref() == Some(jid.as_str()) {
                        break;
                    }
                }
            }
            None => {
                return Err(Failure::protocol(
                    "the server closed the stream before the message came back",
                ))
            }
        }
    }
    transcript.stanza_sent("</stream:stream>");
    session
        .close()
        .await
        .map_err(|e| crate::exit::from_library(&e))?;
    transcript.stanza_received("</stream:stream>");
    let time_total = started.elapsed();
    let round_trips_total = transcript.round_trips();
    if let Some(mut p) = transcript.take_progress() {
        p.finish();
    }
    drop(server);

    let summary = format!(
        "OK {jid}: {mechanism}, {} {}, {round_trips_to_bound} round trips to a bound resource \
         ({round_trips_total} with the message and close), {:.1} ms to bound, {:.1} ms in all",
        tls.version,
        tls.cipher_suite,
        time_to_bound.as_secs_f64() * 1000.0,
        time_total.as_secs_f64() * 1000.0,
    );
    Ok(DemoReport {
        transcript: transcript.lines(),
        summary,
        jid,
        mechanism,
        tls_version: tls.version,
        cipher_suite: tls.cipher_suite,
        round_trips_to_bound,
        round_trips_total,
        time_to_bound,
        time_total,
    })
}
