// The result panel: the artifacts as links, the profile from results/summary.json (one
// collapsible section per file, one row per column with a small picture) and
// results/report.md rendered as formatted text. Everything is built with createElement and
// textContent; nothing from a result reaches innerHTML.

import { drawableHistogram, drawableTop, histogramSvg, shortValue, topValuesSvg } from "./charts.js";
import { renderMarkdown } from "./markdown.js";
import { el, formatBytes, renderResult } from "./ui.js";

const SUMMARY = "results/summary.json";
const REPORT = "results/report.md";
const OPEN_SECTIONS = 3; // files past these start collapsed; their rows are built when opened
const EXPAND_STEP = 2; // sections opened per task by "Expand all"
const REPORT_OPEN_CHARS = 40_000; // a longer report starts collapsed
const MAX_FETCH_BYTES = 32 * 1024 * 1024; // a bigger summary or report is linked, not drawn

const COLUMNS = [
  ["name", "Column (type)"],
  ["nulls", "Nulls"],
  ["distinct", "Distinct"],
  ["min", "Min"],
  ["max", "Max"],
  ["mean", "Mean"],
  ["std", "Std"],
  ["quartiles", "Quartiles (25, 50, 75 %)"],
  ["picture", "Distribution"],
];

/** The artifact base URL of a session: its `links.artifacts`, else the documented route. */
export function artifactBase(session) {
  const given = session?.links?.artifacts;
  return given || `/api/sessions/${encodeURIComponent(session.session_id)}/artifacts`;
}

/** The URL of one artifact: `path` is relative to the volume (results/report.md), the
 * route's path is relative to results/ (…/artifacts/report.md). */
export function artifactUrl(base, path) {
  const inResults = String(path).replace(/^results\//, "");
  return `${base}/${inResults.split("/").map(encodeURIComponent).join("/")}`;
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A summary.json written by the built-in agent (files with a kind and columns). */
export function isProfile(summary) {
  return (
    isObject(summary) &&
    Array.isArray(summary.files) &&
    summary.files.every((f) => isObject(f) && typeof f.path === "string" && typeof f.kind === "string")
  );
}

async function fetchArtifact(url, kind) {
  const response = await fetch(url, { headers: { Accept: kind === "json" ? "application/json" : "text/markdown, text/plain" } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const length = Number(response.headers.get("Content-Length"));
  if (Number.isFinite(length) && length > MAX_FETCH_BYTES) throw new Error(`too large to show (${formatBytes(length)})`);
  return kind === "json" ? response.json() : response.text();
}

// -- formatting ----------------------------------------------------------------------------

function num(value) {
  if (value === null || value === undefined || value === "") return "—";
  return shortValue(value);
}

function count(value) {
  return Number.isFinite(value) ? value.toLocaleString("en") : "—";
}

function share(part, whole) {
  if (!Number.isFinite(part) || !Number.isFinite(whole) || whole <= 0) return "";
  const pct = (part / whole) * 100;
  const text = pct === 0 || pct === 100 || pct >= 10 ? pct.toFixed(0) : pct < 0.1 ? "<0.1" : pct.toFixed(1);
  return `${text} %`;
}

const MAX_CELL_CHARS = 24;

function quartiles(column) {
  const q = isObject(column.quantiles) ? column.quantiles : column;
  const values = [q.q25, q.q50, q.q75];
  if (values.every((v) => v === null || v === undefined)) return "—";
  const labels = ["25 %", "50 %", "75 %"];
  return el(
    "span",
    { class: "quartiles" },
    ...values.map((v, i) => el("span", { title: labels[i], text: cut(num(v)) })),
  );
}

function cut(text) {
  return text.length <= MAX_CELL_CHARS ? text : `${text.slice(0, MAX_CELL_CHARS - 1)}…`;
}

function topOf(column) {
  if (Array.isArray(column.top)) return column.top;
  return Array.isArray(column.top_values) ? column.top_values : [];
}

function flagged(column, flaggedNames) {
  return Boolean(column.flagged) || flaggedNames.has(String(column.name).toLowerCase());
}

// -- one file ----------------------------------------------------------------------------

function picture(column) {
  const name = String(column.name);
  if (drawableHistogram(column.histogram)) return histogramSvg(name, column.histogram);
  const top = topOf(column);
  if (drawableTop(top)) return topValuesSvg(name, top);
  return null;
}

function columnRow(column, rows, flaggedNames) {
  const isFlagged = flagged(column, flaggedNames);
  const reasons = Array.isArray(column.flag_reasons) ? column.flag_reasons.join(", ") : "";
  const nameCell = el(
    "th",
    { scope: "row", "data-label": "Column" },
    el("span", { class: "column-name", text: String(column.name) }),
    el("code", { class: "column-type", text: String(column.type ?? "—") }),
    isFlagged ? el("span", { class: "flag", title: "named in the context", text: reasons || "named in the context" }) : null,
  );
  const nulls = Number.isFinite(column.nulls) ? `${count(column.nulls)} ${share(column.nulls, rows) ? `(${share(column.nulls, rows)})` : ""}` : "—";
  const approx = column.distinct_approx === true || column.distinct_exact === false;
  const distinct = Number.isFinite(column.distinct) ? `${approx ? "≈ " : ""}${count(column.distinct)}` : "—";
  const cells = {
    nulls: nulls.trim(),
    distinct,
    min: num(column.min),
    max: num(column.max),
    mean: num(column.mean),
    std: num(column.std),
    quartiles: quartiles(column),
  };
  const tds = COLUMNS.slice(1).map(([key, heading]) => {
    const label = heading.replace(/ \(.*\)$/, ""); // phones: the short label beside each value
    if (key === "picture") {
      const svg = picture(column);
      return el("td", { class: "picture", "data-label": label }, svg || el("span", { class: "hint", text: "—" }));
    }
    const value = cells[key];
    const attrs = { "data-label": label, class: "num" };
    if (typeof value === "string") {
      if (approx && key === "distinct") attrs.title = "approximate";
      if (value.length > MAX_CELL_CHARS) attrs.title = value;
      return el("td", { ...attrs, text: cut(value) });
    }
    return el("td", attrs, value);
  });
  return el(
    "tr",
    { class: isFlagged ? "flagged" : null, "data-column": String(column.name), "data-flagged": isFlagged ? "true" : null },
    nameCell,
    ...tds,
  );
}

function columnTable(file, flaggedNames) {
  const columns = Array.isArray(file.columns) ? file.columns : [];
  const head = el("tr", {}, ...COLUMNS.map(([, label]) => el("th", { scope: "col", text: label })));
  return el(
    "div",
    { class: "profile-table-wrap" },
    el(
      "table",
      { class: "result-table profile-table" },
      el("caption", { text: `Columns of ${file.path}` }),
      el("thead", {}, head),
      el("tbody", {}, ...columns.map((c) => columnRow(c, file.rows, flaggedNames))),
    ),
  );
}

function fileFacts(file) {
  const facts = [String(file.kind)];
  if (file.kind === "table" && file.format) facts.push(String(file.format).toUpperCase());
  else if (file.kind !== "table" && (file.description || file.type)) facts.push(String(file.description || file.type));
  if (Number.isFinite(file.rows)) facts.push(`${count(file.rows)} rows`);
  if (Array.isArray(file.columns) && file.kind === "table" && !file.error) facts.push(`${file.columns.length} columns`);
  if (Number.isFinite(file.size)) facts.push(formatBytes(file.size));
  return facts.join(" · ");
}

function fileBody(file, flaggedNames) {
  const parts = [];
  if (file.error) {
    const size = Number.isFinite(file.size) ? ` (${formatBytes(file.size)})` : "";
    parts.push(el("p", { class: "hint", text: `No profile for this file${size}: the reason is given above.` }));
  }
  if (file.kind === "table" && !file.error) {
    const notes = [];
    notes.push(file.exact === false ? "Streamed: quartiles, distinct counts and top values are approximate." : "Statistics are exact.");
    if (Number.isFinite(file.duplicate_rows)) notes.push(`${count(file.duplicate_rows)} duplicate rows.`);
    if (file.group_stats_error) notes.push(`No per-group statistics: ${file.group_stats_error}`);
    parts.push(el("p", { class: "hint", text: notes.join(" ") }));
    if (Array.isArray(file.columns) && file.columns.length) parts.push(columnTable(file, flaggedNames));
    else parts.push(el("p", { class: "hint", text: "No columns." }));
  } else if (!file.error) {
    const pairs = [
      ["Type", file.type],
      ["Detected as", file.description],
      ["Size", Number.isFinite(file.size) ? `${formatBytes(file.size)} (${count(file.size)} bytes)` : null],
      ["SHA-256", file.sha256],
    ].filter(([, v]) => v);
    parts.push(el("dl", { class: "pairs" }, ...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, el("code", { text: String(v) }))])));
  }
  return parts;
}

function fileSection(file, index, flaggedNames) {
  const columns = Array.isArray(file.columns) ? file.columns : [];
  const marked = columns.filter((c) => flagged(c, flaggedNames)).length;
  const summary = el(
    "summary",
    {},
    el("code", { class: "file-path", text: file.path }),
    el("span", { class: "file-facts", text: fileFacts(file) }),
    marked ? el("span", { class: "flag", text: `${marked} named in the context` }) : null,
    file.error ? el("span", { class: "file-error", text: `Could not be read: ${file.error}` }) : null,
  );
  const body = el("div", { class: "profile-body" });
  const section = el(
    "details",
    { class: file.error ? "profile-file has-error" : "profile-file", "data-profile-file": file.path, "data-built": "false" },
    summary,
    body,
  );
  const build = () => {
    if (section.dataset.built === "true") return;
    section.dataset.built = "true";
    body.replaceChildren(...fileBody(file, flaggedNames));
  };
  section.addEventListener("toggle", () => {
    if (section.open) build();
  });
  if (index < OPEN_SECTIONS) {
    section.open = true;
    build();
  }
  return section;
}

/** The profile of a built-in agent's summary.json. */
export function renderProfile(summary) {
  const files = summary.files;
  const flaggedNames = new Set((summary.flagged_columns || []).map((n) => String(n).toLowerCase()));
  const tables = files.filter((f) => f.kind === "table" && !f.error);
  const unreadable = files.filter((f) => f.error);
  const rows = files.reduce((sum, f) => sum + (Number.isFinite(f.rows) ? f.rows : 0), 0);
  const overview = [
    `${files.length} ${files.length === 1 ? "file" : "files"}`,
    `${tables.length} ${tables.length === 1 ? "table" : "tables"}`,
    `${count(rows)} rows`,
  ];
  if (unreadable.length) overview.push(`${unreadable.length} unreadable`);
  const parts = [el("p", { class: "profile-overview", text: overview.join(" · ") })];
  if (flaggedNames.size) {
    parts.push(el("p", { class: "flag-note" }, "Columns the context names: ", el("strong", { text: [...(summary.flagged_columns || [])].join(", ") })));
  }
  const unknown = summary.unknown_columns || summary.context?.unknown_columns || [];
  if (unknown.length) {
    parts.push(el("p", { class: "warning-note", text: `Named in the context but found in no table: ${unknown.join(", ")}` }));
  }
  if (files.length > OPEN_SECTIONS) {
    // a few sections per task, so the page keeps answering while 50 files' rows are built
    const toggle = (open) => async () => {
      const sections = [...root.querySelectorAll("details.profile-file")];
      for (let i = 0; i < sections.length; i += 1) {
        if (open && i % EXPAND_STEP === 0 && i) await new Promise((resolve) => setTimeout(resolve, 0));
        sections[i].open = open;
      }
    };
    parts.push(
      el(
        "p",
        { class: "profile-controls" },
        buttonWith("Expand all", toggle(true)),
        buttonWith("Collapse all", toggle(false)),
      ),
    );
  }
  const list = el("div", { class: "profile-files" }, ...files.map((f, i) => fileSection(f, i, flaggedNames)));
  const root = el("div", { class: "profile", "data-profile": "" }, ...parts, list);
  return root;
}

function buttonWith(text, onClick) {
  const button = el("button", { type: "button", class: "link-button", text });
  button.addEventListener("click", onClick);
  return button;
}

// -- the panel -----------------------------------------------------------------------------

function artifactList(base, artifacts) {
  if (!artifacts.length) return el("p", { class: "hint", text: "No files were written." });
  const items = artifacts.map((path) => {
    const href = artifactUrl(base, path);
    const name = String(path).split("/").pop() || String(path);
    return el(
      "li",
      { "data-artifact": String(path) },
      el("a", { href, target: "_blank", rel: "noopener", class: "artifact-open" }, el("code", { text: String(path) })),
      el("a", { href, download: name, class: "artifact-download", "aria-label": `Download ${path}`, text: "download" }),
    );
  });
  return el("ul", { class: "plain-list artifacts" }, ...items);
}

export class ResultPanel {
  constructor(container) {
    this.container = container;
    this.key = null;
    this.token = 0;
  }

  /** Each artifact's size, from the listing route (the links work without it). */
  async addSizes(base, list, token) {
    try {
      const listing = await fetchArtifact(base, "json");
      if (token !== this.token || !Array.isArray(listing?.artifacts)) return;
      for (const item of listing.artifacts) {
        const row = [...list.querySelectorAll("[data-artifact]")].find((li) => li.dataset.artifact === String(item.path));
        if (row && Number.isFinite(item.size)) row.append(el("span", { class: "artifact-size", text: formatBytes(item.size) }));
      }
    } catch {
      // sizes are a nicety
    }
  }

  clear() {
    this.key = null;
    this.token += 1;
    this.container.replaceChildren();
  }

  /**
   * Show a session's result ({artifacts, summary}) once: a replayed `result` event or the
   * session view of the same result changes nothing.
   */
  async show(session, result) {
    const artifacts = Array.isArray(result?.artifacts) ? result.artifacts.map(String) : [];
    const key = `${session.session_id}\u0000${artifacts.join("\u0000")}`;
    if (this.key === key) return;
    this.key = key;
    const token = ++this.token;
    const base = artifactBase(session);
    const profile = el("div", { class: "result-profile", "data-result-profile": "" });
    const report = el("div", { class: "result-report", "data-result-report": "" });
    const downloads = el("div", { class: "result-artifacts" });
    if (artifacts.length) {
      downloads.append(
        el("h3", { text: "Artifacts" }),
        artifactList(base, artifacts),
        el("p", {}, el("a", { href: `${base}.zip`, download: "results.zip", class: "button secondary download-all", text: "Download all (zip)" })),
      );
    } else {
      downloads.append(el("h3", { text: "Artifacts" }), artifactList(base, artifacts));
    }
    this.container.replaceChildren(downloads, profile, report);
    const generic = () => {
      const box = el("div");
      renderResult(box, { summary: result?.summary, artifacts: [] });
      // renderResult ends with its own "Artifacts" heading and list: the panel has links
      box.lastElementChild?.remove();
      box.lastElementChild?.remove();
      return [...box.childNodes];
    };
    const tasks = [this.addSizes(base, downloads, token)];
    if (artifacts.includes(SUMMARY)) {
      profile.append(el("p", { class: "hint", text: "Loading the profile…" }));
      tasks.push(
        fetchArtifact(artifactUrl(base, SUMMARY), "json")
          .then((summary) => {
            if (token !== this.token) return;
            if (isProfile(summary)) profile.replaceChildren(el("h3", { text: "Profile" }), renderProfile(summary));
            else profile.replaceChildren(...generic());
          })
          .catch((error) => {
            if (token !== this.token) return;
            profile.replaceChildren(
              el("p", { class: "hint", text: `The full profile could not be loaded (${error.message}); the run's summary follows.` }),
              ...generic(),
            );
          }),
      );
    } else {
      profile.replaceChildren(...generic());
    }
    if (artifacts.includes(REPORT)) {
      tasks.push(
        fetchArtifact(artifactUrl(base, REPORT), "text")
          .then((text) => {
            if (token !== this.token) return;
            const body = el("div", { class: "markdown", "data-report": "" });
            const short = text.length <= REPORT_OPEN_CHARS;
            const details = el(
              "details",
              { class: "report", open: short },
              el("summary", {}, el("span", { class: "report-title", text: "Report" }), " ", el("code", { text: REPORT })),
              body,
            );
            // a long report starts collapsed and is rendered when first opened
            const build = () => {
              if (body.dataset.rendered) return;
              body.dataset.rendered = "true";
              body.append(renderMarkdown(text));
            };
            if (short) build();
            else details.addEventListener("toggle", () => details.open && build());
            report.replaceChildren(details);
          })
          .catch((error) => {
            if (token !== this.token) return;
            report.replaceChildren(el("p", { class: "hint", text: `The report could not be loaded (${error.message}).` }));
          }),
      );
    }
    await Promise.all(tasks);
    if (token === this.token) this.container.dataset.loaded = "true";
  }
}
