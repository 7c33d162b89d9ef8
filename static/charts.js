// Small inline SVG pictures for the profile: a histogram, and a column's top values.
// No chart library: a few <rect>s and <text>s. Each picture is role="img" with an
// aria-label that says in words what it shows (every bin or value with its count), and a
// <title> per bar for pointer users.

const SVG = "http://www.w3.org/2000/svg";
const HIST_W = 130;
const HIST_H = 40;
const TOP_W = 150;
const TOP_ROW = 15;
const TOP_LABEL_W = 60;
const TOP_COUNT_W = 36;
const TOP_SHOWN = 5; // bars drawn; the text equivalent lists every value
const MAX_LABEL = 10;

function svgNode(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function titled(node, text) {
  const title = svgNode("title");
  title.textContent = text;
  node.append(title);
  return node;
}

/** A number or date short enough for a label. */
export function shortValue(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return String(value);
    if (Number.isInteger(value) && Math.abs(value) < 1e15) return value.toLocaleString("en");
    const size = Math.abs(value);
    if (size !== 0 && (size >= 1e9 || size < 1e-3)) return value.toExponential(2);
    return value.toLocaleString("en", { maximumSignificantDigits: 4 });
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  const text = String(value);
  // ISO dates and timestamps: drop a midnight time and the seconds' fractions
  const iso = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(text);
  if (iso) return iso[2] === "00:00" && !iso[3]?.match(/[1-9]/) ? iso[1] : `${iso[1]} ${iso[2]}`;
  return text;
}

function cut(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function plural(n, one, many) {
  return `${n.toLocaleString("en")} ${n === 1 ? one : many}`;
}

/** Whether a histogram has something to draw. */
export function drawableHistogram(histogram) {
  return (
    histogram &&
    Array.isArray(histogram.counts) &&
    Array.isArray(histogram.edges) &&
    histogram.counts.length > 0 &&
    histogram.edges.length === histogram.counts.length + 1 &&
    histogram.counts.every((n) => Number.isFinite(n) && n >= 0)
  );
}

/** The words a screen reader hears for a histogram. */
export function describeHistogram(name, histogram) {
  const { edges, counts } = histogram;
  const bins = counts.map((n, i) => `${shortValue(edges[i])} to ${shortValue(edges[i + 1])}: ${n.toLocaleString("en")}`);
  return `Histogram of ${name}, ${plural(counts.length, "bin", "bins")} from ${shortValue(edges[0])} to ${shortValue(
    edges[edges.length - 1],
  )}. ${bins.join("; ")}.`;
}

/** A histogram as an inline SVG (bars scaled to the largest bin). */
export function histogramSvg(name, histogram) {
  const { edges, counts } = histogram;
  const label = describeHistogram(name, histogram);
  const svg = svgNode("svg", {
    class: "chart histogram",
    viewBox: `0 0 ${HIST_W} ${HIST_H + 12}`,
    width: HIST_W,
    height: HIST_H + 12,
    role: "img",
    "aria-label": label,
  });
  const largest = Math.max(...counts, 1);
  const width = HIST_W / counts.length;
  counts.forEach((n, i) => {
    const height = n > 0 ? Math.max(1, (n / largest) * HIST_H) : 0;
    const bar = svgNode("rect", {
      class: "bar",
      x: (i * width + 0.5).toFixed(2),
      y: (HIST_H - height).toFixed(2),
      width: Math.max(width - 1, 0.5).toFixed(2),
      height: height.toFixed(2),
    });
    svg.append(titled(bar, `${shortValue(edges[i])} to ${shortValue(edges[i + 1])}: ${n.toLocaleString("en")}`));
  });
  svg.append(svgNode("line", { class: "axis", x1: 0, y1: HIST_H + 0.5, x2: HIST_W, y2: HIST_H + 0.5 }));
  const low = svgNode("text", { class: "tick", x: 0, y: HIST_H + 11, "text-anchor": "start", "aria-hidden": "true" });
  low.textContent = cut(shortValue(edges[0]), MAX_LABEL);
  const high = svgNode("text", { class: "tick", x: HIST_W, y: HIST_H + 11, "text-anchor": "end", "aria-hidden": "true" });
  high.textContent = cut(shortValue(edges[edges.length - 1]), MAX_LABEL);
  const title = svgNode("title"); // the whole picture's <title> comes first
  title.textContent = label;
  svg.prepend(title);
  svg.append(low, high);
  return svg;
}

/** Whether a top-values list has something to draw. */
export function drawableTop(top) {
  return Array.isArray(top) && top.length > 0 && top.every((t) => t && typeof t === "object" && "value" in t);
}

/** The words a screen reader hears for a column's top values. */
export function describeTop(name, top) {
  const parts = top.map((t) => (Number.isFinite(t.count) ? `${shortValue(t.value)}: ${t.count.toLocaleString("en")}` : shortValue(t.value)));
  const counted = top.some((t) => Number.isFinite(t.count));
  return `Most frequent values of ${name}${counted ? " with their counts" : ""}: ${parts.join("; ")}.`;
}

/** The top values as labelled horizontal bars (counts may be missing: then no bars). */
export function topValuesSvg(name, top) {
  const label = describeTop(name, top);
  const shown = top.slice(0, TOP_SHOWN);
  const more = top.length - shown.length;
  const rows = shown.length + (more > 0 ? 1 : 0);
  const height = rows * TOP_ROW + 2;
  const svg = svgNode("svg", {
    class: "chart top-values",
    viewBox: `0 0 ${TOP_W} ${height}`,
    width: TOP_W,
    height,
    role: "img",
    "aria-label": label,
  });
  const title = svgNode("title");
  title.textContent = label;
  svg.append(title);
  const largest = Math.max(...shown.map((t) => (Number.isFinite(t.count) ? t.count : 0)), 1);
  const barSpace = TOP_W - TOP_LABEL_W - TOP_COUNT_W;
  shown.forEach((t, i) => {
    const y = i * TOP_ROW;
    const value = shortValue(t.value);
    const group = svgNode("g", { class: t.value === null ? "top-row null" : "top-row" });
    const text = svgNode("text", { class: "top-label", x: TOP_LABEL_W - 4, y: y + 11, "text-anchor": "end" });
    text.textContent = cut(value, MAX_LABEL);
    group.append(text);
    if (Number.isFinite(t.count)) {
      const width = Math.max(1, (t.count / largest) * barSpace);
      group.append(svgNode("rect", { class: "bar", x: TOP_LABEL_W, y: y + 3, width: width.toFixed(2), height: TOP_ROW - 5 }));
      const count = svgNode("text", { class: "top-count", x: TOP_LABEL_W + width + 3, y: y + 11 });
      count.textContent = t.count.toLocaleString("en");
      group.append(count);
    }
    svg.append(titled(group, Number.isFinite(t.count) ? `${value}: ${t.count.toLocaleString("en")}` : value));
  });
  if (more > 0) {
    const text = svgNode("text", { class: "top-more", x: TOP_LABEL_W, y: shown.length * TOP_ROW + 11 });
    text.textContent = `and ${more} more`;
    svg.append(text);
  }
  return svg;
}
