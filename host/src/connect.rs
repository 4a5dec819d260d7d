//! `connect JID`: log in to a real server; send one message or stay online.

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Duration;

use rustls::RootCertStore;
use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_core::sasl::CbPolicy;
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::starttls::TlsPolicy;
use xmpp_handshake_core::Jid;

use crate::cli::{ChannelBinding, ConnectArgs, TlsMode};
use crate::client::{self, ClientTrust, LoggedIn, Login};
use crate::exit::{self, ExitCode, Failure};
use crate::online;
use crate::pins::{self, FilePinStore};
use crate::progress::{Progress, Style};
use crate::resolve::{self, Security, SrvResolver, SystemResolver, Targets};
use crate::scram_cache::{self, ScramCache};
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

/// The trust anchors of a `--ca FILE` (every certificate in the PEM bundle).
pub fn ca_roots(path: &Path) -> Result<RootCertStore, Failure> {
    let pem = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("reading {}: {e}", path.display())))?;
    roots_from_pem(&pem).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// The certificate policy from `--ca` / `--trust-first-use`.
pub fn trust(args: &ConnectArgs, domain: &str) -> Result<ClientTrust, Failure> {
    let roots = match &args.ca {
        Some(path) => Some(ca_roots(path)?),
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

fn progress(args: &ConnectArgs) -> Progress {
    if args.trace {
        Progress::new(Style::Off)
    } else {
        Progress::auto()
    }
}

/// The SCRAM cache, unless `--no-cache`. An unreadable cache is reported and not used.
/// Writes `memory` to the login cache, if there is one (a failure is a warning: the
/// login goes on without it).
fn keep_in_cache(
    cache: &mut Option<ScramCache>,
    domain: &str,
    user: &str,
    password: &str,
    memory: &LoginMemory,
) {
    if let Some(c) = cache {
        if let Err(e) = c.put(domain, user, password, memory) {
            eprintln!("xmpp-handshake: warning: {}: {e}", c.path().display());
        }
    }
}

fn open_cache(args: &ConnectArgs) -> Option<ScramCache> {
    if args.no_cache {
        return None;
    }
    let path = scram_cache::default_path()?;
    match ScramCache::open(&path) {
        Ok(cache) => Some(cache),
        Err(e) => {
            eprintln!("xmpp-handshake: warning: SCRAM cache not used: {e}");
            None
        }
    }
}

/// Runs `connect` with `resolver` for SRV.
pub async fn run<R: SrvResolver>(args: ConnectArgs, resolver: &R) -> Result<(), Failure> {
    // A JID that cannot log in is reported before the password is asked for.
    client::account_jid(&args.jid)?;
    let password = password(&args.jid)?;
    run_with_password(args, resolver, password).await
}

/// [`run`] with the password already known.
pub async fn run_with_password<R: SrvResolver>(
    args: ConnectArgs,
    resolver: &R,
    password: String,
) -> Result<(), Failure> {
    let mut login = Login::new(&args.jid, &password)?;
    if let Some([to, _]) = args.send.as_deref() {
        Jid::parse(to).map_err(|e| Failure::usage(format!("--send: {to:?} is not a JID: {e}")))?;
    }
    if let Some(to) = &args.send_lines {
        Jid::parse(to)
            .map_err(|e| Failure::usage(format!("--send-lines: {to:?} is not a JID: {e}")))?;
    }
    if !args.no_stream_management {
        login.stream_management = Some(online::sm_config());
    }
    login.idle = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    login.tls = match args.tls {
        TlsMode::Required => TlsPolicy::Required,
        TlsMode::Optional => TlsPolicy::Optional,
    };
    login.sasl.channel_binding = match args.channel_binding {
        ChannelBinding::Required => CbPolicy::Required,
        ChannelBinding::WhenOffered => CbPolicy::WhenOffered,
        ChannelBinding::Off => CbPolicy::Off,
    };
    login.sasl.allow_digest_md5 = args.allow_digest_md5;
    login.pipeline_mechanism = args.pipeline_mechanism;
    let domain = login.domain().to_string();
    let user = login.jid.local().unwrap_or_default().to_string();
    let trust = trust(&args, &domain)?;
    let mut cache = open_cache(&args);
    // The keys and what this server offered after TLS last time: the pipelined mechanism
    // is chosen from that offer by today's policy (`ClientSasl::with_memory`).
    login.memory = cache
        .as_ref()
        .and_then(|c| c.get(&domain, &user, &password));
    // SASL2's user agent id (XEP-0388 §2.2.1): one per account on this machine, kept in
    // the login cache with the FAST token the server ties to it. Without a cache there is
    // nothing to keep a token in: no id, no token.
    if cache.is_some() {
        let memory = login.memory.get_or_insert_with(LoginMemory::default);
        if memory.user_agent_id.is_none() {
            memory.user_agent_id = Some(new_user_agent_id());
        }
    }

    let mut resolving = progress(&args);
    resolving.status(&format!("resolving {domain}"));
    let targets = resolve::targets(
        resolver,
        &domain,
        args.host.as_deref(),
        args.port,
        args.direct_tls,
    )
    .await
    .map_err(|e| Failure::protocol(format!("resolving {domain}: {e}")))?;
    drop(resolving);
    // At most one retry without channel binding and one without the cached keys.
    let mut retried_unbound = false;
    let mut keys_dropped = false;
    let mut token_dropped = false;
    let mut offer_dropped = false;
    let (logged_in, mut transcript, security) = loop {
        // XEP-0484 §3.4: where the server allows FAST in TLS 0-RTT, each attempt with the
        // token carries a count above every earlier one; kept before it goes out.
        if let Some(memory) = &mut login.memory {
            if memory.next_attempt_count().is_some() {
                keep_in_cache(&mut cache, &domain, &user, &password, memory);
            }
        }
        let failure = match establish(&args, &targets, &login, &trust).await {
            Ok(established) => break established,
            Err(f) => f,
        };
        // The `<authenticate/>` sent ahead of the features used what the server no longer
        // offers: said, the kept offer forgotten, once more waiting for the features.
        if failure.offer_changed && !offer_dropped {
            eprintln!("xmpp-handshake: {}; retrying once", failure.message);
            offer_dropped = true;
            if let Some(memory) = &mut login.memory {
                memory.sasl2_inline = None;
                if let Some(c) = &mut cache {
                    if let Err(e) = c.put(&domain, &user, &password, memory) {
                        eprintln!("xmpp-handshake: warning: {}: {e}", c.path().display());
                    }
                }
            }
            continue;
        }
        let keys_cached = login.memory.as_ref().is_some_and(|m| m.scram.is_some());
        let bound_before = login.memory.as_ref().is_some_and(|m| m.channel_bound);
        // -PLUS offered without XEP-0440, then the binding refused, under the default
        // policy: the login memory decides (like HSTS).
        if let Some(rejection) = failure.cb_rejected.filter(|r| {
            !r.xep0440 && login.sasl.channel_binding == CbPolicy::WhenOffered && !retried_unbound
        }) {
            if !bound_before {
                // Never bound: once more with SCRAM and the gs2 flag `y` (RFC 5802 §6), which
                // a server that can bind must refuse.
                eprintln!("xmpp-handshake: {}", exit::RETRIED_UNBOUND);
                login.sasl.channel_binding = CbPolicy::RetryUnbound;
                retried_unbound = true;
                continue;
            }
            if !keys_cached {
                return Err(exit::refused_after_binding(&rejection, None));
            }
            // Bound before, with cached keys: stale keys are refused the same way, so try
            // the password (still bound) before calling it an attack.
        }
        // A refused FAST token: the core logs in with the password on the same stream
        // (XEP-0388 leaves the stream as it was after a failure), but Prosody's mod_sasl2
        // (prosody-modules 2023-02) keeps the token's SASL handler and then refuses the
        // password's mechanism as `<invalid-mechanism/>`. Once more, without the token.
        let token_held = login
            .memory
            .as_ref()
            .is_some_and(|m| m.fast_token.is_some());
        if failure.code == ExitCode::Authentication && token_held && !token_dropped {
            eprintln!(
                "xmpp-handshake: the server refused the FAST token; logging in again with the password"
            );
            token_dropped = true;
            if let Some(memory) = &mut login.memory {
                memory.fast_token = None;
                if let Some(c) = &mut cache {
                    if let Err(e) = c.put(&domain, &user, &password, memory) {
                        eprintln!("xmpp-handshake: warning: {}: {e}", c.path().display());
                    }
                }
            }
            continue;
        }
        if failure.code != ExitCode::Authentication || !keys_cached || keys_dropped {
            return Err(failure);
        }
        // Same salt, other keys: the password was changed on the server (a new salt would
        // have made the core derive new keys on its own). The rest of the memory (that
        // the server bound the channel before) is kept.
        if failure.cb_rejected.is_some() && bound_before {
            eprintln!(
                "xmpp-handshake: a server that bound before refused the channel binding; \
                 trying once more, still bound, with the password (the cached SCRAM keys may \
                 be stale)"
            );
        } else {
            eprintln!(
                "xmpp-handshake: the server refused the cached SCRAM keys; trying again with the password"
            );
        }
        keys_dropped = true;
        if let Some(memory) = &mut login.memory {
            memory.scram = None;
            if let Some(c) = &mut cache {
                if let Err(e) = c.put(&domain, &user, &password, memory) {
                    eprintln!("xmpp-handshake: warning: {}: {e}", c.path().display());
                }
            }
        }
    };
    if let Some(mut p) = transcript.take_progress() {
        p.finish();
    }
    let mut session = logged_in.session;
    let outcome = session.outcome();
    let cached = login.memory.as_ref().and_then(|m| m.scram.as_ref());
    let keys = match (&outcome.scram_cache, cached) {
        (Some(used), Some(cached)) if used == cached => "; SCRAM keys from the cache",
        (Some(_), _) if cache.is_some() => "; SCRAM keys derived and cached",
        (Some(_), _) => "; SCRAM keys derived",
        (None, _) => "",
    };
    let mut keep = None;
    if outcome.mechanism.is_some() || outcome.sasl2 {
        // Verified login only (a SASL mechanism, or a FAST token whose server proof was
        // checked); a server that bound once stays marked as such; a token the server
        // refused is forgotten, a new or rotated one kept.
        let memory = LoginMemory::from_outcome(outcome, &login.sasl)
            .remembering(login.memory.as_ref(), outcome.fast_token_rejected);
        if cache
            .as_ref()
            .is_some_and(|c| c.get(&domain, &user, &password).as_ref() != Some(&memory))
        {
            keep_in_cache(&mut cache, &domain, &user, &password, &memory);
        }
        keep = Some(memory);
    }
    let mechanism = match (outcome.mechanism, outcome.sasl2) {
        (Some(m), true) => format!("SASL2 {}", m.name()),
        (Some(m), false) => m.name().to_string(),
        (None, true) => "SASL2 with a FAST token".to_string(),
        (None, false) => "no SASL".to_string(),
    };
    let fast = match (&outcome.fast_token, outcome.fast_token_rejected) {
        (Some(_), true) => "; the FAST token was refused, a new one cached",
        (None, true) => "; the FAST token was refused and forgotten",
        (Some(_), false) if cache.is_some() => "; FAST token cached",
        _ => "",
    };
    let tls = transcript
        .tls()
        .map(|t| format!("{} {}", t.version, t.cipher_suite))
        .unwrap_or_else(|| "no TLS".into());
    let via = security.name();
    let retry = if retried_unbound {
        format!("; {}", exit::RETRIED_UNBOUND)
    } else {
        String::new()
    };
    eprintln!(
        "xmpp-handshake: online as {} ({mechanism}, {via}, {tls}, {} round trips, {:.1} ms{keys}{fast}{retry})",
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
            .map_err(|e| crate::exit::from_library(&e))?;
        transcript.stanza_received("</stream:stream>");
        eprintln!("xmpp-handshake: message sent to {to}; the server closed the stream");
        return Ok(());
    }

    // Online (initial presence, RFC 6121 §4.2, and what arrives printed), or the lines of
    // standard input sent; either way across drops, resuming (XEP-0198 §5). Reconnections
    // log in with what this login left (its SCRAM keys: no PBKDF2 again).
    if keep.is_some() {
        login.memory = keep;
    }
    let mut keep_memory =
        |memory: &LoginMemory| keep_in_cache(&mut cache, &domain, &user, &password, memory);
    let reconnect = online::Reconnect {
        args: &args,
        targets: &targets,
        login: &mut login,
        trust: &trust,
        keep_memory: &mut keep_memory,
    };
    online::run(reconnect, session, transcript, args.send_lines.as_deref()).await
}

/// Connects to the targets in order and logs in at the first that answers.
///
/// A Direct TLS target whose TCP connection or TLS handshake fails (for a reason other
/// than the certificate: that is refused at once) gives way to the next target. Nothing
/// but a ClientHello was sent, so that is safe, except that a STARTTLS target after it
/// is tried only when TLS is required there: a blocked Direct TLS port must never lead to
/// plaintext.
pub(crate) async fn establish(
    args: &ConnectArgs,
    targets: &Targets,
    login: &Login,
    trust: &ClientTrust,
) -> Result<(LoggedIn, Transcript, Security), Failure> {
    let domain = login.domain();
    let mut last_error = None;
    let mut starttls_allowed = true;
    for target in &targets.addresses {
        let (host, port) = (target.host.as_str(), target.port);
        if target.security == Security::StartTls && !starttls_allowed {
            continue;
        }
        let mut progress = progress(args);
        let via = target.security.name();
        progress.status(&format!(
            "connecting to {host}:{port} ({via}, {})",
            target.source
        ));
        let limit = Duration::from_secs(args.timeout);
        let connected = tokio::time::timeout(limit, client::connect_tcp(host, port))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::protocol(format!(
                    "connecting to {host}:{port}: timed out"
                )))
            });
        let transport = match connected {
            Ok(t) => t,
            Err(e) => {
                if target.security == Security::DirectTls && login.tls != TlsPolicy::Required {
                    starttls_allowed = false;
                }
                last_error = Some(e);
                continue;
            }
        };
        let cell = TlsCell::default();
        let mut transcript = Transcript::new(Side::Initiating, cell.clone());
        transcript.redact_secret(&login.password);
        transcript.print_live(args.trace);
        transcript.with_progress(progress);
        let attempt = match target.security {
            Security::StartTls => {
                tokio::time::timeout(
                    limit,
                    client::login(transport, login, trust, cell, &mut transcript),
                )
                .await
            }
            Security::DirectTls => {
                tokio::time::timeout(
                    limit,
                    client::login_direct_tls(transport, login, trust, cell, &mut transcript),
                )
                .await
            }
        }
        .unwrap_or_else(|_| {
            Err(Failure::protocol(format!(
                "negotiation did not finish within {} s",
                args.timeout
            )))
        });
        let failure = match attempt {
            Ok(logged_in) => return Ok((logged_in, transcript, target.security)),
            Err(f) => f,
        };
        if let Some(mut p) = transcript.take_progress() {
            p.finish();
        }
        let handshake_failed = target.security == Security::DirectTls
            && transcript.tls().is_none()
            && failure.code != ExitCode::Certificate;
        if !handshake_failed {
            return Err(first_use_hint(failure, args, domain));
        }
        eprintln!("xmpp-handshake: Direct TLS to {host}:{port} failed: {failure}");
        if login.tls != TlsPolicy::Required {
            starttls_allowed = false;
        }
        last_error = Some(failure);
    }
    let skipped = !starttls_allowed
        && targets
            .addresses
            .iter()
            .any(|t| t.security == Security::StartTls);
    let failure =
        last_error.unwrap_or_else(|| Failure::protocol(format!("no address for {domain}")));
    Err(if skipped {
        failure
            .context("not falling back to STARTTLS with --tls optional (it could end in plaintext)")
    } else {
        failure
    })
}

/// With `--trust-first-use`, a refused certificate says how to accept a new one.
fn first_use_hint(f: Failure, args: &ConnectArgs, domain: &str) -> Failure {
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
}

/// Runs `connect` with the system resolver.
pub async fn run_system(args: ConnectArgs) -> Result<(), Failure> {
    run(args, &SystemResolver).await
}

/// A random UUID (RFC 9562 version 4): the SASL2 user agent id of a new login memory.
fn new_user_agent_id() -> String {
    use rand_core::RngCore as _;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
