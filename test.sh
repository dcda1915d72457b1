#!/usr/bin/env bash
# Quick start (2): install what is needed and run the whole test suite.
# Extra arguments go to pytest (e.g. ./test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")"
export WEBINAR_APT_PACKAGES="python3-venv postgresql redis-server ffmpeg libsrt1.5-openssl chromium nginx libnginx-mod-rtmp"
export WEBINAR_PIP_EXTRAS="test"
source scripts/bootstrap.sh
unset DATABASE_URL REDIS_URL
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider -o console_output_style=classic "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "test.sh: no tests were collected: that is a failure" >&2
  exit 1
fi
exit $status
