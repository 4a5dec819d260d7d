//! A real headless Chromium (Debian's `chromium` + `chromium-driver`) driven over
//! WebDriver (fantoccini), for the end-to-end suites of the demo page.
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port in its own process group
//! (stopped on drop, and by the harness's watchdog if the test process dies) and opens a
//! session with a fresh profile directory: headless, no sandbox (tests run as root), no GPU,
//! no QUIC, no background networking, component updates or sync, so the browser talks to
//! nothing but the test's loopback servers. Screenshots go to
//! `$CARGO_TARGET_DIR/artifacts/browser/` and their paths are printed.
//!
//! Missing browser: [`Error::Unavailable`], which [`crate::or_skip`] turns into a skip
//! unless `XMPP_HANDSHAKE_REQUIRE_SERVERS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::process::{find_program, free_ports, ServerProcess, LOOPBACK};
use crate::{Error, Result};

const INSTALL_HINT: &str =
    "install it with `apt-get install chromium chromium-driver` (tests/run does this)";

/// A Chromium session; the driver (and the browser) stop when dropped.
pub struct Browser {
    client: Client,
    // Field order: the driver stops before the profile is removed.
    driver: ServerProcess,
    profile: tempfile::TempDir,
    name: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session named `name` (used for the
    /// screenshot files), with a `width`×`height` window.
    pub async fn start(name: &str, width: u32, height: u32) -> Result<Browser> {
        let unavailable = |reason: String| Error::Unavailable {
            server: "chromium".into(),
            reason,
        };
        let driver_bin = find_program("chromedriver")
            .ok_or_else(|| unavailable(format!("chromedriver not found; {INSTALL_HINT}")))?;
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(find_program)
            .ok_or_else(|| unavailable(format!("chromium not found; {INSTALL_HINT}")))?;
        let profile = tempfile::Builder::new()
            .prefix("xmpp-handshake-chromium-")
            .tempdir()
            .map_err(|e| Error::io("creating the browser profile dir".into(), e))?;
        let port = free_ports(1).map_err(|e| Error::io("picking a port".into(), e))?[0];
        let mut cmd = Command::new(&driver_bin);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("HOME", profile.path());
        let log = profile.path().join("chromedriver.log");
        let mut driver = ServerProcess::spawn("chromedriver", cmd, &log, Some(profile.path()))?;
        let addr = std::net::SocketAddr::from((LOOPBACK, port));
        driver
            .wait_ready(&[addr], Duration::from_secs(20))
            .map_err(|message| Error::Startup {
                server: "chromedriver".into(),
                message,
                dir: profile.path().to_path_buf(),
                log: crate::process::log_tail(&log, 30),
            })?;
        let user_data = profile.path().join("profile");
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", user_data.display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://{addr}"))
            .await
            .map_err(|e| Error::Startup {
                server: "chromium".into(),
                message: format!("opening a WebDriver session: {e}"),
                dir: profile.path().to_path_buf(),
                log: crate::process::log_tail(&log, 30),
            })?;
        Ok(Browser {
            client,
            driver,
            profile,
            name: name.to_string(),
        })
    }

    /// [`Browser::start`], or a printed skip (`None`); see [`crate::or_skip`].
    pub async fn start_or_skip(name: &str, width: u32, height: u32) -> Option<Browser> {
        crate::or_skip(Browser::start(name, width, height).await)
    }

    /// The WebDriver client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Where screenshots go: `$CARGO_TARGET_DIR/artifacts/browser/` (or `target/...`).
    pub fn artifacts_dir() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("artifacts").join("browser")
    }

    /// Saves a PNG of the page as `<session name>-<label>.png` and prints its path.
    pub async fn screenshot(&self, label: &str) -> PathBuf {
        let dir = Self::artifacts_dir();
        let path = dir.join(format!("{}-{label}.png", self.name));
        match self.client.screenshot().await {
            Ok(png) => {
                let written =
                    std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, png));
                match written {
                    Ok(()) => println!("screenshot: {}", path.display()),
                    Err(e) => eprintln!("screenshot {}: {e}", path.display()),
                }
            }
            Err(e) => eprintln!("screenshot {label}: {e}"),
        }
        path
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Sets an input's value (as a user would type it) by element id.
    pub async fn fill(&self, id: &str, value: &str) {
        self.js(
            "const el = document.getElementById(arguments[0]);
             el.value = arguments[1];
             el.dispatchEvent(new Event('input', { bubbles: true }));
             el.dispatchEvent(new Event('change', { bubbles: true }));",
            vec![json!(id), json!(value)],
        )
        .await;
    }

    /// Clicks the element with `id`.
    pub async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking #{id}: {e}"));
    }

    /// Picks a radio button or checkbox by id, clicking its label as a user would (the
    /// page styles some inputs as segmented buttons, with the input itself hidden).
    pub async fn choose(&self, id: &str) {
        let css = format!("label[for='{id}']");
        self.client
            .find(Locator::Css(&css))
            .await
            .unwrap_or_else(|e| panic!("no label for #{id}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking the label of #{id}: {e}"));
    }

    /// Polls `expression` (a JS expression) until it is truthy; returns its value. Panics
    /// with `what` and the page's visible error after `limit`.
    pub async fn wait_for(&self, what: &str, expression: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        let script = format!("return ({expression});");
        loop {
            let v = self.js(&script, vec![]).await;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
            if truthy {
                return v;
            }
            if Instant::now() >= deadline {
                let state = self
                    .js(
                        "return [document.body.dataset.state, document.getElementById('error')?.innerText, [...document.querySelectorAll('#timeline li')].map(l => l.dataset.step + ':' + l.dataset.state).join(' '), [...document.querySelectorAll('#transcript li')].slice(-8).map(l => l.innerText).join('\\n')].join('\\n');",
                        vec![],
                    )
                    .await;
                self.screenshot(&format!("timeout-{}", slug(what))).await;
                panic!(
                    "timed out waiting for {what} ({expression})\npage state:\n{}",
                    state.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The profile directory (chromedriver's log is `chromedriver.log` in it).
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }

    /// Ends the session and stops the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.driver.stop(Duration::from_secs(5));
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
