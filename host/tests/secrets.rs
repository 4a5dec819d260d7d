//! No secret reaches anything the CLI prints: full negotiations through the real binaries
//! (`serve` with `--trace -v`, `connect --trace`, `demo`), all with `RUST_LOG=trace`, with
//! the right password, a wrong one, PLAIN and SCRAM, a failed channel binding; everything
//! they print on stdout and stderr is searched for the passwords and their derived forms
//! (base64, the PLAIN message, SaltedPassword / ClientKey / StoredKey / ServerKey in hex
//! and base64 for both hashes, any SCRAM client-final message with its ClientProof) and
//! for the server's private key (PEM body lines, DER in base64 and hex). And the `Debug`
//! output of every type that holds a credential is redacted.

mod serve_bin;

use std::time::Duration;

use base64::Engine as _;
use clap::Parser as _;
use serve_bin::{ServeBin, BIN, DOMAIN};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::sasl::{
    Credentials, MemoryStore, SaslPolicy, ScramCacheEntry, ScramCredentials, ScramHash,
};
use xmpp_handshake_host::certs::{generate_pki, ServerIdentity};
use xmpp_handshake_host::cli::Cli;
use xmpp_handshake_host::client::Login;

const PASSWORD: &str = "Corr3ct-Horse-Battery";
const WRONG: &str = "Wr0ng-Guess-Staple";
const CAROL: &str = "Car0l-Flag-Password";
const ITERATIONS: u32 = 4096;
const SALT_256: &[u8] = b"salt-for-sha-256";
const SALT_1: &[u8] = b"salt-for-sha-1!!";
const LIMIT: Duration = Duration::from_secs(60);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_of(hash: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    match hash {
        ScramHash::Sha1 => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// SaltedPassword, ClientKey, StoredKey, ServerKey (RFC 5802 §3).
fn scram_values(hash: ScramHash, password: &str, salt: &[u8]) -> Vec<Vec<u8>> {
    let salted = match hash {
        ScramHash::Sha1 => {
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password.as_bytes(), salt, ITERATIONS, &mut out);
            out.to_vec()
        }
        _ => {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, ITERATIONS, &mut out);
            out.to_vec()
        }
    };
    let client_key = hmac_of(hash, &salted, b"Client Key");
    let stored_key = match hash {
        ScramHash::Sha1 => sha1::Sha1::digest(&client_key).to_vec(),
        _ => sha2::Sha256::digest(&client_key).to_vec(),
    };
    let server_key = hmac_of(hash, &salted, b"Server Key");
    vec![salted, client_key, stored_key, server_key]
}

/// Every form of every secret that must never be printed, with a name for the report.
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, name: &str, value: String) {
        self.0.push((name.to_string(), value));
    }

    fn password(&mut self, name: &str, password: &str, user: &str) {
        self.add(name, password.to_string());
        self.add(&format!("{name} base64"), b64(password.as_bytes()));
        self.add(
            &format!("{name} PLAIN message"),
            b64(format!("\0{user}\0{password}").as_bytes()),
        );
        for (hash, salt) in [(ScramHash::Sha256, SALT_256), (ScramHash::Sha1, SALT_1)] {
            let names = ["SaltedPassword", "ClientKey", "StoredKey", "ServerKey"];
            for (what, value) in names.iter().zip(scram_values(hash, password, salt)) {
                self.add(&format!("{name} {hash:?} {what} hex"), hex(&value));
                self.add(&format!("{name} {hash:?} {what} base64"), b64(&value));
            }
        }
    }

    fn private_key(&mut self, pem: &str, der: &[u8]) {
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            self.add("private key PEM line", line.to_string());
        }
        self.add("private key DER base64", b64(der));
        self.add("private key DER hex", hex(der));
    }

    /// Panics naming each secret found in `output` (case-insensitive for hex).
    fn assert_absent(&self, what: &str, output: &str) {
        let lower = output.to_lowercase();
        for (name, value) in &self.0 {
            let found = output.contains(value.as_str())
                || (name.ends_with("hex") && lower.contains(&value.to_lowercase()));
            assert!(!found, "{what} printed the {name}:\n{output}");
        }
        // Any base64 run that decodes to a SCRAM client-final message (its ClientProof) or
        // to a PLAIN message: a payload the redaction missed.
        for token in output.split(|c: char| !(c.is_ascii_alphanumeric() || "+/=".contains(c))) {
            if token.len() < 12 {
                continue;
            }
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token) else {
                continue;
            };
            let text = String::from_utf8_lossy(&decoded);
            assert!(
                !text.contains(",p=") && !text.starts_with('\0'),
                "{what} printed a SASL payload {token} ({text:?}):\n{output}"
            );
        }
    }
}

fn users_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::from("# test users with known salts\n");
    for (hash, salt) in [(ScramHash::Sha256, SALT_256), (ScramHash::Sha1, SALT_1)] {
        let credentials = ScramCredentials::derive(hash, PASSWORD, salt, ITERATIONS);
        text.push_str(&xmpp_handshake_host::users::format_line(
            "alice",
            &credentials,
        ));
        text.push('\n');
    }
    let path = dir.join("users");
    std::fs::write(&path, text).unwrap();
    path
}

async fn run(args: &[&str], password: Option<&str>) -> (Option<i32>, String) {
    // A config dir of its own: `connect` writes its SCRAM cache there.
    let config = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("XDG_CONFIG_HOME", config.path())
        .env("RUST_LOG", "trace")
        .env("RUST_BACKTRACE", "1")
        .env_remove("XMPP_PASSWORD")
        .kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("XMPP_PASSWORD", p);
    }
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("the binary finishes")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn no_password_proof_key_or_private_key_in_anything_the_cli_prints() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate_pki(DOMAIN).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.leaf_pem).unwrap();
    std::fs::write(&key, &pki.leaf_key_pem).unwrap();
    let users = users_file(dir.path());
    let mut secrets = Secrets(Vec::new());
    secrets.password("password", PASSWORD, "alice");
    secrets.password("wrong password", WRONG, "alice");
    secrets.password("--user password", CAROL, "carol");
    secrets.private_key(&pki.leaf_key_pem, &pki.leaf_key_der);

    let mut serve = ServeBin::start_with(
        &[
            "--users",
            users.to_str().unwrap(),
            "--user",
            &format!("carol:{CAROL}"),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--trace",
            "--verbose",
        ],
        false,
        &[("RUST_LOG", "trace"), ("RUST_BACKTRACE", "1")],
    )
    .await;
    serve.set_ca(&pki.ca_pem);
    let port = serve.addr.port().to_string();
    let ca = serve.ca.to_str().unwrap().to_string();
    let connect = |jid: &'static str, extra: &'static [&'static str]| {
        let mut args = vec!["connect", jid, "--host", "127.0.0.1", "--port", &port];
        args.extend(["--ca", &ca, "--trace"]);
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let send: &[&str] = &["--send", "alice@example.com", "hello"];
    let mut outputs = Vec::new();
    // SCRAM-SHA-256-PLUS, the right password.
    let args = connect("alice@example.com/a", send);
    let (code, out) = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(PASSWORD),
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    outputs.push(("connect", out));
    // Plain SCRAM (no channel binding): the other exchange shape.
    let args = connect(
        "alice@example.com/b",
        &[
            "--channel-binding",
            "off",
            "--send",
            "alice@example.com",
            "x",
        ],
    );
    let (code, out) = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(PASSWORD),
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    outputs.push(("connect --channel-binding off", out));
    // The wrong password: an authentication failure (exit 3).
    let args = connect("alice@example.com/c", send);
    let (code, out) = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(WRONG),
    )
    .await;
    assert_eq!(code, Some(3), "{out}");
    outputs.push(("connect with a wrong password", out));
    // carol (from --user) logs in too.
    let args = connect("carol@example.com", send);
    let (code, out) = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(CAROL),
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    outputs.push(("connect as carol", out));
    // PLAIN, right then wrong, from a raw client: serve's trace shows its <auth/>.
    for password in [WRONG, PASSWORD] {
        plain_login(&serve, password).await;
    }
    serve.wait_log("PLAIN", 2, LIMIT).await;
    // demo: its own random password; the generic payload check covers it.
    let (code, out) = run(&["demo"], None).await;
    assert_eq!(code, Some(0), "{out}");
    outputs.push(("demo", out));
    tokio::time::sleep(Duration::from_millis(300)).await;
    outputs.push(("serve", format!("{}{}", serve.banner, serve.log())));

    for (what, output) in &outputs {
        secrets.assert_absent(what, output);
    }
    // The searches looked at real transcripts: SASL elements and the TLS line are there.
    let serve_out = &outputs.last().unwrap().1;
    for expected in [
        "mechanism='SCRAM-SHA-256-PLUS'",
        "mechanism='PLAIN'",
        "<response",
        "<success",
    ] {
        assert!(
            serve_out.contains(expected),
            "serve's trace lacks {expected}:\n{serve_out}"
        );
    }
    assert!(outputs[0].1.contains("<challenge"), "{}", outputs[0].1);
    // And the search finds what it looks for.
    let salted = hex(&scram_values(ScramHash::Sha1, PASSWORD, SALT_1)[0]).to_uppercase();
    let client_final = b64(b"c=biws,r=abc,p=cHJvb2Y=");
    for planted in [
        salted,
        client_final,
        pki.leaf_key_pem.lines().nth(1).unwrap().into(),
    ] {
        let output = format!("serve: R: <x>{planted}</x>");
        let caught = std::panic::catch_unwind(|| secrets.assert_absent("probe", &output));
        assert!(caught.is_err(), "{planted} not caught");
    }
}

/// PLAIN over STARTTLS with `password`, by hand (the CLI never chooses PLAIN when SCRAM is
/// offered).
async fn plain_login(serve: &ServeBin, password: &str) {
    let header = "<?xml version='1.0'?><stream:stream to='example.com' version='1.0' \
                  xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    let mut tcp = tokio::net::TcpStream::connect(serve.addr).await.unwrap();
    tcp.write_all(
        format!("{header}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").as_bytes(),
    )
    .await
    .unwrap();
    read_until(&mut tcp, "<proceed").await;
    let connector = tokio_rustls::TlsConnector::from(serve.tls_config());
    let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(header.as_bytes()).await.unwrap();
    read_until(&mut tls, "</stream:features>").await;
    let auth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        b64(format!("\0alice\0{password}").as_bytes())
    );
    tls.write_all(auth.as_bytes()).await.unwrap();
    let reply = read_until(&mut tls, "</").await;
    assert!(
        reply.contains("<success") || reply.contains("<failure"),
        "{reply}"
    );
}

async fn read_until<S: tokio::io::AsyncRead + Unpin>(s: &mut S, needle: &str) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(LIMIT, async {
        while !text.contains(needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {needle}: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("the server answers");
    text
}

#[test]
fn debug_of_every_credential_type_is_redacted() {
    let entry = ScramCacheEntry::from_password(ScramHash::Sha256, PASSWORD, SALT_256, ITERATIONS);
    let credentials = Credentials::password("alice", PASSWORD).with_scram_cache(entry.clone());
    let mut config = InitiatorConfig::client(DOMAIN);
    config.sasl = Some(ClientSasl {
        credentials: credentials.clone(),
        policy: SaslPolicy::default(),
        resource: None,
        pipeline_mechanism: None,
        pipeline_offer: None,
        pipeline_bind: true,
        sasl2: Default::default(),
    });
    let mut store = MemoryStore::new();
    store.insert(
        "alice",
        ScramCredentials::derive(ScramHash::Sha256, PASSWORD, SALT_256, ITERATIONS),
    );
    let pki = generate_pki(DOMAIN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.leaf_pem).unwrap();
    std::fs::write(&key, &pki.leaf_key_pem).unwrap();
    let identity = ServerIdentity::load(&cert, &key).unwrap();
    let cli = Cli::parse_from([
        "xmpp-handshake",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--domain",
        DOMAIN,
        "--user",
        &format!("carol:{CAROL}"),
    ]);
    let printed = [
        ("Credentials", format!("{credentials:?}")),
        ("ScramCacheEntry", format!("{entry:?}")),
        ("InitiatorConfig", format!("{config:?}")),
        ("MemoryStore", format!("{store:?}")),
        (
            "Login",
            format!("{:?}", Login::new("alice@example.com", PASSWORD).unwrap()),
        ),
        ("GeneratedPki", format!("{pki:?}")),
        ("ServerIdentity", format!("{identity:?}")),
        ("the parsed command line", format!("{cli:?}")),
        ("pretty Credentials", format!("{credentials:#?}")),
    ];
    let mut secrets = Secrets(Vec::new());
    secrets.password("password", PASSWORD, "alice");
    secrets.password("--user password", CAROL, "carol");
    secrets.private_key(&pki.leaf_key_pem, &pki.leaf_key_der);
    for (what, text) in printed {
        secrets.assert_absent(what, &text);
    }
}
