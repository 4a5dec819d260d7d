//! tests/bench peer: `bench-peer-tokio-xmpp JID PASSWORD HOST PORT CAFILE --logins N`.
//!
//! Logs in N times with tokio-xmpp's STARTTLS client (no SRV: HOST:PORT), printing
//! `BOUND <microseconds>` from the start of the connection to the `Online` event (resource
//! bound) for each, then closes the stream. The CA comes in through `SSL_CERT_FILE`
//! (rustls-native-certs reads it); CAFILE is checked to be that file.

use std::time::Instant;

use futures::StreamExt;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, jid, password, host, port, cafile, flag, logins] = &args[..] else {
        eprintln!("usage: bench-peer-tokio-xmpp JID PASSWORD HOST PORT CAFILE --logins N");
        std::process::exit(2);
    };
    if flag != "--logins" {
        std::process::exit(2);
    }
    if std::env::var("SSL_CERT_FILE").as_deref() != Ok(cafile.as_str()) {
        eprintln!("set SSL_CERT_FILE={cafile}");
        std::process::exit(2);
    }
    tokio_xmpp::rustls::crypto::ring::default_provider()
        .install_default()
        .expect("crypto provider");
    let jid: Jid = jid.parse().expect("JID");
    let port: u16 = port.parse().expect("port");
    let logins: usize = logins.parse().expect("logins");
    for _ in 0..logins {
        let started = Instant::now();
        let dns = DnsConfig::NoSrv {
            host: host.clone(),
            port,
            resolver: None,
        };
        let mut client =
            Client::new_starttls(jid.clone(), password.clone(), dns, Timeouts::default());
        loop {
            match client.next().await {
                Some(Event::Online { .. }) => {
                    println!("BOUND {}", started.elapsed().as_micros());
                    break;
                }
                Some(Event::Disconnected(e)) => {
                    eprintln!("disconnected: {e}");
                    std::process::exit(1);
                }
                Some(_) => {}
                None => {
                    eprintln!("stream ended before binding");
                    std::process::exit(1);
                }
            }
        }
        client.send_end().await.expect("close");
    }
}
