from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from server.i18n import negotiate, translate
from server.security import InvalidToken, Signer, hash_password, password_problem, verify_password


def test_passwords() -> None:
    stored = hash_password("a long password")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "a long password")
    assert not verify_password(stored, "a long passworD")
    assert not verify_password(None, "anything")
    assert not verify_password("garbage", "anything")
    assert password_problem("short") == "error.password_too_short"
    assert password_problem("x" * 300) == "error.password_too_long"
    assert password_problem("just right!") is None


def test_tokens_are_purpose_bound_and_expire() -> None:
    signer = Signer("s3cret")
    token = signer.sign("invitation", {"i": "1"}, ttl_s=60, now=1000)
    assert signer.unsign("invitation", token, now=1050)["i"] == "1"
    with pytest.raises(InvalidToken) as info:
        signer.unsign("invitation", token, now=1061)
    assert info.value.expired
    with pytest.raises(InvalidToken, match="bad signature"):
        signer.unsign("sponsor-key", token, now=1000)
    with pytest.raises(InvalidToken, match="bad signature"):
        Signer("other").unsign("invitation", token, now=1000)
    with pytest.raises(InvalidToken):
        signer.unsign("invitation", "x" * 5000)


def test_csrf_double_submit() -> None:
    signer = Signer("s3cret")
    token = signer.new_csrf()
    assert signer.csrf_ok(token, token)
    assert not signer.csrf_ok(token, None)
    assert not signer.csrf_ok(token, token + "x")
    forged = Signer("attacker").new_csrf()
    assert not signer.csrf_ok(forged, forged)


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    folder = Path(__file__).parents[2] / "server" / "locales"
    en = json.loads((folder / "en.json").read_text())
    fr = json.loads((folder / "fr.json").read_text())
    assert set(en) == set(fr)
    for key in en:
        assert set(re.findall(r"{(\w+)}", en[key])) == set(re.findall(r"{(\w+)}", fr[key])), key


def test_every_rule_code_raised_has_a_message() -> None:
    root = Path(__file__).parents[2] / "server"
    en = json.loads((root / "locales" / "en.json").read_text())
    codes = set()
    for path in root.glob("*.py"):
        codes |= set(re.findall(r'RuleViolation\(\s*"(\w+)"', path.read_text()))
    assert codes, "found no RuleViolation codes"
    missing = sorted(c for c in codes if f"rule.{c}" not in en)
    assert not missing, missing


def test_translate_and_negotiate() -> None:
    assert translate("fr", "rule.organizer_limit", limit=9) == "Ce compte a déjà 9 organisateurs, le maximum."
    assert translate("de", "nav.login") == "Se connecter"  # unknown language -> French default
    assert translate("en", "no.such.key") == "no.such.key"
    assert negotiate(None, None, None, "de-DE,en;q=0.8,fr;q=0.5") == "en"
    assert negotiate("fr", "en", "en", "en") == "fr"
    assert negotiate(None, "en", "fr", None) == "en"
    assert negotiate(None, None, None, "garbage;q=x") == "fr"
