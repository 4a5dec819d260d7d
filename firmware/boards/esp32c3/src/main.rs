//! The firmware app on an ESP32-C3: Wi-Fi station (esp-radio; the radio's libraries come
//! from the registry's esp-wifi-sys crate), DHCP, the TRNG, the SCRAM cache (and a pin
//! kept on first use) in the last flash sector, TIMG0's watchdog (MWDT) fed while the app
//! makes progress, a reset on panic. Configuration: build-time environment, checked by
//! build.rs (see the README's Firmware section). All logic is in the
//! `xmpp-handshake-firmware` crate.
#![no_std]
#![no_main]

use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
use embedded_storage::nor_flash::ReadNorFlash;
use esp_hal::clock::CpuClock;
use esp_hal::peripherals::TIMG0;
use esp_hal::rng::{Trng, TrngSource};
use esp_hal::timer::timg::{MwdtStage, TimerGroup, Wdt};
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, ControllerConfig, Interface, WifiController,
};
use esp_storage::FlashStorage;
use rand_core::RngCore;
use static_cell::StaticCell;
use xmpp_handshake_firmware::config;
use xmpp_handshake_firmware::store::NorFlashStore;
use xmpp_handshake_firmware::{watchdog, Memory};
use {esp_backtrace as _, esp_println as _};

esp_bootloader_esp_idf::esp_app_desc!();

/// Buffers and heap, sized here (see the README for the budget). Wi-Fi needs its own
/// heap on top of the app's (esp-radio allocates through esp-alloc): esp-radio's
/// documentation gives the heap the 64 KiB of RAM the second-stage bootloader used
/// (reclaimed once the app runs) and 36 KiB more; the app's 24 KiB are added to the
/// latter.
const MEMORY: Memory = Memory::DEFAULT;
const RECLAIMED_HEAP_SIZE: usize = 64 * 1024;
const HEAP_SIZE: usize = (36 + 24) * 1024;

static TRUST_ANCHOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ca.der"));
/// `XMPP_PIN`: SHA-256 of the server's key, 32 bytes each (empty: no pins).
static PINS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pins.bin"));
/// `XMPP_TRUST_FIRST_USE=1`.
const FIRST_USE: bool = match option_env!("XMPP_TRUST_FIRST_USE") {
    Some(v) => v.len() == 1 && v.as_bytes()[0] == b'1',
    None => false,
};

/// esp-backtrace calls this after printing a panic (feature `custom-halt`): reset, so that
/// the app starts over instead of halting until someone presses the button.
#[no_mangle]
fn custom_halt() -> ! {
    esp_hal::system::software_reset()
}

/// Feeds TIMG0's watchdog while the app proves progress ([`watchdog::keep_fed`]); its
/// stage 0 resets the system 8 s after the last feed.
#[embassy_executor::task]
async fn watchdog_task(mut wdt: Wdt<TIMG0<'static>>) -> ! {
    wdt.set_timeout(MwdtStage::Stage0, esp_hal::time::Duration::from_secs(8));
    wdt.enable();
    watchdog::keep_fed(|| wdt.feed()).await
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) -> ! {
    runner.run().await
}

/// Keeps the station associated: reconnects after every loss.
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) -> ! {
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                info!("Wi-Fi associated");
                let _ = controller.wait_for_disconnect_async().await;
                warn!("Wi-Fi lost");
            }
            Err(e) => warn!("Wi-Fi connect failed: {:?}", e),
        }
        Timer::after(Duration::from_secs(2)).await;
    }
}

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: RECLAIMED_HEAP_SIZE);
    esp_alloc::heap_allocator!(size: HEAP_SIZE);
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);
    spawner.spawn(unwrap!(watchdog_task(timg0.wdt)));

    // The TRNG needs an entropy source until the radio runs; keep it for good.
    let _entropy = TrngSource::new(peripherals.RNG, peripherals.ADC1);
    let mut rng = unwrap!(Trng::try_new().ok());

    // The default resource from the factory MAC: two boards on one account keep their
    // own sessions.
    let mac = esp_hal::efuse::base_mac_address();
    let resource = config::device_resource(mac.as_bytes()).leak();
    // SASL2's user agent id, from the same identity: the FAST token is tied to it.
    let user_agent_id = config::device_user_agent_id(mac.as_bytes()).map(|id| &*id.leak());
    // build.rs refused a missing or malformed setting, naming it.
    let app = unwrap!(config::from_build_env(
        xmpp_handshake_firmware::build_env!(),
        resource,
        user_agent_id,
    ));
    info!(
        "xmpp firmware app on ESP32-C3: {}@{}/{}",
        app.username, app.domain, app.resource
    );

    let ssid = option_env!("WIFI_SSID").unwrap_or("");
    let password = option_env!("WIFI_PASSWORD").unwrap_or("");
    let auth = if password.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        AuthenticationMethodConfig::Wpa2Personal(unwrap!(password.try_into().ok()))
    };
    let station = StationConfig::default()
        .with_ssid(unwrap!(ssid.try_into().ok()))
        .with_authentication(auth);
    let controller = unwrap!(WifiController::new(
        peripherals.WIFI,
        ControllerConfig::default().with_initial_config(WifiConfig::Station(station)),
    )
    .ok());

    // DHCP, DNS, and the one TCP connection or UDP exchange (SNTP, SRV), with one to spare.
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        rng.next_u64(),
    );
    spawner.spawn(unwrap!(wifi_task(controller)));
    spawner.spawn(unwrap!(net_task(runner)));

    let (buffers, tls) =
        xmpp_handshake_firmware::board_session!(MEMORY, TRUST_ANCHOR, PINS, FIRST_USE, app.domain);
    let mut tls = unwrap!(tls.ok());
    // The SCRAM cache in the flash's last 4 KiB sector (outside the partition table's
    // default layout: nvs, phy_init, factory app at 0x10000).
    let flash = FlashStorage::new(peripherals.FLASH);
    let end = u32::try_from(ReadNorFlash::capacity(&flash)).unwrap_or(u32::MAX);
    let sector = FlashStorage::ERASE_SIZE as u32;
    let mut store = NorFlashStore::new(flash, end - sector, sector);
    xmpp_handshake_firmware::run(stack, &app, buffers, &mut tls, &mut store, rng).await
}
