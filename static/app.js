// The dashboard page: wires the form, the tus uploads, the live feed and the result together.
// Every element it touches is found by a data-* attribute inside [data-dashboard].

import { FriendlyError, getJson, postJson } from "./http.js";
import { SessionFeed } from "./feed.js";
import { forgetSession, loadSession, saveSession } from "./resume.js";
import { FileBoard } from "./file_list.js";
import { waitUntilStored } from "./stored.js";
import { fetchUploadLimit, oversizeMessage, uploadSelection } from "./upload_queue.js";
import { LogConsole, formatBytes, setBadge, show, showMessage } from "./ui.js";
import { ResultPanel } from "./results.js";
import {
  RecentSessions,
  addressNamesSession,
  clearSessionFromAddress,
  linkedSessionId,
  sessionLinks,
  showSessionInAddress,
} from "./sessions.js";
import { validateContext } from "./validate.js";

const ACCEPTING = new Set(["created", "uploading"]);
const SESSIONS_URL = "/api/sessions";

const root = document.querySelector("[data-dashboard]");
const find = (name) => root.querySelector(`[data-${name}]`);

const ui = {
  form: find("upload-form"),
  dropzone: find("dropzone"),
  folderInput: find("folder-input"),
  fileInput: find("file-input"),
  selection: find("selection"),
  selectionSummary: find("selection-summary"),
  clearSelection: find("clear-selection"),
  filesError: find("files-error"),
  context: find("context"),
  contextError: find("context-error"),
  chunkSize: find("chunk-size-input"),
  uploadButton: find("upload-button"),
  startOver: find("start-over"),
  badge: find("status-badge"),
  error: find("error"),
  resumeNotice: find("resume-notice"),
  progressSection: find("progress-section"),
  logSection: find("log-section"),
  feedNote: find("feed-note"),
  resultSection: find("result-section"),
  result: find("result"),
};

const defaultChunkSize = Number.parseInt(root.dataset.chunkSize, 10) || 8 * 1024 * 1024;
const board = new FileBoard({
  list: find("file-list"),
  overallBar: find("overall-progress"),
  overallText: find("overall-text"),
});
const logConsole = new LogConsole(find("log"));
const results = new ResultPanel(ui.result);
const recent = new RecentSessions({ section: find("recent-section"), list: find("recent-list") });

const state = {
  selection: new Map(), // relative path → File
  session: null, // {session_id, links, context_key, context_text, phase}
  feed: null,
  busy: false,
  contextTouched: false,
};

// -- selection ---------------------------------------------------------------------------

function addFiles(entries) {
  for (const { path, file } of entries) {
    const clean = path.replace(/^\/+/, "");
    if (clean) state.selection.set(clean, file);
  }
  renderSelection();
}

function renderSelection() {
  const files = [...state.selection.values()];
  const bytes = files.reduce((sum, f) => sum + f.size, 0);
  const noun = files.length === 1 ? "file" : "files";
  ui.selectionSummary.textContent = `${files.length} ${noun} selected (${formatBytes(bytes)})`;
  show(ui.selection, files.length > 0);
  if (files.length) showMessage(ui.filesError, "");
}

function filesFromInput(input) {
  return [...input.files].map((file) => ({ path: file.webkitRelativePath || file.name, file }));
}

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

function entryFile(entry) {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

/** Walk a dropped file or folder; paths keep the folder structure. */
async function walkEntry(entry, out) {
  if (entry.isFile) {
    out.push({ path: entry.fullPath || entry.name, file: await entryFile(entry) });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    // readEntries returns the listing in batches; an empty batch means the end.
    for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
      for (const child of batch) await walkEntry(child, out);
    }
  }
}

async function onDrop(event) {
  event.preventDefault();
  ui.dropzone.classList.remove("dragging");
  const transfer = event.dataTransfer;
  // Entries must be taken synchronously, before the first await ends the drop event.
  const entries = [...(transfer.items || [])]
    .filter((item) => item.kind === "file")
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  const plainFiles = [...(transfer.files || [])];
  try {
    if (entries.length && entries.every(Boolean)) {
      const found = [];
      for (const entry of entries) await walkEntry(entry, found);
      addFiles(found);
    } else {
      addFiles(plainFiles.map((file) => ({ path: file.name, file })));
    }
  } catch {
    showMessage(ui.filesError, "Some dropped items could not be read; try the folder picker instead.");
  }
}

// -- context -----------------------------------------------------------------------------

function checkContext() {
  const result = validateContext(ui.context.value);
  const message = result.ok ? "" : result.error;
  showMessage(ui.contextError, message);
  ui.context.setAttribute("aria-invalid", result.ok ? "false" : "true");
  return result;
}

// -- session and feed --------------------------------------------------------------------

function sessionUrl(sessionId) {
  return `${SESSIONS_URL}/${encodeURIComponent(sessionId)}`;
}

function describeStatus(data) {
  const words = {
    created: "Session created.",
    uploading: "Receiving files…",
    queued: "All files received; the run is queued.",
    running: "The processing agent is running.",
    succeeded: "The run finished successfully.",
    failed: "The run failed.",
  };
  return words[data.state] || `Status: ${data.state}`;
}

function onEvent(envelope) {
  const data = envelope.data || {};
  switch (envelope.type) {
    case "status":
      setBadge(ui.badge, data.state);
      logConsole.append(data.state === "failed" ? "error" : "info", describeStatus(data), envelope.ts);
      if (data.state === "failed") {
        const reason = data.error ? ` ${data.error}` : "";
        showMessage(ui.error, `The run failed.${reason}`);
        if (data.error) logConsole.append("error", data.error, envelope.ts);
      }
      if (data.state === "succeeded" || data.state === "failed") finishSession();
      if (data.state !== "created") recent.refresh(); // the list shows each session's state
      break;
    case "log":
      logConsole.append(data.level || "info", String(data.message ?? ""), envelope.ts);
      break;
    case "upload":
      if (!board.has(data.path)) board.ensure(data.path, data.length);
      board.set(data.path, data.offset);
      show(ui.progressSection);
      // one line per received file only for a small selection: thousands would bury the log
      if (data.done && !board.grouped) logConsole.append("info", `Received ${data.path} (${formatBytes(data.length)}).`, envelope.ts);
      break;
    case "result":
      if (state.session) results.show(state.session, data);
      show(ui.resultSection);
      break;
    default:
      break;
  }
}

function follow(session, since = 0) {
  if (state.feed && state.feed.sessionId === session.session_id) return;
  state.feed?.stop();
  show(ui.logSection);
  state.feed = new SessionFeed(
    session.links,
    {
      onEvent,
      onReset: (firstSeq) =>
        logConsole.append("warning", `Older log lines are no longer kept; showing from event ${firstSeq}.`),
      onEnd: () => showMessage(ui.feedNote, "The session has ended."),
      onTransport: (text) => showMessage(ui.feedNote, text),
    },
    { since },
  );
  state.feed.sessionId = session.session_id;
  state.feed.start();
}

function finishSession() {
  // A finished session is only shown, never resumed: the next Upload starts a new one.
  if (state.session && !state.session.viewing) {
    state.session.phase = "done";
    saveSession(state.session);
  }
  show(ui.startOver);
  ui.startOver.textContent = "Start a new session";
}

function resetView() {
  state.feed?.stop();
  state.feed = null;
  state.session = null;
  board.clear();
  logConsole.clear();
  results.clear();
  [ui.progressSection, ui.logSection, ui.resultSection, ui.startOver].forEach((n) => show(n, false));
  showMessage(ui.error, "");
  showMessage(ui.resumeNotice, "");
  showMessage(ui.feedNote, "");
  setBadge(ui.badge, "idle");
}

/** Reuse the remembered session when it has the same context and still takes files. */
async function obtainSession(context) {
  const stored = loadSession();
  if (stored && stored.phase === "upload" && stored.context_key === context.key) {
    try {
      const view = await getJson(sessionUrl(stored.session_id));
      if (ACCEPTING.has(view.state)) return { session: stored, view };
    } catch (error) {
      if (!(error instanceof FriendlyError) || error.retryable) throw error;
    }
  }
  if (stored) forgetSession();
  const created = await postJson(SESSIONS_URL, { experiment_context: context.value });
  const session = {
    session_id: created.session_id,
    links: created.links,
    context_key: context.key,
    context_text: ui.context.value,
    phase: "upload",
  };
  saveSession(session);
  return { session, view: { files: [] } };
}

function chunkSize() {
  const kib = Number(ui.chunkSize.value);
  return Number.isFinite(kib) && kib >= 1 ? Math.round(kib * 1024) : defaultChunkSize;
}

async function uploadAll(session, view) {
  const entries = [...state.selection.entries()].map(([path, file]) => ({ path, file }));
  show(ui.progressSection);
  const sent = await uploadSelection({ entries, session, view, board, maxChunk: chunkSize() });
  const seconds = (sent.ms / 1000).toFixed(1);
  const noun = sent.files === 1 ? "file" : "files";
  logConsole.append(
    "info",
    `Uploaded ${sent.files.toLocaleString("en")} ${noun} (${formatBytes(sent.bytes)} sent) in ${seconds} s, ` +
      `${sent.lanes} at a time.`,
  );
  root.dataset.uploadMs = String(Math.round(sent.ms));
  root.dataset.uploadRequests = String(sent.requests);
  root.dataset.uploadLanes = String(sent.lanes);
}

/** Every file fits Tus-Max-Size, asked before a session exists; false (and a message) if not. */
async function selectionFits() {
  const entries = [...state.selection.entries()].map(([path, file]) => ({ path, file }));
  const message = oversizeMessage(entries, await fetchUploadLimit());
  showMessage(ui.filesError, message);
  return !message;
}

async function startRun(session) {
  try {
    // POST /run is 409 while a file is still being stored in the volume
    await waitUntilStored(() => getJson(sessionUrl(session.session_id)));
    await postJson(session.links.run);
  } catch (error) {
    // A run that already exists (e.g. started before a reload) is simply followed.
    const view = error.status === 409 ? await getJson(sessionUrl(session.session_id)) : null;
    if (!view || !view.run) throw error;
  }
  session.phase = "run";
  saveSession(session);
}

async function onSubmit(event) {
  event.preventDefault();
  if (state.busy) return;
  state.contextTouched = true;
  const context = checkContext();
  const noFiles = state.selection.size === 0;
  showMessage(ui.filesError, noFiles ? "Choose at least one file or folder first." : "");
  if (!context.ok) {
    ui.context.focus();
    return;
  }
  if (noFiles) return;

  state.busy = true;
  ui.uploadButton.disabled = true;
  ui.uploadButton.textContent = "Uploading…";
  showMessage(ui.error, "");
  showMessage(ui.resumeNotice, "");
  try {
    if (!(await selectionFits())) return; // nothing is created until the selection fits
    const { session, view } = await obtainSession(context);
    if (!state.session || state.session.session_id !== session.session_id) {
      resetView();
    }
    state.session = session;
    showSessionInAddress(session.session_id);
    recent.setCurrent(session.session_id);
    recent.refresh();
    show(ui.startOver);
    ui.startOver.textContent = "Discard and start a new session";
    setBadge(ui.badge, view.state || "created");
    follow(session);
    await uploadAll(session, view);
    await startRun(session);
    ui.startOver.textContent = "Start a new session";
  } catch (error) {
    const message = error instanceof FriendlyError ? error.message : `Something went wrong: ${error.message}`;
    showMessage(ui.error, message);
  } finally {
    state.busy = false;
    ui.uploadButton.disabled = false;
    ui.uploadButton.textContent = "Upload";
  }
}

/** /?session=<id>: show that session (state, files, its whole log, results) as it is. */
async function openLinked(sessionId) {
  let view;
  try {
    view = await getJson(sessionUrl(sessionId));
  } catch (error) {
    clearSessionFromAddress();
    const gone = error instanceof FriendlyError && error.status === 404;
    showMessage(ui.error, gone ? "The session in this link does not exist (or no longer does)." : error.message);
    return;
  }
  const session = { session_id: sessionId, links: sessionLinks(sessionId, view.links), phase: "view", viewing: true };
  state.session = session;
  recent.setCurrent(sessionId);
  setBadge(ui.badge, view.state);
  for (const file of view.files || []) {
    board.ensure(file.path, file.length);
    board.set(file.path, file.offset);
  }
  show(ui.progressSection, (view.files || []).length > 0);
  show(ui.startOver);
  ui.startOver.textContent = "Start a new session";
  follow(session); // replays the whole log from seq 0, then follows it live
  if (view.state === "succeeded" && view.artifacts) {
    results.show(session, { artifacts: view.artifacts, summary: view.summary });
    show(ui.resultSection);
  }
}

/** After a reload: offer to resume an unfinished upload, or show the last run again. */
async function restore() {
  const stored = loadSession();
  const linked = linkedSessionId();
  if (addressNamesSession() && !linked) {
    clearSessionFromAddress();
    showMessage(ui.error, "The session in this link does not exist (the id is not well-formed).");
  }
  if (linked && stored?.session_id !== linked) {
    await openLinked(linked);
    return;
  }
  if (!stored) return;
  let view;
  try {
    view = await getJson(sessionUrl(stored.session_id));
  } catch (error) {
    if (error instanceof FriendlyError && error.status === 404) forgetSession();
    return;
  }
  if (stored.context_text && !ui.context.value) ui.context.value = stored.context_text;
  showSessionInAddress(stored.session_id);
  recent.setCurrent(stored.session_id);
  setBadge(ui.badge, view.state);
  show(ui.startOver);
  if (ACCEPTING.has(view.state) && stored.phase === "upload") {
    const files = view.files || [];
    const done = files.filter((f) => f.done).length;
    showMessage(
      ui.resumeNotice,
      `An earlier upload is unfinished (${done} of ${files.length} files complete). ` +
        "Choose the same files again and press Upload to continue where it stopped.",
    );
    ui.startOver.textContent = "Discard and start a new session";
    return;
  }
  state.session = stored;
  ui.startOver.textContent = "Start a new session";
  follow(stored);
}

// -- wiring ------------------------------------------------------------------------------

ui.chunkSize.value = String(Math.round((defaultChunkSize / 1024) * 100) / 100);
for (const input of [ui.fileInput, ui.folderInput]) {
  input.addEventListener("change", () => {
    addFiles(filesFromInput(input));
    input.value = ""; // choosing the same files again still fires `change`
  });
}
ui.clearSelection.addEventListener("click", () => {
  state.selection.clear();
  renderSelection();
});
ui.dropzone.addEventListener("dragover", (event) => {
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
  ui.dropzone.classList.add("dragging");
});
ui.dropzone.addEventListener("dragleave", () => ui.dropzone.classList.remove("dragging"));
ui.dropzone.addEventListener("drop", onDrop);
ui.context.addEventListener("input", () => {
  if (state.contextTouched) checkContext();
});
ui.context.addEventListener("blur", () => {
  if (ui.context.value) {
    state.contextTouched = true;
    checkContext();
  }
});
ui.form.addEventListener("submit", onSubmit);
ui.startOver.addEventListener("click", () => {
  if (state.busy) return;
  forgetSession();
  resetView();
  clearSessionFromAddress();
  recent.setCurrent(null);
  ui.context.focus();
});
root.dataset.ready = "true";
recent.refresh();
restore();
