// Gateways: the concentrators' health at a glance (last seen, buses, timeouts, failures, journal
// backlog, uplink not yet acknowledged); ?online=true|false filters, as the overview links it.

import { badge, filterForm, fmtAgo, fmtPercent, h, pagedTable, poll } from "../ui.js";

// The health a gateway sends is a flat dict ("bus.rtu1.timeouts": 3, "journal.entries": 0, ...):
// split into its buses and its other sections.
export function parseHealth(health) {
  const buses = new Map();
  const sections = {};
  for (const [key, value] of Object.entries(health || {})) {
    const parts = key.split(".");
    if (parts[0] === "bus" && parts.length >= 3) {
      const figure = parts.pop();
      const name = parts.slice(1).join(".");
      if (!buses.has(name)) buses.set(name, {});
      buses.get(name)[figure] = value;
    } else {
      const [section, ...rest] = parts;
      (sections[section] = sections[section] || {})[rest.join(".") || section] = value;
    }
  }
  return { buses, sections };
}

export function num(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

export function utilisation(value) {
  const ratio = num(value);
  if (ratio === null) return "–";
  return ratio >= 0.9 ? [fmtPercent(ratio), " ", badge("busy", "warn")] : fmtPercent(ratio);
}

export function onlineBadge(gateway) {
  return gateway.online ? badge("online") : badge("offline");
}

export function fmtSeconds(value) {
  const s = num(value);
  if (s === null) return "–";
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// one line per bus: "rtu1: <figure>"
function perBus(buses, show) {
  if (!buses.size) return h("span", { class: "muted" }, "no health yet");
  return h("ul", { class: "plain" }, [...buses].map(([name, figures]) =>
    h("li", {}, h("span", { class: "muted" }, `${name}: `), show(figures))));
}

export async function render(view, { api, query }) {
  const online = ["true", "false"].includes(query.get("online")) ? query.get("online") : "";
  let waiting = false; // a gateway listed has not reported its health yet
  let loadedAt = Date.now();
  const table = pagedTable({
    caption: "Health as each gateway last reported it (every minute)",
    columns: [
      { label: "Gateway", value: (g) => g.id },
      { label: "State", value: onlineBadge },
      { label: "Last seen", value: (g) => fmtAgo(g.seconds_since_seen) },
      { label: "Bus utilisation", value: (g) => perBus(parseHealth(g.health).buses, (b) => utilisation(b.utilisation)) },
      { label: "Timeouts", value: (g) => perBus(parseHealth(g.health).buses, (b) => String(b.timeouts ?? "–")) },
      { label: "Failures", value: (g) => perBus(parseHealth(g.health).buses, (b) => String(b.failures ?? "–")) },
      { label: "Journal backlog", value: (g) => {
        const journal = parseHealth(g.health).sections.journal;
        if (!journal) return "–";
        return [num(journal.entries) === 1 ? "1 entry" : `${journal.entries ?? "–"} entries`,
          num(journal.entries) ? h("div", { class: "muted" }, `oldest ${fmtSeconds(journal.oldest_age_s)}`) : ""];
      } },
      { label: "Uplink not acked", num: true, value: (g) => {
        const uplink = parseHealth(g.health).sections.uplink;
        return uplink ? String(uplink.unacknowledged ?? "–") : "–";
      } },
    ],
    load: async (params) => {
      const page = await api.get("/gateways", params);
      waiting = page.items.some((g) => !g.health_at);
      loadedAt = Date.now();
      return page;
    },
    link: (g) => `#/gateways/${encodeURIComponent(g.id)}`,
    empty: online === "false" ? "No gateway is offline." : "No gateway has connected yet.",
  });
  const form = filterForm([
    { name: "online", label: "State", type: "select",
      options: [["", "Any"], ["true", "Online"], ["false", "Offline"]] },
  ], (values) => {
    history.replaceState(null, "", `#/gateways${values.online ? `?online=${values.online}` : ""}`);
    table.reload(values.online ? { online: values.online } : {});
  }, { online });
  view.append(h("h1", {}, "Gateways"), form.node, h("div", { class: "wide" }, table.node));
  await table.reload(online ? { online } : {});
  // health arrives every minute: keep the page current (without leaving the page of the list the
  // operator is on), sooner while a gateway has not reported any
  return poll(() => (waiting || Date.now() - loadedAt >= 15000 ? table.reload() : null), 5000);
}
