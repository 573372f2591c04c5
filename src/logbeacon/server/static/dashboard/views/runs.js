// Runs: pipeline and graph runs (GET /v1/runs) and one run's steps as status buttons that
// change live — pending → running → success / error / skipped — from the run's own events on
// the live tail (GET /v1/stream?run_id=…), reconciled with GET /v1/runs/{id} after each burst.
// While a run is in progress, the steps of the previous finished run of the same pipeline or
// graph that have not started yet are shown as "pending".

import { ApiError, getJSON, openStream } from "../api.js";
import {
  clip,
  formatDateTime,
  formatDuration,
  h,
  notice,
  replace,
  token,
  viewHref,
  viewLink,
} from "../dom.js";
import { eventList } from "../events.js";

const LIST_REFRESH_MS = 10000;
const RECONCILE_DELAY_MS = 250;
const MAX_SEEN = 10000; // event ids remembered to drop an event both streams delivered
const STEP_EVENTS = {
  node_start: ["node", "running"],
  node_complete: ["node", "success"],
  node_failed: ["node", "error"],
  layer_start: ["layer", "running"],
  layer_complete: ["layer", "success"],
  layer_error: ["layer", "error"],
  layer_skip: ["layer", "skipped"],
};
const RUN_EVENTS = new Set([
  "pipeline_start",
  "pipeline_complete",
  "graph_start",
  "graph_complete",
  "graph_failed",
]);
const FINISHED = new Set(["success", "partial", "error"]);

function runsOf(body) {
  return body && Array.isArray(body.runs) ? body.runs : [];
}

function statusChip(status) {
  const value = typeof status === "string" && status ? status : "unknown";
  return h("span", { class: `chip status status-${token(value)}` }, value);
}

function fact(label, value) {
  return h("div", null, h("dt", null, label), h("dd", null, value));
}

// ------------------------------------------------------------------------------ the list

export function mountList(root, { signal }) {
  const body = h("div", null, notice("Loading runs…"));
  const refresh = h("button", { type: "button" }, "Refresh");
  root.append(h("div", { class: "view-head" }, h("h1", null, "Runs"), refresh), body);

  async function load() {
    try {
      const runs = runsOf(await getJSON("/v1/runs", null, { signal }));
      if (!runs.length) {
        replace(body, notice("No pipeline or graph runs stored yet."));
        return;
      }
      const rows = runs.map((run) =>
        h(
          "tr",
          { dataset: { runId: String(run.run_id ?? "") } },
          h("td", null, viewLink(clip(run.run_id, 40), "runs", run.run_id)),
          h("td", null, clip(run.name || "—", 40)),
          h("td", null, run.kind || "—"),
          h("td", null, clip(run.service || "—", 24)),
          h("td", null, statusChip(run.status)),
          h("td", null, h("time", { datetime: String(run.started_at ?? "") }, formatDateTime(run.started_at))),
          h("td", { class: "num" }, formatDuration(run.duration_ms)),
          h("td", { class: "num" }, String(run.step_count ?? "—")),
          h("td", { class: "num" }, String(run.error_count ?? "—")),
        ),
      );
      const headers = ["Run", "Name", "Kind", "Service", "Status", "Started", "Duration", "Steps", "Failed"];
      replace(
        body,
        h(
          "table",
          { class: "table runs-table", "aria-label": "Runs, newest first" },
          h(
            "thead",
            null,
            h("tr", null, headers.map((label, i) => h("th", { scope: "col", class: i >= 6 ? "num" : null }, label))),
          ),
          h("tbody", null, rows),
        ),
      );
    } catch (error) {
      if (error.name === "AbortError") return;
      replace(body, notice(`Could not load runs: ${error.message}`, "error"));
    }
  }

  refresh.addEventListener("click", load);
  load();
  const timer = window.setInterval(load, LIST_REFRESH_MS);
  return { dispose: () => window.clearInterval(timer) };
}

// ------------------------------------------------------------------------------ one run

function stepKey(step) {
  const base = step.kind === "layer" ? `layer:${step.index}` : `node:${step.name}:${step.index ?? ""}`;
  return step.expected ? `expected:${base}` : base;
}

function stepOfEvent(event) {
  const entry = STEP_EVENTS[event.event];
  if (!entry) return null;
  const [kind, status] = entry;
  if (kind === "layer") {
    if (typeof event.layer !== "number") return null;
    const name = typeof event.layer_name === "string" ? event.layer_name : `layer ${event.layer}`;
    return { kind, name, index: event.layer, status };
  }
  if (typeof event.node !== "string" || !event.node) return null;
  const index = typeof event.step === "number" ? event.step : null;
  const skipped = event.event === "node_complete" && event.status === "skipped";
  return { kind, name: event.node, index, status: skipped ? "skipped" : status };
}

function sameStep(a, b) {
  if (a.kind !== b.kind) return false;
  if (a.kind === "layer") return a.index === b.index;
  return a.name === b.name;
}

export function mountRun(root, { params, signal }) {
  const runId = params[0];
  const title = h("h1", null, "Run ", h("code", { class: "id" }, clip(runId, 64)));
  const runStatus = h("span", { class: "run-status" });
  const factsBox = h("dl", { class: "facts" });
  const live = h("span", { class: "muted live-state", role: "status" });
  const stepsBox = h("ol", { class: "steps", "aria-label": "Steps" });
  const expectedNote = h("p", { class: "muted expected-note", hidden: true });
  const detail = h("div", { class: "step-detail", "aria-live": "polite" });
  const message = h("div");
  root.append(
    h(
      "div",
      { class: "view-head" },
      title,
      runStatus,
      live,
      h("a", { class: "head-link", href: viewHref("search", { q: runId }) }, "All events of this run"),
    ),
    message,
    factsBox,
    h("h2", null, "Steps"),
    expectedNote,
    stepsBox,
    detail,
  );

  let run = null; // the last document from /v1/runs/{id}, with live status changes
  let runName = null; // the graph's or pipeline's name (from the runs list)
  let steps = []; // [{kind, name, index, status, started_at, duration_ms, error}]
  let expected = []; // steps of the previous run of the same graph or pipeline
  let expectedFrom = null;
  let expectedLoaded = false;
  let selected = null; // key of the selected step
  let liveSeq = 0;
  let reconcileTimer = null;
  const liveSeen = new Set();
  const closers = [];

  function setRunStatus(status) {
    replace(runStatus, statusChip(status));
  }

  function renderFacts() {
    if (!run) return;
    replace(
      factsBox,
      fact("Name", runName || "—"),
      fact("Kind", run.kind || "—"),
      fact("Service", run.service || "—"),
      fact("Started", formatDateTime(run.started_at)),
      fact("Duration", formatDuration(run.duration_ms)),
    );
  }

  function visibleSteps() {
    const running = run ? !FINISHED.has(run.status) : true;
    const pending = running ? expected.filter((e) => !steps.some((s) => sameStep(s, e))) : [];
    const shown = [...steps, ...pending.map((p) => ({ ...p, status: "pending", expected: true }))];
    if (shown.every((s) => s.kind === "layer")) shown.sort((a, b) => a.index - b.index);
    return shown;
  }

  function renderSteps() {
    const active = document.activeElement;
    const focusedKey = active && stepsBox.contains(active) ? active.dataset.stepKey : null;
    const shown = visibleSteps();
    replace(
      stepsBox,
      shown.map((step) => {
        const key = stepKey(step);
        const status = step.status || "running";
        const button = h(
          "button",
          {
            type: "button",
            class: ["step", `step-${token(status)}`],
            dataset: { stepKey: key, name: step.name, kind: step.kind, status },
            "aria-pressed": String(selected === key),
          },
          h("span", { class: "step-index" }, step.kind === "layer" ? `L${step.index}` : step.index ?? ""),
          h("span", { class: "step-name" }, clip(step.name, 40)),
          h("span", { class: "step-status" }, status),
          h("span", { class: "step-duration" }, typeof step.duration_ms === "number" ? formatDuration(step.duration_ms) : ""),
        );
        button.addEventListener("click", () => select(key));
        return h("li", null, button);
      }),
    );
    if (!shown.length) stepsBox.append(h("li", { class: "muted" }, "No steps yet."));
    if (focusedKey) {
      const again = stepsBox.querySelector(`[data-step-key="${CSS.escape(focusedKey)}"]`);
      if (again) again.focus();
    }
    const pendingCount = shown.filter((s) => s.expected).length;
    expectedNote.hidden = pendingCount === 0;
    replace(expectedNote);
    if (pendingCount) {
      expectedNote.append(
        `${pendingCount} pending steps are expected from the previous run of this ${run?.kind || "run"} (`,
        viewLink(clip(expectedFrom, 16), "runs", expectedFrom),
        ").",
      );
    }
  }

  function select(key) {
    selected = selected === key ? null : key;
    renderSteps();
    renderDetail();
  }

  async function renderDetail() {
    const step = visibleSteps().find((s) => stepKey(s) === selected);
    if (!step) {
      replace(detail);
      return;
    }
    const error = step.error && typeof step.error === "object" ? step.error : null;
    const events = h("div", null, step.expected ? null : notice("Loading the step's events…"));
    replace(
      detail,
      h("h3", null, `${step.kind} `, h("code", null, clip(step.name, 60))),
      h(
        "dl",
        { class: "facts" },
        fact("Status", statusChip(step.status)),
        fact("Started", formatDateTime(step.started_at)),
        fact("Duration", formatDuration(step.duration_ms)),
      ),
      error
        ? h(
            "div",
            { class: "step-failure" },
            h("p", null, h("strong", null, clip(error.type || "error", 80)), " ", clip(error.message || "", 500)),
            typeof error.category === "string"
              ? h("span", { class: `chip category category-${token(error.category)}` }, error.category)
              : null,
            Array.isArray(error.suggestions)
              ? h("ul", null, error.suggestions.filter((s) => typeof s === "string").map((s) => h("li", null, s)))
              : null,
          )
        : null,
      events,
    );
    if (step.expected) return;
    try {
      let found;
      if (step.kind === "node") {
        const page = await getJSON("/v1/logs", { run_id: runId, node: step.name, limit: 200 }, { signal });
        found = Array.isArray(page.events) ? page.events : [];
      } else {
        found = (await runEvents()).filter((e) => e.layer === step.index);
      }
      replace(
        events,
        found.length ? eventList(found, { label: "Events of this step" }) : notice("No events of this step are stored."),
      );
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(events, notice(`Could not load the step's events: ${err.message}`, "error"));
    }
  }

  /** The run's events, newest first: by run_id, and for a pipeline by job_id too (events of
   * `logbeacon run` and older pipelines may name their run only by its job id). */
  async function runEvents() {
    const filters = run && run.kind === "pipeline" ? ["run_id", "job_id"] : ["run_id"];
    const pages = await Promise.all(
      filters.map((field) => getJSON("/v1/logs", { [field]: runId, limit: 1000 }, { signal })),
    );
    const byId = new Map();
    for (const page of pages) {
      for (const event of Array.isArray(page.events) ? page.events : []) {
        byId.set(event.event_id, event);
      }
    }
    return [...byId.values()].sort((a, b) => String(b.timestamp).localeCompare(String(a.timestamp)));
  }

  /** A run or step event from the stream: change the page now, reconcile shortly after. */
  function applyLive(event) {
    if (typeof event.event_id === "string") {
      if (liveSeen.has(event.event_id)) return; // delivered by both streams of a pipeline
      liveSeen.add(event.event_id);
      if (liveSeen.size > MAX_SEEN) liveSeen.delete(liveSeen.values().next().value);
    }
    liveSeq += 1;
    if (RUN_EVENTS.has(event.event)) {
      const status = event.event === "graph_failed" ? "error" : event.status;
      if (typeof status === "string") {
        run = { ...(run || {}), status };
        setRunStatus(status);
      }
    }
    const step = stepOfEvent(event);
    if (step) {
      // The newest execution of a node (a loop runs a node again), or the layer itself.
      let target = null;
      for (let i = steps.length - 1; i >= 0; i -= 1) {
        if (sameStep(steps[i], step)) {
          target = steps[i];
          break;
        }
      }
      const again = target && step.kind === "node" && step.status === "running" && target.status !== "running";
      if (!target || again) {
        target = { kind: step.kind, name: step.name, index: step.index, status: step.status };
        steps.push(target);
      }
      target.status = step.status;
      if (step.status === "running") target.started_at = event.timestamp;
      if (typeof event.duration_ms === "number" && step.status !== "running") {
        target.duration_ms = event.duration_ms;
      }
      if (event.error && typeof event.error === "object") target.error = event.error;
    }
    renderSteps();
    scheduleReconcile();
  }

  function scheduleReconcile() {
    if (reconcileTimer !== null) window.clearTimeout(reconcileTimer);
    reconcileTimer = window.setTimeout(() => {
      reconcileTimer = null;
      load();
    }, RECONCILE_DELAY_MS);
  }

  async function loadExpected() {
    expectedLoaded = true;
    try {
      const runs = runsOf(await getJSON("/v1/runs", null, { signal }));
      const self = runs.find((other) => other.run_id === runId);
      if (self && typeof self.name === "string") {
        runName = self.name;
        renderFacts();
      }
      const previous = runs.find(
        (other) =>
          other.run_id !== runId &&
          FINISHED.has(other.status) &&
          other.kind === run.kind &&
          other.service === run.service &&
          (other.name ?? null) === runName,
      );
      if (!previous) return;
      const doc = await getJSON(`/v1/runs/${encodeURIComponent(previous.run_id)}`, null, { signal });
      const seen = [];
      for (const step of Array.isArray(doc.steps) ? doc.steps : []) {
        const candidate = { kind: step.kind, name: String(step.name ?? ""), index: step.index };
        if (!seen.some((s) => sameStep(s, candidate))) seen.push(candidate);
      }
      expected = seen;
      expectedFrom = previous.run_id;
      renderSteps();
    } catch (error) {
      if (error.name !== "AbortError") expected = [];
    }
  }

  async function load() {
    const seq = liveSeq;
    try {
      const doc = await getJSON(`/v1/runs/${encodeURIComponent(runId)}`, null, { signal });
      if (seq !== liveSeq) return; // a newer live event arrived: its own reconcile follows
      run = doc;
      steps = (Array.isArray(doc.steps) ? doc.steps : []).map((step) => ({
        ...step,
        name: String(step.name ?? ""),
        kind: step.kind === "layer" ? "layer" : "node",
      }));
      replace(message);
      setRunStatus(run.status);
      renderFacts();
      renderSteps();
      if (selected) renderDetail();
      if (!expectedLoaded) loadExpected();
      if (run.kind === "pipeline" && closers.length === 1) {
        closers.push(openStream({ job_id: runId }, applyLive)); // job-id-only events too
      }
    } catch (error) {
      if (error.name === "AbortError") return;
      const text =
        error instanceof ApiError && error.status === 404
          ? "No events of this run are stored yet; its steps appear here as they start."
          : `Could not load the run: ${error.message}`;
      replace(message, notice(text, error instanceof ApiError && error.status === 404 ? "muted" : "error"));
    }
  }

  closers.push(
    openStream({ run_id: runId }, applyLive, (state) => {
      live.textContent = state === "live" ? "● live" : state === "closed" ? "not live" : `${state}…`;
    }),
  );
  load();
  return {
    dispose() {
      for (const close of closers) close();
      if (reconcileTimer !== null) window.clearTimeout(reconcileTimer);
    },
  };
}
