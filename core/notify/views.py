"""The inbox, its unread badge, and the notification preferences page.

Every route works on the logged-in user's own notifications only: another user's id answers
404, exactly like a missing one, so ids reveal nothing.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from core.notify import service
from core.notify.kinds import KINDS
from core.web import is_fragment_request, page

AUTH = {"authenticated": True}
PER_PAGE = 50
#: htmx event sent after a change, so the unread badge in the header reloads at once.
CHANGED = "notify-changed"


async def _own(request: Request, notification_id: int) -> dict:
    row = await service.own_notification(request.scope["user"].user_id, notification_id)
    if row is None:
        raise NotFoundException("No such notification.")
    return row


@get("/notifications", opt=AUTH, include_in_schema=False)
async def inbox(
    request: Request,
    before: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
) -> Template:
    rows, next_before = await service.inbox_page(request.scope["user"].user_id, before, PER_PAGE)
    return page(
        request, "notify/inbox.html", {"rows": rows, "before": before, "next_before": next_before, "kinds": KINDS},
        fragment="notify/_list.html",
    )


# Every page's header loads this, the two-step-login set-up page too: refusing it there would
# answer with a redirect to that same page, reloading it for ever. A count is no patient data.
@get("/notifications/badge", opt={**AUTH, "mfa_setup": True}, include_in_schema=False)
async def badge(request: Request) -> Template:
    # A bare fragment, without the menu and plugin context a full page computes.
    count = await service.unread_count(request.scope["user"].user_id)
    return Template(template_name="notify/_badge.html", context={"count": count})


@post("/notifications/{notification_id:int}/read", opt=AUTH, include_in_schema=False)
async def read_one(request: Request, notification_id: FromPath[int]) -> Template | Redirect:
    row = await _own(request, notification_id)
    await service.mark_read(row["user"], [row["id"]])
    if is_fragment_request(request):  # the row's own button: swap in the row, now read
        row = await service.own_notification(row["user"], row["id"])
        return page(request, "notify/_row.html", {"n": row, "kinds": KINDS}, headers={"HX-Trigger": CHANGED})
    return Redirect("/notifications", status_code=303)


@post("/notifications/read-all", opt=AUTH, include_in_schema=False)
async def read_all(request: Request) -> Redirect:
    await service.mark_read(request.scope["user"].user_id)
    return Redirect("/notifications", status_code=303)


@get("/notifications/{notification_id:int}/open", opt=AUTH, include_in_schema=False)
async def open_one(request: Request, notification_id: FromPath[int]) -> Redirect:
    row = await _own(request, notification_id)
    await service.mark_read(row["user"], [row["id"]])
    # notify() stores local paths only; checked again so a row written some other way can
    # never turn this into an open redirect.
    target = row["link"] if service.is_local_path(row["link"]) else "/notifications"
    return Redirect(target, status_code=303)


async def _preferences_page(request: Request, message: str = "") -> Template:
    prefs = await service.preferences(request.scope["user"].user_id)
    return page(request, "notify/preferences.html", {"kinds": KINDS, "prefs": prefs, "message": message})


@get("/notifications/preferences", opt=AUTH, include_in_schema=False)
async def preferences_form(request: Request) -> Template:
    return await _preferences_page(request)


@post("/notifications/preferences", opt=AUTH, include_in_schema=False)
async def preferences_save(request: Request) -> Template:
    form = await request.form()

    def values(name: str) -> set[str]:
        # getall without a default raises for a name absent from the form (no box ticked).
        return {str(v) for v in form.getall(name, [])} if hasattr(form, "getall") else set()

    # Only the kinds the page showed are saved: an unticked box is absent from the form, so
    # a kind registered since the page was rendered must not be switched off by accident.
    shown, in_app, email = values("kind"), values("in_app"), values("email")
    await service.save_preferences(request.scope["user"].user_id, {k: (k in in_app, k in email) for k in shown})
    return await _preferences_page(request, "Your notification settings were saved.")


ROUTES = [inbox, badge, read_one, read_all, open_one, preferences_form, preferences_save]
