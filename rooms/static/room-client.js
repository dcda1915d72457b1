// The room's WebSocket client (protocol: rooms/messages.py), as an ES module, no build step.
//
//   const client = new RoomClient({webinarId, token});     // token: viewers; staff use their login cookie
//   client.on("welcome", ({state, resumed}) => ...);        // state: the snapshot (null when resumed)
//   client.on("chat.message", (event) => ...);              // one room event, by kind ("event": every kind)
//   client.on("notice:live.interrupted", (data) => ...);    // ephemeral notices ("notice": every kind)
//   client.on("notice:maintenance", (data) => ...);         // {enabled, message}: see followMaintenance in panel.js
//   client.on("status", (status) => ...);                   // connecting, open, waiting, refused, stopped
//   client.start();
//   const ack = await client.send("chat.send", {text});     // rejects with a RoomError (code from the server)
//
// Events are applied in id order exactly once: ids at or below the last one seen are ignored.
// After any close but 4403 (banned or refused) the client reconnects by itself with an
// exponential backoff and jitter, and resumes with the last event id it saw. That id is kept in
// memory and in sessionStorage (per webinar and page kind), together with the page's model when
// the page gives one (`snapshot` option): a reload then resumes instead of asking for a snapshot.

export const PROTOCOL_VERSION = 1;
const STORE_PREFIX = "webinar-room";
const MAX_REF = 2 ** 31;

/** A refusal from the server (`code` as in rooms/commands.py), or a local one
 * (`offline`, `timeout`, `disconnected`). */
export class RoomError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "RoomError";
    this.code = code;
  }
}

function storageGet(storage, key) {
  try {
    return storage.getItem(key);
  } catch {
    return null; // storage disabled (private mode, sandboxed iframe)
  }
}

function storageSet(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, value);
    return true;
  } catch {
    return false; // full or disabled: the page still works, a reload just asks for a snapshot
  }
}

export class RoomClient {
  /**
   * @param {object} options
   * @param {string} options.webinarId
   * @param {string|null} [options.token] a viewer's join token (none: staff, with the login cookie)
   * @param {string} [options.scope] names the page kind in sessionStorage ("panel", "moderate")
   * @param {string} [options.socket] the socket's path under /ws/: "rooms", or "speak" for the speaker
   *   page (the same socket, under a path the proxy pins to the media node: docs/DEPLOYMENT.md)
   * @param {() => any} [options.snapshot] returns the page's model (JSON-able) to keep with the last event id
   */
  constructor({webinarId, token = null, scope = "panel", socket = "rooms", snapshot = null, ackTimeoutMs = 10000,
               pingEveryMs = 25000, pongTimeoutMs = 10000, minBackoffMs = 500, maxBackoffMs = 15000} = {}) {
    this.webinarId = String(webinarId);
    this.token = token || null;
    this.scope = scope;
    this.socket = socket;
    this.ackTimeoutMs = ackTimeoutMs;
    this.pingEveryMs = pingEveryMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.minBackoffMs = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.ws = null;
    this.connected = false;
    this.status = "idle";
    this.role = null;
    this.participant = null;
    this.refusedReason = null;
    this.lastEventId = 0;
    this.resumed = false;
    this.attempts = 0;
    this._snapshot = snapshot;
    this._handlers = new Map();
    this._pending = new Map();
    this._nextRef = 1;
    this._failuresBeforeWelcome = 0;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._saveTimer = null;
    this._stopped = false;
    this.restored = null;
    const saved = this._load();
    if (saved && snapshot && saved.model !== undefined && Number.isInteger(saved.lastEventId)) {
      this.restored = saved.model;
      this.lastEventId = saved.lastEventId;
    }
    this._onPageHide = () => this._save();
    this._onOnline = () => {
      if (!this.connected && !this._stopped && this.status !== "refused") this._connectSoon(0);
    };
  }

  /** Who this page is in sessionStorage: the token, or the staff cookie. */
  get _who() {
    return this.token || "staff";
  }

  get _storeKey() {
    return `${STORE_PREFIX}:${this.scope}:${this.webinarId}`;
  }

  _load() {
    const raw = storageGet(window.sessionStorage, this._storeKey);
    if (!raw) return null;
    try {
      const saved = JSON.parse(raw);
      return saved && saved.who === this._who ? saved : null;
    } catch {
      return null;
    }
  }

  _save() {
    clearTimeout(this._saveTimer);
    this._saveTimer = null;
    const entry = {who: this._who, lastEventId: this.lastEventId};
    if (this._snapshot) entry.model = this._snapshot();
    storageSet(window.sessionStorage, this._storeKey, JSON.stringify(entry));
  }

  /** Keep the last event id (and the model) in sessionStorage soon; call after changing the model. */
  touch() {
    if (this._saveTimer === null) this._saveTimer = setTimeout(() => this._save(), 300);
  }

  /** Forget what sessionStorage holds for this page (the next connection asks for a snapshot). */
  forget() {
    clearTimeout(this._saveTimer);
    this._saveTimer = null;
    storageSet(window.sessionStorage, this._storeKey, null);
  }

  /** `fn(payload)` for `kind`; returns a function that removes it. */
  on(kind, fn) {
    if (!this._handlers.has(kind)) this._handlers.set(kind, new Set());
    this._handlers.get(kind).add(fn);
    return () => this._handlers.get(kind)?.delete(fn);
  }

  _emit(kind, payload) {
    const handlers = this._handlers.get(kind);
    if (!handlers) return;
    for (const fn of [...handlers]) {
      try {
        fn(payload);
      } catch (error) {
        console.error(`room: a "${kind}" handler failed`, error);
      }
    }
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this._emit("status", status);
  }

  get url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
    return `${scheme}//${window.location.host}/ws/${this.socket}/${encodeURIComponent(this.webinarId)}${query}`;
  }

  /** Connect (and keep connecting until stopped or refused). */
  start() {
    this._stopped = false;
    window.addEventListener("pagehide", this._onPageHide);
    window.addEventListener("online", this._onOnline);
    this._connect();
  }

  /** Close for good. */
  stop() {
    this._stopped = true;
    clearTimeout(this._reconnectTimer);
    window.removeEventListener("pagehide", this._onPageHide);
    window.removeEventListener("online", this._onOnline);
    this._save();
    this._drop(1000, "bye");
    this._setStatus("stopped");
  }

  /** Ask for a fresh snapshot: reconnect with last_event_id 0 (the page rebuilds its model). */
  resync() {
    this.lastEventId = 0;
    this._drop(4000, "resync");
    this._connectSoon(0);
  }

  _connect() {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this._stopped || this.status === "refused") return;
    this._setStatus("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      console.warn("room: cannot open the WebSocket", error);
      this._afterClose(1006, "");
      return;
    }
    this.ws = ws;
    let welcomed = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({type: "hello", v: PROTOCOL_VERSION, last_event_id: this.lastEventId}));
    };
    ws.onmessage = (message) => {
      if (this.ws !== ws) return;
      clearTimeout(this._pongTimer);
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "welcome") welcomed = true;
      this._onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      if (!welcomed) this._failuresBeforeWelcome += 1;
      this._afterClose(event.code, event.reason);
    };
    ws.onerror = () => {}; // a close follows; the browser logs the details
  }

  /** Detach the current socket (its late events are ignored) and close it. */
  _drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this._stopPing();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(code, reason);
      } catch {
        /* already closed */
      }
    }
    this._lost();
  }

  _lost() {
    const was = this.connected;
    this.connected = false;
    for (const [, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new RoomError("disconnected", "the connection was lost"));
    }
    this._pending.clear();
    if (was) this._emit("disconnected", null);
  }

  _afterClose(code, reason) {
    this.ws = null;
    this._stopPing();
    this._lost();
    if (this._stopped) return;
    if (code === 4403) {
      this._refuse(reason || "refused");
      return;
    }
    if (this._failuresBeforeWelcome >= 2) {
      // A refused handshake looks like any network failure (1006) to a page: ask why.
      this._probe().then((refusal) => {
        if (refusal) this._refuse(refusal);
        else this._connectSoon();
      });
      return;
    }
    this._connectSoon();
  }

  async _probe() {
    try {
      const headers = this.token ? {"X-Room-Token": this.token} : {};
      const response = await fetch(`/w/${encodeURIComponent(this.webinarId)}/room-access`,
                                   {headers, credentials: "same-origin", cache: "no-store"});
      if (!response.ok) return null;
      const body = await response.json();
      return body.ok ? null : String(body.error || "refused");
    } catch {
      return null; // the server is away: keep trying
    }
  }

  _refuse(reason) {
    this.refusedReason = reason;
    this._setStatus("refused");
    this._emit("refused", reason);
  }

  /** Reconnect after `delayMs`, or after the next backoff delay. */
  _connectSoon(delayMs) {
    if (this._stopped || this.status === "refused") return;
    clearTimeout(this._reconnectTimer);
    let delay = delayMs;
    if (delay === undefined) {
      const ceiling = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(this.attempts, 16));
      delay = ceiling / 2 + Math.random() * ceiling / 2; // "equal jitter": spread the herd, keep a floor
      this.attempts += 1;
    }
    this._setStatus("waiting");
    this._reconnectTimer = setTimeout(() => this._connect(), delay);
  }

  _startPing() {
    this._stopPing();
    this._pingTimer = setInterval(() => {
      if (!this.connected || !this.ws) return;
      this.ws.send('{"type":"ping"}');
      clearTimeout(this._pongTimer);
      this._pongTimer = setTimeout(() => {
        // Nothing came back: the connection is dead even if the browser has not noticed.
        this._drop(4000, "no pong");
        this._connectSoon();
      }, this.pongTimeoutMs);
    }, this.pingEveryMs);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._pingTimer = this._pongTimer = null;
  }

  _onFrame(frame) {
    switch (frame.type) {
      case "welcome":
        this.role = frame.role;
        this.participant = frame.participant;
        this.connected = true;
        this.resumed = Boolean(frame.resumed);
        this.attempts = 0;
        this._failuresBeforeWelcome = 0;
        if (!frame.resumed) this.lastEventId = Number(frame.last_event_id) || 0;
        this._setStatus("open");
        this._startPing();
        this._emit("welcome", {state: frame.state, resumed: Boolean(frame.resumed), role: frame.role,
                               participant: frame.participant});
        this.touch();
        break;
      case "events": {
        const events = [...(frame.events || [])].sort((a, b) => a.id - b.id);
        let applied = 0;
        for (const event of events) {
          if (!(event.id > this.lastEventId)) continue; // seen already (a resume may repeat)
          this.lastEventId = event.id;
          applied += 1;
          this._emit("event", event);
          this._emit(event.kind, event);
        }
        if (applied) this.touch();
        break;
      }
      case "notice":
        this._emit("notice", frame);
        this._emit(`notice:${frame.kind}`, frame.data || {});
        break;
      case "ack":
      case "error": {
        const pending = frame.ref === null || frame.ref === undefined ? null : this._pending.get(frame.ref);
        if (pending) {
          this._pending.delete(frame.ref);
          clearTimeout(pending.timer);
          if (frame.type === "ack") pending.resolve(frame);
          else pending.reject(new RoomError(frame.code, frame.message));
        } else if (frame.type === "error") {
          this._emit("error", new RoomError(frame.code, frame.message));
        }
        break;
      }
      case "pong":
        break;
      default:
        break;
    }
  }

  /** Send one message; resolves with its ack, rejects with a RoomError. */
  send(type, fields = {}, {timeoutMs = this.ackTimeoutMs} = {}) {
    if (!this.connected || !this.ws) {
      return Promise.reject(new RoomError("offline", "not connected"));
    }
    const ref = this._nextRef;
    this._nextRef = this._nextRef >= MAX_REF ? 1 : this._nextRef + 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new RoomError("timeout", "no answer in time"));
      }, timeoutMs);
      this._pending.set(ref, {resolve, reject, timer});
      try {
        this.ws.send(JSON.stringify({...fields, type, ref}));
      } catch (error) {
        clearTimeout(timer);
        this._pending.delete(ref);
        reject(new RoomError("offline", String(error)));
      }
    });
  }
}

/** Publish the client for tests and debugging: `window.webinarRoom`. */
export function exposeForTests(client) {
  window.webinarRoom = {
    client,
    get connected() { return client.connected; },
    get lastEventId() { return client.lastEventId; },
    get role() { return client.role; },
    get resumed() { return client.resumed; },
    get status() { return client.status; },
  };
}

// Join tokens ----------------------------------------------------------------------------------
const tokenKey = (webinarId) => `${STORE_PREFIX}:token:${webinarId}`;

/** The viewer's join token: from `?token=` (kept, then removed from the address bar) or localStorage. */
export function storedToken(webinarId) {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    storageSet(window.localStorage, tokenKey(webinarId), fromUrl);
    url.searchParams.delete("token");
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return storageGet(window.localStorage, tokenKey(webinarId));
}

/** Drop a token the server no longer accepts. */
export function forgetToken(webinarId) {
  storageSet(window.localStorage, tokenKey(webinarId), null);
}

/**
 * A token for this browser: the stored one, or one from a small "your name" form rendered
 * into `container` (POST /w/{id}/join with the page's CSRF token). Resolves with the token.
 */
export function ensureToken({webinarId, csrfToken, container, t}) {
  const existing = storedToken(webinarId);
  if (existing) return Promise.resolve(existing);
  return new Promise((resolve) => {
    const form = document.createElement("form");
    form.className = "room-join";
    const heading = document.createElement("h2");
    heading.textContent = t("room.join.title");
    const label = document.createElement("label");
    label.textContent = t("room.join.name");
    const input = document.createElement("input");
    input.name = "name";
    input.required = true;
    input.maxLength = 80;
    input.autocomplete = "name";
    label.append(input);
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = t("room.join.submit");
    const error = document.createElement("p");
    error.className = "room-error";
    error.setAttribute("role", "alert");
    form.append(heading, label, button, error);
    container.append(form);
    form.addEventListener("submit", async (submit) => {
      submit.preventDefault();
      error.textContent = "";
      const name = input.value.trim();
      if (!name) {
        error.textContent = t("room.join.bad_name");
        input.focus();
        return;
      }
      button.disabled = true;
      try {
        const response = await fetch(`/w/${encodeURIComponent(webinarId)}/join`, {
          method: "POST",
          credentials: "same-origin",
          body: new URLSearchParams({name, csrf_token: csrfToken}),
        });
        const body = await response.json().catch(() => ({}));
        if (response.ok && body.token) {
          storageSet(window.localStorage, tokenKey(webinarId), body.token);
          form.remove();
          resolve(body.token);
          return;
        }
        const code = body.error || (response.status === 403 ? "csrf" : "failed");
        error.textContent = t(`room.join.error.${code}`) !== `room.join.error.${code}`
          ? t(`room.join.error.${code}`) : t("room.join.error.failed");
      } catch {
        error.textContent = t("room.join.error.failed");
      } finally {
        button.disabled = false;
      }
    });
    input.focus();
  });
}

/** `t(key, params)` over the `<script type="application/json" id="room-i18n">` block. */
export function translator(texts) {
  return (key, params = {}) => {
    const text = texts && Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  };
}

/** The i18n block of the page, or {}. */
export function readTexts(id = "room-i18n") {
  const block = document.getElementById(id);
  if (!block) return {};
  try {
    return JSON.parse(block.textContent);
  } catch {
    return {};
  }
}
