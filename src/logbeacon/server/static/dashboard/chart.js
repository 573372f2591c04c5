// The error-rate chart, drawn as SVG by hand (no charting library): per time bucket a grey
// bar of all events and a red bar of errors on the left axis, and the error rate (errors /
// events) as a line on the right axis. Every bucket has a <title> tooltip.

import { formatCount, parseTime, svg } from "./dom.js";

const WIDTH = 860;
const HEIGHT = 250;
const MARGIN = { top: 26, right: 56, bottom: 30, left: 52 };

/**
 * Axis scale for values up to `max`: a tick step of 1, 2 or 5 × 10^k giving at most five
 * intervals, and the top tick. Counts use whole steps (`minStep` 1).
 */
export function niceScale(max, minStep = 1) {
  const raw = Math.max(max / 5, minStep);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  let step = 10 * magnitude;
  for (const factor of [1, 2, 5]) {
    if (factor * magnitude >= raw - 1e-12) {
      step = factor * magnitude;
      break;
    }
  }
  const intervals = Math.max(1, Math.ceil(max / step - 1e-9));
  return { step, top: step * intervals, intervals };
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return spanMs > 36 * 3600 * 1000 ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock}` : clock;
}

function percent(rate) {
  if (rate === 0) return "0 %";
  return rate < 0.1 ? `${(rate * 100).toFixed(1)} %` : `${Math.round(rate * 100)} %`;
}

/**
 * `buckets`: [{start: RFC 3339, events: n, errors: n}] in time order.
 * Returns an <svg> element (role img, with a text summary as its accessible name).
 */
export function errorRateChart(buckets, { bucketSeconds = 60, label = "Error rate over time" } = {}) {
  const points = buckets
    .map((b) => ({
      start: parseTime(b.start),
      events: Number(b.events) || 0,
      errors: Number(b.errors) || 0,
    }))
    .filter((b) => b.start !== null);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const totalEvents = points.reduce((sum, b) => sum + b.events, 0);
  const totalErrors = points.reduce((sum, b) => sum + b.errors, 0);
  const maxEvents = points.reduce((max, b) => Math.max(max, b.events), 0);
  const maxRate = points.reduce((max, b) => Math.max(max, b.events ? b.errors / b.events : 0), 0);
  const counts = niceScale(maxEvents, 1);
  const rates = niceScale(Math.max(maxRate * 100, 1), 1); // in percent
  const top = counts.top;
  const rateTop = rates.top / 100;
  const summary =
    `${label}: ${formatCount(totalErrors)} errors in ${formatCount(totalEvents)} events ` +
    `over ${points.length} buckets of ${bucketSeconds} s; highest rate ${percent(maxRate)}.`;

  const root = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": summary,
    preserveAspectRatio: "xMidYMid meet",
  });
  root.append(svg("title", null, summary));

  const y = (count) => MARGIN.top + plotH - (count / top) * plotH;
  const yRate = (rate) => MARGIN.top + plotH - (rate / rateTop) * plotH;

  // Grid and both axes: counts on the left, the error rate on the right.
  for (let i = 0; i <= counts.intervals; i += 1) {
    const py = y(i * counts.step);
    root.append(
      svg("line", { class: i === 0 ? "axis-line" : "grid-line", x1: MARGIN.left, x2: MARGIN.left + plotW, y1: py, y2: py }),
      svg("text", { class: "axis-label", x: MARGIN.left - 6, y: py + 4, "text-anchor": "end" }, formatCount(i * counts.step)),
    );
  }
  for (let i = 0; i <= rates.intervals; i += 1) {
    const rate = (i * rates.step) / 100;
    root.append(
      svg("text", { class: "axis-label rate-label", x: MARGIN.left + plotW + 6, y: yRate(rate) + 4, "text-anchor": "start" }, percent(rate)),
    );
  }
  root.append(
    svg("text", { class: "axis-label", x: MARGIN.left - 6, y: 12, "text-anchor": "end" }, "events"),
    svg("text", { class: "axis-label rate-label", x: WIDTH - 2, y: 12, "text-anchor": "end" }, "error rate"),
  );

  if (!points.length) {
    root.append(
      svg("text", { class: "axis-label", x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2, "text-anchor": "middle" }, "no events in this window"),
    );
    return root;
  }

  const slot = plotW / points.length;
  const barW = Math.max(1, slot * 0.72);
  const first = points[0].start;
  const span = points[points.length - 1].start + bucketSeconds * 1000 - first;
  const bars = svg("g", { class: "bars" });
  const ratePath = [];
  const dots = svg("g", { class: "rate-dots" });
  let gap = true; // the rate is undefined where a bucket has no events: the line breaks there
  points.forEach((b, i) => {
    const x = MARGIN.left + i * slot + (slot - barW) / 2;
    const rate = b.events ? b.errors / b.events : 0;
    const tip = `${timeLabel(b.start, span)} · ${formatCount(b.events)} events, ${formatCount(b.errors)} errors (${percent(rate)})`;
    bars.append(
      svg(
        "g",
        { class: "bucket", dataset: { errors: b.errors, events: b.events } },
        svg("title", null, tip),
        svg("rect", { class: "bar-total", x, y: y(b.events), width: barW, height: MARGIN.top + plotH - y(b.events) }),
        b.errors
          ? svg("rect", { class: "bar-error", x, y: y(b.errors), width: barW, height: Math.max(1, MARGIN.top + plotH - y(b.errors)) })
          : null,
      ),
    );
    if (!b.events) {
      gap = true;
      return;
    }
    const cx = (MARGIN.left + i * slot + slot / 2).toFixed(1);
    const cy = yRate(rate).toFixed(1);
    ratePath.push(`${gap ? "M" : "L"}${cx},${cy}`);
    gap = false;
    dots.append(svg("circle", { class: "rate-dot", cx, cy, r: 2.5 }));
  });
  root.append(bars);
  if (totalErrors) root.append(svg("path", { class: "rate-line", d: ratePath.join(" ") }), dots);

  // About six time labels along the bottom.
  const every = Math.max(1, Math.ceil(points.length / 6));
  points.forEach((b, i) => {
    if (i % every !== 0) return;
    const x = MARGIN.left + i * slot + slot / 2;
    root.append(
      svg("line", { class: "axis-line", x1: x, x2: x, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + 4 }),
      svg("text", { class: "axis-label", x, y: HEIGHT - 10, "text-anchor": "middle" }, timeLabel(b.start, span)),
    );
  });
  return root;
}
