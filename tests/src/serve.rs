//! Our own server, `xmpp-handshake serve`, as a [`ServerInfo`] like the others: for the
//! benchmark's peers (which take a host, a port and a CA file) and for our clients on the
//! same footing. Its certificate is a [`TestPki`] leaf given with `--cert`/`--key`; it
//! listens with STARTTLS required and on a Direct TLS port (XEP-0368), with its defaults:
//! SASL2, Bind 2, FAST tokens and TLS 1.3 0-RTT there (issue 16).

use std::ops::Deref;
use std::process::Command;
use std::time::Duration;

use crate::process::{self, ServerProcess};
use crate::{cli_binary, default_users, Error, Ports, Result, ServerDir, ServerInfo, ServerKind};
use crate::{TestPki, TlsPolicy};

/// A running `serve` for `example.com` with [`default_users`].
#[derive(Debug)]
pub struct Serve {
    info: ServerInfo,
    // Field order matters: the process is stopped before the dir is removed.
    process: ServerProcess,
    _dir: ServerDir,
}

impl Deref for Serve {
    type Target = ServerInfo;
    fn deref(&self) -> &ServerInfo {
        &self.info
    }
}

impl Serve {
    /// Starts `serve` with `extra` arguments after the listeners, users and certificate.
    pub fn start(extra: &[&str]) -> Result<Self> {
        crate::start_with_retries("Address already in use", || Self::start_once(extra))
    }

    fn start_once(extra: &[&str]) -> Result<Self> {
        const DOMAIN: &str = "example.com";
        let dir = ServerDir::new("xmpp-handshake-serve-")?;
        let root = dir.path();
        let io = |what: &str, e| Error::io(format!("{what} in {}", root.display()), e);
        let pki = TestPki::generate(DOMAIN).map_err(|e| Error::Startup {
            server: "serve".into(),
            message: format!("certificate: {e}"),
            dir: root.clone(),
            log: String::new(),
        })?;
        let (ca_path, cert, key) = (
            root.join("ca.pem"),
            root.join("cert.pem"),
            root.join("key.pem"),
        );
        for (path, text) in [
            (&ca_path, &pki.ca_pem),
            (&cert, &pki.chain_pem()),
            (&key, &pki.leaf_key_pem),
        ] {
            std::fs::write(path, text).map_err(|e| io("writing the certificate", e))?;
        }
        let p = process::free_ports(2).map_err(|e| io("picking ports", e))?;
        let ports = Ports {
            c2s: p[0],
            c2s_direct_tls: p[1],
            s2s: 0,
            http: 0,
            https: 0,
        };
        let users = default_users();
        let mut cmd = Command::new(cli_binary());
        cmd.args(["serve", "--domain", DOMAIN])
            .args(["--listen", &format!("127.0.0.1:{}", ports.c2s)])
            .args([
                "--direct-tls-listen",
                &format!("127.0.0.1:{}", ports.c2s_direct_tls),
            ])
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key);
        for user in &users {
            cmd.args(["--user", &format!("{}:{}", user.name, user.password)]);
        }
        cmd.args(extra);
        let console_log_path = root.join("console.log");
        let mut process = ServerProcess::spawn("serve", cmd, &console_log_path, Some(&root))?;
        let info = ServerInfo {
            kind: ServerKind::Serve,
            domain: DOMAIN.into(),
            ports,
            pki,
            ca_path,
            users,
            log_path: console_log_path.clone(),
            console_log_path,
            config_path: root.clone(),
            dir: root.clone(),
            tls: TlsPolicy::Required,
        };
        let addrs = [info.c2s_addr(), info.direct_tls_addr()];
        if let Err(message) = process.wait_ready(&addrs, Duration::from_secs(20)) {
            process.stop(Duration::from_secs(5));
            return Err(Error::Startup {
                server: "serve".into(),
                message,
                dir: root,
                log: process::log_tail(&info.log_path, 40),
            });
        }
        Ok(Serve {
            info,
            process,
            _dir: dir,
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(5));
    }
}
