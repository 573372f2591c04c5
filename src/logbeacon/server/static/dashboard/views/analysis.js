// Analysis of a time window (GET /v1/analysis): the error rate over time as an SVG chart,
// events by level and by service, the most frequent error groups, and the slowest nodes and
// layers by p95. Window and service live in the address (#/analysis?since=6h&service=api).

import { getJSON } from "../api.js";
import { errorRateChart } from "../chart.js";
import {
  clip,
  formatCount,
  formatDateTime,
  formatDuration,
  h,
  levelName,
  notice,
  replace,
  token,
  viewHref,
  viewLink,
} from "../dom.js";

const WINDOWS = ["15m", "1h", "6h", "24h", "7d"];
const LEVELS = ["debug", "info", "warn", "error", "critical"];

function meter(value, max, kind = "") {
  const bar = h("span");
  bar.style.width = `${max > 0 ? Math.min(100, (value / max) * 100) : 0}%`;
  return h("div", { class: ["meter", kind ? `meter-${kind}` : null], "aria-hidden": "true" }, bar);
}

function table(headers, rows, { label, numeric = [] } = {}) {
  return h(
    "table",
    { class: "table", "aria-label": label },
    h("thead", null, h("tr", null, headers.map((text, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, text)))),
    h("tbody", null, rows),
  );
}

function levelsPanel(byLevel) {
  const counts = LEVELS.map((level) => [level, Number(byLevel[level]) || 0]);
  const max = counts.reduce((m, [, n]) => Math.max(m, n), 0);
  return h(
    "section",
    { class: "panel" },
    h("h2", null, "Events by level"),
    table(
      ["Level", "Events", ""],
      counts.map(([level, n]) =>
        h(
          "tr",
          null,
          h("td", null, h("span", { class: `level level-${levelName(level)}` }, level)),
          h("td", { class: "num" }, formatCount(n)),
          h("td", null, meter(n, max, level === "error" || level === "critical" ? "error" : "")),
        ),
      ),
      { label: "Events by level", numeric: [1] },
    ),
  );
}

function servicesPanel(byService, since) {
  const max = byService.reduce((m, s) => Math.max(m, Number(s.events) || 0), 0);
  return h(
    "section",
    { class: "panel" },
    h("h2", null, "Events by service"),
    byService.length
      ? table(
          ["Service", "Events", "Errors", ""],
          byService.map((s) =>
            h(
              "tr",
              null,
              h("td", null, h("a", { href: viewHref("analysis", { since, service: s.service }) }, clip(s.service, 30))),
              h("td", { class: "num" }, formatCount(s.events)),
              h("td", { class: "num" }, formatCount(s.errors)),
              h("td", null, meter(Number(s.events) || 0, max)),
            ),
          ),
          { label: "Events by service", numeric: [1, 2] },
        )
      : notice("No events."),
  );
}

function errorsPanel(groups) {
  return h(
    "section",
    { class: "panel" },
    h("h2", null, "Top error groups"),
    groups.length
      ? table(
          ["Count", "Error", "Category", "Services", "Last seen"],
          groups.map((g) =>
            h(
              "tr",
              null,
              h("td", { class: "num" }, formatCount(g.count)),
              h("td", null, h("code", null, clip([g.type, g.message].filter(Boolean).join(": ") || "error", 120))),
              h("td", null, h("span", { class: `chip category category-${token(g.category || "unknown")}` }, g.category || "unknown")),
              h("td", null, (Array.isArray(g.services) ? g.services : []).join(", ")),
              h("td", null, formatDateTime(g.last_seen)),
            ),
          ),
          { label: "Top error groups", numeric: [0] },
        )
      : notice("No errors in this window."),
    h("p", null, h("a", { href: "#/errors" }, "All error groups →")),
  );
}

function slowestPanel(steps, sampleRate) {
  const max = steps.reduce((m, s) => Math.max(m, Number(s.p95_ms) || 0), 0);
  return h(
    "section",
    { class: "panel" },
    h("h2", null, "Slowest nodes and layers"),
    steps.length
      ? table(
          ["Name", "Kind", "Runs", "Errors", "p50", "p95", "Max", ""],
          steps.map((s) =>
            h(
              "tr",
              null,
              h("td", null, h("code", null, clip(s.name, 40))),
              h("td", null, s.kind || "—"),
              h("td", { class: "num" }, formatCount(s.count)),
              h("td", { class: "num" }, formatCount(s.errors)),
              h("td", { class: "num" }, formatDuration(s.p50_ms)),
              h("td", { class: "num" }, formatDuration(s.p95_ms)),
              h("td", { class: "num" }, formatDuration(s.max_ms)),
              h("td", null, meter(Number(s.p95_ms) || 0, max)),
            ),
          ),
          { label: "Slowest nodes and layers", numeric: [2, 3, 4, 5, 6] },
        )
      : notice("No node or layer durations in this window."),
    typeof sampleRate === "number" && sampleRate < 1
      ? h("p", { class: "muted" }, `Percentiles from a ${(sampleRate * 100).toFixed(1)} % sample of the window.`)
      : null,
  );
}

function failingPanel(runs) {
  if (!runs.length) return null;
  return h(
    "section",
    { class: "panel" },
    h("h2", null, "Failing runs"),
    table(
      ["Run", "Name", "Status", "Failed steps", "Started"],
      runs.map((run) =>
        h(
          "tr",
          null,
          h("td", null, viewLink(clip(run.run_id, 24), "runs", run.run_id)),
          h("td", null, clip(run.name || run.kind || "", 40)),
          h("td", null, h("span", { class: `chip status status-${token(run.status)}` }, String(run.status ?? ""))),
          h("td", { class: "num" }, formatCount(run.error_count)),
          h("td", null, formatDateTime(run.started_at)),
        ),
      ),
      { label: "Failing runs", numeric: [3] },
    ),
  );
}

function controls(since, service) {
  const form = h(
    "form",
    { class: "filters", "aria-label": "Analysis window" },
    h(
      "label",
      { class: "field" },
      h("span", null, "Window"),
      h("select", { name: "since" }, WINDOWS.map((w) => h("option", { value: w, selected: w === since }, `last ${w}`))),
    ),
    h(
      "label",
      { class: "field" },
      h("span", null, "Service"),
      h("input", { name: "service", type: "text", value: service, placeholder: "all", autocomplete: "off", maxlength: "256" }),
    ),
    h("button", { type: "submit" }, "Apply"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    window.location.hash = viewHref("analysis", {
      since: String(data.get("since") || "1h"),
      service: String(data.get("service") || "").trim(),
    });
  });
  return form;
}

export function mount(root, { query, signal }) {
  const since = WINDOWS.includes(query.get("since")) ? query.get("since") : "1h";
  const service = (query.get("service") || "").trim();
  const body = h("div", null, notice("Analysing…"));
  root.append(
    h("div", { class: "view-head" }, h("h1", null, "Analysis"), service ? h("span", { class: "chip service-chip" }, service) : null),
    controls(since, service),
    body,
  );

  getJSON("/v1/analysis", { since, service }, { signal })
    .then((data) => {
      const window_ = data.window || {};
      const totals = data.totals || {};
      const byLevel = data.by_level || {};
      const byService = Array.isArray(data.by_service) ? data.by_service : [];
      const timeline = Array.isArray(data.timeline) ? data.timeline : [];
      const steps = Array.isArray(data.slowest_steps) ? data.slowest_steps : [];
      const topErrors = Array.isArray(data.top_errors) ? data.top_errors : [];
      const failing = Array.isArray(data.failing_runs) ? data.failing_runs : [];
      replace(
        body,
        h(
          "section",
          { class: "panel chart-panel" },
          h(
            "h2",
            null,
            "Error rate over time ",
            h(
              "span",
              { class: "muted" },
              `${formatCount(totals.errors)} errors in ${formatCount(totals.events)} events, ` +
                `${formatDateTime(window_.since)} – ${formatDateTime(window_.until)}`,
            ),
          ),
          errorRateChart(timeline, { bucketSeconds: Number(window_.bucket_seconds) || 60 }),
          h(
            "ul",
            { class: "legend" },
            h("li", { class: "key-total" }, "events"),
            h("li", { class: "key-error" }, "errors"),
            h("li", { class: "key-rate" }, "error rate"),
          ),
        ),
        h(
          "div",
          { class: "analysis-grid" },
          h(
            "div",
            null,
            slowestPanel(steps, data.sampled ? data.step_sample_rate : 1),
            errorsPanel(topErrors),
            failingPanel(failing),
          ),
          h("div", null, levelsPanel(byLevel), servicesPanel(byService, since)),
        ),
      );
    })
    .catch((error) => {
      if (error.name === "AbortError") return;
      replace(body, notice(`Could not analyse: ${error.message}`, "error"));
    });
  return null;
}
