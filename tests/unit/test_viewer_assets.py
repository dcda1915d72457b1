"""The viewer page's static parts, checked without a browser: the vendored hls.js is
the pinned, unmodified file with its licence; every text the page shows exists in
French and English; the template gives a message for every player state."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from server.i18n import catalog

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "player" / "static" / "vendor"
TEMPLATE = ROOT / "player" / "templates" / "viewer.html"
PLAYER_JS = ROOT / "player" / "static" / "modules" / "player.js"
UPDATE_SCRIPT = ROOT / "scripts" / "update-hlsjs.sh"


def test_vendored_hlsjs_is_the_pinned_file_with_its_licence() -> None:
    sums = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    assert set(sums) == {"hls.min.mjs", "hls.js.LICENSE", "Apache-2.0.txt"}
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    version = re.search(r'^HLSJS_VERSION="([0-9.]+)"$', UPDATE_SCRIPT.read_text(), re.M)
    assert version is not None
    notice = (VENDOR / "NOTICE").read_text()
    assert notice.startswith(f"hls.js {version.group(1)}\n") and "Apache License, Version 2.0" in notice
    assert "Apache License" in (VENDOR / "hls.js.LICENSE").read_text()
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in (VENDOR / "Apache-2.0.txt").read_text()
    assert " as default" in (VENDOR / "hls.min.mjs").read_text()[-4000:]  # an ES module with a default export


def test_every_viewer_text_exists_in_french_and_english() -> None:
    keys = set(re.findall(r"""t\(\s*["'](viewer\.[a-z_.]+)["']""", TEMPLATE.read_text()))
    assert len(keys) >= 10
    for lang in ("fr", "en"):
        missing = sorted(k for k in keys if not catalog(lang).get(k, "").strip())
        assert missing == [], f"{lang}: add to server/locales/{lang}.json: {missing}"


def test_the_template_has_a_message_for_every_player_state() -> None:
    states = re.search(r"export const STATES = Object\.freeze\(\[([^\]]*)\]\)", PLAYER_JS.read_text())
    assert states is not None
    js_states = set(re.findall(r'"([a-z]+)"', states.group(1)))
    block = re.search(r"{% set messages = {(.*?)} %}", TEMPLATE.read_text(), re.S)
    assert block is not None
    template_states = set(re.findall(r'"([a-z]+)":\s*t\(', block.group(1)))
    assert js_states == template_states == {"loading", "waiting", "live", "stalled", "ended", "replay", "unsupported"}
