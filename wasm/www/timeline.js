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
  fingerprint: "Server key SHA-256",
  firstUse: "Trust",
  mechanism: "Mechanism",
  jid: "JID",
};

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
      this.rows.set(s.step, { li, def: s, count: 0 });
    }
  }

  /** Back to "pending"; in websocket mode the TLS steps are skipped (TLS is the browser's). */
  reset(mode) {
    this.start = performance.now();
    for (const { li, def } of this.rows.values()) {
      const row = this.rows.get(def.step);
      row.count = 0;
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
        detail.textContent = mode === "websocket"
          ? "WebSocket, subprotocol xmpp (RFC 7395)"
          : "WebSocket to the bridge, raw TCP behind it";
      }
    }
    this.activateNext();
  }

  /** A step happened: light it, note when, show its details. */
  event(step, detail) {
    const row = this.rows.get(step);
    if (!row) return;
    row.count += 1;
    row.li.dataset.state = "done";
    row.li.querySelector(".time").textContent =
      `+${Math.round(performance.now() - this.start)} ms`;
    row.li.querySelector(".count").textContent = row.count > 1 ? `×${row.count}` : "";
    if (detail !== undefined && detail !== null && detail !== "") {
      renderDetail(row.li.querySelector(".detail"), step, detail);
    }
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
    if (key === "firstUse") {
      dd.textContent = value ? "first use: key pinned now" : "verified (CA or pinned key)";
    } else {
      dd.textContent = String(value);
    }
    if (key === "fingerprint") {
      dd.className = "fp";
      dd.id = `${step}-fingerprint`;
    }
    dl.append(dt, dd);
  }
  el.append(dl);
}
