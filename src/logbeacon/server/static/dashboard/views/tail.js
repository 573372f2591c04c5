// Live tail: the latest events, then every new one as it is stored (GET /v1/stream), newest
// at the top. Filters live in the address (#/tail?level=error&service=api) so a view can be
// bookmarked or shared. Pausing keeps the stream open and buffers what arrives (bounded).

import { getJSON, openStream } from "../api.js";
import { h, notice, replace, viewHref } from "../dom.js";
import { eventRow } from "../events.js";

const MAX_ROWS = 500; // rows kept on screen; the oldest go first
const MAX_BUFFER = 1000; // events held while paused; beyond that the oldest are dropped
const MAX_SEEN = 5000; // event ids remembered to drop duplicates (history vs stream)
const HISTORY = 100;
const FILTERS = ["level", "service", "session_id", "q"];
const LEVEL_CHOICES = [
  ["", "any level"],
  ["debug", "debug +"],
  ["info", "info +"],
  ["warn", "warn +"],
  ["error", "error +"],
  ["critical", "critical"],
];

function filterForm(filters) {
  const field = (name, label, placeholder) =>
    h(
      "label",
      { class: "field" },
      h("span", null, label),
      h("input", {
        name,
        type: "text",
        value: filters[name] || "",
        placeholder,
        autocomplete: "off",
        spellcheck: "false",
        maxlength: "256",
      }),
    );
  const level = h(
    "select",
    { name: "level" },
    LEVEL_CHOICES.map(([value, label]) =>
      h("option", { value, selected: (filters.level || "") === value }, label),
    ),
  );
  return h(
    "form",
    { class: "filters", "aria-label": "Tail filters" },
    h("label", { class: "field" }, h("span", null, "Level"), level),
    field("service", "Service", "api, web, langgraph…"),
    field("session_id", "Session id", "any"),
    field("q", "Text", "words in event, message, error"),
    h("button", { type: "submit" }, "Apply"),
  );
}

export function mount(root, { query, signal }) {
  const filters = {};
  for (const name of FILTERS) {
    const value = query.get(name);
    if (value) filters[name] = value;
  }
  const seen = new Set();
  const buffer = [];
  let paused = false;
  let dropped = 0;
  let connection = "connecting";

  const form = filterForm(filters);
  const pauseButton = h("button", { type: "button", class: "pause", "aria-pressed": "false" });
  const clearButton = h("button", { type: "button" }, "Clear");
  const status = h("span", { class: "tail-status", role: "status", "aria-live": "polite" });
  const count = h("span", { class: "muted tail-count" });
  const list = h("ol", { class: "event-list tail-list", "aria-label": "Events, newest first" });
  const empty = notice("Waiting for events…");

  root.append(
    h("div", { class: "view-head" }, h("h1", null, "Live tail"), status),
    form,
    h("div", { class: "toolbar" }, pauseButton, clearButton, count),
    empty,
    list,
  );

  function refreshStatus() {
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    let text;
    if (paused) {
      text = `paused · ${buffer.length} new buffered${dropped ? ` (${dropped} dropped)` : ""}`;
    } else {
      text = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" }[connection];
      text = text || "stream closed";
    }
    status.textContent = text;
    status.className = `tail-status tail-${paused ? "paused" : connection}`;
    count.textContent = `${list.childElementCount} shown`;
    empty.hidden = list.childElementCount > 0;
  }

  function isNew(event) {
    const id = event.event_id;
    if (typeof id !== "string" || !id) return true;
    if (seen.has(id)) return false;
    seen.add(id);
    if (seen.size > MAX_SEEN) seen.delete(seen.values().next().value);
    return true;
  }

  function trim() {
    while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
  }

  function showLive(event) {
    list.prepend(eventRow(event));
    trim();
  }

  function onEvent(event) {
    if (!isNew(event)) return;
    if (paused) {
      buffer.push(event);
      if (buffer.length > MAX_BUFFER) {
        buffer.shift();
        dropped += 1;
      }
    } else {
      showLive(event);
    }
    refreshStatus();
  }

  function togglePause() {
    paused = !paused;
    if (!paused) {
      for (const event of buffer) showLive(event);
      buffer.length = 0;
      dropped = 0;
    }
    refreshStatus();
  }

  pauseButton.addEventListener("click", togglePause);
  clearButton.addEventListener("click", () => {
    list.replaceChildren();
    refreshStatus();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const name of FILTERS) next[name] = String(data.get(name) || "").trim();
    window.location.hash = viewHref("tail", next);
  });

  // The stream first, then the history, so nothing stored in between is missed; duplicates
  // (an event in both) are dropped by id.
  const close = openStream(filters, onEvent, (state) => {
    connection = state;
    refreshStatus();
  });
  refreshStatus();
  getJSON("/v1/logs", { ...filters, limit: HISTORY }, { signal })
    .then((body) => {
      for (const event of body.events || []) {
        if (isNew(event)) list.append(eventRow(event));
      }
      trim();
      refreshStatus();
    })
    .catch((error) => {
      if (error.name === "AbortError") return;
      replace(empty, `Could not load recent events: ${error.message}`);
      empty.className = "notice notice-error";
      empty.hidden = false;
    });

  return {
    dispose: close,
    onKey(event) {
      if (event.key === "p") {
        togglePause();
        return true;
      }
      return false;
    },
  };
}
