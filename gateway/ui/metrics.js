// Per-function request rate and mean latency, computed in the browser from the gateway's Prometheus text.

import { origin } from "./api.js";

const WINDOW_MS = 10 * 60 * 1000;

// function_name → {count, sum}: gateway_function_invocation_total and gateway_functions_seconds_{sum,count},
// summed over the status codes.
export function parseTotals(text) {
  const totals = new Map();
  const line = /^(gateway_function_invocation_total|gateway_functions_seconds_sum)\{([^}]*)\}\s+(\S+)/;
  for (const raw of text.split("\n")) {
    const m = line.exec(raw);
    if (!m) continue;
    const name = /function_name="([^"]*)"/.exec(m[2]);
    if (!name) continue;
    const entry = totals.get(name[1]) || { count: 0, sum: 0 };
    if (m[1] === "gateway_function_invocation_total") entry.count += Number(m[3]);
    else entry.sum += Number(m[3]);
    totals.set(name[1], entry);
  }
  return totals;
}

export class MetricsHistory {
  constructor() {
    this.samples = []; // {at, totals}
  }

  add(at, totals) {
    this.samples.push({ at, totals });
    while (this.samples.length > 2 && this.samples[0].at < at - WINDOW_MS) this.samples.shift();
  }

  async poll() {
    const response = await fetch(origin + "/metrics", { cache: "no-store" });
    if (response.ok) this.add(Date.now(), parseTotals(await response.text()));
  }

  // [{at, rate (requests/s), latency (ms or null)}] between consecutive samples, for one function_name.
  series(key) {
    const points = [];
    for (let i = 1; i < this.samples.length; i++) {
      const before = this.samples[i - 1];
      const after = this.samples[i];
      const a = before.totals.get(key) || { count: 0, sum: 0 };
      const b = after.totals.get(key) || { count: 0, sum: 0 };
      const seconds = (after.at - before.at) / 1000;
      const requests = Math.max(0, b.count - a.count);
      points.push({
        at: after.at,
        rate: seconds > 0 ? requests / seconds : 0,
        latency: requests > 0 ? ((b.sum - a.sum) / requests) * 1000 : null,
      });
    }
    return points;
  }
}

const SVG = "http://www.w3.org/2000/svg";

// A line of values over the window into an <svg viewBox="0 0 300 80">.
export function drawLine(svg, points, value) {
  svg.replaceChildren();
  const now = Date.now();
  const values = points.map(value).filter((v) => v !== null);
  const highest = Math.max(0, ...values);
  const top = Math.max(highest, 1e-9);
  const axis = document.createElementNS(SVG, "line");
  for (const [k, v] of Object.entries({ x1: 0, y1: 79, x2: 300, y2: 79, stroke: "currentColor", "stroke-opacity": 0.3 }))
    axis.setAttribute(k, v);
  svg.append(axis);
  const shown = points.filter((p) => value(p) !== null);
  const place = (p) => [300 - ((now - p.at) / WINDOW_MS) * 300, 78 - (value(p) / top) * 70];
  const coords = shown.map((p) => place(p).map((n) => n.toFixed(1)).join(","));
  // A dot on every interval with requests: one interval alone makes no line.
  for (const p of shown.filter((p) => value(p) > 0)) {
    const [x, y] = place(p);
    const dot = document.createElementNS(SVG, "circle");
    for (const [k, v] of Object.entries({ cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5, fill: "currentColor" }))
      dot.setAttribute(k, v);
    svg.append(dot);
  }
  if (coords.length > 1) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", coords.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "currentColor");
    line.setAttribute("stroke-width", "2");
    svg.append(line);
  }
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", "2");
  label.setAttribute("y", "10");
  label.setAttribute("font-size", "9");
  label.setAttribute("fill", "currentColor");
  label.textContent = highest > 0 ? `max ${highest.toPrecision(3)}` : "no requests in the last 10 minutes";
  svg.append(label);
}
