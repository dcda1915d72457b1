"""French and English text.

Catalogs are flat JSON files ``server/locales/{fr,en}.json`` mapping a key to
a ``str.format`` template. A key missing from the chosen language falls back
to English, then to the key itself (so a missing translation shows, never
crashes). The page language comes from ``?lang=``, then the ``wb_lang``
cookie, then the logged-in user's preference, then ``Accept-Language``,
then French (the service is French).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
LANG_COOKIE = "wb_lang"
_DIR = Path(__file__).with_name("locales")


@cache
def catalog(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    return data


def translate(lang: str, key: str, **params: Any) -> str:
    text = catalog(lang if lang in LANGUAGES else DEFAULT_LANGUAGE).get(key) or catalog("en").get(key) or key
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        return text


def negotiate(query_lang: str | None, cookie_lang: str | None, user_lang: str | None, accept_language: str | None) -> str:
    for candidate in (query_lang, cookie_lang, user_lang):
        if candidate in LANGUAGES:
            return candidate  # type: ignore[return-value]
    if accept_language:
        ranked: list[tuple[float, str]] = []
        for part in accept_language.split(",")[:20]:
            tag, _, q = part.strip().partition(";q=")
            try:
                weight = float(q) if q else 1.0
            except ValueError:
                continue
            ranked.append((weight, tag.strip().lower()[:2]))
        for _, tag in sorted(ranked, key=lambda x: -x[0]):
            if tag in LANGUAGES:
                return tag
    return DEFAULT_LANGUAGE
