// Charts drawn as SVG by the interface itself (no library, nothing fetched from elsewhere).

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

// Stacked bars. labels: ["1 Nov", ...]; series: [{name, color, values: [number|null]}].
// `title` names the chart for assistive technology; `unit` labels the y axis; `format(v)` shows
// a value in tooltips. The figures are also offered as a table for screen readers.
export function barChart({ title, labels, series, unit = "", format = (v) => String(v),
  width = 720, height = 240 }) {
  const pad = { left: 56, right: 12, top: 24, bottom: 40 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": title });
  root.append(svg("title", {}, title));
  for (let i = 0; i <= 4; i++) {
    const value = (max * i) / 4;
    const y = pad.top + plotH - (plotH * i) / 4;
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, stroke: "#e2e6e9" }));
    root.append(svg("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" }, format(value)));
  }
  if (unit) {
    root.append(svg("text", { x: 4, y: 12 }, unit));
  }
  const slot = plotW / Math.max(labels.length, 1);
  const barW = Math.max(2, slot * 0.7);
  const every = Math.ceil(labels.length / 12);
  labels.forEach((label, i) => {
    let base = pad.top + plotH;
    const x = pad.left + slot * i + (slot - barW) / 2;
    for (const s of series) {
      const value = s.values[i] || 0;
      if (value <= 0) continue;
      const h = (plotH * value) / max;
      base -= h;
      const bar = svg("rect", { x, y: base, width: barW, height: h, fill: s.color });
      bar.append(svg("title", {}, `${label} · ${s.name}: ${format(value)}`));
      root.append(bar);
    }
    if (i % every === 0) {
      root.append(svg("text", { x: x + barW / 2, y: height - pad.bottom + 16, "text-anchor": "middle" }, label));
    }
  });
  return root;
}

export function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    item.append(swatch, s.name);
    box.append(item);
  }
  return box;
}

// A 24-hour strip: spans [{from_minute, to_minute, band, color}] drawn side by side.
export function dayStrip(spans, label) {
  const box = document.createElement("div");
  box.className = "strip";
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", label);
  for (const span of spans) {
    const part = document.createElement("span");
    part.style.flex = `${span.to_minute - span.from_minute} 0 0`;
    part.style.background = span.color;
    part.title = `${clock(span.from_minute)}–${clock(span.to_minute)}: ${span.band}`;
    part.textContent = span.to_minute - span.from_minute >= 90 ? span.band : "";
    box.append(part);
  }
  return box;
}

export function clock(minute) {
  const hours = String(Math.floor(minute / 60)).padStart(2, "0");
  const minutes = String(minute % 60).padStart(2, "0");
  return `${hours}:${minutes}`;
}

export const BAND_COLORS = ["#2c5ea8", "#1e7a3a", "#c05600", "#7a3e9d", "#0b5d6b", "#9a6200", "#555", "#b3261e"];
