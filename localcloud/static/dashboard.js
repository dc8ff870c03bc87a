// The local cloud's live dashboard: stat cards + the stack's CloudWatch dashboard widgets, redrawn every few seconds
// from /_localcloud/dashboard/data (localcloud/dashboard.py). Chart.js is served from node_modules.
"use strict";
const params = new URLSearchParams(location.search);
const REFRESH_MS = 1000 * Number(params.get("refresh") || 3);
const DATA_URL = "/_localcloud/dashboard/data?minutes=" + (params.get("minutes") || 15) +
  "&period=" + (params.get("period") || 10);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
const charts = {};
window.dashboard = { refreshes: 0, errors: 0, last: null };
Chart.defaults.animation = false;
Chart.defaults.font.size = 10;

const fmt = (v, digits = 0) => v === null || v === undefined || Number.isNaN(v) ? "–" :
  Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const clock = (ms) => new Date(ms).toISOString().slice(11, 19);

function card(id, title, value, note = "") {
  let el = document.getElementById("card-" + id);
  if (!el) {
    el = document.createElement("div");
    el.className = "card"; el.id = "card-" + id; el.dataset.card = id;
    el.innerHTML = `<h2>${title}</h2><div class="value"></div><div class="note"></div>`;
    document.getElementById("cards").appendChild(el);
  }
  el.querySelector(".value").textContent = value;
  el.querySelector(".note").innerHTML = note;
  return el;
}

function renderCards(c) {
  const s = c.stats || {};
  card("events-per-second", "Events/s (predicted)", fmt(c.events_per_second, 1), `over the last ${fmt(c.rate_window_seconds)} s`);
  card("events-predicted", "Events predicted", fmt(s.events_predicted),
    `ingested ${fmt(s.events_ingested)} · rejected ${fmt((s.events_rejected_at_api || 0) + (s.events_rejected || 0))} · duplicates ${fmt(s.events_duplicate)}`);
  const l = c.latency_seconds || {};
  card("latency", "Ingest→prediction p50/p95/p99 (s)", `${fmt(l.p50, 2)} / ${fmt(l.p95, 2)} / ${fmt(l.p99, 2)}`,
    `IngestToPredictionSeconds, last ${c.latency_window_seconds / 60} min`);
  const trend = c.cost_trend || [];
  let change = "";
  if (trend.length >= 4) {
    const half = Math.floor(trend.length / 2), mean = (xs) => xs.reduce((a, b) => a + b.cost_per_1k_events_usd, 0) / xs.length;
    const before = mean(trend.slice(0, half)), after = mean(trend.slice(half)), pct = 100 * (after - before) / before;
    change = `<span class="${pct > 0 ? "up" : "down"}">${pct > 0 ? "▲" : "▼"} ${fmt(Math.abs(pct), 1)} %</span> over the last ${trend.length} batches`;
  }
  const costCard = card("cost", "Cost per 1k events (USD)", fmt(c.cost_per_1k_events_usd, 6), change);
  sparkline(costCard, trend.map((b) => b.cost_per_1k_events_usd));
  const o = c.optimizer || {};
  card("batch-size", "Batch size in force", fmt(c.batch_size),
    `optimizer: <b>${o.status || "–"}</b>${o.trained_at ? " at " + String(o.trained_at).slice(11, 19) : ""} — ${o.reason || ""}`);
  card("dlq", "Stream DLQ depth", fmt(c.stream_dlq_messages), "messages (queue attributes)");
  card("quarantine", "Quarantine depth", fmt(c.quarantine_messages), "batches (queue attributes)");
  const rows = c.variant_stats || [];
  card("ab", "A/B split", (c.variants || []).map((v) => `${v.name} ${fmt(100 * v.weight)}%`).join(" · ") || "–",
    rows.map((r) => `${r.variant} (${r.model_version}): ${fmt(100 * (r.share || 0), 1)} % of ${fmt(r.predictions)}, mean score ${fmt(r.mean_score, 3)}`).join("<br>") || "no predictions yet");
  card("drift", "Max drift PSI", fmt(c.drift_max_psi, 3), "FeatureDriftMaxPSI, last 24 h (alarm above 0.25)");
}

function sparkline(el, values) {
  let canvas = el.querySelector("canvas");
  if (!canvas) { canvas = document.createElement("canvas"); el.appendChild(canvas); }
  const data = { labels: values.map((_, i) => i), datasets: [{ data: values, borderColor: COLORS[0], pointRadius: 0, borderWidth: 1.5 }] };
  const chart = Chart.getChart(canvas);
  if (chart) { chart.data = data; chart.update("none"); return; }
  new Chart(canvas, { type: "line", data, options: { responsive: true, maintainAspectRatio: false,
    plugins: { legend: { display: false }, tooltip: { enabled: false } }, scales: { x: { display: false }, y: { display: false } } } });
}

function renderWidget(w, index, data) {
  const id = "widget-" + index;
  let el = document.getElementById(id);
  if (!el) {
    el = document.createElement("div");
    el.className = "widget"; el.id = id; el.dataset.title = w.title;
    el.style.gridColumn = `${(w.x || 0) + 1} / span ${w.width || 6}`;
    el.style.gridRow = `${(w.y || 0) + 1} / span ${w.height || 6}`;
    el.innerHTML = `<h3></h3><div class="plot"><canvas></canvas></div><div class="nodata"></div>`;
    el.querySelector("h3").textContent = w.title || "";
    document.getElementById("widgets").appendChild(el);
  }
  const empty = w.series.filter((s) => !s.values.length).map((s) => s.label);
  el.querySelector(".nodata").textContent = empty.length ? "no data locally: " + empty.join(", ") : "";
  const datasets = w.series.map((s, i) => ({
    label: `${s.label} (${s.stat})`, yAxisID: s.axis === "right" ? "right" : "left",
    data: s.timestamps.map((t, j) => ({ x: t * 1000, y: s.values[j] })),
    borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length],
    pointRadius: 2, borderWidth: 1.5,
  }));
  const canvas = el.querySelector("canvas");
  const chart = Chart.getChart(canvas);
  const x = { type: "linear", min: data.start * 1000, max: data.end * 1000, ticks: { callback: clock, maxTicksLimit: 6 } };
  if (chart) {
    chart.data.datasets = datasets; chart.options.scales.x.min = x.min; chart.options.scales.x.max = x.max;
    chart.update("none");
    return;
  }
  const hasRight = w.series.some((s) => s.axis === "right");
  new Chart(canvas, { type: "line", data: { datasets }, options: { responsive: true, maintainAspectRatio: false,
    parsing: true, plugins: { legend: { position: "bottom", labels: { boxWidth: 8 } } },
    scales: { x, left: { position: "left", beginAtZero: true }, right: { position: "right", display: hasRight, beginAtZero: true, grid: { drawOnChartArea: false } } } } });
}

async function refresh() {
  try {
    const response = await fetch(DATA_URL, { cache: "no-store" });
    const data = await response.json();
    renderCards(data.cards);
    data.widgets.filter((w) => w.type === "metric").forEach((w, i) => renderWidget(w, i, data));
    document.getElementById("source").textContent = `${data.widgets.length} widgets from the stack's CloudWatch dashboard · period ${data.period} s · last ${data.minutes} min`;
    document.getElementById("updated").textContent = "updated " + clock(data.generated_at * 1000) + " UTC";
    window.dashboard.last = data;
    window.dashboard.refreshes += 1;
  } catch (err) {
    window.dashboard.errors += 1;
    document.getElementById("updated").textContent = "refresh failed: " + err;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
