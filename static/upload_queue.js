// Sending a selection: the size limit checked before any session exists, then every file
// through the tus client with several files in flight and one shared chunk sizer.

import { FriendlyError, request } from "./http.js";
import { loadUploadUrl, uploadKey } from "./resume.js";
import { ChunkSizer, TusUpload, runPool } from "./tus.js";

// Session-less tus discovery (OPTIONS): Tus-Max-Size before a session is created.
export const LIMITS_URL = "/api/sessions/files";
// Chromium keeps at most 6 HTTP/1.1 connections per origin; one stays free for the page's
// own requests (the SSE fallback of the live feed, the session and run calls). HTTP/2 and
// HTTP/3 multiplex one connection, so more files can be in flight there.
const HTTP1_CONNECTIONS = 6;
const RESERVED_CONNECTIONS = 1;
const MULTIPLEXED_LANES = 16;

/** Files in flight at once for this page's connection to its origin. */
export function laneCount() {
  const [navigation] = performance.getEntriesByType?.("navigation") ?? [];
  const protocol = navigation?.nextHopProtocol ?? "";
  if (protocol === "h2" || protocol === "h3") return MULTIPLEXED_LANES;
  return HTTP1_CONNECTIONS - RESERVED_CONNECTIONS;
}

/** The largest file the server takes (Tus-Max-Size), or null when it does not say. */
export async function fetchUploadLimit() {
  let response;
  try {
    response = await request(LIMITS_URL, { method: "OPTIONS", headers: { "Tus-Resumable": "1.0.0" } });
  } catch (error) {
    if (error instanceof FriendlyError) throw error;
    return null;
  }
  const limit = Number.parseInt(response.headers.get("Tus-Max-Size") ?? "", 10);
  return response.ok && Number.isFinite(limit) && limit >= 0 ? limit : null;
}

const UNITS = ["bytes", "KB", "MB", "GB", "TB"];

function inUnit(bytes, unit, digits) {
  return `${(bytes / 1000 ** unit).toFixed(digits)} ${UNITS[unit]}`;
}

/** A size in everyday (decimal) units, as precise as needed to differ from `other`. */
export function everydaySize(bytes, other = null) {
  let unit = 0;
  while (unit < UNITS.length - 1 && bytes >= 1000 ** (unit + 1)) unit += 1;
  if (unit === 0) return `${bytes} ${bytes === 1 ? "byte" : "bytes"}`;
  for (let digits = 0; digits <= 6; digits += 1) {
    const text = inUnit(bytes, unit, digits);
    if (other === null || text !== inUnit(other, unit, digits)) return text;
  }
  return `${bytes.toLocaleString("en")} bytes`;
}

/**
 * The sentence naming every file over `limit` ("big50.bin is 52 MB; this dashboard accepts
 * files up to 40 MB."), or "" when the whole selection fits.
 */
export function oversizeMessage(entries, limit) {
  if (limit === null || limit === undefined) return "";
  const over = entries.filter(({ file }) => file.size > limit);
  if (!over.length) return "";
  const shown = over.slice(0, 3).map(({ path, file }) => `${path} is ${everydaySize(file.size, limit)}`);
  const more = over.length > 3 ? ` and ${over.length - 3} more files are too` : "";
  const limitText = everydaySize(limit);
  return (
    `${shown.join(", ")}${more}; this dashboard accepts files up to ${limitText}. ` +
    "Remove the larger files from the selection; nothing has been uploaded."
  );
}

/**
 * Upload `entries` ({path, file}) into `session`. Files the server already holds complete
 * (`view.files`) are only marked done. `board` shows progress; returns {files, bytes, ms,
 * requests, lanes}.
 */
export async function uploadSelection({ entries, session, view, board, maxChunk, lanes = laneCount() }) {
  const alreadyDone = new Set(
    (view.files || []).filter((f) => f.done).map((f) => `${f.path}\u0000${f.length}`),
  );
  // in path order, so a folder's files go up together and its row fills in turn
  entries = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  board.addMany(entries.map(({ path, file }) => ({ path, size: file.size })));
  const sizer = new ChunkSizer(maxChunk);
  const began = performance.now();
  let requests = 0;
  let bytes = 0;
  await runPool(entries, lanes, async ({ path, file }) => {
    const known = loadUploadUrl(uploadKey(session.session_id, path, file));
    if (!known && alreadyDone.has(`${path}\u0000${file.size}`)) {
      board.set(path, file.size); // in the session already (e.g. storage was cleared)
      return;
    }
    const upload = new TusUpload({
      file,
      relativePath: path,
      endpoint: session.links.files,
      sessionId: session.session_id,
      sizer,
      onProgress: (offset) => board.set(path, offset),
      onRetry: (error, delay) =>
        board.setState(path, "retrying", `${error.message} Retrying in ${Math.round(delay / 1000) || 1} s…`),
    });
    try {
      await upload.start();
    } catch (error) {
      board.setState(path, "error", error.message);
      throw error;
    } finally {
      requests += upload.requests;
    }
    bytes += file.size - (upload.resumedFrom || 0);
    const note = upload.resumedFrom ? `Resumed from ${everydaySize(upload.resumedFrom)}.` : "";
    board.setState(path, "done", note);
  });
  return { files: entries.length, bytes, ms: performance.now() - began, requests, lanes };
}
