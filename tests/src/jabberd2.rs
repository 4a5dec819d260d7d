//! jabberd2 (Debian's 2.7.0) on loopback: the third server, an older code base with its own
//! XML and SASL stacks (gsasl).
//!
//! jabberd2 is a router and components: `jabberd2-router`, `jabberd2-sm` (sessions),
//! `jabberd2-c2s` (client connections) and `jabberd2-s2s` (server connections: STARTTLS and
//! dialback, no SASL EXTERNAL) run from one `sh` in one process group, their configs,
//! certificate, storage (the `fs` driver) and logs (stdout) in the temp dir. Accounts come
//! from the `pipe` authenticator (c2s/authreg_pipe.c's line protocol: `USER-EXISTS`,
//! `GET-PASSWORD`, `CHECK-PASSWORD`), a small `sh` script reading a `name password` file, so
//! the server knows each password in plain and can offer every mechanism gsasl has for it:
//! SCRAM-SHA-1, DIGEST-MD5, PLAIN. Which ones it offers before and after TLS is
//! [`Jabberd2Options::mechanisms`]. STARTTLS on the c2s port and legacy Direct TLS on its
//! `ssl-port`. Stopped on drop (SIGTERM, then SIGKILL, to the group).

use std::fmt::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{self, RunAs, ServerProcess};
use crate::{
    default_users, Error, Ports, Result, ServerDir, ServerInfo, ServerKind, TestPki, User,
};

const INSTALL_HINT: &str = "install it with `apt-get install jabberd2` (tests/run does this)";

/// The three programs, in the order they start.
const PROGRAMS: [&str; 4] = [
    "jabberd2-router",
    "jabberd2-sm",
    "jabberd2-c2s",
    "jabberd2-s2s",
];

/// How to configure a [`Jabberd2`].
#[derive(Clone, Debug)]
pub struct Jabberd2Options {
    /// The served host, certificate name. Default `jabberd2.test`.
    pub domain: String,
    /// Accounts. Default [`default_users`].
    pub users: Vec<User>,
    /// The SASL mechanisms offered on an encrypted stream, as jabberd2's config names them
    /// (`scram-sha-1`, `digest-md5`, `plain`). Default all three. Nothing is offered before
    /// TLS: STARTTLS is required.
    pub mechanisms: Vec<&'static str>,
    /// How long to wait for the components. Default 20 s.
    pub start_timeout: Duration,
    /// A hosts file for the s2s component only (it finds peer servers through DNS SRV,
    /// then `/etc/hosts`): bind-mounted over `/etc/hosts` in a mount namespace of its own,
    /// so a test can give peer domains loopback addresses without touching the machine's.
    /// Default none.
    pub s2s_hosts: Option<PathBuf>,
}

impl Default for Jabberd2Options {
    fn default() -> Self {
        Jabberd2Options {
            domain: "jabberd2.test".into(),
            users: default_users(),
            mechanisms: vec!["scram-sha-1", "digest-md5", "plain"],
            start_timeout: Duration::from_secs(20),
            s2s_hosts: None,
        }
    }
}

/// A running jabberd2; stopped when dropped. Derefs to [`ServerInfo`].
#[derive(Debug)]
pub struct Jabberd2 {
    info: ServerInfo,
    // Field order matters: the processes are stopped before the dir is removed.
    process: ServerProcess,
    _dir: ServerDir,
}

impl Deref for Jabberd2 {
    type Target = ServerInfo;
    fn deref(&self) -> &ServerInfo {
        &self.info
    }
}

impl Jabberd2 {
    /// Start router, sm and c2s (about 1 s).
    pub fn start(opts: Jabberd2Options) -> Result<Self> {
        check_installed()?;
        modules_dir()?;
        crate::start_with_retries("failed to listen", || Self::start_once(&opts))
    }

    /// [`Jabberd2::start`], or a printed skip (`None`) when jabberd2 is not installed and
    /// `XMPP_HANDSHAKE_REQUIRE_SERVERS` is not set. Panics on any other error.
    pub fn start_or_skip(opts: Jabberd2Options) -> Option<Self> {
        crate::or_skip(Self::start(opts))
    }

    fn start_once(opts: &Jabberd2Options) -> Result<Self> {
        let run_as = RunAs::Current;
        let programs = check_installed()?;
        let modules = modules_dir()?;
        let dir = ServerDir::new("xmpp-handshake-jabberd2-")?;
        let root = dir.path();
        let io = |what: &str, e| Error::io(format!("{what} in {}", root.display()), e);
        process::make_dir(&run_as, &root.join("fs")).map_err(|e| io("mkdir", e))?;

        let pki = TestPki::generate(&opts.domain)?;
        let ca_path = root.join("ca.pem");
        let pem = format!("{}{}", pki.chain_pem(), pki.leaf_key_pem);
        process::write_file(&run_as, &root.join("server.pem"), pem.as_bytes(), 0o600)
            .map_err(|e| io("write server.pem", e))?;
        process::write_file(&run_as, &ca_path, pki.ca_pem.as_bytes(), 0o644)
            .map_err(|e| io("write ca", e))?;
        let users: String = opts
            .users
            .iter()
            .map(|u| format!("{} {}\n", u.name, u.password))
            .collect();
        process::write_file(&run_as, &root.join("users"), users.as_bytes(), 0o600)
            .map_err(|e| io("write users", e))?;
        process::write_file(&run_as, &root.join("auth.sh"), AUTH_PIPE.as_bytes(), 0o700)
            .map_err(|e| io("write auth.sh", e))?;

        let p = process::free_ports(4).map_err(|e| io("picking ports", e))?;
        let ports = Ports {
            c2s: p[0],
            c2s_direct_tls: p[1],
            s2s: p[3],
            http: 0,
            https: 0,
        };
        let router_port = p[2];
        let secret = format!("router-{router_port}");
        let files = [
            ("router.xml", router_config(&root, router_port, &secret)),
            (
                "router-users.xml",
                format!(
                    "<users><user><name>jabberd</name><secret>{secret}</secret></user></users>\n"
                ),
            ),
            (
                "sm.xml",
                sm_config(&root, &modules, &opts.domain, router_port, &secret),
            ),
            (
                "c2s.xml",
                c2s_config(&root, &modules, opts, &ports, router_port, &secret),
            ),
            (
                "s2s.xml",
                s2s_config(&root, &opts.domain, ports.s2s, router_port, &secret),
            ),
        ];
        for (name, text) in &files {
            process::write_file(&run_as, &root.join(name), text.as_bytes(), 0o600)
                .map_err(|e| io("write config", e))?;
        }

        let console_log_path = root.join("console.log");
        // The router first; sm and c2s retry their connection to it (`<retry>`).
        let mut cmd = Command::new("sh");
        cmd.current_dir(&root)
            .arg("-c")
            .arg(
                r#""$1" -c router.xml & sleep 0.3
                "$2" -c sm.xml & "$3" -c c2s.xml &
                if [ -n "$5" ]; then
                  unshare --mount --propagation private sh -c \
                    'mount --bind "$0" /etc/hosts && exec "$1" -c s2s.xml' "$5" "$4" &
                else
                  "$4" -c s2s.xml &
                fi
                wait"#,
            )
            .arg("jabberd2")
            .args(&programs)
            .arg(opts.s2s_hosts.as_deref().unwrap_or(Path::new("")));
        let mut process = ServerProcess::spawn("jabberd2", cmd, &console_log_path, Some(&root))?;
        let info = ServerInfo {
            kind: ServerKind::Jabberd2,
            domain: opts.domain.clone(),
            ports,
            pki,
            ca_path,
            users: opts.users.clone(),
            log_path: console_log_path.clone(),
            console_log_path,
            config_path: root.join("c2s.xml"),
            dir: root.clone(),
            tls: crate::TlsPolicy::Required,
        };
        let addrs = [info.c2s_addr(), info.direct_tls_addr(), info.s2s_addr()];
        let mut result = process.wait_ready(&addrs, opts.start_timeout);
        if result.is_ok() {
            // c2s listens before sm has joined the router; a login then fails.
            result = wait_for_log(&info.log_path, "ready for sessions", opts.start_timeout);
        }
        if let Err(message) = result {
            process.stop(Duration::from_secs(5));
            return Err(Error::Startup {
                server: "jabberd2".into(),
                message,
                dir: root,
                log: process::log_tail(&info.log_path, 40),
            });
        }
        Ok(Jabberd2 {
            info,
            process,
            _dir: dir,
        })
    }
}

impl Drop for Jabberd2 {
    fn drop(&mut self) {
        self.process.stop(Duration::from_secs(5));
    }
}

fn check_installed() -> Result<Vec<PathBuf>> {
    PROGRAMS
        .iter()
        .map(|program| {
            process::find_program(program).ok_or_else(|| Error::Unavailable {
                server: "jabberd2".into(),
                reason: format!("`{program}` not found; {INSTALL_HINT}"),
            })
        })
        .collect()
}

/// Where the package put its modules (authreg, storage, sm): `/usr/lib/<multiarch>/jabberd2`.
fn modules_dir() -> Result<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("jabberd2"))
        .find(|dir| dir.join("authreg_pipe.so").is_file())
        .ok_or_else(|| Error::Unavailable {
            server: "jabberd2".into(),
            reason: format!("its modules (authreg_pipe.so) were not found; {INSTALL_HINT}"),
        })
}

fn wait_for_log(path: &Path, needle: &str, limit: Duration) -> std::result::Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|log| log.contains(needle)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("jabberd2 did not log {needle:?} within {limit:?}"))
}

/// The `pipe` authenticator: accounts from `users` (`name password` lines) next to it.
/// Passwords go to c2s base64-encoded (`OK <base64>`), as authreg_pipe.c reads them. That
/// code decodes into a reused buffer without terminating the string (2.7.0): a password
/// shorter than one fetched before keeps the longer one's tail, and SCRAM then fails. So
/// the encoded password carries its own NUL.
const AUTH_PIPE: &str = r#"#!/bin/sh
users="$(dirname "$0")/users"
password() { grep "^$1 " "$users" | cut -d' ' -f2-; }
echo "OK USER-EXISTS GET-PASSWORD CHECK-PASSWORD FREE"
while read -r cmd user a rest; do
  case $cmd in
  USER-EXISTS) if [ -n "$(password "$user")" ]; then echo OK; else echo NO; fi ;;
  GET-PASSWORD) p=$(password "$user")
    if [ -n "$p" ]; then echo "OK $(printf '%s\0' "$p" | base64 -w0)"; else echo NO; fi ;;
  CHECK-PASSWORD) p=$(password "$user")
    if [ -n "$p" ] && [ "$(printf %s "$p" | base64 -w0)" = "$a" ]; then echo OK; else echo NO; fi ;;
  FREE) exit 0 ;;
  *) echo NO ;;
  esac
done
"#;

/// The router connection every component makes.
fn router_link(port: u16, secret: &str) -> String {
    format!(
        "<router><ip>127.0.0.1</ip><port>{port}</port><user>jabberd</user><pass>{secret}</pass>\
         <retry><init>20</init><lost>3</lost><sleep>1</sleep></retry></router>"
    )
}

fn router_config(root: &Path, port: u16, secret: &str) -> String {
    format!(
        "<router>\n<id>router</id><pidfile>{root}/router.pid</pidfile><log type='stdout'/>\n\
         <local><ip>127.0.0.1</ip><port>{port}</port><users>{root}/router-users.xml</users>\
         <secret>{secret}</secret></local>\n\
         <check><interval>60</interval><keepalive>0</keepalive></check>\n\
         <io><max_fds>256</max_fds><limits><bytes>0</bytes><connects>0</connects></limits>\
         <access><order>allow,deny</order></access></io>\n\
         <aliases/><aci><acl type='all'><user>jabberd</user></acl></aci>\n</router>\n",
        root = root.display()
    )
}

fn sm_config(root: &Path, modules: &Path, domain: &str, router_port: u16, secret: &str) -> String {
    let chain = |id: &str, modules: &[&str]| {
        let mut s = format!("<chain id='{id}'>");
        for m in modules {
            let _ = write!(s, "<module>{m}</module>");
        }
        s + "</chain>\n"
    };
    let chains = [
        chain("sess-start", &["status"]),
        chain("sess-end", &["status"]),
        chain(
            "in-sess",
            &[
                "validate", "status", "privacy", "roster", "presence", "deliver",
            ],
        ),
        chain("in-router", &["session", "validate", "presence", "privacy"]),
        chain("out-router", &["privacy"]),
        chain("pkt-sm", &["iq-ping", "presence"]),
        chain("pkt-user", &["roster", "presence", "deliver"]),
        chain("pkt-router", &["session"]),
        chain("user-load", &["active", "roster", "privacy", "status"]),
        chain("user-create", &["active"]),
        chain("user-delete", &["active", "roster", "privacy", "status"]),
    ]
    .concat();
    format!(
        "<sm>\n<id>{domain}</id><pidfile>{root}/sm.pid</pidfile>\n{router}\n<log type='stdout'/>\n\
         <local><id>{domain}</id></local>\n\
         <storage><path>{modules}</path><driver>fs</driver><fs><path>{root}/fs</path></fs></storage>\n\
         <modules><path>{modules}</path>\n{chains}</modules>\n<user><auto-create/></user>\n</sm>\n",
        root = root.display(),
        modules = modules.display(),
        router = router_link(router_port, secret),
    )
}

fn c2s_config(
    root: &Path,
    modules: &Path,
    opts: &Jabberd2Options,
    ports: &Ports,
    router_port: u16,
    secret: &str,
) -> String {
    let mechanisms: String = opts.mechanisms.iter().map(|m| format!("<{m}/>")).collect();
    format!(
        "<c2s>\n<id>c2s</id><pidfile>{root}/c2s.pid</pidfile>\n{router}\n<log type='stdout'/>\n\
         <local><id pemfile='{root}/server.pem' require-starttls='yes'>{domain}</id>\
         <ip>127.0.0.1</ip><port>{c2s}</port><ssl-port>{ssl}</ssl-port>\
         <pemfile>{root}/server.pem</pemfile></local>\n\
         <io><max_fds>256</max_fds><limits><bytes>0</bytes><stanzas>0</stanzas>\
         <connects>0</connects><stanzasize>65535</stanzasize></limits>\
         <access><order>allow,deny</order></access>\
         <check><interval>0</interval><idle>0</idle><keepalive>0</keepalive></check></io>\n\
         <authreg><path>{modules}</path><module>pipe</module>\
         <mechanisms><sasl/></mechanisms>\
         <ssl-mechanisms><sasl>{mechanisms}</sasl></ssl-mechanisms>\
         <pipe><exec>{root}/auth.sh</exec></pipe></authreg>\n</c2s>\n",
        root = root.display(),
        modules = modules.display(),
        router = router_link(router_port, secret),
        domain = opts.domain,
        c2s = ports.c2s,
        ssl = ports.c2s_direct_tls,
    )
}

fn s2s_config(root: &Path, domain: &str, port: u16, router_port: u16, secret: &str) -> String {
    format!(
        "<s2s>\n<id>s2s</id><pidfile>{root}/s2s.pid</pidfile>\n{router}\n<log type='stdout'/>\n\
         <local><id>{domain}</id><ip>127.0.0.1</ip><port>{port}</port>\
         <pemfile>{root}/server.pem</pemfile></local>\n\
         <io><max_fds>256</max_fds><limits><stanzasize>65535</stanzasize></limits></io>\n\
         <check><interval>60</interval><queue>60</queue><retry>300</retry><idle>86400</idle>\
         <keepalive>0</keepalive><dnscache>300</dnscache></check>\n\
         <lookup><srv>xmpp-server</srv><min-ttl>30</min-ttl><max-ttl>86400</max-ttl>\
         <etc-hosts-ttl>86400</etc-hosts-ttl><bad-host-timeout>3600</bad-host-timeout></lookup>\n\
         <security/>\n</s2s>\n",
        root = root.display(),
        router = router_link(router_port, secret),
    )
}
