// Key management (permission keys): the vending keys the head-end holds (attributes only, never key
// material), key-change campaigns with their progress, live while they run, and starting one (the
// TID roll-over to base date 2014, a new key revision, ...). #/keys?campaign=<id> shows one
// campaign meter by meter, with Retry for the meters whose set failed or expired.

import {
  act, badge, clear, confirmDialog, facts, filterForm, fmtTime, h, pagedTable, poll, toast,
} from "../ui.js";

const POLL_MS = 3000;
// "received": the gateway has the set and the meter's answer is awaited (a campaign meter takes
// its command's in-flight state from the gateway's report).
const STATES = ["done", "pending", "received", "failed", "expired", "rejected", "cancelled"];
const ON_ITS_WAY = ["pending", "queued", "sent", "received"];
const STATE_BADGE = { done: "ok", pending: "pending", received: "received", failed: "failed",
  expired: "expired", rejected: "rejected", cancelled: "cancelled" };
const KEY_TYPES = { 0: "0 (initialisation)", 1: "1 DDTK", 2: "2 DUTK", 3: "3 DCTK" };
const TARGET_LABELS = { base_date: "base date", key_revision: "key revision", sgc: "supply group",
  tariff_index: "tariff index", key_type: "key type" };

export async function render(view, ctx) {
  const id = ctx.query.get("campaign");
  view.append(h("h1", {}, "Key management"));
  if (id) return campaignPage(view, ctx, id);
  return overview(view, ctx);
}

function targetText(target) {
  return Object.entries(target || {}).map(([name, value]) =>
    `${TARGET_LABELS[name] || name} ${name === "key_type" ? KEY_TYPES[value] || value : value}`).join(", ");
}

function onItsWay(campaign) {
  return ON_ITS_WAY.reduce((sum, k) => sum + (campaign.states[k] || 0), 0);
}

function stateBadge(state) {
  return badge(state, STATE_BADGE[state] || state);
}

function campaignBadge(campaign) {
  return campaign.state === "done" ? badge("done", "ok") : badge(campaign.state, "info");
}

// -- progress, drawn with plain elements --------------------------------------------------------

function summary(campaign) {
  const s = campaign.states || {};
  const rest = STATES.filter((k) => k !== "done" && s[k]).map((k) => `${s[k]} ${k}`);
  return `${s.done || 0} of ${campaign.meters} meters done${rest.length ? `; ${rest.join(", ")}` : ""}`;
}

// A bar with one segment per state (width from the counts) and its text beside it; update(c)
// redraws it in place, so polling neither moves the focus nor the page.
function progress(campaign, { large = false } = {}) {
  const bar = h("div", { class: `progress${large ? " large" : ""}`, role: "progressbar",
    "aria-valuemin": "0", "aria-label": `Progress of ${campaign.name}` });
  const text = h("span", { class: "progress-text" });
  const node = h("div", { class: "progress-wrap" }, bar, text);
  function update(c) {
    const total = Math.max(c.meters, 1);
    bar.setAttribute("aria-valuemax", String(c.meters));
    bar.setAttribute("aria-valuenow", String(c.states.done || 0));
    bar.setAttribute("aria-valuetext", summary(c));
    clear(bar, STATES.filter((k) => c.states[k]).map((k) => {
      const segment = h("span", { class: `segment ${k}`, title: `${c.states[k]} ${k}` });
      segment.style.width = `${(100 * c.states[k]) / total}%`;
      return segment;
    }));
    text.textContent = summary(c);
  }
  update(campaign);
  return { node, update };
}

function counts(campaign) {
  return h("ul", { class: "counts" }, STATES.filter((k) => !["received", "cancelled"].includes(k) || campaign.states[k])
    .map((k) => h("li", {}, h("i", { class: `swatch ${k}`, "aria-hidden": "true" }),
      `${k[0].toUpperCase()}${k.slice(1)}: `, h("strong", {}, String(campaign.states[k] || 0)))));
}

// -- the overview: keys, campaigns, a new campaign ----------------------------------------------

function overview(view, ctx) {
  const { api } = ctx;
  const bars = new Map(); // campaign id -> progress, for the rows on the page
  let lastParams = null;
  let lastIds = "";
  const campaigns = pagedTable({
    caption: "Key-change campaigns, newest first. Open one to follow it meter by meter.",
    columns: [
      { label: "Campaign", value: (c) => c.name },
      { label: "State", value: (c) => campaignBadge(c) },
      { label: "Target", value: (c) => targetText(c.target) },
      { label: "Meters", value: (c) => (c.group ? `group ${c.group}` : `${c.meters} listed`) },
      { label: "Progress", value: (c) => {
        const bar = progress(c);
        bars.set(c.id, bar);
        return bar.node;
      } },
      { label: "Started", value: (c) => `${fmtTime(c.created_at)} by ${c.created_by}` },
    ],
    load: async (params) => {
      lastParams = params;
      bars.clear();
      const page = await api.get("/key-campaigns", params);
      lastIds = page.items.map((c) => c.id).join(",");
      return page;
    },
    link: (c) => `#/keys?campaign=${c.id}`,
    empty: "No key-change campaign yet.",
  });

  const keys = pagedTable({
    caption: "Vending keys in the key store (sealed under the master key; only their attributes are shown).",
    columns: [
      { label: "Key", value: (k) => k.id },
      { label: "Supply group", value: (k) => String(k.sgc).padStart(6, "0") },
      { label: "Key revision", value: (k) => String(k.key_revision), num: true },
      { label: "Key type", value: (k) => KEY_TYPES[k.key_type] || String(k.key_type) },
      { label: "Algorithm", value: (k) => k.algorithm.toUpperCase() },
      { label: "DKGA", value: (k) => `0${k.dkga}` },
      { label: "Imported", value: (k) => fmtTime(k.created_at) },
    ],
    load: (params) => api.get("/keys", params),
    empty: "No vending key: import one before vending.",
  });

  view.append(
    h("section", { "aria-labelledby": "campaigns-title" },
      h("h2", { id: "campaigns-title" }, "Key-change campaigns"), campaigns.node),
    startForm(ctx),
    h("section", { "aria-labelledby": "vending-keys-title" },
      h("h2", { id: "vending-keys-title" }, "Vending keys"), keys.node, importForm(ctx, keys)));
  keys.reload();
  campaigns.reload();

  // running campaigns move on: redraw their bars in place
  return poll(async () => {
    if (!lastParams || ![...bars.keys()].length) return;
    const page = await api.get("/key-campaigns", lastParams);
    if (page.items.map((c) => c.id).join(",") !== lastIds) {
      await campaigns.reload();
      return;
    }
    for (const c of page.items) bars.get(c.id)?.update(c);
  }, POLL_MS * 2);
}

function labelled(id, text, input, hint = null) {
  input.id = id;
  if (!input.name) input.name = id;
  const help = hint && h("span", { class: "hint", id: `${id}-hint` }, hint);
  if (help) input.setAttribute("aria-describedby", help.id);
  return h("div", { class: "field" }, h("label", { for: id }, text, input), help);
}

function optionalInt(input) {
  const text = input.value.trim();
  return text === "" ? undefined : Number(text);
}

function meterIds(text) {
  return [...new Set(text.split(/[\s,;]+/).map((m) => m.trim()).filter(Boolean))];
}

function startForm(ctx) {
  const { api } = ctx;
  const name = h("input", { required: true, maxlength: 100, autocomplete: "off" });
  const which = h("select", {}, h("option", { value: "group" }, "a meter group"),
    h("option", { value: "list", selected: true }, "a list of meters"));
  const group = h("input", { maxlength: 64, autocomplete: "off" });
  const list = h("textarea", { rows: 3, spellcheck: "false" });
  const groupField = labelled("campaign-group", "Meter group", group, "every active meter of the group");
  const listField = labelled("campaign-meters", "Meter ids", list, "separated by spaces, commas or new lines");
  function showWhich() {
    groupField.hidden = which.value !== "group";
    listField.hidden = which.value !== "list";
  }
  which.addEventListener("change", showWhich);
  showWhich();
  const baseDate = h("select", {}, [1993, 2014, 2035].map((y) =>
    h("option", { value: y, selected: y === 2014 }, String(y))));
  const revision = h("input", { type: "number", min: 1, max: 9, inputmode: "numeric" });
  const sgc = h("input", { inputmode: "numeric", pattern: "[0-9]{1,6}", maxlength: 6 });
  const tariffIndex = h("input", { type: "number", min: 0, max: 99, inputmode: "numeric" });
  const keyType = h("select", {}, h("option", { value: "" }, "unchanged"),
    [1, 2, 3].map((t) => h("option", { value: t }, KEY_TYPES[t])));
  const problem = h("div");
  const start = h("button", { type: "submit" }, "Start campaign");

  const form = h("form", { class: "card tight", "aria-labelledby": "start-title", onsubmit: async (event) => {
    event.preventDefault();
    const target = { base_date: Number(baseDate.value) };
    const extra = { key_revision: optionalInt(revision), sgc: optionalInt(sgc),
      tariff_index: optionalInt(tariffIndex), key_type: optionalInt(keyType) };
    for (const [k, v] of Object.entries(extra)) if (v !== undefined) target[k] = v;
    const body = { name: name.value.trim(), target };
    let who;
    if (which.value === "group") {
      body.group = group.value.trim();
      who = `every active meter of group ${body.group}`;
    } else {
      body.meter_ids = meterIds(list.value);
      who = body.meter_ids.length === 1 ? "meter " + body.meter_ids[0] : `${body.meter_ids.length} meters`;
    }
    clear(problem);
    if (which.value === "group" ? !body.group : !body.meter_ids.length) {
      clear(problem, h("p", { role: "alert" }, which.value === "group" ? "Give the meter group." : "Give at least one meter id."));
      return;
    }
    const ok = await confirmDialog(`Start the campaign ${body.name}?`,
      `A key change set moving ${who} to ${targetText(target)} is queued for each meter. ` +
      "A sale to a meter is refused while its set is on its way; sell before or after.",
      { confirm: "Start campaign" });
    if (ok === null) return;
    const made = await act(start, problem, () => api.post("/key-campaigns", body));
    if (!made) return;
    toast(`Campaign ${made.name} started: ${made.meters} meters.`);
    ctx.go(`#/keys?campaign=${made.id}`);
  } },
  h("h2", { id: "start-title" }, "Start a key-change campaign"),
  h("p", { class: "muted" }, "For the TID roll-over, move meters on base date 1993 to 2014 (and, " +
    "usually, to a new key revision). A base date moves one step at a time and never back; the " +
    "target vending key must be imported first. What you leave empty stays as each meter has it."),
  h("div", { class: "fields" },
    labelled("campaign-name", "Campaign name", name),
    labelled("campaign-which", "Meters", which),
    groupField, listField),
  h("fieldset", {}, h("legend", {}, "Target key attributes"),
    h("div", { class: "fields" },
      labelled("target-base-date", "Base date", baseDate),
      labelled("target-key-revision", "Key revision", revision, "1–9, empty: unchanged"),
      labelled("target-sgc", "Supply group code", sgc, "empty: unchanged"),
      labelled("target-tariff-index", "Tariff index", tariffIndex, "empty: unchanged"),
      labelled("target-key-type", "Key type", keyType))),
  problem, start);
  return form;
}

function importForm(ctx, keys) {
  const { api } = ctx;
  const id = h("input", { required: true, maxlength: 64, pattern: "[A-Za-z0-9_.\\-]{1,64}", autocomplete: "off" });
  const hex = h("input", { type: "password", required: true, autocomplete: "off", spellcheck: "false",
    pattern: "[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40}" }); // DKGA02 | DKGA04
  const sgc = h("input", { required: true, inputmode: "numeric", pattern: "[0-9]{1,6}", maxlength: 6 });
  const revision = h("input", { type: "number", required: true, min: 1, max: 9 });
  const keyType = h("select", {}, [0, 1, 2, 3].map((t) =>
    h("option", { value: t, selected: t === 2 }, KEY_TYPES[t])));
  const algorithm = h("select", {}, [["sta", "STA"], ["misty1", "MISTY1"], ["dea", "DEA"]]
    .map(([v, t]) => h("option", { value: v }, t)));
  const dkga = h("select", {}, h("option", { value: "2" }, "DKGA02"), h("option", { value: "4" }, "DKGA04"));
  const problem = h("div");
  const done = h("p", { role: "status", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Import key");
  const form = h("form", { "aria-label": "Import a vending key", onsubmit: async (event) => {
    event.preventDefault();
    const made = await act(button, problem, () => api.post("/keys", {
      id: id.value.trim(), key_hex: hex.value.trim(), sgc: Number(sgc.value),
      key_revision: Number(revision.value), key_type: Number(keyType.value),
      algorithm: algorithm.value, dkga: Number(dkga.value),
    }));
    hex.value = ""; // never kept in the page
    if (!made) return;
    form.reset();
    done.textContent = `Vending key ${made.id} imported and sealed.`;
    keys.reload();
  } },
  h("p", { class: "muted" }, "The key is sealed at once and never shown again, not even here."),
  h("div", { class: "fields" },
    labelled("import-id", "Key name", id),
    labelled("import-hex", "Key (hex)", hex, "16 or 32 hex digits"),
    labelled("import-sgc", "Supply group code", sgc),
    labelled("import-revision", "Key revision", revision),
    labelled("import-key-type", "Key type", keyType),
    labelled("import-algorithm", "Algorithm", algorithm),
    labelled("import-dkga", "Key derivation", dkga)),
  problem, button, done);
  return h("details", { class: "card" }, h("summary", {}, "Import a vending key"), form);
}

// -- one campaign -------------------------------------------------------------------------------

async function campaignPage(view, ctx, id) {
  const { api } = ctx;
  const back = h("p", {}, h("a", { href: "#/keys" }, "← All campaigns and keys"));
  let campaign;
  try {
    campaign = await api.get(`/key-campaigns/${encodeURIComponent(id)}`);
  } catch (error) {
    view.append(back, h("p", { role: "alert" }, error.text || String(error.message)));
    return undefined;
  }
  const title = h("h2", {}, `Campaign ${campaign.name}`);
  const about = h("div");
  const bar = progress(campaign, { large: true });
  const tally = h("div", { "aria-live": "polite" });
  const problem = h("div");
  const done = h("p", { role: "status", "aria-live": "polite" });
  const retry = h("button", { type: "button" }, "Retry failed and expired meters");
  const live = h("p", { class: "muted" });
  const meters = pagedTable({
    caption: "Every meter of the campaign, by meter id.",
    columns: [
      { label: "Meter", value: (m) => h("a", { href: `#/meters/${encodeURIComponent(m.meter_id)}` }, m.meter_id) },
      { label: "State", value: (m) => stateBadge(m.state) },
      { label: "Command", value: (m) => (m.command_state ? badge(m.command_state) : "none (no set needed)") },
      { label: "Attempts", value: (m) => (m.attempts ?? "–"), num: true },
      { label: "Meter's answer", value: (m) => (m.code === null || m.code === undefined ? "–" : String(m.code)) },
      { label: "Detail", value: (m) => m.detail || "" },
    ],
    load: (params) => api.get(`/key-campaigns/${campaign.id}/meters`, params),
    empty: "No meter in this state.",
  });
  const stateFilter = filterForm([{ name: "state", label: "Show", type: "select",
    options: [["", "All states"], ...STATES.map((s) => [s, s])] }], (values) => meters.reload(values));

  function draw(c) {
    campaign = c;
    clear(about, facts([
      ["State", campaignBadge(c)],
      ["Target", targetText(c.target)],
      ["Meters", c.group ? `${c.meters} (group ${c.group})` : String(c.meters)],
      ["Started", `${fmtTime(c.created_at)} by ${c.created_by}`],
    ]));
    bar.update(c);
    clear(tally, counts(c));
    const retryable = (c.states.failed || 0) + (c.states.expired || 0);
    retry.hidden = retryable === 0;
    retry.textContent = `Retry ${retryable} failed or expired meter${retryable === 1 ? "" : "s"}`;
    live.textContent = onItsWay(c) ? `Updated live every ${POLL_MS / 1000} s while sets are on their way.` : "";
  }

  retry.addEventListener("click", async () => {
    const n = (campaign.states.failed || 0) + (campaign.states.expired || 0);
    const ok = await confirmDialog(`Retry ${n} meter${n === 1 ? "" : "s"}?`,
      "The same key change set is pushed again to each meter whose set failed or expired " +
      "(a meter that reports the target attributes already is marked done).", { confirm: "Retry" });
    if (ok === null) return;
    const result = await act(retry, problem, () => api.post(`/key-campaigns/${campaign.id}/retry`));
    if (!result) return;
    done.textContent = `${result.requeued.length} meter${result.requeued.length === 1 ? "" : "s"} sent the set again` +
      (result.already_changed.length ? `, ${result.already_changed.length} found changed already.` : ".");
    draw(result);
    meters.reload();
  });

  view.append(back, h("section", { "aria-labelledby": "campaign-title" },
    title, about, bar.node, tally, live, h("div", { class: "actions" }, retry), problem, done,
    h("h3", {}, "Meters"), stateFilter.node, meters.node));
  title.id = "campaign-title";
  draw(campaign);
  meters.reload();

  let seen = JSON.stringify(campaign.states);
  return poll(async () => {
    if (!onItsWay(campaign)) return; // nothing on its way: nothing will change by itself
    const c = await api.get(`/key-campaigns/${campaign.id}`);
    const now = JSON.stringify(c.states);
    draw(c);
    if (now !== seen) {
      seen = now;
      await meters.reload();
    }
  }, POLL_MS);
}
