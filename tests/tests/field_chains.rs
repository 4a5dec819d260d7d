//! Field-shaped certificate chains tried as a new user would: a real Prosody serves each of
//! Let's Encrypt's shapes (`xmpp_handshake_tests::field_chains`: RSA, ECDSA with a P-256
//! leaf, the same ending in the P-384 root cross-signed by the RSA root, ECDSA with a P-384
//! leaf; leaf and intermediates, as real servers send them), and
//!
//! - the CLI, `xmpp-handshake connect --ca ROOT`, must log in with each root the chain leads
//!   to, and with a bundle of the real ISRG roots plus the test root;
//! - the firmware app's host build (embassy-net on a TAP device in a namespace this test
//!   creates, `tests/src/firmware.rs`) with `XMPP_CA` = the root, and = a bundle holding the
//!   real ISRG roots first and the test root last, must log in;
//! - both must refuse a wrong anchor (the other hierarchy's root, or another PKI's) with
//!   the typed unknown-issuer error, as they must the ECDSA chain without its cross-sign
//!   when they trust only the RSA root.
//!
//! One Prosody per test holds a VirtualHost per shape (`SHAPE.field.test`, each with its
//! chain; Prosody picks a host's certificate by the stream's `to`), with user alice.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use xmpp_handshake_tests::field_chains::{FieldPki, ServedChain, Shape, ISRG_ROOTS_PEM};
use xmpp_handshake_tests::firmware::{
    failed_lines, in_namespace, without_timestamp, App, AppSettings, SERVER_ADDR,
};
use xmpp_handshake_tests::{cli_binary, ExtraHost, Prosody, ProsodyOptions, User};

const USER: &str = "alice";
const PASSWORD: &str = "field-secret-1";

/// What the core says for `CertError::UnknownIssuer` (its `Display`): the CLI prints it.
const UNKNOWN_ISSUER_TEXT: &str = "not issued by a trusted CA";

fn domain(shape: Shape) -> String {
    format!("{}.field.test", shape.name())
}

/// Every shape's chain, each on its own VirtualHost.
fn serve_all(pki: &FieldPki) -> Vec<ServedChain> {
    Shape::ALL
        .iter()
        .map(|&shape| {
            pki.serve(shape, &domain(shape))
                .expect("openssl issues a leaf")
        })
        .collect()
}

fn options(served: &[ServedChain], extra_global_config: String) -> ProsodyOptions {
    ProsodyOptions {
        domain: "field.test".into(),
        extra_global_config,
        extra_hosts: served
            .iter()
            .map(|s| ExtraHost {
                domain: s.domain.clone(),
                chain_pem: s.chain_pem.clone(),
                key_pem: s.key_pem.clone(),
                users: vec![User::new(USER, PASSWORD)],
            })
            .collect(),
        ..ProsodyOptions::default()
    }
}

/// One attempt and what must come of it.
struct Case {
    /// What is tried, for the report.
    what: String,
    /// The JID's domain (which chain Prosody serves).
    domain: String,
    /// The `--ca` / `XMPP_CA` file.
    ca: std::path::PathBuf,
    /// Login, or a refusal as unknown issuer.
    login: bool,
}

/// The cases for `shape`: each root alone, the ISRG bundle with the test root last, the
/// wrong anchor; for the cross-signed chain also the short ECDSA chain with only the RSA
/// root.
fn cases(pki: &FieldPki, shape: Shape) -> Vec<Case> {
    let mut cases = Vec::new();
    for root in shape.anchors(pki) {
        cases.push(Case {
            what: format!("{} alone", subject_cn(&root.pem)),
            domain: domain(shape),
            ca: root.path.clone(),
            login: true,
        });
    }
    let test_root = shape.anchors(pki)[0];
    let bundle = pki
        .bundle("isrg-plus-test.pem", &[ISRG_ROOTS_PEM, &test_root.pem])
        .expect("bundle written");
    cases.push(Case {
        what: format!(
            "bundle: ISRG Root X1, ISRG Root X2, {}",
            subject_cn(&test_root.pem)
        ),
        domain: domain(shape),
        ca: bundle,
        login: true,
    });
    let wrong = shape.wrong_anchor(pki);
    cases.push(Case {
        what: format!("wrong anchor {}", subject_cn(&wrong.pem)),
        domain: domain(shape),
        ca: wrong.path.clone(),
        login: false,
    });
    let isrg_only = pki
        .bundle("isrg.pem", &[ISRG_ROOTS_PEM])
        .expect("bundle written");
    cases.push(Case {
        what: "wrong anchors: the real ISRG roots".into(),
        domain: domain(shape),
        ca: isrg_only,
        login: false,
    });
    if shape == Shape::CrossSigned {
        cases.push(Case {
            what: "ECDSA chain without the cross-sign, Field Root X1 alone".into(),
            domain: domain(Shape::Ecdsa),
            ca: pki.rsa_root.path.clone(),
            login: false,
        });
    }
    cases
}

/// The CN of a PEM certificate, for the report (via `openssl x509 -subject`).
fn subject_cn(pem: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "multiline"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(pem.as_bytes())?;
            child.wait_with_output()
        })
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("commonName").map(str::to_string))
        .map(|cn| cn.trim_start_matches([' ', '=']).to_string())
        .unwrap_or_else(|| "?".into())
}

/// Runs every case through `attempt`, prints a table, and fails listing the cases that
/// did not come out as they must.
fn run_cases(
    who: &str,
    shape: Shape,
    cases: &[Case],
    mut attempt: impl FnMut(&Case) -> Result<String, String>,
) -> Result<(), String> {
    let mut failed = Vec::new();
    for case in cases {
        let outcome = attempt(case);
        let verdict = if outcome.is_ok() { "ok  " } else { "FAIL" };
        let detail: String = match &outcome {
            Ok(d) | Err(d) => d.lines().next().unwrap_or("").chars().take(200).collect(),
        };
        eprintln!("{who} {shape}: {verdict} {}: {detail}", case.what);
        if let Err(e) = outcome {
            failed.push(format!("{}: {e}", case.what));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{who}, {shape}: {} of {} cases failed:\n{}",
            failed.len(),
            cases.len(),
            failed.join("\n")
        ))
    }
}

// --- the CLI ---------------------------------------------------------------------------

fn cli_connect(p: &Prosody, case: &Case, config: &Path) -> Output {
    let jid = format!("{USER}@{}", case.domain);
    let port = p.ports.c2s.to_string();
    let ca = case.ca.display().to_string();
    Command::new(cli_binary())
        .args(["connect", &jid, "--host", "127.0.0.1", "--port", &port])
        .args([
            "--ca",
            &ca,
            "--no-cache",
            "--send",
            &jid,
            "hi",
            "--timeout",
            "20",
        ])
        .env("XMPP_PASSWORD", PASSWORD)
        .env("XDG_CONFIG_HOME", config)
        .output()
        .expect("the binary runs")
}

/// Login: exit 0 and the summary line. Refusal: exit 4 (certificate not trusted) with the
/// unknown-issuer message, and nothing bound.
fn cli_case(p: &Prosody, case: &Case, config: &Path) -> Result<String, String> {
    let out = cli_connect(p, case, config);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let online = stderr
        .lines()
        .find(|l| l.starts_with("xmpp-handshake: online as "));
    if case.login {
        match (out.status.code(), online) {
            (Some(0), Some(line)) => Ok(line.to_string()),
            (code, _) => Err(format!("exit {code:?}: {}", stderr.trim())),
        }
    } else if out.status.code() == Some(4) && online.is_none() {
        stderr
            .lines()
            .find(|l| l.contains(UNKNOWN_ISSUER_TEXT))
            .map(|l| format!("refused: {}", l.trim()))
            .ok_or_else(|| format!("exit 4 but not as unknown issuer: {}", stderr.trim()))
    } else {
        Err(format!(
            "expected exit 4 (unknown issuer), got {:?}: {}",
            out.status.code(),
            stderr.trim()
        ))
    }
}

fn cli(shape: Shape) {
    let pki = FieldPki::shared().expect("openssl makes the chains");
    let served = serve_all(&pki);
    let Some(p) = Prosody::start_or_skip(options(&served, String::new())) else {
        return;
    };
    let config = tempfile::tempdir().unwrap();
    let cases = cases(&pki, shape);
    if let Err(e) = run_cases("CLI", shape, &cases, |case| {
        cli_case(&p, case, config.path())
    }) {
        panic!("{e}\n--- prosody ---\n{}", p.log_tail(30));
    }
}

#[test]
fn cli_logs_in_to_an_rsa_chain_and_refuses_a_wrong_anchor() {
    cli(Shape::Rsa);
}

#[test]
fn cli_logs_in_to_an_ecdsa_chain_and_refuses_a_wrong_anchor() {
    cli(Shape::Ecdsa);
}

#[test]
fn cli_logs_in_to_a_cross_signed_chain_with_either_root() {
    cli(Shape::CrossSigned);
}

#[test]
fn cli_logs_in_to_an_ecdsa_chain_with_a_p384_leaf() {
    cli(Shape::EcdsaP384Leaf);
}

// --- the firmware app (host build) -----------------------------------------------------

/// Login: `bound as alice@DOMAIN/` before three failed connections. Refusal: three failed
/// connections, each a certificate refused as unknown issuer, and no `TLS established`.
fn firmware_case(p: &Prosody, case: &Case) -> Result<String, String> {
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let jid = format!("{USER}@{}", case.domain);
    let settings = AppSettings {
        jid: jid.clone(),
        password: PASSWORD.into(),
        server: format!("{SERVER_ADDR}:{}", p.ports.c2s),
        ca: case.ca.clone(),
        env: Vec::new(),
    };
    let mut app = App::start(&settings, work.path())?;
    if case.login {
        return app.wait_for_login(&jid, 3, Duration::from_secs(60));
    }
    app.wait_for("connection failed", 3, Duration::from_secs(60))?;
    let log = app.log();
    if log.contains("bound as") || log.contains("TLS established") {
        return Err(format!("accepted with the wrong anchor:\n{log}"));
    }
    let failed = failed_lines(&log);
    match failed.iter().find(|l| !is_unknown_issuer(l)) {
        Some(other) => Err(format!(
            "not refused as unknown issuer: {}\n{log}",
            without_timestamp(other)
        )),
        None => Ok(format!("refused: {}", without_timestamp(failed[0]))),
    }
}

/// The app's log line for a certificate refused as unknown issuer (`CertError`'s `Debug`
/// through the embedded-tls backend's error, or its `Display`).
fn is_unknown_issuer(line: &str) -> bool {
    line.contains("UnknownIssuer") || line.contains(UNKNOWN_ISSUER_TEXT)
}

fn firmware(shape: Shape) {
    let pki = FieldPki::shared().expect("openssl makes the chains");
    let served = serve_all(&pki);
    let cases = cases(&pki, shape);
    let outcome = in_namespace(&format!("field-{}", shape.name()), |_| {
        // Also on the TAP side, where the app is (the harness binds 127.0.0.1).
        let interfaces = format!("interfaces = {{ \"127.0.0.1\", \"{SERVER_ADDR}\" }}");
        let Some(p) = Prosody::start_or_skip(options(&served, interfaces)) else {
            return Ok(());
        };
        run_cases("firmware", shape, &cases, |case| firmware_case(&p, case))
            .map_err(|e| format!("{e}\n--- prosody ---\n{}", p.log_tail(30)))
    });
    if let Some(Err(e)) = outcome {
        panic!("{e}");
    }
}

#[test]
fn firmware_logs_in_to_an_rsa_chain_and_refuses_a_wrong_anchor() {
    firmware(Shape::Rsa);
}

#[test]
fn firmware_logs_in_to_an_ecdsa_chain_and_refuses_a_wrong_anchor() {
    firmware(Shape::Ecdsa);
}

#[test]
fn firmware_logs_in_to_a_cross_signed_chain_with_either_root() {
    firmware(Shape::CrossSigned);
}

#[test]
fn firmware_logs_in_to_an_ecdsa_chain_with_a_p384_leaf() {
    firmware(Shape::EcdsaP384Leaf);
}
