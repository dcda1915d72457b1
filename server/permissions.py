"""Who may touch what (R-ACC-2, R-ACC-5).

Objects a caller has no right to are answered 404 (their existence is not
revealed); a member whose right lapsed (contract ended) gets 403 with the
reason.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request

from server.accounts import has_active_contract
from server.errors import Forbidden, NotFound
from server.security import InvalidToken
from server.sponsor_keys import SponsorScope, check_sponsor_key
from server.users import User
from server.web import require_user, services
from server.webinars import Webinar, get_webinar

SPONSOR_KEY_PARAM = "key"


async def require_admin(request: Request) -> User:
    user = await require_user(request)
    if not user.is_admin:
        raise NotFound("page")
    return user


async def organizer_accounts(request: Request, user: User) -> list[uuid.UUID]:
    rows = await services(request).db.fetch(
        "SELECT account_id FROM account_members WHERE user_id = $1 AND role = 'organizer'", user.id
    )
    return [r["account_id"] for r in rows]


async def require_organizer(request: Request, account_id: uuid.UUID) -> User:
    """An organizer of the account while its contract runs, or an admin."""
    user = await require_user(request)
    db = services(request).db
    if user.is_admin:
        if await db.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id) is None:
            raise NotFound("account")
        return user
    member = await db.fetchval(
        "SELECT 1 FROM account_members WHERE account_id = $1 AND user_id = $2 AND role = 'organizer'",
        account_id, user.id,
    )
    if not member:
        raise NotFound("account")
    if not await has_active_contract(db, account_id):
        raise Forbidden("login.contract_ended")
    return user


async def require_webinar_organizer(request: Request, webinar_id: uuid.UUID) -> tuple[User, Webinar]:
    try:
        webinar = await get_webinar(services(request).db, webinar_id)
    except NotFound:
        await require_user(request)  # anonymous callers go to the login page first
        raise
    user = await require_organizer(request, webinar.account_id)
    return user, webinar


async def sponsor_scope(request: Request, account_id: uuid.UUID, webinar_id: uuid.UUID | None = None) -> SponsorScope | User:
    """A sponsor's right to the account (or one webinar of it): a key in ``?key=``,
    or a logged-in sponsor of the account or of that webinar, or an admin."""
    svc = services(request)
    key = request.query_params.get(SPONSOR_KEY_PARAM)
    if key:
        try:
            scope = await check_sponsor_key(svc.db, svc.signer, key)
        except InvalidToken as exc:
            raise Forbidden("error.expired_link" if exc.expired else "error.invalid_link") from None
        if not scope.covers(account_id, webinar_id):
            raise Forbidden("error.403")
        return scope
    user = await require_user(request)
    if user.is_admin:
        return user
    account_member = await svc.db.fetchval(
        "SELECT 1 FROM account_members WHERE account_id = $1 AND user_id = $2 AND role = 'sponsor'", account_id, user.id
    )
    if account_member:
        return user
    if webinar_id is not None and await svc.db.fetchval(
        """SELECT 1 FROM webinar_members m JOIN webinars w ON w.id = m.webinar_id
           WHERE m.webinar_id = $1 AND w.account_id = $2 AND m.user_id = $3 AND m.role = 'sponsor'""",
        webinar_id, account_id, user.id,
    ):
        return user
    raise NotFound("account")
