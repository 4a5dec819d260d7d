//! The `xmpp-handshake connect` binary as the CLI suites run it against a harness server.

use std::path::Path;
use std::process::{Command, Output};

use crate::{cli_binary, ServerInfo};

/// One `connect --send` (to ourselves) as `user` with `password`, config dir `config`
/// (`XDG_CONFIG_HOME`: the login cache and pins live there), to the server's STARTTLS port
/// (its Direct TLS port with `--direct-tls` in `extra`), trusting the server's CA.
pub fn connect_send(
    server: &ServerInfo,
    user: &str,
    password: &str,
    config: &Path,
    extra: &[&str],
) -> Output {
    let jid = format!("{user}@{}", server.domain);
    let port = if extra.contains(&"--direct-tls") {
        server.ports.c2s_direct_tls
    } else {
        server.ports.c2s
    }
    .to_string();
    let mut args = vec!["connect", &jid, "--host", "127.0.0.1", "--port", &port];
    args.extend(extra);
    let ca = server.ca_path.display().to_string();
    args.extend(["--ca", &ca, "--send", &jid, "hi", "--timeout", "20"]);
    Command::new(cli_binary())
        .args(&args)
        .env("XMPP_PASSWORD", password)
        .env("XDG_CONFIG_HOME", config)
        .output()
        .expect("the binary runs")
}

/// The summary line (`xmpp-handshake: online as ...`) of a run that must have exited 0.
pub fn online(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("xmpp-handshake: online as "))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    eprintln!("{line}");
    line.to_string()
}
