// The telemetry page: tiles and tables from the latest sample, plotly charts of 15 minutes
// (the server sends the last 15 minutes on connect, rebuilt from the logs where needed).
(function () {
  "use strict";
  const WINDOW_MS = 15 * 60 * 1000;
  const points = [];
  const $ = (id) => document.getElementById(id);
  const fmt = (value, unit, digits) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits === undefined ? 1 : digits) + (unit || ""));

  function cell(text) { const td = document.createElement("td"); td.textContent = text === null || text === undefined ? "–" : String(text); return td; }
  function fillRows(id, rows, empty) {
    const body = $(id);
    body.replaceChildren();
    if (!rows.length) { const tr = document.createElement("tr"); const td = cell(empty); td.colSpan = 6; tr.append(td); body.append(tr); return; }
    rows.forEach((row) => { const tr = document.createElement("tr"); row.forEach((v) => tr.append(cell(v))); body.append(tr); });
  }

  const axis = (title, extra) => Object.assign({title: {text: title}, rangemode: "tozero", automargin: true}, extra || {});
  const layout = (yTitle) => ({margin: {l: 10, r: 10, t: 10, b: 10}, xaxis: {type: "date", automargin: true}, yaxis: axis(yTitle), legend: {orientation: "h"}});
  // Requests and streams count in ones, tokens in hundreds: each gets an axis of its own.
  const trafficLayout = () => Object.assign(layout("requests/s · streams"), {yaxis2: axis("tokens/s", {overlaying: "y", side: "right"})});
  const series = (key) => points.map((p) => p[key]);
  function draw() {
    if (!window.Plotly) return;
    const x = points.map((p) => p.at);
    const line = (key, name) => ({x, y: series(key), name, mode: "lines", type: "scatter"});
    const config = {responsive: true, displaylogo: false};
    Plotly.react("chart-machine", [line("cpu_pct", "CPU %"), line("memory_pct", "Memory %"), line("gpu_pct", "GPU %")], layout("%"), config);
    Plotly.react("chart-traffic", [line("requests_per_s", "requests/s"), Object.assign(line("tokens_per_s", "tokens/s"), {yaxis: "y2"}), line("active_streams", "active streams")], trafficLayout(), config);
    Plotly.react("chart-latency", [line("p50_latency_ms", "p50"), line("p95_latency_ms", "p95")], layout("ms"), config);
  }

  function keep(point) {
    points.push(point);
    const oldest = Date.parse(point.at) - WINDOW_MS;
    while (points.length && Date.parse(points[0].at) < oldest) points.shift();
  }

  function show(sample) {
    const host = sample.host, traffic = sample.traffic;
    $("t-at").textContent = new Date(sample.at).toLocaleTimeString();
    $("t-cpu").textContent = fmt(host.cpu_pct, " %");
    $("t-memory").textContent = fmt(host.memory_pct, " %");
    $("t-load").textContent = fmt(host.load_1m, "", 2);
    const gpus = host.gpus || [];
    $("t-gpu").textContent = gpus.length ? gpus.map((g) => fmt(g.utilization_pct, " %", 0)).join(" / ") : "none";
    $("t-gpu-status").textContent = gpus.length ? "" : host.gpu_status;
    $("t-resource-state").textContent = sample.resource_state;
    $("t-rps").textContent = fmt(traffic.requests_per_s, "", 2);
    $("t-latency").textContent = fmt(traffic.p50_latency_ms, "", 0) + " / " + fmt(traffic.p95_latency_ms, " ms", 0);
    $("t-tps").textContent = fmt(traffic.tokens_per_s, "", 1);
    $("t-errors").textContent = traffic.error_rate === null ? "–" : fmt(100 * traffic.error_rate, " %");
    $("t-streams").textContent = String(traffic.active_streams);
    fillRows("t-agents", sample.agents.map((a) => [a.agent, a.target || "overall", a.state, a.reason]), "No agent sample yet.");
    fillRows("t-connectivity", sample.connectivity.map((c) => [c.provider, c.state, fmt(c.latency_ms, " ms", 0), fmt(c.packet_loss_pct, " %")]), "No cloud provider probed.");
    fillRows("t-models", sample.models.map((m) => [m.ref, m.locality, m.enabled ? "yes" : "no", m.health + (m.health_latency_ms ? " (" + m.health_latency_ms + " ms)" : ""), m.breaker + (m.breaker_failures ? " (" + m.breaker_failures + " failures)" : "")]), "No models.");
    fillRows("t-budgets", sample.budgets.map((b) => [b.name, b.scope, "$" + b.spent_usd, "$" + b.reserved_usd, "$" + b.limit_usd, fmt(b.used_pct, " %")]), "No budget this period.");
  }

  liveSocket("/ws/telemetry/", {
    onState: (state) => { $("ws-state").textContent = state; },
    onMessage: (message) => {
      if (message.type === "telemetry.history") {
        points.length = 0;
        message.points.forEach(keep);
        draw();
      } else if (message.type === "telemetry.sample") {
        show(message);
        keep({at: message.at, cpu_pct: message.host.cpu_pct, memory_pct: message.host.memory_pct, load_1m: message.host.load_1m,
          gpu_pct: (message.host.gpus || []).reduce((m, g) => Math.max(m === null ? 0 : m, g.utilization_pct), null),
          requests_per_s: message.traffic.requests_per_s, p50_latency_ms: message.traffic.p50_latency_ms,
          p95_latency_ms: message.traffic.p95_latency_ms, tokens_per_s: message.traffic.tokens_per_s,
          error_rate: message.traffic.error_rate, active_streams: message.traffic.active_streams});
        draw();
      }
    },
  });
})();
