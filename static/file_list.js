// The upload progress list: one row per file for a small selection; for a large one
// (thousands of small files) one row per folder, the files in flight and any failures.
// State changes are cheap (numbers in a Map); the DOM is updated at most once per frame,
// and only the rows that changed, so thousands of progress events never block the page.

import { el, formatBytes, percent, showMessage } from "./ui.js";

export const ROW_LIMIT = 100; // up to this many files, every file has its own row
const MAX_GROUPS = 40; // folders shown when grouped (the grouping depth is chosen to fit)
const MAX_ACTIVE_ROWS = 24; // files in flight, retrying or failed, shown individually
const MAX_OPEN_ROWS = 200; // rows of one opened folder

function folderOf(path) {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? "" : path.slice(0, cut);
}

function prefix(folder, depth) {
  if (!folder || depth === 0) return "";
  return folder.split("/").slice(0, depth).join("/");
}

/** The deepest folder depth at which the files fall into at most MAX_GROUPS groups. */
function groupKeys(paths) {
  const folders = [...new Set(paths.map(folderOf))];
  const deepest = Math.max(0, ...folders.map((f) => (f ? f.split("/").length : 0)));
  let chosen = 0;
  for (let depth = 1; depth <= deepest; depth += 1) {
    if (new Set(folders.map((f) => prefix(f, depth))).size > MAX_GROUPS) break;
    chosen = depth;
  }
  const keyOf = new Map(folders.map((f) => [f, prefix(f, chosen)]));
  return (path) => keyOf.get(folderOf(path));
}

function progressText(sent, total) {
  return `${formatBytes(sent)} of ${formatBytes(total)} · ${percent(sent, total)} %`;
}

let rowIds = 0;

/** One file's row: path, a <progress> bar and "x of y · n %". */
function fileRow(path) {
  const id = `file-progress-${(rowIds += 1)}`;
  const bar = el("progress", { id, max: 1, value: 0 });
  const text = el("p", { class: "progress-text" });
  const note = el("p", { class: "file-note", hidden: true });
  const node = el(
    "li",
    { class: "file-progress", "data-file": path, "data-state": "waiting" },
    el("label", { for: id, class: "file-path", text: path }),
    bar,
    text,
    note,
  );
  return { node, bar, text, note, shown: null };
}

function paintFile(row, item) {
  const key = `${item.offset}/${item.size}/${item.state}/${item.note}`;
  if (row.shown === key) return;
  row.shown = key;
  row.bar.max = Math.max(item.size, 1);
  row.bar.value = item.size > 0 ? item.offset : item.offset >= item.size ? 1 : 0;
  row.text.textContent = progressText(item.offset, item.size);
  row.node.dataset.state = item.state;
  showMessage(row.note, item.note);
}

/** Every file's progress plus the overall bar ("n of N files · x of y · p %"). */
export class FileBoard {
  constructor({ list, overallBar, overallText }) {
    this.list = list;
    this.overallBar = overallBar;
    this.overallText = overallText;
    this.items = new Map(); // path → {size, offset, state, note}
    this.sent = 0;
    this.total = 0;
    this.done = 0;
    this.rows = new Map(); // path → row, for the rows in the DOM
    this.dirty = new Set();
    this.layoutStale = true;
    this.scheduled = false;
    this.open = new Set(); // folders whose files are listed
    this.groups = null;
    this.renders = 0; // DOM passes so far (tests read it to see that events are coalesced)
    this.changes = 0; // progress and state changes so far
  }

  get size() {
    return this.items.size;
  }

  get grouped() {
    return this.items.size > ROW_LIMIT;
  }

  clear() {
    this.items.clear();
    this.rows.clear();
    this.dirty.clear();
    this.open.clear();
    this.sent = this.total = this.done = 0;
    this.layoutStale = true;
    this.schedule();
  }

  has(path) {
    return this.items.has(path);
  }

  ensure(path, size) {
    if (!this.items.has(path)) {
      this.items.set(path, { size, offset: 0, state: "waiting", note: "" });
      this.total += size;
      this.layoutStale = true;
      this.schedule();
    }
    return this.items.get(path);
  }

  addMany(entries) {
    for (const { path, size } of entries) this.ensure(path, size);
  }

  set(path, offset) {
    const item = this.items.get(path);
    if (!item) return;
    const next = Math.max(item.offset, Math.min(offset, item.size));
    const wasDone = item.state === "done";
    this.sent += next - item.offset;
    item.offset = next;
    // Progress moves the state along but leaves any note (e.g. "Resumed from …") alone.
    if (item.state === "retrying") {
      item.state = "sending";
      item.note = "";
    }
    if (item.offset >= item.size) item.state = "done";
    else if (item.state === "waiting" && item.offset > 0) item.state = "sending";
    if (!wasDone && item.state === "done") {
      this.done += 1;
      if (this.grouped) this.layoutStale = true; // it leaves the files shown one by one
    }
    this.touch(path);
  }

  setState(path, state, note = "") {
    const item = this.items.get(path);
    if (!item) return;
    const wasDone = item.state === "done";
    item.state = state;
    item.note = note || "";
    if (wasDone !== (state === "done")) this.done += state === "done" ? 1 : -1;
    if (this.grouped && (state === "error" || state === "retrying" || wasDone !== (state === "done"))) {
      this.layoutStale = true; // it enters or leaves the list of files shown one by one
    }
    this.touch(path);
  }

  touch(path) {
    this.changes += 1;
    this.list.dataset.changes = String(this.changes);
    this.dirty.add(path);
    if (this.grouped && !this.rows.has(path)) {
      const item = this.items.get(path);
      if (item.state === "sending" || item.state === "retrying") this.layoutStale = true;
    }
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      if (!this.scheduled) return;
      this.scheduled = false;
      this.render();
    };
    // A frame when the page is visible; the timer covers a hidden tab (no frames there).
    requestAnimationFrame(run);
    setTimeout(run, 250);
  }

  render() {
    this.renders += 1;
    this.list.dataset.renders = String(this.renders);
    if (this.layoutStale) this.layout();
    for (const path of this.dirty) {
      const row = this.rows.get(path);
      if (row) paintFile(row, this.items.get(path));
    }
    this.dirty.clear();
    if (this.groups) this.paintGroups();
    this.overallBar.max = Math.max(this.total, 1);
    this.overallBar.value = this.total > 0 ? this.sent : this.items.size ? 1 : 0;
    const files = this.items.size;
    const noun = files === 1 ? "file" : "files";
    const share = files ? percent(this.sent, this.total) : 0;
    this.overallText.textContent =
      `${this.done.toLocaleString("en")} of ${files.toLocaleString("en")} ${noun} · ` +
      `${formatBytes(this.sent)} of ${formatBytes(this.total)} · ${share} %`;
  }

  /** Rebuild which rows exist: all files, or folders + active files + opened folders. */
  layout() {
    this.layoutStale = false;
    const keep = new Map();
    const take = (path) => {
      const row = this.rows.get(path) || fileRow(path);
      paintFile(row, this.items.get(path));
      keep.set(path, row);
      return row.node;
    };
    if (!this.grouped) {
      this.groups = null;
      this.list.replaceChildren(...[...this.items.keys()].map(take));
      this.rows = keep;
      return;
    }
    const paths = [...this.items.keys()];
    const keyOf = groupKeys(paths);
    const groups = new Map();
    for (const path of paths) {
      const key = keyOf(path);
      if (!groups.has(key)) groups.set(key, { key, paths: [], node: null });
      groups.get(key).paths.push(path);
    }
    const previous = this.groups || new Map();
    const active = paths.filter((p) => {
      const state = this.items.get(p).state;
      return state === "sending" || state === "retrying" || state === "error";
    });
    const failed = active.filter((p) => this.items.get(p).state === "error");
    const shownActive = [...failed, ...active.filter((p) => this.items.get(p).state !== "error")].slice(
      0,
      MAX_ACTIVE_ROWS,
    );
    const children = shownActive.map(take);
    if (active.length > shownActive.length) {
      children.push(el("li", { class: "file-more", text: `… and ${active.length - shownActive.length} more in flight` }));
    }
    const ordered = [...groups.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const group of ordered) {
      const old = previous.get(group.key);
      group.node = old?.node || this.groupRow(group.key);
      group.shown = null;
      const body = group.node.querySelector(".group-files");
      if (this.open.has(group.key)) {
        const listed = [...group.paths].sort().slice(0, MAX_OPEN_ROWS).filter((p) => !keep.has(p));
        const rows = listed.map(take);
        if (group.paths.length > MAX_OPEN_ROWS) {
          rows.push(el("li", { class: "file-more", text: `… and ${group.paths.length - MAX_OPEN_ROWS} more` }));
        }
        body.replaceChildren(...rows);
      } else {
        body.replaceChildren();
      }
      children.push(group.node);
    }
    this.groups = groups;
    this.rows = keep;
    this.list.replaceChildren(...children);
  }

  groupRow(key) {
    const id = `group-progress-${(rowIds += 1)}`;
    const toggle = el("button", {
      type: "button",
      class: "link-button group-toggle",
      "aria-expanded": "false",
      text: "Show files",
    });
    const node = el(
      "li",
      { class: "file-progress file-group", "data-group": key, "data-state": "waiting" },
      el("label", { for: id, class: "file-path", text: key ? `${key}/` : "(top level)" }),
      el("progress", { id, max: 1, value: 0 }),
      el("p", { class: "progress-text" }),
      toggle,
      el("ul", { class: "file-list group-files" }),
    );
    toggle.addEventListener("click", () => {
      if (this.open.has(key)) this.open.delete(key);
      else this.open.add(key);
      toggle.setAttribute("aria-expanded", String(this.open.has(key)));
      toggle.textContent = this.open.has(key) ? "Hide files" : "Show files";
      this.layoutStale = true;
      this.schedule();
    });
    return node;
  }

  paintGroups() {
    for (const group of this.groups.values()) {
      let sent = 0;
      let total = 0;
      let done = 0;
      let failed = 0;
      for (const path of group.paths) {
        const item = this.items.get(path);
        sent += item.offset;
        total += item.size;
        if (item.state === "done") done += 1;
        if (item.state === "error") failed += 1;
      }
      const key = `${sent}/${done}/${failed}/${group.paths.length}`;
      if (group.shown === key) continue;
      group.shown = key;
      const bar = group.node.querySelector("progress");
      bar.max = Math.max(total, 1);
      bar.value = total > 0 ? sent : done ? 1 : 0;
      const count = group.paths.length;
      const errors = failed ? ` · ${failed} failed` : "";
      group.node.querySelector(".progress-text").textContent =
        `${done.toLocaleString("en")} of ${count.toLocaleString("en")} files · ${progressText(sent, total)}${errors}`;
      group.node.dataset.state = failed ? "error" : done === count ? "done" : sent > 0 ? "sending" : "waiting";
    }
  }
}
