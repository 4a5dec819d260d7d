//! Our initiating entity against a real jabberd2 2.7.0 (Debian) on loopback: the third
//! server, a code base of its own (C, gsasl for SASL, OpenSSL).
//!
//! What jabberd2 brought to light: it declares `xmlns:ack` on its stream header and puts
//! `<ack:ack/>` into its post-SASL features, which our parser refused as an undeclared
//! prefix until the header's declarations were carried into every element's scope
//! (`core::xml::element`, XML namespaces §6.1).
//!
//! Federation as far as jabberd2 goes: its s2s offers STARTTLS and dialback, no SASL
//! EXTERNAL; `s2s-check` sees exactly that.
//!
//! DIGEST-MD5 (RFC 6331 deprecated it; the mandatory mechanism of RFC 3920) is the legacy
//! mechanism some old servers still offer alone: with only DIGEST-MD5 offered the client
//! refuses by default, and logs in with `--allow-digest-md5`.

mod interop_support;

use std::path::Path;
use std::process::{Command, Output};

use interop_support::{block_on, close, exchange, login, How};
use xmpp_handshake_tests::cli::{connect_send, online};
use xmpp_handshake_tests::{cli_binary, Jabberd2, Jabberd2Options};

/// Both users log in (STARTTLS, and Direct TLS on jabberd2's legacy SSL port), with
/// SCRAM-SHA-1 (the strongest jabberd2 offers; no -PLUS), bind, and exchange messages both
/// ways.
#[test]
fn logs_in_with_scram_and_exchanges_messages() {
    let Some(j) = Jabberd2::start_or_skip(Jabberd2Options::default()) else {
        return;
    };
    let (alice, bob) = (j.user(0).clone(), j.user(1).clone());
    block_on(async {
        let a = login(&j, &alice.name, &alice.password, "laptop", How::default()).await;
        let offered = a.offered();
        eprintln!("jabberd2 offered {offered:?}; we used {:?}", a.used());
        assert!(offered.contains(&"SCRAM-SHA-1".to_string()), "{offered:?}");
        assert_eq!(a.used().as_deref(), Some("SCRAM-SHA-1"), "{}", a.dump());
        assert!(
            a.dump().contains("<ack:ack/>"),
            "the prefixed feature this test is about:\n{}",
            a.dump()
        );
        let mut a = a.ok();
        let direct = How {
            direct_tls: true,
            ..How::default()
        };
        let b = login(&j, &bob.name, &bob.password, "phone", direct).await;
        assert_eq!(b.used().as_deref(), Some("SCRAM-SHA-1"), "{}", b.dump());
        let mut b = b.ok();
        exchange(&mut a, &mut b, "hello from alice over STARTTLS").await;
        exchange(&mut b, &mut a, "hello from bob over Direct TLS").await;
        close(a).await;
        close(b).await;
    });
}

/// `connect --send` as the first user with `password`.
fn connect(j: &Jabberd2, password: &str, config: &Path, extra: &[&str]) -> Output {
    connect_send(j, &j.user(0).name, password, config, extra)
}

/// `connect` with default options, twice (the second from the SCRAM cache).
#[test]
fn cli_connect_logs_in_and_again_from_the_cache() {
    let Some(j) = Jabberd2::start_or_skip(Jabberd2Options::default()) else {
        return;
    };
    let config = tempfile::tempdir().unwrap();
    let password = j.user(0).password.clone();
    for round in 0..2 {
        let out = connect(&j, &password, config.path(), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "round {round}: {stderr}");
        let line = online(&out);
        eprintln!("{line}");
        assert!(line.contains("(SCRAM-SHA-1, STARTTLS"), "{line}");
    }
}

/// A server offering only DIGEST-MD5: refused by default (exit 3, naming the option), used
/// with `--allow-digest-md5` (exit 0); a wrong password fails there as it should.
#[test]
fn digest_md5_only_with_the_opt_in() {
    let Some(j) = Jabberd2::start_or_skip(Jabberd2Options {
        mechanisms: vec!["digest-md5"],
        ..Default::default()
    }) else {
        return;
    };
    let config = tempfile::tempdir().unwrap();
    let password = j.user(0).password.clone();

    let out = connect(&j, &password, config.path(), &["--no-cache"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("--allow-digest-md5"), "{stderr}");

    let out = connect(
        &j,
        &password,
        config.path(),
        &["--no-cache", "--allow-digest-md5"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = online(&out);
    eprintln!("{line}");
    assert!(line.contains("(DIGEST-MD5, STARTTLS"), "{line}");

    let out = connect(
        &j,
        "not-the-password",
        config.path(),
        &["--no-cache", "--allow-digest-md5"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("not-authorized"), "{stderr}");
}

fn s2s_check(j: &Jabberd2, ca: &Path) -> Output {
    Command::new(cli_binary())
        .args(["s2s-check", &j.domain, "--host", "127.0.0.1", "--port"])
        .arg(j.ports.s2s.to_string())
        .arg("--ca")
        .arg(ca)
        .args(["--timeout", "20"])
        .output()
        .expect("the binary runs")
}

/// `s2s-check` against jabberd2's s2s port: STARTTLS, the certificate trusted for the
/// domain, dialback offered and no SASL mechanism (exit 0); with another CA the certificate
/// verdict fails the check (exit 4).
#[test]
fn s2s_check_sees_starttls_the_certificate_and_dialback() {
    let Some(j) = Jabberd2::start_or_skip(Jabberd2Options::default()) else {
        return;
    };
    let out = s2s_check(&j, &j.ca_path);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("(STARTTLS"), "{stdout}");
    assert!(
        stdout.contains(&format!("certificate: trusted for {}", j.domain)),
        "{stdout}"
    );
    assert!(
        stdout.contains("offered: SASL mechanisms none; dialback (XEP-0220) true"),
        "{stdout}"
    );

    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("ca.pem");
    let pki = xmpp_handshake_tests::TestPki::generate(&j.domain).unwrap();
    std::fs::write(&other_ca, pki.ca_pem).unwrap();
    let out = s2s_check(&j, &other_ca);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}");
}
