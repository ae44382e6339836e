// Overview: the fleet at a glance; every figure links to the list behind it.

import { badge, clear, errorBox, fmtKwh, fmtMoney, fmtPercent, h, poll, startOfToday } from "../ui.js";

function tile(label, value, href, sub = null) {
  return h("a", { class: "tile", href }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), sub && h("div", { class: "sub" }, sub));
}

export async function render(view, { api }) {
  const body = h("div", { "aria-live": "polite" }, h("p", { class: "loading" }, "Loading…"));
  view.append(h("h1", {}, "Overview"), body);

  async function refresh() {
    let o;
    try {
      o = await api.get("/overview", { since: startOfToday() });
    } catch (error) {
      clear(body, errorBox(error));
      return;
    }
    const severities = Object.entries(o.alarms.by_severity);
    const d = o.deliveries;
    clear(body,
      h("h2", {}, "Field"),
      h("div", { class: "grid" },
        tile("Gateways online", `${o.gateways.online} / ${o.gateways.total}`, "#/gateways?online=true",
          o.gateways.offline ? `${o.gateways.offline} offline` : "none offline"),
        tile("Gateways offline", String(o.gateways.offline), "#/gateways?online=false"),
        tile("Meters reporting", `${o.meters.reporting} / ${o.meters.total}`, "#/meters",
          `readings in the last ${Math.round(o.meters.reporting_window_s / 60)} min`),
        tile("Read success rate", fmtPercent(o.reads.success_rate), "#/gateways",
          `${o.reads.failed} of ${o.reads.requests} bus requests failed`)),
      h("h2", {}, "Open alarms"),
      h("div", { class: "grid" },
        tile("Open alarms", String(o.alarms.open), "#/alarms?state=open",
          `${o.alarms.unacknowledged} not acknowledged`),
        severities.map(([severity, count]) =>
          h("a", { class: "tile", href: `#/alarms?state=open&severity=${severity}` },
            h("div", { class: "label" }, badge(severity)), h("div", { class: "value" }, String(count))))),
      h("h2", {}, "Today"),
      h("div", { class: "grid" },
        tile("Sales", fmtMoney(o.sales.amount_minor), "#/vend", `${o.sales.vends} vends, ${fmtKwh(o.sales.energy_wh)}`),
        tile("Tokens applied", String(d.applied), "#/alarms",
          `delivery success ${fmtPercent(d.success_rate)}`),
        tile("Tokens on their way", String(d.pending), "#/meters"),
        tile("Tokens not delivered", String(d.rejected + d.failed + d.expired), "#/meters",
          `${d.rejected} rejected, ${d.failed} failed, ${d.expired} expired`)));
  }

  return poll(refresh, 10000);
}
