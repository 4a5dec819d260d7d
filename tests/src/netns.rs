//! Network namespaces for the suites and benchmarks that need a network of their own (a TAP
//! device for the firmware app's host build). Needs root, `ip` and `/dev/net/tun`.

use std::fs;
use std::os::fd::AsRawFd;
use std::process::Command;

/// A network namespace with `lo` up and a TAP device `tap0` holding the host side's
/// address; deleted (with the device) on drop.
pub struct Netns {
    /// The namespace's name (`ip netns`).
    pub name: String,
}

/// Runs `ip ARGS`; its stderr is the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one of that name first) with `lo` up and
    /// `tap0` up at `tap_cidr` (e.g. `10.203.0.1/24`).
    pub fn create(name: &str, tap_cidr: &str) -> Result<Self, String> {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.into() };
        let n = ns.name.as_str();
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&["-n", n, "tuntap", "add", "dev", "tap0", "mode", "tap"])?;
        ip(&["-n", n, "addr", "add", tap_cidr, "dev", "tap0"])?;
        ip(&["-n", n, "link", "set", "tap0", "up"])?;
        Ok(ns)
    }

    /// Moves the calling thread (and what it spawns from now on) into the namespace.
    pub fn enter(&self) -> Result<(), String> {
        let file = fs::File::open(format!("/run/netns/{}", self.name))
            .map_err(|e| format!("opening the namespace: {e}"))?;
        // SAFETY: setns on a valid namespace fd affects only the calling thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}
