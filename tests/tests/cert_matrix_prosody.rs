//! The certificate matrix (host/tests/cert_matrix.rs) against a real Prosody: each case's
//! certificate chain and key are served by Prosody, and our initiating entity (the host's
//! `XmppServerVerifier` + `RustlsClient` + the core driver) connects with the domain the
//! user configured and must reach the same verdict as in memory: the exact `CertError`, or
//! a certificate decision with the expected basis and identity and a bound resource.
//!
//! One Prosody holds one VirtualHost per case domain (Prosody presents a host's `ssl` on
//! STARTTLS for streams addressed `to` it), each with the case's certificate, also where it
//! deliberately does not name the host. The changed-key case needs the same domain with a
//! second key: a second Prosody, started alongside the first, serves it.
//!
//! The test PKI is the host matrix's own builders (`host/tests/common/certs.rs`, included
//! here), so both suites check the same certificates.

#[path = "../../host/tests/common/certs.rs"]
mod certs;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certs::{dns, leaf, srv_only, xmpp_addr, Pki, ServerCert};
use rcgen::date_time_ymd;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;
use xmpp_handshake_core::connection::{Connection, ConnectionOptions};
use xmpp_handshake_core::driver::{self, Clock as _, MaybeTls};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig};
use xmpp_handshake_core::sasl::{Credentials, SaslPolicy};
use xmpp_handshake_core::trust::{
    CertError, CertificatePolicy, FirstUse, MemoryPinStore, PinChange, PinStore, PresentedId,
    ReferenceIdentity, TrustBasis, Verdict,
};
use xmpp_handshake_core::{Error, TlsError};
use xmpp_handshake_host::client;
use xmpp_handshake_host::clock::TokioClock;
use xmpp_handshake_host::tls::verify::{client_config, SharedPinStore, XmppServerVerifier};
use xmpp_handshake_host::upgrade::{self, RustlsClient};
use xmpp_handshake_tests::{ExtraHost, Prosody, ProsodyOptions, User};

/// Each connection attempt (TCP, STARTTLS, SASL, bind) is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);
const USER: &str = "alice";
const PASSWORD: &str = "matrix-secret-1";

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A VirtualHost `domain` presenting `cert` (its whole chain, as the matrix's server does).
fn host(domain: &str, cert: &ServerCert) -> ExtraHost {
    ExtraHost {
        domain: domain.into(),
        chain_pem: cert
            .chain
            .iter()
            .map(|c: &CertificateDer<'_>| pem("CERTIFICATE", c))
            .collect(),
        key_pem: cert.key.serialize_pem(),
        users: vec![User::new(USER, PASSWORD)],
    }
}

fn no_pins() -> SharedPinStore {
    Arc::new(Mutex::new(MemoryPinStore::new()))
}

fn verifier(
    reference: ReferenceIdentity,
    policy: CertificatePolicy,
    roots: Option<Arc<RootCertStore>>,
    pins: SharedPinStore,
) -> Arc<XmppServerVerifier> {
    Arc::new(XmppServerVerifier::new(
        reference,
        policy,
        roots,
        pins,
        &certs::provider(),
    ))
}

/// The user configured `domain` (as typed: an IDN may be a U-label).
fn c2s(
    domain: &str,
    policy: CertificatePolicy,
    roots: Option<Arc<RootCertStore>>,
    pins: SharedPinStore,
) -> Arc<XmppServerVerifier> {
    let reference = ReferenceIdentity::client_to_server(domain).unwrap();
    verifier(reference, policy, roots, pins)
}

fn anchors(domain: &str, pki: &Pki) -> Arc<XmppServerVerifier> {
    c2s(
        domain,
        CertificatePolicy::anchors(),
        Some(pki.roots()),
        no_pins(),
    )
}

/// Logs in as alice over STARTTLS to Prosody's c2s port with `verifier`; the stream goes
/// `to` the verifier's reference domain (A-label), which is also the SNI. The bound JID,
/// or the negotiation error; and the verifier's decision.
async fn login(
    p: &Prosody,
    v: &Arc<XmppServerVerifier>,
) -> (Result<String, Error>, Option<Result<Verdict, CertError>>) {
    let domain = v.reference().domain().to_string();
    let mut config = InitiatorConfig::client(&domain);
    config.from = Some(format!("{USER}@{domain}"));
    config.sasl = Some(ClientSasl {
        credentials: Credentials::password(USER, PASSWORD),
        policy: SaslPolicy::default(),
        resource: Some("matrix".into()),
        pipeline_mechanism: None,
        pipeline_offer: None,
        pipeline_bind: true,
        sasl2: Default::default(),
    });
    negotiate_to(p.ports.c2s, config, v).await
}

async fn negotiate_to(
    port: u16,
    config: InitiatorConfig,
    v: &Arc<XmppServerVerifier>,
) -> (Result<String, Error>, Option<Result<Verdict, CertError>>) {
    let tls_config = client_config(v.clone(), certs::provider()).unwrap();
    let mut tls = RustlsClient::new(Arc::new(tls_config));
    let attempt = async {
        let transport = client::connect_tcp("127.0.0.1", port)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let connection = Connection::initiate(
            config,
            rand_core::OsRng,
            ConnectionOptions::default(),
            TokioClock.now(),
        );
        let mut connection = connection;
        let mut io = MaybeTls::Plain(transport);
        let outcome =
            driver::negotiate(&mut io, &mut tls, &mut connection, &mut (), &TokioClock).await?;
        Ok(outcome.jid.unwrap_or_default())
    };
    let result = tokio::time::timeout(LIMIT, attempt)
        .await
        .unwrap_or_else(|_| panic!("attempt to port {port} did not end within {LIMIT:?}"));
    (result, v.last_verdict())
}

/// A bare TLS handshake on Prosody's direct TLS port (XEP-0368) with the reference domain
/// as SNI, which is how Prosody picks the certificate there: `Ok("")` or the handshake
/// error as the driver reports it (the host's classification); and the verifier's decision.
async fn direct_tls(
    p: &Prosody,
    v: &Arc<XmppServerVerifier>,
) -> (Result<String, Error>, Option<Result<Verdict, CertError>>) {
    let tls_config = client_config(v.clone(), certs::provider()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config));
    let name = ServerName::try_from(v.reference().domain().to_string()).unwrap();
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(p.direct_tls_addr())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match connector.connect(name, tcp).await {
            Ok(_) => Ok(String::new()),
            Err(e) => Err(Error::Tls(upgrade::classify(e))),
        }
    };
    let result = tokio::time::timeout(LIMIT, attempt)
        .await
        .unwrap_or_else(|_| panic!("direct TLS did not end within {LIMIT:?}"));
    (result, v.last_verdict())
}

/// What a case must come to.
enum Expect {
    /// Accepted on `basis` through `identity`, with `cert`'s key, and alice bound.
    Login {
        basis: TrustBasis,
        identity: PresentedId,
        cert: Pin,
    },
    /// The TLS handshake fails with exactly this certificate error.
    Refused(CertError),
    /// `Expired { not_after }` (the `now` field is the clock's).
    Expired(u64),
    /// `NotYetValid { not_before }`.
    NotYetValid(u64),
}

type Pin = xmpp_handshake_core::trust::Pin;

/// Checks one outcome; `Err` describes a mismatch. `login`: the domain alice must be
/// bound on after an accepted certificate (`None`: a bare TLS handshake).
fn check(
    outcome: &(Result<String, Error>, Option<Result<Verdict, CertError>>),
    expect: &Expect,
    login: Option<&str>,
) -> Result<String, String> {
    let (result, verdict) = outcome;
    match expect {
        Expect::Login {
            basis,
            identity,
            cert,
        } => {
            let v = match verdict {
                Some(Ok(v)) => v,
                other => return Err(format!("expected acceptance, verifier said {other:?}")),
            };
            if v.basis != *basis || v.identity.as_ref() != Some(identity) || v.pin != *cert {
                return Err(format!(
                    "accepted, but as {:?} / {:?} / {:?}",
                    v.basis, v.identity, v.pin.spki_sha256
                ));
            }
            if !v.validity_checked || v.tls_server_end_point.is_none() {
                return Err(format!("verdict incomplete: {v:?}"));
            }
            match (result, login) {
                (Ok(_), None) => Ok(format!("handshake done ({basis:?}, {identity:?})")),
                (Ok(jid), Some(domain)) if jid.starts_with(&format!("{USER}@{domain}/")) => {
                    Ok(format!("bound {jid} ({basis:?}, {identity:?})"))
                }
                (other, _) => Err(format!("certificate accepted, but: {other:?}")),
            }
        }
        refused => {
            // The refusal comes typed in the error itself; the verifier recorded the same.
            let e = match result {
                Err(Error::Tls(TlsError::Certificate(e))) => e,
                other => return Err(format!("expected a refused certificate, got {other:?}")),
            };
            match verdict {
                Some(Err(recorded)) if recorded == e => {}
                other => {
                    return Err(format!(
                        "the error says {e:?}, the verifier recorded {other:?}"
                    ))
                }
            }
            let ok = match (refused, e) {
                (Expect::Refused(want), got) => want == got,
                (Expect::Expired(t), CertError::Expired { not_after, .. }) => not_after.0 == *t,
                (Expect::NotYetValid(t), CertError::NotYetValid { not_before, .. }) => {
                    not_before.0 == *t
                }
                _ => false,
            };
            if ok {
                Ok(format!("refused: {e}"))
            } else {
                Err(format!("refused with the wrong error: {e:?}"))
            }
        }
    }
}

/// Every outcome, and the ones that differ from the expectation.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    /// `login`: an accepted certificate must end in alice bound on the reference domain.
    fn record(
        &mut self,
        label: &str,
        v: &XmppServerVerifier,
        outcome: &(Result<String, Error>, Option<Result<Verdict, CertError>>),
        expect: &Expect,
        login: bool,
        started: Instant,
    ) {
        let domain = v.reference().domain();
        let line = match check(outcome, expect, login.then_some(domain)) {
            Ok(s) => format!("ok   {label} [{domain}]: {s}"),
            Err(s) => {
                self.failures.push(format!("{label} [{domain}]: {s}"));
                format!("FAIL {label} [{domain}]: {s}")
            }
        };
        let ms = started.elapsed().as_millis();
        self.lines.push(format!("{line} ({ms} ms)"));
    }
}

fn name_mismatch(domain: &str, presented: Vec<PresentedId>) -> Expect {
    Expect::Refused(CertError::NameMismatch {
        reference: domain.into(),
        presented,
    })
}

fn anchored(identity: PresentedId, cert: &ServerCert) -> Expect {
    Expect::Login {
        basis: TrustBasis::Anchors,
        identity,
        cert: cert.pin(),
    }
}

/// One row of the matrix: a name, the verifier (the configured domain and policy), the
/// expected verdict.
fn case(name: &'static str, verifier: Arc<XmppServerVerifier>, expect: Expect) -> Case {
    Case {
        name,
        verifier,
        expect,
        direct: true,
    }
}

struct Case {
    name: &'static str,
    verifier: Arc<XmppServerVerifier>,
    expect: Expect,
    /// Also over direct TLS (SNI): not for the pin-store sequences, whose next verdict
    /// depends on the previous connection.
    direct: bool,
}

impl Case {
    fn stateful(self) -> Case {
        Case {
            direct: false,
            ..self
        }
    }
}

fn start_pair(a: ProsodyOptions, b: ProsodyOptions) -> Option<(Prosody, Prosody)> {
    // Both start at once; either missing is the same skip (or failure when required).
    let second = std::thread::spawn(move || Prosody::start(b));
    let first = Prosody::start(a);
    let second = second.join().expect("start thread");
    let first = xmpp_handshake_tests::or_skip(first)?;
    let second = xmpp_handshake_tests::or_skip(second)?;
    Some((first, second))
}

#[test]
fn certificate_matrix_against_prosody() {
    let started = Instant::now();

    let good_pki = Pki::new("Good");
    let good = good_pki.issue(leaf(vec![dns("good.test")], None));
    let wrong_pki = Pki::new("WrongHost");
    let wrong = wrong_pki.issue(leaf(vec![dns("other.example")], None));
    let cn_pki = Pki::new("CnOnly");
    let cn_only = cn_pki.issue(leaf(vec![], Some("cn-only.test")));
    let wild_pki = Pki::new("WildDeep");
    let wild = wild_pki.issue(leaf(vec![dns("*.wild.test")], None));
    let bare_pki = Pki::new("WildBare");
    let bare = bare_pki.issue(leaf(vec![dns("*.wild-bare.test")], None));
    let addr_pki = Pki::new("XmppAddr");
    let addr = addr_pki.issue(leaf(vec![xmpp_addr("xmppaddr.test")], None));
    let srv_pki = Pki::new("SrvId");
    let srv = srv_pki.issue(srv_only("_xmpp-client.srv-id.test"));
    let expired_pki = Pki::new("Expired");
    let mut p = leaf(vec![dns("expired.test")], None);
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2021, 1, 1);
    let expired = expired_pki.issue(p);
    let future_pki = Pki::new("Future");
    let mut p = leaf(vec![dns("future.test")], None);
    p.not_before = date_time_ymd(2090, 1, 1);
    p.not_after = date_time_ymd(2091, 1, 1);
    let future = future_pki.issue(p);
    let trusted = Pki::new("Trusted");
    let stranger = Pki::new("Stranger").issue(leaf(vec![dns("unknown-ca.test")], None));
    let chain_pki = Pki::new("NoIntermediate");
    let leaf_only = chain_pki
        .issue(leaf(vec![dns("no-intermediate.test")], None))
        .leaf_only();
    let self_signed = ServerCert::self_signed(leaf(vec![dns("self-signed.test")], None));
    let tofu_first = ServerCert::self_signed(leaf(vec![dns("tofu.test")], None));
    let tofu_changed = ServerCert::self_signed(leaf(vec![dns("tofu.test")], None));
    let ask = ServerCert::self_signed(leaf(vec![dns("ask.test")], None));
    let idn_pki = Pki::new("Idn");
    let idn = idn_pki.issue(leaf(vec![dns("xn--bcher-kva.example")], None));

    let hosts = vec![
        host("good.test", &good),
        // The name mismatches: the configured domain's VirtualHost presents a certificate
        // that does not name it.
        host("wrong-host.test", &wrong),
        host("cn-only.test", &cn_only),
        host("a.b.wild.test", &wild),
        host("chat.wild.test", &wild),
        host("wild-bare.test", &bare),
        host("xmppaddr.test", &addr),
        host("srv-id.test", &srv),
        host("expired.test", &expired),
        host("future.test", &future),
        host("unknown-ca.test", &stranger),
        host("no-intermediate.test", &leaf_only),
        host("self-signed.test", &self_signed),
        host("tofu.test", &tofu_first),
        host("ask.test", &ask),
        host("xn--bcher-kva.example", &idn),
        host("xn--bcher-kva.example.net", &idn),
    ];
    // The second server: the same domain, a new key.
    let changed_opts = ProsodyOptions {
        users: Vec::new(),
        extra_hosts: vec![host("tofu.test", &tofu_changed)],
        ..Default::default()
    };
    let opts = ProsodyOptions {
        users: Vec::new(),
        extra_hosts: hosts,
        ..Default::default()
    };
    let Some((p, changed_server)) = start_pair(opts, changed_opts) else {
        return;
    };
    let startup = started.elapsed();

    let tofu_store = Arc::new(Mutex::new(MemoryPinStore::new()));
    let tofu = c2s(
        "tofu.test",
        CertificatePolicy::trust_on_first_use(FirstUse::Record),
        Some(good_pki.roots()),
        tofu_store.clone(),
    );
    let ask_user = c2s(
        "ask.test",
        CertificatePolicy::trust_on_first_use(FirstUse::AskUser),
        None,
        no_pins(),
    );
    let cn_fallback = CertificatePolicy {
        allow_cn_fallback: true,
        ..CertificatePolicy::anchors()
    };
    let srv_s2s = verifier(
        ReferenceIdentity::server_to_server("srv-id.test").unwrap(),
        CertificatePolicy::anchors(),
        Some(srv_pki.roots()),
        no_pins(),
    );
    let idn_client = anchors("bücher.example", &idn_pki);
    assert_eq!(idn_client.reference().domain(), "xn--bcher-kva.example");

    let pin = |c: &ServerCert| c.pin();
    let cases = vec![
        case(
            "good chain",
            anchors("good.test", &good_pki),
            anchored(PresentedId::DnsId("good.test".into()), &good),
        ),
        case(
            "wrong host",
            anchors("wrong-host.test", &wrong_pki),
            name_mismatch(
                "wrong-host.test",
                vec![PresentedId::DnsId("other.example".into())],
            ),
        ),
        case(
            "name only in CN",
            anchors("cn-only.test", &cn_pki),
            name_mismatch(
                "cn-only.test",
                vec![PresentedId::CommonName("cn-only.test".into())],
            ),
        ),
        case(
            "name only in CN, CN fallback enabled",
            c2s("cn-only.test", cn_fallback, Some(cn_pki.roots()), no_pins()),
            anchored(PresentedId::CommonName("cn-only.test".into()), &cn_only),
        ),
        case(
            "wildcard too deep",
            anchors("a.b.wild.test", &wild_pki),
            name_mismatch(
                "a.b.wild.test",
                vec![PresentedId::DnsId("*.wild.test".into())],
            ),
        ),
        case(
            "wildcard, one label",
            anchors("chat.wild.test", &wild_pki),
            anchored(PresentedId::DnsId("*.wild.test".into()), &wild),
        ),
        case(
            "wildcard for the bare domain",
            anchors("wild-bare.test", &bare_pki),
            name_mismatch(
                "wild-bare.test",
                vec![PresentedId::DnsId("*.wild-bare.test".into())],
            ),
        ),
        case(
            "xmppAddr only",
            anchors("xmppaddr.test", &addr_pki),
            anchored(PresentedId::XmppAddr("xmppaddr.test".into()), &addr),
        ),
        case(
            "SRV-ID only",
            anchors("srv-id.test", &srv_pki),
            anchored(PresentedId::SrvId("_xmpp-client.srv-id.test".into()), &srv),
        ),
        case(
            "expired",
            anchors("expired.test", &expired_pki),
            Expect::Expired(1_609_459_200),
        ),
        case(
            "not yet valid",
            anchors("future.test", &future_pki),
            Expect::NotYetValid(3_786_912_000),
        ),
        case(
            "unknown CA",
            anchors("unknown-ca.test", &trusted),
            Expect::Refused(CertError::UnknownIssuer {
                spki: pin(&stranger).spki_sha256,
                cert: pin(&stranger).cert_sha256,
            }),
        ),
        case(
            "intermediate missing",
            anchors("no-intermediate.test", &chain_pki),
            Expect::Refused(CertError::UnknownIssuer {
                spki: pin(&leaf_only).spki_sha256,
                cert: pin(&leaf_only).cert_sha256,
            }),
        ),
        case(
            "self-signed, anchors",
            anchors("self-signed.test", &trusted),
            Expect::Refused(CertError::SelfSigned {
                spki: pin(&self_signed).spki_sha256,
                cert: pin(&self_signed).cert_sha256,
            }),
        ),
        case(
            "self-signed, first use (record)",
            tofu.clone(),
            Expect::Login {
                basis: TrustBasis::FirstUse,
                identity: PresentedId::DnsId("tofu.test".into()),
                cert: pin(&tofu_first),
            },
        )
        .stateful(),
        case(
            "self-signed, same key again",
            tofu.clone(),
            Expect::Login {
                basis: TrustBasis::StoredPin,
                identity: PresentedId::DnsId("tofu.test".into()),
                cert: pin(&tofu_first),
            },
        )
        .stateful(),
        case(
            "self-signed, first use (ask the user)",
            ask_user.clone(),
            Expect::Refused(CertError::NotTrustedFirstUse {
                domain: "ask.test".into(),
                spki: pin(&ask).spki_sha256,
                cert: pin(&ask).cert_sha256,
                self_signed: true,
            }),
        )
        .stateful(),
        case(
            "IDN typed as a U-label",
            idn_client,
            anchored(PresentedId::DnsId("xn--bcher-kva.example".into()), &idn),
        ),
        case(
            "another IDN",
            anchors("xn--bcher-kva.example.net", &idn_pki),
            name_mismatch(
                "xn--bcher-kva.example.net",
                vec![PresentedId::DnsId("xn--bcher-kva.example".into())],
            ),
        ),
    ];

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut report = Report::default();
    let run = |report: &mut Report,
               label: &str,
               server: &Prosody,
               v: &Arc<XmppServerVerifier>,
               expect: &Expect| {
        let t = Instant::now();
        let outcome = rt.block_on(login(server, v));
        report.record(label, v, &outcome, expect, true, t);
    };
    for case in &cases {
        run(&mut report, case.name, &p, &case.verifier, &case.expect);
    }
    // The same certificates, chosen by SNI on the direct TLS port.
    for case in cases.iter().filter(|c| c.direct) {
        let t = Instant::now();
        let outcome = rt.block_on(direct_tls(&p, &case.verifier));
        let label = format!("direct TLS, {}", case.name);
        report.record(&label, &case.verifier, &outcome, &case.expect, false, t);
    }

    // The approved first-use certificate verifies from the pin on the next connection.
    if let Some(Err(e)) = ask_user.last_verdict() {
        ask_user.approve_first_use(&e).unwrap();
    }
    let approved = Expect::Login {
        basis: TrustBasis::StoredPin,
        identity: PresentedId::DnsId("ask.test".into()),
        cert: pin(&ask),
    };
    run(&mut report, "approved first use", &p, &ask_user, &approved);

    // The same domain from the second server, with another key: fails closed, twice.
    let change = CertError::PinChanged(Box::new(PinChange {
        domain: "tofu.test".into(),
        old_spki: pin(&tofu_first).spki_sha256,
        new_spki: pin(&tofu_changed).spki_sha256,
        old_cert: pin(&tofu_first).cert_sha256,
        new_cert: pin(&tofu_changed).cert_sha256,
    }));
    let refused_change = Expect::Refused(change.clone());
    run(
        &mut report,
        "self-signed, changed key",
        &changed_server,
        &tofu,
        &refused_change,
    );
    assert_eq!(
        tofu_store.lock().unwrap().load("tofu.test"),
        Some(pin(&tofu_first)),
        "the store still holds the first key"
    );
    run(
        &mut report,
        "changed key, retried",
        &changed_server,
        &tofu,
        &refused_change,
    );
    tofu.accept_changed_certificate(&change).unwrap();
    let accepted = Expect::Login {
        basis: TrustBasis::StoredPin,
        identity: PresentedId::DnsId("tofu.test".into()),
        cert: pin(&tofu_changed),
    };
    run(
        &mut report,
        "changed key, accepted",
        &changed_server,
        &tofu,
        &accepted,
    );

    // S2S: the client SRV-ID does not name the server-to-server service. Prosody presents
    // the host's certificate on its s2s STARTTLS too.
    let t = Instant::now();
    let s2s = rt.block_on(negotiate_to(
        p.ports.s2s,
        InitiatorConfig::server("srv-id.test", "example.org"),
        &srv_s2s,
    ));
    let s2s_expect = name_mismatch(
        "srv-id.test",
        vec![PresentedId::SrvId("_xmpp-client.srv-id.test".into())],
    );
    report.record("SRV-ID only, S2S", &srv_s2s, &s2s, &s2s_expect, false, t);

    eprintln!(
        "certificate matrix against Prosody (startup {} ms, total {} ms):\n{}",
        startup.as_millis(),
        started.elapsed().as_millis(),
        report.lines.join("\n")
    );
    assert!(
        report.failures.is_empty(),
        "{} case(s) differ from the in-memory matrix:\n{}\n--- prosody log ---\n{}",
        report.failures.len(),
        report.failures.join("\n"),
        p.log_tail(40)
    );
}
