//! ejabberd (Debian's 23.01) on loopback.
//!
//! Runs as user `ejabberd` via `ejabberdctl --config-dir DIR ... foreground`, with its own
//! `ejabberdctl.cfg` (node name, `ERL_DIST_PORT`, `INET_DIST_INTERFACE=127.0.0.1`: no epmd),
//! config, spool (Mnesia), logs and Erlang cookie (`HOME`) in the temp dir. Passwords are
//! stored as SCRAM with [`ScramHash`] (`auth_scram_hash`, default SHA-256: the server then
//! offers SCRAM-SHA-256(-PLUS) instead of SCRAM-SHA-1(-PLUS)). Stopped on drop by SIGTERM
//! to the process group (a clean `init:stop()`), SIGKILL if it lingers.

use std::fmt::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::process::{self, RunAs, ServerProcess};
use crate::{
    default_users, Error, Ports, Result, ServerDir, ServerInfo, ServerKind, TestPki, TlsPolicy,
    User,
};

const INSTALL_HINT: &str = "install it with `apt-get install ejabberd` (tests/run does this)";

/// `auth_scram_hash`: how ejabberd stores passwords, hence which SCRAM it offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-1 and SCRAM-SHA-1-PLUS.
    Sha1,
    /// SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (default: Prosody already covers SHA-1).
    #[default]
    Sha256,
}

/// How to configure an [`Ejabberd`].
#[derive(Clone, Debug)]
pub struct EjabberdOptions {
    /// The served host, certificate name. Default `localhost`.
    pub domain: String,
    /// STARTTLS required (default) or optional.
    pub tls: TlsPolicy,
    /// Accounts registered right after start. Default [`default_users`].
    pub users: Vec<User>,
    /// `auth_scram_hash`. Default SHA-256.
    pub scram_hash: ScramHash,
    /// `loglevel: debug` instead of `info`.
    pub debug_log: bool,
    /// Extra top-level YAML (must not repeat a key the harness writes).
    pub extra_config: String,
    /// How long to wait for the ports. Default 30 s.
    pub start_timeout: Duration,
}

impl Default for EjabberdOptions {
    fn default() -> Self {
        EjabberdOptions {
            domain: "localhost".into(),
            tls: TlsPolicy::Required,
            users: default_users(),
            scram_hash: ScramHash::Sha256,
            debug_log: false,
            extra_config: String::new(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// A running ejabberd; stopped when dropped. Derefs to [`ServerInfo`].
#[derive(Debug)]
pub struct Ejabberd {
    info: ServerInfo,
    run_as: RunAs,
    scram_hash: ScramHash,
    // Field order matters: the process is stopped before the dir is removed.
    process: ServerProcess,
    dir: ServerDir,
}

impl Deref for Ejabberd {
    type Target = ServerInfo;
    fn deref(&self) -> &ServerInfo {
        &self.info
    }
}

impl Ejabberd {
    /// Start an ejabberd (about 2 s) and register the users.
    pub fn start(opts: EjabberdOptions) -> Result<Self> {
        check_installed()?;
        crate::start_with_retries("eaddrinuse", || Self::start_once(&opts))
    }

    /// [`Ejabberd::start`], or a printed skip (`None`) when ejabberd cannot run here and
    /// `XMPP_HANDSHAKE_REQUIRE_SERVERS` is not set. Panics on any other error.
    pub fn start_or_skip(opts: EjabberdOptions) -> Option<Self> {
        crate::or_skip(Self::start(opts))
    }

    /// One ejabberd with default options per test binary, started on first use and stopped
    /// (SIGTERM to its process group) when the binary exits. `None` = skipped.
    pub fn shared() -> Option<&'static Ejabberd> {
        static SHARED: OnceLock<Option<Ejabberd>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let mut e = Self::start_or_skip(EjabberdOptions::default())?;
                crate::stop_at_exit(&e.process, &mut e.dir);
                Some(e)
            })
            .as_ref()
    }

    /// The `auth_scram_hash` this server runs with.
    pub fn scram_hash(&self) -> ScramHash {
        self.scram_hash
    }

    /// Server process id (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Register another account (`ejabberdctl register`).
    pub fn register(&self, name: &str, password: &str) -> Result<()> {
        register(
            &self.run_as,
            &self.info.dir,
            name,
            &self.info.domain,
            password,
        )
    }

    /// Run any `ejabberdctl` command against this node (e.g. `["connected_users"]`).
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = ctl_command(&self.run_as, &self.info.dir);
        cmd.args(args);
        process::run_bounded(
            cmd,
            &format!("ejabberdctl {}", args.join(" ")),
            Duration::from_secs(30),
        )
    }

    /// Stop now (dropping does the same): SIGTERM to the process group, which Erlang/OTP
    /// turns into `init:stop()`, the same clean shutdown as `ejabberdctl stop` (Mnesia
    /// closed, "is stopped" logged) in ~1 s without starting a second VM; SIGKILL after 10 s.
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(10));
    }

    fn start_once(opts: &EjabberdOptions) -> Result<Self> {
        let run_as = RunAs::system_user("ejabberd")?;
        let mut dir = ServerDir::new("xmpp-handshake-ejabberd-")?;
        let root = dir.path();
        let io = |what: &str, e| Error::io(format!("{what} in {}", root.display()), e);
        run_as.own(&root).map_err(|e| io("chown", e))?;
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| io("chmod", e))?;
        for d in ["logs", "spool"] {
            process::make_dir(&run_as, &root.join(d)).map_err(|e| io("mkdir", e))?;
        }

        let pki = TestPki::generate(&opts.domain)?;
        let server_pem = root.join("server.pem");
        let ca_path = root.join("ca.pem");
        let pem = format!("{}{}", pki.leaf_key_pem, pki.chain_pem());
        process::write_file(&run_as, &server_pem, pem.as_bytes(), 0o600)
            .map_err(|e| io("write server.pem", e))?;
        process::write_file(&run_as, &ca_path, pki.ca_pem.as_bytes(), 0o644)
            .map_err(|e| io("write ca", e))?;

        let p = process::free_ports(6).map_err(|e| io("picking ports", e))?;
        let ports = Ports {
            c2s: p[0],
            c2s_direct_tls: p[1],
            s2s: p[2],
            http: p[3],
            https: p[4],
        };
        let dist_port = p[5];
        let config_path = root.join("ejabberd.yml");
        let config = config(opts, &server_pem, &ports);
        process::write_file(&run_as, &config_path, config.as_bytes(), 0o644)
            .map_err(|e| io("write config", e))?;
        let ctl_cfg = format!(
            "# written by the xmpp-handshake test harness\n\
             ERLANG_NODE=xh{c2s}@localhost\n\
             INET_DIST_INTERFACE=127.0.0.1\n\
             ERL_DIST_PORT={dist_port}\n\
             EJABBERD_PID_PATH={pid}\n\
             EJABBERD_BYPASS_WARNINGS=true\n\
             ERL_OPTIONS=\"-env ERL_CRASH_DUMP_BYTES 0\"\n",
            c2s = ports.c2s,
            pid = root.join("ejabberd.pid").display(),
        );
        process::write_file(
            &run_as,
            &root.join("ejabberdctl.cfg"),
            ctl_cfg.as_bytes(),
            0o644,
        )
        .map_err(|e| io("write ejabberdctl.cfg", e))?;
        process::write_file(
            &run_as,
            &root.join("inetrc"),
            b"{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1}, [\"localhost\"]}.\n",
            0o644,
        )
        .map_err(|e| io("write inetrc", e))?;

        let log_path = root.join("logs").join("ejabberd.log");
        let console_log_path = root.join("console.log");
        let mut cmd = ctl_command(&run_as, &root);
        cmd.arg("foreground");
        let mut process = ServerProcess::spawn("ejabberd", cmd, &console_log_path, Some(&root))?;

        let info = ServerInfo {
            kind: ServerKind::Ejabberd,
            domain: opts.domain.clone(),
            ports,
            pki,
            ca_path,
            users: opts.users.clone(),
            log_path,
            console_log_path,
            config_path,
            dir: root.clone(),
            tls: opts.tls,
        };
        let addrs = [
            info.c2s_addr(),
            info.direct_tls_addr(),
            info.s2s_addr(),
            info.addr(ports.http),
            info.addr(ports.https),
        ];
        let mut result = process.wait_ready(&addrs, opts.start_timeout);
        if result.is_ok() {
            // Each ejabberdctl call boots an Erlang VM (~0.8 s): register in parallel.
            let deadline = Instant::now() + opts.start_timeout;
            let errors: Vec<String> = std::thread::scope(|scope| {
                let handles: Vec<_> = opts
                    .users
                    .iter()
                    .map(|u| {
                        let (run_as, root, domain) = (&run_as, &root, &opts.domain);
                        scope.spawn(move || register_until(run_as, root, u, domain, deadline))
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| match h.join() {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some("registration thread panicked".into()),
                    })
                    .collect()
            });
            if !errors.is_empty() {
                result = Err(errors.join("; "));
            }
        }
        if let Err(message) = result {
            process.stop(Duration::from_secs(5));
            let log = format!(
                "{}\n--- console ---\n{}",
                process::log_tail(&info.log_path, 60),
                process::log_tail(&info.console_log_path, 30)
            );
            let kept = if crate::env_flag(crate::KEEP_DIRS_ENV) {
                dir.keep()
            } else {
                root
            };
            return Err(Error::Startup {
                server: "ejabberd".into(),
                message,
                dir: kept,
                log,
            });
        }
        Ok(Ejabberd {
            info,
            run_as,
            scram_hash: opts.scram_hash,
            process,
            dir,
        })
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check_installed() -> Result<()> {
    if process::find_program("ejabberdctl").is_none() {
        return Err(Error::Unavailable {
            server: "ejabberd".into(),
            reason: format!("`ejabberdctl` not found; {INSTALL_HINT}"),
        });
    }
    if !process::is_root() {
        return Err(Error::Unavailable {
            server: "ejabberd".into(),
            reason: "ejabberdctl only runs as root or as user ejabberd; run the tests as root \
                     (tests/run in CI does)"
                .into(),
        });
    }
    if process::find_program("setpriv").is_none() {
        return Err(Error::Unavailable {
            server: "ejabberd".into(),
            reason: "`setpriv` (util-linux) not found: needed to run ejabberd as user ejabberd"
                .into(),
        });
    }
    Ok(())
}

fn ctl_command(run_as: &RunAs, root: &Path) -> Command {
    let ctl = process::find_program("ejabberdctl").unwrap_or_else(|| PathBuf::from("ejabberdctl"));
    let mut cmd = run_as.command(ctl);
    cmd.env("HOME", root)
        .arg("--config-dir")
        .arg(root)
        .arg("--config")
        .arg(root.join("ejabberd.yml"))
        .arg("--ctl-config")
        .arg(root.join("ejabberdctl.cfg"))
        .arg("--logs")
        .arg(root.join("logs"))
        .arg("--spool")
        .arg(root.join("spool"))
        .current_dir(root);
    cmd
}

fn register(run_as: &RunAs, root: &Path, name: &str, domain: &str, password: &str) -> Result<()> {
    let mut cmd = ctl_command(run_as, root);
    cmd.args(["register", name, domain, password]);
    process::run_bounded(
        cmd,
        &format!("ejabberdctl register {name} {domain}"),
        Duration::from_secs(30),
    )
    .map(|_| ())
}

/// Right after the ports open the node may not take ctl commands yet: retry until `deadline`.
fn register_until(
    run_as: &RunAs,
    root: &Path,
    u: &User,
    domain: &str,
    deadline: Instant,
) -> Result<()> {
    loop {
        match register(run_as, root, &u.name, domain, &u.password) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => sleep(Duration::from_millis(250)),
        }
    }
}

/// YAML double-quoted string.
fn yaml(s: impl AsRef<str>) -> String {
    let mut out = String::from("\"");
    for c in s.as_ref().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn config(opts: &EjabberdOptions, server_pem: &Path, ports: &Ports) -> String {
    let required = opts.tls == TlsPolicy::Required;
    let hash = match opts.scram_hash {
        ScramHash::Sha1 => "sha",
        ScramHash::Sha256 => "sha256",
    };
    let mut c = String::new();
    let _ = write!(
        c,
        r#"# written by the xmpp-handshake test harness
hosts:
  - {domain}
loglevel: {level}
log_rotate_count: 0
hide_sensitive_log_data: false
certfiles:
  - {pem}
acme:
  auto: false
auth_method: internal
auth_password_format: scram
auth_scram_hash: {hash}
disable_sasl_mechanisms:
  - "digest-md5"
  - "x-oauth2"
c2s_protocol_options:
  - "no_sslv3"
  - "no_tlsv1"
  - "no_tlsv1_1"
  - "no_compression"
s2s_use_starttls: {s2s_tls}
listen:
  -
    port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 128
    max_stanza_size: 262144
    starttls: true
    starttls_required: {required}
  -
    port: {direct}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 128
    max_stanza_size: 262144
    tls: true
  -
    port: {s2s}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
    backlog: 128
  -
    port: {http}
    ip: "127.0.0.1"
    module: ejabberd_http
    backlog: 128
    request_handlers:
      /xmpp-websocket: ejabberd_http_ws
  -
    port: {https}
    ip: "127.0.0.1"
    module: ejabberd_http
    backlog: 128
    tls: true
    request_handlers:
      /xmpp-websocket: ejabberd_http_ws
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
{extra}
"#,
        domain = yaml(&opts.domain),
        level = if opts.debug_log { "debug" } else { "info" },
        pem = yaml(server_pem.to_string_lossy()),
        hash = hash,
        s2s_tls = if required { "required" } else { "optional" },
        c2s = ports.c2s,
        direct = ports.c2s_direct_tls,
        s2s = ports.s2s,
        http = ports.http,
        https = ports.https,
        required = required,
        extra = opts.extra_config,
    );
    c
}
