// The live player: picks an engine (hls.js or the browser's own HLS), follows
// the webinar's playlist and turns what happens into one of a few states.
//
//   loading      the page has just started
//   waiting      no playlist yet (404): looks again every few seconds
//   live         a live playlist is attached
//   stalled      live, but playback stopped or the player is reconnecting
//                ("back in a moment")
//   ended        the live playlist got #EXT-X-ENDLIST while we watched
//   replay       the playlist had ENDLIST when we attached (or the viewer
//                chose to watch from the start)
//   unsupported  this browser has neither MSE nor native HLS
//
// Events (the class is an EventTarget): "statechange" {state, previous},
// "stats" (the PlayerStats, about once a second).

import { HealthMonitor } from "./health.js";
import { probePlaylist, retryDelay } from "./playlist-probe.js";

export const STATES = Object.freeze(["loading", "waiting", "live", "stalled", "ended", "replay", "unsupported"]);

const HLS_MIME = "application/vnd.apple.mpegurl";
const HLSJS_URL = new URL("../vendor/hls.min.mjs", import.meta.url).href;
/** Period of the watchdog that detects stalls and samples health (ms). */
const TICK_MS = 500;
/** No progress for this long while the video should play is a stall (ms). */
const STALL_AFTER_MS = 2000;
/** After (re)attaching, the first frame may take this long before it counts as a stall (ms). */
const STARTUP_GRACE_MS = 10000;
/** hls.js media errors recovered in place per attach, before a full rebuild. */
const MAX_MEDIA_RECOVERIES = 3;
/** Further behind the live edge than the target latency plus this: jump to the live edge (s). */
const MAX_EXTRA_LATENCY_S = 12;
/** While live with the native engine, look at the playlist this often to notice its end (ms). */
const NATIVE_END_CHECK_MS = 15000;

/**
 * hls.js settings. The target latency is left to the playlist
 * (PART-HOLD-BACK in low-latency mode, else HOLD-BACK or 3 target durations):
 * setting liveSyncDuration here would override the server's choice.
 */
export const HLSJS_CONFIG = Object.freeze({
  debug: false,
  lowLatencyMode: true,
  // Catch up after a stall by playing up to 10 % faster (speech stays natural).
  maxLiveSyncPlaybackRate: 1.1,
  // Memory: keep 30 s behind the playhead, buffer at most 60 s ahead (phones).
  backBufferLength: 30,
  maxMaxBufferLength: 60,
  // Native controls show a live stream rather than a growing seek bar.
  liveDurationInfinity: true,
  // Do not pick a rendition larger than the player on a phone.
  capLevelToPlayerSize: true,
  // The ES-module build has no inline worker; fMP4 parts need no transmuxing.
  enableWorker: false,
});

/**
 * Which engine this browser should use.
 * iPhone Safari has no classic MediaSource (only ManagedMediaSource) and
 * Apple's own player is the reference LL-HLS client: native there. Browsers
 * with MSE (desktop, Android, iPad) use hls.js, even when they also claim
 * native HLS (recent Chrome does), for the same behaviour everywhere.
 * @param {HTMLVideoElement} video
 * @param {string | null} forced "native" or "hlsjs" to override (debugging)
 * @returns {"native" | "hlsjs" | "none"}
 */
export function chooseEngine(video, forced = null) {
  const nativeHls = video.canPlayType(HLS_MIME) !== "";
  const classicMse = typeof window.MediaSource === "function" || typeof window.WebKitMediaSource === "function";
  const anyMse = classicMse || typeof window.ManagedMediaSource === "function";
  if (forced === "native") return nativeHls ? "native" : "none";
  if (forced === "hlsjs") return anyMse ? "hlsjs" : "none";
  if (nativeHls && !classicMse) return "native";
  if (anyMse) return "hlsjs";
  return nativeHls ? "native" : "none";
}

export class LivePlayer extends EventTarget {
  /**
   * @param {{video: HTMLVideoElement, url: string, webinarOver?: boolean, engine?: string | null}} options
   *   webinarOver: the server says the live is over (a missing playlist then
   *   means "ended", not "waiting"). engine: forced engine, see chooseEngine.
   */
  constructor({ video, url, webinarOver = false, engine = null }) {
    super();
    this.video = video;
    this.url = url;
    this.webinarOver = webinarOver;
    this._forced = engine;
    this._engine = "none";
    this._state = "loading";
    this.health = new HealthMonitor(video);
    /** @type {any} the hls.js class once loaded */
    this._Hls = null;
    /** @type {any} the current hls.js instance */
    this._hls = null;
    this._generation = 0; // bumped on every teardown: stale callbacks check it
    this._attempt = 0; // failed tries since playback last moved (backoff)
    this._retryTimer = 0;
    this._tickTimer = 0;
    this._endCheckTimer = 0;
    this._attached = false;
    this._wasLive = false; // a live playlist was attached at some point
    this._playlistLive = false; // the attached playlist is live (no ENDLIST yet)
    this._mediaRecoveries = 0;
    this._attachedAt = 0;
    this._lastTime = 0;
    this._lastProgressAt = 0;
    this._lastTickAt = performance.now();
    this._progressSinceAttach = false;
    this._started = false;
    this._destroyed = false;
    this._onNativeError = () => this._nativeFailed();
    this._onDurationChange = () => this._nativeDurationChanged();
  }

  /** @returns {string} one of STATES */
  get state() {
    return this._state;
  }

  /** @returns {"native" | "hlsjs" | "none"} */
  get engine() {
    return this._engine;
  }

  /** @returns {any} the hls.js instance in use, or null */
  get hls() {
    return this._hls;
  }

  /** @returns {import("./health.js").PlayerStats} */
  get stats() {
    return this.health.stats;
  }

  /** Choose the engine and start following the playlist. Resolves once started. */
  async start() {
    if (this._started) return;
    this._started = true;
    this._engine = chooseEngine(this.video, this._forced);
    if (this._engine === "hlsjs") {
      try {
        this._Hls = (await import(HLSJS_URL)).default;
      } catch (error) {
        console.warn("hls.js could not be loaded", error);
      }
      if (!this._Hls || !this._Hls.isSupported()) {
        this._engine = this.video.canPlayType(HLS_MIME) !== "" ? "native" : "none";
      }
    }
    if (this._destroyed) return;
    this.health.stats.engine = this._engine === "hlsjs" ? "hls.js" : this._engine;
    if (this._engine === "none") {
      this._setState("unsupported");
      return;
    }
    this._tickTimer = setInterval(() => this._tick(), TICK_MS);
    await this._probeAndAttach();
  }

  /** Stop everything (timers, network, decoder). */
  destroy() {
    this._destroyed = true;
    this._teardown();
    clearInterval(this._tickTimer);
    this.health.stop();
  }

  /** Whether the ended live can be watched again from its first second. */
  canWatchFromStart() {
    const seekable = this.video.seekable;
    return this._attached && seekable.length > 0 && seekable.start(0) < this.video.currentTime - 1;
  }

  /** After the end: play the recording from the start (state "replay"). */
  watchFromStart() {
    if (!this.canWatchFromStart()) return;
    this.video.currentTime = this.video.seekable.start(0);
    this._setState("replay");
    this._play();
  }

  /**
   * Report the stats to `sink` every `intervalMs` (see HealthMonitor.setSink).
   * @param {((stats: object) => void) | null} sink
   * @param {number} [intervalMs]
   */
  setHealthSink(sink, intervalMs) {
    this.health.setSink(sink, intervalMs);
  }

  // -- states ---------------------------------------------------------------

  _setState(state) {
    if (state === this._state || this._destroyed) return;
    const previous = this._state;
    this._state = state;
    this.health.stats.state = state;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state, previous } }));
  }

  /** The state to show while there is nothing attached. */
  _interruptedState(probeKind) {
    if (this._state === "ended" || this._state === "replay") return this._state;
    if (this._wasLive) return "stalled";
    if (probeKind === "missing" && this.webinarOver) return "ended";
    return "waiting";
  }

  /** A playlist was loaded: live (no ENDLIST) or finished. */
  _playlistSeen(isLive) {
    this._playlistLive = isLive;
    if (isLive) {
      this._wasLive = true;
      if (this._state !== "live" && this._state !== "stalled") this._setState("live");
    } else if (this._wasLive || this._state === "ended") {
      if (this._state !== "replay") this._setState("ended");
    } else {
      this._setState("replay");
    }
  }

  // -- following the playlist -------------------------------------------------

  async _probeAndAttach() {
    const generation = this._generation;
    const result = await probePlaylist(this.url);
    if (generation !== this._generation || this._destroyed) return;
    if (result.kind === "missing" || result.kind === "unreachable") {
      this._setState(this._interruptedState(result.kind));
      this._retryLater();
      return;
    }
    this._attach(result.kind === "live");
  }

  _retryLater() {
    clearTimeout(this._retryTimer);
    const delay = retryDelay(this._attempt);
    this._attempt += 1;
    this._retryTimer = setTimeout(() => this._probeAndAttach(), delay);
  }

  /** Rebuild the engine after a fatal error, after the backoff delay. */
  _restart() {
    const wasPlaying = this._progressSinceAttach;
    this._teardown();
    this.health.reconnected();
    if (this._state === "live" || this._state === "stalled") {
      if (wasPlaying) this.health.stallStarted(this._lastProgressAt);
      this._setState("stalled");
    } else if (this._state === "loading") {
      this._setState("waiting");
    }
    this._retryLater();
  }

  _attach(isLive) {
    this._attached = true;
    this._mediaRecoveries = 0;
    this._attachedAt = performance.now();
    this._progressSinceAttach = false;
    this._lastTime = this.video.currentTime;
    if (this._engine === "native") {
      this._attachNative(isLive);
    } else {
      this._attachHlsjs();
    }
  }

  _attachHlsjs() {
    const Hls = this._Hls;
    const hls = new Hls({ ...HLSJS_CONFIG });
    const generation = this._generation;
    this._hls = hls;
    hls.on(Hls.Events.LEVEL_LOADED, (_event, data) => {
      if (generation === this._generation) this._playlistSeen(Boolean(data.details.live));
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      if (generation === this._generation) this._play();
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (generation === this._generation) this._hlsjsError(data);
    });
    hls.loadSource(this.url);
    hls.attachMedia(this.video);
  }

  _hlsjsError(data) {
    // Non-fatal errors are retried by hls.js itself; if playback stops
    // meanwhile, the watchdog shows the stall.
    if (!data.fatal) return;
    if (data.type === this._Hls.ErrorTypes.MEDIA_ERROR && this._mediaRecoveries < MAX_MEDIA_RECOVERIES) {
      this._mediaRecoveries += 1;
      this._hls.recoverMediaError();
      return;
    }
    this._restart();
  }

  _attachNative(isLive) {
    const video = this.video;
    video.addEventListener("error", this._onNativeError);
    video.addEventListener("durationchange", this._onDurationChange);
    video.src = this.url;
    this._playlistSeen(isLive);
    if (isLive) this._scheduleNativeEndCheck();
    this._play();
  }

  _nativeFailed() {
    if (this._attached && this._engine === "native") this._restart();
  }

  _nativeDurationChanged() {
    // Safari reports Infinity while the playlist is live, a number after ENDLIST.
    if (this._playlistLive && Number.isFinite(this.video.duration) && this.video.duration > 0) {
      this._playlistSeen(false);
    }
  }

  _scheduleNativeEndCheck() {
    const generation = this._generation;
    this._endCheckTimer = setTimeout(async () => {
      const result = await probePlaylist(this.url);
      if (generation !== this._generation || this._destroyed) return;
      if (result.kind === "finished") {
        this._playlistSeen(false);
      } else {
        this._scheduleNativeEndCheck();
      }
    }, NATIVE_END_CHECK_MS);
  }

  _teardown() {
    this._generation += 1;
    clearTimeout(this._retryTimer);
    clearTimeout(this._endCheckTimer);
    this._attached = false;
    if (this._hls) {
      this._hls.destroy();
      this._hls = null;
    }
    if (this._engine === "native") {
      this.video.removeEventListener("error", this._onNativeError);
      this.video.removeEventListener("durationchange", this._onDurationChange);
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  _play() {
    const promise = this.video.play();
    if (promise && typeof promise.catch === "function") {
      // Autoplay refused (e.g. iOS low-power mode): the controls stay usable.
      promise.catch(() => this.dispatchEvent(new CustomEvent("autoplayblocked")));
    }
  }

  // -- watchdog: stalls, catching up, health ----------------------------------

  _tick() {
    const video = this.video;
    const now = performance.now();
    const time = video.currentTime;
    const step = time - this._lastTime;
    const elapsed = (now - this._lastTickAt) / 1000;
    this._lastTickAt = now;
    if (this._attached && step !== 0) {
      this._lastTime = time;
      // Playing, not a seek (a rebuilt player or a jump to the live edge).
      if (step > 0 && step <= 2 * elapsed + 0.5 && !video.seeking) {
        this._lastProgressAt = now;
        this._progressSinceAttach = true;
        this._attempt = 0; // it plays: the next failure starts the backoff again
        this.health.stallEnded();
        if (this._state === "stalled" && this._playlistLive) this._setState("live");
      }
    } else if (this._attached && !video.paused && !video.ended) {
      const since = now - (this._progressSinceAttach ? this._lastProgressAt : this._attachedAt);
      const limit = this._progressSinceAttach ? STALL_AFTER_MS : STARTUP_GRACE_MS;
      if (since > limit && (this._state === "live" || this._state === "replay")) {
        this.health.stallStarted(this._progressSinceAttach ? this._lastProgressAt : this._attachedAt);
        if (this._state === "live") this._setState("stalled");
      }
    }
    this._catchUp();
    this.health.sample({ engine: this.health.stats.engine, state: this._state, hls: this._hls });
    this.dispatchEvent(new CustomEvent("stats", { detail: this.health.stats }));
  }

  /** Far behind the live edge (after a long stall): jump to hls.js's live sync point. */
  _catchUp() {
    const hls = this._hls;
    if (!hls || this._state !== "live" || this.video.paused) return;
    const target = hls.targetLatency;
    const sync = hls.liveSyncPosition;
    if (target && sync !== null && hls.latency > target + MAX_EXTRA_LATENCY_S && sync > this.video.currentTime) {
      this.video.currentTime = sync;
    }
  }
}
