"""The room pages' static parts, checked without a browser: every text the scripts use is
sent to them by the i18n template and exists in French and English; the scripts never
insert HTML (names and messages come from participants)."""

from __future__ import annotations

import re
from pathlib import Path

from server.i18n import catalog

ROOT = Path(__file__).resolve().parents[3]
STATIC = ROOT / "rooms" / "static"
TEMPLATES = ROOT / "rooms" / "templates"
EVENT_KINDS = {"room.settings", "room.filter"}
"""Strings of the form room.x that are event kinds, not texts."""
DYNAMIC = {
    "room.tab.": ("chat", "qa", "polls", "rate", "help"),
    "room.role.": ("moderator", "speaker"),
    "room.error.": ("muted", "filtered", "rate_limited", "slow_mode", "banned", "consent_required", "poll_closed"),
    "room.join.error.": ("bad_name", "room_closed", "csrf", "failed"),
    "cta.field.": ("company", "job_function", "phone", "message"),
    "room.mod.state.": ("waiting", "live", "interrupted", "ended", "replay"),
    "room.mod.health.": ("on_air", "input_kbps", "segments", "drops", "long_parts", "codecs", "live_seconds"),
    "room.mod.mark.": ("open", "answered", "highlighted", "hidden"),
    "room.mod.status.": ("open", "answered", "highlighted", "hidden"),
    "room.mod.poll.state.": ("draft", "open", "closed"),
    "room.mod.cta.state.": ("ready", "pushed", "withdrawn"),
}
"""Keys the scripts build from a value (`room.tab.${id}`): every value they can take."""


def template_keys() -> tuple[set[str], set[str]]:
    text = (TEMPLATES / "_room_i18n.html").read_text()
    lists = {}
    for name in ("room_panel_keys", "room_moderator_keys"):
        block = re.search(rf"{{% set {name} = \[(.*?)\] %}}", text, re.DOTALL)
        assert block is not None, name
        lists[name] = set(re.findall(r'"([a-z_.]+)"', block.group(1)))
    return lists["room_panel_keys"], lists["room_moderator_keys"]


def script_keys(*names: str) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= set(re.findall(r'"(room\.[a-z_.]+)"', (STATIC / name).read_text()))
    return found - EVENT_KINDS


def test_every_script_text_is_sent_to_the_page() -> None:
    panel, moderator = template_keys()
    missing_panel = script_keys("panel.js", "room-client.js") - panel
    assert missing_panel == set(), f"add to room_panel_keys in _room_i18n.html: {sorted(missing_panel)}"
    missing_moderator = script_keys("moderate.js") - panel - moderator
    assert missing_moderator == set(), f"add to room_moderator_keys: {sorted(missing_moderator)}"
    for prefix, values in DYNAMIC.items():
        for value in values:
            assert prefix + value in panel | moderator, prefix + value


def test_every_room_text_exists_in_french_and_english() -> None:
    panel, moderator = template_keys()
    used = panel | moderator
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""t\(\s*["'](room\.[a-z_.]+)["']""", template.read_text()))
    assert len(used) > 150
    for lang in ("fr", "en"):
        missing = sorted(k for k in used if not catalog(lang).get(k, "").strip())
        assert missing == [], f"{lang}: add to server/locales/{lang}.json: {missing}"


def test_scripts_never_insert_html() -> None:
    for path in STATIC.glob("*.js"):
        source = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment"):
            assert sink not in source, f"{path.name} uses {sink}: insert text with textContent / text nodes"


def test_links_from_ctas_open_safely() -> None:
    panel = (STATIC / "panel.js").read_text()
    assert 'target: "_blank", rel: "noopener"' in panel
    assert "safeUrl(c.url)" in panel and "safeUrl(c.image_url)" in panel
