//! Where to connect for a domain (RFC 6120 §3.2, XEP-0368): `--host`/`--port`, else the
//! DNS SRV records `_xmpps-client._tcp.DOMAIN` (Direct TLS) and `_xmpp-client._tcp.DOMAIN`
//! (STARTTLS) merged into one list by priority and weight (XEP-0368 §2 rule 1: the server
//! operator chooses the order), else DOMAIN:5222.
//!
//! The resolver is a trait so that tests stay on loopback. Whatever DNS answers, the
//! certificate is checked against the configured domain, never against an SRV target
//! (§13.7.2.1).

use std::future::Future;
use std::io;

use xmpp_handshake_core::resolve;
pub use xmpp_handshake_core::resolve::{Security, SrvRecord};

/// The default c2s port (§14.7 IANA registration).
pub const DEFAULT_PORT: u16 = resolve::CLIENT_PORT;

/// Which XMPP service a domain is looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Client-to-server: `_xmpps-client._tcp`, `_xmpp-client._tcp`, port 5222 (5223 for
    /// Direct TLS).
    Client,
    /// Server-to-server: `_xmpps-server._tcp`, `_xmpp-server._tcp`, port 5269 (5270 for
    /// Direct TLS), RFC 6120 §3.2, XEP-0368.
    Server,
}

impl Service {
    /// The SRV names, Direct TLS first: `(_xmpps-…, _xmpp-…)`.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Service::Client => resolve::CLIENT_SERVICES,
            Service::Server => ("_xmpps-server._tcp", "_xmpp-server._tcp"),
        }
    }

    /// The fallback ports: `(STARTTLS, Direct TLS)`.
    fn ports(self) -> (u16, u16) {
        match self {
            Service::Client => (DEFAULT_PORT, crate::direct_tls::DEFAULT_PORT),
            Service::Server => (5269, 5270),
        }
    }
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

/// One place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// STARTTLS or Direct TLS.
    pub security: Security,
    /// `--host`, `SRV`, or `fallback`, for messages.
    pub source: &'static str,
}

/// Where to connect, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Tried in order.
    pub addresses: Vec<Target>,
}

/// The SRV records of `service` for `domain` ([`resolve::announced`]: `None` when the
/// domain announces that it has no such service). A lookup failure counts as no records
/// (RFC 6120 §3.2.2 allows the fallback).
async fn service<R: SrvResolver>(
    resolver: &R,
    service: &str,
    domain: &str,
) -> Option<Vec<SrvRecord>> {
    let records = resolver
        .lookup_srv(&format!("{service}.{domain}"))
        .await
        .unwrap_or_default();
    resolve::announced(records)
}

/// Both services' records in the order to try them ([`resolve::merged`], the core's rule
/// the firmware applies too).
fn merged(direct: Vec<SrvRecord>, starttls: Vec<SrvRecord>) -> Vec<Target> {
    resolve::merged(direct, starttls)
        .into_iter()
        .map(|(r, security)| Target {
            host: r.target,
            port: r.port,
            security,
            source: "SRV",
        })
        .collect()
}

/// The connection targets for `domain` (see the module docs). `direct_tls`: the user asked
/// for Direct TLS only.
///
/// Without `--host`/`--port`: the `_xmpps-client._tcp` (Direct TLS, XEP-0368) and
/// `_xmpp-client._tcp` (STARTTLS) records merged (see `merged`), then `DOMAIN:5222`
/// when there are no STARTTLS records; a `.` target for one service with no records for
/// the other is an error (XEP-0368 §4: no A/AAAA fallback then). With `direct_tls`: the
/// `_xmpps-client._tcp` records, else `DOMAIN:5223`.
pub async fn targets<R: SrvResolver>(
    resolver: &R,
    domain: &str,
    host: Option<&str>,
    port: Option<u16>,
    direct_tls: bool,
) -> io::Result<Targets> {
    targets_for(resolver, Service::Client, domain, host, port, direct_tls).await
}

/// [`targets`] for `service`: the same rules with the server-to-server names and ports for
/// [`Service::Server`].
pub async fn targets_for<R: SrvResolver>(
    resolver: &R,
    service_kind: Service,
    domain: &str,
    host: Option<&str>,
    port: Option<u16>,
    direct_tls: bool,
) -> io::Result<Targets> {
    let (direct_name, starttls_name) = service_kind.names();
    let (starttls_port, direct_port) = service_kind.ports();
    let (security, default_port) = if direct_tls {
        (Security::DirectTls, direct_port)
    } else {
        (Security::StartTls, starttls_port)
    };
    let fixed = |host: &str, source| Targets {
        addresses: vec![Target {
            host: host.to_string(),
            port: port.unwrap_or(default_port),
            security,
            source,
        }],
    };
    if let Some(host) = host {
        return Ok(fixed(host, "--host"));
    }
    if port.is_some() {
        return Ok(fixed(domain, "fallback"));
    }
    let direct = service(resolver, direct_name, domain).await;
    if direct_tls {
        let addresses = merged(direct.unwrap_or_default(), Vec::new());
        return Ok(if addresses.is_empty() {
            fixed(domain, "fallback")
        } else {
            Targets { addresses }
        });
    }
    let starttls = service(resolver, starttls_name, domain).await;
    // RFC 6120 §3.2.2: no STARTTLS records, the domain itself on 5222, after any Direct
    // TLS ones; not when either service is announced absent (XEP-0368 §4).
    let fallback = starttls.as_ref().is_some_and(Vec::is_empty) && direct.is_some();
    let mut addresses = merged(direct.unwrap_or_default(), starttls.unwrap_or_default());
    if fallback {
        addresses.extend(fixed(domain, "fallback").addresses);
    }
    if addresses.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{domain} announces no XMPP {} service (SRV target \".\")",
                match service_kind {
                    Service::Client => "client",
                    Service::Server => "server",
                }
            ),
        ));
    }
    Ok(Targets { addresses })
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

    fn at(t: &Targets) -> Vec<(String, u16, Security)> {
        t.addresses
            .iter()
            .map(|a| (a.host.clone(), a.port, a.security))
            .collect()
    }

    fn starttls(host: &str, port: u16) -> (String, u16, Security) {
        (host.to_string(), port, Security::StartTls)
    }

    fn direct(host: &str, port: u16) -> (String, u16, Security) {
        (host.to_string(), port, Security::DirectTls)
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
        let t = block_on(targets(
            &r,
            "example.com",
            Some("127.0.0.1"),
            Some(15222),
            false,
        ));
        assert_eq!(at(&t.unwrap()), vec![starttls("127.0.0.1", 15222)]);
        let t = block_on(targets(&r, "example.com", None, None, false)).unwrap();
        assert!(t.addresses.iter().all(|a| a.source == "SRV"));
        assert_eq!(
            at(&t),
            vec![
                starttls("a.example.com", 5222),
                starttls("b.example.com", 5222),
                starttls("backup.example.com", 5223)
            ]
        );
        let t = block_on(targets(&r, "other.example", None, None, false)).unwrap();
        assert_eq!(t.addresses[0].source, "fallback");
        assert_eq!(at(&t), vec![starttls("other.example", 5222)]);
    }

    #[test]
    fn both_services_merge_by_priority_then_weight_direct_tls_first_on_a_tie() {
        let r = StaticResolver {
            records: vec![
                (
                    "_xmpp-client._tcp.example.com".into(),
                    vec![
                        rec(10, 5, "tie.example.com", 5222),
                        rec(20, 0, "last.example.com", 5222),
                        rec(0, 0, "first.example.com", 5222),
                        rec(10, 90, "heavy.example.com", 5222),
                    ],
                ),
                (
                    "_xmpps-client._tcp.example.com".into(),
                    vec![
                        rec(10, 5, "tie.example.com", 5223),
                        rec(10, 1, "light.example.com", 443),
                    ],
                ),
            ],
        };
        let t = block_on(targets(&r, "example.com", None, None, false)).unwrap();
        assert_eq!(
            at(&t),
            vec![
                starttls("first.example.com", 5222),
                starttls("heavy.example.com", 5222),
                direct("tie.example.com", 5223),
                starttls("tie.example.com", 5222),
                direct("light.example.com", 443),
                starttls("last.example.com", 5222),
            ]
        );
        assert!(t.addresses.iter().all(|a| a.source == "SRV"));
    }

    #[test]
    fn server_to_server_uses_the_server_records_and_port_5269() {
        let r = StaticResolver {
            records: vec![
                (
                    "_xmpp-client._tcp.example.com".into(),
                    vec![rec(0, 0, "c2s.example.com", 5222)],
                ),
                (
                    "_xmpps-server._tcp.example.com".into(),
                    vec![rec(5, 0, "tls.s2s.example.com", 5270)],
                ),
            ],
        };
        let t = block_on(targets_for(
            &r,
            Service::Server,
            "example.com",
            None,
            None,
            false,
        ))
        .unwrap();
        assert_eq!(
            at(&t),
            vec![
                direct("tls.s2s.example.com", 5270),
                starttls("example.com", 5269)
            ]
        );
        let none = StaticResolver::default();
        let t = block_on(targets_for(
            &none,
            Service::Server,
            "example.com",
            None,
            None,
            true,
        ))
        .unwrap();
        assert_eq!(at(&t), vec![direct("example.com", 5270)]);
    }

    #[test]
    fn no_starttls_records_fall_back_to_the_domain_after_direct_tls_ones() {
        let r = StaticResolver {
            records: vec![(
                "_xmpps-client._tcp.example.com".into(),
                vec![rec(5, 0, "tls.example.com", 5223)],
            )],
        };
        let t = block_on(targets(&r, "example.com", None, None, false)).unwrap();
        assert_eq!(
            at(&t),
            vec![
                direct("tls.example.com", 5223),
                starttls("example.com", 5222)
            ]
        );
        assert_eq!(t.addresses[1].source, "fallback");
    }

    #[test]
    fn direct_tls_records_by_priority_and_the_flag_keeps_only_them() {
        let r = StaticResolver {
            records: vec![
                (
                    "_xmpp-client._tcp.example.com".into(),
                    vec![rec(5, 0, "xmpp.example.com", 5222)],
                ),
                (
                    "_xmpps-client._tcp.example.com".into(),
                    vec![
                        rec(10, 0, "tls2.example.com", 443),
                        rec(1, 0, "tls1.example.com", 5223),
                    ],
                ),
            ],
        };
        let t = block_on(targets(&r, "example.com", None, None, false)).unwrap();
        assert_eq!(
            at(&t),
            vec![
                direct("tls1.example.com", 5223),
                starttls("xmpp.example.com", 5222),
                direct("tls2.example.com", 443)
            ]
        );
        let t = block_on(targets(&r, "example.com", None, None, true)).unwrap();
        assert_eq!(
            at(&t),
            vec![
                direct("tls1.example.com", 5223),
                direct("tls2.example.com", 443)
            ]
        );
        // Asked for, without records: the domain on the Direct TLS port; --host/--port too.
        let t = block_on(targets(&r, "other.example", None, None, true)).unwrap();
        assert_eq!(at(&t), vec![direct("other.example", 5223)]);
        let t = block_on(targets(&r, "example.com", Some("::1"), Some(15223), true)).unwrap();
        assert_eq!(at(&t), vec![direct("::1", 15223)]);
        let t = block_on(targets(&r, "example.com", Some("::1"), None, true)).unwrap();
        assert_eq!(at(&t), vec![direct("::1", 5223)]);
    }

    #[test]
    fn dot_target_means_no_service() {
        let r = StaticResolver {
            records: vec![(
                "_xmpp-client._tcp.example.com".into(),
                vec![rec(0, 0, ".", 0)],
            )],
        };
        assert!(block_on(targets(&r, "example.com", None, None, false)).is_err());
        // Direct TLS still offered: that is where to go.
        let r = StaticResolver {
            records: vec![
                (
                    "_xmpp-client._tcp.example.com".into(),
                    vec![rec(0, 0, ".", 0)],
                ),
                (
                    "_xmpps-client._tcp.example.com".into(),
                    vec![rec(0, 0, "tls.example.com", 5223)],
                ),
            ],
        };
        let t = block_on(targets(&r, "example.com", None, None, false)).unwrap();
        assert_eq!(at(&t), vec![direct("tls.example.com", 5223)]);
        // XEP-0368 §4: Direct TLS announced absent: the STARTTLS records, and without
        // any, an error rather than the domain's A/AAAA records.
        let no_direct = (
            "_xmpps-client._tcp.example.com".to_string(),
            vec![rec(0, 0, ".", 0)],
        );
        let r = StaticResolver {
            records: vec![
                no_direct.clone(),
                (
                    "_xmpp-client._tcp.example.com".into(),
                    vec![rec(0, 0, "xmpp.example.com", 5222)],
                ),
            ],
        };
        let t = block_on(targets(&r, "example.com", None, None, false)).unwrap();
        assert_eq!(at(&t), vec![starttls("xmpp.example.com", 5222)]);
        let r = StaticResolver {
            records: vec![no_direct],
        };
        assert!(block_on(targets(&r, "example.com", None, None, false)).is_err());
    }
}
