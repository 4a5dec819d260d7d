//! The browser's clock for the core's driver: `performance.now()` (monotonic, from the
//! page's start) and `setTimeout` for the connection's timers. A timer the driver drops
//! before it fires is cleared, so none outlives its use.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use xmpp_handshake_core::driver::Clock;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// `performance.now()` as the core's time; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrowserClock;

impl Clock for BrowserClock {
    fn now(&self) -> Duration {
        // Milliseconds with a fractional part; `as` saturates, so no panic path.
        Duration::from_micros((performance_now() * 1000.0) as u64)
    }

    async fn sleep_until(&self, at: Duration) {
        let Some(left) = at.checked_sub(self.now()).filter(|d| !d.is_zero()) else {
            return;
        };
        // Rounded up (a timer that fired early would only make the driver wait again), in
        // 64-bit arithmetic (no 128-bit division in the bundle).
        let ms = left
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(left.subsec_nanos().div_ceil(1_000_000)));
        Timeout::start(i32::try_from(ms).unwrap_or(i32::MAX)).await;
    }
}

/// One `setTimeout`, cleared when dropped.
struct Timeout {
    id: JsValue,
    fired: JsFuture,
}

impl Timeout {
    fn start(ms: i32) -> Self {
        let mut id = JsValue::UNDEFINED;
        let promise = Promise::new(&mut |resolve, _reject| id = set_timeout(&resolve, ms));
        Timeout {
            id,
            fired: JsFuture::from(promise),
        }
    }
}

impl Future for Timeout {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.fired).poll(cx).map(|_| ())
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(&self.id);
    }
}
