"""Passwords, signed tokens and CSRF tokens.

- Passwords: argon2id (argon2-cffi defaults: 64 MiB, 3 passes), rehashed on
  login when the parameters change.
- Signed tokens: itsdangerous, one *salt per purpose* so a token made for one
  use (a speaker invitation) is refused for another (a sponsor key). The
  payload carries its own expiry (``exp``, UNIX seconds) so each token can
  have its own lifetime.
- CSRF: double-submit token. The ``wb_csrf`` cookie holds a random value
  signed with the secret; every unsafe form must send the same value in its
  ``csrf_token`` field. A forged or missing value is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeSerializer

Purpose = Literal["invitation", "sponsor-key", "csrf", "join", "unsubscribe", "embed-form"]

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
"""Characters; longer passwords are refused rather than hashed (hashing cost)."""


class InvalidToken(Exception):
    """A signed token is malformed, forged, of another purpose, or expired (``expired`` says which)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant-time check. A missing hash still costs a hash (no timing oracle on unknown users)."""
    if stored_hash is None:
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def password_problem(password: str) -> str | None:
    """None if acceptable, else the i18n key of the reason."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return "error.password_too_short"
    if len(password) > MAX_PASSWORD_LENGTH:
        return "error.password_too_long"
    return None


def token_digest(token: str) -> bytes:
    """SHA-256 of a high-entropy random token (session ids, stream keys): what we store."""
    return hashlib.sha256(token.encode()).digest()


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


class Signer:
    """Signs and checks purpose-bound, expiring payloads with the server secret."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._serializers: dict[str, URLSafeSerializer] = {}

    def _serializer(self, purpose: Purpose) -> URLSafeSerializer:
        found = self._serializers.get(purpose)
        if found is None:
            found = self._serializers[purpose] = URLSafeSerializer(self._secret, salt=f"webinar/{purpose}")
        return found

    def sign(self, purpose: Purpose, payload: dict[str, Any], *, ttl_s: int | None, now: float | None = None) -> str:
        body = dict(payload)
        if ttl_s is not None:
            body["exp"] = int((time.time() if now is None else now) + ttl_s)
        return str(self._serializer(purpose).dumps(body))

    def unsign(self, purpose: Purpose, token: str, *, now: float | None = None) -> dict[str, Any]:
        if not token or len(token) > 4096:
            raise InvalidToken("missing or oversized token")
        try:
            body = self._serializer(purpose).loads(token)
        except BadSignature:
            raise InvalidToken("bad signature") from None
        if not isinstance(body, dict):
            raise InvalidToken("malformed payload")
        exp = body.get("exp")
        if exp is not None and (not isinstance(exp, int) or exp < (time.time() if now is None else now)):
            raise InvalidToken("expired", expired=True)
        return body

    # CSRF ------------------------------------------------------------------
    def new_csrf(self) -> str:
        return self.sign("csrf", {"r": secrets.token_urlsafe(16)}, ttl_s=None)

    def csrf_ok(self, cookie_value: str | None, form_value: str | None) -> bool:
        if not cookie_value or not form_value:
            return False
        if not hmac.compare_digest(cookie_value.encode(), form_value.encode()):
            return False
        try:
            self.unsign("csrf", cookie_value)
        except InvalidToken:
            return False
        return True
