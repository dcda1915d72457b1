// Player-side health metrics: latency, stalls, reconnects.
//
// The numbers live in `stats` (read by tests and by the page); a sink set with
// setSink() receives a copy every few seconds: the room's WebSocket will post
// it to the server (Owncast-style player metrics). No sink, no traffic.

/** Shortest and longest period between two reports to the sink (ms). */
export const SINK_MIN_INTERVAL_MS = 2000;
export const SINK_MAX_INTERVAL_MS = 300000;

/**
 * @typedef {object} PlayerStats
 * @property {string} engine "hls.js", "native" or "none"
 * @property {string} state the player state when sampled
 * @property {number | null} latencySeconds distance from the playlist's live
 *   edge to the playhead (hls.js `hls.latency`; native: seekable end minus
 *   currentTime); null when not live
 * @property {number | null} wallClockLatencySeconds now minus the
 *   EXT-X-PROGRAM-DATE-TIME of the frame on screen (end to end, if the
 *   server's and the viewer's clocks agree); null without PROGRAM-DATE-TIME
 * @property {number} stalls playback stops while it should play (each episode once)
 * @property {number} stalledSeconds total time spent stalled, the current stall included
 * @property {number} reconnects how often the player was torn down and attached again
 * @property {number | null} bandwidthBps hls.js bandwidth estimate (bits/s)
 * @property {number | null} droppedFrames dropped video frames so far
 * @property {number | null} updatedAt Date.now() of the last sample (ms)
 */

export class HealthMonitor {
  /**
   * @param {HTMLVideoElement} video
   */
  constructor(video) {
    this.video = video;
    /** @type {PlayerStats} */
    this.stats = {
      engine: "none",
      state: "loading",
      latencySeconds: null,
      wallClockLatencySeconds: null,
      stalls: 0,
      stalledSeconds: 0,
      reconnects: 0,
      bandwidthBps: null,
      droppedFrames: null,
      updatedAt: null,
    };
    this._stalledBeforeMs = 0;
    /** @type {number | null} */
    this._stallSince = null;
    this._sinkTimer = 0;
  }

  /**
   * A stall started (counted once until stallEnded).
   * @param {number} [since] performance.now() when playback last moved (ms);
   *   the stall's time counts from there
   */
  stallStarted(since = performance.now()) {
    if (this._stallSince !== null) return;
    this._stallSince = Math.min(since, performance.now());
    this.stats.stalls += 1;
  }

  /** Playback moves again. */
  stallEnded() {
    if (this._stallSince === null) return;
    this._stalledBeforeMs += performance.now() - this._stallSince;
    this._stallSince = null;
  }

  /** The player was rebuilt after a fatal error. */
  reconnected() {
    this.stats.reconnects += 1;
  }

  /**
   * Refresh the stats.
   * @param {{engine: string, state: string, hls: any}} source
   */
  sample({ engine, state, hls }) {
    const video = this.video;
    const live = state === "live" || state === "stalled";
    let latency = null;
    let wallClock = null;
    if (hls) {
      if (live && hls.latency > 0) latency = hls.latency;
      const playing = hls.playingDate;
      if (playing instanceof Date && !Number.isNaN(playing.getTime())) {
        wallClock = (Date.now() - playing.getTime()) / 1000;
      }
      this.stats.bandwidthBps = Number.isFinite(hls.bandwidthEstimate) ? Math.round(hls.bandwidthEstimate) : null;
    } else if (engine === "native") {
      const seekable = video.seekable;
      if (live && seekable.length > 0) {
        const behind = seekable.end(seekable.length - 1) - video.currentTime;
        latency = behind > 0 ? behind : null;
      }
      // Safari: the PROGRAM-DATE-TIME of currentTime 0.
      const start = typeof video.getStartDate === "function" ? video.getStartDate() : null;
      if (start instanceof Date && !Number.isNaN(start.getTime())) {
        wallClock = (Date.now() - (start.getTime() + video.currentTime * 1000)) / 1000;
      }
    }
    const quality = typeof video.getVideoPlaybackQuality === "function" ? video.getVideoPlaybackQuality() : null;
    const ongoing = this._stallSince === null ? 0 : performance.now() - this._stallSince;
    Object.assign(this.stats, {
      engine,
      state,
      latencySeconds: latency === null ? null : round3(latency),
      wallClockLatencySeconds: wallClock === null || !live ? null : round3(wallClock),
      stalledSeconds: round3((this._stalledBeforeMs + ongoing) / 1000),
      droppedFrames: quality ? quality.droppedVideoFrames : null,
      updatedAt: Date.now(),
    });
  }

  /**
   * Send a copy of the stats to `sink` every `intervalMs` (clamped to
   * SINK_MIN_INTERVAL_MS..SINK_MAX_INTERVAL_MS). A sink that throws is ignored
   * for that report. `null` stops the reports.
   * @param {((stats: PlayerStats) => void) | null} sink
   * @param {number} [intervalMs]
   */
  setSink(sink, intervalMs = 15000) {
    clearInterval(this._sinkTimer);
    this._sinkTimer = 0;
    if (typeof sink !== "function") return;
    const period = Math.min(SINK_MAX_INTERVAL_MS, Math.max(SINK_MIN_INTERVAL_MS, Number(intervalMs) || 0));
    this._sinkTimer = setInterval(() => {
      try {
        sink({ ...this.stats });
      } catch (error) {
        console.warn("player health sink failed", error);
      }
    }, period);
  }

  stop() {
    this.setSink(null);
  }
}

function round3(x) {
  return Math.round(x * 1000) / 1000;
}
