// Line charts on canvases, from the samples the state feed carries (one a second).
const samples = [];
const KEEP = 300;

export function resetCharts() { samples.length = 0; }

export function addSamples(list) {
  for (const s of list) {
    if (!samples.length || s.t > samples[samples.length - 1].t) samples.push(s);
  }
  while (samples.length > KEEP) samples.shift();
  draw();
}

// Rates between successive samples (the server's state.rates() pins this arithmetic).
function rate(name) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i], dt = b.t - a.t;
    if (dt > 0 && name in a && name in b) out.push([b.t, Math.max(0, (b[name] - a[name]) / dt)]);
  }
  return out;
}
// Mean latency of a histogram between successive samples: sum grown over count grown, in ms
// (0 where nothing was observed); no points when the samples do not carry it.
function meanMs(prefix) {
  const out = [], sum = prefix + "_sum", count = prefix + "_count";
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    if (!(count in a && count in b)) continue;
    const n = b[count] - a[count];
    out.push([b.t, n > 0 ? (1000 * (b[sum] - a[sum])) / n : 0]);
  }
  return out;
}
function gauge(name) { return samples.filter((s) => name in s).map((s) => [s.t, s[name]]); }

function chart(id, series) {
  const c = document.getElementById(id);
  if (!c) return;
  const g = c.getContext("2d");
  const W = c.width, H = c.height, pad = 4;
  g.clearRect(0, 0, W, H);
  const pts = series.flatMap((s) => s.points);
  // what the browser tests read: how many points the first series has, and its largest value
  const first = series[0].points;
  c.dataset.points = String(first.length);
  c.dataset.max = String(first.reduce((m, p) => Math.max(m, p[1]), 0));
  if (!pts.length) return;
  const t1 = samples[samples.length - 1].t, t0 = t1 - KEEP;
  const max = Math.max(1e-9, ...pts.map((p) => p[1]));
  g.font = "11px sans-serif";
  g.fillStyle = "#8a96a3";
  g.fillText(max < 1e-6 ? "0" : max >= 100 ? max.toFixed(0) : max.toPrecision(3), pad, 11);
  series.forEach((s, i) => {
    g.strokeStyle = s.color;
    g.lineWidth = 1.5;
    g.beginPath();
    s.points.forEach(([t, v], j) => {
      const x = pad + ((t - t0) / (t1 - t0)) * (W - 2 * pad);
      const y = H - pad - (v / max) * (H - 2 * pad - 12);
      if (j) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
    g.fillStyle = s.color;
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    g.fillText(`${s.label} ${last >= 100 ? last.toFixed(0) : last.toPrecision(3)}`, W - 130, 11 + 12 * i);
  });
}

function draw() {
  chart("chart-proposals", [
    { label: "committed", color: "#4fb3ff", points: rate("committed") },
    { label: "applied", color: "#6bdc8b", points: rate("applied") },
  ]);
  chart("chart-writes", [{ label: "rev/s", color: "#ffc94f", points: rate("revision") }]);
  chart("chart-requests", [
    { label: "req/s", color: "#4fb3ff", points: rate("requests") },
    { label: "failed/s", color: "#ff6b6b", points: rate("requests_failed") },
  ]);
  const latency = meanMs("latency");
  chart("chart-latency", [{ label: "ms", color: "#c58bff", points: latency }]);
  const note = document.getElementById("latency-note");
  if (note) note.hidden = !samples.length || latency.length > 0;
  chart("chart-fsync", [{ label: "ms", color: "#ff9f6b", points: meanMs("fsync") }]);
  chart("chart-commit", [{ label: "ms", color: "#ffc94f", points: meanMs("commit") }]);
  chart("chart-watch", [
    { label: "watchers", color: "#4fb3ff", points: gauge("watchers") },
    { label: "leases", color: "#c58bff", points: gauge("leases") },
  ]);
  chart("chart-db", [{ label: "bytes", color: "#6bdc8b", points: gauge("db_size") }]);
}
