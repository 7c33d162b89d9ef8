// node tus_cases.mjs <case> <files endpoint> <file> [storage file]
// One upload with the unmodified tus-js-client, using one of the options real deployments
// use; prints one JSON line: what the client saw (requests made, the upload URL).
//   override   overridePatchMethod: every PATCH is a POST with X-HTTP-Method-Override
//   deferred   uploadLengthDeferred: a stream of unknown length, Upload-Length sent last
//   parallel   parallelUploads: 3 (concatenation: 3 partial uploads and a final one)
//   nullpath   metadata relativePath "null", as Uppy sends for a file not from a folder
//   abort      stores the fingerprint in <storage file>, aborts after the first chunk
//   resume     finds the stored fingerprint in <storage file> and resumes from it
import { createReadStream, readFileSync } from "node:fs";
import { basename } from "node:path";
import { Readable } from "node:stream";
import * as tus from "tus-js-client";

const [kind, endpoint, file, storagePath] = process.argv.slice(2);
const name = basename(file);
const requests = [];

function record(req) {
  const h = (k) => req.getHeader(k) ?? null;
  requests.push({
    method: req.getMethod(),
    url: req.getURL(),
    override: h("X-HTTP-Method-Override"),
    length: h("Upload-Length"),
    defer: h("Upload-Defer-Length"),
    concat: h("Upload-Concat"),
    offset: h("Upload-Offset"),
  });
}

function options(extra) {
  return {
    endpoint,
    chunkSize: 64 * 1024,
    retryDelays: [0, 200, 500],
    metadata: { relativePath: name, filename: name, filetype: "application/octet-stream" },
    onBeforeRequest: record,
    ...extra,
  };
}

function run(input, extra, { abortAfterFirstChunk = false, resume = false } = {}) {
  return new Promise((resolve, reject) => {
    let up;
    const opts = options({
      onError: reject,
      onSuccess: () => resolve({ url: up.url, requests }),
      ...extra,
    });
    if (abortAfterFirstChunk) {
      opts.onChunkComplete = (_size, sent) => {
        if (up.url === null) return;
        up.abort(false).then(() => resolve({ url: up.url, sent, requests, aborted: true }));
      };
    }
    up = new tus.Upload(input, opts);
    if (!resume) {
      up.start();
      return;
    }
    up.findPreviousUploads().then((previous) => {
      if (previous.length !== 1) {
        reject(new Error(`expected one stored upload, found ${previous.length}`));
        return;
      }
      up.resumeFromPreviousUpload(previous[0]);
      up.start();
    }, reject);
  });
}

let result;
if (kind === "override") {
  result = await run(readFileSync(file), { overridePatchMethod: true });
} else if (kind === "deferred") {
  // a plain Readable: tus-js-client cannot know its size, so the length is deferred
  const data = readFileSync(file);
  const pieces = [];
  for (let at = 0; at < data.length; at += 50_000) pieces.push(data.subarray(at, at + 50_000));
  const stream = Readable.from(pieces, { objectMode: false });
  result = await run(stream, { uploadLengthDeferred: true });
} else if (kind === "parallel") {
  result = await run(readFileSync(file), { parallelUploads: 3 });
} else if (kind === "nullpath") {
  result = await run(readFileSync(file), {
    metadata: { relativePath: "null", filename: name, filetype: "application/octet-stream" },
  });
} else if (kind === "abort" || kind === "resume") {
  const stored = {
    urlStorage: new tus.FileUrlStorage(storagePath),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    retryDelays: null,
  };
  result = await run(createReadStream(file), stored, {
    abortAfterFirstChunk: kind === "abort",
    resume: kind === "resume",
  });
} else {
  throw new Error(`unknown case ${kind}`);
}
console.log(JSON.stringify(result));
