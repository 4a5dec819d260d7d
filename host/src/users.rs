//! Users of `serve`: `--user NAME:PASSWORD` (hashed at start) and the credentials file
//! (`--users FILE`), which holds salted SCRAM keys only, never a password.
//!
//! # File format
//!
//! UTF-8 text, one credential per line, fields separated by `:`:
//!
//! ```text
//! # comment
//! NAME:MECHANISM:ITERATIONS:SALT:STOREDKEY:SERVERKEY
//! alice:SCRAM-SHA-256:4096:c2FsdHNhbHRzYWx0:...:...
//! ```
//!
//! `MECHANISM` is `SCRAM-SHA-1`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; `SALT`, `STOREDKEY`
//! and `SERVERKEY` are standard base64 (RFC 5802 §2.1: StoredKey = H(ClientKey), ServerKey
//! = HMAC(SaltedPassword, "Server Key")). A user has one line per hash; a hash without a
//! line is not offered to that user. `xmpp-handshake hash-password NAME` prints the three
//! lines for a password. Blank lines and lines starting with `#` are ignored. A localpart
//! cannot contain `:` (RFC 7622 §3.3.1), so the first `:` ends the name.

use rand_core::{CryptoRng, RngCore};
use xmpp_handshake_core::jid::check_local;
use xmpp_handshake_core::sasl::base64::{decode_strict, encode};
use xmpp_handshake_core::sasl::{Mechanism, MemoryStore, ScramCredentials, ScramHash};

/// The SCRAM mechanism name of `hash`, e.g. `SCRAM-SHA-256`.
pub fn hash_name(hash: ScramHash) -> &'static str {
    Mechanism::scram(hash, false).name()
}

/// A `serve --user NAME:PASSWORD` argument as given; `Debug` hides it (it holds a
/// password). Parsing never fails at the command line, where clap would repeat the value
/// in its error: [`parse_user_arg`] checks it, without repeating it.
#[derive(Clone, PartialEq, Eq)]
pub struct UserArg(pub String);

impl std::str::FromStr for UserArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(UserArg(s.to_string()))
    }
}

impl std::fmt::Debug for UserArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.0.split_once(':').map_or("?", |(n, _)| n);
        write!(f, "UserArg({name}:<redacted>)")
    }
}

/// Splits `NAME:PASSWORD` (the first `:` ends the name); the name must be a localpart
/// (RFC 7622 §3.3), since the user's JID is `NAME@DOMAIN`.
pub fn parse_user_arg(arg: &str) -> Result<(String, String), String> {
    match arg.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            check_local(name).map_err(|e| format!("--user: NAME must be a localpart: {e}"))?;
            Ok((name.to_string(), password.to_string()))
        }
        // The argument may hold a password: never repeat it.
        _ => Err("--user wants NAME:PASSWORD (both non-empty)".to_string()),
    }
}

/// One line of the file for `credentials` of `name`.
pub fn format_line(name: &str, credentials: &ScramCredentials) -> String {
    format!(
        "{name}:{}:{}:{}:{}:{}",
        hash_name(credentials.hash),
        credentials.iterations,
        encode(&credentials.salt),
        encode(&credentials.stored_key),
        encode(&credentials.server_key)
    )
}

/// The lines for a password (SHA-1, SHA-256, SHA-512, each with its own random salt).
pub fn hash_password<R: RngCore + CryptoRng>(
    name: &str,
    password: &str,
    iterations: u32,
    rng: &mut R,
) -> Vec<String> {
    ScramHash::ALL
        .into_iter()
        .map(|h| {
            format_line(
                name,
                &ScramCredentials::generate(h, password, iterations, rng),
            )
        })
        .collect()
}

/// Parses one non-comment line.
pub fn parse_line(line: &str) -> Result<(String, ScramCredentials), String> {
    let fields: Vec<&str> = line.trim().split(':').collect();
    let [name, mechanism, iterations, salt, stored_key, server_key] = fields[..] else {
        return Err(format!(
            "expected 6 fields NAME:MECHANISM:ITERATIONS:SALT:STOREDKEY:SERVERKEY, found {}",
            fields.len()
        ));
    };
    check_local(name).map_err(|e| format!("the user name must be a localpart: {e}"))?;
    let hash = Mechanism::from_name(mechanism)
        .filter(|m| !m.is_plus())
        .and_then(|m| m.scram_hash())
        .ok_or_else(|| {
            format!("unknown mechanism {mechanism:?} (SCRAM-SHA-1, SCRAM-SHA-256, SCRAM-SHA-512)")
        })?;
    let iterations: u32 = iterations
        .parse()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| format!("bad iteration count {iterations:?}"))?;
    let b64 = |what: &str, v: &str| decode_strict(v).map_err(|_| format!("{what}: bad base64"));
    let salt = b64("salt", salt)?;
    let stored_key = b64("stored key", stored_key)?;
    let server_key = b64("server key", server_key)?;
    let len = hash.output_len();
    if stored_key.len() != len || server_key.len() != len {
        return Err(format!(
            "keys for {mechanism} must be {len} bytes (base64 of {len} bytes)"
        ));
    }
    if salt.is_empty() {
        return Err("empty salt".into());
    }
    Ok((
        name.to_string(),
        ScramCredentials {
            hash,
            salt,
            iterations,
            stored_key,
            server_key,
        },
    ))
}

/// Reads a whole file into `store`; returns the user names added. Errors name the line.
pub fn load_into(text: &str, store: &mut MemoryStore) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (name, creds) = parse_line(t).map_err(|e| format!("line {}: {e}", i + 1))?;
        store.insert(&name, creds);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::sasl::CredentialStore;

    #[test]
    fn user_argument() {
        assert_eq!(
            parse_user_arg("alice:pw:with:colons").unwrap(),
            ("alice".into(), "pw:with:colons".into())
        );
        assert!(parse_user_arg("alice").is_err());
        assert!(parse_user_arg(":pw").is_err());
        assert!(parse_user_arg("alice:").is_err());
        // RFC 7622 §3.3.1: the name is the localpart of the user's JID.
        let e = parse_user_arg("al ice:pw").unwrap_err();
        assert!(e.contains("localpart") && !e.contains("pw"), "{e}");
        // The error never repeats the argument (it may be a password).
        assert!(!parse_user_arg("alice-secret")
            .unwrap_err()
            .contains("secret"));
    }

    #[test]
    fn hashed_lines_round_trip_and_verify() {
        let mut rng = rand_core::OsRng;
        let lines = hash_password("alice", "wonderland", 4096, &mut rng);
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("alice:SCRAM-SHA-256:4096:"));
        assert!(!lines.iter().any(|l| l.contains("wonderland")));
        let text = format!("# users\n\n{}\n", lines.join("\n"));
        let mut store = MemoryStore::new();
        assert_eq!(load_into(&text, &mut store).unwrap(), vec!["alice"]);
        for h in ScramHash::ALL {
            let c = store.scram_credentials("alice", h).unwrap();
            assert!(c.verify_password("wonderland"));
            assert!(!c.verify_password("looking-glass"));
        }
    }

    #[test]
    fn bad_lines_name_the_problem() {
        let mut store = MemoryStore::new();
        let e = load_into("alice:SCRAM-SHA-1:4096\n", &mut store).unwrap_err();
        assert!(e.starts_with("line 1: expected 6 fields"), "{e}");
        let e = load_into("a:SCRAM-MD5:1:YQ==:YQ==:YQ==", &mut store).unwrap_err();
        assert!(e.contains("unknown mechanism"), "{e}");
        let e = load_into("a:SCRAM-SHA-1:1:YQ==:YQ==:YQ==", &mut store).unwrap_err();
        assert!(e.contains("20 bytes"), "{e}");
        let e = load_into("a<b:SCRAM-SHA-1:1:YQ==:YQ==:YQ==", &mut store).unwrap_err();
        assert!(
            e.contains("must be a localpart") && e.contains("'<'"),
            "{e}"
        );
        let e = load_into(":SCRAM-SHA-1:1:YQ==:YQ==:YQ==", &mut store).unwrap_err();
        assert!(e.contains("localpart"), "{e}");
    }
}
