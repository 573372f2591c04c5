// Alerts: the alert history of GET /v1/alerts (newest first) with each webhook delivery's
// status, and the rules and webhooks in force. Links go to the trace, run or view an alert
// points at, inside this dashboard.

import { getJSON } from "../api.js";
import { clip, formatAgo, formatCount, formatDateTime, h, notice, replace, token } from "../dom.js";

const REFRESH_MS = 15000;
const TYPE_LABELS = {
  new_error_group: "new error group",
  error_rate: "error rate",
  run_failed: "run failed",
  no_events: "no events",
};

function text(value) {
  return typeof value === "string" ? value : "";
}

/** The dashboard part (`#/…`) of an alert's absolute link, or null. */
function localHref(link) {
  const value = text(link);
  const mark = value.indexOf("#/");
  return mark === -1 ? null : value.slice(mark);
}

function deliveryChip(delivery) {
  const status = text(delivery.status) || "unknown";
  const attempts = typeof delivery.attempts === "number" ? delivery.attempts : 0;
  const detail = [`${attempts} attempt${attempts === 1 ? "" : "s"}`];
  if (text(delivery.last_error)) detail.push(text(delivery.last_error));
  return h(
    "span",
    { class: `chip status status-${token(deliveryClass(status))}`, title: detail.join(" · ") },
    `${text(delivery.webhook)}: ${status}`,
  );
}

function deliveryClass(status) {
  if (status === "delivered") return "success";
  if (status === "pending") return "running";
  if (status === "failed" || status === "dropped") return "error";
  return "skipped";
}

function alertCard(alert) {
  const type = text(alert.type);
  const count = typeof alert.count === "number" ? alert.count : 1;
  const href = localHref(alert.link);
  const deliveries = Array.isArray(alert.deliveries) ? alert.deliveries : [];
  const where = [text(alert.service), text(alert.environment)].filter(Boolean).join(" · ");
  return h(
    "li",
    { class: "error-group", dataset: { alertId: text(alert.id), rule: text(alert.rule) } },
    h(
      "div",
      { class: "error-head" },
      h("span", { class: "error-count", title: "occurrences in this alert" }, formatCount(count)),
      h("h2", { class: "error-title" }, clip(text(alert.title) || "alert", 240)),
      h("span", { class: `chip category category-${token(type)}` }, TYPE_LABELS[type] || type || "alert"),
    ),
    h(
      "dl",
      { class: "error-facts" },
      h("dt", null, "Rule"),
      h("dd", null, text(alert.rule)),
      h("dt", null, "Where"),
      h("dd", null, where || "—"),
      h("dt", null, "Fired"),
      h(
        "dd",
        null,
        h("time", { datetime: text(alert.fired_at) }, formatDateTime(alert.fired_at)),
        h("span", { class: "muted" }, ` (${formatAgo(alert.fired_at)})`),
      ),
      h("dt", null, "Deliveries"),
      h("dd", null, deliveries.length ? deliveries.map(deliveryChip) : h("span", { class: "muted" }, "history only")),
    ),
    href ? h("p", { class: "related" }, h("a", { href }, "open")) : null,
  );
}

function rulesTable(rules, webhooks) {
  const names = webhooks.map((w) => `${text(w.name)} (${text(w.format)}${w.signed ? ", signed" : ""})`);
  return h(
    "div",
    { class: "panel" },
    h("h2", null, "Rules"),
    h(
      "table",
      { class: "table" },
      h(
        "thead",
        null,
        h("tr", null, h("th", null, "Name"), h("th", null, "Type"), h("th", null, "Environments"), h("th", null, "Webhooks")),
      ),
      h(
        "tbody",
        null,
        rules.map((rule) =>
          h(
            "tr",
            null,
            h("td", null, text(rule.name)),
            h("td", null, TYPE_LABELS[text(rule.type)] || text(rule.type)),
            h("td", null, Array.isArray(rule.environments) && rule.environments.length ? rule.environments.join(", ") : "all"),
            h("td", null, Array.isArray(rule.webhooks) && rule.webhooks.length ? rule.webhooks.join(", ") : "history only"),
          ),
        ),
      ),
    ),
    h("p", { class: "muted" }, names.length ? `Webhooks: ${names.join(", ")}` : "No webhook configured: alerts are kept here only."),
  );
}

export function mount(root, { signal }) {
  const body = h("div", null, notice("Loading alerts…"));
  const rulesBox = h("div");
  const refresh = h("button", { type: "button" }, "Refresh");
  const summaryLine = h("span", { class: "muted" });
  root.append(h("div", { class: "view-head" }, h("h1", null, "Alerts"), summaryLine, refresh), body, rulesBox);

  async function load() {
    try {
      const data = await getJSON("/v1/alerts", { limit: 100 }, { signal });
      const alerts = Array.isArray(data.alerts) ? data.alerts : [];
      const rules = Array.isArray(data.rules) ? data.rules : [];
      const webhooks = Array.isArray(data.webhooks) ? data.webhooks : [];
      const stats = data.stats && typeof data.stats === "object" ? data.stats : {};
      const dropped = typeof stats.dropped_events === "number" ? stats.dropped_events : 0;
      summaryLine.textContent =
        `${formatCount(alerts.length)} alerts · rules from ${text(data.source) || "defaults"}` +
        (dropped ? ` · ${formatCount(dropped)} events not evaluated (queue full)` : "");
      replace(rulesBox, rulesTable(rules, webhooks));
      if (!alerts.length) {
        replace(body, notice("No alert has fired yet."));
        return;
      }
      replace(body, h("ol", { class: "error-groups", "aria-label": "Alerts" }, alerts.map(alertCard)));
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(body, notice(`Could not load alerts: ${error.message}`, "error"));
    }
  }

  refresh.addEventListener("click", load);
  const timer = window.setInterval(load, REFRESH_MS);
  load();
  return { dispose: () => window.clearInterval(timer) };
}
