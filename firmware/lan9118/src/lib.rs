//! # lan9118
//!
//! An [`embassy_net_driver::Driver`] for the SMSC (Microchip) LAN9118 Ethernet controller
//! on a 32-bit memory-mapped bus, written from the LAN9118 datasheet (register map,
//! section 5; TX and RX data paths, sections 3.12 and 3.13). The LAN9220 on the ARM MPS2
//! boards is register-compatible, and QEMU's `lan9118` model (`-nic ...,model=lan9118`)
//! emulates it.
//!
//! What the driver does:
//! - [`Lan9118::new`]: checks `BYTE_TEST` and `ID_REV`, soft-resets the chip
//!   (`HW_CFG.SRST`), waits for `PMT_CTRL.READY`, keeps the MAC address the chip loaded
//!   from its EEPROM (or sets the given one when there is none), turns the MAC's
//!   receiver and transmitter on (full duplex, exact address filter plus broadcast, no
//!   promiscuous mode) and the transmitter of the TX FIFO (`TX_CFG.TX_ON`);
//! - receiving: one frame at a time, read whole from the RX data FIFO into the driver's
//!   buffer after its entry in the RX status FIFO; frames with the error summary bit are
//!   dropped; the frame check sequence is not handed up;
//! - transmitting: one frame per TX command (first and last segment), written as words
//!   into the TX data FIFO once `TX_FIFO_INF.TDFREE` has room for it; TX status is
//!   allowed to overrun (`TX_CFG.TXSAO`): nothing reads it;
//! - waking: the chip's interrupt line raised on "RX status FIFO level" (`INT_EN.RSFL`,
//!   active high, push-pull). The board binds the line to [`on_interrupt`], which clears
//!   the status and wakes the network task; with no free room in the TX FIFO the driver
//!   asks to be polled again (the chip's TX-space interrupt is not used: a frame leaves
//!   the FIFO in microseconds);
//! - link state from the internal PHY's basic status register (MII register 1, link
//!   status bit), read through `MAC_CSR` and `MII_ACC`.
//!
//! The chip's registers are reached through a [`Bus`]; [`Mmio`] is the memory-mapped one.
#![no_std]
#![warn(missing_docs)]

use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

/// Register offsets (datasheet section 5.3, "System Control and Status Registers").
pub mod reg {
    /// RX data FIFO port (read).
    pub const RX_DATA_FIFO: u32 = 0x00;
    /// TX data FIFO port (write).
    pub const TX_DATA_FIFO: u32 = 0x20;
    /// RX status FIFO port (read pops).
    pub const RX_STATUS_FIFO: u32 = 0x40;
    /// TX status FIFO port (read pops).
    pub const TX_STATUS_FIFO: u32 = 0x48;
    /// Chip ID (upper 16 bits: 0x0118 for the LAN9118, 0x9220 for the LAN9220) and revision.
    pub const ID_REV: u32 = 0x50;
    /// Interrupt line configuration.
    pub const IRQ_CFG: u32 = 0x54;
    /// Interrupt status (write 1 to clear).
    pub const INT_STS: u32 = 0x58;
    /// Interrupt enable.
    pub const INT_EN: u32 = 0x5C;
    /// Reads 0x87654321 whatever the bus's byte order.
    pub const BYTE_TEST: u32 = 0x64;
    /// FIFO level interrupt thresholds.
    pub const FIFO_INT: u32 = 0x68;
    /// Receive configuration.
    pub const RX_CFG: u32 = 0x6C;
    /// Transmit configuration.
    pub const TX_CFG: u32 = 0x70;
    /// Hardware configuration (soft reset).
    pub const HW_CFG: u32 = 0x74;
    /// RX FIFO use (status entries, data bytes).
    pub const RX_FIFO_INF: u32 = 0x7C;
    /// TX FIFO room (data bytes free) and status entries.
    pub const TX_FIFO_INF: u32 = 0x80;
    /// Power management (the READY bit).
    pub const PMT_CTRL: u32 = 0x84;
    /// MAC CSR command (indirect access to the MAC's registers).
    pub const MAC_CSR_CMD: u32 = 0xA4;
    /// MAC CSR data.
    pub const MAC_CSR_DATA: u32 = 0xA8;
    /// Automatic flow control.
    pub const AFC_CFG: u32 = 0xAC;
    /// EEPROM command.
    pub const E2P_CMD: u32 = 0xB0;
}

/// MAC control and status registers, through `MAC_CSR_CMD` (datasheet section 5.4).
pub mod mac {
    /// MAC control.
    pub const MAC_CR: u32 = 1;
    /// MAC address, bytes 4 and 5.
    pub const ADDRH: u32 = 2;
    /// MAC address, bytes 0 to 3.
    pub const ADDRL: u32 = 3;
    /// MII access (PHY register index and address, busy, write).
    pub const MII_ACC: u32 = 6;
    /// MII data.
    pub const MII_DATA: u32 = 7;
}

const BYTE_TEST_VALUE: u32 = 0x8765_4321;
const HW_CFG_SRST: u32 = 1;
const PMT_CTRL_READY: u32 = 1;
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_FDPX: u32 = 1 << 20;
const MII_BUSY: u32 = 1;
const MII_WRITE: u32 = 1 << 1;
/// The internal PHY's address on the MII.
const PHY_ADDRESS: u32 = 1;
const PHY_BASIC_STATUS: u32 = 1;
const PHY_LINK_UP: u32 = 1 << 2;
const TX_CFG_TX_ON: u32 = 1 << 1;
const TX_CFG_TXSAO: u32 = 1 << 2;
const IRQ_CFG_TYPE_PUSH_PULL: u32 = 1;
const IRQ_CFG_POL_HIGH: u32 = 1 << 4;
const IRQ_CFG_EN: u32 = 1 << 8;
const INT_RSFL: u32 = 1 << 3;
const RX_STATUS_ERROR: u32 = 1 << 15;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
/// Polls of a busy bit before the chip counts as not answering.
const SPINS: u32 = 100_000;

/// The largest frame handed up or sent: 1514 bytes without the frame check sequence,
/// rounded up to whole FIFO words with room for it.
pub const MAX_FRAME: usize = 1536;

/// Access to the chip's 32-bit registers.
pub trait Bus {
    /// Reads the register at `offset`.
    fn read(&self, offset: u32) -> u32;
    /// Writes `value` to the register at `offset`.
    fn write(&self, offset: u32, value: u32);
}

/// The chip on the memory bus at a fixed address.
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// The chip's registers at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a LAN9118's register window (256 bytes), used by
    /// nothing else.
    pub const unsafe fn new(base: usize) -> Self {
        Mmio { base }
    }
}

impl Bus for Mmio {
    fn read(&self, offset: u32) -> u32 {
        // SAFETY: inside the register window `new`'s caller vouched for.
        unsafe { core::ptr::read_volatile((self.base + offset as usize) as *const u32) }
    }
    fn write(&self, offset: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + offset as usize) as *mut u32, value) }
    }
}

/// Why the chip could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitError {
    /// `BYTE_TEST` did not read 0x87654321: no chip at this address, or a 16-bit bus.
    NoChip(u32),
    /// `ID_REV` names another chip.
    UnknownChip(u32),
    /// The chip did not finish its soft reset or become ready.
    NotReady,
    /// A MAC CSR or MII access stayed busy.
    Busy,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::NoChip(v) => write!(
                f,
                "no LAN9118 at this address (BYTE_TEST read {v:#010x}, expected 0x87654321)"
            ),
            InitError::UnknownChip(v) => write!(f, "ID_REV {v:#010x} is not a LAN9118/LAN9220"),
            InitError::NotReady => f.write_str("the chip did not become ready after its reset"),
            InitError::Busy => f.write_str("a MAC or PHY register access did not complete"),
        }
    }
}

/// Woken by [`on_interrupt`]: the network task's receive.
static RX_WAKER: AtomicWaker = AtomicWaker::new();

/// The chip's interrupt: clears the interrupt status and wakes the network task. Call it
/// from the handler of the interrupt line the chip is wired to (MPS2 AN385/AN386/AN500:
/// external interrupt 13).
pub fn on_interrupt<B: Bus>(bus: &B) {
    let status = bus.read(reg::INT_STS);
    bus.write(reg::INT_STS, status);
    RX_WAKER.wake();
}

/// The driver: the chip and one frame buffer each way.
pub struct Lan9118<B: Bus> {
    bus: B,
    mac: [u8; 6],
    rx: [u8; MAX_FRAME],
    tx: [u8; MAX_FRAME],
}

impl<B: Bus> Lan9118<B> {
    /// Resets and configures the chip (see the crate docs). The MAC address is the one
    /// the chip loaded from its EEPROM, or `fallback_mac` when it has none (all zero or
    /// all ones).
    pub fn new(bus: B, fallback_mac: [u8; 6]) -> Result<Self, InitError> {
        let test = bus.read(reg::BYTE_TEST);
        if test != BYTE_TEST_VALUE {
            return Err(InitError::NoChip(test));
        }
        let id = bus.read(reg::ID_REV);
        if !matches!(
            id >> 16,
            0x0118 | 0x0117 | 0x0116 | 0x0115 | 0x9220 | 0x9221
        ) {
            return Err(InitError::UnknownChip(id));
        }
        bus.write(reg::HW_CFG, HW_CFG_SRST);
        spin_until(|| bus.read(reg::HW_CFG) & HW_CFG_SRST == 0).ok_or(InitError::NotReady)?;
        spin_until(|| bus.read(reg::PMT_CTRL) & PMT_CTRL_READY != 0).ok_or(InitError::NotReady)?;
        let mut driver = Lan9118 {
            bus,
            mac: [0; 6],
            rx: [0; MAX_FRAME],
            tx: [0; MAX_FRAME],
        };
        let low = driver.mac_read(mac::ADDRL)?.to_le_bytes();
        let high = driver.mac_read(mac::ADDRH)?.to_le_bytes();
        let loaded = [low[0], low[1], low[2], low[3], high[0], high[1]];
        driver.mac = if loaded == [0; 6] || loaded == [0xff; 6] {
            let m = fallback_mac;
            driver.mac_write(mac::ADDRL, u32::from_le_bytes([m[0], m[1], m[2], m[3]]))?;
            driver.mac_write(mac::ADDRH, u32::from_le_bytes([m[4], m[5], 0, 0]))?;
            m
        } else {
            loaded
        };
        // The RX FIFO from word 0, no padding; TX on, its status may overrun.
        driver.bus.write(reg::RX_CFG, 0);
        driver.bus.write(reg::TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);
        driver.mac_write(mac::MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX)?;
        // An interrupt as soon as one frame's status is in the RX status FIFO (level 0).
        driver.bus.write(reg::FIFO_INT, 0x4800_0000);
        driver.bus.write(reg::INT_STS, u32::MAX);
        driver.bus.write(reg::INT_EN, INT_RSFL);
        driver.bus.write(
            reg::IRQ_CFG,
            IRQ_CFG_EN | IRQ_CFG_POL_HIGH | IRQ_CFG_TYPE_PUSH_PULL,
        );
        Ok(driver)
    }

    /// The MAC address in use.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    fn mac_wait(&self) -> Result<(), InitError> {
        spin_until(|| self.bus.read(reg::MAC_CSR_CMD) & MAC_CSR_BUSY == 0).ok_or(InitError::Busy)
    }

    fn mac_read(&self, index: u32) -> Result<u32, InitError> {
        self.mac_wait()?;
        self.bus
            .write(reg::MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | index);
        self.mac_wait()?;
        Ok(self.bus.read(reg::MAC_CSR_DATA))
    }

    fn mac_write(&self, index: u32, value: u32) -> Result<(), InitError> {
        self.mac_wait()?;
        self.bus.write(reg::MAC_CSR_DATA, value);
        self.bus.write(reg::MAC_CSR_CMD, MAC_CSR_BUSY | index);
        self.mac_wait()
    }

    /// Reads register `index` of the internal PHY.
    pub fn phy_read(&self, index: u32) -> Result<u16, InitError> {
        let idle = || Ok::<_, InitError>(self.mac_read(mac::MII_ACC)? & MII_BUSY == 0);
        spin_until(|| idle().unwrap_or(false)).ok_or(InitError::Busy)?;
        self.mac_write(
            mac::MII_ACC,
            (PHY_ADDRESS << 11) | ((index & 0x1f) << 6) | MII_BUSY,
        )?;
        spin_until(|| idle().unwrap_or(false)).ok_or(InitError::Busy)?;
        Ok(self.mac_read(mac::MII_DATA)? as u16)
    }

    /// Writes register `index` of the internal PHY.
    pub fn phy_write(&self, index: u32, value: u16) -> Result<(), InitError> {
        self.mac_write(mac::MII_DATA, value.into())?;
        self.mac_write(
            mac::MII_ACC,
            (PHY_ADDRESS << 11) | ((index & 0x1f) << 6) | MII_WRITE | MII_BUSY,
        )
    }

    /// The next good frame's length, read into `self.rx`; `None` when the RX FIFO is empty.
    fn read_frame(&mut self) -> Option<usize> {
        loop {
            let queued = (self.bus.read(reg::RX_FIFO_INF) >> 16) & 0xff;
            if queued == 0 {
                return None;
            }
            let status = self.bus.read(reg::RX_STATUS_FIFO);
            // The length includes the 4-byte frame check sequence.
            let length = ((status >> 16) & 0x3fff) as usize;
            let words = length.div_ceil(4);
            let keep = status & RX_STATUS_ERROR == 0 && (14..=MAX_FRAME).contains(&length);
            for i in 0..words {
                let word = self.bus.read(reg::RX_DATA_FIFO).to_le_bytes();
                if keep && i * 4 < MAX_FRAME {
                    self.rx[i * 4..i * 4 + 4].copy_from_slice(&word);
                }
            }
            if keep {
                return Some(length - 4);
            }
        }
    }

    fn tx_room(&self) -> bool {
        // Two command words and the frame, in bytes.
        (self.bus.read(reg::TX_FIFO_INF) & 0xffff) as usize >= MAX_FRAME + 8
    }
}

fn spin_until(mut done: impl FnMut() -> bool) -> Option<()> {
    (0..SPINS).find(|_| done()).map(|_| ())
}

/// A received frame.
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

/// Room for one frame to send.
pub struct TxToken<'a, B: Bus> {
    bus: &'a B,
    buffer: &'a mut [u8; MAX_FRAME],
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl<B: Bus> embassy_net_driver::TxToken for TxToken<'_, B> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MAX_FRAME);
        let result = f(&mut self.buffer[..len]);
        // TX command A: buffer size, first and last segment; B: the packet length (the
        // tag is left zero: nothing reads the TX status).
        self.bus.write(
            reg::TX_DATA_FIFO,
            TX_CMD_A_FIRST | TX_CMD_A_LAST | len as u32,
        );
        self.bus.write(reg::TX_DATA_FIFO, len as u32);
        for chunk in self.buffer[..len].chunks(4) {
            let mut word = [0; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.bus.write(reg::TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        result
    }
}

impl<B: Bus> embassy_net_driver::Driver for Lan9118<B> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, B>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        RX_WAKER.register(cx.waker());
        if !self.tx_room() {
            cx.waker().wake_by_ref();
            return None;
        }
        let length = self.read_frame()?;
        Some((
            RxToken {
                frame: &mut self.rx[..length],
            },
            TxToken {
                bus: &self.bus,
                buffer: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<Self::TxToken<'_>> {
        if !self.tx_room() {
            // The frame before is still leaving the FIFO: look again at the next poll.
            cx.waker().wake_by_ref();
            return None;
        }
        Some(TxToken {
            bus: &self.bus,
            buffer: &mut self.tx,
        })
    }

    fn link_state(&mut self, cx: &mut Context) -> LinkState {
        RX_WAKER.register(cx.waker());
        match self.phy_read(PHY_BASIC_STATUS) {
            Ok(status) if u32::from(status) & PHY_LINK_UP != 0 => LinkState::Up,
            _ => LinkState::Down,
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = 1514;
        caps.max_burst_size = Some(1);
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::cell::RefCell;
    use embassy_net_driver::{Driver, RxToken as _, TxToken as _};
    use std::collections::VecDeque;
    use std::vec::Vec;

    /// A chip as the datasheet describes its FIFOs, enough for the driver's paths.
    #[derive(Default)]
    struct Chip {
        rx_status: VecDeque<u32>,
        rx_data: VecDeque<u32>,
        tx_data: Vec<u32>,
        mac_data: u32,
        mac_cr: u32,
        mii_data: u32,
        addr: [u32; 2],
    }

    struct FakeBus(RefCell<Chip>);

    impl Bus for FakeBus {
        fn read(&self, offset: u32) -> u32 {
            let mut c = self.0.borrow_mut();
            match offset {
                reg::BYTE_TEST => BYTE_TEST_VALUE,
                reg::ID_REV => 0x0118_0001,
                reg::PMT_CTRL => 1,
                reg::RX_FIFO_INF => (c.rx_status.len() as u32) << 16,
                reg::RX_STATUS_FIFO => c.rx_status.pop_front().unwrap_or(0),
                reg::RX_DATA_FIFO => c.rx_data.pop_front().expect("read past the frame"),
                reg::TX_FIFO_INF => 4608,
                reg::MAC_CSR_DATA => c.mac_data,
                _ => 0,
            }
        }
        fn write(&self, offset: u32, value: u32) {
            let mut c = self.0.borrow_mut();
            match offset {
                reg::TX_DATA_FIFO => c.tx_data.push(value),
                reg::MAC_CSR_DATA => c.mac_data = value,
                reg::MAC_CSR_CMD => {
                    let index = value & 0xff;
                    let read = value & MAC_CSR_READ != 0;
                    match (index, read) {
                        (mac::MAC_CR, false) => c.mac_cr = c.mac_data,
                        (mac::ADDRL, true) => c.mac_data = c.addr[0],
                        (mac::ADDRH, true) => c.mac_data = c.addr[1],
                        (mac::ADDRL, false) => c.addr[0] = c.mac_data,
                        (mac::ADDRH, false) => c.addr[1] = c.mac_data,
                        (mac::MII_ACC, false) => c.mii_data = 0x7809 | 0x0024,
                        (mac::MII_ACC, true) => c.mac_data = 0,
                        (mac::MII_DATA, true) => c.mac_data = c.mii_data,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }

    fn waker_cx<R>(f: impl FnOnce(&mut Context) -> R) -> R {
        let waker = core::task::Waker::noop();
        f(&mut Context::from_waker(waker))
    }

    fn push_frame(chip: &mut Chip, frame: &[u8], status_bits: u32) {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // the FCS
        chip.rx_status
            .push_back(((bytes.len() as u32) << 16) | status_bits);
        for chunk in bytes.chunks(4) {
            let mut w = [0; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            chip.rx_data.push_back(u32::from_le_bytes(w));
        }
    }

    #[test]
    fn sets_the_fallback_mac_when_the_eeprom_gave_none_and_enables_rx_tx() {
        let bus = FakeBus(RefCell::new(Chip::default()));
        let driver = Lan9118::new(bus, [2, 0, 0, 0, 0, 7]).unwrap();
        assert_eq!(driver.mac_address(), [2, 0, 0, 0, 0, 7]);
        let chip = driver.bus.0.borrow();
        assert_eq!(chip.addr, [0x0000_0002, 0x0700]);
        assert_eq!(chip.mac_cr, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX);
    }

    #[test]
    fn refuses_a_bus_without_the_byte_test_pattern() {
        struct Nothing;
        impl Bus for Nothing {
            fn read(&self, _: u32) -> u32 {
                0xffff_ffff
            }
            fn write(&self, _: u32, _: u32) {}
        }
        assert_eq!(
            Lan9118::new(Nothing, [2; 6]).err(),
            Some(InitError::NoChip(0xffff_ffff))
        );
    }

    #[test]
    fn hands_up_good_frames_without_fcs_and_drops_bad_ones() {
        let bus = FakeBus(RefCell::new(Chip::default()));
        let mut driver = Lan9118::new(bus, [2; 6]).unwrap();
        let bad: Vec<u8> = (0..61).collect();
        let good: Vec<u8> = (100..163).collect();
        {
            let mut chip = driver.bus.0.borrow_mut();
            push_frame(&mut chip, &bad, RX_STATUS_ERROR);
            push_frame(&mut chip, &good, 0);
        }
        let got = waker_cx(|cx| {
            let (rx, _) = driver.receive(cx).expect("a frame");
            rx.consume(|f| f.to_vec())
        });
        assert_eq!(got, good);
        assert!(driver.bus.0.borrow().rx_data.is_empty());
        assert!(waker_cx(|cx| driver.receive(cx).is_none()));
    }

    #[test]
    fn sends_a_frame_as_commands_a_and_b_and_little_endian_words() {
        let bus = FakeBus(RefCell::new(Chip::default()));
        let mut driver = Lan9118::new(bus, [2; 6]).unwrap();
        waker_cx(|cx| {
            let tx = driver.transmit(cx).expect("room");
            tx.consume(5, |b| b.copy_from_slice(&[1, 2, 3, 4, 5]));
        });
        let chip = driver.bus.0.borrow();
        assert_eq!(
            chip.tx_data,
            [
                TX_CMD_A_FIRST | TX_CMD_A_LAST | 5,
                5,
                0x0403_0201,
                0x0000_0005
            ]
        );
    }

    #[test]
    fn reads_the_link_from_the_phy() {
        let bus = FakeBus(RefCell::new(Chip::default()));
        let mut driver = Lan9118::new(bus, [2; 6]).unwrap();
        assert!(matches!(
            waker_cx(|cx| driver.link_state(cx)),
            LinkState::Up
        ));
    }
}
