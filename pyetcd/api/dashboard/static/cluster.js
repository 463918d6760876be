// The cluster panel (a card per member) and the timeline (every member's events, merged).
import { el, clock, v3, hexToDec } from "./api.js";

function fmtBytes(n) {
  if (n === undefined || n === null) return "–";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

export function renderCluster(state, onError) {
  const box = document.getElementById("members");
  const leader = state.members.find((m) => m.is_leader);
  document.getElementById("leader-line").textContent = leader
    ? `· leader ${leader.name || leader.id} · term ${state.term}`
    : "· no leader (an election is under way)";
  document.getElementById("leader-line").dataset.leader = leader ? leader.name || leader.id : "";
  const cards = state.members.map((m) => {
    const s = m.status;
    const role = !m.reachable ? "unreachable" : s.role + (m.is_learner ? " (learner)" : "");
    const rows = [["ID", m.id], ["peer", m.peer_urls.join(", ")], ["client", m.client_urls.join(", ") || "–"]];
    if (s) {
      rows.push(["term", s.term], ["commit", s.commit], ["applied", s.applied], ["revision", s.revision],
        ["DB size", fmtBytes(s.db_size)], ["leases", s.leases], ["watchers", s.watchers]);
      if (s.alarms.length) rows.push(["alarms", s.alarms.map((a) => a.alarm).join(", ")]);
    } else {
      rows.push(["why", m.error]);
    }
    if (m.lag !== null && m.lag !== undefined && !m.is_leader) rows.push(["lag", `${m.lag} entries`]);
    const card = el("div", {
      class: "member" + (m.is_leader ? " leader" : "") + (m.reachable ? "" : " down"),
      "data-id": m.id, "data-name": m.name, "data-role": m.reachable ? s.role : "unreachable",
    },
    el("h3", {}, (m.is_leader ? "♛ " : "") + (m.name || "(unnamed)"), " ",
      el("span", { class: "role" }, role), m.is_self ? el("span", { class: "sub" }, " · this page") : null),
    el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])));
    if (m.lag !== null && m.lag !== undefined && !m.is_leader) {
      const pct = Math.max(2, 100 - Math.min(100, m.lag));
      card.append(el("div", { class: "lagbar", title: "log caught up with the leader's" }, el("div", { style: `width:${pct}%` })));
    }
    if (state.user.admin && leader && !m.is_leader && m.reachable && !m.is_learner) {
      card.append(el("button", {
        class: "move-leader",
        onclick: async () => {
          try {
            // Asked of this page's member (same origin): it hands the request to the leader.
            await v3("maintenance/transfer-leadership", { targetID: hexToDec(m.id) });
          } catch (e) { onError(`move-leader: ${e.message}`); }
        },
      }, "make leader"));
    }
    return card;
  });
  box.replaceChildren(...cards);
}

// Events stay once seen: a member that dies takes its own history with it otherwise.
// Changes of the applied state (members, compactions, alarms) are seen by every member:
// they are shown once.
const seen = new Map();
const CLUSTER_WIDE = new Set(["member", "compaction", "alarm"]);
const names = new Map();

export function resetTimeline() {
  seen.clear();
  document.getElementById("timeline").replaceChildren();
}

function named(text) {
  return text.replace(/\b[0-9a-f]{1,16}\b/g, (id) => (names.has(id) ? names.get(id) : id));
}

export function renderTimeline(events, members) {
  for (const m of members || []) if (m.name) names.set(m.id, m.name);
  let added = false;
  for (const e of events) {
    const key = CLUSTER_WIDE.has(e.kind) ? `${e.kind}/${e.text}` : `${e.member}/${e.seq}`;
    if (!seen.has(key)) { seen.set(key, e); added = true; }
  }
  if (!added) return;
  const all = [...seen.values()].sort((a, b) => b.time - a.time || (a.member < b.member ? 1 : -1) || b.seq - a.seq);
  const list = all.slice(0, 300).map((e) => el("li", { class: "ev", "data-kind": e.kind },
    el("span", { class: "t" }, clock(e.time)),
    el("span", { class: `kind kind-${e.kind}` }, e.kind),
    el("b", {}, e.member_name || e.member), " ", named(e.text)));
  document.getElementById("timeline").replaceChildren(...list);
}
