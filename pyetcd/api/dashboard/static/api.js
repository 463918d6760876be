// Talking to the member: the token, the /v3 JSON gateway, Server-Sent Events over fetch
// (EventSource cannot send the Authorization header), and the byte codecs etcd's JSON needs.

export const session = {
  get token() { return sessionStorage.getItem("pyetcd-token") || ""; },
  set token(t) { if (t) sessionStorage.setItem("pyetcd-token", t); else sessionStorage.removeItem("pyetcd-token"); },
};

export class HTTPError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  if (session.token) h.Authorization = session.token;
  return h;
}

// POST to the JSON gateway (the same services, and auth checks, as gRPC).
export async function v3(path, body = {}, base = "") {
  const resp = await fetch(base + "/v3/" + path, {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  let doc = {};
  try { doc = await resp.json(); } catch (e) { doc = {}; }
  if (!resp.ok) throw new HTTPError(resp.status, doc);
  return doc;
}

// Read a text/event-stream answer, calling onEvent(name, data) per event, until it ends.
export async function sse(url, onEvent, signal) {
  const resp = await fetch(url, { headers: headers(), signal, cache: "no-store" });
  if (!resp.ok) {
    let doc = {};
    try { doc = await resp.json(); } catch (e) { doc = {}; }
    throw new HTTPError(resp.status, doc);
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export function b64(text) {
  let s = "";
  for (const b of enc.encode(text)) s += String.fromCharCode(b);
  return btoa(s);
}
export function unb64(data) { return Uint8Array.from(atob(data || ""), (c) => c.charCodeAt(0)); }
export function unhex(hex) {
  const out = new Uint8Array((hex || "").length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}
export function asText(bytes) { try { return dec.decode(bytes); } catch (e) { return null; } }
export function asHex(bytes) { return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" "); }
// The key range of every key under a prefix (etcd's GetPrefixRangeEnd), base64.
export function prefixEnd(prefix) {
  const b = Array.from(enc.encode(prefix));
  while (b.length) {
    if (b[b.length - 1] < 0xff) { b[b.length - 1]++; return btoa(String.fromCharCode(...b)); }
    b.pop();
  }
  return btoa("\0");
}
export function hexToDec(hex) { return BigInt("0x" + hex).toString(); }
export function decToHex(dec) { return BigInt(dec).toString(16); }

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

export function clock(t) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}
