/*! logbeacon browser client: window.LogBeacon (docs/browser.md). Plain ES2019, no build step. */
(function (w) {
  "use strict";
  if (!w || w.LogBeacon) return;
  // Full-line comments only: the size test strips them and measures what is left.
  const nav = w.navigator || {},
    doc = w.document,
    loc = w.location,
    me = doc && doc.currentScript,
    // Without `endpoint`, the server that served this file is the one to send to.
    home = me && me.src ? me.src.replace(/\/v1\/client\.js.*/, "") : "/",
    TEXT = "text/plain;charset=UTF-8",
    // Beacons and keepalive fetches share a ~64 KiB in-flight quota: each body stays below it.
    MAX_BODY = 60000,
    // A URL's query string and fragment, up to the `:line:col` that ends a stack frame.
    QUERY = /(\/\/[^\s?#()]*)[?#][^\s()]*?(?=:\d+:\d+|[\s()]|$)/g,
    // Lone surrogates (a pair is one code point under /u): the server refuses them.
    LONE = /[\ud800-\udfff]/gu,
    seen = new Map(),
    noop = () => {};
  const guard = (fn) => (...args) => {
    try {
      return fn(...args);
    } catch (e) {
      // the page must never see an error of the client
    }
  };
  const now = () => (w.performance ? performance.now() : Date.now()),
    str = (v, n) => String(v == null ? "" : v).slice(0, n || 4096),
    bytes = (s) => (w.Blob ? new Blob([s]).size : s.length * 3);
  let cfg = null,
    queue = [],
    timer = 0,
    tokens = 10,
    filled = 0,
    origFetch = null;

  function uuid() {
    const c = w.crypto || {};
    if (c.randomUUID) return c.randomUUID();
    const b = new Uint8Array(16);
    for (let i = 0; i < 16; i++) b[i] = Math.random() * 256;
    if (c.getRandomValues) c.getRandomValues(b);
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    return Array.from(b, (x, i) => ([4, 6, 8, 10].includes(i) ? "-" : "") + (x + 256).toString(16).slice(1)).join("");
  }

  function describe(x, e, type) {
    let msg = x && x.message != null ? x.message : (e && e.message) || x;
    try {
      if (msg && typeof msg == "object") msg = JSON.stringify(msg);
    } catch (err) {
      // a cyclic object: String() below
    }
    let stack = x && typeof x.stack == "string" ? x.stack : "";
    if (!stack && e && e.filename) stack = "at " + e.filename + ":" + e.lineno + ":" + e.colno;
    stack = stack.split("\n").map((l) => l.trim().replace(QUERY, "$1").slice(0, 300));
    return { type: str((x && x.name) || type), message: str(msg), stack: stack.filter(Boolean).slice(0, 20) };
  }

  // Identical signatures are dropped for 30 s, then a token bucket allows 2/s, burst 10.
  // `seen` is in expiry order, so pruning from its front keeps it small.
  function admit(sig) {
    const t = Date.now();
    if (seen.get(sig) > t) return false;
    tokens = Math.min(10, tokens + Math.max(0, t - filled) / 500);
    filled = t;
    if (tokens < 1) return false;
    tokens -= 1;
    seen.delete(sig);
    seen.set(sig, t + 30000);
    for (const [k, v] of seen) {
      if (v > t && seen.size <= 200) break;
      seen.delete(k);
    }
    return true;
  }

  function emit(level, event, fields) {
    if (!cfg) return;
    const ev = Object.assign({ route: loc.pathname }, fields, {
      timestamp: new Date().toISOString(),
      level,
      service: cfg.service,
      event,
      session_id: cfg.sessionId,
      release: cfg.release,
      environment: cfg.environment,
      event_id: uuid(),
      user_agent: str(nav.userAgent, 160)
    });
    const er = ev.error || {};
    if (!admit([level, event, ev.message, er.type].concat((er.stack || []).slice(0, 2)).join("|"))) return;
    const s = JSON.stringify(ev, (k, v) => (typeof v == "string" ? v.replace(LONE, "\ufffd") : v));
    const size = bytes(s);
    if (size > MAX_BODY) return;
    if (queue.push([s, size]) > 100) queue.shift();
    if (queue.length >= cfg.maxBatch) flush();
    else if (!timer) timer = setTimeout(flush, cfg.flushInterval);
  }

  function send(body) {
    const url = cfg.endpoint + "/v1/logs" + (cfg.key ? "?key=" + encodeURIComponent(cfg.key) : "");
    try {
      if (nav.sendBeacon(url, new Blob([body], { type: TEXT }))) return;
    } catch (e) {
      // no sendBeacon: fetch below
    }
    const post = (keepalive) =>
      origFetch.call(w, url, { method: "POST", body, keepalive, headers: { "content-type": TEXT }, credentials: "omit" });
    // A refused keepalive request (quota) is sent again as a plain one while the page lives.
    if (origFetch) post(true).catch(() => post(false).catch(noop));
  }

  const flush = guard(() => {
    clearTimeout(timer);
    timer = 0;
    while (cfg && queue.length) {
      let size = 14;
      let n = 0;
      while (n < queue.length && n < cfg.maxBatch && (!n || size + queue[n][1] < MAX_BODY)) size += queue[n++][1] + 1;
      const parts = queue.splice(0, n).map((q) => q[0]);
      guard(send)('{"events":[' + parts.join(",") + "]}");
    }
  });

  const onError = guard((e) => {
    const error = describe(e.error, e, "Error");
    emit("error", "window_error", { message: error.message, component: "window", error });
  });

  const onRejection = guard((e) => {
    const error = describe(e.reason, null, "UnhandledRejection");
    emit("error", "unhandled_rejection", { message: error.message, component: "window", error });
  });

  // Reports a failed fetch: `status` when there was an answer, `err` when there was none.
  const report = guard((req, status, err) => {
    const name = err && err.name;
    // Browsers reject with the signal's reason: AbortSignal.timeout() gives a TimeoutError,
    // while a plain AbortError cannot be told apart from a cancel and counts as a failure.
    const timeout = name == "TimeoutError";
    const http = Object.assign({ status, duration_ms: Math.round(now() - req.start) }, req.http);
    const what = err ? (timeout ? "timed out" : "failed") : "answered " + status;
    emit(status && status < 500 ? "warn" : "error", "network_error", {
      message: http.method + " " + http.host + http.path + " " + what,
      component: "fetch",
      http,
      error: err && { type: timeout ? "TimeoutError" : str(name || "Error"), message: str(err.message) }
    });
  });

  function wrapFetch() {
    const orig = (origFetch = w.fetch);
    if (typeof orig != "function") return;
    w.fetch = function fetch(input, init) {
      let req = null;
      try {
        const u = new URL((input && input.url) || String(input), loc.href);
        const method = str((init && init.method) || (input && input.method) || "GET", 16).toUpperCase();
        // Never report the client's own requests.
        if (!u.href.startsWith(cfg.endpoint + "/v1/logs")) req = { http: { method, host: u.host, path: u.pathname }, start: now() };
      } catch (e) {
        // not a URL: the page's fetch rejects it too
      }
      const p = orig.apply(this, arguments);
      if (!req || !p || typeof p.then != "function") return p;
      return p.then(
        (res) => {
          if (res && !res.ok && res.status) report(req, res.status);
          return res;
        },
        (err) => {
          report(req, undefined, err || {});
          throw err;
        }
      );
    };
  }

  function init(o) {
    o = o || {};
    const num = (v, d) => (v > 0 ? Math.floor(v) : d);
    const first = !cfg;
    cfg = {
      endpoint: new URL(o.endpoint || home, loc.href).href.replace(/\/+$/, ""),
      key: o.key,
      sessionId: str(o.sessionId || (cfg && cfg.sessionId) || uuid(), 128),
      release: o.release,
      environment: o.environment,
      service: o.service || "web",
      flushInterval: num(o.flushInterval, 2000),
      maxBatch: Math.min(100, num(o.maxBatch, 20))
    };
    if (!first) return;
    w.addEventListener("error", onError);
    w.addEventListener("unhandledrejection", onRejection);
    w.addEventListener("pagehide", flush);
    if (doc) doc.addEventListener("visibilitychange", () => doc.visibilityState == "hidden" && flush());
    wrapFetch();
  }

  function log(level, event, fields) {
    const f = Object.assign({}, typeof fields == "object" ? fields : {});
    if (f.message != null) f.message = str(f.message);
    emit(str(level || "info").toLowerCase(), str(event || "log"), f);
  }

  // One report per failure: after an `error`, the next one counts only once `open` came.
  function watch(es, component) {
    let reported = false;
    const onOpen = () => (reported = false);
    const onFail = guard(() => {
      if (reported) return;
      reported = true;
      const state = es.readyState;
      const u = new URL(es.url, loc.href);
      emit(state == 2 ? "error" : "warn", "sse_error", {
        message: "EventSource " + u.host + u.pathname + (state == 2 ? " closed" : " reconnecting"),
        component: str(component || "EventSource"),
        ready_state: state,
        http: { method: "GET", host: u.host, path: u.pathname }
      });
    });
    es.addEventListener("open", onOpen);
    es.addEventListener("error", onFail);
    return guard(() => {
      es.removeEventListener("open", onOpen);
      es.removeEventListener("error", onFail);
    });
  }

  w.LogBeacon = Object.freeze({
    init: guard(init),
    log: guard(log),
    flush: flush,
    watchEventSource: (es, component) => guard(watch)(es, component) || noop
  });
})(typeof window == "object" && window);
