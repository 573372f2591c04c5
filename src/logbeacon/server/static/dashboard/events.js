// One event as a list row (tail, search, run steps): a summary button that expands the full
// JSON, and links on its ids to the trace, session and run views.

import {
  clip,
  eventDuration,
  formatClock,
  formatDuration,
  h,
  levelName,
  viewHref,
  viewLink,
} from "./dom.js";

/** The one-line human summary of an event. */
export function summary(event) {
  if (typeof event.message === "string" && event.message) return event.message;
  const error = event.error;
  if (error && typeof error === "object") {
    const type = typeof error.type === "string" ? error.type : "error";
    const message = typeof error.message === "string" ? error.message : "";
    return message ? `${type}: ${message}` : type;
  }
  const http = event.http;
  if (http && typeof http === "object") {
    const parts = [http.method, http.route || event.route, http.status ? `→ ${http.status}` : ""];
    return parts.filter(Boolean).join(" ");
  }
  const what = [event.node, event.layer_name, event.status].filter((v) => typeof v === "string");
  return what.join(" · ");
}

// The fields a person looks for first; the rest follow in stored order.
const FIRST_KEYS = ["timestamp", "level", "service", "event", "message", "error", "http", "status"];

/** The event as indented JSON text, its most telling fields first (key order carries no
 * meaning in JSON, so nothing is lost). */
export function eventJSON(event) {
  const ordered = {};
  for (const key of FIRST_KEYS) if (key in event) ordered[key] = event[key];
  for (const [key, value] of Object.entries(event)) if (!(key in ordered)) ordered[key] = value;
  return JSON.stringify(ordered, null, 2);
}

/** Links for the ids an event carries (trace, session, run, request, job). */
export function idLinks(event) {
  const links = [];
  if (typeof event.trace_id === "string" && /^[0-9a-f]{32}$/.test(event.trace_id)) {
    links.push(viewLink(`trace ${event.trace_id.slice(0, 8)}`, "trace", event.trace_id));
  }
  if (typeof event.session_id === "string" && event.session_id) {
    links.push(viewLink(`session ${clip(event.session_id, 24)}`, "session", event.session_id));
  }
  if (typeof event.run_id === "string" && event.run_id) {
    links.push(viewLink(`run ${clip(event.run_id, 16)}`, "runs", event.run_id));
  }
  for (const field of ["request_id", "job_id"]) {
    const value = event[field];
    if (typeof value === "string" && value && !(field === "job_id" && value === event.run_id)) {
      const short = field === "request_id" ? "request" : "job";
      links.push(h("a", { href: viewHref("search", { q: value }) }, `${short} ${clip(value, 16)}`));
    }
  }
  return links;
}

/** The row of one event: a summary that expands into the full JSON, then its id links. */
export function eventRow(event) {
  const level = levelName(event.level);
  const duration = eventDuration(event);
  const detail = h("pre", { class: "event-json", hidden: true }, eventJSON(event));
  const toggle = h(
    "button",
    { type: "button", class: "event-summary", "aria-expanded": "false" },
    h("time", { datetime: String(event.timestamp ?? "") }, formatClock(event.timestamp)),
    h("span", { class: `level level-${level}` }, String(event.level ?? "?")),
    h("span", { class: "service" }, clip(event.service, 24)),
    h("span", { class: "event-name" }, clip(event.event, 48)),
    h("span", { class: "message" }, clip(summary(event), 300)),
    duration === null ? null : h("span", { class: "duration" }, formatDuration(duration)),
  );
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    detail.hidden = !open;
  });
  const links = idLinks(event);
  return h(
    "li",
    {
      class: `event-row level-row-${level}`,
      dataset: { eventId: typeof event.event_id === "string" ? event.event_id : "" },
    },
    h("div", { class: "event-line" }, toggle, links.length ? h("span", { class: "ids" }, links) : null),
    detail,
  );
}

/** A list of events, in the order given. */
export function eventList(events, { label = "Events" } = {}) {
  return h("ol", { class: "event-list", "aria-label": label }, events.map(eventRow));
}
