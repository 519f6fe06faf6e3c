// The wapi dashboard: plain script, no framework, no build step. It uses
// the public API only (/v1/...) and reads events live from /v1/events with
// fetch (EventSource cannot send the Authorization header, and the key must
// not go in a URL). Every value from the API is written as text, never as
// HTML.
"use strict";

const EVENTS = ["message", "message.status", "message.edited", "message.revoked",
  "message.undecryptable", "session.status", "call", "contact.number_changed",
  "presence", "group.participants", "group.update"];
const LOG_KEEP = 100;
const STORE_KEY = "wapi.credential";

const $ = (id) => document.getElementById(id);
const state = {
  cred: null,        // {secret, login} ; login: a token from the admin's password
  access: null,      // "open" | "admin" | "session"
  sessions: new Map(),
  selected: null,
  logs: new Map(),   // session -> recent events, newest last
  stream: null,      // AbortController of the live stream
  timers: [],
  qrCode: null,
};

// --- the API ---------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, extra = {}) {
  const headers = { Accept: "application/json", ...extra.headers };
  if (state.cred) headers.Authorization = "Bearer " + state.cred.secret;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  if (res.status === 204) return {};
  let data = {};
  try { data = await res.json(); } catch { /* an empty or non-JSON body */ }
  if (!res.ok) {
    const detail = (data.errors && data.errors[0] && data.errors[0].details) || data.error
      || res.status + " " + res.statusText;
    throw new ApiError(res.status, detail);
  }
  return data;
}

const enc = encodeURIComponent;
const sessionPath = (name, rest = "") => "/v1/sessions/" + enc(name) + rest;

function say(id, text, ok) {
  const el = $(id);
  el.textContent = text;
  el.className = ok ? "ok" : text ? "error" : "";
}

// --- signing in --------------------------------------------------------------

async function boot() {
  wireForms();
  const saved = sessionStorage.getItem(STORE_KEY);
  if (saved) {
    try { state.cred = JSON.parse(saved); } catch { state.cred = null; }
  }
  try {
    // Without a saved credential, ask for one only if the bridge wants one
    // (rather than let a request fail).
    if (!state.cred) {
      const h = await fetch("/v1/health", { cache: "no-store" }).then((r) => r.json()).catch(() => ({}));
      if (h.auth_required !== false) { showSignIn(""); return; }
    }
    await enter();
  } catch (e) {
    state.cred = null;
    sessionStorage.removeItem(STORE_KEY);
    showSignIn(e.status === 401 ? "" : e.message);
  }
}

// Loads the sessions with the current credential (or none): throws if the
// bridge refuses it.
async function enter() {
  const data = await api("GET", "/v1/sessions");
  state.access = data.access || "admin";
  state.sessions = new Map(data.sessions.map((s) => [s.name, s]));
  $("loading").hidden = true;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = state.access === "open";
  $("create").hidden = state.access === "session";
  renderList();
  const first = state.selected || (state.access === "session" && data.sessions[0] && data.sessions[0].name);
  if (first && state.sessions.has(first)) select(first);
  startStream();
  refreshHealth();
  // Status changes arrive live; these catch what raises no event (a
  // session made elsewhere, queue counts, dead letters).
  state.timers.push(setInterval(refreshHealth, 15000), setInterval(refreshDetail, 3000),
    setInterval(refreshList, 10000));
}

function showSignIn(message) {
  $("loading").hidden = true;
  $("app").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  say("signin-error", message || "");
  $("key").focus();
}

async function signIn(cred) {
  state.cred = cred;
  try {
    await enter();
    sessionStorage.setItem(STORE_KEY, JSON.stringify(cred));
    say("signin-error", "");
    $("key").value = "";
    $("password").value = "";
  } catch (e) {
    state.cred = null;
    say("signin-error", e.status === 401 || e.status === 403
      ? "Sign-in refused: " + e.message : "Cannot sign in: " + e.message);
  }
}

async function signOut() {
  // A token from a password is revoked on the bridge too; keys stay valid.
  if (state.cred && state.cred.login) {
    try { await api("POST", "/v1/users/logout"); } catch { /* it expires anyway */ }
  }
  if (state.stream) state.stream.abort();
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.cred = null;
  state.selected = null;
  state.sessions.clear();
  state.logs.clear();
  sessionStorage.removeItem(STORE_KEY);
  $("detail").hidden = true;
  showSignIn("");
}

async function adminLogin(user, password) {
  const bytes = new TextEncoder().encode(user + ":" + password);
  const basic = btoa(String.fromCharCode(...bytes));
  const res = await fetch("/v1/users/login", {
    method: "POST", headers: { Authorization: "Basic " + basic, Accept: "application/json" },
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const detail = (data.errors && data.errors[0] && data.errors[0].details) || res.statusText;
    say("signin-error", "Sign-in refused: " + detail);
    return;
  }
  await signIn({ secret: data.users[0].token, login: true });
}

// --- the session list ----------------------------------------------------------

function badge(el, status) {
  el.textContent = status.replaceAll("_", " ");
  el.className = "badge " + status;
}

function renderList() {
  const list = $("session-list");
  const names = [...state.sessions.keys()].sort();
  // Rebuilt only when something shown changed (the detail poll calls this
  // every few seconds), and the focused entry keeps the focus.
  const shown = JSON.stringify([state.selected, names.map((n) => [n, state.sessions.get(n).status])]);
  if (shown === list.dataset.shown) return;
  list.dataset.shown = shown;
  const focused = document.activeElement && document.activeElement.dataset.session;
  list.replaceChildren();
  $("no-sessions").hidden = names.length > 0;
  for (const name of names) {
    const s = state.sessions.get(name);
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.session = name;
    b.setAttribute("aria-current", String(name === state.selected));
    const n = document.createElement("span");
    n.className = "name";
    n.textContent = name;
    const st = document.createElement("span");
    badge(st, s.status);
    b.append(n, st);
    b.addEventListener("click", () => select(name));
    li.append(b);
    list.append(li);
    if (name === focused) b.focus();
  }
}

function phoneOf(jid) {
  if (!jid) return "";
  const user = jid.split("@")[0].split(":")[0];
  return jid.endsWith("@s.whatsapp.net") ? "+" + user : jid;
}

function when(unixSeconds) {
  return unixSeconds ? new Date(unixSeconds * 1000).toLocaleString() : "";
}

// --- one session -------------------------------------------------------------

function select(name) {
  state.selected = name;
  state.qrCode = null;
  renderList();
  ["action-result", "pair-result", "send-result", "hook-result", "replay-result"].forEach((id) => say(id, ""));
  $("detail").hidden = false;
  fillWebhookForm(state.sessions.get(name));
  renderDetail();
  renderLog();
  refreshDetail();
}

function renderDetail() {
  const s = state.sessions.get(state.selected);
  if (!s) { $("detail").hidden = true; return; }
  $("d-name").textContent = s.name;
  badge($("d-status"), s.status);
  $("d-reason").textContent = s.reason || "—";
  $("d-number").textContent = phoneOf(s.jid) || "—";
  $("d-push").textContent = s.push_name || "—";
  $("d-since").textContent = (s.status === "WORKING" && when(s.connected_since)) || "—";
  $("d-reconnects").textContent = String(s.reconnects ?? 0);
  $("w-secret-state").textContent = s.webhook_secret_set ? "set" : "not set";
  const linking = s.status === "SCAN_QR_CODE";
  $("link").hidden = !linking && s.status !== "STARTING";
  if (linking) refreshQr(s.name); else { $("qr").hidden = true; state.qrCode = null; }
}

// Polled while a session is open: the session itself (reconnects, push
// name), its QR while it waits for a scan, its queue and dead letters.
async function refreshDetail() {
  const name = state.selected;
  if (!name) return;
  try {
    const s = await api("GET", sessionPath(name));
    if (name !== state.selected) return;
    state.sessions.set(name, s);
    renderDetail();
    renderList();
    const q = await api("GET", sessionPath(name, "/webhooks"));
    if (name !== state.selected) return;
    $("queue").textContent = `${q.pending} waiting, ${q.retrying} retrying, ${q.delivered} delivered, ${q.dead} dead`
      + (q.last_error ? ` — last error: ${q.last_error}` : "");
    const d = await api("GET", sessionPath(name, "/webhooks/dead"));
    if (name === state.selected) renderDead(d.dead);
  } catch (e) {
    if (e.status === 404) { state.sessions.delete(name); renderList(); $("detail").hidden = true; }
  }
}

async function refreshQr(name) {
  try {
    const q = await api("GET", sessionPath(name, "/qr"));
    if (name !== state.selected || q.code === state.qrCode) return;
    state.qrCode = q.code;
    const img = $("qr");
    img.src = "data:image/png;base64," + q.png_base64;
    img.dataset.code = q.code;
    img.hidden = false;
    $("qr-note").textContent = "In WhatsApp on the phone: Settings, Linked devices, Link a device, then scan. The code changes every few seconds.";
  } catch (e) {
    $("qr").hidden = true;
    $("qr-note").textContent = e.message;
  }
}

function renderDead(dead) {
  const body = $("dead").tBodies[0];
  body.replaceChildren();
  $("dead").hidden = dead.length === 0;
  $("no-dead").hidden = dead.length > 0;
  $("replay-all").hidden = dead.length === 0;
  for (const ev of dead) {
    const tr = document.createElement("tr");
    for (const v of [ev.event, ev.attempts, ev.last_status ?? "—", ev.last_error ?? "—"]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.append(td);
    }
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link";
    b.textContent = "Replay";
    b.setAttribute("aria-label", `Replay ${ev.event} ${ev.id}`);
    b.dataset.event = ev.id;
    b.addEventListener("click", () => replay(ev.id));
    td.append(b);
    tr.append(td);
    body.append(tr);
  }
}

async function replay(id) {
  const name = state.selected;
  try {
    const path = id ? `/webhooks/dead/${enc(id)}/replay` : "/webhooks/dead/replay";
    const r = await api("POST", sessionPath(name, path));
    say("replay-result", `Replayed ${r.replayed}.`, true);
  } catch (e) {
    say("replay-result", e.message);
  }
  refreshDetail();
}

const CONFIRM = {
  logout: "Log out? The phone must scan a new QR code to link again.",
  delete: "Delete this session? It is logged out and its settings and queue are removed.",
};

function confirmed(text) {
  const dlg = $("confirm");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    const done = (ok) => () => { dlg.close(); resolve(ok); };
    $("confirm-ok").onclick = done(true);
    $("confirm-cancel").onclick = done(false);
    dlg.oncancel = () => resolve(false);
    dlg.showModal();
    $("confirm-cancel").focus();
  });
}

async function act(action) {
  const name = state.selected;
  if (CONFIRM[action] && !(await confirmed(`${CONFIRM[action]} (${name})`))) return;
  try {
    if (action === "delete") {
      await api("DELETE", sessionPath(name));
      state.sessions.delete(name);
      state.selected = null;
      $("detail").hidden = true;
      renderList();
      return;
    }
    const s = await api("POST", sessionPath(name, "/" + action));
    state.sessions.set(name, s);
    renderDetail();
    renderList();
    say("action-result", `${action}: done.`, true);
  } catch (e) {
    say("action-result", `${action}: ${e.message}`);
  }
}

// --- forms ------------------------------------------------------------------

function eventBoxes() {
  for (const fs of document.querySelectorAll("fieldset.events")) {
    for (const ev of EVENTS) {
      const id = fs.dataset.prefix + "-" + ev.replaceAll(".", "-");
      const label = document.createElement("label");
      label.className = "inline";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.id = id;
      box.value = ev;
      label.append(box, " " + ev);
      fs.append(label);
    }
  }
}

function ticked(prefix) {
  const all = [...document.querySelectorAll(`fieldset[data-prefix="${prefix}"] input:checked`)];
  return all.length ? all.map((b) => b.value) : null;
}

function fillWebhookForm(s) {
  if (!s) return;
  $("w-url").value = s.webhook_url || "";
  $("w-format").value = s.webhook_format || "native";
  $("w-secret").value = "";
  $("w-clear").checked = false;
  const wanted = new Set(s.webhook_events || []);
  for (const b of document.querySelectorAll('fieldset[data-prefix="w-ev"] input')) b.checked = wanted.has(b.value);
}

// The send type of an uploaded file: the bridge's own guess, else the MIME.
function sendType(rec) {
  if (rec.type) return rec.type;
  const top = (rec.mimetype || "").split("/")[0];
  return ["image", "video", "audio"].includes(top) ? top : "document";
}

function on(formId, handler) {
  $(formId).addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = e.target.querySelector("button[type=submit]");
    button.disabled = true;
    try { await handler(e.target); } finally { button.disabled = false; }
  });
}

function wireForms() {
  eventBoxes();
  on("key-form", () => signIn({ secret: $("key").value.trim(), login: false }));
  on("user-form", () => adminLogin($("user").value, $("password").value));
  $("signout").addEventListener("click", signOut);
  on("create-form", async () => {
    const body = { name: $("c-name").value.trim(), webhook_format: $("c-format").value,
      webhook_events: ticked("c-ev") };
    const url = $("c-url").value.trim();
    if (url) body.webhook_url = url;
    try {
      const s = await api("POST", "/v1/sessions", body);
      state.sessions.set(s.name, s);
      renderList();
      select(s.name);
      say("create-result", `Created ${s.name}.`, true);
      $("create-form").reset();
    } catch (e) {
      say("create-result", e.message);
    }
  });
  for (const b of document.querySelectorAll("[data-action]")) {
    b.addEventListener("click", () => act(b.dataset.action));
  }
  on("pair-form", async () => {
    say("pair-result", "Asking WhatsApp for a code…", true);
    try {
      const r = await api("POST", sessionPath(state.selected, "/pair-code"), { phone: $("pair-phone").value.trim() });
      say("pair-result", `Enter this code on the phone: ${r.code}`, true);
    } catch (e) {
      say("pair-result", e.message);
    }
  });
  on("send-form", async () => {
    const name = state.selected;
    const to = $("s-to").value.trim();
    const text = $("s-text").value;
    const file = $("s-file").files[0];
    try {
      let body;
      if (file) {
        const form = new FormData();
        form.append("file", file, file.name);
        const rec = await api("POST", sessionPath(name, "/media"), form);
        body = { to, type: sendType(rec), media_id: rec.id };
        if (text) body.caption = text;
        if (body.type === "document") body.file_name = file.name;
      } else {
        body = { to, text };
      }
      const sent = await api("POST", sessionPath(name, "/messages"), body);
      say("send-result", `Sent: ${sent.id}`, true);
      $("s-text").value = "";
      $("s-file").value = "";
    } catch (e) {
      say("send-result", e.message);
    }
  });
  on("hook-form", async () => {
    const body = {
      webhook_url: $("w-url").value.trim() || null,
      webhook_format: $("w-format").value,
      webhook_events: ticked("w-ev"),
    };
    if ($("w-clear").checked) body.webhook_secret = null;
    else if ($("w-secret").value) body.webhook_secret = $("w-secret").value;
    try {
      const s = await api("PATCH", sessionPath(state.selected), body);
      state.sessions.set(s.name, s);
      fillWebhookForm(s);
      renderDetail();
      say("hook-result", "Saved.", true);
    } catch (e) {
      say("hook-result", e.message);
    }
  });
  $("replay-all").addEventListener("click", () => replay(null));
}

// --- the live stream -----------------------------------------------------------

async function startStream() {
  if (state.stream) state.stream.abort();
  const ctl = new AbortController();
  state.stream = ctl;
  const headers = { Accept: "text/event-stream" };
  if (state.cred) headers.Authorization = "Bearer " + state.cred.secret;
  try {
    const res = await fetch("/v1/events", { headers, signal: ctl.signal, cache: "no-store" });
    if (!res.ok) throw new Error("events: " + res.status);
    $("stream").textContent = "Live";
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        onFrame(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  if (ctl.signal.aborted) return;
  // Dropped (a restart, a slow reader): catch up on what changed and
  // listen again.
  $("stream").textContent = "Reconnecting…";
  setTimeout(async () => {
    if (ctl !== state.stream) return;
    try {
      const data = await api("GET", "/v1/sessions");
      state.sessions = new Map(data.sessions.map((s) => [s.name, s]));
      renderList();
      renderDetail();
    } catch { /* the stream's own retry will tell */ }
    startStream();
  }, 2000);
}

function onFrame(frame) {
  const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
  if (!data) return;
  let ev;
  try { ev = JSON.parse(data); } catch { return; }
  if (!ev.session) return;
  const log = state.logs.get(ev.session) || [];
  log.push(ev);
  if (log.length > LOG_KEEP) log.shift();
  state.logs.set(ev.session, log);
  if (ev.event === "session.status") {
    const s = state.sessions.get(ev.session);
    if (!s) {
      refreshList();
    } else {
      s.status = ev.payload.status;
      s.reason = ev.payload.reason;
      if (ev.payload.jid) s.jid = ev.payload.jid;
      renderList();
      if (ev.session === state.selected) { renderDetail(); refreshDetail(); }
    }
  }
  if (ev.session === state.selected) appendLog(ev);
}

async function refreshList() {
  try {
    const data = await api("GET", "/v1/sessions");
    state.sessions = new Map(data.sessions.map((s) => [s.name, s]));
    renderList();
  } catch { /* shown on the next action */ }
}

function summary(ev) {
  const p = ev.payload || {};
  switch (ev.event) {
    case "message": {
      const who = p.from_me ? "me" : phoneOf(p.from) || p.from || "";
      const what = p.text ?? p.caption ?? `(${p.type})`;
      return `${who}: ${what}`;
    }
    case "message.status": return `${p.status} ${p.id || ""}`;
    case "session.status": return p.status + (p.reason ? ` (${p.reason})` : "");
    default: {
      const s = JSON.stringify(p);
      return s.length > 160 ? s.slice(0, 157) + "…" : s;
    }
  }
}

function logItem(ev) {
  const li = document.createElement("li");
  const t = document.createElement("time");
  const at = new Date(ev.timestamp || Date.now());
  t.dateTime = at.toISOString();
  t.textContent = at.toLocaleTimeString();
  const k = document.createElement("span");
  k.className = "kind";
  k.textContent = ev.event;
  li.append(t, k, document.createTextNode(summary(ev)));
  return li;
}

function appendLog(ev) {
  const ol = $("log");
  ol.append(logItem(ev));
  while (ol.children.length > LOG_KEEP) ol.firstElementChild.remove();
  ol.scrollTop = ol.scrollHeight;
}

function renderLog() {
  const ol = $("log");
  ol.replaceChildren(...(state.logs.get(state.selected) || []).map(logItem));
}

// --- health ------------------------------------------------------------------

async function refreshHealth() {
  try {
    const h = await api("GET", "/v1/health");
    const v = h.whatsapp_version && h.whatsapp_version.version;
    $("health").textContent = `store ${h.store}` + (v ? ` · WhatsApp Web ${v}` : "")
      + (h.queued != null ? ` · ${h.queued} queued` : "");
  } catch (e) {
    $("health").textContent = "health: " + e.message;
  }
}

boot();
