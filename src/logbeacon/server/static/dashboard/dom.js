// DOM building without HTML strings: every piece of event data becomes a text node or an
// attribute value, never markup (event messages may hold "<script>" or "<img onerror>").
// Inline `style` attributes are not used either: the page's CSP forbids them; geometry is set
// through the CSSOM (`element.style.width = …`), which CSP allows.

const SVG_NS = "http://www.w3.org/2000/svg";

function applyProps(element, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") {
      element.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "dataset") {
      for (const [name, data] of Object.entries(value)) element.dataset[name] = String(data);
    } else if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "style" || key === "innerHTML" || key === "outerHTML") {
      throw new Error(`dom: ${key} is not allowed; set geometry through element.style`);
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function appendChildren(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) appendChildren(element, child);
    else if (child instanceof Node) element.append(child);
    else element.append(document.createTextNode(String(child)));
  }
}

/** An HTML element: h("a", {href: "#/x", class: "id"}, "text", otherNode). */
export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  applyProps(element, props);
  appendChildren(element, children);
  return element;
}

/** An SVG element, same calling convention as h(). */
export function svg(tag, props, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  applyProps(element, props);
  appendChildren(element, children);
  return element;
}

/** Replace every child of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  appendChildren(element, children);
}

/** Text of at most `max` characters, with an ellipsis when cut. */
export function clip(text, max = 240) {
  const value = String(text ?? "");
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

const LEVELS = ["debug", "info", "warn", "error", "critical"];

/** A level name safe to use in a class name. */
export function levelName(level) {
  return LEVELS.includes(level) ? level : "unknown";
}

/** Characters allowed in a class-name suffix built from data (categories, statuses). */
export function token(value) {
  return String(value ?? "unknown").toLowerCase().replace(/[^a-z0-9_-]/g, "_").slice(0, 40);
}

function parseTime(timestamp) {
  const value = Date.parse(timestamp);
  return Number.isFinite(value) ? value : null;
}

export { parseTime };

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** Local wall-clock time with milliseconds: 14:03:07.123 */
export function formatClock(timestamp) {
  const ms = parseTime(timestamp);
  if (ms === null) return String(timestamp ?? "");
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Local date and time: 2026-01-31 14:03:07 */
export function formatDateTime(timestamp) {
  const ms = parseTime(timestamp);
  if (ms === null) return String(timestamp ?? "—");
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** How long ago, roughly: "12 s ago", "3 min ago", "2 h ago", "4 d ago". */
export function formatAgo(timestamp, now = Date.now()) {
  const ms = parseTime(timestamp);
  if (ms === null) return "—";
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

/** A duration in milliseconds for people: 0.4 ms, 12 ms, 1.25 s, 3 min 05 s. */
export function formatDuration(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  if (ms === 0) return "0 ms";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60000);
  return `${minutes} min ${pad(Math.round((ms % 60000) / 1000))} s`;
}

/** A count with thousands separators. */
export function formatCount(n) {
  return typeof n === "number" && Number.isFinite(n) ? n.toLocaleString("en-US") : "—";
}

/** The duration of an event: its own duration_ms, else its HTTP one. */
export function eventDuration(event) {
  if (typeof event.duration_ms === "number") return event.duration_ms;
  const http = event.http;
  if (http && typeof http === "object" && typeof http.duration_ms === "number") {
    return http.duration_ms;
  }
  return null;
}

/** A link to another view; `path` parts are encoded, so data never becomes a URL scheme. */
export function viewLink(label, route, ...parts) {
  const path = [route, ...parts.map((part) => encodeURIComponent(String(part)))].join("/");
  return h("a", { href: `#/${path}` }, label);
}

/** A `#/view?query` address from a route and parameters (empty values dropped). */
export function viewHref(route, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return `#/${route}${text ? `?${text}` : ""}`;
}

/** A small status line (loading, empty, failed) for a view. */
export function notice(text, kind = "muted") {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : null }, text);
}
