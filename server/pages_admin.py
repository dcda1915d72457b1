"""Platform admin pages: client accounts, their organizers and sponsors, orders,
revoking a user or every session of an account (R-ACC-1, R-ACC-3, R-ACC-6)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from starlette.requests import Request
from starlette.responses import Response

from server.accounts import add_member, create_account, get_account, members, remove_member
from server.errors import RuleViolation
from server.i18n import translate
from server.maintenance import MAX_MESSAGE_LEN, read_maintenance, set_maintenance, watch_of
from server.orders import ORDER_KINDS, account_orders, create_order, webinars_used
from server.permissions import require_admin
from server.sessions import revoke_account_sessions
from server.users import create_user, disable_user, get_user_by_email
from server.web import AppRoute, BadRequest, form_str, path_uuid, read_form, redirect, render, request_lang, services


def _cents(value: str, field: str) -> int:
    try:
        amount = Decimal(value.replace(",", ".").replace(" ", "") or "0")
    except InvalidOperation:
        raise RuleViolation("bad_value", field=field) from None
    if not amount.is_finite() or amount.as_tuple().exponent < -2 or amount > Decimal("10000000"):  # type: ignore[operator]
        raise RuleViolation("bad_value", field=field)
    return int(amount * 100)


def _date(value: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise RuleViolation("bad_value", field=field) from None


async def admin_home(request: Request) -> Response:
    await require_admin(request)
    accounts = await services(request).db.fetch("SELECT id, name, created_at FROM accounts ORDER BY lower(name)")
    return await render(request, "admin.html", accounts=accounts, error=None)


async def admin_create_account(request: Request) -> Response:
    await require_admin(request)
    form = await read_form(request)
    try:
        account = await create_account(services(request).db, form_str(form, "name", max_len=200))
    except RuleViolation as exc:
        accounts = await services(request).db.fetch("SELECT id, name, created_at FROM accounts ORDER BY lower(name)")
        return await render(request, "admin.html", status_code=422, accounts=accounts,
                            error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    return redirect(f"/admin/accounts/{account.id}")


async def _account_admin_page(request: Request, status_code: int = 200, **extra: object) -> Response:
    db = services(request).db
    account_id = path_uuid(request, "account_id")
    account = await get_account(db, account_id)
    orders = await account_orders(db, account_id)
    context: dict[str, object] = {
        "account": account, "members": await members(db, account_id),
        "orders": [(o, await webinars_used(db, o.id)) for o in orders], "kinds": ORDER_KINDS,
        "error": None, "notice": None,
    }
    context.update(extra)
    return await render(request, "admin_account.html", status_code=status_code, **context)


async def admin_account(request: Request) -> Response:
    await require_admin(request)
    return await _account_admin_page(request)


async def admin_add_member(request: Request) -> Response:
    await require_admin(request)
    account_id = path_uuid(request, "account_id")
    form = await read_form(request)
    db = services(request).db
    try:
        await get_account(db, account_id)
        email = form_str(form, "email", max_len=254)
        role = form_str(form, "role", max_len=20)
        user = await get_user_by_email(db, email)
        if user is None:
            user = await create_user(db, email, name=form_str(form, "name", max_len=200, required=False),
                                     password=form_str(form, "password", max_len=1000, required=False) or None)
        await add_member(db, account_id, user.id, role)
    except RuleViolation as exc:
        return await _account_admin_page(request, status_code=422,
                                         error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    return redirect(f"/admin/accounts/{account_id}")


async def admin_remove_member(request: Request) -> Response:
    await require_admin(request)
    account_id = path_uuid(request, "account_id")
    user_id = path_uuid(request, "user_id")
    form = await read_form(request)
    await remove_member(services(request).db, account_id, user_id, form_str(form, "role", max_len=20))
    return redirect(f"/admin/accounts/{account_id}")


async def admin_create_order(request: Request) -> Response:
    await require_admin(request)
    account_id = path_uuid(request, "account_id")
    form = await read_form(request)
    try:
        await get_account(services(request).db, account_id)
        try:
            bought = int(form_str(form, "webinars_bought", max_len=6))
        except ValueError:
            raise RuleViolation("bad_value", field="webinars_bought") from None
        await create_order(
            services(request).db, account_id,
            reference=form_str(form, "reference", max_len=100),
            signed_on=_date(form_str(form, "signed_on", max_len=10), "signed_on"),
            contract_start=_date(form_str(form, "contract_start", max_len=10), "contract_start"),
            contract_end=_date(form_str(form, "contract_end", max_len=10), "contract_end"),
            webinars_bought=bought,
            kind=form_str(form, "kind", max_len=40),
            studio_option=form.get("studio_option") == "on",
            price_per_webinar_cents=_cents(form_str(form, "price", max_len=20), "price"),
            options_price_cents=_cents(form_str(form, "options_price", max_len=20, required=False), "options_price"),
        )
    except RuleViolation as exc:
        return await _account_admin_page(request, status_code=422,
                                         error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    return redirect(f"/admin/accounts/{account_id}")


async def admin_revoke_sessions(request: Request) -> Response:
    await require_admin(request)
    account_id = path_uuid(request, "account_id")
    await read_form(request)
    await get_account(services(request).db, account_id)
    count = await revoke_account_sessions(services(request).db, account_id)
    return await _account_admin_page(request, notice=translate(request_lang(request), "account.sessions_revoked", count=count))


async def admin_disable_user(request: Request) -> Response:
    admin = await require_admin(request)
    user_id = path_uuid(request, "user_id")
    form = await read_form(request)
    if user_id != admin.id:
        await disable_user(services(request).db, user_id)
    back = form_str(form, "back", max_len=200, required=False)
    return redirect(back if back.startswith("/admin/") else "/admin")


async def _maintenance_page(request: Request, status_code: int = 200, error: str | None = None,
                            message: str | None = None) -> Response:
    svc = services(request)
    state = await read_maintenance(svc.db)
    live = svc.extras.get("live")
    running = len(live.live_ids()) if live is not None else None
    return await render(request, "admin_maintenance.html", status_code=status_code, state=state, error=error,
                        running=running, message=state.message if message is None else message,
                        max_len=MAX_MESSAGE_LEN)


async def admin_maintenance(request: Request) -> Response:
    """R-OPS-3: the maintenance switch (see server/maintenance.py)."""
    await require_admin(request)
    return await _maintenance_page(request)


async def admin_set_maintenance(request: Request) -> Response:
    admin = await require_admin(request)
    form = await read_form(request)
    action = form_str(form, "action", max_len=3)
    if action not in ("on", "off"):
        raise BadRequest("action must be on or off")
    message = form_str(form, "message", max_len=10 * MAX_MESSAGE_LEN, required=False)
    svc = services(request)
    try:
        await set_maintenance(svc.db, action == "on", message, changed_by=admin.email, broker=svc.broker)
    except RuleViolation as exc:
        return await _maintenance_page(request, status_code=422, message=message,
                                       error=translate(request_lang(request), f"rule.{exc.code}", **exc.params))
    watch = watch_of(svc)
    if watch is not None:
        await watch.refresh()  # this node at once, whatever the broker does
    return redirect("/admin/maintenance")


routes = [
    AppRoute("/admin", admin_home, access="admin", methods=["GET"]),
    AppRoute("/admin/maintenance", admin_maintenance, access="admin", methods=["GET"]),
    AppRoute("/admin/maintenance", admin_set_maintenance, access="admin", methods=["POST"]),
    AppRoute("/admin/accounts", admin_create_account, access="admin", methods=["POST"]),
    AppRoute("/admin/accounts/{account_id}", admin_account, access="admin", methods=["GET"]),
    AppRoute("/admin/accounts/{account_id}/members", admin_add_member, access="admin", methods=["POST"]),
    AppRoute("/admin/accounts/{account_id}/members/{user_id}/remove", admin_remove_member, access="admin", methods=["POST"]),
    AppRoute("/admin/accounts/{account_id}/orders", admin_create_order, access="admin", methods=["POST"]),
    AppRoute("/admin/accounts/{account_id}/revoke-sessions", admin_revoke_sessions, access="admin", methods=["POST"]),
    AppRoute("/admin/users/{user_id}/disable", admin_disable_user, access="admin", methods=["POST"]),
]
