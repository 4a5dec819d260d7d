// The negotiation timeline: one row per step of RFC 6120's negotiation, lit when the
// library reports that the step really happened (onEvent), with its time and details.

const STEPS = [
  { step: "connect", name: "Transport open", ref: "" },
  { step: "header", name: "Stream header", ref: "§4.7" },
  { step: "features", name: "Stream features", ref: "§4.3.2" },
  { step: "starttls", name: "STARTTLS", ref: "§5.4.2", tls: true },
  { step: "proceed", name: "Proceed", ref: "§5.4.2.3", tls: true },
  { step: "tls", name: "TLS handshake", ref: "§5.4.3", tls: true },
  { step: "restart", name: "Stream restart", ref: "§5.4.3.3 · §6.4.6" },
  { step: "sasl", name: "SASL authentication", ref: "§6.4" },
  { step: "bind", name: "Resource binding", ref: "§7" },
];

const LABELS = {
  version: "Version",
  cipher: "Cipher suite",
  fingerprint: "Certificate SHA-256",
  trust: "Trust",
  mechanism: "Mechanism",
  jid: "JID",
};

const CONNECT = {
  websocket: "WebSocket, subprotocol xmpp (RFC 7395):",
  tunnel: "WebSocket to the bridge, raw TCP behind it:",
};

const TRUST = {
  anchors: "verified against the pinned CA",
  "stored-pin": "matches the pinned key",
  "first-use": "first use: key pinned now",
};

function readable(url) {
  try {
    return decodeURIComponent(url);
  } catch (_) {
    return url;
  }
}

/** What a step's row shows, from the library's event detail. */
function summary(step, detail) {
  if (!detail || typeof detail !== "object") return detail;
  switch (step) {
    case "connect":
      return detail.url
        ? `${CONNECT[detail.mode] || ""} ${readable(detail.url)}${detail.secure === false ? " (unencrypted, loopback)" : ""}`
        : undefined;
    case "header":
    case "bind":
    case "starttls":
    case "proceed":
      return undefined;
    case "features": {
      const parts = [];
      if (detail.starttls) parts.push(detail.starttlsRequired ? "STARTTLS (required)" : "STARTTLS");
      if (detail.mechanisms && detail.mechanisms.length) parts.push(detail.mechanisms.join(" "));
      if (detail.bind) parts.push("bind");
      return parts.length ? parts.join(" · ") : undefined;
    }
    case "restart":
      return detail.after === "tls" ? "after TLS (new stream, new features)" : "after SASL success";
    case "tls": {
      const trust = detail.trust || (detail.firstUse ? "first-use" : undefined);
      return {
        version: detail.version,
        cipher: detail.cipher,
        fingerprint: detail.fingerprint,
        trust: trust ? TRUST[trust] || trust : undefined,
      };
    }
    case "sasl":
      return detail.mechanism ? { mechanism: detail.mechanism } : undefined;
    default:
      return detail;
  }
}

export class Timeline {
  constructor(list) {
    this.list = list;
    this.rows = new Map();
    this.start = 0;
    for (const s of STEPS) {
      const li = document.createElement("li");
      li.dataset.step = s.step;
      li.dataset.state = "pending";
      li.className = s.step;
      li.innerHTML =
        '<span class="mark"></span><div class="head"><span class="name"></span>' +
        '<span class="count"></span><span class="ref"></span><span class="time"></span></div>' +
        '<div class="detail"></div>';
      li.querySelector(".name").textContent = s.name;
      li.querySelector(".ref").textContent = s.ref;
      list.append(li);
      this.rows.set(s.step, { li, def: s, count: 0, times: [] });
    }
  }

  /** Back to "pending"; in websocket mode the TLS steps are skipped (TLS is the browser's). */
  reset(mode) {
    this.start = performance.now();
    for (const { li, def } of this.rows.values()) {
      const row = this.rows.get(def.step);
      row.count = 0;
      row.times = [];
      li.querySelector(".count").textContent = "";
      li.querySelector(".time").textContent = "";
      const detail = li.querySelector(".detail");
      detail.textContent = "";
      if (def.tls && mode === "websocket") {
        li.dataset.state = "skipped";
        detail.textContent = def.step === "tls"
          ? "Not here: RFC 7395 never negotiates STARTTLS; TLS is the browser's (wss://)."
          : "";
      } else {
        li.dataset.state = "pending";
      }
      if (def.step === "connect") {
        detail.textContent = CONNECT[mode].replace(/:$/, "");
      }
    }
    this.activateNext();
  }

  /** A step happened: light it, note when, show its details. */
  event(step, detail) {
    const row = this.rows.get(step);
    if (!row) return;
    const d = detail && typeof detail === "object" ? detail : {};
    if (step === "sasl" && d.state === "started") {
      // The exchange began; the row is done when the server says <success/>.
      row.li.dataset.state = "active";
      this.detail(step, { mechanism: d.mechanism });
      return;
    }
    // A header counts once per stream: when the server's arrives.
    if (step !== "header" || d.dir !== "out") {
      row.count += 1;
      row.times.push(Math.round(performance.now() - this.start));
    }
    row.li.dataset.state = "done";
    row.li.querySelector(".time").textContent = `+${row.times.join(" · ")} ms`;
    row.li.querySelector(".count").textContent = row.count > 1 ? `×${row.count}` : "";
    this.detail(step, summary(step, detail));
    this.activateNext(step);
  }

  /** More about a step that happened (e.g. the bound JID). */
  detail(step, detail) {
    const row = this.rows.get(step);
    if (row && detail !== undefined && detail !== null && detail !== "") {
      renderDetail(row.li.querySelector(".detail"), step, detail);
    }
  }

  /** The step in progress failed. */
  fail() {
    const active = this.list.querySelector('li[data-state="active"]');
    if (active) active.dataset.state = "failed";
  }

  /** Stops the "in progress" marker (closed or bound). */
  settle() {
    for (const li of this.list.querySelectorAll('li[data-state="active"]')) {
      li.dataset.state = "pending";
    }
  }

  activateNext(after) {
    for (const li of this.list.querySelectorAll('li[data-state="active"]')) {
      li.dataset.state = "pending";
    }
    let seen = after === undefined;
    for (const { li, def } of this.rows.values()) {
      if (!seen) {
        seen = def.step === after;
        continue;
      }
      if (li.dataset.state === "pending") {
        li.dataset.state = "active";
        return;
      }
    }
  }
}

function renderDetail(el, step, detail) {
  el.textContent = "";
  if (typeof detail !== "object") {
    el.textContent = String(detail);
    return;
  }
  const dl = document.createElement("dl");
  dl.className = "kv";
  for (const [key, value] of Object.entries(detail)) {
    if (value === undefined || value === null) continue;
    const dt = document.createElement("dt");
    dt.textContent = LABELS[key] || key;
    const dd = document.createElement("dd");
    dd.textContent = Array.isArray(value) ? value.join(" ") : String(value);
    if (key === "fingerprint") {
      dd.className = "fp";
      dd.id = `${step}-fingerprint`;
    }
    dl.append(dt, dd);
  }
  el.append(dl);
}
