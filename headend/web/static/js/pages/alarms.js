// Alarms: the live list (refreshed every 5 s on the page and with the filters the operator is on),
// acknowledging with a comment, and the history of the notifications the alarms caused.
//
// The hash query pre-fills the filters (#/alarms?state=open&severity=critical, also kind, acked,
// meter_id; tab=notifications with alarm_id opens the history); changing a filter writes them
// back to the address (without reloading the page) so the view can be bookmarked or shared.

import {
  badge, clear, confirmDialog, errorBox, filterForm, fmtTime, h, pagedTable, poll, tabs, toast,
} from "../ui.js";

const REFRESH_MS = 5000;
// the head-end's default alarm kinds (headend.config); a kind from the address is added to them
const KINDS = ["low_credit", "credit_exhausted", "tamper", "cover_open", "relay_fault",
  "over_power", "power_fail", "meter_unreachable", "identity_mismatch"];
const SEVERITIES = ["critical", "major", "minor", "warning", "info"];
const ALARM_FILTERS = ["state", "severity", "kind", "acked", "meter_id"];

const words = (kind) => String(kind || "").replace(/_/g, " ");

function withOption(options, value) {
  return value && !options.some(([v]) => v === value) ? [...options, [value, words(value)]] : options;
}

export async function render(view, ctx) {
  const { api, can, query } = ctx;
  const shared = { stop: null, alarmId: query.get("alarm_id") || "" };
  const initial = Object.fromEntries(ALARM_FILTERS.map((name) => [name, query.get(name) || ""]));

  function stopPolling() {
    if (shared.stop) shared.stop();
    shared.stop = null;
  }

  function remember(tab, values) {
    const params = new URLSearchParams(Object.entries(values).filter(([, v]) => v));
    if (tab !== "alarms") params.set("tab", tab);
    const text = params.toString();
    history.replaceState(null, "", `#/alarms${text ? "?" + text : ""}`);
  }

  // -- the alarms ------------------------------------------------------------------------------

  function alarmsPanel(panel) {
    stopPolling();
    const problem = h("div");
    const table = pagedTable({
      caption: "Newest first; refreshed every 5 seconds",
      columns: [
        { label: "Raised", value: (a) => fmtTime(a.raised_at) },
        { label: "Meter", value: (a) => h("a", { href: `#/meters/${encodeURIComponent(a.meter_id)}`, class: "mono" }, a.meter_id) },
        { label: "Alarm", value: (a) => h("span", {}, words(a.kind), a.detail ? h("span", { class: "muted" }, ` (${a.detail})`) : null) },
        { label: "Severity", value: (a) => badge(a.severity) },
        { label: "State", value: (a) => a.state === "open" ? badge("open", "warn")
          : h("span", {}, badge(a.state, "ok"), a.cleared_at ? h("span", { class: "muted" }, ` ${fmtTime(a.cleared_at)}`) : null) },
        { label: "Acknowledged", value: (a) => a.acked_at
          ? h("div", { class: "acked" }, h("span", {}, `by ${a.acked_by}, ${fmtTime(a.acked_at)}`),
            a.ack_comment ? h("q", {}, a.ack_comment) : null)
          : h("span", { class: "muted" }, "not yet") },
        { label: "Actions", value: (a) => h("div", { class: "row-actions" },
          can("alarms.ack") && !a.acked_at
            ? h("button", { type: "button", "aria-label": `Acknowledge alarm ${a.id}: ${words(a.kind)} on meter ${a.meter_id}`,
              onclick: (event) => acknowledge(event.currentTarget, a) }, "Acknowledge")
            : null,
          h("button", { type: "button", class: "quiet", "aria-label": `Notifications of alarm ${a.id}`,
            onclick: () => showNotifications(a.id) }, "Notifications")) },
      ],
      load: (params) => api.get("/alarms", params),
      empty: "No alarm matches these filters.",
    });
    const form = filterForm([
      { name: "state", label: "State", type: "select",
        options: withOption([["", "any"], ["open", "open"], ["cleared", "cleared"]], initial.state) },
      { name: "severity", label: "Severity", type: "select",
        options: withOption([["", "any"], ...SEVERITIES.map((s) => [s, s])], initial.severity) },
      { name: "kind", label: "Kind", type: "select",
        options: withOption([["", "any"], ...KINDS.map((k) => [k, words(k)])], initial.kind) },
      { name: "acked", label: "Acknowledged", type: "select",
        options: [["", "either"], ["false", "not yet"], ["true", "yes"]] },
      { name: "meter_id", label: "Meter", placeholder: "meter number" },
    ], (values) => {
      Object.assign(initial, values);
      remember("alarms", values);
      table.reload(values);
    }, initial);
    panel.append(form.node, problem, table.node);

    async function acknowledge(button, alarm) {
      const comment = await confirmDialog(`Acknowledge the ${words(alarm.kind)} alarm?`,
        `Meter ${alarm.meter_id}, raised ${fmtTime(alarm.raised_at)}. Say what is being done about it: ` +
        "the comment is kept with the alarm and in the audit log.",
        { confirm: "Acknowledge", comment: "Comment", required: true });
      if (comment === null) return;
      button.disabled = true;
      clear(problem);
      try {
        await api.post(`/alarms/${alarm.id}/ack`, { comment });
        toast(`Alarm ${alarm.id} acknowledged.`);
      } catch (error) {
        clear(problem, errorBox(error)); // e.g. someone acknowledged it a moment earlier
      }
      await table.reload();
    }

    // live, but never under the operator's hands: a refresh would take the focus off a row's button
    const body = table.node.querySelector("tbody");
    let first = true;
    shared.stop = poll(async () => {
      if (first) {
        first = false;
        await table.reload(form.values());
        return;
      }
      if (document.querySelector("dialog[open]") || body.contains(document.activeElement)) return;
      await table.reload();
    }, REFRESH_MS);
  }

  // -- the notifications -------------------------------------------------------------------------

  function notificationsPanel(panel) {
    stopPolling();
    const values = { alarm_id: shared.alarmId, outcome: query.get("outcome") || "" };
    const table = pagedTable({
      caption: "Newest first",
      columns: [
        { label: "Sent", value: (n) => fmtTime(n.at) },
        { label: "Alarm", num: true, value: (n) => n.alarm_id ?? "–" },
        { label: "Channel", value: (n) => n.channel },
        { label: "Recipient", value: (n) => n.recipient },
        { label: "Subject", value: (n) => n.subject },
        { label: "Outcome", value: (n) => badge(n.outcome,
          { sent: "ok", failed: "bad", suppressed: "info" }[n.outcome] || n.outcome) },
        { label: "Detail", value: (n) => n.detail || "–" },
      ],
      load: (params) => api.get("/notifications", params),
      empty: "No notifications. One is sent when an alarm matches a notification rule " +
        "(Administration) whose channel, e-mail or SMS, the head-end has configured.",
    });
    const form = filterForm([
      { name: "alarm_id", label: "Alarm number", type: "number", placeholder: "e.g. 12" },
      { name: "outcome", label: "Outcome", type: "select",
        options: [["", "any"], ["sent", "sent"], ["failed", "failed"], ["suppressed", "suppressed"]] },
    ], (chosen) => {
      shared.alarmId = chosen.alarm_id;
      remember("notifications", chosen);
      table.reload(chosen);
    }, values);
    panel.append(form.node, table.node);
    remember("notifications", values);
    let first = true;
    shared.stop = poll(async () => {
      await (first ? table.reload(form.values()) : table.reload());
      first = false;
    }, REFRESH_MS * 3);
  }

  function showNotifications(alarmId) {
    shared.alarmId = String(alarmId);
    document.getElementById("tab-notifications").click();
  }

  const first = query.get("tab") === "notifications" ? "notifications" : "alarms";
  view.append(h("h1", {}, "Alarms"), tabs([
    { id: "alarms", label: "Alarms", render: (panel) => {
      remember("alarms", initial);
      alarmsPanel(panel);
    } },
    { id: "notifications", label: "Notification history", render: notificationsPanel },
  ], first));
  return stopPolling;
}
