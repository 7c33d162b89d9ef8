// A small tus 1.0.0 client on fetch: creation (with upload for small files), HEAD to resume,
// PATCH in chunks sized to about a second of transfer, retries.

import { FriendlyError, problemDetail, request } from "./http.js";
import { forgetUploadUrl, loadUploadUrl, saveUploadUrl, uploadKey } from "./resume.js";

const TUS_VERSION = "1.0.0";
// Delays between attempts; network errors, 5xx and 423 (upload busy) are retried.
export const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 16000, 30000];
const GONE = new Set([404, 410]);

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function isRetryableStatus(status) {
  return status === 423 || status === 429 || status >= 500;
}

function base64Utf8(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** The Upload-Metadata header: `key base64(value)` pairs, comma-separated. */
export function encodeMetadata(pairs) {
  return Object.entries(pairs)
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => `${key} ${base64Utf8(String(value))}`)
    .join(",");
}

async function failure(response, what) {
  const detail = await problemDetail(response);
  return new FriendlyError(`${what}: ${detail}`, {
    status: response.status,
    retryable: isRetryableStatus(response.status),
  });
}

/** Run `operation`, retrying with exponential backoff while its error is retryable. */
export async function withRetry(operation, { delays = RETRY_DELAYS_MS, onRetry } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await operation();
    } catch (error) {
      if (!(error instanceof FriendlyError) || !error.retryable || attempt >= delays.length) {
        throw error;
      }
      onRetry?.(error, delays[attempt]);
      await wait(delays[attempt]);
    }
  }
}

/** The smallest chunk a sizer picks (unless the configured maximum is smaller). */
export const MIN_CHUNK = 256 * 1024;
const TARGET_MS = 1000; // a chunk should take about a second, so the bars move every second

/**
 * Picks each request's size from the measured rate: about one second of transfer, between
 * MIN_CHUNK and the configured maximum. fetch() reports no upload progress, so a bar can
 * only move when a request ends; this keeps that at least once a second on slow links and
 * still sends the maximum on fast ones. One sizer is shared by all lanes (each lane's rate,
 * as it sees it while the others share the link).
 */
export class ChunkSizer {
  constructor(maximum, { minimum = MIN_CHUNK, targetMs = TARGET_MS } = {}) {
    this.max = Math.max(1, maximum | 0);
    this.min = Math.min(minimum, this.max);
    this.targetMs = targetMs;
    this.rate = null; // bytes per millisecond, smoothed
  }

  next() {
    if (this.rate === null) return this.min;
    return Math.round(Math.min(this.max, Math.max(this.min, this.rate * this.targetMs)));
  }

  /** A request of `bytes` body took `ms`; tiny bodies say little about the rate. */
  record(bytes, ms) {
    if (bytes < Math.min(64 * 1024, this.min) || ms <= 0) return;
    const rate = bytes / ms;
    this.rate = this.rate === null ? rate : 0.5 * this.rate + 0.5 * rate;
  }
}

/**
 * One file going up: finds or creates its upload, then PATCHes from the server's offset.
 * A file that fits in one chunk is sent with its creation (creation-with-upload): one
 * request per small file.
 */
export class TusUpload {
  constructor({ file, relativePath, endpoint, sessionId, chunkSize, sizer, onProgress, onRetry }) {
    this.file = file;
    this.relativePath = relativePath;
    this.endpoint = endpoint;
    this.sizer = sizer || new ChunkSizer(chunkSize, { minimum: Math.max(1, chunkSize | 0) });
    this.key = uploadKey(sessionId, relativePath, file);
    this.onProgress = onProgress || (() => {});
    this.onRetry = onRetry;
    this.url = null;
    this.offset = 0;
    this.requests = 0; // HTTP requests this upload made
    this.creationSent = false; // a creation request went out (its reply may have been lost)
    this.resumedFrom = null; // the offset a stored upload continued from
    this.remoteLength = null; // Upload-Length of the last HEAD
  }

  async start() {
    await withRetry(() => this.locate(), { onRetry: this.onRetry });
    this.onProgress(this.offset, this.file.size);
    while (this.offset < this.file.size) {
      await withRetry(() => this.sendChunk(), { onRetry: this.onRetry });
      this.onProgress(this.offset, this.file.size);
    }
    if (this.url) forgetUploadUrl(this.key); // complete: nothing left to resume
    return this;
  }

  /** Continue a remembered upload (HEAD) or create a new one. */
  async locate() {
    const stored = this.url || loadUploadUrl(this.key);
    if (stored) {
      const offset = await this.head(stored);
      if (offset !== null) {
        if (this.url === null) this.resumedFrom = offset;
        this.url = stored;
        this.offset = offset;
        return;
      }
      forgetUploadUrl(this.key); // expired or unknown: start this file anew
      this.url = null;
    }
    await this.create();
  }

  /** The server's offset for `url`, or null when the upload is gone (404/410). */
  async head(url) {
    this.requests += 1;
    const response = await request(url, {
      method: "HEAD",
      headers: { "Tus-Resumable": TUS_VERSION },
      cache: "no-store",
    });
    if (GONE.has(response.status)) return null;
    if (!response.ok) throw await failure(response, `Checking ${this.relativePath} failed`);
    const offset = Number.parseInt(response.headers.get("Upload-Offset") ?? "", 10);
    this.remoteLength = Number.parseInt(response.headers.get("Upload-Length") ?? "", 10);
    if (!Number.isFinite(offset)) {
      throw new FriendlyError(`The server did not say how much of ${this.relativePath} it has.`);
    }
    return offset;
  }

  async create() {
    const size = this.file.size;
    const withBody = size > 0 && size <= this.sizer.next();
    const headers = {
      "Tus-Resumable": TUS_VERSION,
      "Upload-Length": String(size),
      "Upload-Metadata": encodeMetadata({
        relativePath: this.relativePath,
        filename: this.file.name,
        filetype: this.file.type || undefined,
      }),
    };
    if (withBody) headers["Content-Type"] = "application/offset+octet-stream";
    const retried = this.creationSent;
    this.creationSent = true;
    this.requests += 1;
    const began = performance.now();
    const response = await request(this.endpoint, {
      method: "POST",
      headers,
      body: withBody ? this.file : undefined,
    });
    const twin = response.status === 409 ? response.headers.get("Location") : null;
    if (twin) {
      // An unfinished upload of this path is in the session: one whose creation reply was
      // lost (a retry, or a page reloaded mid-request). Resume it if it is this file's.
      const url = new URL(twin, window.location.href).href;
      const offset = await this.head(url);
      if (offset !== null && this.remoteLength === size) {
        this.url = url;
        this.offset = offset;
        saveUploadUrl(this.key, this.url);
        return;
      }
    } else if (response.status === 409 && retried) {
      this.offset = size; // our earlier creation completed the file; only its reply was lost
      return;
    }
    if (response.status !== 201) {
      throw await failure(response, `${this.relativePath} could not be started`);
    }
    if (withBody) this.sizer.record(size, performance.now() - began);
    const location = response.headers.get("Location");
    if (!location) throw new FriendlyError("The server did not say where to send the file.");
    this.url = new URL(location, window.location.href).href;
    this.offset = Number.parseInt(response.headers.get("Upload-Offset") ?? "0", 10) || 0;
    if (this.offset < size) saveUploadUrl(this.key, this.url);
  }

  async sendChunk() {
    const end = Math.min(this.offset + this.sizer.next(), this.file.size);
    this.requests += 1;
    const began = performance.now();
    const response = await request(this.url, {
      method: "PATCH",
      headers: {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": String(this.offset),
        "Content-Type": "application/offset+octet-stream",
      },
      body: this.file.slice(this.offset, end),
    });
    if (response.ok) {
      this.sizer.record(end - this.offset, performance.now() - began);
      const reported = Number.parseInt(response.headers.get("Upload-Offset") ?? "", 10);
      this.offset = Number.isFinite(reported) ? reported : end;
      return;
    }
    if (response.status === 409) {
      // Our idea of the offset is stale (e.g. a chunk landed but its reply was lost).
      const offset = await this.head(this.url);
      if (offset === null) throw new FriendlyError(`The upload of ${this.relativePath} disappeared.`);
      this.offset = offset;
      return;
    }
    if (GONE.has(response.status)) {
      forgetUploadUrl(this.key);
      this.url = null;
      this.creationSent = false;
      await this.create();
      return;
    }
    throw await failure(response, `Sending ${this.relativePath} failed`);
  }
}

/** Run `worker` over `items` with at most `limit` in flight; rejects on the first failure. */
export async function runPool(items, limit, worker) {
  const queue = [...items];
  let failed = null;
  const lanes = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length && !failed) {
      const item = queue.shift();
      try {
        await worker(item);
      } catch (error) {
        failed = failed || error;
      }
    }
  });
  await Promise.all(lanes);
  if (failed) throw failed;
}
