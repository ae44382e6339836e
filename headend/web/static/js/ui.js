// Small DOM helpers the pages share: an element builder, formatting, a paginated table, filters,
// a confirmation dialog, notices and polling.

import { ApiError } from "./api.js";

// h("a", {href: "#/x", class: "tile"}, "text", child...). Attributes starting with "on" are event
// listeners; `hidden`, `disabled` etc. take booleans; null/false children are skipped.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

// -- formatting -----------------------------------------------------------------------------

export function fmtTime(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  return new Date(epoch * 1000).toLocaleString("en-GB", {
    year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit",
  });
}

export function fmtAgo(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

export function fmtMoney(minor, currency = "") {
  if (minor === null || minor === undefined) return "–";
  const value = (Number(minor) / 100).toLocaleString("en-GB", {
    minimumFractionDigits: 2, maximumFractionDigits: 2,
  });
  return currency ? `${currency} ${value}` : value;
}

export function fmtKwh(wh, digits = 1) {
  if (wh === null || wh === undefined) return "–";
  return `${(Number(wh) / 1000).toLocaleString("en-GB", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  })} kWh`;
}

export function fmtPercent(ratio) {
  if (ratio === null || ratio === undefined) return "–";
  return `${(ratio * 100).toFixed(1)} %`;
}

// 20 digits as five groups of four, the way a customer types them.
export function groupToken(digits) {
  return String(digits).replace(/\s+/g, "").replace(/(\d{4})(?=\d)/g, "$1 ");
}

export function badge(text, kind = text) {
  return h("span", { class: `badge ${String(kind || "").replace(/[^a-z0-9_-]/gi, "")}` }, text ?? "–");
}

// -- notices --------------------------------------------------------------------------------

export function toast(message, kind = "") {
  const box = document.getElementById("toasts");
  const note = h("div", { class: `toast ${kind}` }, message);
  box.append(note);
  setTimeout(() => note.remove(), 6000);
}

// An inline error where the action happened (role=alert is read out by screen readers).
export function errorBox(error) {
  const text = error instanceof ApiError ? error.text : String(error && error.message || error);
  return h("p", { role: "alert" }, text);
}

// Runs an action for a button: disabled while it runs, the error shown beside it.
export async function act(button, slot, action) {
  button.disabled = true;
  clear(slot);
  try {
    return await action();
  } catch (error) {
    clear(slot, errorBox(error));
    return undefined;
  } finally {
    button.disabled = false;
  }
}

// -- dialogs --------------------------------------------------------------------------------

// Asks before an action that changes something in the field. Resolves to the comment (or "") when
// confirmed, null when cancelled. With {comment: "Reason"} a text field is asked for as well.
export function confirmDialog(title, message, { confirm = "Confirm", comment = null, danger = false,
  required = false } = {}) {
  return new Promise((resolve) => {
    const note = comment ? h("textarea", { id: "dialog-comment", name: "comment" }) : null;
    const warning = h("p", { class: "error", role: "alert", hidden: true }, `${comment} is required`);
    const dialog = h("dialog", { "aria-labelledby": "dialog-title" },
      h("h2", { id: "dialog-title" }, title),
      h("p", {}, message),
      note && h("label", { for: "dialog-comment" }, comment, note),
      warning,
      h("div", { class: "actions" },
        h("button", { type: "button", class: danger ? "danger" : "", onclick: () => {
          const text = note ? note.value.trim() : "";
          if (required && !text) { warning.hidden = false; note.focus(); return; }
          finish(text);
        } }, confirm),
        h("button", { type: "button", class: "quiet", onclick: () => finish(null) }, "Cancel")));
    function finish(value) {
      dialog.close();
      dialog.remove();
      resolve(value);
    }
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); finish(null); });
    document.body.append(dialog);
    dialog.showModal();
    (note || dialog.querySelector("button")).focus();
  });
}

// -- lists ----------------------------------------------------------------------------------

// A server-paginated table. `load(params)` gets {limit, offset, ...filters} and returns the API's
// {items, total}. columns: [{label, value: item => text|Node, num?: bool}]. `link(item)` makes a
// row open a page. Returns {node, reload(filters)}.
export function pagedTable({ columns, load, link = null, pageSize = 25, caption = null,
  empty = "Nothing to show." }) {
  const state = { offset: 0, filters: {} };
  const body = h("tbody");
  const count = h("span", { class: "count", "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "quiet", onclick: () => go(-1) }, "Previous");
  const next = h("button", { type: "button", class: "quiet", onclick: () => go(1) }, "Next");
  const problem = h("div");
  const table = h("table", {},
    caption && h("caption", { class: "muted" }, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : "" }, c.label)))),
    body);
  const node = h("div", { class: "paged" }, problem, table, h("div", { class: "pager" }, prev, next, count));

  async function refresh() {
    clear(problem);
    let page;
    try {
      page = await load({ limit: pageSize, offset: state.offset, ...state.filters });
    } catch (error) {
      clear(problem, errorBox(error));
      return;
    }
    clear(body, page.items.length ? page.items.map(row) :
      h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
    const last = Math.min(state.offset + page.items.length, page.total);
    count.textContent = page.total ? `${state.offset + 1}–${last} of ${page.total}` : "0 of 0";
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + pageSize >= page.total;
  }

  function row(item) {
    const href = link ? link(item) : null;
    const cells = columns.map((c, i) => {
      let value = c.value(item);
      if (href && i === 0 && !(value instanceof Node)) value = h("a", { href }, value ?? "–");
      return h("td", { class: c.num ? "num" : "" }, value ?? "–");
    });
    const tr = h("tr", { class: href ? "clickable" : "" }, cells);
    if (href) {
      tr.addEventListener("click", (event) => {
        if (!event.target.closest("a,button,input,select")) location.hash = href;
      });
    }
    return tr;
  }

  function go(step) {
    state.offset = Math.max(0, state.offset + step * pageSize);
    refresh();
  }

  return {
    node,
    reload(filters) {
      if (filters !== undefined) {
        state.filters = filters;
        state.offset = 0;
      }
      return refresh();
    },
  };
}

// A filter form. fields: [{name, label, type: "text"|"select", options: [[value, label]]}].
// onChange(values) is called on submit and when a select changes.
export function filterForm(fields, onChange, initial = {}) {
  const inputs = {};
  const form = h("form", { class: "filters", role: "search", onsubmit: (event) => {
    event.preventDefault();
    onChange(values());
  } });
  for (const field of fields) {
    const id = `filter-${field.name}`;
    let input;
    if (field.type === "select") {
      input = h("select", { id, name: field.name, onchange: () => onChange(values()) },
        field.options.map(([value, text]) => h("option", { value }, text)));
    } else {
      input = h("input", { id, name: field.name, type: field.type || "search",
        placeholder: field.placeholder || "" });
    }
    if (initial[field.name] !== undefined) input.value = initial[field.name];
    inputs[field.name] = input;
    form.append(h("label", { for: id }, field.label, input));
  }
  form.append(h("button", { type: "submit" }, "Filter"));
  function values() {
    return Object.fromEntries(Object.entries(inputs).map(([k, input]) => [k, input.value.trim()]));
  }
  return { node: form, values };
}

// Key facts as a definition list: [[label, value], ...].
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([label, value]) => [h("dt", {}, label), h("dd", {}, value ?? "–")]));
}

// Tabs with proper roles; panels are rendered on selection. tabs: [{id, label, render(panel)}].
export function tabs(list, initial = list[0].id) {
  const bar = h("div", { class: "tabs", role: "tablist" });
  const panel = h("div", { role: "tabpanel", tabindex: "0" });
  const buttons = list.map((tab) => h("button", { type: "button", role: "tab", id: `tab-${tab.id}`,
    "aria-selected": "false", onclick: () => select(tab.id) }, tab.label));
  bar.append(...buttons);
  bar.addEventListener("keydown", (event) => {
    const index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (step) {
      const target = buttons[(index + step + buttons.length) % buttons.length];
      target.focus();
      target.click();
    }
  });
  function select(id) {
    list.forEach((tab, i) => buttons[i].setAttribute("aria-selected", String(tab.id === id)));
    panel.setAttribute("aria-labelledby", `tab-${id}`);
    clear(panel);
    list.find((tab) => tab.id === id).render(panel);
  }
  select(initial);
  return h("div", {}, bar, panel);
}

// Calls fn now and every `ms` until the returned stop() is called (pages stop it when left).
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  async function tick() {
    if (stopped) return;
    try { await fn(); } catch (error) { /* the page shows its own errors */ }
    if (!stopped) timer = setTimeout(tick, ms);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

export function epochDaysAgo(days) {
  return Math.floor(Date.now() / 1000 - days * 86400);
}

export function startOfToday() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return Math.floor(d.getTime() / 1000);
}
