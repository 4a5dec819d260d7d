//! `connect JID`: log in to a real server; send one message or stay online.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use xmpp_handshake_core::sasl::CbPolicy;
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::starttls::TlsPolicy;

use crate::cli::{ChannelBinding, ConnectArgs, TlsMode};
use crate::client::{self, ClientTrust, Login};
use crate::exit::{ExitCode, Failure};
use crate::pins::{self, FilePinStore};
use crate::progress::{Progress, Style};
use crate::resolve::{self, SrvResolver, SystemResolver};
use crate::tls::verify::{platform_roots, roots_from_pem};
use crate::tls_info::TlsCell;
use crate::transcript::{Side, Transcript};

/// The environment variable holding the password.
pub const PASSWORD_ENV: &str = "XMPP_PASSWORD";

/// How long to wait for the server's closing tag after `--send`.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The password: `XMPP_PASSWORD`, else a prompt on the terminal.
pub fn password(jid: &str) -> Result<String, Failure> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    // Prompt only when the user is at a terminal: a script or a test with no input gets a
    // clear error instead of a prompt that blocks on the controlling terminal.
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "no password: set {PASSWORD_ENV} or run on a terminal"
        )));
    }
    rpassword::prompt_password(format!("Password for {jid}: ")).map_err(|e| {
        Failure::usage(format!(
            "no password: set {PASSWORD_ENV} or run on a terminal ({e})"
        ))
    })
}

/// The certificate policy from `--ca` / `--trust-first-use`.
pub fn trust(args: &ConnectArgs, domain: &str) -> Result<ClientTrust, Failure> {
    let roots = match &args.ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::usage(format!("reading {}: {e}", path.display())))?;
            Some(
                roots_from_pem(&pem)
                    .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?,
            )
        }
        None => platform_roots().ok(),
    };
    if args.trust_first_use {
        let path = pins::default_path()
            .ok_or_else(|| Failure::usage("no config dir for the pin store (is HOME set?)"))?;
        let store = FilePinStore::open(&path).map_err(Failure::usage)?;
        ClientTrust::first_use(domain, roots, store)
    } else {
        let roots = roots.ok_or_else(|| {
            Failure::new(
                ExitCode::Certificate,
                "no trust anchors: the system store is empty; use --ca FILE or --trust-first-use",
            )
        })?;
        ClientTrust::anchors(domain, roots)
    }
}

/// Runs `connect` with `resolver` for SRV.
pub async fn run<R: SrvResolver>(args: ConnectArgs, resolver: &R) -> Result<(), Failure> {
    let password = password(&args.jid)?;
    let mut login = Login::new(&args.jid, &password)?;
    login.tls = match args.tls {
        TlsMode::Required => TlsPolicy::Required,
        TlsMode::Optional => TlsPolicy::Optional,
    };
    login.sasl.channel_binding = match args.channel_binding {
        ChannelBinding::Required => CbPolicy::Required,
        ChannelBinding::WhenOffered => CbPolicy::WhenOffered,
        ChannelBinding::Off => CbPolicy::Off,
    };
    let domain = login.domain().to_string();
    let trust = trust(&args, &domain)?;

    let mut progress = if args.trace {
        Progress::new(Style::Off)
    } else {
        Progress::auto()
    };
    progress.status(&format!("resolving {domain}"));
    let targets = resolve::targets(resolver, &domain, args.host.as_deref(), args.port)
        .await
        .map_err(|e| Failure::protocol(format!("resolving {domain}: {e}")))?;
    let mut transport = None;
    let mut last_error = None;
    for (host, port) in &targets.addresses {
        progress.status(&format!("connecting to {host}:{port} ({})", targets.source));
        let attempt = tokio::time::timeout(
            Duration::from_secs(args.timeout),
            client::connect_tcp(host, *port),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Failure::protocol(format!(
                "connecting to {host}:{port}: timed out"
            )))
        });
        match attempt {
            Ok(t) => {
                transport = Some(t);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let transport = transport.ok_or_else(|| {
        last_error.unwrap_or_else(|| Failure::protocol(format!("no address for {domain}")))
    })?;

    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    transcript.redact_secret(&password);
    transcript.print_live(args.trace);
    transcript.with_progress(progress);
    let logged_in = tokio::time::timeout(
        Duration::from_secs(args.timeout),
        client::login(transport, &login, &trust, cell, &mut transcript),
    )
    .await
    .map_err(|_| {
        Failure::protocol(format!(
            "negotiation did not finish within {} s",
            args.timeout
        ))
    })?
    .map_err(|f| {
        if f.code == ExitCode::Certificate && args.trust_first_use {
            let path = pins::default_path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            Failure::new(
                f.code,
                format!(
                    "{} [xmpp-handshake: once confirmed, delete the line for {domain} in {path} and connect again]",
                    f.message
                ),
            )
        } else {
            f
        }
    })?;
    if let Some(mut p) = transcript.take_progress() {
        p.finish();
    }
    let mut session = logged_in.session;
    let mechanism = session
        .outcome
        .mechanism
        .map(|m| m.name())
        .unwrap_or("no SASL");
    let tls = transcript
        .tls()
        .map(|t| format!("{} {}", t.version, t.cipher_suite))
        .unwrap_or_else(|| "no TLS".into());
    eprintln!(
        "xmpp-handshake: online as {} ({mechanism}, {tls}, {} round trips, {:.1} ms)",
        logged_in.jid,
        transcript.round_trips(),
        logged_in.elapsed.as_secs_f64() * 1000.0
    );

    if let Some(send) = &args.send {
        let [to, body] = &send[..] else {
            return Err(Failure::usage("--send wants TO BODY"));
        };
        let message = stanza::message(to, body, Some("xmpp-handshake-1"));
        client::send(&mut session, &mut transcript, &message).await?;
        // §4.4: our closing tag, then the server's: everything before it was processed.
        transcript.stanza_sent("</stream:stream>");
        tokio::time::timeout(CLOSE_TIMEOUT, session.close())
            .await
            .map_err(|_| Failure::protocol("the server did not close the stream in time"))?
            .map_err(|e| crate::exit::from_core(&e))?;
        transcript.stanza_received("</stream:stream>");
        eprintln!("xmpp-handshake: message sent to {to}; the server closed the stream");
        return Ok(());
    }

    // Online: initial presence (RFC 6121 §4.2), then print what arrives.
    client::send(&mut session, &mut transcript, &stanza::presence(None)).await?;
    eprintln!("xmpp-handshake: printing incoming stanzas; Ctrl-C to close");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                transcript.stanza_sent("</stream:stream>");
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close()).await;
                eprintln!("xmpp-handshake: closed");
                return Ok(());
            }
            element = client::receive(&mut session, &mut transcript) => match element? {
                Some(element) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{element}");
                    let _ = out.flush();
                }
                None => return Err(Failure::protocol("the server closed the stream")),
            },
        }
    }
}

/// Runs `connect` with the system resolver.
pub async fn run_system(args: ConnectArgs) -> Result<(), Failure> {
    run(args, &SystemResolver).await
}
