//! SASL2 (XEP-0388), Bind 2 (XEP-0386) and FAST (XEP-0484) against a real Prosody 0.12.3
//! with Debian's prosody-modules SASL2 family (`mod_sasl2`, `mod_sasl2_bind2`,
//! `mod_sasl2_fast`, and the harness's compatibility shim; see tests/src/prosody.rs), through
//! the `xmpp-handshake connect` binary and its login cache:
//!
//! - a first login uses SASL2 with SCRAM, binds through Bind 2 and keeps the FAST token the
//!   server issues; the next logins use the token (`HT-SHA-256-NONE`, the server's proof
//!   checked), `<authenticate/>` sent with the header right after TLS, shaped by the SASL2
//!   offer the first login kept: at most 4 round trips counting the TCP connect on
//!   STARTTLS (connect; header + `<starttls/>`; TLS 1.3; header + `<authenticate/>`), 3 on
//!   Direct TLS (issue 16 item 3);
//! - a token the server no longer accepts (expired) is refused and forgotten, the password
//!   logs in and a new token replaces the old one. (The core retries with the password on
//!   the same stream, as XEP-0388 allows; this mod_sasl2 then refuses the password's
//!   mechanism, having kept the token's SASL handler, and the CLI logs in again.)
//!
//! What the binary did is read from its summary line and its login cache.

use std::path::Path;
use std::process::Output;

use base64::Engine as _;
use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_tests::cli::{connect_send, online};
use xmpp_handshake_tests::{Prosody, ProsodyOptions};

fn prosody(extra_host_config: &str) -> Option<Prosody> {
    Prosody::start_or_skip(ProsodyOptions {
        sasl2_modules: true,
        extra_host_config: extra_host_config.into(),
        ..ProsodyOptions::default()
    })
}

/// One `connect --send` to ourselves as the first user, config dir `config`.
fn connect(p: &Prosody, config: &Path, direct_tls: bool) -> Output {
    let user = &p.users[0];
    let extra: &[&str] = if direct_tls { &["--direct-tls"] } else { &[] };
    connect_send(p, &user.name, &user.password, config, extra)
}

/// The round trips the summary line counts (after the TCP connect), plus the connect.
fn round_trips_with_connect(line: &str) -> u32 {
    let before = line
        .split(" round trips")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no round trips in {line}"));
    let after_connect: u32 = before.parse().unwrap_or_else(|_| panic!("{line}"));
    after_connect + 1
}

/// The first user's login memory as the cache line holds it.
fn memory(p: &Prosody, config: &Path) -> LoginMemory {
    let text = std::fs::read_to_string(config.join("xmpp-handshake/scram-cache")).unwrap();
    let line = text
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(p.users[0].name.as_str()))
        .unwrap_or_else(|| panic!("no line: {text}"));
    let fields: Vec<&str> = line.split(' ').collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(fields[3])
        .unwrap();
    LoginMemory::from_bytes(&bytes).unwrap()
}

#[test]
fn sasl2_login_keeps_a_fast_token_and_the_next_logins_use_it() {
    let Some(p) = prosody("") else { return };
    let config = tempfile::tempdir().unwrap();

    let first = online(&connect(&p, config.path(), false));
    assert!(first.contains("(SASL2 SCRAM-SHA-1, STARTTLS"), "{first}");
    assert!(first.contains("FAST token cached"), "{first}");
    assert!(
        first.contains("/xmpp-handshake~"),
        "Bind 2 bound a resource from our tag: {first}"
    );
    let kept = memory(&p, config.path());
    assert!(
        kept.sasl2_inline.is_some_and(|i| i.bind2),
        "the SASL2 offer's shape kept: {kept:?}"
    );
    let token = kept.fast_token.clone().expect("a FAST token kept");
    assert_eq!(
        token.mechanism, "HT-SHA-256-NONE",
        "TLS 1.3: no binding data Prosody takes"
    );
    assert!(token.expires.is_some());
    assert!(
        !token.token.starts_with(b"secret-token:"),
        "the token is sealed in the file"
    );
    let id = kept.user_agent_id.clone().expect("a user agent id");

    let second = online(&connect(&p, config.path(), false));
    assert!(
        second.contains("(SASL2 with a FAST token, STARTTLS"),
        "{second}"
    );
    assert!(round_trips_with_connect(&second) <= 4, "{second}");
    let third = online(&connect(&p, config.path(), true));
    assert!(
        third.contains("(SASL2 with a FAST token, Direct TLS"),
        "{third}"
    );
    assert!(round_trips_with_connect(&third) <= 3, "{third}");
    // Same user agent id: Prosody derives the same resource suffix from it.
    let suffix = |line: &str| {
        line.split('~')
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .map(String::from)
    };
    assert_eq!(suffix(&second), suffix(&third));
    let after = memory(&p, config.path());
    assert_eq!(after.user_agent_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        after.fast_token, kept.fast_token,
        "the token stays until rotated"
    );
    assert!(
        after.scram.is_some(),
        "the SCRAM keys stay for a password login"
    );
}

#[test]
fn a_refused_token_falls_back_to_the_password_and_is_replaced() {
    // Tokens live one second.
    let Some(p) = prosody("  sasl2_fast_token_ttl = 1\n") else {
        return;
    };
    let config = tempfile::tempdir().unwrap();
    let first = online(&connect(&p, config.path(), false));
    assert!(first.contains("FAST token cached"), "{first}");
    let old = memory(&p, config.path()).fast_token.expect("a token");
    std::thread::sleep(std::time::Duration::from_millis(2500));

    let out = connect(&p, config.path(), false);
    let second = online(&out);
    assert!(second.contains("(SASL2 SCRAM-SHA-1, STARTTLS"), "{second}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the server refused the FAST token")
            || second.contains("the FAST token was refused, a new one cached"),
        "{stderr}"
    );
    assert!(
        second.contains("FAST token cached") || second.contains("a new one cached"),
        "{second}"
    );
    let new = memory(&p, config.path()).fast_token.expect("a new token");
    assert_ne!(new, old);
}
