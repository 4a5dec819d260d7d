//! The firmware app on the host: the embassy `std` executor, embassy-time's std driver and
//! embassy-net over a TAP device, exactly the code the boards run above the network driver.
//!
//! Configuration comes from the environment, checked by the boards' build-time check
//! (`xmpp-handshake-firmware-build`, the same names and errors): `XMPP_JID`,
//! `XMPP_PASSWORD`, `XMPP_SERVER` (`a.b.c.d[:port]`, `name[:port]`, or unset for the JID's
//! domain by SRV), `XMPP_CA` (path to the trust anchors: a PEM bundle, or DER) or `XMPP_PIN` (SHA-256
//! of the server's key) or `XMPP_TRUST_FIRST_USE=1`, optional `XMPP_REPORT_TO` +
//! `XMPP_PERIOD_MS` (periodic readings), `XMPP_RESOURCE` (default: `device-` and a hash of
//! the host name and the TAP device), `XMPP_NTP` (an SNTP server: the clock then starts
//! unknown and is set from it, as on the boards; unset: the system clock), `XMPP_ECHO`
//! (`0` turns echo off); `TAP_IF` (default `tap0`), `TAP_ADDR` (`a.b.c.d/len`), `TAP_DNS`
//! (the DNS server, `a.b.c.d`, of this static configuration), `SCRAM_CACHE` (file for the
//! SCRAM cache and the pin); `XMPP_SOAK=1` closes each session once bound and reconnects
//! at once (a reconnect soak); `XMPP_IDLE_MS` (default 90000) is how long a silent server
//! goes before an ack request, and a link without an answer counts as lost after twice it
//! (`Config::idle`); `HEAP_REPORT_MS` (default 5000) is the period of the heap
//! report. Logs go to stderr (`RUST_LOG`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::process::exit;
use std::sync::atomic::{AtomicUsize, Ordering};

use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::Duration;
use rand_core::{OsRng, RngCore};
use static_cell::StaticCell;
use xmpp_handshake_firmware::app::SocketBuffers;
use xmpp_handshake_firmware::config::{device_resource, device_user_agent_id};
use xmpp_handshake_firmware::core::resolve::ServerSetting;
use xmpp_handshake_firmware::core::trust::{Fingerprint, UnixTime};
use xmpp_handshake_firmware::store::FileStore;
use xmpp_handshake_firmware::tls::{Clock, EmbeddedTlsConnector, TrustSetting};
use xmpp_handshake_firmware::{Config, Memory};
use xmpp_handshake_firmware_build::{check, TrustSetting as Trust};

/// The system allocator, counting the peak of live heap bytes (the number a board's heap
/// must cover).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Live bytes when the app starts (logger, configuration, the buffers a board would keep
/// in statics): the app's own heap is the peak above it.
static BASELINE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("{name} is not set (see the README's Firmware section)");
        exit(2)
    })
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn now() -> UnixTime {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    UnixTime(since.map(|d| d.as_secs()).unwrap_or(0))
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn heap_report(period: Duration) -> ! {
    loop {
        embassy_time::Timer::after(period).await;
        let base = BASELINE.load(Ordering::Relaxed);
        log::info!(
            "heap: peak {} bytes above the {} bytes live at start ({} live now)",
            PEAK.load(Ordering::Relaxed).saturating_sub(base),
            base,
            LIVE.load(Ordering::Relaxed)
        );
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let settings = check(|name| std::env::var(name).ok(), false).unwrap_or_else(|e| {
        eprintln!("{e}");
        exit(2)
    });
    let jid = leak(settings.jid);
    let password = leak(settings.password);
    let server_text = leak(settings.server);
    let server = ServerSetting::parse(server_text).unwrap_or(ServerSetting::Domain);
    let (ca_path, trust) = match settings.trust {
        Trust::Anchor(ca) => (Some(ca), TrustSetting::Anchors),
        Trust::Pins(pins) => {
            let bytes: Vec<u8> = pins.iter().flat_map(|p: &Fingerprint| p.0).collect();
            (None, TrustSetting::Pins(Vec::leak(bytes)))
        }
        Trust::FirstUse(ca) => (ca, TrustSetting::FirstUse),
    };
    // Every certificate of the PEM bundle, as the boards' build scripts read it.
    let anchors = match &ca_path {
        Some(path) => {
            let bundle = xmpp_handshake_firmware_build::read_anchors(path).unwrap_or_else(|e| {
                eprintln!("XMPP_CA {}: {e}", path.display());
                exit(2)
            });
            xmpp_handshake_firmware::trust_anchors(Vec::leak(bundle))
        }
        None => &[],
    };
    let tap = std::env::var("TAP_IF").unwrap_or_else(|_| "tap0".into());
    let address: Ipv4Cidr = var("TAP_ADDR").parse().unwrap_or_else(|_| {
        eprintln!("TAP_ADDR: expected a.b.c.d/len");
        exit(2)
    });
    let mut dns_servers = heapless::Vec::new();
    if let Ok(dns) = std::env::var("TAP_DNS") {
        let dns: Ipv4Addr = dns.parse().unwrap_or_else(|_| {
            eprintln!("TAP_DNS: expected a.b.c.d");
            exit(2)
        });
        let _ = dns_servers.push(dns);
    }

    let mut config = Config::new(jid, password, server).unwrap_or_else(|e| {
        eprintln!("XMPP_JID: expected user@domain: {e}");
        exit(2)
    });
    // The device's identity: the host name and the TAP device (a board takes its MAC or
    // chip id).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let id = Fingerprint::of(format!("{}/{tap}", host.trim()).as_bytes());
    config.resource = match settings.resource {
        Some(r) => leak(r),
        None => leak(device_resource(&id.0[..6])),
    };
    config.user_agent_id = device_user_agent_id(&id.0[..6]).map(leak);
    config.ntp = settings.ntp.filter(|n| n != "off").map(leak);
    let clock = match config.ntp {
        Some(_) => Clock::Sntp,
        None => Clock::Now(now),
    };
    config.behaviour.echo = std::env::var("XMPP_ECHO").as_deref() != Ok("0");
    config.behaviour.soak = std::env::var("XMPP_SOAK").as_deref() == Ok("1");
    if let Some(ms) = std::env::var("XMPP_IDLE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        config.idle = Duration::from_millis(ms);
    }
    config.behaviour.report_to = settings.report_to.map(leak);
    if let Some(ms) = settings.period_ms {
        config.behaviour.period = Duration::from_millis(ms);
    }
    config.backoff = xmpp_handshake_firmware::backoff::Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs(4),
    );

    let device = TunTapDevice::new(&tap).unwrap_or_else(|e| {
        eprintln!("TAP device {tap}: {e}");
        exit(1)
    });
    let net_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address,
        gateway: None,
        dns_servers,
    });
    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        net_config,
        RESOURCES.init(StackResources::new()),
        OsRng.next_u64(),
    );
    spawner.spawn(net_task(runner).unwrap());
    let period = std::env::var("HEAP_REPORT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(5000);
    spawner.spawn(heap_report(Duration::from_millis(period)).unwrap());

    let memory = Memory::DEFAULT;
    config.limits = memory.limits();
    let buffers = SocketBuffers {
        rx: Vec::leak(vec![0; memory.socket_rx]),
        tx: Vec::leak(vec![0; memory.socket_tx]),
    };
    let mut tls = EmbeddedTlsConnector::new(
        Vec::leak(vec![0; memory.tls_read]),
        Vec::leak(vec![0; memory.tls_write]),
        anchors,
        trust,
        config.domain,
        clock,
    )
    .unwrap_or_else(|e| {
        eprintln!("XMPP_JID: the domain is not usable as a certificate reference: {e}");
        exit(2)
    });
    let mut store =
        FileStore::new(std::env::var("SCRAM_CACHE").unwrap_or_else(|_| "scram-cache.bin".into()));
    let live = LIVE.load(Ordering::Relaxed);
    BASELINE.store(live, Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    log::info!(
        "xmpp firmware app (host build) on {tap} {address}, {jid}/{} via {}",
        config.resource,
        if server_text.is_empty() {
            "the JID's domain"
        } else {
            server_text
        }
    );
    xmpp_handshake_firmware::run(stack, &config, buffers, &mut tls, &mut store, OsRng).await
}
