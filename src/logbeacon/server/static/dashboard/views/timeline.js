// Trace and session timelines: one waterfall across services — the browser error, the API
// request and the agent nodes in one picture. One row per event, ordered by start; events
// with a duration draw a bar from start to end (they are logged when they finish), the others
// a tick at their time. Each service gets its own colour lane; errors are marked red.

import { ApiError, getJSON } from "../api.js";
import {
  clip,
  eventDuration,
  formatDateTime,
  formatDuration,
  h,
  levelName,
  notice,
  parseTime,
  replace,
} from "../dom.js";
import { eventJSON, idLinks, summary } from "../events.js";

const LANES = 8; // distinct lane colours in style.css
const SESSION_LIMIT = 1000;
const TICKS = [0, 0.25, 0.5, 0.75, 1];

function isError(event) {
  const level = levelName(event.level);
  if (level === "error" || level === "critical") return true;
  if (event.status === "error") return true;
  const http = event.http;
  return Boolean(http && typeof http === "object" && typeof http.status === "number" && http.status >= 500);
}

/** Spans of the events: start/end in epoch ms, ordered by start (stable). */
function spans(events) {
  const result = [];
  events.forEach((event, order) => {
    const end = parseTime(event.timestamp);
    const duration = eventDuration(event);
    const start = end !== null && duration !== null && duration >= 0 ? end - duration : end;
    result.push({ event, start, end, duration, order });
  });
  result.sort((a, b) => {
    if (a.start === null || b.start === null) return a.order - b.order;
    return a.start - b.start || a.order - b.order;
  });
  return result;
}

function summarize(events) {
  const services = [];
  let errors = 0;
  let first = null;
  let last = null;
  for (const event of events) {
    if (typeof event.service === "string" && !services.includes(event.service)) {
      services.push(event.service);
    }
    if (isError(event)) errors += 1;
    const time = parseTime(event.timestamp);
    if (time !== null) {
      first = first === null ? time : Math.min(first, time);
      last = last === null ? time : Math.max(last, time);
    }
  }
  return {
    services,
    errors,
    startedAt: first === null ? null : new Date(first).toISOString(),
    durationMs: first === null ? null : last - first,
  };
}

function facts(items) {
  return h(
    "dl",
    { class: "facts" },
    items.map(([label, value]) => h("div", null, h("dt", null, label), h("dd", null, value))),
  );
}

/** The waterfall of `events` (any order); `hideHref` drops the id link of the current view. */
export function waterfall(events, { hideHref = null } = {}) {
  const rows = spans(events);
  const lanes = new Map();
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const row of rows) {
    const service = typeof row.event.service === "string" ? row.event.service : "?";
    if (!lanes.has(service)) lanes.set(service, lanes.size % LANES);
    if (row.start !== null) {
      t0 = Math.min(t0, row.start);
      t1 = Math.max(t1, row.end);
    }
  }
  const known = Number.isFinite(t0);
  const total = known ? Math.max(t1 - t0, 1) : 1;

  const legend = h(
    "ul",
    { class: "lane-legend", "aria-label": "Services" },
    [...lanes.entries()].map(([service, lane]) =>
      h(
        "li",
        { class: `lane-${lane}` },
        h("span", { class: "lane-swatch", "aria-hidden": "true" }),
        service,
        h("span", { class: "muted" }, ` ${rows.filter((r) => r.event.service === service).length}`),
      ),
    ),
  );

  const axis = h(
    "div",
    { class: "wf-row wf-axis", "aria-hidden": "true" },
    h("span", { class: "wf-offset" }, "start"),
    h("span", { class: "wf-service" }, "service"),
    h("span", { class: "wf-label-head" }, "event"),
    h(
      "div",
      { class: "wf-track" },
      TICKS.map((fraction) => {
        const tick = h("span", { class: "wf-tick" }, formatDuration(total * fraction));
        tick.style.left = `${fraction * 100}%`;
        return tick;
      }),
    ),
    h("span", { class: "wf-duration" }, "took"),
  );

  const list = h(
    "ol",
    { class: "waterfall", "aria-label": "Events by start time" },
    rows.map((row) => {
      const event = row.event;
      const service = typeof event.service === "string" ? event.service : "?";
      const error = isError(event);
      const offset = known && row.start !== null ? row.start - t0 : null;
      const track = h("div", { class: "wf-track", "aria-hidden": "true" });
      if (offset !== null) {
        const mark = h("span", { class: row.duration !== null ? "wf-bar" : "wf-mark" });
        mark.style.left = `${(offset / total) * 100}%`;
        if (row.duration !== null) mark.style.width = `${Math.max((row.duration / total) * 100, 0.3)}%`;
        track.append(mark);
      }
      const detail = h("pre", { class: "event-json", hidden: true }, eventJSON(event));
      const label = h(
        "button",
        { type: "button", class: "wf-label", "aria-expanded": "false" },
        h("span", { class: "event-name" }, clip(event.event, 40)),
        h("span", { class: "message" }, clip(summary(event), 160)),
      );
      // The id links (other traces, the session, the run) come with the expanded JSON.
      const links = idLinks(event).filter((link) => link.getAttribute("href") !== hideHref);
      const ids = links.length ? h("span", { class: "ids wf-ids", hidden: true }, links) : null;
      label.addEventListener("click", () => {
        const open = label.getAttribute("aria-expanded") !== "true";
        label.setAttribute("aria-expanded", String(open));
        detail.hidden = !open;
        if (ids) ids.hidden = !open;
      });
      return h(
        "li",
        {
          class: ["wf-row", `lane-${lanes.get(service)}`, error ? "wf-error" : null],
          dataset: { service, eventId: typeof event.event_id === "string" ? event.event_id : "" },
        },
        h("span", { class: "wf-offset" }, offset === null ? "—" : `+${formatDuration(offset)}`),
        h("span", { class: "wf-service" }, clip(service, 20)),
        label,
        track,
        h("span", { class: "wf-duration" }, row.duration === null ? "" : formatDuration(row.duration)),
        ids,
        detail,
      );
    }),
  );
  return h("div", { class: "timeline" }, legend, h("div", { class: "waterfall-frame" }, axis, list));
}

function render(root, { kind, id, events, summaryData, note }) {
  const title = h("h1", null, `${kind} `, h("code", { class: "id" }, id));
  const errorText = summaryData.errors ? `${summaryData.errors} errors` : "none";
  replace(
    root,
    h("div", { class: "view-head" }, title),
    facts([
      ["Started", formatDateTime(summaryData.startedAt)],
      ["Spans", formatDuration(summaryData.durationMs)],
      ["Services", summaryData.services.join(", ") || "—"],
      ["Events", String(events.length)],
      ["Errors", h("span", { class: summaryData.errors ? "text-error" : null }, errorText)],
    ]),
    note ? notice(note) : null,
    waterfall(events, { hideHref: `#/${kind.toLowerCase()}/${encodeURIComponent(id)}` }),
  );
}

export function mountTrace(root, { params, signal }) {
  const id = params[0].toLowerCase();
  root.append(h("h1", null, "Trace"), notice("Loading the trace…"));
  if (!/^[0-9a-f]{32}$/.test(id)) {
    replace(root, h("h1", null, "Trace"), notice("A trace id is 32 hexadecimal characters.", "error"));
    return null;
  }
  getJSON(`/v1/traces/${id}`, null, { signal })
    .then((trace) => {
      const events = Array.isArray(trace.events) ? trace.events : [];
      const summaryData = summarize(events);
      if (typeof trace.error_count === "number") summaryData.errors = trace.error_count;
      if (typeof trace.duration_ms === "number") summaryData.durationMs = trace.duration_ms;
      if (Array.isArray(trace.services)) summaryData.services = trace.services;
      const note = trace.truncated ? "Only the first events of this very long trace are shown." : null;
      render(root, { kind: "Trace", id, events, summaryData, note });
    })
    .catch((error) => {
      if (error.name === "AbortError") return;
      const text =
        error instanceof ApiError && error.status === 404
          ? "No events with this trace id are stored (or they are past retention)."
          : `Could not load the trace: ${error.message}`;
      replace(root, h("h1", null, "Trace ", h("code", { class: "id" }, id)), notice(text, "error"));
    });
  return null;
}

export function mountSession(root, { params, signal }) {
  const id = params[0];
  root.append(h("h1", null, "Session"), notice("Loading the session…"));
  getJSON("/v1/logs", { session_id: id, limit: SESSION_LIMIT }, { signal })
    .then((page) => {
      const events = (Array.isArray(page.events) ? page.events : []).slice().reverse();
      if (!events.length) {
        replace(
          root,
          h("h1", null, "Session ", h("code", { class: "id" }, id)),
          notice("No events with this session id are stored."),
        );
        return;
      }
      const note = page.next_cursor
        ? `Showing the latest ${SESSION_LIMIT} events of this session.`
        : null;
      render(root, { kind: "Session", id, events, summaryData: summarize(events), note });
    })
    .catch((error) => {
      if (error.name === "AbortError") return;
      replace(root, h("h1", null, "Session"), notice(`Could not load the session: ${error.message}`, "error"));
    });
  return null;
}
