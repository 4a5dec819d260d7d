//! The command line (clap derive): `demo`, `connect`, `serve`, `hash-password`, `bridge`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use xmpp_handshake_core::sasl::Mechanism;

fn parse_mechanism(name: &str) -> Result<Mechanism, String> {
    Mechanism::from_name(name).ok_or_else(|| format!("unknown SASL mechanism {name:?}"))
}

/// XMPP stream negotiation (RFC 6120): STARTTLS, SASL SCRAM and resource binding, shown
/// step by step.
#[derive(Debug, Parser)]
#[command(
    name = "xmpp-handshake",
    version,
    after_help = "Exit codes: 0 success, 2 usage, 3 authentication failed, \
                  4 certificate not trusted, 5 TLS required but not offered (or STARTTLS/TLS failed), \
                  6 other protocol or network error; for `connect --send-lines`, lines not \
                  acknowledged by the server (the message says how many and which)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a client against an in-process server on 127.0.0.1 and print the whole
    /// negotiation (needs nothing installed).
    ///
    /// Starts a receiving entity with a certificate generated on the spot, connects through
    /// STARTTLS, SCRAM and resource binding, sends a message to itself, checks it comes
    /// back, and prints the transcript (`I:` initiating entity, `R:` receiving entity,
    /// credentials redacted) and a one-line summary.
    Demo(DemoArgs),
    /// Log in to a real server as JID.
    ///
    /// The password comes from the environment variable XMPP_PASSWORD or a prompt, never
    /// from the command line. Without --send, stays online and prints incoming stanzas
    /// until Ctrl-C; with --send-lines TO, sends each line of standard input to TO.
    ///
    /// Stream management (XEP-0198) is enabled when the server offers it. When the link
    /// drops, connect reconnects (at once, then after 1, 2, 4 ... 30 s; --reconnect
    /// attempts) and resumes the session: the server says which stanzas it has, the rest
    /// are sent again. If the server lost the session, a new one is bound and the lines not
    /// acknowledged are named on stderr and sent again.
    Connect(ConnectArgs),
    /// Run a small client-to-server XMPP server (receiving entity) for device development.
    ///
    /// Users come from --user NAME:PASSWORD (hashed to SCRAM credentials at start) or from
    /// a --users file of salted credentials (see `hash-password`). Routes <message/>
    /// between the bound sessions of the domain.
    Serve(Box<ServeArgs>),
    /// Print the salted SCRAM credentials of a user, as lines for `serve --users FILE`.
    ///
    /// The password comes from XMPP_PASSWORD or a prompt. Line format (one per hash):
    /// `NAME:MECHANISM:ITERATIONS:SALT:STOREDKEY:SERVERKEY`, the last three base64,
    /// e.g. `alice:SCRAM-SHA-256:4096:...`. Lines starting with `#` are comments.
    HashPassword(HashPasswordArgs),
    /// Relay WebSockets to allow-listed TCP targets, for browser pages that negotiate
    /// XMPP themselves (the wasm client's `tunnel` mode: STARTTLS and TLS inside the page).
    ///
    /// A page opens ws://ADDR/bridge?target=HOST:PORT; binary messages carry raw TCP bytes
    /// both ways. Only targets given with --allow are reached (HTTP 403 otherwise); the
    /// bridge never parses the stream, and after STARTTLS sees only TLS records.
    Bridge(BridgeArgs),
    /// Check DOMAIN's server-to-server service as an originating server would see it.
    ///
    /// Looks up the SRV records _xmpps-server._tcp (Direct TLS) and _xmpp-server._tcp
    /// (STARTTLS) (else DOMAIN:5269), tries each target, and prints the TLS version, the
    /// certificate's verdict against DOMAIN (PKIX to --ca or the system's anchors; DNS-ID,
    /// SRV-ID or XmppAddr) with its fingerprints, and what the server offers on the
    /// protected stream (SASL EXTERNAL, dialback); with --from/--cert/--key it authenticates
    /// with EXTERNAL. Exit codes as `connect`: 0 when TLS was established with a certificate
    /// valid for DOMAIN (and, with --from, EXTERNAL succeeded), 3 when authentication
    /// failed, 4 for a certificate refused, 5 when TLS could not be established, 6 for other
    /// failures.
    S2sCheck(S2sCheckArgs),
}

/// `s2s-check`
#[derive(Debug, Args)]
pub struct S2sCheckArgs {
    /// The domain to check.
    pub domain: String,
    /// Connect to this host instead of looking up DNS SRV. The certificate is still
    /// checked against DOMAIN.
    #[arg(long)]
    pub host: Option<String>,
    /// Port (default: from SRV, else 5269, or 5270 with --direct-tls).
    #[arg(long)]
    pub port: Option<u16>,
    /// Direct TLS only (XEP-0368: TLS from the first byte, ALPN xmpp-server).
    #[arg(long)]
    pub direct_tls: bool,
    /// Trust anchors (PEM) instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Authenticate as this server domain with SASL EXTERNAL (needs --cert and --key), and
    /// with dialback given --dialback-listen: the stream's `from`, on every header.
    #[arg(long, value_name = "MYDOMAIN", requires_all = ["cert", "key"])]
    pub from: Option<String>,
    /// Our certificate chain (PEM), presented as the TLS client certificate: it must name
    /// MYDOMAIN (DNS-ID) and allow client use (EKU clientAuth, or no EKU).
    #[arg(long, value_name = "FILE", requires = "from")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "from")]
    pub key: Option<PathBuf>,
    /// Also try Server Dialback (XEP-0220) as MYDOMAIN: answer the checked server's
    /// call-back as MYDOMAIN's authoritative server on ADDR (it must find MYDOMAIN there,
    /// by its DNS or its own routes; port 5269 unless it knows better), and verify its
    /// own dialback at DOMAIN as reached here. Without it dialback is not attempted.
    #[arg(long, value_name = "ADDR", requires = "from")]
    pub dialback_listen: Option<std::net::SocketAddr>,
    /// Print the negotiation transcript on stderr.
    #[arg(long)]
    pub trace: bool,
    /// Seconds allowed for each target (connecting and negotiating).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// `bridge`
#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// Address to listen on (HTTP, WebSocket upgrade at /bridge).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A target the bridge may connect to, HOST:PORT (repeatable; nothing by default).
    #[arg(long = "allow", value_name = "HOST:PORT", required = true)]
    pub allow: Vec<String>,
    /// Close a connection after this many seconds without a byte either way.
    #[arg(long, default_value_t = 600)]
    pub idle_timeout: u64,
    /// Relayed connections open at once, at most (HTTP 503 above).
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// A web origin (scheme://host[:port]) whose pages may use the bridge, besides the
    /// bridge's own (repeatable; `*` allows any page). Requests without Origin (not from a
    /// browser) are always let through to the allow-list.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Also serve the demo page from DIR (default: this source tree's wasm/www) and the
    /// wasm package from --pkg.
    #[arg(long, value_name = "DIR")]
    pub web: Option<Option<PathBuf>>,
    /// The built wasm package (default: DIR/../pkg, where `wasm/build` writes it).
    #[arg(long, value_name = "DIR", requires = "web")]
    pub pkg: Option<PathBuf>,
}

/// `demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The domain the in-process server serves.
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// The message body sent to ourselves.
    #[arg(long, default_value = "Art thou not Romeo, and a Montague?")]
    pub body: String,
    /// Print the summary only, not the transcript.
    #[arg(long, short)]
    pub quiet: bool,
}

/// STARTTLS policy of `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// Refuse a server that does not offer STARTTLS (default).
    Required,
    /// Use STARTTLS when offered, go on in plaintext otherwise (SCRAM only, never PLAIN).
    Optional,
}

/// SCRAM channel-binding policy of `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelBinding {
    /// Only channel-bound SCRAM (-PLUS).
    Required,
    /// -PLUS when offered (default); one retry without binding for a server that never
    /// bound before.
    WhenOffered,
    /// Never bind.
    Off,
}

/// `connect`
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Your JID: user@domain or user@domain/resource.
    pub jid: String,
    /// Connect to this host instead of looking up DNS SRV `_xmpps-client._tcp.DOMAIN`
    /// (Direct TLS) and `_xmpp-client._tcp.DOMAIN` (STARTTLS). The certificate is still
    /// checked against the JID's domain.
    #[arg(long)]
    pub host: Option<String>,
    /// Port (default: from SRV, else 5222, or 5223 with --direct-tls).
    #[arg(long)]
    pub port: Option<u16>,
    /// Direct TLS only (XEP-0368: TLS from the first byte, ALPN xmpp-client): to --host, or
    /// to the `_xmpps-client._tcp` SRV targets, else DOMAIN:5223. Without this flag the
    /// Direct TLS and STARTTLS SRV targets are tried in one priority/weight order (Direct
    /// TLS first on a tie); STARTTLS after a failed Direct TLS target only if --tls is
    /// `required`, so a blocked Direct TLS port never leads to plaintext.
    #[arg(long)]
    pub direct_tls: bool,
    /// Do not read or write the SCRAM cache (keys derived from your password, and the
    /// mechanism to send right after TLS, kept per server and user in your config dir
    /// with mode 0600; see the README).
    #[arg(long)]
    pub no_cache: bool,
    /// Send `<auth/>` with this SASL mechanism right after the TLS handshake, before the
    /// server's offer arrives (one round trip less; the cache does this on its own after
    /// the first login). Checked against the offer: if absent, SASL starts again.
    #[arg(long, value_name = "MECHANISM", value_parser = parse_mechanism)]
    pub pipeline_mechanism: Option<Mechanism>,
    /// STARTTLS policy.
    #[arg(long, value_enum, default_value_t = TlsMode::Required)]
    pub tls: TlsMode,
    /// SCRAM channel binding: `when-offered` uses -PLUS whenever the server offers it; a
    /// server that offers it without XEP-0440 and refuses the binding (ejabberd 23.01 on
    /// TLS 1.3) is retried once without binding (gs2 flag y) unless the login cache says
    /// it bound before (then the login fails: it can be an attack). `off` never binds,
    /// `required` refuses servers without -PLUS and never retries.
    #[arg(long, value_enum, default_value_t = ChannelBinding::WhenOffered)]
    pub channel_binding: ChannelBinding,
    /// Allow DIGEST-MD5 (RFC 6331 deprecated it) for old servers that offer nothing
    /// better: chosen only when no SCRAM mechanism is offered.
    #[arg(long)]
    pub allow_digest_md5: bool,
    /// Trust anchors (PEM) instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Accept the server's certificate the first time and pin its key (stored in your
    /// config dir); later connections must present the same key.
    #[arg(long)]
    pub trust_first_use: bool,
    /// Print the negotiation transcript on stderr.
    #[arg(long)]
    pub trace: bool,
    /// Send one message (TO, BODY), close the stream, wait for the server to close, exit.
    #[arg(long, num_args = 2, value_names = ["TO", "BODY"])]
    pub send: Option<Vec<String>>,
    /// Send one chat message to TO per line of standard input (until its end), then close.
    /// Exit 0 only when the server acknowledged every line (XEP-0198 `<a/>`; without
    /// stream management: its answer to our closing tag), else 6 naming the lines that
    /// were not. Reconnects and resumes as needed while it runs.
    #[arg(long, value_name = "TO", conflicts_with = "send")]
    pub send_lines: Option<String>,
    /// Do not ask for stream management (XEP-0198): no acknowledgements, no resumption.
    #[arg(long)]
    pub no_stream_management: bool,
    /// Reconnection attempts after the link drops (the count starts over once a new
    /// connection got anywhere); 0: do not reconnect.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub reconnect: u32,
    /// Seconds the server may stay silent before it is probed (a ping, or `<r/>` with
    /// stream management); silent as long again, the link counts as lost. 0: never.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Seconds allowed for connecting and negotiating.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// `serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:5222 or 0.0.0.0:5222.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Also accept Direct TLS (XEP-0368: TLS from the first byte, ALPN xmpp-client,
    /// certificate chosen by SNI) on this address, e.g. 127.0.0.1:5223.
    #[arg(long, value_name = "ADDR")]
    pub direct_tls_listen: Option<SocketAddr>,
    /// The XMPP domain served (the part after @ in users' JIDs).
    #[arg(long)]
    pub domain: String,
    /// A user NAME:PASSWORD (repeatable); hashed to SCRAM credentials at start.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    pub users: Vec<crate::users::UserArg>,
    /// A file of salted credentials (see `hash-password`).
    #[arg(long = "users", value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// Certificate chain (PEM); generated on the spot when absent.
    #[arg(long, requires = "key", value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) for --cert.
    #[arg(long, requires = "cert", value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// With a generated certificate: write its CA certificate (PEM) here, for
    /// `connect --ca FILE`.
    #[arg(long, value_name = "FILE", conflicts_with = "cert")]
    pub write_ca: Option<PathBuf>,
    /// SCRAM iteration count for --user.
    #[arg(long, default_value_t = 4096)]
    pub iterations: u32,
    /// Do not offer SCRAM -PLUS (channel binding). For clients that choose -PLUS and then
    /// bind with a type the server did not advertise (slixmpp 1.8 uses tls-unique on
    /// TLS 1.3 and fails); they then log in with plain SCRAM.
    #[arg(long)]
    pub no_channel_binding: bool,
    /// Offer SASL2 (XEP-0388) beside RFC 6120 SASL, with Bind 2 (XEP-0386), XEP-0198 stream
    /// management enabled or resumed inside it and FAST tokens (XEP-0484): a client that
    /// speaks it authenticates, binds and enables (or resumes) stream management in one
    /// exchange, without a stream restart, and logs in next time with a token. On by
    /// default; this flag is kept for scripts that name it.
    #[arg(long, conflicts_with = "no_sasl2")]
    pub sasl2: bool,
    /// Do not offer SASL2 (nor Bind 2, inline stream management, FAST): RFC 6120 SASL and
    /// binding only.
    #[arg(long)]
    pub no_sasl2: bool,
    /// On the Direct TLS port, do not accept TLS 1.3 early data (0-RTT) nor advertise
    /// FAST in it (XEP-0484 `tls-0rtt`): a reconnecting client then waits for the
    /// handshake before its FAST login (one round trip more).
    #[arg(long)]
    pub no_early_data: bool,
    /// Print each client's negotiation transcript on stderr (`I:` the client, `R:` this
    /// server; SASL payloads redacted): what your device really sent.
    #[arg(long)]
    pub trace: bool,
    /// Print every stanza routed.
    #[arg(long, short)]
    pub verbose: bool,
    /// Also serve the demo page over HTTP (from DIR, default: this source tree's wasm/www)
    /// with the wasm package (--pkg), the bridge at /bridge (to this server's port only) and
    /// XMPP over WebSocket (RFC 7395) at /xmpp-websocket.
    #[arg(long, value_name = "DIR")]
    pub web: Option<Option<PathBuf>>,
    /// HTTP address for --web.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub http: SocketAddr,
    /// The built wasm package (default: DIR/../pkg, where `wasm/build` writes it).
    #[arg(long, value_name = "DIR", requires = "web")]
    pub pkg: Option<PathBuf>,
    /// Resource bounds and timeouts.
    #[command(flatten)]
    pub limits: crate::limits::LimitArgs,
    /// Federation (server-to-server).
    #[command(flatten)]
    pub s2s: S2sArgs,
}

/// `serve`'s federation flags: any of --s2s-listen, --s2s-direct-tls-listen, --s2s-peer,
/// --s2s-ca turns it on.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Federation (server-to-server)")]
pub struct S2sArgs {
    /// Accept peer servers here (STARTTLS required; SASL EXTERNAL for a TLS client
    /// certificate that verifies against --s2s-ca, else Server Dialback), e.g. 0.0.0.0:5269.
    #[arg(long, value_name = "ADDR")]
    pub s2s_listen: Option<SocketAddr>,
    /// Also accept peer servers with Direct TLS (XEP-0368: TLS from the first byte, ALPN
    /// xmpp-server; what _xmpps-server._tcp records point at), e.g. 0.0.0.0:5270.
    #[arg(long, value_name = "ADDR")]
    pub s2s_direct_tls_listen: Option<SocketAddr>,
    /// Reach DOMAIN's server at HOST:PORT (STARTTLS) instead of looking up DNS SRV
    /// _xmpps-server._tcp / _xmpp-server._tcp (repeatable).
    #[arg(long = "s2s-peer", value_name = "DOMAIN=HOST:PORT")]
    pub s2s_peers: Vec<String>,
    /// Trust anchors (PEM) for peer servers' certificates, both directions (default: the
    /// system's). Our --cert/--key is presented to peers as the TLS client certificate
    /// too: it must name our domain (DNS-ID) and allow client use (EKU clientAuth, or no
    /// EKU; ejabberd requires it).
    #[arg(long, value_name = "FILE")]
    pub s2s_ca: Option<PathBuf>,
    /// Seconds to reach and authenticate with a peer; then its queued stanzas get
    /// <remote-server-timeout/>.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub s2s_timeout: u64,
    /// Outgoing server-to-server links at once (one per peer domain); a stanza for one
    /// more domain gets <resource-constraint/>.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub s2s_max_peers: usize,
    /// Bytes of stanzas waiting for one peer; one more gets <resource-constraint/>.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024)]
    pub s2s_queue_bytes: usize,
    /// Incoming server-to-server connections at once (at most 4 authenticated streams
    /// per peer domain).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub s2s_max_incoming: usize,
    /// Server Dialback (XEP-0220) key secret, read from FILE (XEP-0185 keys): give the same
    /// file to every process serving the domain. Without it the secret is random per
    /// process (keys it gave out verify only while it runs).
    #[arg(long, value_name = "FILE", conflicts_with = "s2s_no_dialback")]
    pub s2s_dialback_secret_file: Option<PathBuf>,
    /// No Server Dialback (XEP-0220): peers authenticate with SASL EXTERNAL only, and so do
    /// we. By default dialback is used where EXTERNAL is not offered or fails, only over
    /// TLS and never for a domain a verified certificate contradicts.
    #[arg(long)]
    pub s2s_no_dialback: bool,
    /// No bidirectional streams (XEP-0288): neither offered to peers nor asked of them, so
    /// each direction between two servers has its own connection.
    #[arg(long)]
    pub s2s_no_bidi: bool,
}

impl S2sArgs {
    /// Whether any federation flag was given.
    pub fn enabled(&self) -> bool {
        self.s2s_listen.is_some()
            || self.s2s_direct_tls_listen.is_some()
            || !self.s2s_peers.is_empty()
            || self.s2s_ca.is_some()
    }
}

/// `hash-password`
#[derive(Debug, Args)]
pub struct HashPasswordArgs {
    /// The user name (localpart).
    pub name: String,
    /// SCRAM iteration count.
    #[arg(long, default_value_t = 4096)]
    pub iterations: u32,
}
