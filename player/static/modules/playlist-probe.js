// One look at an HLS playlist, before (or between) attaching a player to it,
// and the delay before the next look.
//
// The origin answers 404 until a live starts (and after a removal), a live
// media playlist without #EXT-X-ENDLIST while it runs, and a playlist with
// #EXT-X-ENDLIST once it has ended (the replay). Probing with fetch() first
// keeps hls.js from being created over and over while nothing is published.

/** First delay between two looks at a missing playlist (ms). */
export const RETRY_BASE_MS = 2000;
/** Longest delay between two looks (ms): "every few seconds", never slower. */
export const RETRY_MAX_MS = 10000;
/** Growth of the delay per failed look. */
export const RETRY_FACTOR = 1.5;
/** Each delay is spread by +/- this fraction, so thousands of waiting viewers
 *  do not knock on the origin in step. */
export const RETRY_JITTER = 0.2;
/** A look that takes longer than this is abandoned (ms). */
export const PROBE_TIMEOUT_MS = 8000;
/** Largest playlist read (characters); a live media playlist is a few KB. */
const MAX_PLAYLIST_CHARS = 2_000_000;

/**
 * Delay before look number `attempt` (0-based), in milliseconds:
 * RETRY_BASE_MS * RETRY_FACTOR^attempt, capped at RETRY_MAX_MS, with jitter.
 * @param {number} attempt
 * @param {() => number} [random] source of [0, 1) numbers (Math.random)
 * @returns {number}
 */
export function retryDelay(attempt, random = Math.random) {
  const n = Math.max(0, Math.min(attempt, 50));
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * RETRY_FACTOR ** n);
  return Math.round(base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * random()));
}

/**
 * @typedef {{kind: "missing" | "live" | "finished" | "unreachable", status: number}} ProbeResult
 * missing: 404/410, nothing to play (yet). live: a media playlist without
 * ENDLIST. finished: ENDLIST present (an ended live or a replay).
 * unreachable: network error, timeout, other status or not a playlist.
 * status is the HTTP status, 0 when there was no answer.
 */

/**
 * Fetch the playlist at `url` and classify it. A multivariant playlist is
 * followed to its first variant (one hop at most).
 * @param {string} url
 * @param {{timeoutMs?: number, hops?: number}} [options]
 * @returns {Promise<ProbeResult>}
 */
export async function probePlaylist(url, { timeoutMs = PROBE_TIMEOUT_MS, hops = 1 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response;
  let text;
  try {
    response = await fetch(url, { cache: "no-store", credentials: "same-origin", signal: controller.signal });
    if (response.status === 404 || response.status === 410) {
      return { kind: "missing", status: response.status };
    }
    if (!response.ok) {
      return { kind: "unreachable", status: response.status };
    }
    text = (await response.text()).slice(0, MAX_PLAYLIST_CHARS);
  } catch {
    return { kind: "unreachable", status: 0 };
  } finally {
    clearTimeout(timer);
  }
  if (!text.startsWith("#EXTM3U")) {
    return { kind: "unreachable", status: response.status };
  }
  if (text.includes("#EXT-X-STREAM-INF")) {
    const variant = firstVariantUri(text);
    if (variant === null || hops <= 0) {
      return { kind: "unreachable", status: response.status };
    }
    return probePlaylist(new URL(variant, new URL(url, location.href)).href, { timeoutMs, hops: hops - 1 });
  }
  return { kind: text.includes("#EXT-X-ENDLIST") ? "finished" : "live", status: response.status };
}

/**
 * The URI line that follows the first #EXT-X-STREAM-INF tag, or null.
 * @param {string} text
 * @returns {string | null}
 */
function firstVariantUri(text) {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i += 1) {
    if (!lines[i].startsWith("#EXT-X-STREAM-INF")) continue;
    for (let j = i + 1; j < lines.length; j += 1) {
      const line = lines[j].trim();
      if (line && !line.startsWith("#")) return line;
    }
  }
  return null;
}
