// Glass-to-glass probe (benchmarks/g2g.py): evaluated in a page, defines window.__g2g.
//
//   __g2g.install({selector, layout})   start reading every frame the video presents
//   __g2g.drain()                       {samples: [[encodedMs, shownMs, callbackMs], ...], counters}
//                                       (samples since the last drain)
//   __g2g.paint(ctx, width, height, ms, layout)   paint the barcode of `ms` on a 2D canvas
//                                       (a camera for webcam-room benchmarks: canvas.captureStream())
//   __g2g.read(ctx, width, height, layout)        the ms in a 2D canvas's barcode, or null
//   counters: frames (presented), decoded, failed (unreadable), missedFrames (presented
//   but no callback: a busy page), stalls ("waiting" events after the first frame)
//
// The barcode (format in benchmarks/g2g.py): rows x columns blocks across the top of
// the picture, each 1/columns of the width and 1/heightDivisions of the height; 48 bits
// of milliseconds since the epoch then CRC-16/CCITT-FALSE of its 6 bytes, MSB first,
// white = 1. Read: mean of each block's middle half against mid-grey (128, RGB).
//
// shownMs = the frame's expectedDisplayTime (requestVideoFrameCallback metadata, on the
// performance.now() clock) moved onto the Date.now() clock, which is the same clock
// the encoder side painted with (time.time() on the same machine).
(() => {
  if (window.__g2g) return;
  const TOTAL_BITS = 64;

  function crc16(bytes) {
    let crc = 0xffff;
    for (const byte of bytes) {
      crc ^= byte << 8;
      for (let i = 0; i < 8; i += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  }

  function timestampBytes(ms) {
    const bytes = [];
    for (let i = 5; i >= 0; i -= 1) bytes.push(Math.floor(ms / 2 ** (8 * i)) % 256);
    return bytes;
  }

  function block(layout, index, width, height) {
    const row = Math.floor(index / layout.columns);
    const column = index % layout.columns;
    return [
      Math.round((column * width) / layout.columns), Math.round((row * height) / layout.heightDivisions),
      Math.round(((column + 1) * width) / layout.columns), Math.round(((row + 1) * height) / layout.heightDivisions),
    ];
  }

  /** 48-bit ms from 64 bits, or null when the CRC does not match. */
  function decodeBits(bits) {
    let value = 0;
    for (let i = 0; i < 48; i += 1) value = value * 2 + bits[i];
    let crc = 0;
    for (let i = 48; i < 64; i += 1) crc = crc * 2 + bits[i];
    return crc16(timestampBytes(value)) === crc ? value : null;
  }

  function encodeBits(ms) {
    const value = ms % 2 ** 48;
    const bits = [];
    for (let i = 47; i >= 0; i -= 1) bits.push(Math.floor(value / 2 ** i) % 2);
    const crc = crc16(timestampBytes(value));
    for (let i = 15; i >= 0; i -= 1) bits.push((crc >> i) & 1);
    return bits;
  }

  function paint(ctx, width, height, ms, layout) {
    const bits = encodeBits(ms);
    for (let i = 0; i < TOTAL_BITS; i += 1) {
      const [x0, y0, x1, y1] = block(layout, i, width, height);
      ctx.fillStyle = bits[i] ? "#ebebeb" : "#101010"; // luma 235 / 16
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    }
  }

  const state = {
    samples: [],
    counters: { frames: 0, decoded: 0, failed: 0, missedFrames: 0, stalls: 0 },
    installed: false,
  };

  function readBand(ctx, layout, width, height) {
    const bandHeight = Math.round((layout.rows * height) / layout.heightDivisions);
    const data = ctx.getImageData(0, 0, width, bandHeight).data;
    const bits = [];
    for (let i = 0; i < TOTAL_BITS; i += 1) {
      const [x0, y0, x1, y1] = block(layout, i, width, height);
      const bx0 = x0 + Math.floor((x1 - x0) / 4);
      const bx1 = Math.max(x1 - Math.floor((x1 - x0) / 4), bx0 + 1);
      const by0 = y0 + Math.floor((y1 - y0) / 4);
      const by1 = Math.min(Math.max(y1 - Math.floor((y1 - y0) / 4), by0 + 1), bandHeight);
      let total = 0;
      let count = 0;
      for (let y = by0; y < by1; y += 1) {
        for (let x = bx0; x < bx1; x += 1) {
          const p = (y * width + x) * 4;
          total += data[p] + data[p + 1] + data[p + 2];
          count += 3;
        }
      }
      bits.push(total > 128 * count ? 1 : 0);
    }
    return decodeBits(bits);
  }

  function install({ selector = "video", layout }) {
    if (state.installed) return;
    state.installed = true;
    const video = document.querySelector(selector);
    if (!video || typeof video.requestVideoFrameCallback !== "function") {
      throw new Error(`no video with requestVideoFrameCallback at ${selector}`);
    }
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    let lastPresented = null;
    // A "waiting" event once frames have been shown: playback stopped for want of data.
    video.addEventListener("waiting", () => {
      if (state.counters.frames > 0) state.counters.stalls += 1;
    });
    const onFrame = (_now, metadata) => {
      const callbackMs = Date.now();
      const shownMs = callbackMs + (metadata.expectedDisplayTime - performance.now());
      const width = metadata.width || video.videoWidth;
      const height = metadata.height || video.videoHeight;
      state.counters.frames += 1;
      if (lastPresented !== null && metadata.presentedFrames > lastPresented + 1) {
        state.counters.missedFrames += metadata.presentedFrames - lastPresented - 1;
      }
      lastPresented = metadata.presentedFrames;
      if (width > 0 && height > 0) {
        const bandHeight = Math.round((layout.rows * height) / layout.heightDivisions);
        if (canvas.width !== width || canvas.height !== bandHeight) {
          canvas.width = width;
          canvas.height = bandHeight;
        }
        // Only the band, at the picture's own resolution (not the element's size).
        ctx.drawImage(video, 0, 0, width, bandHeight, 0, 0, width, bandHeight);
        const encodedMs = readBand(ctx, layout, width, height);
        if (encodedMs === null) {
          state.counters.failed += 1;
        } else {
          state.counters.decoded += 1;
          state.samples.push([encodedMs, shownMs, callbackMs]);
          if (state.samples.length > 100000) state.samples.splice(0, state.samples.length - 100000);
        }
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  function drain() {
    const samples = state.samples;
    state.samples = [];
    return { samples, counters: { ...state.counters } };
  }

  /** The timestamp in the barcode of a 2D canvas holding a picture of width x height, or null. */
  function read(ctx, width, height, layout) {
    return readBand(ctx, layout, width, height);
  }

  window.__g2g = Object.freeze({ install, drain, paint, read, encodeBits, decodeBits });
})();
