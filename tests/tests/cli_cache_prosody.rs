//! The `xmpp-handshake connect` binary against a real Prosody: the SCRAM cache (first login
//! derives the keys, the next takes them from the cache and pipelines `<auth/>`: one round
//! trip less), its recovery when the cached keys are stale (keys the server refuses; a
//! password changed on the server, which gives a new salt), a wrong password with a cache
//! present, `--no-cache`, and Direct TLS (XEP-0368) to Prosody's `c2s_direct_tls_ports`.
//!
//! What the binary did is read from its summary line (`online as ... (MECHANISM, STARTTLS
//! or Direct TLS, TLS ..., N round trips, T ms; SCRAM keys ...)`).

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_core::sasl::{CbPolicy, Mechanism, MechanismSet, ScramCacheEntry};
use xmpp_handshake_tests::cli::{connect_send, online};
use xmpp_handshake_tests::{Prosody, ProsodyOptions};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cache_file(config: &Path) -> PathBuf {
    config.join("xmpp-handshake/scram-cache")
}

/// `user`'s login memory as the cache line holds it (`domain user nonce memory`; the keys
/// sealed, the rest readable).
fn memory(config: &Path, user: &str) -> LoginMemory {
    let text = std::fs::read_to_string(cache_file(config)).unwrap();
    let line = text
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(user))
        .unwrap_or_else(|| panic!("no line for {user}: {text}"));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 4, "{line}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(fields[3])
        .unwrap();
    LoginMemory::from_bytes(&bytes).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// The post-TLS offer kept for `user`, names joined by commas.
fn offer_field(config: &Path, user: &str) -> String {
    let offer = memory(config, user).offer.expect("an offer");
    offer.iter().map(|m| m.name()).collect::<Vec<_>>().join(",")
}

/// Rewrites `user`'s login memory with `edit` applied.
fn edit_memory(config: &Path, user: &str, edit: impl Fn(&mut LoginMemory)) {
    let engine = base64::engine::general_purpose::STANDARD;
    edit_line(config, user, |fields| {
        let mut memory = LoginMemory::from_bytes(&engine.decode(&fields[3]).unwrap()).unwrap();
        edit(&mut memory);
        fields[3] = engine.encode(memory.to_bytes().unwrap());
    });
}

/// Rewrites `user`'s cache line with `edit` applied to its fields.
fn edit_line(config: &Path, user: &str, edit: impl Fn(&mut Vec<String>)) {
    let path = cache_file(config);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = line.split(' ').map(String::from).collect();
            if line.starts_with('#') || fields.get(1).map(String::as_str) != Some(user) {
                return line.to_string();
            }
            edit(&mut fields);
            fields.join(" ")
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// Flips a bit in `user`'s sealed keys (the last byte of ServerKey; salt and iterations
/// stay): keys the server will refuse, as after a password change that kept the salt.
fn spoil_keys(config: &Path, user: &str) {
    edit_memory(config, user, |memory| {
        let mut sealed = memory.scram.as_ref().expect("keys").to_bytes();
        *sealed.last_mut().unwrap() ^= 1;
        memory.scram = Some(ScramCacheEntry::from_bytes(&sealed).unwrap());
    });
}

#[test]
fn scram_cache_skips_pbkdf2_pipelines_auth_and_recovers_when_stale() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let alice = p.user(0).clone();
    let config = tempfile::tempdir().unwrap();
    let config = config.path();

    // First login: keys derived (PBKDF2), cached with the mechanism; 6 round trips after
    // the connect (header+<starttls/>, TLS, header, SCRAM x2, header+bind).
    let first = online(&connect_send(&p, &alice.name, &alice.password, config, &[]));
    assert!(first.contains("(SCRAM-SHA-1, STARTTLS, TLS 1.3"), "{first}");
    assert!(first.contains(" 6 round trips"), "{first}");
    assert!(first.contains("SCRAM keys derived and cached"), "{first}");
    let text = std::fs::read_to_string(cache_file(config)).unwrap();
    assert!(text.contains(&format!("\n{} alice ", p.domain)), "{text}");
    assert!(!text.contains(&alice.password), "{text}");
    let kept = memory(config, "alice");
    assert_eq!(kept.mechanism, Some(Mechanism::ScramSha1), "{text}");
    assert_eq!(kept.channel_binding, Some(CbPolicy::WhenOffered), "{text}");
    assert!(kept.scram.is_some() && kept.bound_before, "{kept:?}");
    // With what Prosody offered after TLS (on TLS 1.3 SCRAM-SHA-1 and PLAIN, in an order
    // of its own), never the pre-TLS list (empty: Prosody requires TLS first).
    let offer = offer_field(config, "alice");
    let mut names: Vec<&str> = offer.split(',').collect();
    names.sort_unstable();
    assert_eq!(names, ["PLAIN", "SCRAM-SHA-1"], "{text}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(cache_file(config)).unwrap().permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
    }

    // Second: no PBKDF2, <auth/> sent right behind the post-TLS header: 5 round trips.
    let second = online(&connect_send(&p, &alice.name, &alice.password, config, &[]));
    assert!(second.contains("SCRAM keys from the cache"), "{second}");
    assert!(second.contains(" 5 round trips"), "{second}");

    // Keys the server refuses (same salt): refused once, derived again, cached again.
    spoil_keys(config, "alice");
    let out = connect_send(&p, &alice.name, &alice.password, config, &[]);
    assert!(
        stderr(&out).contains("refused the cached SCRAM keys"),
        "{}",
        stderr(&out)
    );
    let line = online(&out);
    assert!(line.contains("SCRAM keys derived and cached"), "{line}");
    let line = online(&connect_send(&p, &alice.name, &alice.password, config, &[]));
    assert!(line.contains("SCRAM keys from the cache"), "{line}");

    // A wrong password with a cache present logs in no more than without one.
    let out = connect_send(&p, &alice.name, "not-her-password", config, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // The password changed on the server: Prosody stores it with a new salt, so the core
    // derives new keys at once (no refused attempt); they are cached.
    p.register(&alice.name, "alice-new-2").unwrap();
    let out = connect_send(&p, &alice.name, "alice-new-2", config, &[]);
    assert!(
        !stderr(&out).contains("refused the cached SCRAM keys"),
        "{}",
        stderr(&out)
    );
    let line = online(&out);
    assert!(line.contains("SCRAM keys derived and cached"), "{line}");
    let line = online(&connect_send(&p, &alice.name, "alice-new-2", config, &[]));
    assert!(line.contains("SCRAM keys from the cache"), "{line}");
    assert!(line.contains(" 5 round trips"), "{line}");

    // --no-cache: neither read nor written.
    let before = std::fs::read_to_string(cache_file(config)).unwrap();
    let line = online(&connect_send(
        &p,
        &alice.name,
        "alice-new-2",
        config,
        &["--no-cache"],
    ));
    assert!(line.contains("SCRAM keys derived)"), "{line}");
    assert!(line.contains(" 6 round trips"), "{line}");
    assert_eq!(std::fs::read_to_string(cache_file(config)).unwrap(), before);
}

/// `connect --direct-tls` to Prosody's Direct TLS port: 5 round trips after the connect
/// on the first login, 4 with the cache's mechanism (5 counting the connect).
#[test]
fn direct_tls_login_with_the_cache_takes_four_round_trips_after_the_connect() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let bob = p.user(1).clone();
    let config = tempfile::tempdir().unwrap();
    let config = config.path();
    let direct = ["--direct-tls"];
    let first = online(&connect_send(&p, &bob.name, &bob.password, config, &direct));
    assert!(
        first.contains("(SCRAM-SHA-1, Direct TLS, TLS 1.3"),
        "{first}"
    );
    assert!(first.contains(" 5 round trips"), "{first}");
    let second = online(&connect_send(&p, &bob.name, &bob.password, config, &direct));
    assert!(second.contains("Direct TLS"), "{second}");
    assert!(second.contains("SCRAM keys from the cache"), "{second}");
    assert!(second.contains(" 4 round trips"), "{second}");
}

/// The pipelined mechanism comes from the post-TLS offer kept in the cache, chosen by the
/// policy: an offer the server no longer makes (here SCRAM-SHA-256, which this Prosody
/// does not have) is pipelined, refused (`invalid-mechanism`) and SASL starts again from
/// the real offer, which is then kept. A line of the earlier format (mechanism, policy,
/// offer and keys in fields of their own) is not read: the keys are derived again, and
/// the line is rewritten in the login-memory format.
#[test]
fn cached_offer_the_server_no_longer_makes_restarts_sasl_and_is_replaced() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let alice = p.user(0).clone();
    let config = tempfile::tempdir().unwrap();
    let config = config.path();
    online(&connect_send(&p, &alice.name, &alice.password, config, &[]));

    edit_memory(config, "alice", |m| {
        m.offer = Some(MechanismSet::from_names(["SCRAM-SHA-256", "PLAIN"]));
    });
    let out = connect_send(&p, &alice.name, &alice.password, config, &[]);
    let line = online(&out);
    assert!(line.contains("(SCRAM-SHA-1, STARTTLS"), "{line}");
    // The refused <auth/> costs the round trip the pipelining would have saved.
    assert!(line.contains(" 6 round trips"), "{line}");
    let mut names: Vec<String> = offer_field(config, "alice")
        .split(',')
        .map(String::from)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["PLAIN", "SCRAM-SHA-1"]);
    let line = online(&connect_send(&p, &alice.name, &alice.password, config, &[]));
    assert!(line.contains(" 5 round trips"), "{line}");

    // The earlier format: domain user mechanism policy offer nonce keys.
    edit_line(config, "alice", |f| {
        *f = [
            f[0].as_str(),
            "alice",
            "SCRAM-SHA-1",
            "when-offered",
            "SCRAM-SHA-1,PLAIN",
            "AAAAAAAAAAAAAAAAAAAAAA==",
            "AQEAABAAAAQ=",
        ]
        .map(String::from)
        .to_vec();
    });
    let line = online(&connect_send(&p, &alice.name, &alice.password, config, &[]));
    assert!(line.contains("SCRAM keys derived and cached"), "{line}");
    assert!(line.contains(" 6 round trips"), "{line}");
    assert!(offer_field(config, "alice").contains("SCRAM-SHA-1"));
    let line = online(&connect_send(&p, &alice.name, &alice.password, config, &[]));
    assert!(line.contains("SCRAM keys from the cache"), "{line}");
    assert!(line.contains(" 5 round trips"), "{line}");
}
