//! The firmware on QEMU's emulated Cortex-M7 board (`firmware/boards/mps2-an500`): its image
//! built for a test's server (the XMPP settings are build-time, as on every board), booted
//! by the board's runner script (`run-qemu`: QEMU with the LAN9118 on `tap0`, `-icount
//! shift=0`, the defmt log decoded by `defmt-print`) on a thread inside the test's network
//! namespace ([`crate::firmware::in_namespace`]).
//!
//! Needs `qemu-system-arm`, `defmt-print` and the board's toolchain (rustup installs it
//! from the board's `rust-toolchain.toml`); without them this prints a skip, unless
//! `XMPP_HANDSHAKE_REQUIRE_SERVERS=1` (tests/run), where it fails.

use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::firmware::DEVICE_CIDR;

const BOARD: &str = "mps2-an500";
const BIN: &str = "xmpp-firmware-mps2-an500";
const TARGET: &str = "thumbv7em-none-eabihf";

/// Why this machine cannot run the emulated board, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    for tool in ["qemu-system-arm", "defmt-print"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} not found"));
        }
    }
    crate::firmware::missing_prerequisite()
}

/// The board crate's directory.
pub fn board_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware/boards")
        .join(BOARD)
}

/// The board's build directory: `QEMU_BOARD_TARGET_DIR`, else `boards` in the target
/// directory this test binary was built in (kept between runs: a rebuild for new settings
/// compiles the board crate and links, ~40 s).
fn board_target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("QEMU_BOARD_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/<test> -> target
    exe.ancestors().nth(3).expect("target dir").join("boards")
}

/// Builds the board's release image with `env` (the `XMPP_*` settings, `NET_ADDR`, ...)
/// and copies it to `work/NAME.elf`. One build at a time (they share the build directory).
pub fn build_image(name: &str, env: &[(&str, String)], work: &Path) -> Result<PathBuf, String> {
    static BUILDS: Mutex<()> = Mutex::new(());
    let _one = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let target_dir = board_target_dir();
    let started = Instant::now();
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--quiet"])
        .current_dir(board_dir())
        .env("CARGO_TARGET_DIR", &target_dir)
        // The board's rust-toolchain.toml decides, not the toolchain that runs this test.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    // Settings the test does not give are unset, not inherited.
    for var in [
        "XMPP_JID",
        "XMPP_PASSWORD",
        "XMPP_SERVER",
        "XMPP_CA",
        "XMPP_PIN",
        "XMPP_TRUST_FIRST_USE",
        "XMPP_RESOURCE",
        "XMPP_REPORT_TO",
        "XMPP_PERIOD_MS",
        "XMPP_NTP",
        "NET_ADDR",
        "NET_GATEWAY",
        "NET_DNS",
        "MPS2_REPORT_MS",
        "MPS2_SOAK",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = cmd
        .output()
        .map_err(|e| format!("cargo build in {}: {e}", board_dir().display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the {BOARD} image failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!(
        "built the {BOARD} image ({name}) in {:.0?}",
        started.elapsed()
    );
    let elf = work.join(format!("{name}.elf"));
    fs::copy(target_dir.join(TARGET).join("release").join(BIN), &elf)
        .map_err(|e| format!("copying the image: {e}"))?;
    Ok(elf)
}

/// The board's address on the TAP link (static, `NET_ADDR`).
pub fn device_cidr() -> &'static str {
    DEVICE_CIDR
}

/// QEMU running an image, through the board's runner script; killed (with the decoder)
/// on drop. The decoded log goes to `NAME.log` in the work dir.
pub struct Board {
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Board {
    /// Boots `elf` with the LAN9118 on `tap0` (call it on a thread inside the namespace).
    pub fn boot(name: &str, elf: &Path, work: &Path) -> Result<Board, String> {
        let log = work.join(format!("{name}.log"));
        let mut child = Command::new(board_dir().join("run-qemu"))
            .arg(elf)
            .env("TAP_IF", "tap0")
            .stdin(Stdio::piped())
            .stdout(fs::File::create(&log).map_err(|e| e.to_string())?)
            .stderr(fs::File::create(work.join(format!("{name}.err"))).map_err(|e| e.to_string())?)
            // Its own process group: QEMU and defmt-print end together.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting run-qemu: {e}"))?;
        let stdin = child.stdin.take();
        Ok(Board { child, stdin, log })
    }

    /// The decoded log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a byte to UART0: `p` panics the board, `f` raises a HardFault.
    pub fn command(&mut self, byte: u8) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("no stdin")?;
        stdin
            .write_all(&[byte])
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("writing to the board's UART: {e}"))
    }

    /// Waits until the log has `n` lines containing `needle`.
    pub fn wait_for(&mut self, needle: &str, n: usize, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.log().matches(needle).count() >= n {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("QEMU exited ({status}) before {needle:?} x{n}"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no {needle:?} x{n} in the board's log within {limit:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ends QEMU and the decoder.
    pub fn stop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: signals the process group this Board started.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The numbers of the last log line containing `prefix`, in order (e.g. `heap: peak`).
pub fn last_numbers(log: &str, prefix: &str) -> Option<Vec<u64>> {
    let line = log.lines().rev().find(|l| l.contains(prefix))?;
    Some(numbers(line))
}

/// The decimal numbers in `line`, in order.
pub fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The static estimate of the deepest task stack of `elf` (`firmware/boards/stack-estimate`,
/// what `firmware/boards/check` holds against the budget), to set against the painted figure.
pub fn stack_estimate(elf: &Path) -> Result<u64, String> {
    let out = Command::new(board_dir().join("../stack-estimate"))
        .arg(elf)
        .arg(r"TaskStorage\$LT\$F\$GT\$4poll")
        .current_dir(board_dir())
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .map_err(|e| format!("stack-estimate: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.strip_prefix("stack estimate "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .max()
        .ok_or_else(|| {
            format!(
                "stack-estimate printed no estimate:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
