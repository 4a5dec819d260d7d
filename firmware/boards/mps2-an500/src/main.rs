//! The firmware app on QEMU's ARM MPS2 AN500 (`qemu-system-arm -M mps2-an500`): a
//! Cortex-M7 running the Thumb code the NUCLEO-F767ZI runs, with the F767's flash, RAM and
//! heap (`memory.x`, [`HEAP`]), Ethernet through the emulated SMSC LAN9118 (the
//! `lan9118` crate) on a TAP device, embassy time on SysTick ([`time_driver`]), defmt over
//! semihosting. Test-only: its random numbers come from a seed fixed at build time
//! ([`rng`]), which no real board may do.
//!
//! What it measures on the instruction set, logged for the test (`tests/tests/firmware_qemu.rs`):
//! the allocator's high-water mark against the 24 KiB heap, the deepest stack by painting
//! (cortex-m-rt's `paint-stack`), and the instructions each login takes (QEMU's
//! `-icount shift=0`: one instruction per virtual nanosecond; the time asleep in WFI is not
//! counted, [`time_driver::instructions`]).
//!
//! Test commands on UART0 (QEMU's stdin): `p` panics, `f` raises a HardFault; both end in
//! the `HardFault` handler, which resets the board, as on the F767.
#![no_std]
#![no_main]

mod flash;
mod rng;
mod time_driver;

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use defmt::{error, info, unwrap, warn};
use embassy_executor::{raw, Spawner};
use embassy_net::{Ipv4Cidr, StackResources};
use embassy_time::{Duration, Timer};
use lan9118::{Lan9118, Mmio};
use static_cell::StaticCell;
use xmpp_handshake_firmware::app::SocketBuffers;
use xmpp_handshake_firmware::config;
use xmpp_handshake_firmware::store::NorFlashStore;
use xmpp_handshake_firmware::tls::EmbeddedTlsConnector;
use xmpp_handshake_firmware::Memory;
use {defmt_semihosting as _, panic_probe as _};

/// Buffers and heap: the F767's.
const MEMORY: Memory = Memory::DEFAULT;
/// The F767's heap.
const HEAP: usize = 24 * 1024;
/// The SCRAM cache: the F767's sector 11, in the emulated flash.
const CACHE_OFFSET: u32 = 0x1C_0000;
const CACHE_SIZE: u32 = 0x4_0000;
/// The LAN9118's registers on the AN500 and its interrupt line.
const LAN9118_BASE: usize = 0xA000_0000;
const LAN9118_IRQ: u16 = 13;
/// CMSDK APB UART0 (QEMU's first serial port) and its receive interrupt.
const UART0_BASE: usize = 0x4000_4000;
const UART0_RX_IRQ: u16 = 0;
/// Static RAM plus the deepest stack, as `tests/run` holds the F767 to (68 KiB).
const RAM_WITH_STACK_BUDGET: usize = 69_632;
/// The period of the heap, stack and instruction report (`MPS2_REPORT_MS`).
const REPORT_MS: u64 = match option_env!("MPS2_REPORT_MS") {
    Some(ms) => parse_u64(ms),
    None => 5000,
};

const fn parse_u64(s: &str) -> u64 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0u64;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "MPS2_REPORT_MS: expected milliseconds"
        );
        n = n * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    n
}

/// The allocator, with its high-water mark (the figure the 24 KiB heap must cover) and its
/// low-water mark since the last report (what stays allocated between sessions: a leak
/// raises it).
struct MeasuredHeap {
    heap: embedded_alloc::LlffHeap,
    peak: AtomicUsize,
    low: AtomicUsize,
}

unsafe impl GlobalAlloc for MeasuredHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let p = unsafe { self.heap.alloc(layout) };
        if !p.is_null() {
            self.peak.fetch_max(self.heap.used(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { self.heap.dealloc(ptr, layout) };
        self.low.fetch_min(self.heap.used(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: MeasuredHeap = MeasuredHeap {
    heap: embedded_alloc::LlffHeap::empty(),
    peak: AtomicUsize::new(0),
    low: AtomicUsize::new(usize::MAX),
};

static TRUST_ANCHOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ca.der"));
/// `XMPP_PIN`: SHA-256 of the server's key, 32 bytes each (empty: no pins).
static PINS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pins.bin"));
/// `XMPP_TRUST_FIRST_USE=1`.
const FIRST_USE: bool = match option_env!("XMPP_TRUST_FIRST_USE") {
    Some(v) => v.len() == 1 && v.as_bytes()[0] == b'1',
    None => false,
};

type Device = Lan9118<Mmio>;

/// Every panic ends here (`panic-probe` raises a HardFault), among them a failed heap
/// allocation: the board resets and the app starts over, as the F767 does.
#[exception]
unsafe fn HardFault(_frame: &cortex_m_rt::ExceptionFrame) -> ! {
    error!("hard fault (a panic, or the heap exhausted): resetting");
    cortex_m::peripheral::SCB::sys_reset()
}

/// External interrupts: the LAN9118 and UART0's receiver (the test commands).
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    match irqn {
        n if n == LAN9118_IRQ as i16 => {
            // SAFETY: the AN500's LAN9118 window.
            lan9118::on_interrupt(&unsafe { Mmio::new(LAN9118_BASE) })
        }
        n if n == UART0_RX_IRQ as i16 => test_command(),
        _ => {}
    }
}

/// A byte on UART0: `p` panics, `f` executes an undefined instruction (a HardFault).
fn test_command() {
    let uart = UART0_BASE as *mut u32;
    // SAFETY: CMSDK APB UART registers: DATA at 0x0, INTCLEAR at 0xC.
    let byte = unsafe {
        let byte = core::ptr::read_volatile(uart) as u8;
        core::ptr::write_volatile(uart.add(3), 0b10);
        byte
    };
    match byte {
        b'p' => {
            warn!("test command: panic");
            panic!("test command")
        }
        b'f' => {
            warn!("test command: HardFault (undefined instruction)");
            cortex_m::asm::udf()
        }
        _ => {}
    }
}

#[derive(Clone, Copy)]
struct Irq(u16);
// SAFETY: the AN500's external interrupt numbers.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// Set by the executor's pender: a task was woken, poll again before sleeping.
static PENDED: AtomicBool = AtomicBool::new(false);

#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDED.store(true, Ordering::Release);
}

#[entry]
fn main() -> ! {
    {
        static mut HEAP_MEM: [MaybeUninit<u8>; HEAP] = [MaybeUninit::uninit(); HEAP];
        // SAFETY: runs once, before any allocation; HEAP_MEM is used by nothing else.
        unsafe {
            ALLOCATOR
                .heap
                .init(core::ptr::addr_of_mut!(HEAP_MEM) as usize, HEAP)
        }
    }
    let mut core = unwrap!(cortex_m::Peripherals::take());
    time_driver::start(&mut core.SYST);
    static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();
    let executor: &'static raw::Executor = EXECUTOR.init(raw::Executor::new(core::ptr::null_mut()));
    let spawner = executor.spawner();
    spawner.spawn(unwrap!(app_task(spawner)));
    loop {
        // SAFETY: called from this loop only, never from the pender.
        unsafe { executor.poll() };
        time_driver::sleep_unless(&PENDED);
    }
}

/// Logs the measurements every [`REPORT_MS`]; the time it takes is not counted as the
/// app's instructions.
#[embassy_executor::task]
async fn report_task(heap_at_start: usize) -> ! {
    loop {
        Timer::after(Duration::from_millis(REPORT_MS)).await;
        time_driver::uncounted(|| {
            let (static_ram, stack) = stack_use();
            let used = ALLOCATOR.heap.used();
            let low = ALLOCATOR.low.swap(used, Ordering::Relaxed).min(used);
            info!(
                "heap: peak {} of {} bytes ({} live at the app's start, {} live now, {} at \
                 least since the last report)",
                ALLOCATOR.peak.load(Ordering::Relaxed),
                HEAP,
                heap_at_start,
                used,
                low
            );
            info!(
                "stack: deepest {} bytes; static RAM {} + stack = {} of {}",
                stack,
                static_ram,
                static_ram + stack,
                RAM_WITH_STACK_BUDGET
            );
            info!(
                "cpu: {} instructions since boot (asleep and these reports not counted)",
                time_driver::instructions()
            );
        });
    }
}

/// (static RAM, deepest stack): the stack is painted from `_stack_end` (the end of the
/// statics) to `_stack_start` (the end of RAM) at reset; the lowest word no longer
/// painted is the deepest the stack went.
fn stack_use() -> (usize, usize) {
    extern "C" {
        static _stack_start: u32;
        static _stack_end: u32;
        static __sdata: u32;
    }
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let ram = core::ptr::addr_of!(__sdata) as usize;
    let mut p = bottom;
    // SAFETY: reads of RAM between the statics and the stack pointer's start.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == 0xCCCC_CCCC {
        p += 4;
    }
    (bottom - ram, top - p)
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn app_task(spawner: Spawner) -> ! {
    let Board {
        stack,
        app,
        buffers,
        mut tls,
        mut store,
        rng,
    } = setup(spawner);
    spawner.spawn(unwrap!(report_task(ALLOCATOR.heap.used())));
    xmpp_handshake_firmware::meter::install(time_driver::instructions);
    xmpp_handshake_firmware::run(stack, &app, buffers, &mut tls, &mut store, rng).await
}

/// What `setup` hands to the app.
struct Board {
    stack: embassy_net::Stack<'static>,
    app: config::Config<'static>,
    buffers: SocketBuffers<'static>,
    tls: EmbeddedTlsConnector<'static>,
    store: NorFlashStore<flash::EmulatedFlash>,
    rng: rand_chacha::ChaCha20Rng,
}

/// `NET_ADDR` (`a.b.c.d/len`) with `NET_GATEWAY` and `NET_DNS`, checked by build.rs; DHCP
/// when unset.
fn net_config() -> embassy_net::Config {
    let Some(address) = option_env!("NET_ADDR").filter(|a| !a.is_empty()) else {
        return embassy_net::Config::dhcpv4(Default::default());
    };
    let address: Ipv4Cidr = unwrap!(address.parse().ok());
    let gateway = option_env!("NET_GATEWAY")
        .filter(|a| !a.is_empty())
        .map(|g| unwrap!(g.parse().ok()));
    let mut dns_servers = heapless::Vec::new();
    if let Some(dns) = option_env!("NET_DNS").filter(|a| !a.is_empty()) {
        let _ = dns_servers.push(unwrap!(dns.parse().ok()));
    }
    embassy_net::Config::ipv4_static(embassy_net::StaticConfigV4 {
        address,
        gateway,
        dns_servers,
    })
}

/// Heap, Ethernet, network stack and the app's statics (not inlined into the app task's
/// poll, as on the F767: its temporaries would stay on the stack under the app).
#[inline(never)]
fn setup(spawner: Spawner) -> Board {
    let boots = flash::count_boot();
    let mut rng = rng::test_only_rng(boots);
    // SAFETY: the AN500's LAN9118 window, used by this driver and its interrupt only.
    let mmio = unsafe { Mmio::new(LAN9118_BASE) };
    let device = unwrap!(Lan9118::new(mmio, [0x02, 0, 0, 0x91, 0x18, 0x01]).ok());
    let mac = device.mac_address();
    // The default resource from the MAC address, as the F767 takes its chip's id.
    let resource = config::device_resource(&mac).leak();
    // SASL2's user agent id, from the same identity: the FAST token is tied to it.
    let user_agent_id = config::device_user_agent_id(&mac).map(|id| &*id.leak());
    let mut app = unwrap!(config::from_build_env(
        xmpp_handshake_firmware::build_env!(),
        resource,
        user_agent_id,
    ));
    // `MPS2_SOAK=1`: the reconnect soak (each session closes once bound; test images only).
    app.behaviour.soak = matches!(option_env!("MPS2_SOAK"), Some("1"));
    info!(
        "xmpp firmware app on MPS2-AN500 (QEMU, boot {}): {}@{}/{}",
        boots, app.username, app.domain, app.resource
    );
    // SAFETY: enabling the two interrupts whose handlers are above.
    unsafe {
        enable_uart0_rx();
        NVIC::unmask(Irq(LAN9118_IRQ));
        NVIC::unmask(Irq(UART0_RX_IRQ));
    }
    // Three sockets: DHCP, DNS, and the one TCP connection or UDP exchange, as on the F767.
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        device,
        net_config(),
        RESOURCES.init(StackResources::new()),
        rand_core::RngCore::next_u64(&mut rng),
    );
    spawner.spawn(unwrap!(net_task(runner)));

    let (buffers, tls) =
        xmpp_handshake_firmware::board_session!(MEMORY, TRUST_ANCHOR, PINS, FIRST_USE, app.domain);
    Board {
        stack,
        app,
        buffers,
        tls: unwrap!(tls.ok()),
        store: NorFlashStore::new(
            unwrap!(flash::EmulatedFlash::take()),
            CACHE_OFFSET,
            CACHE_SIZE,
        ),
        rng,
    }
}

/// UART0's receiver on, with its interrupt (CMSDK APB UART: CTRL at 0x8, BAUDDIV at 0x10).
unsafe fn enable_uart0_rx() {
    let uart = UART0_BASE as *mut u32;
    // SAFETY: the caller's: UART0's registers.
    unsafe {
        core::ptr::write_volatile(uart.add(4), 217); // 115200 baud from 25 MHz
        core::ptr::write_volatile(uart.add(2), 0b1011); // TX, RX, RX interrupt
    }
}
