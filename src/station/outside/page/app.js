// The operator view: renders the station's state from /api/state, then from each
// server-sent event on /events (the same JSON). No libraries, nothing from outside.
"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (x, d) => (x === null || x === undefined) ? "-" : Number(x).toFixed(d);
let started = null;
let shownImage = null;

function setText(id, text) { const e = $(id); if (e.textContent !== String(text)) e.textContent = text; }

function yieldOf(c) { return c.parts > 0 ? (100 * c.pass / c.parts).toFixed(1) + " %" : "-"; }

function counts(prefix, c) {
  setText(prefix + "-parts", c.parts);
  setText(prefix + "-pass", c.pass);
  setText(prefix + "-reject", c.reject);
  setText(prefix + "-fail-safe", c.fail_safe);
  setText(prefix + "-missed", c.missed);
  setText(prefix + "-yield", yieldOf(c));
}

function uptime() {
  if (started === null) return;
  let s = Math.max(0, Math.floor((Date.now() - started) / 1000));
  const d = Math.floor(s / 86400); s %= 86400;
  const h = Math.floor(s / 3600); s %= 3600;
  const m = Math.floor(s / 60); s %= 60;
  setText("uptime", (d ? d + "d " : "") + String(h).padStart(2, "0") + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0"));
}

function render(st) {
  setText("station", st.station);
  document.title = st.station + " - cdo-inspect";
  const badge = $("state");
  badge.textContent = st.state;
  badge.className = "badge " + st.state;
  const fault = $("fault");
  fault.hidden = !st.fault;
  fault.textContent = st.fault || "";
  setText("camera", st.camera_up ? "connected" : "LOST");
  started = Date.parse(st.started) || (Date.now() - 1000 * st.uptime_s);
  uptime();
  setText("model", st.model.path + " (" + st.model.backbone + ")");
  setText("model-sha", st.model.sha256);
  setText("version", st.version);
  counts("count", st.counts);
  counts("reset", st.since_reset);
  $("reset").hidden = !st.reset_allowed;
  const last = st.last;
  if (last) {
    const r = last.record;
    const ok = r.verdict === "pass";
    setText("part-id", r.id);
    setText("origin", r.origin || "");
    setText("triggered", r.triggered);
    const v = $("verdict");
    v.textContent = ok ? "OK" : "NG";
    v.className = "verdict " + (ok ? "ok" : "ng");
    setText("score", fmt(r.score, 4));
    setText("threshold", fmt(r.threshold, 4));
    setText("reason", r.reason || "");
    if (last.image && last.image !== shownImage) {
      shownImage = last.image;
      const img = $("overlay");
      img.dataset.loaded = "";
      img.onload = () => { img.dataset.loaded = "1"; img.dataset.part = r.id; };
      img.src = last.image;
    }
  } else {
    setText("threshold", fmt(st.threshold, 4));
  }
  setText("lat-p50", fmt(st.latency_ms.p50, 1));
  setText("lat-p99", fmt(st.latency_ms.p99, 1));
  setText("cycle", fmt(st.cycle_ms, 0));
  const stages = st.latency_ms.stages_p50;
  setText("stages", "p50 per stage (ms): " + ["queue", "capture", "preprocess", "infer", "decide"]
    .map((k) => k + " " + fmt(stages[k], 1)).join(", "));
  trend(st.trend, st.threshold);
  rejects(st.rejects);
  let outside = "outside dropped " + st.outside_dropped;
  if (st.mqtt) {
    outside += " · MQTT " + (st.mqtt.connected ? "connected" : "AWAY") + ", queued " + st.mqtt.queued +
      ", dropped " + st.mqtt.dropped + ", delivered " + st.mqtt.delivered;
  }
  setText("outside", outside);
}

function trend(points, threshold) {
  setText("trend-n", points.length);
  const c = $("trend");
  const w = c.clientWidth || 800, h = c.clientHeight || 120;
  if (c.width !== w) c.width = w;
  if (c.height !== h) c.height = h;
  const g = c.getContext("2d");
  g.clearRect(0, 0, w, h);
  const scores = points.map((p) => p[1]).filter((s) => s !== null && isFinite(s));
  const top = Math.max(threshold * 1.5, ...scores) * 1.05 || 1;
  const y = (s) => h - 4 - (h - 8) * Math.min(s, top) / top;
  const x = (i) => points.length < 2 ? w / 2 : 4 + (w - 8) * i / (points.length - 1);
  g.strokeStyle = "#f5c542"; g.setLineDash([6, 4]); g.beginPath();
  g.moveTo(0, y(threshold)); g.lineTo(w, y(threshold)); g.stroke(); g.setLineDash([]);
  g.strokeStyle = "#6aa7ff"; g.beginPath();
  let started = false;
  points.forEach((p, i) => {
    if (p[1] === null) return;
    if (started) g.lineTo(x(i), y(p[1])); else { g.moveTo(x(i), y(p[1])); started = true; }
  });
  g.stroke();
  points.forEach((p, i) => {
    g.fillStyle = p[2] ? "#ff5a4f" : "#5fd17a";
    const s = p[1] === null ? top : p[1];
    g.fillRect(x(i) - 2, y(s) - 2, 4, 4);
  });
}

let stripKey = "";
function rejects(list) {
  const key = list.map((r) => r.id + ":" + (r.image || "")).join(",");
  if (key === stripKey) return;
  stripKey = key;
  const strip = $("reject-strip");
  strip.replaceChildren(...list.map((r) => {
    const a = document.createElement("a");
    a.title = r.reason || "rejected on its score";
    a.onclick = () => detail(r);
    if (r.image) {
      const img = document.createElement("img");
      img.src = r.image; img.alt = "part " + r.id; img.loading = "lazy";
      a.append(img);
    }
    a.append(document.createTextNode("#" + r.id + " " + fmt(r.score, 3)));
    return a;
  }));
}

async function detail(r) {
  $("detail-img").src = r.image || "";
  $("detail-img").hidden = !r.image;
  let text = "part " + r.id + " (record no longer in memory)";
  try {
    const res = await fetch("/api/parts/" + r.id);
    if (res.ok) text = JSON.stringify(await res.json(), null, 2);
  } catch (e) { /* keep the note */ }
  $("detail-record").textContent = text;
  $("detail").showModal();
}

$("reset").onclick = async () => {
  const token = window.prompt("Reset the counters: the station's reset token");
  if (!token) return;
  const res = await fetch("/api/reset", { method: "POST", headers: { "Authorization": "Bearer " + token } });
  if (!res.ok) window.alert("refused: " + (await res.text()));
};

// The state the page was served with, at once; then the live events, once the page
// (and the last part's image) has loaded.
render(JSON.parse($("initial-state").textContent));
setInterval(uptime, 1000);
window.addEventListener("load", () => {
  const events = new EventSource("/events");
  events.addEventListener("state", (e) => { setText("link", "live"); render(JSON.parse(e.data)); });
  events.onerror = () => setText("link", "reconnecting…");
});
