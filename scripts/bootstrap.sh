#!/usr/bin/env bash
# Installs what the project needs on Debian: system packages (apt) that are
# missing, then a virtualenv in .venv with the project and its Python
# dependencies. Sourced by run.sh and test.sh; prints what it does.
#   WEBINAR_APT_PACKAGES  the Debian packages to make sure of (space-separated)
#   WEBINAR_PIP_EXTRAS    extras to install ("test" for the test suite)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

missing=()
for pkg in ${WEBINAR_APT_PACKAGES:-}; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { say "not root and no sudo: install ${missing[*]} and run again"; exit 1; }
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
else
  say "Debian packages present: ${WEBINAR_APT_PACKAGES:-none needed}"
fi

PY="${PYTHON:-python3}"
if [[ ! -x "$ROOT/.venv/bin/python" ]]; then
  say "creating virtualenv .venv with $($PY --version)"
  $PY -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)-${WEBINAR_PIP_EXTRAS:-none}"
if [[ ! -f "$stamp" ]]; then
  say "installing Python dependencies into .venv (pip)"
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip >&2
  target="$ROOT"
  [[ -n "${WEBINAR_PIP_EXTRAS:-}" ]] && target="$ROOT[${WEBINAR_PIP_EXTRAS}]"
  "$ROOT/.venv/bin/python" -m pip install -q -e "$target" >&2
  rm -f "$ROOT"/.venv/.installed-* && touch "$stamp"
else
  say "Python dependencies up to date"
fi
