//! Where to connect for a domain (RFC 6120 §3.2): `--host`/`--port`, else DNS SRV
//! `_xmpp-client._tcp.DOMAIN` in priority order, else DOMAIN:5222.
//!
//! The resolver is a trait so that tests stay on loopback. Whatever DNS answers, the
//! certificate is checked against the configured domain, never against an SRV target
//! (§13.7.2.1).

use std::future::Future;
use std::io;

/// The default c2s port (§14.7 IANA registration).
pub const DEFAULT_PORT: u16 = 5222;

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, higher is tried first.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Host name, without the trailing dot; `.` means "no service here" (RFC 2782).
    pub target: String,
}

/// Looks up SRV records.
pub trait SrvResolver {
    /// The records for `name` (e.g. `_xmpp-client._tcp.example.com`); empty when there
    /// are none.
    fn lookup_srv(&self, name: &str) -> impl Future<Output = io::Result<Vec<SrvRecord>>> + Send;
}

/// The system resolver (hickory, reading the system configuration).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl SrvResolver for SystemResolver {
    async fn lookup_srv(&self, name: &str) -> io::Result<Vec<SrvRecord>> {
        let resolver = hickory_resolver::TokioResolver::builder_tokio()
            .map_err(|e| io::Error::other(e.to_string()))?
            .build();
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match resolver.srv_lookup(fqdn).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|srv| SrvRecord {
                    priority: srv.priority(),
                    weight: srv.weight(),
                    port: srv.port(),
                    target: {
                        let t = srv.target().to_utf8();
                        let t = t.trim_end_matches('.');
                        if t.is_empty() {
                            ".".to_string()
                        } else {
                            t.to_string()
                        }
                    },
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }
}

/// A fixed table, for tests.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    /// `(name, records)`.
    pub records: Vec<(String, Vec<SrvRecord>)>,
}

impl SrvResolver for StaticResolver {
    async fn lookup_srv(&self, name: &str) -> io::Result<Vec<SrvRecord>> {
        Ok(self
            .records
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_default())
    }
}

/// Where to connect, in order, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// `(host, port)` to try in order.
    pub addresses: Vec<(String, u16)>,
    /// `--host`, `SRV`, or `fallback`, for messages.
    pub source: &'static str,
}

/// The connection targets for `domain` (see the module docs).
pub async fn targets<R: SrvResolver>(
    resolver: &R,
    domain: &str,
    host: Option<&str>,
    port: Option<u16>,
) -> io::Result<Targets> {
    if let Some(host) = host {
        return Ok(Targets {
            addresses: vec![(host.to_string(), port.unwrap_or(DEFAULT_PORT))],
            source: "--host",
        });
    }
    if port.is_none() {
        // A lookup failure falls back to the domain, as RFC 6120 §3.2.2 allows.
        let mut records = resolver
            .lookup_srv(&format!("_xmpp-client._tcp.{domain}"))
            .await
            .unwrap_or_default();
        if records.len() == 1 && records[0].target == "." {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{domain} announces no XMPP client service (SRV target \".\")"),
            ));
        }
        records.retain(|r| r.target != ".");
        if !records.is_empty() {
            records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
            return Ok(Targets {
                addresses: records.into_iter().map(|r| (r.target, r.port)).collect(),
                source: "SRV",
            });
        }
    }
    Ok(Targets {
        addresses: vec![(domain.to_string(), port.unwrap_or(DEFAULT_PORT))],
        source: "fallback",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, target: &str, port: u16) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn host_flag_wins_then_srv_order_then_fallback() {
        let r = StaticResolver {
            records: vec![(
                "_xmpp-client._tcp.example.com".into(),
                vec![
                    rec(20, 0, "backup.example.com", 5223),
                    rec(10, 5, "b.example.com", 5222),
                    rec(10, 50, "a.example.com", 5222),
                ],
            )],
        };
        let t = block_on(targets(&r, "example.com", Some("127.0.0.1"), Some(15222))).unwrap();
        assert_eq!(t.addresses, vec![("127.0.0.1".to_string(), 15222)]);
        let t = block_on(targets(&r, "example.com", None, None)).unwrap();
        assert_eq!(t.source, "SRV");
        assert_eq!(
            t.addresses,
            vec![
                ("a.example.com".to_string(), 5222),
                ("b.example.com".to_string(), 5222),
                ("backup.example.com".to_string(), 5223)
            ]
        );
        let t = block_on(targets(&r, "other.example", None, None)).unwrap();
        assert_eq!(t.source, "fallback");
        assert_eq!(t.addresses, vec![("other.example".to_string(), 5222)]);
    }

    #[test]
    fn dot_target_means_no_service() {
        let r = StaticResolver {
            records: vec![(
                "_xmpp-client._tcp.example.com".into(),
                vec![rec(0, 0, ".", 0)],
            )],
        };
        assert!(block_on(targets(&r, "example.com", None, None)).is_err());
    }
}
