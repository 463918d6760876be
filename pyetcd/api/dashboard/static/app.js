// The page: sign-in when auth asks for it, the live state feed, and the panels it drives.
import { session, sse, v3, el, HTTPError } from "./api.js";
import { renderCluster, renderTimeline, resetTimeline } from "./cluster.js";
import { addSamples, resetCharts } from "./charts.js";
import * as keys from "./keys.js";

const $ = (id) => document.getElementById(id);
let feed = null;
let lastRevision = -1;
let leaseTimer = null;

function setConn(text, cls) { const c = $("conn"); c.textContent = text; c.className = "conn " + (cls || ""); }
function flash(msg) { $("keys-error").textContent = msg; }
keys.setErrorSink(flash);

// Nothing of the cluster stays on the page once it may not be shown.
function clearData() {
  keys.stopWatch();
  for (const id of ["members", "keys-tree", "key-detail", "watch-feed", "cluster-actions"]) $(id).replaceChildren();
  document.querySelector("#leases tbody").replaceChildren();
  $("leader-line").textContent = "";
  $("whoami").replaceChildren();
  resetTimeline();
  resetCharts();
  lastRevision = -1;
  if (leaseTimer) { clearInterval(leaseTimer); leaseTimer = null; }
}

function showLogin(message) {
  if (feed) feed.abort();
  feed = null;
  clearData();
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setConn("signed out", "down");
}

function whoami(user) {
  const box = $("whoami");
  if (!user.auth) { box.replaceChildren(el("span", { class: "sub" }, "auth disabled")); return; }
  box.replaceChildren(el("span", {}, `signed in as ${user.name}${user.admin ? " (root)" : ""} `),
    el("button", { id: "logout", onclick: () => { session.token = ""; showLogin(""); } }, "sign out"));
}

function onState(state, first) {
  if (first) {
    $("login").hidden = true;
    $("main").hidden = false;
    whoami(state.user);
    keys.startWatch();
    keys.refreshLeases();
    leaseTimer = setInterval(() => { keys.renderLeases(); }, 1000);
    setInterval(() => { if (!$("main").hidden) keys.refreshLeases(); }, 5000);
  }
  setConn("live", "live");
  renderCluster(state, flash);
  renderTimeline(state.timeline, state.members);
  addSamples(state.history || (state.sample ? [state.sample] : []));
  const self = state.members.find((m) => m.is_self);
  const rev = self && self.status ? self.status.revision : -1;
  if (rev !== lastRevision) { lastRevision = rev; keys.listKeys(); }
  const actions = $("cluster-actions");
  if (!actions.childElementCount && rev > 0) {
    actions.append(el("button", { id: "compact", onclick: () => keys.compact(lastRevision) }, "compact history up to now"));
  }
}

async function connect() {
  if (feed) feed.abort();
  const ctl = new AbortController();
  feed = ctl;
  let first = true;
  while (!ctl.signal.aborted) {
    try {
      await sse("api/events", (name, data) => {
        if (name === "state") { onState(data, first); first = false; }
        else if (name === "denied") { session.token = ""; showLogin(data.message); }
      }, ctl.signal);
    } catch (e) {
      if (ctl.signal.aborted) return;
      if (e instanceof HTTPError && e.status >= 400 && e.status < 500) { showLogin(session.token ? e.message : ""); return; }
    }
    if (ctl.signal.aborted) return;
    setConn("reconnecting…", "down");
    await new Promise((r) => setTimeout(r, 1000));
  }
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const resp = await v3("auth/authenticate", { name: $("login-user").value, password: $("login-password").value });
    session.token = resp.token;
    $("login-password").value = "";
    connect();
  } catch (e) { $("login-error").textContent = e.message; }
});
$("key-refresh").addEventListener("click", () => keys.listKeys());
$("put-form").addEventListener("submit", (ev) => keys.put(ev));
$("watch-start").addEventListener("click", () => keys.startWatch());

connect();
