// Administration (permission admin): operators, the roles and their permissions, API keys, the
// audit log and notification rules, one tab each. The open tab is kept in the address
// (#/admin?tab=audit), so a reload or a link opens it again.

import {
  act, badge, clear, confirmDialog, facts, filterForm, fmtTime, h, pagedTable, tabs,
} from "../ui.js";

const ALARM_KINDS = ["credit_exhausted", "low_credit", "tamper", "cover_open", "relay_fault",
  "over_power", "power_fail", "meter_unreachable", "identity_mismatch"];
const AUDIT_ACTIONS = ["login", "login_failed", "logout", "operator.create", "operator.update",
  "api_key.create", "api_key.revoke", "key.import", "tariff.create", "tariff.version",
  "tariff.push", "customer.create", "account.open", "account.suspended", "account.closed",
  "account.meter_changed", "meter.update", "meter.replaced", "vend", "vend.reprint",
  "vend.resend", "vend.cancel", "vend.credit_transfer", "relay.connect", "relay.disconnect",
  "read", "time_sync", "command.cancel", "alarm.ack", "notification_rule.create",
  "notification_rule.update", "schedule.create", "key_campaign.create", "key_campaign.retry",
  "key_change.issue", "key_change.retry"];
const MIN_PASSWORD = 10; // headend.api.admin.MIN_PASSWORD_LENGTH

export async function render(view, ctx) {
  const roles = await ctx.api.get("/roles");
  const env = { ...ctx, roles, roleNames: roles.roles.map((r) => r.name) };
  const list = [
    { id: "operators", label: "Operators", render: (panel) => operators(panel, env) },
    { id: "roles", label: "Roles", render: (panel) => rolesMatrix(panel, env) },
    { id: "api-keys", label: "API keys", render: (panel) => apiKeys(panel, env) },
    { id: "audit", label: "Audit log", render: (panel) => auditLog(panel, env) },
    { id: "rules", label: "Notification rules", render: (panel) => rules(panel, env) },
  ].map((tab) => ({ ...tab, render(panel) {
    history.replaceState(null, "", `#/admin?tab=${tab.id}`);
    tab.render(panel);
  } }));
  const wanted = ctx.query.get("tab");
  view.append(h("h1", {}, "Administration"),
    tabs(list, list.some((tab) => tab.id === wanted) ? wanted : "operators"));
}

// -- small form helpers -----------------------------------------------------------------------

// A labelled input with an optional hint under it (outside the label, tied by aria-describedby).
function field(id, label, input, hint = null) {
  input.id = id;
  if (!input.name) input.name = id;
  const help = hint && h("span", { class: "hint", id: `${id}-hint` }, hint);
  if (help) input.setAttribute("aria-describedby", help.id);
  return h("div", { class: "field" }, h("label", { for: id }, label, input), help);
}

// A select whose default (what form.reset() goes back to) is `value`.
function select(options, value = null) {
  return h("select", {}, options.map(([v, text]) =>
    h("option", { value: v, selected: value !== null && v === value }, text)));
}

function roleOptions(env) {
  return env.roleNames.map((name) => [name, name]);
}

// A line beside a form or list saying what the last action did; screen readers read it out.
function statusLine() {
  return h("p", { class: "status-line", role: "status", "aria-live": "polite" });
}

function say(line, text) {
  line.textContent = text;
}

// -- operators --------------------------------------------------------------------------------

function operators(panel, env) {
  const { api } = env;
  const done = statusLine();
  const manage = h("section", { class: "card tight", "aria-labelledby": "manage-title", hidden: true });
  const table = pagedTable({
    caption: "Operators of the head-end; they are deactivated, never deleted.",
    columns: [
      { label: "Username", value: (o) => o.username },
      { label: "Role", value: (o) => o.role },
      { label: "Vending point", value: (o) => o.vending_point },
      { label: "State", value: (o) => (o.active ? badge("active", "active") : badge("inactive", "bad")) },
      { label: "Created", value: (o) => fmtTime(o.created_at) },
      { label: "Actions", value: (o) => h("button", { type: "button", class: "quiet",
        "aria-label": `Manage ${o.username}`, onclick: () => open(o) }, "Manage") },
    ],
    load: (params) => api.get("/operators", params),
    empty: "No operator matches.",
  });
  const filters = filterForm([
    { name: "role", label: "Role", type: "select", options: [["", "All roles"], ...roleOptions(env)] },
    { name: "active", label: "State", type: "select",
      options: [["", "Active and inactive"], ["true", "Active"], ["false", "Inactive"]] },
  ], (values) => table.reload(values));

  // the chosen operator: role, vending point, password, active
  function open(operator) {
    const role = select(roleOptions(env), operator.role);
    const point = h("input", { value: operator.vending_point, required: true, maxlength: 64,
      pattern: "[A-Za-z0-9_. \\-]{1,64}" });
    const password = h("input", { type: "password", autocomplete: "new-password",
      minlength: MIN_PASSWORD, required: true });
    const problem = h("div");
    const save = h("button", { type: "submit" }, "Save role and vending point");
    const reset = h("button", { type: "submit" }, "Reset password");
    const toggle = h("button", { type: "button", class: operator.active ? "danger" : "" },
      operator.active ? `Deactivate ${operator.username}` : `Activate ${operator.username}`);
    const title = h("h2", { id: "manage-title", tabindex: "-1" }, `Operator ${operator.username}`);

    async function change(button, body, message) {
      const updated = await act(button, problem, () => api.patch(`/operators/${operator.id}`, body));
      if (!updated) return;
      say(done, message);
      table.reload();
      open(updated);
    }

    clear(manage,
      title,
      facts([["Username", operator.username], ["Role", operator.role],
        ["Vending point", operator.vending_point],
        ["State", operator.active ? badge("active", "active") : badge("inactive", "bad")],
        ["Created", fmtTime(operator.created_at)]]),
      problem,
      h("form", { class: "fields", onsubmit: (event) => {
        event.preventDefault();
        const body = {};
        if (role.value !== operator.role) body.role = role.value;
        if (point.value.trim() !== operator.vending_point) body.vending_point = point.value.trim();
        if (!Object.keys(body).length) {
          say(done, "Nothing to change.");
          return;
        }
        change(save, body, `${operator.username}: changes saved.`);
      } }, field("manage-role", "Role", role), field("manage-point", "Vending point", point), save),
      h("form", { class: "fields", onsubmit: async (event) => {
        event.preventDefault();
        const ok = await confirmDialog(`Reset ${operator.username}'s password?`,
          "Their sessions end at once; give them the new password in person.",
          { confirm: "Reset password" });
        if (ok === null) return;
        await change(reset, { password: password.value },
          `${operator.username}: password reset, their sessions ended.`);
      } }, field("manage-password", "New password", password,
        `${MIN_PASSWORD} characters or more`), reset),
      h("div", { class: "actions" }, toggle,
        h("button", { type: "button", class: "quiet", onclick: () => { manage.hidden = true; } },
          "Close")),
      done);
    toggle.addEventListener("click", async () => {
      if (operator.active) {
        const self = operator.username === env.me.name;
        const ok = await confirmDialog(`Deactivate ${operator.username}?`,
          self ? "This is you: you are logged out at once and can no longer log in."
            : "They can no longer log in and their sessions end at once. You can activate them again.",
          { confirm: "Deactivate", danger: true });
        if (ok === null) return;
      }
      await change(toggle, { active: !operator.active },
        `${operator.username} ${operator.active ? "deactivated" : "activated"}.`);
    });
    manage.hidden = false;
    title.focus();
  }

  // a new operator
  const username = h("input", { required: true, maxlength: 64, pattern: "[A-Za-z0-9_.@\\-]{1,64}",
    autocomplete: "off" });
  const password = h("input", { type: "password", required: true, minlength: MIN_PASSWORD,
    autocomplete: "new-password" });
  const role = select(roleOptions(env), "cashier");
  const point = h("input", { value: "head-office", required: true, maxlength: 64 });
  const problem = h("div");
  const create = h("button", { type: "submit" }, "Create operator");
  const created = statusLine();
  const form = h("form", { class: "card tight", "aria-labelledby": "new-operator-title",
    onsubmit: async (event) => {
      event.preventDefault();
      const made = await act(create, problem, () => api.post("/operators", {
        username: username.value.trim(), password: password.value, role: role.value,
        vending_point: point.value.trim(),
      }));
      if (!made) return;
      form.reset();
      say(created, `Operator ${made.username} created (${made.role}, ${made.vending_point}).`);
      table.reload();
    } },
  h("h2", { id: "new-operator-title" }, "New operator"),
  h("div", { class: "fields" },
    field("new-username", "Username", username, "letters, digits and _ . @ -"),
    field("new-password", "Password", password, `${MIN_PASSWORD} characters or more`),
    field("new-role", "Role", role),
    field("new-point", "Vending point", point)),
  problem, create, created);

  clear(panel, h("h2", {}, "Operators"), filters.node, table.node, manage, form);
  table.reload();
}

// -- roles ------------------------------------------------------------------------------------

function rolesMatrix(panel, env) {
  const { roles } = env;
  const holds = Object.fromEntries(roles.roles.map((r) => [r.name, new Set(r.permissions)]));
  clear(panel,
    h("h2", {}, "Roles and their permissions"),
    h("p", { class: "muted" }, "Roles are fixed sets of permissions; each operator and API key has one role."),
    h("div", { class: "scroll" }, h("table", { class: "matrix" },
      h("caption", { class: "muted" }, "Which role holds which permission"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Permission"),
        roles.roles.map((r) => h("th", { scope: "col" }, r.name)))),
      h("tbody", {}, Object.entries(roles.permissions).map(([permission, what]) => h("tr", {},
        h("th", { scope: "row" }, h("code", {}, permission), " ", h("div", { class: "muted" }, what)),
        roles.roles.map((r) => (holds[r.name].has(permission)
          ? h("td", { class: "yes" }, "yes")
          : h("td", { class: "no" }, "no")))))))));
}

// -- API keys ---------------------------------------------------------------------------------

function apiKeys(panel, env) {
  const { api } = env;
  const done = statusLine();
  const shown = h("div"); // the new key's text, until the administrator has copied it
  const table = pagedTable({
    caption: "API keys for machines; their text is shown once, when made, and never again.",
    columns: [
      { label: "Name", value: (k) => k.name },
      { label: "Role", value: (k) => k.role },
      { label: "Created", value: (k) => fmtTime(k.created_at) },
      { label: "State", value: (k) => (k.revoked_at
        ? h("span", {}, badge("revoked", "bad"), " ", fmtTime(k.revoked_at))
        : badge("active", "active")) },
      { label: "Actions", value: (k) => (k.revoked_at ? "" : h("button", { type: "button",
        class: "danger", "aria-label": `Revoke ${k.name}`, onclick: (event) => revoke(k, event.currentTarget) },
      "Revoke")) },
    ],
    load: (params) => api.get("/api-keys", params),
    empty: "No API key yet.",
  });
  const filters = filterForm([{ name: "revoked", label: "Show", type: "select",
    options: [["", "All keys"], ["false", "Active keys"], ["true", "Revoked keys"]] }],
  (values) => table.reload(values));
  const problem = h("div");

  async function revoke(key, button) {
    const ok = await confirmDialog(`Revoke the API key ${key.name}?`,
      "Every request made with it is refused from now on. A revoked key cannot be brought back.",
      { confirm: "Revoke", danger: true });
    if (ok === null) return;
    const revoked = await act(button, problem, () => api.del(`/api-keys/${key.id}`));
    if (!revoked) return;
    say(done, `API key ${key.name} revoked.`);
    table.reload();
  }

  function showOnce(made) {
    const text = h("input", { id: "new-key-text", readonly: true, value: made.key, spellcheck: "false",
      autocomplete: "off", class: "keytext" });
    const copied = h("span", { class: "muted", role: "status" });
    clear(shown, h("section", { class: "card tight once", role: "alert", "aria-labelledby": "new-key-title" },
      h("h3", { id: "new-key-title" }, `API key ${made.name} created (${made.role})`),
      h("p", {}, h("strong", {}, "Copy it now: this is the only time the key is shown."),
        " The head-end keeps only a hash of it; if it is lost, revoke it and make another."),
      h("label", { for: "new-key-text" }, "Key text", text),
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: async () => {
          text.select();
          try {
            await navigator.clipboard.writeText(made.key);
            copied.textContent = "Copied to the clipboard.";
          } catch (error) {
            copied.textContent = "Selected: press Ctrl+C to copy it.";
          }
        } }, "Copy"),
        h("button", { type: "button", class: "quiet", onclick: () => clear(shown) },
          "I have copied it: hide the key"),
        copied)));
    text.focus();
    text.select();
  }

  const name = h("input", { required: true, maxlength: 48, pattern: "[A-Za-z0-9_.@\\-]{1,48}",
    autocomplete: "off" });
  const role = select(roleOptions(env), "viewer");
  const create = h("button", { type: "submit" }, "Create API key");
  const formProblem = h("div");
  const form = h("form", { class: "card tight", "aria-labelledby": "new-key-form-title",
    onsubmit: async (event) => {
      event.preventDefault();
      const made = await act(create, formProblem, () => api.post("/api-keys",
        { name: name.value.trim(), role: role.value }));
      if (!made) return;
      form.reset();
      done.textContent = "";
      showOnce(made);
      table.reload();
    } },
  h("h2", { id: "new-key-form-title" }, "New API key"),
  h("div", { class: "fields" },
    field("key-name", "Name", name, "what uses it, e.g. billing-sync"),
    field("key-role", "Role", role)),
  formProblem, create);

  clear(panel, h("h2", {}, "API keys"), problem, done, filters.node, table.node, form, shown);
  table.reload();
}

// -- the audit log ----------------------------------------------------------------------------

function detailText(detail) {
  const pairs = Object.entries(detail || {});
  if (!pairs.length) return "";
  return pairs.map(([k, v]) => `${k}: ${typeof v === "object" && v !== null ? JSON.stringify(v) : v}`)
    .join(", ");
}

function auditLog(panel, env) {
  const { api } = env;
  const table = pagedTable({
    caption: "Every change, login and logout, newest first.",
    columns: [
      { label: "Time", value: (e) => fmtTime(e.at) },
      { label: "Actor", value: (e) => e.actor },
      { label: "Action", value: (e) => h("code", {}, e.action) },
      { label: "Target", value: (e) => e.target || "–" },
      { label: "Detail", value: (e) => h("span", { class: "detail" }, detailText(e.detail)) },
    ],
    load: (params) => api.get("/audit", params),
    empty: "No entry matches.",
  });
  const filters = filterForm([
    { name: "actor", label: "Actor", placeholder: "admin, api-key:name, cli" },
    { name: "action", label: "Action", placeholder: "operator.create" },
    { name: "target", label: "Target", placeholder: "operator:7" },
    { name: "since", label: "Since", type: "datetime-local" },
  ], (values) => table.reload(query(values)));
  const actions = h("datalist", { id: "audit-actions" }, AUDIT_ACTIONS.map((a) => h("option", { value: a })));
  filters.node.querySelector("#filter-action").setAttribute("list", "audit-actions");

  function query(values) {
    const params = { ...values };
    if (values.since) {
      const at = new Date(values.since).getTime();
      params.since = Number.isFinite(at) ? String(at / 1000) : "";
    }
    return params;
  }

  clear(panel, h("h2", {}, "Audit log"), filters.node, actions, table.node);
  table.reload();
}

// -- notification rules -----------------------------------------------------------------------

function rules(panel, env) {
  const { api } = env;
  const done = statusLine();
  const problem = h("div");
  const table = pagedTable({
    caption: "Who is told when an alarm is raised (through a configured e-mail or SMS channel).",
    columns: [
      { label: "Alarm kind", value: (r) => (r.kind === "*" ? "* (every kind)" : r.kind) },
      { label: "Channel", value: (r) => r.channel },
      { label: "Recipient", value: (r) => (r.recipient === "customer" ? "customer (the account holder)" : r.recipient) },
      { label: "State", value: (r) => (r.enabled ? badge("enabled", "ok") : badge("disabled", "bad")) },
      { label: "Actions", value: (r) => h("button", { type: "button", class: "quiet",
        "aria-label": `${r.enabled ? "Disable" : "Enable"} rule ${r.id} (${r.kind}, ${r.channel} to ${r.recipient})`,
        onclick: (event) => toggle(r, event.currentTarget) }, r.enabled ? "Disable" : "Enable") },
    ],
    load: (params) => api.get("/notification-rules", params),
    empty: "No rule: nobody is told about alarms.",
  });

  async function toggle(rule, button) {
    const changed = await act(button, problem,
      () => api.patch(`/notification-rules/${rule.id}`, { enabled: !rule.enabled }));
    if (!changed) return;
    say(done, `Rule ${rule.id} (${rule.kind}, ${rule.channel} to ${rule.recipient}) ${changed.enabled ? "enabled" : "disabled"}.`);
    table.reload();
  }

  const kind = h("input", { required: true, maxlength: 64, list: "rule-kinds", autocomplete: "off" });
  const channel = select([["sms", "SMS"], ["email", "e-mail"]]);
  const recipient = h("input", { required: true, maxlength: 200, autocomplete: "off" });
  const create = h("button", { type: "submit" }, "Add rule");
  const added = statusLine();
  const formProblem = h("div");
  const form = h("form", { class: "card tight", "aria-labelledby": "new-rule-title",
    onsubmit: async (event) => {
      event.preventDefault();
      const made = await act(create, formProblem, () => api.post("/notification-rules", {
        kind: kind.value.trim(), channel: channel.value, recipient: recipient.value.trim() }));
      if (!made) return;
      form.reset();
      say(added, `Rule added: ${made.kind} alarms by ${made.channel} to ${made.recipient}.`);
      table.reload();
    } },
  h("h2", { id: "new-rule-title" }, "New rule"),
  h("datalist", { id: "rule-kinds" }, ["*", ...ALARM_KINDS].map((k) => h("option", { value: k }))),
  h("div", { class: "fields" },
    field("rule-kind", "Alarm kind", kind, "a kind such as tamper, or * for every kind"),
    field("rule-channel", "Channel", channel),
    field("rule-recipient", "Recipient", recipient, "an address or phone number, or customer")),
  formProblem, create, added);

  clear(panel, h("h2", {}, "Notification rules"), problem, done, table.node, form);
  table.reload();
}
