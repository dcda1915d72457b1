#!/usr/bin/env bash
# Vendors hls.js (the browser LL-HLS player, Apache-2.0) into player/static/vendor/.
#
# We serve hls.js from our own server (no CDN at runtime) and commit the file,
# so neither CI nor production needs npm. This script is only for updating it:
#
#   scripts/update-hlsjs.sh            fetch the pinned version with `npm pack`, check
#                                      the tarball's sha256, copy the ESM build and the
#                                      licence, rewrite SHA256SUMS and NOTICE
#   scripts/update-hlsjs.sh --check    offline: check the committed files against SHA256SUMS
#
# To move to another version: change HLSJS_VERSION, run once with
# HLSJS_TARBALL_SHA256= (empty) to print the new tarball's sha256, review the
# hls.js release notes, pin the printed value here and run again.
#
# What we copy, unmodified: dist/hls.min.mjs (the minified ES-module build; it
# transmuxes on the main thread, which costs nothing for our fMP4/CMAF parts,
# so the separate hls.worker.js is not needed) and LICENSE (the Apache-2.0
# header; the package has no NOTICE file). The licence's full text, which
# Apache-2.0 section 4(a) asks us to pass on, is the committed
# Apache-2.0.txt (Debian's /usr/share/common-licenses/Apache-2.0).
set -euo pipefail

HLSJS_VERSION="1.7.4"
HLSJS_TARBALL_SHA256="${HLSJS_TARBALL_SHA256-e4ab3d5d13f7cca9ef241d098f39686e19fd451831ba07dc9943482fd5ff75c7}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/player/static/vendor"
say() { printf '[update-hlsjs] %s\n' "$*" >&2; }

if [[ "${1:-}" == "--check" ]]; then
  cd "$VENDOR"
  sha256sum --check --strict SHA256SUMS
  exit 0
fi

command -v npm >/dev/null || { say "npm is needed to update hls.js (it is not needed to run or test)"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say "fetching hls.js@$HLSJS_VERSION with npm pack"
(cd "$work" && npm pack --silent "hls.js@$HLSJS_VERSION" >/dev/null)
tarball="$work/hls.js-$HLSJS_VERSION.tgz"
[[ -f "$tarball" ]] || { say "npm pack did not produce $tarball"; exit 1; }
actual="$(sha256sum "$tarball" | cut -d' ' -f1)"
if [[ -z "$HLSJS_TARBALL_SHA256" ]]; then
  say "tarball sha256: $actual (not pinned: review it, pin it in this script, run again)"
  exit 2
fi
if [[ "$actual" != "$HLSJS_TARBALL_SHA256" ]]; then
  say "sha256 mismatch for hls.js-$HLSJS_VERSION.tgz: got $actual, expected $HLSJS_TARBALL_SHA256"
  exit 1
fi
tar -xzf "$tarball" -C "$work" package/dist/hls.min.mjs package/LICENSE package/package.json
packaged_version="$(sed -n 's/^  "version": "\(.*\)",\{0,1\}$/\1/p' "$work/package/package.json" | head -n1)"
[[ "$packaged_version" == "$HLSJS_VERSION" ]] || { say "package.json says $packaged_version"; exit 1; }
grep -q "Apache License, Version 2.0" "$work/package/LICENSE" || { say "licence is no longer Apache-2.0: review"; exit 1; }

mkdir -p "$VENDOR"
install -m 0644 "$work/package/dist/hls.min.mjs" "$VENDOR/hls.min.mjs"
install -m 0644 "$work/package/LICENSE" "$VENDOR/hls.js.LICENSE"
if [[ ! -f "$VENDOR/Apache-2.0.txt" ]]; then
  [[ -f /usr/share/common-licenses/Apache-2.0 ]] || { say "add the full Apache-2.0 text as $VENDOR/Apache-2.0.txt"; exit 1; }
  install -m 0644 /usr/share/common-licenses/Apache-2.0 "$VENDOR/Apache-2.0.txt"
fi
(cd "$VENDOR" && sha256sum hls.min.mjs hls.js.LICENSE Apache-2.0.txt > SHA256SUMS)
cat > "$VENDOR/NOTICE" <<NOTICE
hls.js $HLSJS_VERSION
Copyright (c) 2017 Dailymotion (http://www.dailymotion.com) and the hls.js contributors
Licensed under the Apache License, Version 2.0: see hls.js.LICENSE (the
package's notice) and Apache-2.0.txt (the licence's full text).
https://github.com/video-dev/hls.js

hls.min.mjs is dist/hls.min.mjs from the npm package hls.js@$HLSJS_VERSION
(tarball sha256 $HLSJS_TARBALL_SHA256), copied unmodified by
scripts/update-hlsjs.sh. Its trailing sourceMappingURL names a map we do not
ship. hls.js.LICENSE is the package's LICENSE file, unmodified.
NOTICE
say "vendored hls.js $HLSJS_VERSION into ${VENDOR#"$ROOT"/}"
cat "$VENDOR/SHA256SUMS" >&2
