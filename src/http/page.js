// Polls the node's /v1 routes and redraws the page about once a second.
"use strict";

const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};

async function get(path) {
  const r = await fetch(path, { headers, cache: "no-store" });
  const body = await r.json();
  return { ok: r.ok, body };
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function fmt(x, digits) {
  return typeof x === "number" ? x.toFixed(digits) : "–";
}

// Green for the best score, red for the worst; "best" depends on the metric.
function heat(value, lo, hi, higherIsBetter) {
  if (typeof value !== "number" || hi <= lo) return "#ddd";
  let t = (value - lo) / (hi - lo);
  if (!higherIsBetter) t = 1 - t;
  const hue = Math.round(120 * t);
  return "hsl(" + hue + ", 65%, 70%)";
}

function drawMembers(status, peers, report) {
  const versions = {};
  for (const n of (report && report.nodes) || []) versions[n.id] = n;
  const tbody = document.querySelector("#members tbody");
  tbody.innerHTML = "";
  const me = tbody.insertRow();
  me.className = "member";
  me.dataset.id = status.node;
  cell(me, status.node + " (this node)", "name");
  cell(me, status.listen, "name");
  cell(me, "up", "state-up");
  cell(me, status.model_version);
  cell(me, status.rows_train);
  for (const p of peers.peers) {
    const tr = tbody.insertRow();
    tr.className = "member";
    tr.dataset.id = p.id;
    cell(tr, p.id, "name");
    cell(tr, p.addr, "name");
    cell(tr, p.state, "state-" + p.state);
    const n = versions[p.id];
    cell(tr, n ? n.version : null);
    cell(tr, n ? n.rows_train : null);
  }
}

function drawMatrix(report) {
  const table = document.getElementById("matrix");
  table.innerHTML = "";
  if (!report) return;
  document.getElementById("matrix-note").textContent =
    (report.retrained ? "train" : "evaluate") + ", " + report.ms + " ms; rows: models, columns: validation splits";
  document.getElementById("metric").textContent = "(" + report.metric + ")";
  const higher = report.metric === "accuracy";
  const cells = report.matrix.flat().filter((x) => typeof x === "number");
  const lo = Math.min(...cells), hi = Math.max(...cells);
  const head = table.insertRow();
  cell(head, "model \\ split", "name");
  for (const s of report.splits) cell(head, s);
  cell(head, "mean");
  report.models.forEach((m, i) => {
    const tr = table.insertRow();
    tr.className = "matrix-row";
    cell(tr, m, "name");
    report.matrix[i].forEach((v) => {
      const td = cell(tr, fmt(v, 4));
      td.style.background = heat(v, lo, hi, higher);
    });
    cell(tr, fmt(report.model_mean[i], 4));
  });
  const e = report.ensemble || {};
  document.getElementById("ensemble").textContent =
    "ensemble: " + Object.entries(e).map(([k, v]) => k + " " + fmt(v, 4)).join(", ");
}

function drawDrift(drift) {
  const table = document.getElementById("drift");
  const note = document.getElementById("drift-note");
  table.innerHTML = "";
  if (!drift.ok) { note.textContent = drift.body.error; return; }
  const d = drift.body;
  note.textContent = d.rows_since_training + " new rows since training (a check needs " + d.min_rows + ")";
  if (!d.report) return;
  const head = table.insertRow();
  ["feature", "statistic", "value", "threshold", "drifted"].forEach((h) => cell(head, h, "name"));
  for (const f of d.report.features) {
    const tr = table.insertRow();
    if (f.drifted) tr.className = "drifted";
    cell(tr, f.name, "name");
    cell(tr, f.statistic, "name");
    cell(tr, fmt(f.value, 4));
    cell(tr, fmt(f.threshold, 2));
    cell(tr, f.drifted ? "yes" : "no");
  }
}

function drawLive(live) {
  document.getElementById("live").textContent =
    fmt(live.predictions_per_s, 1) + " predictions/s over the last " + live.window_s + " s; p50 " +
    fmt(live.p50_ms, 2) + " ms, p99 " + fmt(live.p99_ms, 2) + " ms";
}

async function refresh() {
  try {
    const [status, peers, report, drift, live] = await Promise.all(
      ["/v1/status", "/v1/peers", "/v1/report", "/v1/drift", "/v1/live"].map(get));
    if (!status.ok) throw new Error(status.body.error);
    document.getElementById("cluster").textContent = status.body.cluster;
    document.getElementById("node").textContent =
      "node " + status.body.node + ", " + status.body.members + " members, up " +
      Math.round(status.body.uptime_ms / 1000) + " s";
    const rep = report.ok ? report.body : null;
    drawMembers(status.body, peers.body, rep);
    drawMatrix(rep);
    drawDrift(drift);
    if (live.ok) drawLive(live.body);
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach the node: " + e.message;
  }
}

refresh();
setInterval(refresh, 1000);
