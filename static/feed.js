// One session's live events: WebSocket first, SSE when WebSockets cannot connect.
// Both resume from the last seq seen, so a reconnect neither loses nor repeats events.

const SSE_TYPES = ["status", "log", "upload", "result"];
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15000];
const WS_CLOSE_NORMAL = 1000; // the session ended and everything was delivered

function absoluteWsUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

export class SessionFeed {
  /**
   * @param {{ws: string, events: string}} links  the session's links from the API
   * @param {object} handlers  onEvent(envelope), onReset(firstSeq), onEnd(), onTransport(text)
   */
  constructor(links, handlers, { since = 0, preferSse = false } = {}) {
    this.links = links;
    this.handlers = handlers;
    this.lastSeq = since;
    this.useSse = preferSse || typeof WebSocket === "undefined";
    this.attempt = 0;
    this.ended = false;
    this.socket = null;
    this.source = null;
    this.timer = null;
  }

  start() {
    this.ended = false;
    this.connect();
    return this;
  }

  stop() {
    this.ended = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(WS_CLOSE_NORMAL);
    if (this.source) this.source.close();
    this.socket = null;
    this.source = null;
  }

  connect() {
    if (this.ended) return;
    if (this.useSse) this.connectSse();
    else this.connectWs();
  }

  reconnectLater() {
    if (this.ended) return;
    const delay = RECONNECT_DELAYS_MS[Math.min(this.attempt, RECONNECT_DELAYS_MS.length - 1)];
    this.attempt += 1;
    this.handlers.onTransport?.(`Live feed interrupted; reconnecting in ${Math.round(delay / 100) / 10} s…`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  deliver(item) {
    if (item.type === "reset") {
      this.handlers.onReset?.(item.first_seq);
      return;
    }
    if (typeof item.seq !== "number" || item.seq <= this.lastSeq) return; // already seen
    this.lastSeq = item.seq;
    this.handlers.onEvent?.(item);
  }

  finish() {
    if (this.ended) return;
    this.stop();
    this.handlers.onEnd?.();
  }

  connectWs() {
    const url = absoluteWsUrl(this.links.ws);
    url.searchParams.set("since", String(this.lastSeq));
    let opened = false;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      opened = true;
      this.attempt = 0;
      this.handlers.onTransport?.("");
    });
    socket.addEventListener("message", (message) => {
      let items;
      try {
        items = JSON.parse(message.data);
      } catch {
        return;
      }
      (Array.isArray(items) ? items : [items]).forEach((item) => this.deliver(item));
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (event.code === WS_CLOSE_NORMAL) {
        this.finish();
      } else if (!opened) {
        // The WebSocket never connected (blocked by a proxy?): follow the SSE mirror.
        this.useSse = true;
        this.connect();
      } else {
        this.reconnectLater();
      }
    });
  }

  connectSse() {
    const url = new URL(this.links.events, window.location.href);
    url.searchParams.set("last_event_id", String(this.lastSeq));
    const source = new EventSource(url);
    this.source = source;
    const onEnvelope = (message) => {
      this.attempt = 0;
      try {
        this.deliver(JSON.parse(message.data));
      } catch {
        // a malformed event is skipped, the feed goes on
      }
    };
    SSE_TYPES.forEach((type) => source.addEventListener(type, onEnvelope));
    source.addEventListener("open", () => this.handlers.onTransport?.(""));
    source.addEventListener("reset", (message) => {
      try {
        this.deliver({ type: "reset", ...JSON.parse(message.data) });
      } catch {
        // ignore
      }
    });
    source.addEventListener("end", () => this.finish());
    source.addEventListener("error", () => {
      // EventSource would retry with the stale ?last_event_id; reconnect ourselves instead.
      if (this.source !== source) return;
      source.close();
      this.source = null;
      this.reconnectLater();
    });
  }
}
