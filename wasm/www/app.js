// The demo page: a form for connect(options), the negotiation timeline, the transcript,
// and a message box. No framework; the library is the wasm package in ./pkg/.

import { Timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const form = $("connect-form");
const timeline = new Timeline($("timeline"));
let wasm = null;
let session = null;
let lastOptions = null;

// ---- the package --------------------------------------------------------------------

async function loadPackage() {
  try {
    const mod = await import("./pkg/xmpp_handshake_wasm.js");
    await mod.default();
    wasm = mod;
    document.body.dataset.wasm = "ready";
    $("package-info").textContent = "WebAssembly package loaded · the negotiation runs in this page";
  } catch (e) {
    document.body.dataset.wasm = "missing";
    $("package-missing").hidden = false;
    $("package-info").textContent = `WebAssembly package not loaded: ${e.message}`;
    $("connect").disabled = true;
  }
}

// ---- form ------------------------------------------------------------------------

function mode() {
  return $("mode-tunnel").checked ? "tunnel" : "websocket";
}

function trust() {
  return $("trust-tofu").checked ? "tofu" : "ca";
}

const HINTS = {
  websocket:
    "XMPP over WebSocket straight to the server. TLS is the browser's (wss://); SCRAM without channel binding.",
  tunnel:
    "Raw XMPP through a WebSocket-to-TCP bridge: STARTTLS, the TLS handshake and SCRAM run in this page. The bridge only sees TLS records.",
};

function syncForm() {
  form.dataset.mode = mode();
  form.dataset.trust = trust();
  $("mode-hint").textContent = HINTS[mode()];
  if (!session) timeline.reset(mode());
}

async function prefill() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const params = new URLSearchParams(location.search);
  let config = {};
  try {
    const r = await fetch("config.json", { cache: "no-store" });
    if (r.ok) config = await r.json();
  } catch (_) {
    // A page served from elsewhere has no config.
  }
  if (config.domain) {
    $("ws-url").value = `${scheme}//${location.host}/xmpp-websocket`;
    const users = config.users || [];
    if (users[0]) $("jid").value = `${users[0]}@${config.domain}`;
    if (users[1]) $("msg-to").value = `${users[1]}@${config.domain}`;
  } else if (config.target) {
    $("mode-tunnel").checked = true;
  }
  $("bridge-url").value = `${scheme}//${location.host}/bridge`;
  if (config.target) $("target").value = config.target;
  if (config.ca) $("ca-pem").value = config.ca;
  const set = { ws: "ws-url", bridge: "bridge-url", target: "target", jid: "jid", to: "msg-to" };
  for (const [param, id] of Object.entries(set)) {
    if (params.has(param)) $(id).value = params.get(param);
  }
  if (params.get("mode") === "tunnel") $("mode-tunnel").checked = true;
  if (params.get("mode") === "websocket") $("mode-websocket").checked = true;
  if (params.get("trust") === "tofu") $("trust-tofu").checked = true;
  syncForm();
}

// ---- status, errors ---------------------------------------------------------------

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
  document.body.dataset.state = state;
}

function clearAlerts() {
  $("error").hidden = true;
  $("pin-changed").hidden = true;
}

const KINDS = {
  "pin-changed": "The server's key changed.",
  certificate: "Certificate not trusted.",
  auth: "Authentication failed.",
  "tls-required": "The server does not offer TLS.",
  tls: "TLS failed.",
  stream: "Stream error.",
  transport: "Connection failed.",
  config: "Check the form.",
};

function showError(e) {
  const kind = e && e.kind ? e.kind : "error";
  timeline.fail();
  setStatus("error", "Failed");
  if (kind === "pin-changed") {
    setStatus("error", "Server key changed");
    timeline.detail("tls", "The presented key is not the pinned one: nothing was sent over this connection.");
    $("pin-domain").textContent = e.domain || "";
    $("pin-old").textContent = e.oldFingerprint || "";
    $("pin-new").textContent = e.newFingerprint || "";
    $("pin-changed").hidden = false;
    return;
  }
  $("error").dataset.kind = kind;
  $("error-kind").textContent = KINDS[kind] || "Error.";
  let message = e && e.message ? e.message : String(e);
  if (kind === "stream" && e.condition) message += ` (${e.condition})`;
  $("error-message").textContent = message;
  $("error").hidden = false;
}

// ---- transcript ------------------------------------------------------------------

const TAGS = { out: "I", in: "R", info: "·" };

function transcriptLine(line) {
  const dir = TAGS[line.dir] ? line.dir : "info";
  const li = document.createElement("li");
  li.className = dir;
  const tag = document.createElement("span");
  tag.className = `tag ${dir}`;
  tag.textContent = TAGS[dir];
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = line.text;
  li.append(tag, text);
  const list = $("transcript");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// ---- messages --------------------------------------------------------------------

function escapeXml(s) {
  return s.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]);
}

function addMessage(dir, who, body) {
  const list = $("messages");
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  const li = document.createElement("li");
  li.className = `msg ${dir}`;
  const w = document.createElement("span");
  w.className = "who";
  w.textContent = who;
  const b = document.createElement("span");
  b.className = "body";
  b.textContent = body;
  li.append(w, b);
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function onStanza(xml) {
  let doc;
  try {
    doc = new DOMParser().parseFromString(xml, "application/xml");
  } catch (_) {
    return;
  }
  const el = doc.documentElement;
  if (!el || el.localName !== "message") return;
  const body = [...el.children].find((c) => c.localName === "body");
  if (el.getAttribute("type") === "error") {
    addMessage("in", el.getAttribute("from") || "server", "⚠ message not delivered");
    return;
  }
  if (body) addMessage("in", el.getAttribute("from") || "", body.textContent);
}

// ---- connect, send, close --------------------------------------------------------

function options(acceptChangedKey) {
  const m = mode();
  const o = {
    mode: m,
    jid: $("jid").value.trim(),
    password: $("password").value,
    onEvent: (ev) => {
      if (ev.step === "closed") {
        onClosed();
      } else if (ev.step === "bound") {
        timeline.detail("bind", { jid: ev.detail && ev.detail.jid });
      } else if (ev.step === "resumed") {
        // XEP-0198: the link dropped and the session went on over a new connection.
        const d = ev.detail || {};
        transcriptLine({ dir: "info", text: `-- session resumed: ${d.acked} acknowledged, ${d.resent} sent again --` });
      } else if (ev.step === "resume-failed") {
        const d = ev.detail || {};
        const lost = (d.notDelivered || []).length;
        transcriptLine({ dir: "info", text: `-- the server lost the session (${d.condition || "no reason"}); ${lost} not known delivered --` });
      } else if (ev.step !== "error" && ev.step !== "ack") {
        timeline.event(ev.step, ev.detail);
      }
    },
    onTranscript: transcriptLine,
    onStanza,
  };
  if (m === "websocket") {
    o.url = $("ws-url").value.trim();
    o.allowPlain = $("allow-plain").checked;
  } else {
    const bridge = $("bridge-url").value.trim();
    const sep = bridge.includes("?") ? "&" : "?";
    o.url = `${bridge}${sep}target=${encodeURIComponent($("target").value.trim())}`;
    o.channelBinding = $("channel-binding").value;
    if (trust() === "ca") {
      o.ca = $("ca-pem").value;
    } else {
      o.trustFirstUse = true;
      o.acceptChangedKey = !!acceptChangedKey;
    }
  }
  return o;
}

async function connect(acceptChangedKey) {
  if (!wasm || session) return;
  clearAlerts();
  $("transcript").textContent = "";
  $("messages").innerHTML = '<li class="empty">Messages you send and receive appear here.</li>';
  $("bound").hidden = true;
  timeline.reset(mode());
  setStatus("connecting", "Negotiating…");
  $("connect").disabled = true;
  lastOptions = options(acceptChangedKey);
  try {
    session = await wasm.connect(lastOptions);
    timeline.settle();
    $("bound-jid").textContent = session.jid;
    $("bound").hidden = false;
    setStatus("online", `Online as ${session.jid}`);
    $("disconnect").disabled = false;
    $("send").disabled = false;
  } catch (e) {
    session = null;
    $("connect").disabled = false;
    showError(e);
  }
}

function onClosed() {
  if (!session) return;
  session = null;
  timeline.settle();
  setStatus("closed", "Disconnected");
  $("disconnect").disabled = true;
  $("send").disabled = true;
  $("connect").disabled = !wasm;
}

async function disconnect() {
  const s = session;
  if (!s) return;
  $("disconnect").disabled = true;
  try {
    await s.close();
  } catch (_) {
    // Closed anyway.
  }
  onClosed();
}

async function sendMessage() {
  const to = $("msg-to").value.trim();
  const body = $("msg-body").value;
  if (!session || !to || !body) return;
  const id = `m${Date.now().toString(36)}`;
  const xml = `<message to='${escapeXml(to)}' type='chat' id='${id}'><body>${escapeXml(body)}</body></message>`;
  try {
    await session.send(xml);
    addMessage("out", `to ${to}`, body);
    $("msg-body").value = "";
  } catch (e) {
    showError(e);
  }
}

// ---- wiring ----------------------------------------------------------------------

form.addEventListener("change", syncForm);
form.addEventListener("submit", (e) => {
  e.preventDefault();
  connect(false);
});
$("disconnect").addEventListener("click", disconnect);
$("message-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sendMessage();
});
$("accept-key").addEventListener("click", () => connect(true));
$("keep-key").addEventListener("click", () => {
  $("pin-changed").hidden = true;
  setStatus("idle", "Not connected");
});

setStatus("idle", "Not connected");
await prefill();
await loadPackage();
