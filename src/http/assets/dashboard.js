// Sluice dashboard: reads the JSON endpoints of the listener that served it and redraws every
// few seconds. No framework; uPlot draws the charts.
"use strict";

const REFRESH_MS = 5000;
const COLORS = { STD: "#2f6db5", PRM: "#c2662d", limit: "#8e44ad", anomaly: "#c0392b",
  pressure_cut: "#d4a017", none: "#7f8c8d", throttle: "#e67e22", block: "#c0392b" };

// The admin token: from `#token=…` once (then dropped from the address bar), else this tab's.
(function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("sluice-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
})();

function token() { return sessionStorage.getItem("sluice-token") || ""; }

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  if (r.status === 401) { showLogin(); throw new Error("the admin token was refused"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function showLogin() {
  const form = document.getElementById("login");
  form.hidden = false;
  form.onsubmit = (e) => {
    e.preventDefault();
    sessionStorage.setItem("sluice-token", document.getElementById("token").value.trim());
    form.hidden = true;
    refresh();
  };
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function table(headers, rows) {
  const t = el("table", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h))));
  for (const r of rows) t.append(el("tr", {}, ...r.map((c) => el("td", {}, c))));
  return t;
}

function setPanel(id, rows, content) {
  const p = document.getElementById(id);
  p.replaceChildren(rows > 0 ? content : el("div", { class: "empty" }, "nothing yet"));
  p.dataset.rows = String(rows);
}

// A time never broken across lines ("3:34:01 AM" whole, however narrow the table).
function time(ms) { return el("span", { class: "t" }, new Date(ms).toLocaleTimeString()); }

const charts = {};
// Draws (or redraws) a uPlot chart in a panel; `opts.series` after the x axis.
function chart(id, data, series, extra) {
  const p = document.getElementById(id);
  const width = Math.max(300, p.clientWidth || 600);
  if (charts[id]) charts[id].destroy();
  p.replaceChildren();
  const opts = Object.assign({ width, height: 220, series: [{}].concat(series),
    axes: [{}, { size: 60 }], legend: { live: false } }, extra || {});
  charts[id] = new uPlot(opts, data, p);
  return charts[id];
}

function line(label, color, extra) {
  return Object.assign({ label, stroke: color, width: 1.5, spanGaps: false }, extra || {});
}

async function overview() {
  const o = await api("/api/overview");
  const facts = [
    ["instance", o.instance], ["rules", o.rules + " (rev " + o.revision + ")"],
    ["decisions", o.decisions], ["denied", o.denied], ["buckets", o.buckets],
    ["actions", o.actions_in_force], ["forecaster", o.forecaster],
    ["pressure", o.pressure_factor < 1 ? "cut to " + o.pressure_factor.toFixed(2) : "none"],
  ];
  if (o.shadow) facts.push(["mode", "shadow"]);
  // Envoys on the quota service (RLQS): streams, buckets and what they were told.
  if (o.quotas && (o.quotas.streams > 0 || o.quotas.reports > 0)) {
    const told = o.quotas.assignments.map(([reason, n]) => reason + " " + n).join(", ");
    facts.push(["quota streams", o.quotas.streams + " (" + o.quotas.buckets + " buckets" + (told ? "; " + told : "") + ")"]);
  }
  const box = document.getElementById("overview");
  box.replaceChildren(...facts.map(([k, v]) => el("span", {}, k + " ", el("b", {}, v))));
  box.dataset.rows = String(facts.length);
}

async function timeline() {
  const t = await api("/api/timeline");
  const s = t.samples;
  const xs = s.map((x) => x.at_ms / 1000);
  const rate = (f) => s.map((x) => f(x) / x.seconds);
  chart("decisions", [xs, rate((x) => x.decisions[0]), rate((x) => x.decisions[1]),
    rate((x) => x.denied[0]), rate((x) => x.denied[1])], [
    line("STD decisions/s", COLORS.STD), line("PRM decisions/s", COLORS.PRM),
    line("STD denied/s", COLORS.STD, { dash: [4, 3] }), line("PRM denied/s", COLORS.PRM, { dash: [4, 3] }),
  ]);
  document.getElementById("decisions").dataset.rows = String(s.length);
  chart("reasons", [xs, rate((x) => x.denied_limit), rate((x) => x.denied_anomaly),
    rate((x) => x.denied_cut), rate((x) => x.shadow)], [
    line("limit", COLORS.limit), line("anomaly action", COLORS.anomaly),
    line("pressure cut", COLORS.pressure_cut), line("shadow (not denied)", "#999", { dash: [2, 2] }),
  ], { height: 160 });
  document.getElementById("reasons").dataset.rows = String(s.length);
}

async function buckets() {
  const b = await api("/api/buckets");
  const box = el("div", {});
  let rows = 0;
  for (const [tier, keys] of Object.entries(b.tiers)) {
    box.append(el("div", { class: "tier" }, tier));
    const lines = [];
    for (const k of keys) {
      if (k.action) {
        // The action's limit is the one in force (a rule bucket may still be full beside it).
        rows++;
        const held = k.action.per_minute === null ? "blocked" : "throttled to " + k.action.per_minute + " per minute";
        lines.push([k.client, k.requests, k.denied, "anomaly action" + (k.action.shadow ? " (shadow)" : ""),
          held + " — in force"]);
      }
      const limits = k.limits.length ? k.limits : [null];
      for (const l of limits) {
        rows++;
        if (!l) { lines.push([k.client, k.requests, k.denied, "no limit for this key", ""]); continue; }
        const left = l.capacity ? l.remaining / l.capacity : 1;
        const bar = el("span", { class: "bar", title: l.remaining + " of " + l.capacity + " left" },
          el("i", { style: "width:" + Math.round(left * 100) + "%" }));
        lines.push([k.client, k.requests, k.denied, l.rule + " · " + l.limit + (l.shadow ? " (shadow)" : ""),
          el("span", {}, bar, " " + l.remaining + " / " + l.capacity + " per " + l.unit)]);
      }
    }
    box.append(keys.length ? table(["key", "requests this minute", "denied", "limit", "available / capacity"], lines)
      : el("div", { class: "empty" }, "no " + tier + " traffic this minute"));
  }
  setPanel("buckets", rows, box);
}

// Shades the cut periods behind a chart.
function cutBands(cuts) {
  return { hooks: { drawClear: [(u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = "rgba(212,160,23,0.18)";
    for (const c of cuts) {
      const from = u.valToPos(c.from_ms / 1000, "x", true);
      const to = u.valToPos((c.to_ms || Date.now()) / 1000, "x", true);
      const left = Math.max(from, u.bbox.left), right = Math.min(to, u.bbox.left + u.bbox.width);
      if (right > left) ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
    }
    ctx.restore();
  }] } };
}

async function forecasts() {
  const f = await api("/api/forecasts?minutes=120");
  const box = document.getElementById("forecasts");
  Object.values(charts).forEach(() => {});
  box.replaceChildren();
  let rows = 0;
  for (const s of f.series) {
    const id = "forecast-" + s.series.replace(/[^a-zA-Z0-9]/g, "_");
    box.append(el("h3", {}, s.series === "*" ? "all traffic" : s.series), el("div", { id }));
    const xs = s.points.map((p) => p.minute_ms / 1000);
    const cap = s.points.map(() => s.capacity_per_minute ?? null);
    chart(id, [xs, s.points.map((p) => p.actual), s.points.map((p) => p.predicted_1 ?? null),
      s.points.map((p) => p.predicted_15 ?? null), cap], [
      line("actual", "#222", { width: 2 }), line("forecast 1 min before", "#2f6db5"),
      line("forecast 15 min before", "#8e44ad", { dash: [4, 3] }), line("capacity", "#c0392b", { dash: [8, 4] }),
    ], Object.assign({ height: 180 }, cutBands(f.cuts)));
    rows += s.points.length;
  }
  if (!rows) box.append(el("div", { class: "empty" }, "no forecasts yet (one per minute per watched endpoint)"));
  box.dataset.rows = String(rows);
}

async function anomalies() {
  const a = await api("/api/anomalies?minutes=60");
  // One x per dot (the minute plus a few ms per dot) keeps uPlot's aligned data and shows
  // every client of a minute.
  const kinds = ["none", "throttle", "block"];
  const pts = a.scores.slice().sort((p, q) => p.minute_ms - q.minute_ms);
  const xs = pts.map((p, i) => p.minute_ms / 1000 + (i % 50) * 0.2);
  const order = xs.map((x, i) => i).sort((i, j) => xs[i] - xs[j]);
  const data = [order.map((i) => xs[i])];
  for (const k of kinds) data.push(order.map((i) => (pts[i].action === k ? pts[i].score : null)));
  chart("scores", data, kinds.map((k) => ({ label: k, stroke: COLORS[k], fill: COLORS[k],
    paths: () => null, points: { show: true, size: 5, fill: COLORS[k] } })), { scales: { y: { range: [0, 1] } } });
  document.getElementById("scores").dataset.rows = String(pts.length);
  setPanel("actions", a.actions.length, table(["client", "action", "signal", "why", "score", "until"],
    a.actions.map((x) => [x.client, x.kind + (x.per_minute != null ? " " + x.per_minute + "/min" : "") + (x.shadow ? " (shadow)" : ""),
      x.signal, x.why, x.score.toFixed(3), time(x.expires_at_ms)])));
}

async function changes() {
  const c = await api("/api/changes?minutes=1440");
  setPanel("rules", c.rules.length, table(["when", "who", "what", "rule", "rev"],
    c.rules.map((r) => [time(r.at_ms), r.actor, r.action, r.rule_id, r.revision])));
  setPanel("adjustments", c.adjustments.length, table(["when", "subject", "change", "cause"],
    c.adjustments.map((a) => [time(a.at_ms), a.client, a.from + " → " + a.to + (a.shadow ? " (shadow)" : ""), a.cause])));
}

async function refresh() {
  const status = document.getElementById("status");
  const results = await Promise.allSettled([overview(), timeline(), buckets(), forecasts(), anomalies(), changes()]);
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  status.className = failed.length ? "status error" : "status";
  status.textContent = failed.length ? "⚠ " + [...new Set(failed)].join("; ") : "updated " + new Date().toLocaleTimeString();
}

refresh();
setInterval(refresh, REFRESH_MS);
