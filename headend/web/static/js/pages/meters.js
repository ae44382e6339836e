// Meters: find one among a million. Every filter runs on the server and only the page shown is
// loaded; the filters live in the hash (#/meters?gateway_id=gw-1&alarm=tamper), so links from the
// overview and the gateway pages open the list already filtered, and a reload keeps them.

import { badge, filterForm, h, pagedTable } from "../ui.js";

// the alarm kinds a meter or its gateway raises (headend/config.py's default severities)
export const ALARM_KINDS = ["credit_exhausted", "low_credit", "tamper", "cover_open", "relay_fault",
  "over_power", "power_fail", "meter_unreachable", "identity_mismatch"];

const FILTERS = ["q", "customer", "gateway_id", "group", "status", "alarm"];

export function humanise(kind) {
  return String(kind).replace(/_/g, " ");
}

export function meterLink(id) {
  return `#/meters/${encodeURIComponent(id)}`;
}

export function alarmBadges(kinds) {
  return kinds && kinds.length ? kinds.map((kind) => [badge(humanise(kind), "bad"), " "]) : "none";
}

// The columns a meter row shows here and behind a gateway (without the gateway there).
export function meterColumns({ gateway = true } = {}) {
  return [
    { label: "Meter", value: (m) => m.id },
    { label: "Customer", value: (m) => (m.customer ? m.customer.name : h("span", { class: "muted" }, "no account")) },
    gateway && { label: "Gateway", value: (m) => (m.gateway_id
      ? h("a", { href: `#/gateways/${encodeURIComponent(m.gateway_id)}` }, m.gateway_id) : "–") },
    { label: "Group", value: (m) => m.group || "–" },
    { label: "State", value: (m) => badge(m.status, m.status === "active" ? "ok" : "") },
    { label: "Open alarms", value: (m) => alarmBadges(m.open_alarm_kinds) },
  ].filter(Boolean);
}

function chosen(values) {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== "" && value != null));
}

export async function render(view, { api, query }) {
  const initial = chosen(Object.fromEntries(FILTERS.map((name) => [name, query.get(name) || ""])));
  const table = pagedTable({
    columns: meterColumns(),
    load: (params) => api.get("/meters", params),
    link: (m) => meterLink(m.id),
    empty: "No meter matches these filters.",
  });
  const form = filterForm([
    { name: "q", label: "Meter id starts with", placeholder: "12000010" },
    { name: "customer", label: "Customer (name or id)", placeholder: "name starts with" },
    { name: "gateway_id", label: "Gateway", placeholder: "gw-…" },
    { name: "group", label: "Group" },
    { name: "status", label: "State", type: "select",
      options: [["", "Any"], ["active", "Active"], ["replaced", "Replaced"]] },
    { name: "alarm", label: "Open alarm", type: "select",
      options: [["", "Any or none"], ...ALARM_KINDS.map((kind) => [kind, humanise(kind)])] },
  ], (values) => {
    const filters = chosen(values);
    // the filters stay in the address (replaceState: no new page load, no history entry each time)
    const search = new URLSearchParams(filters).toString();
    history.replaceState(null, "", `#/meters${search ? "?" + search : ""}`);
    table.reload(filters);
  }, initial);

  view.append(
    h("h1", {}, "Meters"),
    h("p", { class: "muted" }, "Filter by meter, customer, gateway, state or open alarm; open a meter for its credit, tokens, commands and relay."),
    form.node,
    table.node);
  await table.reload(initial);
}
