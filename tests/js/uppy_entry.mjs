// Bundled for the browser by esbuild at test time (tests/test_uppy.py): npm's @uppy/core
// and @uppy/tus, unmodified. Files are added as @uppy/dashboard adds picked files: meta
// relativePath is the browser's webkitRelativePath, or null when not picked from a folder
// (and @uppy/tus sends that null as the string "null").
import Uppy from "@uppy/core";
import Tus from "@uppy/tus";

window.uploadWithUppy = async (endpoint, input) => {
  const uppy = new Uppy({ autoProceed: false });
  uppy.use(Tus, { endpoint, chunkSize: 64 * 1024, retryDelays: [0, 200] });
  for (const file of input.files) {
    uppy.addFile({
      source: "file-input",
      name: file.name,
      type: file.type,
      data: file,
      meta: { relativePath: file.relativePath || file.webkitRelativePath || null },
    });
  }
  const result = await uppy.upload();
  return {
    successful: result.successful.map((f) => f.name).sort(),
    failed: result.failed.map((f) => [f.name, String(f.error)]),
    sentMeta: result.successful.map((f) => String(f.meta.relativePath)),
  };
};
