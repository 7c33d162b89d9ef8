// Sessions to come back to: the ?session=<id> address of the session on screen, and the
// "Recent sessions" list (GET /api/sessions: the sessions this browser's cookie started).

import { getJson } from "./http.js";
import { el } from "./ui.js";

const PARAM = "session";
const SESSION_ID = /^[0-9a-f]{32}$/;
const LIST_URL = "/api/sessions";

/** The session id named by the address (?session=…), if it is a well-formed one. */
export function linkedSessionId() {
  const value = new URLSearchParams(window.location.search).get(PARAM);
  return value && SESSION_ID.test(value) ? value : null;
}

/** Whether the address names a session at all (well-formed or not). */
export function addressNamesSession() {
  return new URLSearchParams(window.location.search).has(PARAM);
}

function replaceAddress(sessionId) {
  const url = new URL(window.location.href);
  if (sessionId) url.searchParams.set(PARAM, sessionId);
  else url.searchParams.delete(PARAM);
  if (url.href !== window.location.href) window.history.replaceState(window.history.state, "", url);
}

/** Put the session in the address bar, so a reload or a shared link lands on it. */
export function showSessionInAddress(sessionId) {
  replaceAddress(sessionId);
}

export function clearSessionFromAddress() {
  replaceAddress(null);
}

/** The page's address for one session. */
export function sessionPageUrl(sessionId) {
  return `/?${PARAM}=${encodeURIComponent(sessionId)}`;
}

/** A session's API links; the ones the server sent win over the documented defaults. */
export function sessionLinks(sessionId, given = {}) {
  const base = `/api/sessions/${encodeURIComponent(sessionId)}`;
  return {
    files: `${base}/files`,
    run: `${base}/run`,
    ws: `${base}/ws`,
    events: `${base}/events`,
    artifacts: `${base}/artifacts`,
    ...(given || {}),
  };
}

function startedAt(created) {
  const time = new Date(created);
  if (Number.isNaN(time.getTime())) return "";
  return time.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** The "Recent sessions" card: newest first, each a link to /?session=<id>. */
export class RecentSessions {
  constructor({ section, list }) {
    this.section = section;
    this.list = list;
    this.current = null;
    this.pending = null;
  }

  /** Mark the session on screen (aria-current) without asking the server again. */
  setCurrent(sessionId) {
    this.current = sessionId;
    for (const item of this.list.querySelectorAll("[data-recent-session]")) {
      const link = item.querySelector("a");
      if (item.dataset.recentSession === sessionId) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  /** Ask the server for this browser's sessions and show them; errors leave the list as it was. */
  async refresh() {
    if (this.pending) return this.pending;
    this.pending = getJson(LIST_URL)
      .then((body) => this.render(Array.isArray(body?.sessions) ? body.sessions : []))
      .catch(() => {})
      .finally(() => {
        this.pending = null;
      });
    return this.pending;
  }

  render(sessions) {
    const items = sessions
      .filter((s) => s && SESSION_ID.test(String(s.session_id)))
      .map((s) => {
        const id = String(s.session_id);
        const state = String(s.state || "unknown");
        const when = startedAt(s.created);
        const title = String(s.title || "").trim() || `Session ${id.slice(0, 8)}`;
        const link = el(
          "a",
          { href: sessionPageUrl(id), class: "recent-link", "aria-current": id === this.current ? "page" : null },
          el("span", { class: "recent-title", text: title }),
        );
        return el(
          "li",
          { class: "recent-item", "data-recent-session": id, "data-state": state },
          link,
          el("span", { class: "badge", "data-state": state, text: state }),
          el("span", { class: "recent-meta" }, el("time", { datetime: String(s.created || ""), text: when }), " · ", el("code", { text: id.slice(0, 8) })),
        );
      });
    this.list.replaceChildren(...items);
    this.section.hidden = items.length === 0;
    this.section.dataset.loaded = "true";
  }
}
