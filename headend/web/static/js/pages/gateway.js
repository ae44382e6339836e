// A gateway: its health in detail (the link to the broker, its journal, a table per bus), the
// uplink sequence numbers never received, the meters behind it, and on-demand reads of all of
// them or of one (permission `commands`), with their progress.

import { act, badge, clear, errorBox, facts, fmtAgo, fmtTime, h, pagedTable, poll } from "../ui.js";
import { fmtSeconds, num, onlineBadge, parseHealth, utilisation } from "./gateways.js";
import { commandTable, followCommand } from "./meter.js";
import { meterColumns, meterLink } from "./meters.js";

// the figures of a bus, as concentrator/service.py health() names them
const BUS_FIGURES = [
  ["connected", "Connected", (v) => (v === true || v === "true" ? badge("connected") : badge("disconnected"))],
  ["utilisation", "Utilisation", utilisation],
  ["requests", "Requests", String],
  ["timeouts", "Timeouts", String],
  ["failures", "Failures", String],
  ["crc_errors", "CRC errors / bad frames", String],
  ["retries", "Retries", String],
  ["queue_depth", "Queue depth", String],
  ["polls_skipped", "Polls skipped (bus too busy)", String],
  ["open_breakers", "Meters given a rest (open breakers)", String],
];

function busTable(name, figures) {
  const known = new Set(BUS_FIGURES.map(([key]) => key));
  const rows = [
    ...BUS_FIGURES.filter(([key]) => key in figures).map(([key, label, show]) => [label, show(figures[key])]),
    ...Object.entries(figures).filter(([key]) => !known.has(key)).map(([key, value]) => [key.replace(/_/g, " "), String(value)]),
  ];
  return h("table", { class: "bus" },
    h("caption", {}, `Bus ${name}`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Figure"), h("th", { scope: "col", class: "num" }, "Value"))),
    h("tbody", {}, rows.map(([label, value]) => h("tr", {}, h("td", {}, label), h("td", { class: "num" }, value)))));
}

function yesNo(value) {
  return value === true || value === "true" ? "yes" : value === false || value === "false" ? "no" : String(value ?? "–");
}

export async function render(view, { api, can, params }) {
  const gatewayId = params.id;
  const path = `/gateways/${encodeURIComponent(gatewayId)}`;
  const stops = new Set();
  const summary = h("div", { "aria-live": "polite" });
  const health = h("div");
  const gaps = h("div");
  const problem = h("div");
  let reported = false;

  async function refresh() {
    let gateway;
    try {
      gateway = await api.get(path);
      clear(problem);
    } catch (error) {
      clear(problem, errorBox(error));
      return;
    }
    reported = Boolean(gateway.health_at);
    const { buses, sections } = parseHealth(gateway.health);
    const journal = sections.journal || {};
    const mqtt = sections.mqtt || {};
    const uplink = sections.uplink || {};
    const commands = sections.commands || {};
    clear(summary, h("div", { class: "cols summary" },
      h("section", { class: "card tight", "aria-labelledby": "gw-title" },
        h("h2", { id: "gw-title" }, "Gateway"),
        facts([
          ["State", onlineBadge(gateway)],
          ["Last seen", `${fmtAgo(gateway.seconds_since_seen)} (${fmtTime(gateway.last_seen_at)})`],
          ["First seen", fmtTime(gateway.first_seen_at)],
          ["Version", gateway.version || "–"],
          ["Meters behind it", h("a", { href: `#/meters?gateway_id=${encodeURIComponent(gatewayId)}` }, String(gateway.meters))],
          ["Last uplink seq", String(gateway.max_seq ?? "–")],
          ["Health reported", gateway.health_at ? fmtTime(gateway.health_at) : "not yet (every minute)"],
        ])),
      h("section", { class: "card tight", "aria-labelledby": "link-title" },
        h("h2", { id: "link-title" }, "Broker link and journal"),
        facts([
          ["Broker connected", yesNo(mqtt.connected)],
          ["Reconnects", String(mqtt.reconnects ?? "–")],
          ["Uplink unacknowledged", String(uplink.unacknowledged ?? "–")],
          ["Uplink resent", String(uplink.resent ?? "–")],
          ["Journal backlog", `${journal.entries ?? "–"} entries, ${journal.bytes ?? "–"} bytes`],
          ["Oldest journal entry", num(journal.entries) ? fmtSeconds(journal.oldest_age_s) : "–"],
          ["Journal evicted (full)", String(journal.evicted ?? "–")],
          ["Commands malformed / rejected", `${commands.malformed ?? "–"} / ${commands.rejected ?? "–"}`],
        ]))));
    clear(health, buses.size
      ? h("div", { class: "cols buses" }, [...buses].map(([name, figures]) => busTable(name, figures)))
      : h("p", { class: "muted" }, "The gateway has not reported its buses yet (health comes every minute)."));
  }

  async function loadGaps() {
    try {
      const { missing } = await api.get(`${path}/gaps`);
      clear(gaps, missing.length
        ? h("ul", {}, missing.map(([from, to]) => h("li", {}, from === to ? `${from}` : `${from}–${to}`,
          h("span", { class: "muted" }, ` (${to - from + 1})`))))
        : h("p", {}, "None missing in the last day."));
    } catch (error) {
      clear(gaps, errorBox(error));
    }
  }

  // -- reads ------------------------------------------------------------------------------------
  const readStatus = h("div", { role: "status", "aria-live": "polite" });
  const reads = commandTable(api, { gateway_id: gatewayId, type: "read" },
    "Read commands to this gateway's meters, newest first", "No read asked of this gateway's meters yet.",
    { meter: true, pageSize: 10 });
  let stopReads = null;
  function watchReads() {
    // the reads' progress for the next two minutes
    if (stopReads) stopReads();
    let ticks = 0;
    const stop = poll(async () => {
      if (++ticks > 40) { stop(); stops.delete(stop); return; }
      await reads.reload();
    }, 3000);
    stopReads = stop;
    stops.add(stop);
  }

  async function readAll(button) {
    const reply = await act(button, readStatus, () => api.post(`${path}/read`, {}));
    if (!reply) return;
    clear(readStatus, h("p", {}, reply.meters
      ? `Read asked of ${reply.meters} meters: ${reply.queued} queued` + (reply.coalesced ? `, ${reply.coalesced} already waiting` : "") + "."
      : "No active meter behind this gateway."));
    watchReads();
  }

  function readCell(meter) {
    const slot = h("div", { class: "read-progress", "aria-live": "polite" });
    const button = h("button", { type: "button", class: "quiet", "aria-label": `Read meter ${meter.id} now`,
      onclick: async () => {
        const command = await act(button, slot, () => api.post(`/meters/${encodeURIComponent(meter.id)}/read`, {}));
        if (!command) return;
        button.disabled = true;
        try {
          await followCommand(api, command.id, "Read", slot, stops);
        } finally {
          button.disabled = false;
        }
        reads.reload();
      } }, "Read");
    return h("div", {}, button, slot);
  }

  const meters = pagedTable({
    caption: "The meters behind this gateway",
    columns: [...meterColumns({ gateway: false }),
      can("commands") && { label: "Read", value: readCell }].filter(Boolean),
    load: (p) => api.get("/meters", { ...p, gateway_id: gatewayId }),
    link: (m) => meterLink(m.id),
    empty: "No meter behind this gateway.",
  });

  const readAllButton = can("commands")
    ? h("button", { type: "button", onclick: () => readAll(readAllButton) }, "Read all meters") : null;

  view.append(
    h("h1", {}, `Gateway ${gatewayId}`),
    problem,
    summary,
    h("h2", {}, "Buses"),
    health,
    h("h2", {}, "Uplink gaps"),
    h("p", { class: "muted" }, "Sequence numbers of uplink messages the head-end has not received (the gateway resends from its journal until acknowledged)."),
    gaps,
    h("h2", { id: "meters-title" }, "Meters"),
    readAllButton && h("div", { class: "actions" }, readAllButton),
    readStatus,
    h("div", { class: "wide" }, meters.node),
    h("h2", {}, "Reads"),
    h("div", { class: "wide" }, reads.node));

  await refresh();
  await Promise.all([loadGaps(), meters.reload({}), reads.reload({})]);
  // health arrives every minute: refreshed every 15 s, every 5 s until the first one is there
  let loadedAt = Date.now();
  const stopHealth = poll(async () => {
    if (reported && Date.now() - loadedAt < 15000) return;
    loadedAt = Date.now();
    await Promise.all([refresh(), loadGaps()]);
  }, 5000);
  stops.add(stopHealth);
  return () => {
    for (const stop of [...stops]) stop();
    stops.clear();
  };
}
