"""Site-wide pages: the dashboard and the health check."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.datastructures import ResponseSpec
from litestar import Request, get
from litestar.response import Redirect, Response, Template

from core import db
from core.hookspecs import hookimpl
from core.web import MenuLink, page


@hookimpl
def menu_links(actor):
    return [MenuLink("Dashboard", "/", None, order=0)]


@get("/", opt={"authenticated": True}, include_in_schema=False)
async def dashboard(request: Request) -> Template | Redirect:
    if request.scope.get("user") is None:
        return Redirect("/login")
    return page(request, "dashboard.html")


@dataclass
class Health:
    status: str
    database: str


@get("/healthz", opt={"public": True}, operation_id="health", tags=["operations"], cache=False,
     responses={503: ResponseSpec(data_container=Health, generate_examples=False,
                                  description="The database does not answer: status unavailable, database unreachable.")})
async def healthz() -> Response[Health]:
    """Liveness and database reachability; 503 when the database does not answer."""
    ok = await db.ping()
    return Response(Health("ok" if ok else "unavailable", "ok" if ok else "unreachable"), status_code=200 if ok else 503)


@hookimpl
def register_routes():
    return [dashboard, healthz]
