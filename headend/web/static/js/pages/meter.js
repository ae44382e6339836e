// A meter: who it is (identity, STS key attributes, customer), its credit and what it used (per
// day or month, stacked by TOU band), what was sent to it (tokens, every command with its state
// history) and its alarms. An operator with `relay` connects or disconnects it, after a
// confirmation with a reason, and watches the command go out and the meter report its relay; one
// with `commands` reads it on demand.

import { BAND_COLORS, barChart, legend } from "../chart.js";
import {
  act, badge, clear, confirmDialog, errorBox, facts, fmtKwh, fmtMoney, fmtTime, h, pagedTable,
  poll, tabs,
} from "../ui.js";
import { humanise } from "./meters.js";

// a command that will not change state again
export const FINAL = new Set(["applied", "rejected", "failed", "expired", "cancelled", "superseded"]);

const KEY_TYPES = { 0: "0 (initialisation)", 1: "1 (default)", 2: "2 (unique)", 3: "3 (common)" };

// The relay as a person says it: registers report 0 (closed) or 1 (open).
export function relayText(state) {
  if (state === 0 || state === "0" || state === "closed" || state === "connected") return "connected";
  if (state === 1 || state === "1" || state === "open" || state === "disconnected") return "disconnected";
  return "unknown";
}

function what(command) {
  const args = command.args || {};
  if (command.type === "relay") return `relay ${args.action || ""}`;
  if (command.type === "read") return args.groups && args.groups.length ? `read ${args.groups.join(", ")}` : "read";
  if (command.type === "token") return `token${args.tokens > 1 ? ` ×${args.tokens}` : ""}`;
  if (command.type === "tou") return `TOU table${args.version ? ` v${args.version}` : ""}`;
  return humanise(command.type);
}

export function historyList(history) {
  return h("ol", { class: "history" }, history.map((step) => h("li", {},
    h("time", {}, fmtTime(step.at)), " ", badge(step.state), " ",
    h("span", { class: "muted" }, step.source), step.code != null ? ` code ${step.code}` : "",
    step.detail ? ` · ${step.detail}` : "")));
}

// A command's state history, loaded when the operator opens it.
export function historyDetails(api, command) {
  const body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  let loaded = false;
  const details = h("details", { class: "command-history", ontoggle: async () => {
    if (!details.open || loaded) return;
    loaded = true;
    try {
      const full = await api.get(`/commands/${encodeURIComponent(command.id)}`);
      clear(body, historyList(full.history));
    } catch (error) {
      loaded = false;
      clear(body, errorBox(error));
    }
  } }, h("summary", {}, "History"), body);
  return details;
}

// Follows a command until it is final: its state, detail and history shown in `slot` (a live
// region), polled every `every` ms. Resolves to the final command (or null once stopped).
export function followCommand(api, commandId, label, slot, stops, every = 1500) {
  return new Promise((resolve) => {
    let stop = null;
    const done = (value) => {
      if (stop) { stops.delete(stop); stop(); }
      resolve(value);
    };
    stop = poll(async () => {
      let command;
      try {
        command = await api.get(`/commands/${encodeURIComponent(commandId)}`);
      } catch (error) {
        clear(slot, errorBox(error));
        return;
      }
      clear(slot, h("p", {}, `${label}: `, badge(command.state),
        command.detail ? ` ${command.detail}` : ""), historyList(command.history));
      if (FINAL.has(command.state)) done(command);
    }, every);
    stops.add(stop);
    stops.add(() => resolve(null));
  });
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// the server's label (2026-11-23 or 2026-11, in the zone asked for) as a person reads it
function bucketLabel(bucket) {
  const [year, month, day] = bucket.label.split("-").map(Number);
  return day ? `${day} ${MONTHS[month - 1]}` : `${MONTHS[month - 1]} ’${String(year).slice(2)}`;
}

// The chart's series: one per TOU band, and what the bands do not account for (a meter without
// band registers, or readings that carry the total alone).
export function consumptionSeries(buckets) {
  const bands = [...new Set(buckets.flatMap((b) => Object.keys(b.bands || {})))]
    .sort((a, b) => Number(a) - Number(b));
  const series = bands.map((band) => ({
    name: `Band ${band}`,
    color: BAND_COLORS[(Number(band) - 1 + BAND_COLORS.length) % BAND_COLORS.length],
    values: buckets.map((b) => (b.bands && b.bands[band] != null ? b.bands[band] / 1000 : 0)),
  }));
  const rest = buckets.map((b) => {
    if (b.energy_wh == null) return 0;
    const banded = Object.values(b.bands || {}).reduce((sum, wh) => sum + wh, 0);
    return Math.max(0, b.energy_wh - banded) / 1000;
  });
  if (rest.some((kwh) => kwh >= 0.001)) {
    series.push({ name: bands.length ? "Not in a band" : "Total", color: "#8a949b", values: rest });
  }
  return series;
}

function consumptionCard(api, meterId) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const area = h("div", { "aria-live": "polite" });
  const buttons = {};
  const choose = (period) => {
    for (const [name, button] of Object.entries(buttons)) button.setAttribute("aria-pressed", String(name === period));
    load(period);
  };
  buttons.day = h("button", { type: "button", class: "quiet", onclick: () => choose("day") }, "Day");
  buttons.month = h("button", { type: "button", class: "quiet", onclick: () => choose("month") }, "Month");

  async function load(period) {
    clear(area, h("p", { class: "loading" }, "Loading…"));
    let data;
    try {
      data = await api.get(`/meters/${encodeURIComponent(meterId)}/consumption`, { period, tz: zone });
    } catch (error) {
      clear(area, errorBox(error));
      return;
    }
    const buckets = data.buckets;
    const labels = buckets.map(bucketLabel);
    const series = consumptionSeries(buckets);
    const total = buckets.reduce((sum, b) => sum + (b.energy_wh || 0), 0);
    const span = period === "day" ? `the last ${buckets.length} days` : `the last ${buckets.length} months`;
    // as many decimals as the tallest bar needs (the registers count 0.01 kWh)
    const top = Math.max(0, ...buckets.map((b) => (b.energy_wh || 0) / 1000));
    const decimals = top >= 10 ? 0 : top >= 1 || top === 0 ? 1 : top >= 0.1 ? 2 : 3;
    const kwh = (v) => v.toFixed(decimals);
    clear(area,
      h("p", {}, `${fmtKwh(total, 2)} used in ${span} (local time: ${data.tz}).`),
      series.length
        ? [barChart({ title: `Energy used per ${period}, by TOU band, in kWh`, labels, series, unit: "kWh", format: kwh }),
          legend(series)]
        : h("p", { class: "muted" }, "No readings in this period yet."),
      h("details", {}, h("summary", {}, "The figures as a table"),
        h("table", {},
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, period === "day" ? "Day" : "Month"),
            series.map((s) => h("th", { scope: "col", class: "num" }, `${s.name} (kWh)`)),
            h("th", { scope: "col", class: "num" }, "Total (kWh)"))),
          h("tbody", {}, buckets.map((b, i) => h("tr", {}, h("td", {}, labels[i]),
            series.map((s) => h("td", { class: "num" }, s.values[i].toFixed(3))),
            h("td", { class: "num" }, b.energy_wh == null ? "–" : (b.energy_wh / 1000).toFixed(3))))))));
  }

  choose("day");
  return h("section", { class: "card tight", "aria-labelledby": "consumption-title" },
    h("h2", { id: "consumption-title" }, "Consumption"),
    h("div", { class: "actions segmented", role: "group", "aria-label": "Period" }, buttons.day, buttons.month),
    area);
}

function tokensPanel(api, meterId) {
  return (panel) => {
    const vends = pagedTable({
      caption: "Sales to this meter, newest first",
      columns: [
        { label: "Receipt", value: (v) => v.receipt_no },
        { label: "Sold", value: (v) => fmtTime(v.created_at) },
        { label: "By", value: (v) => v.operator },
        { label: "Amount", num: true, value: (v) => fmtMoney(v.amount_minor, v.receipt && v.receipt.currency) },
        { label: "Energy", num: true, value: (v) => fmtKwh(v.energy_wh) },
        { label: "Token", value: (v) => h("span", { class: "mono" }, v.tokens.join(" / ")) },
        { label: "Delivery", value: (v) => (v.delivery ? badge(v.delivery.state) : "–") },
        { label: "Sale", value: (v) => badge(v.status) },
      ],
      load: (params) => api.get("/vends", { ...params, meter_id: meterId }),
      link: (v) => `#/vends/${v.id}`,
      empty: "Nothing sold to this meter yet.",
    });
    const commands = commandTable(api, { meter_id: meterId, type: "token" },
      "Token commands (sales, engineering and key-change tokens), newest first", "No token sent to this meter yet.");
    panel.append(h("div", { class: "wide" }, vends.node), h("h3", {}, "Token commands"),
      h("div", { class: "wide" }, commands.node));
    vends.reload({});
    commands.reload({});
  };
}

export function commandTable(api, filters, caption, empty, { meter = false, pageSize = 25 } = {}) {
  return pagedTable({
    caption,
    pageSize,
    columns: [
      { label: "Command", value: (c) => what(c) },
      meter && { label: "Meter", value: (c) => (c.meter_id ? h("a", { href: `#/meters/${encodeURIComponent(c.meter_id)}` }, c.meter_id) : "–") },
      { label: "Created", value: (c) => fmtTime(c.created_at) },
      { label: "By", value: (c) => c.created_by },
      { label: "State", value: (c) => badge(c.state) },
      { label: "Detail", value: (c) => c.detail || "–" },
      { label: "Attempts", num: true, value: (c) => String(c.attempts) },
      { label: "History", value: (c) => historyDetails(api, c) },
    ].filter(Boolean),
    load: (params) => api.get("/commands", { ...params, ...filters }),
    empty,
  });
}

function alarmsPanel(api, meterId) {
  return (panel) => {
    const table = pagedTable({
      caption: "This meter's alarms, newest first",
      columns: [
        { label: "Alarm", value: (a) => humanise(a.kind) },
        { label: "Severity", value: (a) => badge(a.severity) },
        { label: "State", value: (a) => badge(a.state, a.state === "open" ? "bad" : "ok") },
        { label: "Raised", value: (a) => fmtTime(a.raised_at) },
        { label: "Cleared", value: (a) => fmtTime(a.cleared_at) },
        { label: "Acknowledged", value: (a) => (a.acked_at
          ? `${fmtTime(a.acked_at)} by ${a.acked_by}${a.ack_comment ? `: ${a.ack_comment}` : ""}` : "no") },
      ],
      load: (params) => api.get("/alarms", { ...params, meter_id: meterId }),
      empty: "No alarm from this meter.",
    });
    panel.append(h("div", { class: "wide" }, table.node));
    table.reload({});
  };
}

export async function render(view, { api, can, params }) {
  const meterId = params.id;
  const path = `/meters/${encodeURIComponent(meterId)}`;
  const stops = new Set();
  let meter = await api.get(path);

  const relay = h("output", { id: "relay-state", class: "relay" });
  const credit = h("output", { id: "credit" });
  const summary = h("div", { class: "cols summary" });
  const progress = h("div", { class: "command-progress", role: "status", "aria-live": "polite" });
  const problem = h("div");

  function draw() {
    const sts = meter.sts;
    const state = relayText(meter.relay_state);
    clear(relay, badge(state), meter.relay_state_at ? h("span", { class: "muted" }, ` reported ${fmtTime(meter.relay_state_at)}`) : "");
    clear(credit, meter.credit_wh == null ? "not reported yet" : fmtKwh(meter.credit_wh, 2));
    const account = meter.account;
    clear(summary,
      h("section", { class: "card tight", "aria-labelledby": "identity-title" },
        h("h2", { id: "identity-title" }, "Identity"),
        facts([
          ["Meter id", meter.id],
          ["DRN", meter.drn],
          ["Gateway", meter.gateway_id ? h("a", { href: `#/gateways/${encodeURIComponent(meter.gateway_id)}` }, meter.gateway_id) : "–"],
          ["Group", meter.group || "–"],
          ["Profile", meter.profile],
          ["State", badge(meter.status, meter.status === "active" ? "ok" : "")],
          ["Registered", fmtTime(meter.registered_at)],
          ["TOU table", meter.tou_version == null ? "none" : `version ${meter.tou_version}`],
        ])),
      h("section", { class: "card tight", "aria-labelledby": "sts-title" },
        h("h2", { id: "sts-title" }, "STS key attributes"),
        facts([
          ["Supply group code (SGC)", sts.sgc],
          ["Key revision", String(sts.key_revision)],
          ["Tariff index", String(sts.tariff_index).padStart(2, "0")],
          ["Key type", KEY_TYPES[sts.key_type] || String(sts.key_type)],
          ["Base date", String(sts.base_date)],
          ["Algorithm", String(sts.algorithm).toUpperCase()],
        ])),
      h("section", { class: "card tight", "aria-labelledby": "account-title" },
        h("h2", { id: "account-title" }, "Customer"),
        account
          ? facts([
            ["Customer", account.customer_name || `#${account.customer_id}`],
            ["Customer id", String(account.customer_id)],
            ["Account", `#${account.id}`],
            ["Account state", badge(account.status, account.status === "open" ? "ok" : "warn")],
          ])
          : h("p", { class: "muted" }, "This meter is on no open account.")),
      h("section", { class: "card tight", "aria-labelledby": "supply-title" },
        h("h2", { id: "supply-title" }, "Credit and supply"),
        facts([
          [h("label", { for: "credit" }, "Remaining credit"), credit],
          ["Last status", fmtTime(meter.last_status_at)],
          [h("label", { for: "relay-state" }, "Relay"), relay],
          ["Open alarms", meter.open_alarms.length
            ? meter.open_alarms.map((a) => [badge(humanise(a.kind), a.severity), " "]) : "none"],
        ]),
        actions)
    );
  }

  async function refresh() {
    try {
      meter = await api.get(path);
      clear(problem);
    } catch (error) {
      clear(problem, errorBox(error));
      return;
    }
    draw();
  }

  // After the command is applied, the meter's own report (the relay read back, then its readings)
  // is what the page shows: polled until it says the relay is where it was sent.
  async function awaitRelay(expected) {
    for (let i = 0; i < 40 && stops.size; i++) {
      await refresh();
      if (relayText(meter.relay_state) === expected) {
        progress.append(h("p", {}, `The meter reports its relay ${expected}.`));
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
    progress.append(h("p", { class: "error" }, `The meter has not reported its relay ${expected} yet.`));
  }

  async function switchRelay(action, button) {
    const verb = action === "disconnect" ? "Disconnect" : "Connect";
    const reason = await confirmDialog(`${verb} meter ${meterId}?`,
      action === "disconnect"
        ? "The meter opens its relay: the customer has no supply until it is connected again."
        : "The meter closes its relay and the customer's supply returns.",
      { confirm: verb, comment: "Reason", danger: action === "disconnect", required: true });
    if (reason === null) return;
    const command = await act(button, problem, () => api.post(`${path}/relay`, { action, reason }));
    if (!command) return;
    for (const b of relayButtons) b.disabled = true;
    try {
      const final = await followCommand(api, command.id, `${verb} command`, progress, stops);
      if (final && final.state === "applied") await awaitRelay(action === "disconnect" ? "disconnected" : "connected");
      else if (final) await refresh();
    } finally {
      for (const b of relayButtons) b.disabled = false;
    }
  }

  async function readNow(button) {
    const command = await act(button, problem, () => api.post(`${path}/read`, {}));
    if (!command) return;
    const final = await followCommand(api, command.id, "Read", progress, stops);
    if (final) await refresh();
  }

  const relayButtons = [];
  if (can("relay")) {
    const off = h("button", { type: "button", class: "danger", onclick: () => switchRelay("disconnect", off) }, "Disconnect");
    const on = h("button", { type: "button", onclick: () => switchRelay("connect", on) }, "Connect");
    relayButtons.push(off, on);
  }
  const read = can("commands")
    ? h("button", { type: "button", class: "quiet", onclick: () => readNow(read) }, "Read now") : null;
  const actions = h("div", { class: "actions" }, relayButtons, read);

  draw();
  view.append(
    h("h1", {}, `Meter ${meterId}`),
    problem,
    summary,
    progress,
    consumptionCard(api, meterId),
    tabs([
      { id: "tokens", label: "Tokens", render: tokensPanel(api, meterId) },
      { id: "commands", label: "Commands", render: (panel) => {
        const table = commandTable(api, { meter_id: meterId }, "Every command sent to this meter, newest first; open History for its states.", "No command sent to this meter yet.");
        panel.append(h("div", { class: "wide" }, table.node));
        table.reload({});
      } },
      { id: "alarms", label: "Alarms", render: alarmsPanel(api, meterId) },
    ]));

  // credit and relay as the meter reports them (its status is polled every 30 s by the gateway)
  const stopRefresh = poll(refresh, 15000);
  stops.add(stopRefresh);
  return () => {
    for (const stop of [...stops]) stop();
    stops.clear();
  };
}
