// The viewer page (player/templates/viewer.html): wires the live player to
// the page. Plain ES module, no build step.
//
// window.webinarPlayer (for the interaction panel to come, and for tests):
//   state, video, hls, engine, stats   read-only, current values
//   events                             EventTarget: "statechange", "stats", "autoplayblocked"
//   setHealthSink(fn, intervalMs)      fn(stats) every intervalMs (the room's WebSocket)
// #viewer[data-state] mirrors the state, for CSS and tests.
//
// ?engine=native or ?engine=hlsjs forces an engine (support and tests).

import { LivePlayer } from "./modules/player.js";

const root = document.getElementById("viewer");
const video = /** @type {HTMLVideoElement} */ (document.getElementById("viewer-video"));
const status = document.getElementById("viewer-status");
const unmute = document.getElementById("viewer-unmute");
const restart = document.getElementById("viewer-restart");
/** @type {Record<string, string>} */
const messages = JSON.parse(document.getElementById("viewer-messages").textContent || "{}");
const lang = root.dataset.lang || document.documentElement.lang || "fr";

const forced = new URLSearchParams(location.search).get("engine");
const player = new LivePlayer({
  video,
  url: root.dataset.hlsUrl,
  webinarOver: ["ended", "replay"].includes(root.dataset.webinarState),
  engine: forced === "native" || forced === "hlsjs" ? forced : null,
});

/** States in which something plays, so offering sound makes sense. */
const PICTURE_STATES = new Set(["live", "stalled", "replay"]);

function showState(state) {
  root.dataset.state = state;
  status.textContent = messages[state] || "";
  restart.hidden = !(state === "ended" && player.canWatchFromStart());
  syncUnmute();
}

function syncUnmute() {
  unmute.hidden = !(video.muted && PICTURE_STATES.has(player.state));
}

unmute.addEventListener("click", () => {
  video.muted = false;
  if (video.volume === 0) video.volume = 1;
  if (video.paused) video.play().catch(() => {});
});
video.addEventListener("volumechange", syncUnmute);
restart.addEventListener("click", () => player.watchFromStart());
player.addEventListener("statechange", (event) => showState(event.detail.state));
// "Watch from the start" appears once the ended live has something behind the playhead.
video.addEventListener("timeupdate", () => {
  if (player.state === "ended" && restart.hidden && player.canWatchFromStart()) restart.hidden = false;
});

// The scheduled start, in the viewer's time zone and language.
const start = document.getElementById("viewer-start");
if (start) {
  const when = new Date(start.getAttribute("datetime"));
  if (!Number.isNaN(when.getTime())) {
    start.textContent = new Intl.DateTimeFormat(lang, { dateStyle: "full", timeStyle: "short" }).format(when);
  }
}

window.webinarPlayer = Object.freeze({
  get state() {
    return player.state;
  },
  get video() {
    return video;
  },
  get hls() {
    return player.hls;
  },
  get engine() {
    return player.engine;
  },
  get stats() {
    return player.stats;
  },
  events: player,
  setHealthSink: (sink, intervalMs) => player.setHealthSink(sink, intervalMs),
});

showState(player.state);
player.start().catch((error) => {
  console.error("the player could not start", error);
  showState("unsupported");
});
