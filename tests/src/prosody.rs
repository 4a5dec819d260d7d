//! Prosody (Debian's 0.12) on loopback.
//!
//! Config: only the modules a handshake needs (no mod_limits, so no c2s rate limit), Nagle
//! off, internal_hashed auth (SCRAM), internal storage in the temp dir, mod_websocket on the
//! http and https ports, c2s_direct_tls_ports for XEP-0368, log to `prosody.log` in the temp
//! dir. Runs as user `prosody` (Prosody refuses root) in the foreground (`prosody -F`).

use std::fmt::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{self, RunAs, ServerProcess};
use crate::{
    default_users, Error, Ports, Result, ServerDir, ServerInfo, ServerKind, TestPki, TlsPolicy,
    User,
};

const INSTALL_HINT: &str = "install it with `apt-get install prosody` (tests/run does this)";

/// How to configure a [`Prosody`].
#[derive(Clone, Debug)]
pub struct ProsodyOptions {
    /// VirtualHost name, certificate name. Default `localhost`.
    pub domain: String,
    /// STARTTLS required (default) or optional, c2s and s2s.
    pub tls: TlsPolicy,
    /// Accounts registered before the server starts. Default [`default_users`].
    pub users: Vec<User>,
    /// `consider_websocket_secure`: treat plain `ws://` as encrypted, so SASL is offered on
    /// the http port although TLS is required. Default true.
    pub websocket_secure: bool,
    /// Log at debug level (every stanza). Default false (info).
    pub debug_log: bool,
    /// Extra Lua lines for the global section.
    pub extra_global_config: String,
    /// Extra Lua lines inside the VirtualHost section.
    pub extra_host_config: String,
    /// How long to wait for the ports. Default 30 s.
    pub start_timeout: Duration,
    /// More VirtualHosts, each presenting its own certificate. Default none.
    pub extra_hosts: Vec<ExtraHost>,
    /// Load Debian's prosody-modules SASL2 family on the main host: `mod_sasl2`
    /// (XEP-0388), `mod_sasl2_bind2` (XEP-0386), `mod_sasl2_fast` (XEP-0484), with
    /// `mod_smacks` and the harness's `mod_sasl2_compat` shim (see that file). Not
    /// `mod_sasl2_sm`: it needs a newer mod_smacks than 0.12.3's.
    pub sasl2_modules: bool,
}

/// Where Debian's `prosody-modules` puts `mod_NAME/mod_NAME.lua`.
pub const PROSODY_MODULES: &str = "/usr/lib/prosody/modules";

const SASL2_COMPAT: &str = include_str!("prosody/mod_sasl2_compat.lua");

/// A further VirtualHost of a [`Prosody`] with a certificate chain and key of the test's
/// choosing (which need not name the host, be valid, or chain anywhere).
///
/// Prosody presents it on STARTTLS for streams addressed `to` this domain, and on the
/// direct TLS port for this SNI. The files are written readable by the `prosody` user
/// (the key mode 0600).
#[derive(Clone)]
pub struct ExtraHost {
    /// VirtualHost name (ASCII; an IDN in its A-label form).
    pub domain: String,
    /// What the server sends: leaf first, then any intermediates, PEM.
    pub chain_pem: String,
    /// The leaf's private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Accounts registered on this host before the server starts.
    pub users: Vec<User>,
}

impl std::fmt::Debug for ExtraHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraHost")
            .field("domain", &self.domain)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl Default for ProsodyOptions {
    fn default() -> Self {
        ProsodyOptions {
            domain: "localhost".into(),
            tls: TlsPolicy::Required,
            users: default_users(),
            websocket_secure: true,
            debug_log: false,
            extra_global_config: String::new(),
            extra_host_config: String::new(),
            start_timeout: Duration::from_secs(30),
            extra_hosts: Vec::new(),
            sasl2_modules: false,
        }
    }
}

/// A running Prosody; stopped when dropped. Derefs to [`ServerInfo`].
#[derive(Debug)]
pub struct Prosody {
    info: ServerInfo,
    run_as: RunAs,
    // Field order matters: the process is stopped before the dir is removed.
    process: ServerProcess,
    dir: ServerDir,
}

impl Deref for Prosody {
    type Target = ServerInfo;
    fn deref(&self) -> &ServerInfo {
        &self.info
    }
}

impl Prosody {
    /// Start a Prosody (a few hundred ms). Retries with new ports if a port was taken meanwhile.
    pub fn start(opts: ProsodyOptions) -> Result<Self> {
        check_installed()?;
        if opts.sasl2_modules
            && !Path::new(PROSODY_MODULES)
                .join("mod_sasl2/mod_sasl2.lua")
                .exists()
        {
            return Err(Error::Unavailable {
                server: "prosody".into(),
                reason: "mod_sasl2 not found: install it with `apt-get install prosody-modules` \
                         (tests/run does this)"
                    .into(),
            });
        }
        // "Failed to open server port N on 127.0.0.1, check that Prosody or another XMPP
        // server is not already running and using this port".
        crate::start_with_retries("Failed to open server port", || Self::start_once(&opts))
    }

    /// [`Prosody::start`], or a printed skip (`None`) when Prosody is not installed and
    /// `XMPP_HANDSHAKE_REQUIRE_SERVERS` is not set. Panics on any other error.
    pub fn start_or_skip(opts: ProsodyOptions) -> Option<Self> {
        crate::or_skip(Self::start(opts))
    }

    /// One Prosody with default options per test binary, started on first use and stopped
    /// when the binary exits. `None` = skipped (see [`Prosody::start_or_skip`]).
    pub fn shared() -> Option<&'static Prosody> {
        static SHARED: OnceLock<Option<Prosody>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let mut p = Self::start_or_skip(ProsodyOptions::default())?;
                crate::stop_at_exit(&p.process, &mut p.dir);
                Some(p)
            })
            .as_ref()
    }

    /// Register another account (`prosodyctl register`), usable at once.
    pub fn register(&self, name: &str, password: &str) -> Result<()> {
        register(
            &self.run_as,
            &self.info.config_path,
            name,
            &self.info.domain,
            password,
        )
    }

    /// Server process id (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stop now (the same as dropping, but keeps the info readable).
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(5));
    }

    fn start_once(opts: &ProsodyOptions) -> Result<Self> {
        let run_as = RunAs::system_user("prosody")?;
        let mut dir = ServerDir::new("xmpp-handshake-prosody-")?;
        let root = dir.path();
        let io = |what: &str, e| Error::io(format!("{what} in {}", root.display()), e);
        run_as.own(&root).map_err(|e| io("chown", e))?;
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| io("chmod", e))?;

        let pki = TestPki::generate(&opts.domain)?;
        let certs = root.join("certs");
        let data = root.join("data");
        process::make_dir(&run_as, &certs).map_err(|e| io("mkdir certs", e))?;
        process::make_dir(&run_as, &data).map_err(|e| io("mkdir data", e))?;
        let cert_path = certs.join(format!("{}.crt", opts.domain));
        let key_path = certs.join(format!("{}.key", opts.domain));
        let ca_path = root.join("ca.pem");
        process::write_file(&run_as, &cert_path, pki.chain_pem().as_bytes(), 0o644)
            .map_err(|e| io("write cert", e))?;
        process::write_file(&run_as, &key_path, pki.leaf_key_pem.as_bytes(), 0o600)
            .map_err(|e| io("write key", e))?;
        process::write_file(&run_as, &ca_path, pki.ca_pem.as_bytes(), 0o644)
            .map_err(|e| io("write ca", e))?;

        let p = process::free_ports(5).map_err(|e| io("picking ports", e))?;
        let ports = Ports {
            c2s: p[0],
            c2s_direct_tls: p[1],
            s2s: p[2],
            http: p[3],
            https: p[4],
        };
        let log_path = root.join("prosody.log");
        let console_log_path = root.join("console.log");
        let config_path = root.join("prosody.cfg.lua");
        let hosts = root.join("hosts");
        process::make_dir(&run_as, &hosts).map_err(|e| io("mkdir hosts", e))?;
        std::fs::set_permissions(&hosts, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| io("chmod hosts", e))?;
        let mut extra = Vec::new();
        for (i, h) in opts.extra_hosts.iter().enumerate() {
            let cert = hosts.join(format!("{i}.crt"));
            let key = hosts.join(format!("{i}.key"));
            process::write_file(&run_as, &cert, h.chain_pem.as_bytes(), 0o644)
                .map_err(|e| io("write extra host cert", e))?;
            process::write_file(&run_as, &key, h.key_pem.as_bytes(), 0o600)
                .map_err(|e| io("write extra host key", e))?;
            extra.push((h.domain.as_str(), cert, key));
        }
        if opts.sasl2_modules {
            let plugins = root.join("plugins/mod_sasl2_compat");
            process::make_dir(&run_as, &root.join("plugins"))
                .map_err(|e| io("mkdir plugins", e))?;
            process::make_dir(&run_as, &plugins).map_err(|e| io("mkdir plugins", e))?;
            process::write_file(
                &run_as,
                &plugins.join("mod_sasl2_compat.lua"),
                SASL2_COMPAT.as_bytes(),
                0o644,
            )
            .map_err(|e| io("write mod_sasl2_compat", e))?;
        }
        let config = config(
            opts, &root, &cert_path, &key_path, &log_path, &ports, &extra,
        );
        process::write_file(&run_as, &config_path, config.as_bytes(), 0o644)
            .map_err(|e| io("write config", e))?;

        for u in &opts.users {
            register(&run_as, &config_path, &u.name, &opts.domain, &u.password)?;
        }
        for h in &opts.extra_hosts {
            for u in &h.users {
                register(&run_as, &config_path, &u.name, &h.domain, &u.password)?;
            }
        }

        let mut cmd = run_as.command("prosody");
        cmd.arg("-F")
            .arg("--config")
            .arg(&config_path)
            .current_dir(&root);
        let mut process = ServerProcess::spawn("prosody", cmd, &console_log_path, Some(&root))?;

        let info = ServerInfo {
            kind: ServerKind::Prosody,
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
        let ready = process.wait_ready(&addrs, opts.start_timeout);
        // Prosody logs a port it could not bind and runs on: that is a failure too.
        let log = process::log_tail(&info.log_path, 60);
        let ready = ready.and_then(|()| {
            if log.contains("Failed to open server port") {
                Err("a port could not be bound".to_string())
            } else {
                Ok(())
            }
        });
        if let Err(message) = ready {
            process.stop(Duration::from_secs(2));
            let log = format!(
                "{}\n--- console ---\n{}",
                process::log_tail(&info.log_path, 60),
                process::log_tail(&info.console_log_path, 20)
            );
            let kept = if crate::env_flag(crate::KEEP_DIRS_ENV) {
                dir.keep()
            } else {
                root
            };
            return Err(Error::Startup {
                server: "prosody".into(),
                message,
                dir: kept,
                log,
            });
        }
        Ok(Prosody {
            info,
            run_as,
            process,
            dir,
        })
    }
}

fn check_installed() -> Result<()> {
    for bin in ["prosody", "prosodyctl"] {
        if process::find_program(bin).is_none() {
            return Err(Error::Unavailable {
                server: "prosody".into(),
                reason: format!("`{bin}` not found on PATH; {INSTALL_HINT}"),
            });
        }
    }
    if process::is_root() && process::find_program("setpriv").is_none() {
        return Err(Error::Unavailable {
            server: "prosody".into(),
            reason: "`setpriv` (util-linux) not found: needed to run Prosody as user prosody"
                .into(),
        });
    }
    Ok(())
}

fn register(run_as: &RunAs, config: &Path, name: &str, domain: &str, password: &str) -> Result<()> {
    let mut cmd = run_as.command("prosodyctl");
    cmd.arg("--config")
        .arg(config)
        .args(["register", name, domain, password]);
    if let Some(dir) = config.parent() {
        cmd.current_dir(dir);
    }
    process::run_bounded(
        cmd,
        &format!("prosodyctl register {name} {domain}"),
        Duration::from_secs(30),
    )
    .map(|_| ())
}

/// Lua string literal.
fn lua(s: impl AsRef<str>) -> String {
    let mut out = String::from("\"");
    for c in s.as_ref().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path_lua(p: &Path) -> String {
    lua(p.to_string_lossy())
}

fn config(
    opts: &ProsodyOptions,
    root: &Path,
    cert: &Path,
    key: &Path,
    log: &Path,
    ports: &Ports,
    extra_hosts: &[(&str, PathBuf, PathBuf)],
) -> String {
    let required = opts.tls == TlsPolicy::Required;
    let level = if opts.debug_log { "debug" } else { "info" };
    let ssl_of = |cert: &Path, key: &Path| {
        format!(
            "{{ certificate = {}; key = {} }}",
            path_lua(cert),
            path_lua(key)
        )
    };
    let ssl = ssl_of(cert, key);
    let mut c = String::new();
    let _ = write!(
        c,
        r#"-- written by the xmpp-handshake test harness
pidfile = {pidfile}
data_path = {data}
certificates = {certs}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
c2s_direct_tls_ports = {{ {direct} }}
s2s_ports = {{ {s2s} }}
http_ports = {{ {http} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ {https} }}
https_interfaces = {{ "127.0.0.1" }}
component_ports = {{ }}
legacy_ssl_ports = {{ }}
network_settings = {{ nagle = false }}
modules_enabled = {{ "disco"; "roster"; "saslauth"; "tls"; "ping"; "websocket" }}
modules_disabled = {{ "limits" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = {required}
s2s_require_encryption = {required}
s2s_secure_auth = false
allow_registration = false
consider_websocket_secure = {ws_secure}
statistics = nil
log = {{ {{ levels = {{ min = "{level}" }}; to = "file"; filename = {log} }} }}
ssl = {ssl}
https_ssl = {ssl}
c2s_direct_tls_ssl = {ssl}
{plugins}
{extra_global}
VirtualHost {domain}
  ssl = {ssl}
{sasl2}
{extra_host}
"#,
        pidfile = path_lua(&root.join("prosody.pid")),
        data = path_lua(&root.join("data")),
        certs = path_lua(&root.join("certs")),
        c2s = ports.c2s,
        direct = ports.c2s_direct_tls,
        s2s = ports.s2s,
        http = ports.http,
        https = ports.https,
        ws_secure = opts.websocket_secure,
        log = path_lua(log),
        extra_global = opts.extra_global_config,
        domain = lua(&opts.domain),
        extra_host = opts.extra_host_config,
        plugins = if opts.sasl2_modules {
            format!(
                "plugin_paths = {{ {}, {} }}",
                lua(PROSODY_MODULES),
                path_lua(&root.join("plugins"))
            )
        } else {
            String::new()
        },
        sasl2 = if opts.sasl2_modules {
            "  modules_enabled = { \"smacks\"; \"sasl2\"; \"sasl2_bind2\"; \"sasl2_fast\"; \"sasl2_compat\" }"
        } else {
            ""
        },
    );
    // `ssl`: STARTTLS on c2s/s2s for streams to this host; `c2s_direct_tls_ssl`: the
    // direct TLS port's certificate for this SNI (else the global one would be inherited).
    for (domain, cert, key) in extra_hosts {
        let ssl = ssl_of(cert, key);
        let _ = write!(
            c,
            "VirtualHost {}\n  ssl = {ssl}\n  c2s_direct_tls_ssl = {ssl}\n",
            lua(domain)
        );
    }
    c
}
