#!/usr/bin/env bash
# Quick start (1): install what is needed, create the demo account, start the server.
# Options are passed to `webinar serve` (--host, --port, --rtmp-port, --srt-port, --data-dir).
set -euo pipefail
cd "$(dirname "$0")"
export WEBINAR_APT_PACKAGES="python3-venv postgresql ffmpeg libsrt1.5-openssl"
export WEBINAR_PIP_EXTRAS=""
source scripts/bootstrap.sh
export WEBINAR_LOG_JSON="${WEBINAR_LOG_JSON:-0}"
echo
.venv/bin/webinar demo "$@"
echo
exec .venv/bin/webinar serve "$@"
