// Keys (a prefix tree with values, revisions and history), the live watch feed, leases,
// and the writes the page offers. Reads and writes go through the /v3 JSON gateway, so
// the member checks them exactly as it checks gRPC calls.
import { el, v3, b64, unb64, unhex, asText, asHex, prefixEnd, sse, decToHex, clock } from "./api.js";

let showError = () => {};
export function setErrorSink(fn) { showError = fn; }

function valueViews(bytes) {
  const text = asText(bytes);
  let json = null;
  if (text !== null) { try { json = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { json = null; } }
  return { text, json, hex: asHex(bytes) };
}

function buildTree(keys) {
  const root = new Map();
  for (const k of keys) {
    let node = root;
    const parts = k.split("/");
    parts.forEach((p, i) => {
      const name = i < parts.length - 1 ? p + "/" : p;
      if (!node.has(name)) node.set(name, { children: new Map(), key: null });
      const child = node.get(name);
      if (i === parts.length - 1) child.key = k;
      node = child.children;
    });
  }
  return root;
}

function renderTree(map) {
  const ul = el("ul");
  for (const [name, node] of [...map.entries()].sort()) {
    const li = el("li");
    if (node.key !== null) li.append(el("span", { class: "leaf", "data-key": node.key, onclick: () => showKey(node.key) }, name || "(empty)"));
    else li.append(el("span", {}, name));
    if (node.children.size) li.append(renderTree(node.children));
    ul.append(li);
  }
  return ul;
}

export async function listKeys() {
  const prefix = document.getElementById("key-prefix").value;
  const req = prefix ? { key: b64(prefix), range_end: prefixEnd(prefix) } : { key: b64("\0"), range_end: b64("\0") };
  try {
    const resp = await v3("kv/range", { ...req, keys_only: true, limit: 1000 });
    const keys = (resp.kvs || []).map((kv) => asText(unb64(kv.key)) ?? asHex(unb64(kv.key)));
    document.getElementById("keys-tree").replaceChildren(keys.length ? renderTree(buildTree(keys)) : el("p", { class: "explain" }, "no keys"));
    document.getElementById("keys-error").textContent = "";
  } catch (e) { document.getElementById("keys-error").textContent = `list: ${e.message}`; }
}

async function getAt(key, revision) {
  const resp = await v3("kv/range", { key: b64(key), ...(revision ? { revision: String(revision) } : {}) });
  return (resp.kvs || [])[0] || null;
}

function kvBlock(kv) {
  const v = valueViews(unb64(kv.value));
  const views = { text: v.text, json: v.json, hex: v.hex };
  const pre = el("pre", { class: "value" }, v.json ?? v.text ?? v.hex);
  const tabs = el("div", { class: "row" }, Object.entries(views).filter(([, s]) => s !== null).map(([name, s]) =>
    el("button", { type: "button", onclick: () => { pre.textContent = s; } }, name)));
  return [tabs, pre];
}

export async function showKey(key) {
  const box = document.getElementById("key-detail");
  try {
    const kv = await getAt(key);
    if (!kv) { box.replaceChildren(el("p", {}, `${key}: not found`)); return; }
    const history = el("ol", { class: "feed history" });
    box.replaceChildren(
      el("h3", {}, key),
      el("p", { class: "explain" }, `create rev ${kv.create_revision} · mod rev ${kv.mod_revision} · version ${kv.version || 1}` + (kv.lease ? ` · lease ${decToHex(kv.lease)}` : "")),
      ...kvBlock(kv),
      el("div", { class: "row" },
        el("button", { type: "button", onclick: () => loadHistory(key, kv, history) }, "history"),
        el("button", { type: "button", class: "delete", onclick: () => del(key) }, "delete")),
      history);
  } catch (e) { box.replaceChildren(el("p", { class: "error" }, `${key}: ${e.message}`)); }
}

// Walk back through the key's versions: the value before mod_revision R is the key as of R-1.
async function loadHistory(key, kv, list) {
  list.replaceChildren();
  let cur = kv;
  for (let i = 0; i < 20 && cur; i++) {
    const v = valueViews(unb64(cur.value));
    list.append(el("li", {}, el("span", { class: "t" }, `rev ${cur.mod_revision} v${cur.version || 1}`), v.text ?? v.hex));
    if (Number(cur.mod_revision) <= Number(cur.create_revision)) break;
    try { cur = await getAt(key, Number(cur.mod_revision) - 1); } catch (e) { list.append(el("li", { class: "explain" }, e.message)); break; }
  }
}

async function del(key) {
  try { await v3("kv/deleterange", { key: b64(key) }); await listKeys(); document.getElementById("key-detail").replaceChildren(); }
  catch (e) { document.getElementById("keys-error").textContent = `delete: ${e.message}`; }
}

export async function put(ev) {
  ev.preventDefault();
  const key = document.getElementById("put-key").value;
  const value = document.getElementById("put-value").value;
  if (!key) return;
  try { await v3("kv/put", { key: b64(key), value: b64(value) }); await listKeys(); await showKey(key); }
  catch (e) { document.getElementById("keys-error").textContent = `put: ${e.message}`; }
}

export async function compact(revision) {
  try { await v3("kv/compaction", { revision: String(revision) }); }
  catch (e) { showError(`compact: ${e.message}`); }
}

let watchAbort = null;
export function startWatch() {
  if (watchAbort) watchAbort.abort();
  const ctl = new AbortController();
  watchAbort = ctl;
  const prefix = document.getElementById("watch-prefix").value;
  const feed = document.getElementById("watch-feed");
  feed.replaceChildren(el("li", { class: "explain" }, `watching ${prefix ? `"${prefix}…"` : "every key"}`));
  const url = "api/watch?prefix=" + encodeURIComponent(prefix);
  sse(url, (name, data) => {
    if (name === "watch") {
      const bytes = unhex(data.value);
      feed.prepend(el("li", { class: "watch-event", "data-key": data.key },
        el("span", { class: "t" }, `${clock(Date.now() / 1000)} rev ${data.mod_revision}`),
        el("span", { class: "kind" }, data.type), data.key, data.type === "PUT" ? ` = ${asText(bytes) ?? asHex(bytes)}` : ""));
    } else if (name === "denied") {
      feed.prepend(el("li", { class: "error" }, data.message));
    }
  }, ctl.signal).catch((e) => { if (!ctl.signal.aborted) feed.prepend(el("li", { class: "error" }, `watch: ${e.message}`)); });
}
export function stopWatch() { if (watchAbort) watchAbort.abort(); watchAbort = null; }

let leases = [];
export async function refreshLeases() {
  try {
    const resp = await v3("lease/leases");
    const out = [];
    for (const l of (resp.leases || []).slice(0, 50)) {
      const t = await v3("lease/timetolive", { ID: l.ID, keys: true });
      out.push({ id: decToHex(l.ID), ttl: Number(t.TTL), granted: Number(t.grantedTTL), keys: (t.keys || []).map((k) => asText(unb64(k)) ?? "?"), at: Date.now() });
    }
    leases = out;
  } catch (e) { leases = []; }
  renderLeases();
}
export function renderLeases() {
  const rows = leases.map((l) => {
    const left = Math.max(0, l.ttl - Math.floor((Date.now() - l.at) / 1000));
    return el("tr", {}, el("td", {}, l.id), el("td", {}, `${left}s`), el("td", {}, `${l.granted}s`), el("td", {}, l.keys.join(", ")));
  });
  document.querySelector("#leases tbody").replaceChildren(...rows);
}
