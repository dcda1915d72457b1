"""Errors the domain raises; the web layer turns them into clear answers.

A :class:`RuleViolation` carries a stable ``code`` (the key of a translated
message in ``server/locales``) and the values that message needs, so the same
refusal reads well in French and English and tests can assert on the code.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of the errors below."""


class RuleViolation(DomainError):
    """A business rule (R-…) refuses the request. HTTP 409/422 with the message."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code, params)
        self.code = code
        self.params = params

    def __str__(self) -> str:
        from server.i18n import translate

        return translate("en", f"rule.{self.code}", **self.params)


class NotFound(DomainError):
    """No such object, or the caller may not know it exists (HTTP 404)."""


class Forbidden(DomainError):
    """The caller is known but lacks the right (HTTP 403)."""
