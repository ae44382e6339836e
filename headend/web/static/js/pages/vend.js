// Vend: find the customer or the meter, price the sale through the account's tariff, issue the
// token (#/vend); a vend's own page (#/vends/:id) shows the token in groups of four, a printable
// receipt, and the token's way to the meter as it happens, with reprint and cancel.
//
// A sale is priced first (POST /vends/quote, nothing stored) so the cashier and the customer see
// every line before money changes hands. The sale then sends exactly the quoted body with an
// idempotency key made for that attempt: a double click, or a retry after a lost answer, returns
// the first vend instead of selling twice.

import {
  act, badge, clear, confirmDialog, errorBox, facts, filterForm, fmtKwh, fmtMoney, fmtTime,
  groupToken, h, pagedTable, poll, toast,
} from "../ui.js";

export async function render(view, ctx) {
  return ctx.params.id === undefined ? renderSale(view, ctx) : renderVend(view, ctx);
}

// -- what the person reads -------------------------------------------------------------------

const FINAL = new Set(["applied", "rejected", "failed", "expired", "cancelled", "superseded"]);
const STEPS = ["queued", "sent", "received", "applied"];
const KEYPAD = "give the token to the customer to type in on the meter's keypad";

// One plain sentence for where the token is; `keypad` when the customer must type it in.
function deliveryText(vend) {
  const d = vend.delivery;
  if (vend.status === "cancelled") {
    return { state: "cancelled", keypad: false,
      text: "The sale was cancelled: the token was never sent to the meter." };
  }
  if (!d) {
    return { state: "keypad", keypad: true,
      text: `Not sent to the meter (this sale has no remote delivery): ${KEYPAD}.` };
  }
  // the head-end appends its own keypad advice to the detail; the page says it in its own words
  const detail = (d.detail || "").replace(/;?\s*give the token to the customer.*$/i, "").trim();
  const code = d.code !== null && d.code !== undefined ? ` (code ${d.code})` : "";
  if (d.fallback === "keypad") {
    return { state: "keypad", keypad: true,
      text: `The token did not reach the meter${detail ? ` (${detail})` : ""}: ${KEYPAD}.` };
  }
  const texts = {
    queued: "Waiting to be sent to the meter's gateway.",
    sent: "Sent to the gateway; waiting for it to reach the meter.",
    received: "The gateway has the token and is entering it into the meter.",
    applied: "Applied: the meter accepted the token and its credit has gone up.",
    rejected: `Rejected by the meter: ${detail || "no reason given"}${code}.`,
    failed: `Could not be delivered${detail ? `: ${detail}` : ""}.`,
    expired: "Not delivered in time.",
    cancelled: "Cancelled before it was sent.",
    superseded: "Replaced by a later command.",
  };
  return { state: d.state, keypad: false, text: texts[d.state] || `State: ${d.state}.` };
}

function kindLabel(kind) {
  return { debt: "Debt recovery", fixed_charge: "Fixed charge", fbe: "Free basic electricity",
    energy: "Energy" }[kind] || kind;
}

// The breakdown of a quote or a receipt: every line, then the totals.
function breakdown(r, { caption = "Tariff breakdown" } = {}) {
  const money = (minor) => fmtMoney(minor, r.currency);
  return h("div", { class: "breakdown" },
    h("table", {},
      h("caption", { class: "muted" }, caption),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Item"), h("th", { scope: "col", class: "num" }, "Quantity"),
        h("th", { scope: "col", class: "num" }, "Net"), h("th", { scope: "col", class: "num" }, "Tax"),
        h("th", { scope: "col", class: "num" }, "Amount"))),
      h("tbody", {}, r.lines.map((line) => h("tr", { class: `line-${line.kind}` },
        h("td", {}, h("strong", {}, kindLabel(line.kind)), h("br"), h("span", { class: "muted" }, line.description)),
        h("td", { class: "num" }, line.quantity_wh === null ? "–" : fmtKwh(line.quantity_wh)),
        h("td", { class: "num" }, money(line.net_minor)),
        h("td", { class: "num" }, money(line.tax_minor)),
        h("td", { class: "num" }, money(line.amount_minor))))),
      h("tfoot", {}, h("tr", {},
        h("th", { scope: "row", colspan: 4 }, "Total"),
        h("td", { class: "num total" }, money(r.total_minor))))),
    facts([
      ["Tendered", money(r.tendered_minor)],
      ["Total (tax included)", money(r.total_minor)],
      ["of which tax", money(r.tax_minor)],
      ["Change", money(r.change_minor)],
      ["Energy for the meter", fmtKwh(r.energy_wh)],
      ["of which free basic electricity", fmtKwh(r.fbe_wh)],
      ["Debt left after this sale", money(r.debt_remaining_minor)],
    ]),
    r.notes && r.notes.length ? h("ul", { class: "notes muted" }, r.notes.map((n) => h("li", {}, n))) : null);
}

// -- parsing amounts without floating point ------------------------------------------------------

// "50", "50.5", "50.50" -> 5050; null when it is not an amount of money.
export function toMinor(text) {
  const m = /^\s*(\d{1,7})(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!m) return null;
  const minor = Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
  return minor > 0 ? minor : null;
}

// "12", "12.5", "0.125" kWh -> Wh; null when it is not an amount of energy.
export function toWh(text) {
  const m = /^\s*(\d{1,6})(?:[.,](\d{1,3}))?\s*$/.exec(text);
  if (!m) return null;
  const wh = Number(m[1]) * 1000 + Number((m[2] || "").padEnd(3, "0"));
  return wh > 0 ? wh : null;
}

function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes); // works on plain http too, unlike crypto.randomUUID
  return "ui-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- #/vend ------------------------------------------------------------------------------------

async function renderSale(view, ctx) {
  const { api } = ctx;
  const state = { chosen: null, quote: null, body: null, key: null };

  // 1. who is buying
  const search = h("input", { id: "vend-search", name: "q", type: "search", autocomplete: "off",
    placeholder: "meter number, name or phone", required: true });
  const found = h("div", { class: "found", "aria-live": "polite" });
  const findButton = h("button", { type: "submit" }, "Find");
  const finder = h("form", { class: "finder", role: "search", onsubmit: (event) => {
    event.preventDefault();
    act(findButton, found, () => find(search.value.trim()));
  } },
  h("label", { for: "vend-search" }, "Meter number, customer name or phone", search), findButton);
  const chosenBox = h("div", { "aria-live": "polite" });
  const who = h("section", { class: "card tight", "aria-labelledby": "vend-who" },
    h("h2", { id: "vend-who" }, "1. Customer or meter"), finder, found, chosenBox);

  // 2. how much
  const byMoney = h("input", { type: "radio", id: "vend-by-money", name: "by", value: "money", checked: true });
  const byEnergy = h("input", { type: "radio", id: "vend-by-energy", name: "by", value: "energy" });
  const amountLabelText = h("span", {}, "Amount (money)");
  const amount = h("input", { id: "vend-amount", name: "amount", inputmode: "decimal", autocomplete: "off",
    required: true, "aria-describedby": "vend-amount-hint" });
  const hint = h("span", { id: "vend-amount-hint", class: "muted hint" }, "in major units, e.g. 50.00");
  const priceButton = h("button", { type: "submit" }, "Show breakdown");
  const quoteBox = h("div", { class: "quote", "aria-live": "polite" });
  const issueButton = h("button", { type: "button", hidden: true, onclick: issue }, "Issue token");
  const issueSlot = h("div");
  const amountForm = h("form", { class: "amount", onsubmit: (event) => {
    event.preventDefault();
    act(priceButton, quoteBox, price);
  } },
  h("fieldset", { class: "by" }, h("legend", {}, "Sell by"),
    h("label", { for: "vend-by-money", class: "inline" }, byMoney, " Money"),
    h("label", { for: "vend-by-energy", class: "inline" }, byEnergy, " Energy (kWh)")),
  h("label", { for: "vend-amount" }, amountLabelText, amount), hint,
  h("div", { class: "actions" }, priceButton));
  const how = h("section", { class: "card tight", "aria-labelledby": "vend-how", hidden: true },
    h("h2", { id: "vend-how" }, "2. Amount and breakdown"), amountForm, quoteBox,
    h("div", { class: "actions" }, issueButton), issueSlot);

  for (const input of [byMoney, byEnergy, amount]) {
    input.addEventListener(input === amount ? "input" : "change", () => {
      labelAmount();
      forgetQuote();
    });
  }

  // 3. what was sold lately
  const recent = pagedTable({
    caption: "Newest first",
    columns: [
      { label: "Receipt", value: (v) => h("a", { href: `#/vends/${v.id}` }, v.receipt_no) },
      { label: "Sold", value: (v) => fmtTime(v.created_at) },
      { label: "Meter", value: (v) => h("a", { href: `#/meters/${encodeURIComponent(v.meter_id)}` }, v.meter_id) },
      { label: "Amount", num: true, value: (v) => fmtMoney(v.amount_minor, v.receipt.currency) },
      { label: "Energy", num: true, value: (v) => fmtKwh(v.energy_wh) },
      { label: "Operator", value: (v) => v.operator },
      { label: "Sale", value: (v) => badge(v.status) },
      { label: "Delivery", value: (v) => {
        const d = deliveryText(v);
        return badge(d.state, d.keypad ? "warn" : d.state);
      } },
    ],
    load: (params) => api.get("/vends", params),
    empty: "No sales yet.",
  });
  const recentFilters = filterForm([
    { name: "meter_id", label: "Meter", placeholder: "meter number" },
    { name: "status", label: "Sale", type: "select",
      options: [["", "any"], ["issued", "issued"], ["cancelled", "cancelled"]] },
  ], (values) => recent.reload(values));

  view.append(h("h1", {}, "Vend"), who, how,
    h("section", { "aria-labelledby": "vend-recent" }, h("h2", { id: "vend-recent" }, "Recent vends"),
      recentFilters.node, recent.node));
  recent.reload({});

  const preset = ctx.query.get("meter_id");
  if (preset) {
    search.value = preset;
    act(findButton, found, () => choose(preset));
  }

  // -- finding ---------------------------------------------------------------------------------

  async function find(text) {
    if (!text) return;
    const [meters, customers] = await Promise.all([
      api.get("/meters", { q: text, limit: 10 }),
      api.get("/customers", { q: text, limit: 10 }),
    ]);
    const rows = [];
    const seen = new Set();
    for (const c of customers.items) {
      if (!c.accounts.length) {
        rows.push({ customer: c.name, phone: c.phone, account: null, meter: null, note: "no open account" });
      }
      for (const a of c.accounts) {
        seen.add(a.meter_id);
        rows.push({ customer: c.name, phone: c.phone, account: a.id, meter: a.meter_id,
          note: a.status === "open" ? "" : `account ${a.status}` });
      }
    }
    for (const m of meters.items) {
      if (seen.has(m.id)) continue;
      rows.push({ customer: m.customer ? m.customer.name : null, phone: null, account: null,
        meter: m.id, note: m.status === "active" ? "" : `meter ${m.status}` });
    }
    const more = [];
    if (meters.total > meters.items.length) more.push(`${meters.total} meters`);
    if (customers.total > customers.items.length) more.push(`${customers.total} customers`);
    clear(found,
      rows.length ? h("table", { class: "choices" },
        h("caption", { class: "muted" }, `Matches for “${text}”`),
        h("thead", {}, h("tr", {}, ["Customer", "Phone", "Account", "Meter", ""].map((label) =>
          h("th", { scope: "col" }, label)))),
        h("tbody", {}, rows.map((row) => h("tr", {},
          h("td", {}, row.customer ?? "–"),
          h("td", {}, row.phone || "–"),
          h("td", {}, row.account ?? "–"),
          h("td", { class: "mono" }, row.meter ?? "–"),
          h("td", {}, row.meter
            ? h("button", { type: "button", class: "quiet", "aria-label": `Select meter ${row.meter}`,
              onclick: (event) => act(event.currentTarget, found, () => choose(row.meter)) }, "Select")
            : null, row.note ? h("span", { class: "muted" }, " ", row.note) : null)))))
        : h("p", {}, `No meter or customer matches “${text}”.`),
      more.length ? h("p", { class: "muted" }, `More match (${more.join(", ")}): type more to narrow the search.`) : null);
  }

  async function choose(meterId) {
    const meter = await api.get(`/meters/${encodeURIComponent(meterId)}`);
    if (!meter.account) throw new Error(`Meter ${meter.id} is on no open account: it cannot be sold to.`);
    const account = await api.get(`/accounts/${meter.account.id}`);
    let currency = "";
    try {
      const tariff = await api.get(`/tariffs/${account.tariff_id}`);
      currency = (tariff.body && tariff.body.currency) || tariff.currency || "";
    } catch (error) { /* the quote names the currency anyway */ }
    state.chosen = { meter, account, currency };
    clear(found);
    clear(chosenBox, h("div", { class: "chosen" },
      h("h3", {}, "Selling to"),
      facts([
        ["Customer", meter.account.customer_name || `customer ${account.customer_id}`],
        ["Account", h("span", {}, String(account.id), " ", badge(account.status, account.status === "open" ? "ok" : "bad"))],
        ["Meter", h("a", { href: `#/meters/${encodeURIComponent(meter.id)}`, class: "mono" }, meter.id)],
        ["Credit in the meter", meter.credit_wh === null ? "not reported yet" : fmtKwh(meter.credit_wh)],
        ["Debt", account.debt_minor ? `${fmtMoney(account.debt_minor, currency)} (recovered at ${Math.round(Number(account.debt_recovery_share) * 100)} % of each sale)` : "none"],
      ]),
      h("div", { class: "actions" }, h("button", { type: "button", class: "quiet", onclick: () => {
        state.chosen = null;
        clear(chosenBox);
        how.hidden = true;
        forgetQuote();
        search.focus();
      } }, "Change customer or meter"))));
    how.hidden = false;
    labelAmount();
    forgetQuote();
    amount.focus();
  }

  // -- pricing and selling -------------------------------------------------------------------

  function labelAmount() {
    const currency = state.chosen ? state.chosen.currency : "";
    if (byEnergy.checked) {
      amountLabelText.textContent = "Energy (kWh)";
      hint.textContent = "e.g. 25 or 12.5";
    } else {
      amountLabelText.textContent = currency ? `Amount (${currency})` : "Amount (money)";
      hint.textContent = "in major units, e.g. 50.00";
    }
  }

  function forgetQuote() {
    state.quote = null;
    state.body = null;
    state.key = null;
    issueButton.hidden = true;
    clear(quoteBox);
    clear(issueSlot);
  }

  async function price() {
    forgetQuote();
    const body = { meter_id: state.chosen.meter.id };
    if (byEnergy.checked) {
      const wh = toWh(amount.value);
      if (wh === null) throw new Error("Enter the energy in kWh, e.g. 25 or 12.5.");
      body.energy_wh = wh;
    } else {
      const minor = toMinor(amount.value);
      if (minor === null) throw new Error("Enter an amount of money, e.g. 50 or 50.00.");
      body.amount_minor = minor;
    }
    const quote = await api.post("/vends/quote", body);
    state.quote = quote;
    state.body = body;
    state.key = newKey(); // one key per priced attempt: retries of this sale are the same sale
    clear(quoteBox, breakdown(quote),
      h("p", { class: "pay", role: "status" }, "Take ", h("strong", {}, fmtMoney(quote.total_minor, quote.currency)),
        quote.change_minor ? ` and give ${fmtMoney(quote.change_minor, quote.currency)} change` : "",
        ` for ${fmtKwh(quote.energy_wh)}.`));
    issueButton.hidden = false;
  }

  async function issue() {
    if (!state.body || !state.key) return;
    const body = { ...state.body, idempotency_key: state.key };
    await act(issueButton, issueSlot, async () => {
      const vend = await api.post("/vends", body);
      toast(`Sold: receipt ${vend.receipt_no}`);
      ctx.go(`#/vends/${vend.id}`);
    });
  }
}

// -- #/vends/:id -------------------------------------------------------------------------------

async function renderVend(view, ctx) {
  const { api, can } = ctx;
  const path = `/vends/${encodeURIComponent(ctx.params.id)}`;
  let vend = await api.get(path);
  let reprinted = false;

  const heading = h("h1", {}, `Vend ${vend.receipt_no}`);
  const summary = h("p", { class: "no-print" });
  const cancelledNote = h("div", { role: "status", class: "no-print" });
  const tokenBox = h("div", {});
  const deliveryBox = h("div", { class: "delivery", role: "status", "aria-live": "polite" });
  const slot = h("div");
  const printButton = h("button", { type: "button", onclick: () => window.print() }, "Print receipt");
  const reprintButton = can("vend")
    ? h("button", { type: "button", class: "quiet", onclick: () => act(reprintButton, slot, reprint) }, "Reprint")
    : null;
  const cancelButton = can("vend.cancel")
    ? h("button", { type: "button", class: "danger", hidden: true, onclick: () => act(cancelButton, slot, cancel) }, "Cancel vend")
    : null;
  const receiptBox = h("div", {});

  view.append(heading, summary, cancelledNote,
    h("div", { class: "cols vend-detail" },
      h("div", {},
        h("section", { class: "card tight no-print", "aria-labelledby": "vend-token" },
          h("h2", { id: "vend-token" }, "Token"), tokenBox),
        h("section", { class: "card tight no-print", "aria-labelledby": "vend-delivery" },
          h("h2", { id: "vend-delivery" }, "Delivery to the meter"), deliveryBox),
        h("div", { class: "actions" }, printButton, reprintButton, cancelButton,
          h("a", { class: "button quiet", href: "#/vend" }, "New sale")),
        h("div", { class: "no-print" }, slot)),
      h("section", { "aria-labelledby": "vend-receipt" },
        h("h2", { id: "vend-receipt", class: "no-print" }, "Receipt"), receiptBox)));

  function draw() {
    const sold = vend.receipt;
    clear(summary, badge(vend.status), " ", fmtMoney(vend.amount_minor, sold.currency), " for ",
      fmtKwh(vend.energy_wh), " to meter ",
      h("a", { href: `#/meters/${encodeURIComponent(vend.meter_id)}`, class: "mono" }, vend.meter_id),
      `, sold ${fmtTime(vend.created_at)} by ${vend.operator}.`);
    const c = vend.cancelled;
    clear(cancelledNote, c ? h("p", { class: "cancelled-note" },
      h("strong", {}, "Cancelled"), c.at ? ` ${fmtTime(c.at)}` : "", c.by ? ` by ${c.by}` : "",
      c.reason ? `: ${c.reason}` : "", ". The sale was reversed; the token must not be used.") : null);
    clear(tokenBox, vend.tokens.map((t) => h("p", { class: "token" }, groupToken(t))));
    const d = deliveryText(vend);
    const at = STEPS.indexOf(d.state);
    clear(deliveryBox,
      h("p", {}, badge(d.state, d.keypad ? "warn" : d.state), " ", h("span", { class: "delivery-text" }, d.text)),
      at >= 0 ? h("ol", { class: "steps", "aria-label": "Delivery steps" }, STEPS.map((step, i) =>
        h("li", { class: i < at || step === "applied" && at === 3 ? "done" : i === at ? "current" : "" }, step)))
        : null);
    clear(receiptBox, receipt(vend, reprinted));
    if (cancelButton) {
      // only while nothing has left the head-end: once sent the token may be in the meter already
      cancelButton.hidden = !(vend.status === "issued" && (!vend.delivery || vend.delivery.state === "queued"));
    }
  }

  async function refresh() {
    vend = await api.get(path);
    draw();
  }

  async function reprint() {
    const again = await api.post(`${path}/reprint`);
    reprinted = true;
    vend = { ...vend, ...again };
    draw();
    toast("Receipt reprinted: the same token, not a new one.");
    window.print();
  }

  async function cancel() {
    const reason = await confirmDialog("Cancel this vend?",
      `The sale of ${fmtMoney(vend.amount_minor, vend.receipt.currency)} to meter ${vend.meter_id} is reversed ` +
      "and its token is never sent. Tell the customer not to type it in.",
      { confirm: "Cancel vend", comment: "Reason", required: true, danger: true });
    if (reason === null) return;
    vend = await api.post(`${path}/cancel`, { reason });
    draw();
    toast("Vend cancelled.");
  }

  draw();
  let stop = null;
  stop = poll(async () => {
    if (vend.status !== "issued" || !vend.delivery || FINAL.has(vend.delivery.state)) {
      if (stop) stop();
      return;
    }
    try {
      await refresh();
    } catch (error) {
      clear(slot, errorBox(error));
    }
  }, 2000);
  return () => stop && stop();
}

// The printable receipt, as the customer takes it home.
function receipt(vend, reprinted) {
  const r = vend.receipt;
  const money = (minor) => fmtMoney(minor, r.currency);
  const row = (label, value, cls = "") => h("tr", { class: cls }, h("th", { scope: "row" }, label), h("td", { class: "num" }, value));
  return h("div", { class: "receipt" },
    h("p", { class: "receipt-head" }, h("strong", {}, "Prepaid electricity"), h("br"), "Tax invoice / receipt"),
    reprinted ? h("p", { class: "receipt-mark" }, "REPRINT") : null,
    vend.status === "cancelled" ? h("p", { class: "receipt-mark" }, "CANCELLED: DO NOT USE THIS TOKEN") : null,
    h("table", {},
      h("tbody", {},
        row("Receipt", r.receipt_no),
        row("Date", fmtTime(r.issued_at)),
        row("Meter", r.meter),
        row("Account", String(r.account)),
        row("Sold by", `${r.operator}, ${r.vending_point}`))),
    h("hr"),
    h("table", {}, h("tbody", {},
      r.lines.map((line) => row(line.description, money(line.amount_minor))),
      row("Total", money(r.total_minor), "strong"),
      row("of which tax", money(r.tax_minor)),
      row("Tendered", money(r.tendered_minor)),
      row("Change", money(r.change_minor)),
      row("Energy", fmtKwh(r.energy_wh)),
      r.debt_remaining_minor ? row("Debt left", money(r.debt_remaining_minor)) : null)),
    h("hr"),
    h("p", { class: "receipt-label" }, "Token"),
    vend.tokens.map((t) => h("p", { class: "receipt-token" }, groupToken(t))),
    r.notes.length ? h("ul", { class: "receipt-notes" }, r.notes.map((n) => h("li", {}, n))) : null);
}
