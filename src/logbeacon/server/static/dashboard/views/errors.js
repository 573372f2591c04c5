// Errors: the groups of GET /v1/errors (one per fingerprint) with how often and where they
// happen, their category and the suggested next steps, and links to sample traces. Live: an
// error arriving on the tail reloads the groups (at most every RELOAD_MS).

import { getJSON, openStream } from "../api.js";
import {
  clip,
  formatAgo,
  formatCount,
  formatDateTime,
  h,
  notice,
  replace,
  token,
  viewHref,
  viewLink,
} from "../dom.js";

const RELOAD_MS = 500;

function text(value) {
  return typeof value === "string" ? value : "";
}

function list(value) {
  return Array.isArray(value) ? value.filter((item) => typeof item === "string") : [];
}

function groupCard(group) {
  const category = text(group.category) || "unknown";
  const services = list(group.services);
  const suggestions = list(group.suggestions);
  const traces = list(group.sample_trace_ids).filter((id) => /^[0-9a-f]{32}$/.test(id));
  const sample = group.sample_event && typeof group.sample_event === "object" ? group.sample_event : null;
  const title = [text(group.type), text(group.message)].filter(Boolean).join(": ") || "error";

  const related = [];
  for (const id of traces.slice(0, 5)) related.push(viewLink(`trace ${id.slice(0, 8)}`, "trace", id));
  if (sample && typeof sample.session_id === "string" && sample.session_id) {
    related.push(viewLink(`session ${clip(sample.session_id, 20)}`, "session", sample.session_id));
  }
  if (sample && typeof sample.run_id === "string" && sample.run_id) {
    related.push(viewLink(`run ${clip(sample.run_id, 16)}`, "runs", sample.run_id));
  }
  if (typeof group.type === "string" && group.type) {
    related.push(h("a", { href: viewHref("tail", { level: "error", q: group.type }) }, "tail these"));
  }

  return h(
    "li",
    { class: "error-group", dataset: { fingerprint: text(group.fingerprint) } },
    h(
      "div",
      { class: "error-head" },
      h("span", { class: "error-count", title: "occurrences" }, formatCount(group.count)),
      h("h2", { class: "error-title" }, clip(title, 240)),
      h("span", { class: `chip category category-${token(category)}` }, category),
    ),
    h(
      "dl",
      { class: "error-facts" },
      h("dt", null, "Services"),
      h("dd", null, services.length ? services.map((s) => h("span", { class: "chip service-chip" }, s)) : "—"),
      h("dt", null, "First seen"),
      h("dd", null, h("time", { datetime: text(group.first_seen) }, formatDateTime(group.first_seen))),
      h("dt", null, "Last seen"),
      h(
        "dd",
        null,
        h("time", { datetime: text(group.last_seen) }, formatDateTime(group.last_seen)),
        h("span", { class: "muted" }, ` (${formatAgo(group.last_seen)})`),
      ),
    ),
    suggestions.length
      ? h(
          "div",
          { class: "suggestions" },
          h("h3", null, "Suggestions"),
          h("ul", null, suggestions.map((s) => h("li", null, s))),
        )
      : null,
    related.length ? h("p", { class: "related" }, related) : null,
  );
}

const WINDOWS = [
  ["", "all stored"],
  ["1h", "seen in the last hour"],
  ["24h", "seen in the last 24 h"],
  ["7d", "seen in the last 7 days"],
];

function windowForm(since) {
  const select = h(
    "select",
    { name: "since", "aria-label": "Errors seen in" },
    WINDOWS.map(([value, label]) => h("option", { value, selected: value === since }, label)),
  );
  select.addEventListener("change", () => {
    window.location.hash = viewHref("errors", { since: select.value });
  });
  return select;
}

export function mount(root, { query, signal }) {
  const since = WINDOWS.some(([value]) => value === query.get("since")) ? query.get("since") : "";
  const body = h("div", null, notice("Loading error groups…"));
  const refresh = h("button", { type: "button" }, "Refresh");
  const summaryLine = h("span", { class: "muted" });
  root.append(
    h("div", { class: "view-head" }, h("h1", null, "Errors"), windowForm(since), summaryLine, refresh),
    body,
  );

  async function load() {
    try {
      const data = await getJSON("/v1/errors", { since }, { signal });
      const groups = Array.isArray(data.groups) ? data.groups : [];
      const total = groups.reduce((sum, g) => sum + (typeof g.count === "number" ? g.count : 0), 0);
      summaryLine.textContent = `${formatCount(groups.length)} groups · ${formatCount(total)} errors`;
      if (!groups.length) {
        replace(body, notice("No errors stored in this window."));
        return;
      }
      replace(body, h("ol", { class: "error-groups", "aria-label": "Error groups" }, groups.map(groupCard)));
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(body, notice(`Could not load errors: ${error.message}`, "error"));
    }
  }

  let reloadTimer = null;
  function reloadSoon() {
    if (reloadTimer !== null) return;
    reloadTimer = window.setTimeout(() => {
      reloadTimer = null;
      load();
    }, RELOAD_MS);
  }

  refresh.addEventListener("click", load);
  const close = openStream({ level: "error" }, reloadSoon);
  load();
  return {
    dispose() {
      close();
      if (reloadTimer !== null) window.clearTimeout(reloadTimer);
    },
  };
}
