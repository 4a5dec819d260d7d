//! The firmware app on a NUCLEO-F767ZI: on-board Ethernet (RMII, LAN8742A) with DHCP, the
//! hardware RNG, the SCRAM cache (and a pin kept on first use) in flash sector 11, the
//! independent watchdog (IWDG) fed while the app makes progress. Configuration: build-time
//! environment, checked by build.rs (see the README's Firmware section). All logic is in
//! the `xmpp-handshake-firmware` crate.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;

use defmt::{info, unwrap};
use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::flash::{Blocking, Flash};
use embassy_stm32::peripherals::IWDG;
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use embassy_stm32::wdg::IndependentWatchdog;
use embassy_stm32::{bind_interrupts, eth, Config};
use static_cell::{ConstStaticCell, StaticCell};
use xmpp_handshake_firmware::app::SocketBuffers;
use xmpp_handshake_firmware::config;
use xmpp_handshake_firmware::store::NorFlashStore;
use xmpp_handshake_firmware::tls::EmbeddedTlsConnector;
use xmpp_handshake_firmware::{watchdog, Memory};
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

/// Buffers and heap, sized here (see the README for the budget).
const MEMORY: Memory = Memory::DEFAULT;
const HEAP: usize = 24 * 1024;
/// Flash sector 11 (the last 256 KiB of the 2 MiB): the SCRAM cache.
const CACHE_OFFSET: u32 = 0x1C_0000;
const CACHE_SIZE: u32 = 0x4_0000;

#[global_allocator]
static ALLOCATOR: embedded_alloc::LlffHeap = embedded_alloc::LlffHeap::empty();

static TRUST_ANCHOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ca.der"));
/// `XMPP_PIN`: SHA-256 of the server's key, 32 bytes each (empty: no pins).
static PINS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pins.bin"));
/// `XMPP_TRUST_FIRST_USE=1`.
const FIRST_USE: bool = match option_env!("XMPP_TRUST_FIRST_USE") {
    Some(v) => v.len() == 1 && v.as_bytes()[0] == b'1',
    None => false,
};
/// The IWDG's timeout: the watchdog task pets it every second while the app progresses.
const WATCHDOG_TIMEOUT_US: u32 = 8_000_000;

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// Every panic ends here (`panic-probe` raises a HardFault), among them a failed heap
/// allocation (`handle_alloc_error` panics): the board resets and the app starts over,
/// instead of stopping in cortex-m-rt's default handler, a loop, until someone resets it.
/// Under `probe-rs run`, which stops the core when it enters a HardFault, the backtrace is
/// shown before this runs.
#[cortex_m_rt::exception]
unsafe fn HardFault(_frame: &cortex_m_rt::ExceptionFrame) -> ! {
    defmt::error!("hard fault (a panic, or the heap exhausted): resetting");
    cortex_m::peripheral::SCB::sys_reset()
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

/// Pets the IWDG while the app proves progress ([`watchdog::keep_fed`]).
#[embassy_executor::task]
async fn watchdog_task(mut iwdg: IndependentWatchdog<'static, IWDG>) -> ! {
    iwdg.unleash();
    watchdog::keep_fed(|| iwdg.pet()).await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let Board {
        stack,
        app,
        buffers,
        mut tls,
        mut store,
        rng,
    } = setup(spawner);
    xmpp_handshake_firmware::run(stack, &app, buffers, &mut tls, &mut store, rng).await
}

/// What `setup` hands to the app.
struct Board {
    stack: embassy_net::Stack<'static>,
    app: config::Config<'static>,
    buffers: SocketBuffers<'static>,
    tls: EmbeddedTlsConnector<'static>,
    store: NorFlashStore<Flash<'static, Blocking>>,
    rng: Rng<'static, RNG>,
}

/// Clocks, heap, Ethernet, network stack and the app's statics. A function of its own,
/// not inlined into the main task's poll: that poll's frame is under every poll of the
/// app, and the temporaries of setting up (the clock configuration, the Ethernet driver
/// as it is built) would take stack there for as long as the app runs.
#[inline(never)]
fn setup(spawner: Spawner) -> Board {
    {
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP] = [MaybeUninit::uninit(); HEAP];
        // SAFETY: runs once, before any allocation; HEAP_MEM is used by nothing else.
        unsafe { ALLOCATOR.init(core::ptr::addr_of_mut!(HEAP_MEM) as usize, HEAP) }
    }
    let mut config = Config::default();
    {
        use embassy_stm32::rcc::*;
        // 8 MHz from the ST-LINK's MCO, 216 MHz system clock.
        config.rcc.hse = Some(Hse {
            freq: Hertz(8_000_000),
            mode: HseMode::Bypass,
        });
        config.rcc.pll_src = PllSource::HSE;
        config.rcc.pll = Some(Pll {
            prediv: PllPreDiv::DIV4,
            mul: PllMul::MUL216,
            divp: Some(PllPDiv::DIV2),
            divq: None,
            divr: None,
        });
        config.rcc.apb1_pre = APBPrescaler::DIV4;
        config.rcc.apb2_pre = APBPrescaler::DIV2;
        config.rcc.sys = Sysclk::PLL1_P;
    }
    let p = embassy_stm32::init(config);
    spawner.spawn(unwrap!(watchdog_task(IndependentWatchdog::new(
        p.IWDG,
        WATCHDOG_TIMEOUT_US
    ))));
    let mut rng = Rng::new(p.RNG, Irqs);

    // The default resource from the chip's 96-bit unique id: two boards on one account
    // keep their own sessions.
    let uid = embassy_stm32::uid::uid();
    let resource = config::device_resource(&uid).leak();
    // SASL2's user agent id, from the same identity: the FAST token is tied to it.
    let user_agent_id = config::device_user_agent_id(&uid).map(|id| &*id.leak());
    // build.rs refused a missing or malformed setting, naming it.
    let app = unwrap!(config::from_build_env(
        xmpp_handshake_firmware::build_env!(),
        resource,
        user_agent_id,
    ));
    info!(
        "xmpp firmware app on NUCLEO-F767ZI: {}@{}/{}",
        app.username, app.domain, app.resource
    );

    // A locally administered MAC from the chip's unique id.
    let mac = [0x02, uid[0], uid[1], uid[2], uid[3], uid[4]];
    // Const-initialized in .bss: `StaticCell::init(PacketQueue::new())` built the queue on
    // the main task's stack first and copied it. One TX buffer: frames go out one at a time
    // (120 µs each at 100 Mbit/s). Three RX buffers: the TCP window (2 KiB) allows two
    // full-size segments in flight, and one more for ARP or a broadcast among them.
    static PACKETS: ConstStaticCell<PacketQueue<1, 3>> = ConstStaticCell::new(PacketQueue::new());
    let device = Ethernet::new(
        PACKETS.take(),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        mac,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    // Three sockets: DHCP, DNS, and the one TCP connection or UDP exchange (SNTP, SRV;
    // each dropped before the next is made).
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        rng.next_u64(),
    );
    spawner.spawn(unwrap!(net_task(runner)));

    let (buffers, tls) =
        xmpp_handshake_firmware::board_session!(MEMORY, TRUST_ANCHOR, PINS, FIRST_USE, app.domain);
    Board {
        stack,
        app,
        buffers,
        tls: unwrap!(tls.ok()),
        store: NorFlashStore::new(Flash::new_blocking(p.FLASH), CACHE_OFFSET, CACHE_SIZE),
        rng,
    }
}
