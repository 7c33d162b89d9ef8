// Waiting until the server has stored every uploaded file in the session's volume.
// The last PATCH of a file is answered once its bytes are in; the server then publishes it
// into the volume in the background and reports `done` in the session view (and the upload
// event). POST /run is refused (409) until every file is done, so the page waits first.

const POLL_MS = 500;
const STORE_WAIT_MS = 60 * 60 * 1000; // a backstop: a multi-GB file on Modal takes minutes

/** Resolves once every file of the session view `readView()` returns is done. */
export async function waitUntilStored(readView, onWaiting = () => {}) {
  const deadline = Date.now() + STORE_WAIT_MS;
  for (let told = false; ; told = true) {
    const view = await readView();
    const files = view.files || [];
    if (view.run || files.every((file) => file.done)) return;
    const lost = files.find((file) => !file.done && file.offset < file.length);
    if (lost) throw new Error(`The server could not store ${lost.path}; upload it again.`);
    if (!told) onWaiting(files.filter((file) => !file.done).length);
    if (Date.now() > deadline) throw new Error("The server did not store the files in time.");
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
