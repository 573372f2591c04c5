// Search by any id: a 32-hex id with stored events opens its trace; anything else is looked
// up as a session, request, run, job and correlation id at once (GET /v1/logs filters), and
// when no id matches, as words in the events' text.

import { getJSON } from "../api.js";
import { clip, h, notice, replace, viewHref, viewLink } from "../dom.js";
import { eventList } from "../events.js";

const TRACE_RE = /^[0-9a-fA-F]{32}$/;
const MAX_LENGTH = 256;
const PER_FIELD = 50;
const ID_FIELDS = [
  ["session_id", "Session"],
  ["request_id", "Request"],
  ["run_id", "Run"],
  ["job_id", "Job"],
  ["correlation_id", "Correlation"],
];

function openLink(field, value, events) {
  if (field === "session_id") return viewLink("Open the session timeline", "session", value);
  if (field === "run_id" || field === "job_id") return viewLink("Open the run", "runs", events[0].run_id || value);
  const trace = events.find((e) => typeof e.trace_id === "string" && /^[0-9a-f]{32}$/.test(e.trace_id));
  return trace ? viewLink("Open its trace", "trace", trace.trace_id) : null;
}

function section(field, label, value, page) {
  const events = page.events;
  const more = page.next_cursor ? `${PER_FIELD}+ events` : `${events.length} events`;
  return h(
    "section",
    { class: "search-result", dataset: { field } },
    h(
      "div",
      { class: "view-head" },
      h("h2", null, `${label} id `, h("code", { class: "id" }, clip(value, 64))),
      h("span", { class: "muted" }, more),
      openLink(field, value, events),
    ),
    eventList(events, { label: `Events with this ${label.toLowerCase()} id` }),
  );
}

export function mount(root, { query, signal }) {
  const value = (query.get("q") || "").trim();
  root.append(h("h1", null, "Search"));
  const body = h("div", null);
  root.append(body);
  if (!value) {
    body.append(notice("Type a trace, session, request, run or job id in the search box (press /)."));
    return null;
  }
  if (value.length > MAX_LENGTH) {
    body.append(notice(`An id is at most ${MAX_LENGTH} characters.`, "error"));
    return null;
  }
  body.append(notice(`Looking up ${clip(value, 80)}…`));

  (async () => {
    if (TRACE_RE.test(value)) {
      const trace = value.toLowerCase();
      const page = await getJSON("/v1/logs", { trace_id: trace, limit: 1 }, { signal });
      if (page.events && page.events.length) {
        window.location.replace(`#/trace/${trace}`);
        return;
      }
    }
    const pages = await Promise.all(
      ID_FIELDS.map(([field]) =>
        getJSON("/v1/logs", { [field]: value, limit: PER_FIELD }, { signal }).catch((error) => {
          if (error.name === "AbortError") throw error;
          return { events: [], next_cursor: null, error };
        }),
      ),
    );
    const sections = [];
    ID_FIELDS.forEach(([field, label], i) => {
      const page = pages[i];
      if (Array.isArray(page.events) && page.events.length) sections.push(section(field, label, value, page));
    });
    if (sections.length) {
      replace(body, sections);
      return;
    }
    const text = await getJSON("/v1/logs", { q: value, limit: PER_FIELD }, { signal });
    const events = Array.isArray(text.events) ? text.events : [];
    if (!events.length) {
      replace(body, notice(`Nothing matches ${clip(value, 80)}: no event has it as an id or in its text.`));
      return;
    }
    replace(
      body,
      notice("No event has this id; these events contain it as text:"),
      h("p", null, h("a", { href: viewHref("tail", { q: value }) }, "Follow these words in the live tail")),
      eventList(events, { label: "Events containing the text" }),
    );
  })().catch((error) => {
    if (error.name === "AbortError") return;
    replace(body, notice(`Search failed: ${error.message}`, "error"));
  });
  return null;
}
