"""Activity log: every domain event, recorded before anyone reacts to it."""

from litestar.response import Redirect, Template
from litestar import Request, get
from typing import Annotated

from litestar.params import QueryParameter

from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import MenuLink, page


@hookimpl
def register_piccolo_apps():
    return ["core.activity.piccolo_app"]


@hookimpl
def register_permissions():
    return [Permission("activity.view", "Browse the platform activity log (no patient data)", ("admin",))]


@hookimpl
def menu_links(actor):
    return [MenuLink("Activity", "/activity", "activity.view", order=90)]


@get("/activity", opt={"permission": "activity.view"}, include_in_schema=False)
async def activity_list(request: Request, page_no: Annotated[int, QueryParameter(name="page", ge=1, le=100000)] = 1) -> Template | Redirect:
    from core.activity.tables import Activity

    per_page = 50
    rows = await (
        Activity.select().order_by(Activity.id, ascending=False).limit(per_page + 1).offset((page_no - 1) * per_page)
    )
    return page(request, "activity/list.html", {"rows": rows[:per_page], "page_no": page_no, "has_next": len(rows) > per_page}, fragment="activity/_rows.html")


@hookimpl
def register_routes():
    return [activity_list]
