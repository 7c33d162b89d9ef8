// node upload_folder.mjs <files endpoint> <folder>: uploads every file with tus-js-client,
// relative paths in the `relativePath` metadata, and prints one JSON line per file.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import * as tus from "tus-js-client";

const [endpoint, root] = process.argv.slice(2);

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    return statSync(full).isDirectory() ? walk(full) : [full];
  });
}

function upload(file) {
  const rel = relative(root, file).split(sep).join("/");
  const data = readFileSync(file);
  return new Promise((resolve, reject) => {
    const up = new tus.Upload(data, {
      endpoint,
      chunkSize: 64 * 1024,
      retryDelays: [0, 200, 500],
      metadata: { relativePath: rel, filename: rel.split("/").pop(), filetype: "text/csv" },
      onError: reject,
      onSuccess: () => resolve({ path: rel, url: up.url, size: data.length }),
    });
    up.start();
  });
}

const results = [];
for (const file of walk(root)) {
  results.push(await upload(file));
}
for (const r of results) console.log(JSON.stringify(r));
