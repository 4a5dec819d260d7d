//! Shared by the interop suites: our client (the CLI's code) against a harness server.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use xmpp_handshake_core::sasl::{CbPolicy, Mechanism};
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::starttls::TlsPolicy;
use xmpp_handshake_core::Error;
use xmpp_handshake_host::client::{self, ClientTrust, LoggedIn, Login};
use xmpp_handshake_host::router::message_body;
use xmpp_handshake_host::tls_info::TlsCell;
use xmpp_handshake_host::transcript::{Side, Transcript};
use xmpp_handshake_tests::ServerInfo;

/// Every interop step is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(30);

pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async { tokio::time::timeout(LIMIT, f).await.expect("in time") })
}

/// Trust the harness CA for the server's domain.
pub fn trust(s: &ServerInfo) -> ClientTrust {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.ca_der().to_vec().into()).unwrap();
    ClientTrust::anchors(&s.domain, roots).unwrap()
}

/// How a login is set up.
#[derive(Clone, Copy, Debug)]
pub struct How {
    pub tls: TlsPolicy,
    pub cb: CbPolicy,
    pub tls12: bool,
    /// `<auth/>` pipelined with the post-TLS header, with this mechanism.
    pub pipeline: Option<Mechanism>,
    /// Direct TLS (XEP-0368) to the server's `c2s_direct_tls` port instead of STARTTLS.
    pub direct_tls: bool,
}

impl Default for How {
    fn default() -> Self {
        How {
            tls: TlsPolicy::Required,
            cb: CbPolicy::WhenOffered,
            tls12: false,
            pipeline: None,
            direct_tls: false,
        }
    }
}

/// A login attempt and its transcript.
pub struct Attempt {
    pub result: Result<LoggedIn, Error>,
    pub transcript: Transcript,
}

impl Attempt {
    /// The SASL mechanisms the server offered on the protected stream.
    pub fn offered(&self) -> Vec<String> {
        let line = self
            .transcript
            .lines()
            .into_iter()
            .find(|l| l.starts_with("R: ") && l.contains("<mechanisms"))
            .unwrap_or_default();
        line.split("<mechanism>")
            .skip(1)
            .filter_map(|p| p.split("</mechanism>").next())
            .map(str::to_string)
            .collect()
    }

    /// The mechanism in our `<auth>`.
    pub fn used(&self) -> Option<String> {
        let line = self
            .transcript
            .lines()
            .into_iter()
            // The last <auth/>: a refused pipelined one is followed by the real choice.
            .rfind(|l| l.starts_with("I: <auth"))?;
        let start = line.find("mechanism='")? + "mechanism='".len();
        Some(line[start..].split('\'').next()?.to_string())
    }

    pub fn dump(&self) -> String {
        self.transcript.lines().join("\n")
    }

    pub fn ok(self) -> LoggedIn {
        let dump = self.dump();
        self.result
            .unwrap_or_else(|e| panic!("login failed: {e:?}\n{dump}"))
    }
}

/// Logs in as `name@domain/resource` with `password` to the server's c2s port (or its
/// Direct TLS port).
pub async fn login(
    s: &ServerInfo,
    name: &str,
    password: &str,
    resource: &str,
    how: How,
) -> Attempt {
    let mut l = Login::new(&format!("{name}@{}/{resource}", s.domain), password).unwrap();
    l.tls = how.tls;
    l.sasl.channel_binding = how.cb;
    l.pipeline_mechanism = how.pipeline;
    let mut trust = trust(s);
    if how.tls12 {
        trust = trust.tls12_only().unwrap();
    }
    let port = if how.direct_tls {
        s.ports.c2s_direct_tls
    } else {
        s.ports.c2s
    };
    let transport = client::connect_tcp("127.0.0.1", port).await.unwrap();
    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    transcript.redact_secret(password);
    let result = if how.direct_tls {
        client::login_direct_tls_typed(transport, &l, &trust, cell, &mut transcript).await
    } else {
        client::login_typed(transport, &l, &trust, cell, &mut transcript).await
    };
    Attempt { result, transcript }
}

/// `from` sends a message to `to`'s full JID; `to` must receive it with `from` stamped.
pub async fn exchange(from: &mut LoggedIn, to: &mut LoggedIn, body: &str) {
    from.session
        .send(&stanza::message(&to.jid, body, Some("interop-1")))
        .await
        .unwrap();
    loop {
        let element = to
            .session
            .next_stanza()
            .await
            .unwrap()
            .expect("stream still open");
        if let Some((sender, text)) = message_body(element.raw()) {
            if text == body {
                assert_eq!(sender.as_deref(), Some(from.jid.as_str()), "{element}");
                return;
            }
        }
    }
}

/// Closes both ways (§4.4).
pub async fn close(l: LoggedIn) {
    l.session.close().await.unwrap();
}
