// What survives a page reload: the open session and each upload's URL (localStorage).
// Upload URLs are keyed by session, relative path, size and modification time, so the
// same file chosen again finds its upload and a changed file starts a new one.

const SESSION_KEY = "dashboard.session";
const UPLOAD_PREFIX = "dashboard.upload:";

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // private mode or storage disabled: uploads still work, without resume
  }
}

function read(key) {
  const store = storage();
  if (!store) return null;
  try {
    return JSON.parse(store.getItem(key) ?? "null");
  } catch {
    return null;
  }
}

function write(key, value) {
  const store = storage();
  if (!store) return;
  try {
    store.setItem(key, JSON.stringify(value));
  } catch {
    // quota exceeded: resume is best effort
  }
}

/** The remembered session: {session_id, links, context_key, phase: "upload"|"run"} or null. */
export function loadSession() {
  const value = read(SESSION_KEY);
  return value && typeof value.session_id === "string" && value.links ? value : null;
}

export function saveSession(session) {
  write(SESSION_KEY, session);
}

export function forgetSession() {
  const store = storage();
  const current = loadSession();
  if (!store) return;
  store.removeItem(SESSION_KEY);
  if (current) forgetUploads(current.session_id);
}

export function uploadKey(sessionId, relativePath, file) {
  return `${UPLOAD_PREFIX}${sessionId}:${file.size}:${file.lastModified}:${relativePath}`;
}

export function loadUploadUrl(key) {
  const value = read(key);
  return typeof value === "string" ? value : null;
}

export function saveUploadUrl(key, url) {
  write(key, url);
}

export function forgetUploadUrl(key) {
  storage()?.removeItem(key);
}

function forgetUploads(sessionId) {
  const store = storage();
  if (!store) return;
  const prefix = `${UPLOAD_PREFIX}${sessionId}:`;
  const doomed = [];
  for (let i = 0; i < store.length; i += 1) {
    const key = store.key(i);
    if (key && key.startsWith(prefix)) doomed.push(key);
  }
  doomed.forEach((key) => store.removeItem(key));
}
