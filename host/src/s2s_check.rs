//! `s2s-check DOMAIN`: the server-to-server negotiation of DOMAIN as an originating server
//! sees it (RFC 6120 §3.2, §5, §13.7.2; XEP-0368): the SRV records `_xmpps-server._tcp`
//! and `_xmpp-server._tcp` and each target tried, STARTTLS or Direct TLS (ALPN
//! `xmpp-server`), the certificate's verdict against DOMAIN (DNS-ID, SRV-ID
//! `_xmpp-server.DOMAIN`, XmppAddr) with its fingerprint, and what the peer offers on the
//! protected stream (SASL mechanisms such as EXTERNAL, dialback). Without `--from` nothing
//! is authenticated: the check succeeds when TLS was established with a certificate the
//! policy accepts. With `--from MYDOMAIN --cert --key` our certificate is presented as the
//! TLS client certificate and the stream authenticated with SASL EXTERNAL (RFC 6120 §6.4,
//! XEP-0178), `from` the same on every header; it succeeds with the authenticated stream.
//! With `--dialback-listen ADDR` as well, a second stream tries Server Dialback (XEP-0220):
//! the check sends its key and answers the checked server's call-back on ADDR as
//! MYDOMAIN's authoritative server (a [`Federation`] of its own, which also verifies the
//! checked server's dialback at DOMAIN as reached here); it succeeds when either way
//! authenticated. Without the listener dialback is reported not attempted.

use std::time::Duration;

use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::sasl::Credentials;
use xmpp_handshake_core::stream::features::StreamFeatures;
use xmpp_handshake_core::trust::{CertError, Verdict};
use xmpp_handshake_core::Error;

use std::sync::Arc;

use xmpp_handshake_core::dialback::DialbackConfig;

use crate::certs::ServerIdentity;
use crate::cli::S2sCheckArgs;
use crate::client::{self, ClientTrust};
use crate::connect;
use crate::exit::{self, ExitCode, Failure};
use crate::federation::{Federation, S2sConfig};
use crate::resolve::{self, Security, Service, SystemResolver, Target};
use crate::router::Registry;
use crate::tls::verify::platform_roots;
use crate::tls_info::TlsCell;
use crate::transcript::{Side, Transcript};

/// The ALPN protocol id of server-to-server XMPP over Direct TLS (XEP-0368 §3).
pub const ALPN_SERVER: &[u8] = b"xmpp-server";

/// An S2S stream to a target found as `security` says: STARTTLS (RFC 6120 §5), or TLS from
/// the first byte with ALPN `xmpp-server` (XEP-0368); then the negotiation `config` asks
/// for. Shared by this check and `serve`'s outgoing links.
pub async fn negotiate(
    transport: client::Transport,
    security: Security,
    config: InitiatorConfig,
    trust: &ClientTrust,
    cell: TlsCell,
    transcript: &mut Transcript,
) -> Result<client::ClientSession, Error> {
    match security {
        Security::StartTls => {
            client::negotiate_with(transport, config, trust, cell, transcript).await
        }
        Security::DirectTls => {
            client::negotiate_direct_tls(transport, config, trust, ALPN_SERVER, cell, transcript)
                .await
        }
    }
}

/// Runs the check; prints what it sees on stdout.
pub async fn run(args: &S2sCheckArgs) -> Result<(), Failure> {
    let domain = args.domain.trim_end_matches('.').to_ascii_lowercase();
    let mut trust = trust(args, &domain)?;
    let mut identity = None;
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        let loaded = ServerIdentity::load(cert, key)?;
        trust = trust.presenting(loaded.key.clone())?;
        identity = Some(loaded);
    }
    let targets = resolve::targets_for(
        &SystemResolver,
        Service::Server,
        &domain,
        args.host.as_deref(),
        args.port,
        args.direct_tls,
    )
    .await
    .map_err(|e| Failure::protocol(format!("resolving {domain}: {e}")))?;
    println!("s2s-check {domain}");
    for t in &targets.addresses {
        println!(
            "  target {}:{} ({}, {})",
            t.host,
            t.port,
            t.security.name(),
            t.source
        );
    }
    let limit = Duration::from_secs(args.timeout);
    let mut last = Failure::protocol(format!("no target of {domain} could be reached"));
    for target in &targets.addresses {
        println!(
            "trying {}:{} ({})",
            target.host,
            target.port,
            target.security.name()
        );
        let authority = match (&identity, &args.from, args.dialback_listen) {
            (Some(identity), Some(from), Some(listen)) => {
                Some(authoritative(args, identity.clone(), from, listen, &domain, target).await?)
            }
            _ => None,
        };
        let checked = check(args, &domain, target, &trust, authority.as_ref());
        match tokio::time::timeout(limit, checked).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(failure)) => {
                println!("  failed: {failure}");
                // A certificate the policy refuses is the answer; another target would
                // present the same domain's certificate.
                if failure.code == ExitCode::Certificate {
                    return Err(failure);
                }
                last = failure;
            }
            Err(_) => {
                println!("  failed: no answer within {} s", args.timeout);
                last = Failure::protocol(format!("{domain}: no answer within {limit:?}"));
            }
        }
    }
    Err(last)
}

/// PKIX to `--ca` (or the system's anchors) for the peer `domain`.
fn trust(args: &S2sCheckArgs, domain: &str) -> Result<ClientTrust, Failure> {
    let roots = match &args.ca {
        Some(path) => connect::ca_roots(path)?,
        None => platform_roots().map_err(|e| {
            Failure::new(
                ExitCode::Certificate,
                format!("no trust anchors ({e}): use --ca FILE"),
            )
        })?,
    };
    ClientTrust::anchors_s2s(domain, roots)
}

/// MYDOMAIN's side of dialback while one target is checked: its key secret, and a
/// federation of its own listening on `--dialback-listen` (receiving and authoritative
/// roles; `domain` routed to `target`, checked against `--ca`).
struct Authoritative {
    dialback: DialbackConfig,
    /// The listener's task (it holds the federation); stopped with the check.
    listener: tokio::task::JoinHandle<()>,
    /// MYDOMAIN's (empty) registry: the federation holds it weakly and serves only while
    /// it lives.
    _registry: Arc<Registry>,
}

impl Drop for Authoritative {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

async fn authoritative(
    args: &S2sCheckArgs,
    identity: ServerIdentity,
    from: &str,
    listen: std::net::SocketAddr,
    domain: &str,
    target: &Target,
) -> Result<Authoritative, Failure> {
    let anchors = match &args.ca {
        Some(path) => connect::ca_roots(path)?,
        None => platform_roots().map_err(|e| {
            Failure::new(
                ExitCode::Certificate,
                format!("no trust anchors ({e}): use --ca FILE"),
            )
        })?,
    };
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let dialback = DialbackConfig::new(&secret);
    let mut config = S2sConfig::new(anchors);
    config
        .peers
        .insert(domain.to_string(), (target.host.clone(), target.port));
    config.timeout = Duration::from_secs(args.timeout);
    config.dialback = Some(dialback.clone());
    let registry = Arc::new(Registry::new(from));
    let federation = Federation::attach(&registry, identity, config, args.trace, args.trace, false);
    let (addr, listener) = federation.listen(listen).await?;
    println!("  dialback: answering for {from} on {addr}");
    Ok(Authoritative {
        dialback,
        listener,
        _registry: registry,
    })
}

/// One target: EXTERNAL (or, without `--from`, the offer), then dialback; reports both.
async fn check(
    args: &S2sCheckArgs,
    domain: &str,
    target: &Target,
    trust: &ClientTrust,
    authority: Option<&Authoritative>,
) -> Result<(), Failure> {
    let external = check_external(args, domain, target, trust).await;
    let Some(from) = &args.from else {
        return external;
    };
    let Some(authority) = authority else {
        println!("  dialback: not attempted: no authoritative listener (--dialback-listen)");
        return external;
    };
    let transport = client::connect_tcp(&target.host, target.port).await?;
    let mut config = InitiatorConfig::server(domain, from);
    config.dialback = Some(authority.dialback.clone());
    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    transcript.print_live(args.trace);
    let result = negotiate(
        transport,
        target.security,
        config,
        trust,
        cell,
        &mut transcript,
    )
    .await;
    let dialback = match result {
        Ok(session) if session.outcome().dialback => {
            println!("  dialback: authenticated as {from} (the peer verified our key with us)");
            let _ = session.close().await;
            Ok(())
        }
        Ok(session) => {
            let _ = session.close().await;
            println!("  dialback: not offered by the peer");
            Err(Failure::protocol(format!(
                "{domain} does not offer dialback"
            )))
        }
        Err(e) => {
            println!("  dialback: failed: {e}");
            Err(exit::from_core(&e))
        }
    };
    // Either way authenticated is an authenticated stream.
    match (external, dialback) {
        (Ok(()), _) | (_, Ok(())) => Ok(()),
        (Err(_), Err(e)) => Err(e),
    }
}

/// EXTERNAL (RFC 6120 §6.4, XEP-0178) with `--from`, else the offer of the protected
/// stream.
async fn check_external(
    args: &S2sCheckArgs,
    domain: &str,
    target: &Target,
    trust: &ClientTrust,
) -> Result<(), Failure> {
    let transport = client::connect_tcp(&target.host, target.port).await?;
    let mut config = InitiatorConfig::server(domain, "");
    // Without `--from` there is nothing to authenticate as: no `from` on any header.
    config.from = args.from.clone();
    if args.from.is_some() {
        // SASL EXTERNAL with an empty authzid (`=`): the identity is the certificate's,
        // checked by the peer against `from` (RFC 6120 §6.3.8, XEP-0178 §2).
        let mut sasl = ClientSasl::password("", "", None);
        sasl.credentials = Credentials::external(None);
        sasl.pipeline_bind = false;
        config.sasl = Some(sasl);
    }
    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    transcript.print_live(args.trace);
    let result = negotiate(
        transport,
        target.security,
        config,
        trust,
        cell,
        &mut transcript,
    )
    .await;
    let tls = transcript.tls();
    match &tls {
        Some(t) => println!("  TLS: {} {}", t.version, t.cipher_suite),
        None => println!("  TLS: not established"),
    }
    print_verdict(domain, trust.last_verdict());
    match result {
        Ok(session) => {
            let outcome = session.outcome();
            match (&args.from, outcome.mechanism) {
                (Some(from), Some(mechanism)) => println!(
                    "  authenticated as {from} with {} (restarted, no binding on S2S)",
                    mechanism.name()
                ),
                _ => print_offer(&outcome.features),
            }
            let _ = session.close().await;
            Ok(())
        }
        // TLS and the certificate were good; without `--from` the peer may end the stream
        // when it has nothing to offer us (Prosody without dialback: no features).
        Err(Error::StreamErrorReceived(e)) if tls.is_some() && args.from.is_none() => {
            let text = e.text.as_deref().unwrap_or("");
            println!(
                "  offered: nothing; the peer closed the stream: <{}/> {text}",
                e.condition
            );
            Ok(())
        }
        Err(e) => {
            if args.from.is_some() {
                println!("  authentication: failed: {e}");
            }
            Err(exit::from_core(&e))
        }
    }
}

fn print_verdict(domain: &str, verdict: Option<Result<Verdict, CertError>>) {
    match verdict {
        Some(Ok(v)) => {
            let matched = v
                .identity
                .map(|id| id.to_string())
                .unwrap_or_else(|| "-".into());
            println!("  certificate: trusted for {domain} (matched {matched})");
            println!("  certificate SHA-256: {}", v.pin.cert_sha256);
            println!("  key (SPKI) SHA-256: {}", v.pin.spki_sha256);
        }
        Some(Err(e)) => println!("  certificate: refused for {domain}: {e}"),
        None => println!("  certificate: none checked"),
    }
}

fn print_offer(features: &StreamFeatures) {
    let mechanisms = features
        .mechanisms
        .as_ref()
        .map(|m| m.join(" "))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "none".into());
    let dialback = features.other.iter().any(|o| o.contains("dialback"));
    println!("  offered: SASL mechanisms {mechanisms}; dialback (XEP-0220) {dialback}");
}
