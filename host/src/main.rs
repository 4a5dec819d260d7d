//! `xmpp-handshake`: see `xmpp-handshake --help` and the README.

use std::io::Write as _;
use std::net::SocketAddr;

use clap::Parser;
use xmpp_handshake_core::dialback::DialbackConfig;
use xmpp_handshake_host::cli::{BridgeArgs, Cli, Command, DemoArgs, HashPasswordArgs, ServeArgs};
use xmpp_handshake_host::exit::{ExitCode, Failure};
use xmpp_handshake_host::progress::{Progress, Style};
use xmpp_handshake_host::{bridge, certs, connect, demo, federation, s2s_check, serve, users, web};

fn main() {
    let cli = Cli::parse();
    let runtime = match cli.command {
        // One connection: a single-threaded runtime (no worker threads, their stacks and
        // malloc arenas, less code run: less memory for a login, README, Performance).
        Command::Connect(_) | Command::HashPassword(_) | Command::S2sCheck(_) => {
            tokio::runtime::Builder::new_current_thread()
        }
        Command::Demo(_) | Command::Serve(_) | Command::Bridge(_) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => exit(Failure::protocol(format!("starting the runtime: {e}"))),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => run_demo(args).await,
            Command::Connect(args) => connect::run_system(args).await,
            Command::Serve(args) => run_serve(*args).await,
            Command::HashPassword(args) => hash_password(args),
            Command::Bridge(args) => run_bridge(args).await,
            Command::S2sCheck(args) => s2s_check::run(&args).await,
        }
    });
    match result {
        Ok(()) => std::process::exit(ExitCode::Success.code()),
        Err(f) => exit(f),
    }
}

fn exit(failure: Failure) -> ! {
    eprintln!("xmpp-handshake: error: {failure}");
    std::process::exit(failure.code.code())
}

async fn run_demo(args: DemoArgs) -> Result<(), Failure> {
    let progress = if args.quiet {
        Progress::new(Style::Off)
    } else {
        Progress::auto()
    };
    let report = demo::run(&args.domain, &args.body, progress).await?;
    let mut out = std::io::stdout().lock();
    if !args.quiet {
        for line in &report.transcript {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{}", report.summary);
    Ok(())
}

/// `serve`'s federation (`--s2s-*`): stanzas for other domains go over S2S; with
/// `--s2s-listen` / `--s2s-direct-tls-listen`, peers are accepted there (returns where).
async fn federate(
    args: &ServeArgs,
    server: &serve::Server,
    identity: certs::ServerIdentity,
) -> Result<Option<String>, Failure> {
    let s2s = &args.s2s;
    let anchors = match &s2s.s2s_ca {
        Some(path) => connect::ca_roots(path)?,
        None => xmpp_handshake_host::tls::verify::platform_roots().map_err(|e| {
            Failure::usage(format!(
                "no trust anchors for peer servers ({e}): use --s2s-ca FILE"
            ))
        })?,
    };
    let mut config = federation::S2sConfig::new(anchors);
    for peer in &s2s.s2s_peers {
        let (domain, target) = federation::parse_peer(peer).map_err(Failure::usage)?;
        config.peers.insert(domain, target);
    }
    config.timeout = std::time::Duration::from_secs(s2s.s2s_timeout);
    config.max_peers = s2s.s2s_max_peers;
    config.queue_bytes = s2s.s2s_queue_bytes;
    config.max_incoming = s2s.s2s_max_incoming;
    config.limits = args.limits.limits().map_err(Failure::usage)?;
    config.bidi = !s2s.s2s_no_bidi;
    config.dialback = match (&s2s.s2s_dialback_secret_file, s2s.s2s_no_dialback) {
        (_, true) => None,
        (Some(path), false) => {
            let secret = std::fs::read(path)
                .map_err(|e| Failure::usage(format!("reading {}: {e}", path.display())))?;
            if secret.trim_ascii().is_empty() {
                return Err(Failure::usage(format!(
                    "{}: an empty secret",
                    path.display()
                )));
            }
            Some(DialbackConfig::new(secret.trim_ascii()))
        }
        (None, false) => {
            let mut secret = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
            Some(DialbackConfig::new(&secret))
        }
    };
    let fed = federation::Federation::attach(
        &server.registry,
        identity,
        config,
        true,
        args.trace,
        args.verbose,
    );
    // The listeners' tasks run as long as the process.
    let mut addrs = Vec::new();
    if let Some(addr) = s2s.s2s_listen {
        addrs.push(fed.listen(addr).await?.0.to_string());
    }
    if let Some(addr) = s2s.s2s_direct_tls_listen {
        let (addr, _task) = fed.listen_direct_tls(addr).await?;
        addrs.push(format!("{addr} (Direct TLS, ALPN xmpp-server)"));
    }
    Ok((!addrs.is_empty()).then(|| addrs.join(", ")))
}

async fn run_serve(args: ServeArgs) -> Result<(), Failure> {
    let (store, names) =
        serve::load_users(&args.users, args.users_file.as_deref(), args.iterations)?;
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => certs::ServerIdentity::load(cert, key)?,
        _ => certs::ServerIdentity::generate(&args.domain)?,
    };
    if let (Some(path), Some(pem)) = (&args.write_ca, &identity.ca_pem) {
        std::fs::write(path, pem)
            .map_err(|e| Failure::usage(format!("writing {}: {e}", path.display())))?;
    }
    let listen: SocketAddr = args.listen;
    let limits = args.limits.limits().map_err(Failure::usage)?;
    let config = serve::ServeConfig {
        verbose: args.verbose,
        channel_binding: !args.no_channel_binding,
        sasl2: !args.no_sasl2,
        early_data: !args.no_early_data,
        log_connections: true,
        trace: args.trace,
        store: serve::SharedStore::new(store, limits.fast_token_lifetime, limits.max_fast_tokens),
        limits,
        ..serve::ServeConfig::new(args.domain.clone(), Default::default(), identity.clone())
    };
    let mut server = serve::Server::start(listen, config.clone()).await?;
    let s2s_listen = match args.s2s.enabled() {
        true => federate(&args, &server, identity.clone()).await?,
        false => None,
    };
    let direct_tls = match args.direct_tls_listen {
        Some(addr) => Some(server.listen_direct_tls(addr).await?),
        None => None,
    };
    let web = match args.web {
        Some(page) => {
            let (page_dir, pkg_dir) = web::page_dirs(page, args.pkg)?;
            let xmpp = web::XmppEndpoint {
                config,
                registry: server.registry.clone(),
            };
            let page = web::WebConfig::for_serve(page_dir, pkg_dir, xmpp, server.addr, &names);
            Some(web::WebServer::start(args.http, page).await?)
        }
        None => None,
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "xmpp-handshake serve: {} on {}",
        args.domain, server.addr
    );
    if let Some(addr) = direct_tls {
        let _ = writeln!(out, "  Direct TLS (XEP-0368, ALPN xmpp-client) on {addr}");
    }
    if args.s2s.enabled() {
        match s2s_listen {
            Some(addr) => {
                let _ = writeln!(out, "  server-to-server (federation) on {addr}");
            }
            None => {
                let _ = writeln!(out, "  server-to-server: outgoing only");
            }
        }
    }
    let _ = writeln!(out, "  users: {}", names.join(", "));
    let _ = writeln!(
        out,
        "  certificate SHA-256 {}{}",
        identity.leaf_fingerprint(),
        if identity.ca_pem.is_some() {
            " (generated)"
        } else {
            ""
        }
    );
    if let Some(path) = &args.write_ca {
        let _ = writeln!(out, "  CA certificate written to {}", path.display());
    }
    if let Some(web) = &web {
        let _ = writeln!(out, "  demo page: open {}", web.url());
        let _ = writeln!(
            out,
            "  XMPP over WebSocket (RFC 7395): ws://{}/xmpp-websocket; bridge: ws://{}/bridge",
            web.addr, web.addr
        );
    }
    let _ = writeln!(
        out,
        "  STARTTLS required; SCRAM-SHA-256(-PLUS), SCRAM-SHA-1(-PLUS), PLAIN over TLS"
    );
    let _ = out.flush();
    drop(out);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = server.wait() => Err(Failure::protocol("the server stopped")),
    }
}

async fn run_bridge(args: BridgeArgs) -> Result<(), Failure> {
    let allow = args
        .allow
        .iter()
        .map(|a| bridge::Target::parse(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::usage)?;
    let mut config = bridge::BridgeConfig::new(allow.clone());
    config.idle_timeout = std::time::Duration::from_secs(args.idle_timeout.max(1));
    config.max_connections = args.max_connections.max(1);
    config.log = true;
    config.origins = if args.allow_origin.iter().any(|o| o == "*") {
        bridge::Origins::Any
    } else if args.allow_origin.is_empty() {
        bridge::Origins::SameOrigin
    } else {
        bridge::Origins::List(args.allow_origin.clone())
    };
    let relay = bridge::Bridge::new(config);
    let web = match args.web {
        Some(page) => {
            let (page_dir, pkg_dir) = web::page_dirs(page, args.pkg)?;
            let page_config = serde_json::json!({
                "target": allow.first().map(ToString::to_string),
            });
            web::WebConfig {
                page_dir,
                pkg_dir,
                bridge: relay,
                xmpp: None,
                page_config,
            }
        }
        None => {
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| Failure::protocol(format!("listening on {}: {e}", args.listen)))?;
            println!(
                "xmpp-handshake bridge: ws://{}/bridge?target=HOST:PORT to {}",
                listener.local_addr()?,
                list(&allow)
            );
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => Ok(()),
                r = bridge::serve(listener, bridge::router(relay)) =>
                    r.map_err(|e| Failure::protocol(format!("bridge: {e}"))),
            };
        }
    };
    let server = web::WebServer::start(args.listen, web).await?;
    println!(
        "xmpp-handshake bridge: ws://{}/bridge?target=HOST:PORT to {}",
        server.addr,
        list(&allow)
    );
    println!("  demo page: open {}", server.url());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = server.wait() => Err(Failure::protocol("the bridge stopped")),
    }
}

fn list(targets: &[bridge::Target]) -> String {
    targets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn hash_password(args: HashPasswordArgs) -> Result<(), Failure> {
    if let Err(e) = xmpp_handshake_core::jid::check_local(&args.name) {
        return Err(Failure::usage(format!("the name must be a localpart: {e}")));
    }
    if args.iterations < 4096 {
        return Err(Failure::usage("use at least 4096 iterations (RFC 7677 §4)"));
    }
    let password = connect::password(&args.name)?;
    let mut out = std::io::stdout().lock();
    for line in users::hash_password(
        &args.name,
        &password,
        args.iterations,
        &mut rand_core::OsRng,
    ) {
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}
