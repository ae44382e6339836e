// One tariff: its versions (who made each, when, how far each reached), an editor that saves a new
// version (a TOU calendar: zone, bands, seasons, day types, special days and each day's switch
// points drawn on a 24-hour strip; or a step tariff's blocks and charges), and for TOU tariffs the
// push of a version to the meters with its rollout, live while meters are pending.
//
// The editor keeps its own model with stable ids (renaming a band or a day type renames it
// everywhere) and turns it into the API's body only when saving; the API's refusals come back as
// "path: problem" details, each shown beside the field it names.

import { ApiError } from "../api.js";
import { clock, dayStrip, legend, BAND_COLORS } from "../chart.js";
import {
  badge, clear, confirmDialog, errorBox, facts, filterForm, fmtTime, h, pagedTable, poll, tabs, toast,
} from "../ui.js";

const DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const SHORT_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MAX_BANDS = 4; // a meter counts bands 1..4
const MAX_POINTS = 8; // a meter's day table holds 8 switch points
const ROLLOUT_STATES = ["pending", "received", "confirmed", "rejected", "failed", "expired"];
const REFUSED = ["rejected", "failed", "expired"];

// A rollout's meters in three heaps: confirmed, refused (a final state other than confirmed), and
// the rest, still on their way (pending, or received by the gateway).
function heaps(rollout) {
  const s = rollout.states || {};
  const confirmed = s.confirmed || 0;
  const refused = REFUSED.reduce((sum, state) => sum + (s[state] || 0), 0);
  return { confirmed, refused, pending: (rollout.meters || 0) - confirmed - refused };
}

let counter = 0;
const uid = (prefix) => `${prefix}${++counter}`;

// -- shared with the list page --------------------------------------------------------------

// A decimal written as text, with its point moved: shift("1.855", 2) === "185.5". What is not a
// plain decimal comes back as it was, for the API to refuse with its reason.
export function shift(text, places) {
  const value = String(text ?? "").trim();
  const match = /^(\d*)(?:\.(\d*))?$/.exec(value);
  if (!value || !match || (!match[1] && !match[2])) return value;
  let digits = (match[1] || "") + (match[2] || "");
  let point = (match[1] || "").length + places;
  if (point < 0) {
    digits = "0".repeat(-point) + digits;
    point = 0;
  }
  if (point > digits.length) digits += "0".repeat(point - digits.length);
  const whole = digits.slice(0, point).replace(/^0+(?=\d)/, "") || "0";
  const fraction = digits.slice(point).replace(/0+$/, "");
  return fraction ? `${whole}.${fraction}` : whole;
}

// Minor units (a decimal string) as major units with at least two decimals: "185.5" -> "1.855".
export function major(minor) {
  const text = shift(minor, -2);
  if (!/^\d+(\.\d+)?$/.test(text)) return text;
  const [whole, fraction = ""] = text.split(".");
  return `${whole}.${fraction.padEnd(2, "0")}`;
}

// The sentence a list shows for a tariff's current version.
export function summary(tariff) {
  const body = tariff.body || {};
  if (tariff.kind === "step") {
    const blocks = body.blocks || [];
    const prices = blocks.map((b) => major(b.price_minor_per_kwh)).join(" / ");
    return `${body.currency} ${prices} per kWh in ${blocks.length} block${blocks.length === 1 ? "" : "s"}` +
      `, VAT ${shift(body.tax_rate ?? "0", 2)} %, free ${body.fbe_kwh || 0} kWh a month`;
  }
  if (body.calendar) {
    const c = body.calendar;
    const types = new Set([...(c.week || []), ...Object.values(c.special_days || {})]);
    return `Calendar in ${c.zone}: ${(c.bands || []).join(", ")}; ${(c.seasons || []).length} season(s), ` +
      `${types.size} day type(s)`;
  }
  return `Meter table: weekday ${(body.weekday || []).length} switch points, ` +
    `weekend ${(body.weekend || []).length}`;
}

// Shows an API refusal: the whole text in `slot` (role=alert), and each "path: problem" detail
// beside the field `resolve(path, detail)` returns (an input, or a section to head).
export function showProblems(root, slot, error, resolve) {
  clearProblems(root);
  clear(slot, errorBox(error));
  if (!(error instanceof ApiError)) return;
  for (const detail of error.details) {
    const cut = detail.indexOf(": ");
    const path = cut > 0 ? detail.slice(0, cut) : "";
    const message = cut > 0 ? detail.slice(cut + 2) : detail;
    const target = resolve(path, detail);
    if (target) markProblem(target, message);
  }
}

export function clearProblems(root) {
  root.querySelectorAll(".field-error").forEach((node) => node.remove());
  root.querySelectorAll("[aria-invalid]").forEach((node) => {
    node.removeAttribute("aria-invalid");
    node.removeAttribute("aria-describedby");
  });
}

function markProblem(target, message) {
  const note = h("p", { class: "field-error", id: uid("problem-") }, message);
  if (target.matches("input, select, textarea")) {
    target.setAttribute("aria-invalid", "true");
    target.setAttribute("aria-describedby", note.id);
    const row = target.closest(".row");
    if (row) row.append(note); else (target.closest("label") || target).after(note);
    target.addEventListener("input", () => {
      note.remove();
      target.removeAttribute("aria-invalid");
      target.removeAttribute("aria-describedby");
    }, { once: true });
  } else {
    target.prepend(note);
  }
}

export function localZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch (error) {
    return "UTC";
  }
}

export function zoneList(id) {
  let zones = [];
  try { zones = Intl.supportedValuesOf("timeZone"); } catch (error) { /* an older browser */ }
  return h("datalist", { id }, zones.map((zone) => h("option", { value: zone })));
}

// -- TOU model ------------------------------------------------------------------------------

function minutes(text) {
  const match = /^(\d{2}):(\d{2})$/.exec(text || "");
  if (!match || Number(match[1]) > 23 || Number(match[2]) > 59) return null;
  return Number(match[1]) * 60 + Number(match[2]);
}

const pairKey = (season, dayType) => `${season.id}|${dayType.id}`;

function fromTable(body) {
  const used = [...(body.weekday || []), ...(body.weekend || [])].map((p) => p[1]);
  const count = Math.min(Math.max(1, ...used), MAX_BANDS);
  const bands = Array.from({ length: count }, (_, i) => ({ id: uid("b"), name: `band ${i + 1}` }));
  const season = { id: uid("s"), name: "all year", start: "01-01", end: "12-31" };
  const weekday = { id: uid("d"), name: "weekday" };
  const weekend = { id: uid("d"), name: "weekend" };
  const points = (list) => (list || []).map(([minute, band]) =>
    ({ id: uid("p"), time: clock(minute), band: (bands[band - 1] || bands[0]).id }));
  return {
    name: null, zone: localZone(), converted: true, bands, seasons: [season],
    dayTypes: [weekday, weekend],
    week: [weekday.id, weekday.id, weekday.id, weekday.id, weekday.id, weekend.id, weekend.id],
    specials: [],
    profiles: {
      [pairKey(season, weekday)]: { origin: "weekday", points: points(body.weekday) },
      [pairKey(season, weekend)]: { origin: "weekend", points: points(body.weekend) },
    },
  };
}

function fromCalendar(c) {
  const bands = (c.bands || []).map((name) => ({ id: uid("b"), name }));
  const bandId = (name) => (bands.find((b) => b.name === name) || bands[0] || {}).id;
  const seasons = (c.seasons || []).map((s) => ({ id: uid("s"), name: s.name, start: s.start, end: s.end }));
  const names = [...new Set([...(c.week || []), ...Object.values(c.special_days || {}),
    ...(c.assignments || []).map((a) => a.day_type)])];
  const dayTypes = names.map((name) => ({ id: uid("d"), name }));
  const typeId = (name) => (dayTypes.find((d) => d.name === name) || dayTypes[0] || {}).id;
  const profiles = {};
  for (const season of seasons) {
    for (const dayType of dayTypes) {
      const assigned = (c.assignments || []).find((a) => a.season === season.name && a.day_type === dayType.name);
      const origin = assigned ? assigned.profile : null;
      const points = ((origin && c.profiles[origin]) || [["00:00", bands[0] && bands[0].name]])
        .map(([time, band]) => ({ id: uid("p"), time, band: bandId(band) }));
      profiles[pairKey(season, dayType)] = { origin, points };
    }
  }
  return {
    name: c.name, zone: c.zone, converted: false, bands, seasons, dayTypes,
    week: (c.week || []).map(typeId),
    specials: Object.entries(c.special_days || {}).map(([date, type]) => ({ id: uid("x"), date, dayType: typeId(type) })),
    profiles,
  };
}

export function touModel(body) {
  return body && body.calendar ? fromCalendar(body.calendar) : fromTable(body || {});
}

function profileOf(model, season, dayType) {
  const key = pairKey(season, dayType);
  if (!model.profiles[key]) {
    // a new season or day type starts as a copy of what its first neighbour has
    const like = model.profiles[pairKey(season, model.dayTypes[0])] ||
      model.profiles[pairKey(model.seasons[0], dayType)] ||
      { points: [{ time: "00:00", band: model.bands[0] && model.bands[0].id }] };
    model.profiles[key] = { origin: null, points: like.points.map((p) => ({ ...p, id: uid("p") })) };
  }
  return model.profiles[key];
}

function usedTypes(model) {
  return new Set([...model.week, ...model.specials.map((s) => s.dayType)]);
}

// The API's calendar, and which editor pairs each profile name stands for (to place errors).
export function toCalendar(model, name, version) {
  const bandName = (id) => (model.bands.find((b) => b.id === id) || { name: id }).name;
  const typeName = (id) => (model.dayTypes.find((d) => d.id === id) || { name: id }).name;
  const used = usedTypes(model);
  const profiles = {};
  const owners = {};
  const byPoints = {};
  const assignments = [];
  for (const season of model.seasons) {
    for (const dayType of model.dayTypes) {
      if (!used.has(dayType.id)) continue;
      const profile = profileOf(model, season, dayType);
      const points = profile.points.map((p) => [p.time, bandName(p.band)]);
      // pairs that shared a profile and still agree share it again; others get their own
      const key = JSON.stringify([profile.origin || pairKey(season, dayType), points]);
      let profileName = byPoints[key];
      if (!profileName) {
        const candidates = [profile.origin,
          model.seasons.length > 1 ? `${season.name} ${dayType.name}` : dayType.name];
        profileName = candidates.find((c) => c && !(c in profiles));
        for (let n = 2; !profileName; n++) {
          if (!(`${season.name} ${dayType.name} ${n}` in profiles)) profileName = `${season.name} ${dayType.name} ${n}`;
        }
        profiles[profileName] = points;
        byPoints[key] = profileName;
      }
      (owners[profileName] = owners[profileName] || []).push(pairKey(season, dayType));
      assignments.push({ season: season.name, day_type: dayType.name, profile: profileName });
    }
  }
  const calendar = {
    name: model.name || name, version: Math.min(Math.max(1, version), 65535), zone: model.zone.trim(),
    bands: model.bands.map((b) => b.name),
    seasons: model.seasons.map((s) => ({ name: s.name, start: s.start.trim(), end: s.end.trim() })),
    week: model.week.map(typeName), profiles, assignments,
    special_days: Object.fromEntries(model.specials.map((s) => [s.date.trim(), typeName(s.dayType)])),
  };
  return { calendar, owners };
}

// Spans of a day for chart.js: before the first switch point the day's last band is in force.
function spans(model, points) {
  const index = (id) => model.bands.findIndex((b) => b.id === id);
  const sorted = points.map((p) => ({ m: minutes(p.time), band: p.band }))
    .filter((p) => p.m !== null && index(p.band) >= 0).sort((a, b) => a.m - b.m);
  const out = [];
  const push = (from, to, band) => {
    if (to <= from) return;
    const last = out[out.length - 1];
    if (last && last.bandId === band) {
      last.to_minute = to;
      return;
    }
    const i = index(band);
    out.push({ from_minute: from, to_minute: to, band: model.bands[i].name, bandId: band,
      color: BAND_COLORS[i % BAND_COLORS.length] });
  };
  if (!sorted.length) return out;
  if (sorted[0].m > 0) push(0, sorted[0].m, sorted[sorted.length - 1].band);
  sorted.forEach((p, i) => push(p.m, i + 1 < sorted.length ? sorted[i + 1].m : 1440, p.band));
  return out;
}

function strip(model, points, title) {
  const parts = spans(model, points);
  const text = parts.map((s) => `${clock(s.from_minute)}–${clock(s.to_minute)} ${s.band}`).join(", ");
  return h("div", { class: "strip-box" },
    dayStrip(parts, `${title}: ${text || "no valid switch point"}`),
    h("div", { class: "strip-hours", "aria-hidden": "true" },
      ["00", "06", "12", "18", "24"].map((hour) => h("span", {}, hour))));
}

function daysOf(model, dayType) {
  const days = model.week.map((id, i) => (id === dayType.id ? i : -1)).filter((i) => i >= 0);
  const parts = [];
  for (let i = 0; i < days.length; i++) {
    let j = i;
    while (j + 1 < days.length && days[j + 1] === days[j] + 1) j++;
    parts.push(j - i >= 2 ? `${SHORT_DAYS[days[i]]}–${SHORT_DAYS[days[j]]}` :
      days.slice(i, j + 1).map((d) => SHORT_DAYS[d]).join(", "));
    i = j;
  }
  const specials = model.specials.filter((s) => s.dayType === dayType.id).length;
  if (specials) parts.push(`${specials} special day${specials === 1 ? "" : "s"}`);
  return parts.join(", ") || "no day";
}

// -- TOU editor -----------------------------------------------------------------------------

function touEditor(model, { editable, onSave, saveLabel }) {
  const root = h("div", { class: "tou-editor" });
  const problems = h("div");
  const status = h("p", { role: "status", class: "muted" });
  const sections = {};
  let owners = {};

  const field = (id, label, input) => h("label", { for: id }, label, input);
  // Typing never rebuilds the editor (the field being typed in stays put); what shows the name
  // elsewhere (options, headings, strips) follows at once through relabel().
  const textInput = (id, value, onChange, attrs = {}) => {
    const input = h("input", { id, value: value ?? "", ...attrs });
    input.addEventListener("input", () => {
      onChange(input.value);
      relabel();
    });
    return input;
  };
  const select = (id, options, value, onChange) => {
    const node = h("select", { id, onchange: () => onChange(node.value) },
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)));
    return node;
  };
  const removeButton = (what, action, disabled = false) => h("button", { type: "button", class: "quiet",
    disabled, onclick: action }, "Remove", h("span", { class: "sr-only" }, ` ${what}`));

  let stripRedrawers = [];

  // Rebuild everything (after adding or removing something, or a choice that changes which days
  // are drawn), keeping the focus where it was by id; a new field's text is selected, to type over.
  function redraw(focusId = null) {
    const active = focusId || (document.activeElement && root.contains(document.activeElement) ? document.activeElement.id : null);
    stripRedrawers = [];
    clear(root, editable ? problems : null, zoneAndBands(), seasonsCard(), dayTypesCard(), profilesCard(),
      editable && h("div", { class: "actions" },
        h("button", { type: "button", id: "tou-save", onclick: save }, saveLabel()), status));
    const target = active && document.getElementById(active);
    if (target) {
      target.focus();
      if (focusId && target.matches("input:not([type=time])")) target.select();
    }
  }

  // Names and dates shown outside their own field, brought up to date without a rebuild.
  function relabel() {
    const names = new Map([...model.bands, ...model.dayTypes].map((x) => [x.id, x.name]));
    root.querySelectorAll("select option").forEach((option) => {
      if (names.has(option.value)) option.textContent = names.get(option.value);
    });
    root.querySelectorAll("[data-season-title]").forEach((node) => {
      const season = model.seasons.find((x) => x.id === node.dataset.seasonTitle);
      if (season) node.textContent = `${season.name} (${season.start || "?"} to ${season.end || "?"})`;
    });
    root.querySelectorAll("[data-pair-title]").forEach((node) => {
      const [sid, did] = node.dataset.pairTitle.split("|");
      const season = model.seasons.find((x) => x.id === sid);
      const dayType = model.dayTypes.find((x) => x.id === did);
      if (season && dayType) node.textContent = `${season.name} · ${dayType.name}`;
    });
    const key = root.querySelector(".legend");
    if (key) key.replaceWith(bandLegend());
    stripRedrawers.forEach((draw) => draw());
  }

  const bandLegend = () => legend(model.bands.map((b, i) => ({ name: b.name, color: BAND_COLORS[i % BAND_COLORS.length] })));

  // A change the editor will not make (removing what is still used), said where it was asked.
  function refuse(message, section) {
    clearProblems(root);
    sections[section].prepend(h("p", { class: "field-error", role: "alert" }, message));
  }

  function zoneAndBands() {
    const rows = model.bands.map((band, i) => h("div", { class: "row" },
      h("i", { class: "swatch", "aria-hidden": "true", dataset: { band: String(i) } }),
      editable ? field(`band-${band.id}`, `Band ${i + 1} name`, textInput(`band-${band.id}`, band.name,
        (value) => { band.name = value; })) : h("span", {}, `Band ${i + 1}: ${band.name}`),
      editable && removeButton(`band ${i + 1}`, () => {
        const users = Object.values(model.profiles).some((p) => p.points.some((pt) => pt.band === band.id));
        if (users) return refuse(`Band ${band.name} is used by switch points; give them another band first.`, "bands");
        model.bands.splice(i, 1);
        redraw("add-band");
      }, model.bands.length <= 1)));
    const card = h("section", { class: "card", "aria-labelledby": "tou-bands-title" },
      h("h3", { id: "tou-bands-title" }, "Time zone and bands"),
      editable ? field("tou-zone", "Time zone (IANA)", textInput("tou-zone", model.zone,
        (value) => { model.zone = value; }, { list: "tou-zones", autocomplete: "off" })) :
        h("p", {}, `Time zone: ${model.zone}`),
      editable && zoneList("tou-zones"),
      h("p", { class: "muted" }, "A meter counts up to four bands, numbered in this order."),
      h("div", { class: "rows" }, rows),
      editable && h("button", { type: "button", class: "quiet", id: "add-band", disabled: model.bands.length >= MAX_BANDS,
        onclick: () => {
          const band = { id: uid("b"), name: `band ${model.bands.length + 1}` };
          model.bands.push(band);
          redraw(`band-${band.id}`);
        } }, "Add band"));
    card.querySelectorAll("i.swatch").forEach((node) => {
      node.style.background = BAND_COLORS[Number(node.dataset.band) % BAND_COLORS.length];
    });
    sections.bands = card;
    sections.zone = card;
    return card;
  }

  function seasonsCard() {
    const rows = model.seasons.map((season, i) => editable ? h("div", { class: "row", id: `season-row-${season.id}` },
      field(`season-${season.id}-name`, `Season ${i + 1} name`, textInput(`season-${season.id}-name`, season.name,
        (value) => { season.name = value; })),
      field(`season-${season.id}-start`, "From (MM-DD)", textInput(`season-${season.id}-start`, season.start,
        (value) => { season.start = value; }, { placeholder: "MM-DD", size: 6, inputmode: "numeric" })),
      field(`season-${season.id}-end`, "To (MM-DD)", textInput(`season-${season.id}-end`, season.end,
        (value) => { season.end = value; }, { placeholder: "MM-DD", size: 6, inputmode: "numeric" })),
      removeButton(`season ${i + 1}`, () => {
        model.seasons.splice(i, 1);
        redraw("add-season");
      }, model.seasons.length <= 1)) :
      h("li", {}, `${season.name}: ${season.start} to ${season.end}`));
    const card = h("section", { class: "card", "aria-labelledby": "tou-seasons-title" },
      h("h3", { id: "tou-seasons-title" }, "Seasons"),
      h("p", { class: "muted" }, "Date ranges, both ends included, repeating every year; together they cover every day once (29 February too)."),
      editable ? h("div", { class: "rows" }, rows) : h("ul", {}, rows),
      editable && h("button", { type: "button", class: "quiet", id: "add-season", onclick: () => {
        const season = { id: uid("s"), name: `season ${model.seasons.length + 1}`, start: "", end: "" };
        model.seasons.push(season);
        redraw(`season-${season.id}-name`);
      } }, "Add season"));
    sections.seasons = card;
    return card;
  }

  function dayTypesCard() {
    const options = model.dayTypes.map((d) => [d.id, d.name]);
    const typeRows = model.dayTypes.map((dayType, i) => editable ? h("div", { class: "row" },
      field(`daytype-${dayType.id}`, `Day type ${i + 1} name`, textInput(`daytype-${dayType.id}`, dayType.name,
        (value) => { dayType.name = value; })),
      h("span", { class: "muted" }, daysOf(model, dayType)),
      removeButton(`day type ${i + 1}`, () => {
        if (usedTypes(model).has(dayType.id)) {
          return refuse(`Day type ${dayType.name} is used by ${daysOf(model, dayType)}; give those days another day type first.`, "week");
        }
        model.dayTypes.splice(i, 1);
        redraw("add-daytype");
      }, model.dayTypes.length <= 1)) :
      h("li", {}, `${dayType.name}: ${daysOf(model, dayType)}`));
    const week = h("fieldset", { class: "week" }, h("legend", {}, "The week"),
      DAYS.map((day, i) => editable ? field(`week-${i}`, day, select(`week-${i}`, options, model.week[i],
        (value) => { model.week[i] = value; redraw(); })) :
        h("span", { class: "day" }, `${day}: ${(model.dayTypes.find((d) => d.id === model.week[i]) || {}).name}`)));
    const specials = model.specials.map((special, i) => editable ? h("div", { class: "row", id: `special-row-${special.id}` },
      field(`special-${special.id}-date`, `Special day ${i + 1} (MM-DD every year, or YYYY-MM-DD)`,
        textInput(`special-${special.id}-date`, special.date, (value) => { special.date = value; },
          { placeholder: "MM-DD", size: 11 })),
      field(`special-${special.id}-type`, "runs as", select(`special-${special.id}-type`, options, special.dayType,
        (value) => { special.dayType = value; redraw(); })),
      removeButton(`special day ${i + 1}`, () => {
        model.specials.splice(i, 1);
        redraw("add-special");
      })) :
      h("li", {}, `${special.date}: ${(model.dayTypes.find((d) => d.id === special.dayType) || {}).name}`));
    const card = h("section", { class: "card", "aria-labelledby": "tou-daytypes-title" },
      h("h3", { id: "tou-daytypes-title" }, "Day types, the week and special days"),
      editable ? h("div", { class: "rows" }, typeRows) : h("ul", {}, typeRows),
      editable && h("button", { type: "button", class: "quiet", id: "add-daytype", onclick: () => {
        const dayType = { id: uid("d"), name: `day type ${model.dayTypes.length + 1}` };
        model.dayTypes.push(dayType);
        redraw(`daytype-${dayType.id}`);
      } }, "Add day type"),
      week,
      h("h4", {}, "Special days"),
      h("p", { class: "muted" }, "Public holidays and the like: the head-end bills them as their day type; a meter's own table runs its ordinary weekday or weekend."),
      specials.length ? (editable ? h("div", { class: "rows" }, specials) : h("ul", {}, specials)) :
        h("p", { class: "muted" }, "None."),
      editable && h("button", { type: "button", class: "quiet", id: "add-special", onclick: () => {
        const special = { id: uid("x"), date: "", dayType: model.dayTypes[model.dayTypes.length - 1].id };
        model.specials.push(special);
        redraw(`special-${special.id}-date`);
      } }, "Add special day"));
    sections.week = card;
    sections.specials = card;
    return card;
  }

  function pairEditor(season, dayType) {
    const profile = profileOf(model, season, dayType);
    const key = pairKey(season, dayType);
    const title = `${season.name} · ${dayType.name}`;
    let drawn = strip(model, profile.points, title);
    const redrawStrip = () => {
      const fresh = strip(model, profile.points, `${season.name} · ${dayType.name}`);
      drawn.replaceWith(fresh);
      drawn = fresh;
    };
    stripRedrawers.push(redrawStrip);
    const bandOptions = model.bands.map((b) => [b.id, b.name]);
    const rows = profile.points.map((point, i) => {
      const base = `pt-${point.id}`;
      return editable ? h("div", { class: "row", id: `${base}-row` },
        h("label", { for: `${base}-time` }, h("span", { class: "sr-only" }, `Switch ${i + 1} `), "starts at",
          (() => {
            const input = h("input", { id: `${base}-time`, type: "time", value: point.time, required: true });
            input.addEventListener("input", () => { point.time = input.value; redrawStrip(); });
            return input;
          })()),
        h("label", { for: `${base}-band` }, h("span", { class: "sr-only" }, `Switch ${i + 1} `), "band",
          select(`${base}-band`, bandOptions, point.band, (value) => { point.band = value; redrawStrip(); })),
        removeButton(`switch ${i + 1}`, () => {
          profile.points.splice(i, 1);
          redraw(`add-${key}`);
        }, profile.points.length <= 1)) :
        h("li", {}, `${point.time} ${(model.bands.find((b) => b.id === point.band) || {}).name}`);
    });
    const box = h("fieldset", { class: "pair", id: `pair-${key}` },
      h("legend", {}, h("span", { dataset: { pairTitle: key } }, title),
        h("span", { class: "muted" }, ` (${daysOf(model, dayType)})`)),
      drawn,
      editable ? h("div", { class: "rows" }, rows) : h("ul", { class: "points" }, rows),
      editable && h("button", { type: "button", class: "quiet", id: `add-${key}`, disabled: profile.points.length >= MAX_POINTS,
        onclick: () => {
          const last = profile.points[profile.points.length - 1];
          const next = last && minutes(last.time) !== null ? Math.min(minutes(last.time) + 60, 1439) : 0;
          const point = { id: uid("p"), time: clock(next), band: model.bands[0].id };
          profile.points.push(point);
          redraw(`pt-${point.id}-time`);
        } }, "Add switch point", h("span", { class: "sr-only" }, ` to ${title}`)));
    sections[`pair-${key}`] = box;
    return box;
  }

  function profilesCard() {
    const used = usedTypes(model);
    const card = h("section", { class: "card", "aria-labelledby": "tou-profiles-title" },
      h("h3", { id: "tou-profiles-title" }, "Bands through the day"),
      h("p", { class: "muted" }, "Each switch point starts a band, in local time; before a day's first one, its last band is in force. A meter holds 8 switch points a day, and one table for Monday to Friday and one for the weekend."),
      bandLegend(),
      model.seasons.map((season) => {
        const box = h("div", { class: "season", id: `season-${season.id}` },
          h("h4", { dataset: { seasonTitle: season.id } }, `${season.name} (${season.start || "?"} to ${season.end || "?"})`),
          h("div", { class: "pairs" }, model.dayTypes.filter((d) => used.has(d.id)).map((d) => pairEditor(season, d))));
        return box;
      }));
    sections.profiles = card;
    return card;
  }

  // Where an API problem belongs (see headend/calendar.py for the paths).
  function resolve(path, detail) {
    const byId = (id) => document.getElementById(id);
    let m;
    if (path === "zone") return byId("tou-zone");
    if ((m = /^bands\[(\d+)\]/.exec(path)) && model.bands[m[1]]) return byId(`band-${model.bands[m[1]].id}`);
    if (path.startsWith("bands")) return sections.bands;
    if ((m = /^seasons\[(\d+)\]\.?(name|start|end)?/.exec(path)) && model.seasons[m[1]]) {
      const season = model.seasons[m[1]];
      return byId(m[2] ? `season-${season.id}-${m[2]}` : `season-row-${season.id}`);
    }
    if (path.startsWith("seasons")) return sections.seasons;
    if ((m = /^week\[(\d+)\]/.exec(path))) return byId(`week-${m[1]}`);
    if (path.startsWith("week")) return sections.week;
    if ((m = /^special_days\[(['"])(.*)\1\]/.exec(path))) {
      const special = model.specials.find((s) => s.date.trim() === m[2]);
      return special ? byId(`special-${special.id}-date`) : sections.specials;
    }
    if ((m = /^profiles\[(['"])(.*)\1\](?:\[(\d+)\])?/.exec(path)) && owners[m[2]]) {
      const pairs = owners[m[2]];
      for (const key of pairs.slice(1)) markProblem(sections[`pair-${key}`], detail.slice(path.length + 2));
      const profile = model.profiles[pairs[0]];
      if (m[3] !== undefined && profile && profile.points[m[3]]) return byId(`pt-${profile.points[m[3]].id}-time`);
      return sections[`pair-${pairs[0]}`];
    }
    const named = (m = /season '([^']+)'/.exec(detail)) && model.seasons.find((x) => x.name === m[1]);
    if (named) return byId(`season-${named.id}`);
    if ((m = /profile '([^']+)'/.exec(detail)) && owners[m[1]]) return sections[`pair-${owners[m[1]][0]}`];
    if ((m = /band '([^']+)'/.exec(detail))) return sections.bands;
    return null;
  }

  async function save(event) {
    const button = event.currentTarget;
    button.disabled = true;
    clear(status);
    clear(problems);
    clearProblems(root);
    try {
      const made = onSave((name, version) => {
        const out = toCalendar(model, name, version);
        owners = out.owners;
        return { calendar: out.calendar };
      });
      await made;
    } catch (error) {
      showProblems(root, problems, error, resolve);
      problems.querySelector("[role=alert]")?.scrollIntoView({ block: "nearest" });
    } finally {
      button.disabled = false;
    }
  }

  redraw();
  return { node: root, status };
}

// -- step editor ----------------------------------------------------------------------------

export function stepModel(body) {
  return {
    currency: body.currency || "",
    blocks: (body.blocks || []).map((b) => ({ id: uid("k"), upper: b.upper_kwh === null || b.upper_kwh === undefined ? "" : String(b.upper_kwh),
      price: major(b.price_minor_per_kwh) })),
    fixed: major(String(body.fixed_charge_minor ?? 0)),
    tax: shift(String(body.tax_rate ?? "0"), 2),
    fbe: String(body.fbe_kwh ?? 0),
  };
}

const wholeOrText = (text) => (/^\d+$/.test(String(text).trim()) ? Number(text) : String(text).trim());

export function stepBody(model) {
  return {
    currency: model.currency.trim(),
    blocks: model.blocks.map((b) => ({
      upper_kwh: b.upper.trim() === "" ? null : wholeOrText(b.upper),
      price_minor_per_kwh: shift(b.price, 2),
    })),
    fixed_charge_minor: wholeOrText(shift(model.fixed || "0", 2)),
    tax_rate: shift(model.tax || "0", -2),
    fbe_kwh: wholeOrText(model.fbe || "0"),
  };
}

function stepEditor(model, { editable, onSave, saveLabel }) {
  const root = h("div", { class: "step-editor" });
  const problems = h("div");
  const status = h("p", { role: "status", class: "muted" });

  const input = (id, label, value, onInput, attrs = {}) => {
    const node = h("input", { id, value, ...attrs });
    node.addEventListener("input", () => onInput(node.value));
    return h("label", { for: id }, label, node);
  };

  function redraw(focusId = null) {
    const active = focusId || (document.activeElement && root.contains(document.activeElement) ? document.activeElement.id : null);
    const currency = model.currency || "minor";
    const blocks = editable ? h("div", { class: "rows", id: "step-blocks" }, model.blocks.map((block, i) => {
      const last = i === model.blocks.length - 1;
      return h("div", { class: "row", id: `block-${block.id}` },
        h("span", { class: "block-no" }, `Block ${i + 1}`),
        input(`block-${block.id}-upper`, last ? "Up to kWh this month (blank: no limit)" : "Up to kWh this month",
          block.upper, (v) => { block.upper = v; }, { inputmode: "numeric", size: 8 }),
        input(`block-${block.id}-price`, `Price per kWh (${currency}, before tax)`, block.price,
          (v) => { block.price = v; }, { inputmode: "decimal", size: 8 }),
        h("button", { type: "button", class: "quiet", disabled: model.blocks.length <= 1, onclick: () => {
          model.blocks.splice(i, 1);
          redraw("add-block");
        } }, "Remove", h("span", { class: "sr-only" }, ` block ${i + 1}`)));
    })) : h("table", {}, h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Block"), h("th", { scope: "col", class: "num" }, "Up to kWh this month"),
      h("th", { scope: "col", class: "num" }, `Price per kWh (${currency}, before tax)`))),
    h("tbody", {}, model.blocks.map((block, i) => h("tr", {}, h("td", {}, String(i + 1)),
      h("td", { class: "num" }, block.upper || "no limit"), h("td", { class: "num" }, block.price)))));
    clear(root,
      editable ? problems : null,
      h("section", { class: "card", "aria-labelledby": "step-blocks-title", id: "step-blocks-card" },
        h("h3", { id: "step-blocks-title" }, "Blocks"),
        h("p", { class: "muted" }, "Energy bought in a calendar month, block by block; the last block has no upper limit."),
        blocks,
        editable && h("button", { type: "button", class: "quiet", id: "add-block", onclick: () => {
          const block = { id: uid("k"), upper: "", price: "" };
          model.blocks.splice(Math.max(model.blocks.length - 1, 0), 0, block);
          redraw(`block-${block.id}-upper`);
        } }, "Add block")),
      h("section", { class: "card", "aria-labelledby": "step-charges-title" },
        h("h3", { id: "step-charges-title" }, "Charges"),
        editable ? h("div", { class: "row" },
          input("step-currency", "Currency (ISO 4217)", model.currency, (v) => { model.currency = v; }, { size: 4, maxlength: 3 }),
          input("step-fixed", `Fixed charge a month (${currency}, before tax)`, model.fixed, (v) => { model.fixed = v; }, { inputmode: "decimal", size: 8 }),
          input("step-tax", "VAT (%)", model.tax, (v) => { model.tax = v; }, { inputmode: "decimal", size: 5 }),
          input("step-fbe", "Free basic electricity (kWh a month)", model.fbe, (v) => { model.fbe = v; }, { inputmode: "numeric", size: 5 })) :
          facts([["Currency", model.currency], ["Fixed charge a month", `${currency} ${model.fixed}`],
            ["VAT", `${model.tax} %`], ["Free basic electricity", `${model.fbe} kWh a month`]])),
      editable && h("div", { class: "actions" },
        h("button", { type: "button", id: "step-save", onclick: save }, saveLabel()), status));
    const target = active && document.getElementById(active);
    if (target) target.focus();
  }

  function resolve(path) {
    const byId = (id) => document.getElementById(id);
    let m;
    if ((m = /^blocks\[(\d+)\]\.?(upper_kwh|price_minor_per_kwh)?/.exec(path)) && model.blocks[m[1]]) {
      const block = model.blocks[m[1]];
      if (!m[2]) return byId(`block-${block.id}`);
      return byId(`block-${block.id}-${m[2] === "upper_kwh" ? "upper" : "price"}`);
    }
    if (path.startsWith("blocks")) return byId("step-blocks-card");
    return { currency: byId("step-currency"), fixed_charge_minor: byId("step-fixed"), tax_rate: byId("step-tax"),
      fbe_kwh: byId("step-fbe") }[path] || null;
  }

  async function save(event) {
    const button = event.currentTarget;
    button.disabled = true;
    clear(status);
    clear(problems);
    clearProblems(root);
    try {
      await onSave(() => stepBody(model));
    } catch (error) {
      showProblems(root, problems, error, resolve);
    } finally {
      button.disabled = false;
    }
  }

  redraw();
  return { node: root, status };
}

// -- the page -------------------------------------------------------------------------------

function rolloutText(rollout) {
  if (!rollout || !rollout.meters) return "not pushed";
  const states = ROLLOUT_STATES.filter((s) => rollout.states[s]).map((s) => `${rollout.states[s]} ${s}`);
  return `${rollout.meters} meters: ${states.join(", ")}`;
}

function datetimeLocal(epoch) {
  const d = new Date(epoch * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export async function render(view, ctx) {
  const { api } = ctx;
  const id = encodeURIComponent(ctx.params.id);
  const editable = ctx.can("tariffs");
  let tariff = await api.get(`/tariffs/${id}`);
  const wanted = ctx.query.get("version");
  let shown = wanted && Number(wanted) !== tariff.current_version ?
    await api.get(`/tariffs/${id}/versions/${encodeURIComponent(wanted)}`) :
    { version: tariff.current_version, body: tariff.body, current: true };
  const tou = tariff.kind === "tou";
  let stopPolling = null;

  const heading = h("h1", {}, `Tariff ${tariff.name}`);
  const about = h("div", { class: "card" });
  const note = h("div");
  const versions = pagedTable({
    caption: "Every version of this tariff, newest first",
    columns: [
      { label: "Version", value: (v) => h("span", {}, h("a", { href: `#/tariffs/${id}?version=${v.version}` }, `Version ${v.version}`),
        v.current ? " " : null, v.current ? badge("current", "active") : null) },
      { label: "Made", value: (v) => fmtTime(v.created_at) },
      { label: "By", value: (v) => v.created_by },
      { label: "Activation", value: (v) => (v.activation_at ? fmtTime(v.activation_at) : "at once") },
      tou && { label: "Rollout", value: (v) => rolloutText(v.rollout) },
    ].filter(Boolean),
    load: (params) => api.get(`/tariffs/${id}/versions`, params),
  });

  function drawAbout() {
    clear(about, facts([
      ["Kind", tou ? "time of use (TOU): the table the meters count bands by" : "step: what a sale costs"],
      ["Current version", `${tariff.current_version}`],
      [tou ? "Meters on it" : "Accounts on it", `${tariff.accounts} (open accounts${tou ? "; a push reaches their meters" : ""})`],
      ["Now", summary(tariff)],
    ]));
    clear(note, shown.current ? null : h("p", { class: "notice", role: "note" },
      `You are looking at version ${shown.version}, not the current one (${tariff.current_version}). `,
      editable ? `Saving makes version ${tariff.current_version + 1} from it${tou ? `; pushing sends version ${shown.version}` : ""}. ` : "",
      h("a", { href: `#/tariffs/${id}` }, "Show the current version")));
  }

  const saveLabel = () => `Save as version ${tariff.current_version + 1}`;
  async function onSave(makeBody) {
    const body = makeBody(tariff.name, tariff.current_version + 1);
    tariff = await api.post(`/tariffs/${id}/versions`, { body, activation_at: Date.now() / 1000 });
    tariff.accounts = tariff.accounts ?? (await api.get(`/tariffs/${id}`)).accounts;
    shown = { version: tariff.current_version, body: tariff.body, current: true };
    if (ctx.query.get("version")) history.replaceState(null, "", `#/tariffs/${id}`);
    drawAbout();
    drawEditor();
    editor.status.textContent = `Saved as version ${tariff.current_version}.`;
    document.getElementById(tou ? "tou-save" : "step-save")?.focus();
    toast(`${tariff.name}: version ${tariff.current_version} saved`);
    versions.reload();
    if (tou) showRollout(tariff.current_version);
  }

  const editorBox = h("div");
  let editor = null;
  function drawEditor() {
    editor = tou ?
      touEditor(touModel(shown.body), { editable, onSave, saveLabel }) :
      stepEditor(stepModel(shown.body), { editable, onSave, saveLabel });
    const converted = tou && !(shown.body && shown.body.calendar);
    clear(editorBox,
      converted && h("p", { class: "notice" }, `Version ${shown.version} is a bare meter table (weekday and weekend, bands by number). `,
        editable ? "It is shown as a calendar with one season; saving stores a calendar (set its time zone)." : "It is shown as a calendar with one season."),
      editor.node);
  }

  // -- push and rollout (TOU) --
  const rolloutBox = h("div");
  let rolloutVersion = shown.version;
  const summaryLine = h("p", { "aria-live": "polite", class: "rollout-summary" });
  const tiles = h("div", { class: "grid" });
  const meters = pagedTable({
    caption: "The rollout meter by meter",
    empty: "No meter: this version has not been pushed.",
    columns: [
      { label: "Meter", value: (r) => h("a", { href: `#/meters/${encodeURIComponent(r.meter_id)}` }, r.meter_id) },
      { label: "Rollout", value: (r) => badge(r.state, r.state === "confirmed" ? "ok" : r.state) },
      { label: "Command", value: (r) => (r.command_state ? badge(r.command_state) : "–") },
      { label: "Detail", value: (r) => r.detail || "" },
      { label: "Confirmed", value: (r) => (r.confirmed_at ? fmtTime(r.confirmed_at) : "–") },
    ],
    load: (params) => api.get(`/tariffs/${id}/rollout/meters`, { version: rolloutVersion, ...params }),
  });
  const meterFilter = filterForm([{ name: "state", label: "Rollout state", type: "select",
    options: [["", "Any"], ...ROLLOUT_STATES.map((s) => [s, s])] }], (values) => meters.reload(values));
  const rolloutHeading = h("h3", {});
  const rolloutProblem = h("div");

  function tile(label, value, kind) {
    return h("div", { class: "tile" }, h("div", { class: "label" }, label), h("div", { class: `value ${kind || ""}` }, String(value)));
  }

  async function refreshRollout() {
    let rollout;
    try {
      rollout = await api.get(`/tariffs/${id}/rollout`, { version: rolloutVersion });
    } catch (error) {
      clear(rolloutProblem, errorBox(error));
      return null;
    }
    clear(rolloutProblem);
    const { confirmed, refused, pending } = heaps(rollout);
    clear(tiles, tile("Meters", rollout.meters), tile("Confirmed", confirmed, "ok"),
      tile("Pending", pending, "pending"), tile("Rejected, failed or expired", refused, refused ? "bad" : ""));
    summaryLine.textContent = rollout.meters ?
      `Version ${rollout.version} pushed to ${rollout.meters} meters: ${confirmed} confirmed, ` +
      `${pending} pending, ${refused} rejected, failed or expired.` +
      (pending ? " Updating as meters answer…" : "") :
      `Version ${rollout.version} has not been pushed.`;
    meters.reload();
    return rollout;
  }

  function watch() {
    if (stopPolling) stopPolling();
    let stop = null;
    stop = poll(async () => {
      const rollout = await refreshRollout();
      if (rollout && !heaps(rollout).pending && stop) {
        stop();
        if (stopPolling === stop) stopPolling = null;
        versions.reload();
      }
    }, 3000);
    stopPolling = stop;
  }

  function showRollout(version) {
    rolloutVersion = version;
    rolloutHeading.textContent = `Rollout of version ${version}`;
    drawPush();
    watch();
  }

  const pushBox = h("div");
  function drawPush() {
    if (!editable) return;
    const problems = h("div");
    const activation = h("input", { id: "push-activation", type: "datetime-local", required: true,
      value: datetimeLocal(Date.now() / 1000) });
    const group = h("input", { id: "push-group", autocomplete: "off" });
    const button = h("button", { type: "submit", id: "push" }, `Push version ${rolloutVersion}`);
    const form = h("form", { class: "card", "aria-labelledby": "push-title", onsubmit: async (event) => {
      event.preventDefault();
      clear(problems);
      clearProblems(form);
      const at = new Date(activation.value).getTime() / 1000;
      if (!Number.isFinite(at)) {
        markProblem(activation, "give the date and time the meters switch to the new table");
        return;
      }
      const target = group.value.trim() ? `the meters of group ${group.value.trim()}` :
        `the ${tariff.accounts} meters of open accounts on ${tariff.name}`;
      const yes = await confirmDialog(`Push version ${rolloutVersion}?`,
        `Version ${rolloutVersion} of ${tariff.name} goes to ${target}, one TOU table command each; ` +
        `they switch to it at ${fmtTime(at)}.`, { confirm: "Push" });
      if (yes === null) return;
      button.disabled = true;
      try {
        const body = { version: rolloutVersion, activation_at: at };
        if (group.value.trim()) body.group = group.value.trim();
        const result = await api.post(`/tariffs/${id}/push`, body);
        toast(`Version ${result.version} pushed to ${result.meters} meters`);
        watch();
      } catch (error) {
        showProblems(form, problems, error, (path) => (path === "activation_at" ? activation :
          path === "group" ? group : null));
      } finally {
        button.disabled = false;
      }
    } },
    h("h3", { id: "push-title" }, `Push version ${rolloutVersion} to the meters`),
    h("p", { class: "muted" }, `By default to the ${tariff.accounts} meters of open accounts on this tariff; or to a meter group. ` +
      "A meter takes the weekday and weekend table of the season in force on the activation date."),
    problems,
    h("div", { class: "row" },
      h("label", { for: "push-activation" }, "Activation (your local time)", activation),
      h("label", { for: "push-group" }, "Meter group (optional)", group),
      button));
    clear(pushBox, form);
  }

  if (tou) {
    clear(rolloutBox, pushBox, rolloutHeading, rolloutProblem, summaryLine, tiles, meterFilter.node, meters.node);
  }

  drawAbout();
  drawEditor();
  view.append(h("div", { class: "tf" }, heading, about, note, tabs([
    { id: "editor", label: tou ? "Calendar" : "Prices", render: (panel) => panel.append(editorBox) },
    { id: "versions", label: "Versions", render: (panel) => { panel.append(versions.node); versions.reload(); } },
    tou && { id: "rollout", label: "Push and rollout", render: (panel) => panel.append(rolloutBox) },
  ].filter(Boolean), ["versions", tou && "rollout"].includes(ctx.query.get("tab")) ? ctx.query.get("tab") : "editor")));
  if (tou) showRollout(shown.version);

  return () => { if (stopPolling) stopPolling(); };
}
