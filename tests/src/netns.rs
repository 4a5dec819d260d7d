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

    /// Cuts the link to `peer` (an address on `tap0`'s subnet) silently, both ways, as a
    /// radio link that died: a blackhole route for it (nothing leaves for it) and strict
    /// reverse-path filtering (what it sends is dropped on arrival: its source now routes
    /// nowhere). No FIN, no RST, no ICMP: both ends find out by their own timers. TCP
    /// connections that are not given up meanwhile go on after [`Netns::restore_link`].
    pub fn cut_link(&self, peer: &str) -> Result<(), String> {
        ip(&[
            "-n",
            &self.name,
            "route",
            "add",
            "blackhole",
            &format!("{peer}/32"),
        ])?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sysctl", "-q", "-w"])
            .args([
                "net.ipv4.conf.all.rp_filter=1",
                "net.ipv4.conf.tap0.rp_filter=1",
            ])
            .output()
            .map_err(|e| format!("sysctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "sysctl rp_filter: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Undoes [`Netns::cut_link`] for `peer`.
    pub fn restore_link(&self, peer: &str) -> Result<(), String> {
        ip(&[
            "-n",
            &self.name,
            "route",
            "del",
            "blackhole",
            &format!("{peer}/32"),
        ])
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
