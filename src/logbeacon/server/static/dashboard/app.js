// The dashboard's entry module: hash routing between views, the id search box, keyboard
// shortcuts and the signed-out banner. Each view module exports mount functions
// `(root, {params, query, signal}) → {dispose?, onKey?} | undefined`; leaving a view aborts
// its `signal` (pending fetches) and calls `dispose` (open streams, timers).

import { SIGNED_OUT_EVENT } from "./api.js";
import { h, notice, replace, viewHref } from "./dom.js";
import * as alerts from "./views/alerts.js";
import * as analysis from "./views/analysis.js";
import * as errors from "./views/errors.js";
import * as runs from "./views/runs.js";
import * as search from "./views/search.js";
import * as tail from "./views/tail.js";
import * as timeline from "./views/timeline.js";

const ROUTES = [
  { path: ["tail"], nav: "tail", title: "Live tail", mount: tail.mount },
  { path: ["errors"], nav: "errors", title: "Errors", mount: errors.mount },
  { path: ["trace", ":id"], nav: null, title: "Trace", mount: timeline.mountTrace },
  { path: ["session", ":id"], nav: null, title: "Session", mount: timeline.mountSession },
  { path: ["runs"], nav: "runs", title: "Runs", mount: runs.mountList },
  { path: ["runs", ":id"], nav: "runs", title: "Run", mount: runs.mountRun },
  { path: ["analysis"], nav: "analysis", title: "Analysis", mount: analysis.mount },
  { path: ["alerts"], nav: "alerts", title: "Alerts", mount: alerts.mount },
  { path: ["search"], nav: null, title: "Search", mount: search.mount },
];
const DEFAULT_ROUTE = "#/tail";
const VIEW_KEYS = { 1: "#/tail", 2: "#/errors", 3: "#/runs", 4: "#/analysis", 5: "#/alerts" };

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const searchForm = document.getElementById("search-form");
const searchInput = document.getElementById("search-input");

let current = null; // {controller, view}

/** Split `#/runs/abc?x=1` into decoded path parts and the query. */
function parseHash(hash) {
  const text = hash.replace(/^#\/?/, "");
  const mark = text.indexOf("?");
  const path = mark === -1 ? text : text.slice(0, mark);
  const query = new URLSearchParams(mark === -1 ? "" : text.slice(mark + 1));
  const parts = path.split("/").filter((part) => part !== "");
  try {
    return { parts: parts.map((part) => decodeURIComponent(part)), query };
  } catch {
    return { parts: null, query };
  }
}

function match(parts) {
  if (parts === null) return null;
  for (const route of ROUTES) {
    if (route.path.length !== parts.length) continue;
    const params = [];
    const ok = route.path.every((segment, i) => {
      if (segment.startsWith(":")) {
        params.push(parts[i]);
        return parts[i].length > 0;
      }
      return segment === parts[i];
    });
    if (ok) return { route, params };
  }
  return null;
}

function leaveView() {
  if (current === null) return;
  current.controller.abort();
  try {
    if (current.view && typeof current.view.dispose === "function") current.view.dispose();
  } finally {
    current = null;
  }
}

function markNav(navName) {
  for (const link of document.querySelectorAll(".nav a")) {
    if (link.dataset.view === navName) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function render({ focus }) {
  if (!window.location.hash || window.location.hash === "#" || window.location.hash === "#/") {
    window.location.replace(DEFAULT_ROUTE);
    return;
  }
  const { parts, query } = parseHash(window.location.hash);
  const found = match(parts);
  leaveView();
  const controller = new AbortController();
  current = { controller, view: null };
  const section = h("section", { class: "view" });
  replace(main, section);
  if (found === null) {
    markNav(null);
    document.title = "Not found · logbeacon";
    section.append(
      h("h1", null, "Nothing here"),
      notice("This address is not a dashboard view."),
      h("p", null, h("a", { href: DEFAULT_ROUTE }, "Go to the live tail")),
    );
    return;
  }
  const { route, params } = found;
  markNav(route.nav);
  document.title = `${route.title} · logbeacon`;
  if (route.path[0] === "search") searchInput.value = query.get("q") || "";
  try {
    current.view = route.mount(section, { params, query, signal: controller.signal }) || null;
  } catch (error) {
    section.append(notice(`This view failed to start: ${error.message}`, "error"));
  }
  if (focus) main.focus({ preventScroll: false });
}

function isTyping(target) {
  if (!(target instanceof Element)) return false;
  return Boolean(target.closest("input, textarea, select, [contenteditable='true']"));
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Escape" && isTyping(event.target)) {
    event.target.blur();
    return;
  }
  if (isTyping(event.target)) return;
  if (event.key === "/") {
    event.preventDefault();
    searchInput.focus();
    searchInput.select();
    return;
  }
  if (Object.prototype.hasOwnProperty.call(VIEW_KEYS, event.key)) {
    event.preventDefault();
    window.location.hash = VIEW_KEYS[event.key];
    return;
  }
  if (current && current.view && typeof current.view.onKey === "function") {
    if (current.view.onKey(event)) event.preventDefault();
  }
});

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = searchInput.value.trim();
  if (!q) return;
  const target = viewHref("search", { q });
  if (window.location.hash === target) render({ focus: true });
  else window.location.hash = target;
});

window.addEventListener(SIGNED_OUT_EVENT, () => {
  replace(
    banner,
    "The server no longer accepts this browser's token. ",
    h("a", { href: "/" }, "Sign in again"),
  );
  banner.hidden = false;
});

window.addEventListener("hashchange", () => render({ focus: true }));
window.addEventListener("pagehide", leaveView);
window.addEventListener("pageshow", (event) => {
  if (event.persisted) render({ focus: false }); // back from the back-forward cache
});
render({ focus: false });
