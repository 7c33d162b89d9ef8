// Rendering: status badge, progress rows, log console, result tables. No state lives here.

const STATE_LABELS = {
  idle: "ready",
  created: "created",
  uploading: "uploading",
  queued: "queued",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
};
const MAX_LOG_LINES = 5000; // older lines are dropped from the page (the server keeps them)

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

export function percent(done, total) {
  if (total <= 0) return 100;
  return Math.floor((done / total) * 100);
}

export function setBadge(badge, state) {
  badge.dataset.state = state;
  badge.textContent = STATE_LABELS[state] || state;
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

export function showMessage(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

/** One file's row: path, a <progress> bar and "x of y · n %". */
class FileRow {
  constructor(list, path, size) {
    this.size = size;
    this.offset = 0;
    const id = `file-progress-${list.children.length}`;
    this.bar = el("progress", { id, max: Math.max(size, 1), value: 0 });
    this.text = el("p", { class: "progress-text" });
    this.note = el("p", { class: "file-note", hidden: true });
    this.node = el(
      "li",
      { class: "file-progress", "data-file": path, "data-state": "waiting" },
      el("label", { for: id, class: "file-path", text: path }),
      this.bar,
      this.text,
      this.note,
    );
    list.append(this.node);
    this.update(0);
  }

  update(offset) {
    this.offset = Math.max(this.offset, Math.min(offset, this.size));
    this.bar.value = this.size > 0 ? this.offset : this.offset >= this.size ? 1 : 0;
    const share = percent(this.offset, this.size);
    this.text.textContent = `${formatBytes(this.offset)} of ${formatBytes(this.size)} · ${share} %`;
  }

  setState(state, note = "") {
    this.node.dataset.state = state;
    showMessage(this.note, note);
  }
}

/** Every file's row plus the overall bar. Offsets only ever move forward. */
export class ProgressBoard {
  constructor({ list, overallBar, overallText }) {
    this.list = list;
    this.overallBar = overallBar;
    this.overallText = overallText;
    this.rows = new Map();
  }

  clear() {
    this.rows.clear();
    this.list.replaceChildren();
    this.render();
  }

  has(path) {
    return this.rows.has(path);
  }

  ensure(path, size) {
    let row = this.rows.get(path);
    if (!row) {
      row = new FileRow(this.list, path, size);
      this.rows.set(path, row);
      this.render();
    }
    return row;
  }

  set(path, offset) {
    const row = this.rows.get(path);
    if (!row) return;
    row.update(offset);
    // Progress moves the state along but leaves any note (e.g. "Resumed from …") alone.
    if (row.node.dataset.state === "retrying") row.setState("sending"); // the retry worked
    if (row.offset >= row.size) row.node.dataset.state = "done";
    else if (row.node.dataset.state === "waiting" && row.offset > 0) row.node.dataset.state = "sending";
    this.render();
  }

  setState(path, state, note) {
    this.rows.get(path)?.setState(state, note);
  }

  render() {
    let sent = 0;
    let total = 0;
    for (const row of this.rows.values()) {
      sent += row.offset;
      total += row.size;
    }
    this.overallBar.max = Math.max(total, 1);
    this.overallBar.value = total > 0 ? sent : this.rows.size ? 1 : 0;
    const share = this.rows.size ? percent(sent, total) : 0;
    this.overallText.textContent = `${formatBytes(sent)} of ${formatBytes(total)} · ${share} %`;
  }
}

/** The live log: one <li> per line; keeps following the bottom unless the reader scrolled up. */
export class LogConsole {
  constructor(list) {
    this.list = list;
  }

  append(level, message, ts) {
    const follow = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 8;
    const time = ts ? new Date(ts) : null;
    const stamp = time && !Number.isNaN(time.getTime()) ? time.toLocaleTimeString() : "";
    const line = el(
      "li",
      { class: `log-line level-${level}`, "data-level": level },
      el("span", { class: "log-time", text: stamp }),
      el("span", { class: "log-level", text: level }),
      el("span", { class: "log-message", text: message }),
    );
    this.list.append(line);
    while (this.list.children.length > MAX_LOG_LINES) this.list.firstElementChild.remove();
    if (follow) this.list.scrollTop = this.list.scrollHeight;
  }

  clear() {
    this.list.replaceChildren();
  }
}

// -- result ----------------------------------------------------------------------------

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function humanise(key) {
  const words = String(key).replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A short text for a table cell, whatever the value. */
function cellText(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : value.toPrecision(4);
  if (Array.isArray(value)) {
    if (value.every(isPlainObject)) {
      const names = value.map((v) => v.name ?? v.path ?? v.id).filter((v) => v !== undefined);
      return names.length === value.length ? names.join(", ") : `${value.length} items`;
    }
    return value.map(cellText).join(", ");
  }
  if (isPlainObject(value)) return JSON.stringify(value);
  return String(value);
}

function renderTable(rows, caption) {
  const columns = [];
  rows.forEach((row) => Object.keys(row).forEach((k) => columns.includes(k) || columns.push(k)));
  const head = el("tr", {}, ...columns.map((c) => el("th", { scope: "col", text: humanise(c) })));
  const cell = (value, column) => {
    const text = cellText(value);
    // Numbers never break; only long unbroken tokens (hashes, deep paths) may break anywhere.
    const kind = typeof value === "number" ? "num" : /\S{40,}/.test(text) ? "token" : null;
    return el("td", { "data-label": humanise(column), class: kind, text });
  };
  const body = rows.map((row) => el("tr", {}, ...columns.map((c) => cell(row[c], c))));
  return el(
    "table",
    { class: "result-table" },
    caption ? el("caption", { text: caption }) : null,
    el("thead", {}, head),
    el("tbody", {}, ...body),
  );
}

function renderValue(value, caption) {
  if (Array.isArray(value) && value.length && value.every(isPlainObject)) return renderTable(value, caption);
  if (Array.isArray(value)) {
    if (!value.length) return el("p", { class: "hint", text: "none" });
    return el("ul", { class: "plain-list" }, ...value.map((v) => el("li", { text: cellText(v) })));
  }
  if (isPlainObject(value)) {
    const pairs = Object.entries(value).flatMap(([k, v]) => [
      el("dt", { text: humanise(k) }),
      el("dd", {}, isPlainObject(v) || (Array.isArray(v) && v.some(isPlainObject)) ? renderValue(v) : cellText(v)),
    ]);
    return el("dl", { class: "pairs" }, ...pairs);
  }
  return el("p", { text: cellText(value) });
}

/** The `result` event: the summary rendered generically, then the artifacts. */
export function renderResult(container, result) {
  const summary = isPlainObject(result?.summary) ? result.summary : {};
  const artifacts = Array.isArray(result?.artifacts) ? result.artifacts : [];
  const parts = [];
  const scalars = {};
  for (const [key, value] of Object.entries(summary)) {
    if (Array.isArray(value) || isPlainObject(value)) {
      parts.push(el("h3", { text: humanise(key) }), renderValue(value, humanise(key)));
    } else {
      scalars[key] = value;
    }
  }
  if (Object.keys(scalars).length) parts.unshift(renderValue(scalars));
  if (!parts.length) parts.push(el("p", { class: "hint", text: "The run reported no summary." }));
  parts.push(
    el("h3", { text: "Artifacts" }),
    artifacts.length
      ? el("ul", { class: "plain-list artifacts" }, ...artifacts.map((a) => el("li", {}, el("code", { text: String(a) }))))
      : el("p", { class: "hint", text: "No files were written." }),
  );
  container.replaceChildren(...parts);
}
