//! The firmware app on an ESP32-C3: Wi-Fi station (esp-radio; the radio's libraries come
//! from the registry's esp-wifi-sys crate), DHCP, the TRNG, the SCRAM cache in the last
//! flash sector. Configuration: build-time
//! environment (see the README's Firmware section). All logic is in the
//! `xmpp-handshake-firmware` crate.
#![no_std]
#![no_main]

use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
use embedded_storage::nor_flash::ReadNorFlash;
use esp_hal::clock::CpuClock;
use esp_hal::rng::{Trng, TrngSource};
use esp_hal::timer::timg::TimerGroup;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, ControllerConfig, Interface, WifiController,
};
use esp_storage::FlashStorage;
use rand_core::RngCore;
use static_cell::StaticCell;
use xmpp_handshake_firmware::store::NorFlashStore;
use xmpp_handshake_firmware::{config, Memory};
use {esp_backtrace as _, esp_println as _};

esp_bootloader_esp_idf::esp_app_desc!();

/// Buffers and heap, sized here (see the README for the budget). Wi-Fi needs its own
/// heap on top of the app's (esp-radio allocates through esp-alloc).
const MEMORY: Memory = Memory::DEFAULT;
const HEAP_SIZE: usize = 72 * 1024;

static TRUST_ANCHOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ca.der"));

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
    esp_alloc::heap_allocator!(size: HEAP_SIZE);
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    // The TRNG needs an entropy source until the radio runs; keep it for good.
    let _entropy = TrngSource::new(peripherals.RNG, peripherals.ADC1);
    let mut rng = unwrap!(Trng::try_new().ok());

    let Some(app) = config::from_build_env(
        option_env!("XMPP_JID"),
        option_env!("XMPP_PASSWORD"),
        option_env!("XMPP_SERVER"),
        option_env!("XMPP_REPORT_TO"),
        option_env!("XMPP_PERIOD_MS"),
    ) else {
        defmt::panic!("set XMPP_JID, XMPP_PASSWORD and XMPP_SERVER when building");
    };
    info!(
        "xmpp firmware app on ESP32-C3: {}@{}",
        app.username, app.domain
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

    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        rng.next_u64(),
    );
    spawner.spawn(unwrap!(wifi_task(controller)));
    spawner.spawn(unwrap!(net_task(runner)));

    let (buffers, tls) = xmpp_handshake_firmware::board_session!(MEMORY, TRUST_ANCHOR, app.domain);
    let mut tls = unwrap!(tls.ok());
    // The SCRAM cache in the flash's last 4 KiB sector (outside the partition table's
    // default layout: nvs, phy_init, factory app at 0x10000).
    let flash = FlashStorage::new(peripherals.FLASH);
    let end = u32::try_from(ReadNorFlash::capacity(&flash)).unwrap_or(u32::MAX);
    let sector = FlashStorage::ERASE_SIZE as u32;
    let mut store = NorFlashStore::new(flash, end - sector, sector);
    xmpp_handshake_firmware::run(stack, &app, buffers, &mut tls, &mut store, rng).await
}
