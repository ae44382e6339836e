// Tariffs: step tariffs (what a sale costs) and TOU tariffs (the tables the meters count bands
// by), each with its current version, a page at a time; and, for those who may make tariffs, a
// form to start one of each kind (its page then edits it in full).

import { badge, clear, filterForm, fmtTime, h, pagedTable, toast } from "../ui.js";
import { clearProblems, localZone, shift, showProblems, summary, zoneList } from "./tariff.js";

function field(id, label, attrs = {}) {
  const input = h("input", { id, name: id, ...attrs });
  return { input, node: h("label", { for: id }, label, input) };
}

function newStepForm(api, go) {
  const name = field("new-step-name", "Name", { required: true, maxlength: 100, autocomplete: "off" });
  const currency = field("new-step-currency", "Currency (ISO 4217)", { value: "ZAR", size: 4, maxlength: 3 });
  const price = field("new-step-price", "Price per kWh (before tax)", { inputmode: "decimal", size: 8 });
  const tax = field("new-step-tax", "VAT (%)", { value: "15", inputmode: "decimal", size: 5 });
  const fbe = field("new-step-fbe", "Free basic electricity (kWh a month)", { value: "0", inputmode: "numeric", size: 5 });
  const problems = h("div");
  const button = h("button", { type: "submit" }, "Create step tariff");
  const form = h("form", { class: "card", "aria-labelledby": "new-step-title", onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    clear(problems);
    clearProblems(form);
    const body = {
      currency: currency.input.value.trim(),
      blocks: [{ upper_kwh: null, price_minor_per_kwh: shift(price.input.value, 2) }],
      fixed_charge_minor: 0,
      tax_rate: shift(tax.input.value || "0", -2),
      fbe_kwh: /^\d+$/.test(fbe.input.value.trim()) ? Number(fbe.input.value) : fbe.input.value,
    };
    try {
      const made = await api.post("/tariffs", { name: name.input.value.trim(), kind: "step", body });
      toast(`Step tariff ${made.name} created`);
      go(`#/tariffs/${made.id}`);
    } catch (error) {
      showProblems(form, problems, error, (path) => ({
        name: name.input, currency: currency.input, "blocks[0].price_minor_per_kwh": price.input,
        tax_rate: tax.input, fbe_kwh: fbe.input,
      }[path] || null));
    } finally {
      button.disabled = false;
    }
  } },
  h("h2", { id: "new-step-title" }, "New step tariff"),
  h("p", { class: "muted" }, "One price for every kWh to start with; add blocks and a fixed charge on its page."),
  problems, name.node, h("div", { class: "row" }, currency.node, price.node, tax.node, fbe.node),
  h("div", { class: "actions" }, button));
  return form;
}

function newTouForm(api, go) {
  const name = field("new-tou-name", "Name", { required: true, maxlength: 100, autocomplete: "off" });
  const zone = field("new-tou-zone", "Time zone (IANA)", { value: localZone(), list: "new-tou-zones", autocomplete: "off" });
  const bands = field("new-tou-bands", "Bands, in meter order (up to 4, comma-separated)", { value: "peak, standard, off-peak" });
  const problems = h("div");
  const button = h("button", { type: "submit" }, "Create TOU tariff");
  const form = h("form", { class: "card", "aria-labelledby": "new-tou-title", onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    clear(problems);
    clearProblems(form);
    const names = bands.input.value.split(",").map((b) => b.trim()).filter(Boolean);
    const last = names[names.length - 1] || "";
    const tariffName = name.input.value.trim();
    const calendar = {
      name: tariffName || "tou", version: 1, zone: zone.input.value.trim(), bands: names,
      seasons: [{ name: "all year", start: "01-01", end: "12-31" }],
      week: ["weekday", "weekday", "weekday", "weekday", "weekday", "weekend", "weekend"],
      profiles: { weekday: [["00:00", last]], weekend: [["00:00", last]] },
      assignments: [{ season: "all year", day_type: "weekday", profile: "weekday" },
        { season: "all year", day_type: "weekend", profile: "weekend" }],
      special_days: {},
    };
    try {
      const made = await api.post("/tariffs", { name: tariffName, kind: "tou", body: { calendar } });
      toast(`TOU tariff ${made.name} created`);
      go(`#/tariffs/${made.id}`);
    } catch (error) {
      showProblems(form, problems, error, (path) => (path === "name" ? name.input :
        path === "zone" ? zone.input : path.startsWith("bands") ? bands.input : null));
    } finally {
      button.disabled = false;
    }
  } },
  h("h2", { id: "new-tou-title" }, "New TOU tariff"),
  h("p", { class: "muted" }, "Starts as one season, weekdays and weekends, the whole day in the last band; draw its bands on its page."),
  problems, name.node, zone.node, zoneList("new-tou-zones"), bands.node,
  h("div", { class: "actions" }, button));
  return form;
}

export async function render(view, ctx) {
  const { api } = ctx;
  const initial = { kind: ["step", "tou"].includes(ctx.query.get("kind")) ? ctx.query.get("kind") : "" };
  const table = pagedTable({
    caption: "Tariffs and their current versions",
    columns: [
      { label: "Name", value: (t) => t.name },
      { label: "Kind", value: (t) => badge(t.kind === "tou" ? "TOU" : "step", "info") },
      { label: "Version", value: (t) => String(t.current_version), num: true },
      { label: "In force since", value: (t) => (t.activation_at ? fmtTime(t.activation_at) : "–") },
      { label: "What it is", value: (t) => summary(t) },
    ],
    load: (params) => api.get("/tariffs", params),
    link: (t) => `#/tariffs/${t.id}`,
    empty: "No tariff of this kind.",
  });
  const filters = filterForm([{ name: "kind", label: "Kind", type: "select",
    options: [["", "Step and TOU"], ["step", "Step"], ["tou", "TOU"]] }], (values) => table.reload(values), initial);
  view.append(h("div", { class: "tf" }, h("h1", {}, "Tariffs"), filters.node, table.node,
    ctx.can("tariffs") && h("div", { class: "cols" }, newStepForm(api, ctx.go), newTouForm(api, ctx.go))));
  await table.reload(initial);
}
