"""Organisations: the 24 ERNs, healthcare providers (HCPs) and their memberships."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from litestar.response import Redirect, Template
from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from core.events import EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import MenuLink, page

DATA = Path(__file__).parent / "data"
ALL_ROLES = ("admin", "hp", "coordinator", "dispatcher", "researcher", "guest", "assistant", "dpo")


def ern_reference() -> list[dict]:
    return json.loads((DATA / "erns.json").read_text(encoding="utf-8"))


@hookimpl
def register_piccolo_apps():
    return ["core.orgs.piccolo_app"]


@hookimpl
def register_permissions():
    return [
        Permission("orgs.view", "See the ERNs and their member hospitals", ALL_ROLES),
        Permission("orgs.manage", "Create and edit ERNs, HCPs and memberships", ("admin",)),
    ]


@hookimpl
def menu_links(actor):
    return [MenuLink("Networks", "/erns", "orgs.view", order=80), MenuLink("Hospitals", "/admin/hcps", "orgs.manage", order=84)]


@dataclass
class ErnOut:
    id: int
    acronym: str
    name: str
    area: str
    hcp_count: int


async def _erns_with_counts() -> list[ErnOut]:
    from core.orgs.tables import Ern, HcpErn

    erns = await Ern.select().order_by(Ern.acronym)
    counts: dict[int, int] = {}
    for row in await HcpErn.select(HcpErn.ern):
        counts[row["ern"]] = counts.get(row["ern"], 0) + 1
    return [ErnOut(e["id"], e["acronym"], e["name"], e["area"], counts.get(e["id"], 0)) for e in erns]


@get("/erns", opt={"permission": "orgs.view"}, include_in_schema=False)
async def ern_list(request: Request) -> Template | Redirect:
    return page(request, "orgs/erns.html", {"erns": await _erns_with_counts()})


@get("/erns/{ern_id:int}", opt={"permission": "orgs.view"}, include_in_schema=False)
async def ern_detail(request: Request, ern_id: FromPath[int]) -> Template | Redirect:
    from core.orgs.tables import Ern, Hcp, HcpErn

    ern = await Ern.objects().get(Ern.id == ern_id)
    if ern is None:
        raise NotFoundException("No such ERN.")
    hcp_ids = [r["hcp"] for r in await HcpErn.select(HcpErn.hcp).where(HcpErn.ern == ern_id)]
    hcps = await Hcp.select().where(Hcp.id.is_in(hcp_ids)).order_by(Hcp.country) if hcp_ids else []
    return page(request, "orgs/ern.html", {"ern": ern, "hcps": hcps})


@get("/api/erns", opt={"permission": "orgs.view"}, operation_id="listErns", tags=["organisations"])
async def ern_list_json() -> list[ErnOut]:
    """The European Reference Networks with the number of member hospitals."""
    return await _erns_with_counts()


@hookimpl
def register_routes():
    from core.orgs import admin

    return [ern_list, ern_detail, ern_list_json, *admin.ROUTES]


@hookimpl
def register_event_types():
    return [EventType("hcp.created", "A hospital was added"), EventType("hcp.updated", "A hospital or its memberships changed")]


@hookimpl
async def load_demo_data(ctx):
    from core.orgs.tables import Ern, Hcp, HcpErn

    ctx.erns = {e["acronym"]: e["id"] for e in await Ern.select(Ern.id, Ern.acronym)}
    for item in json.loads((DATA / "demo_hcps.json").read_text(encoding="utf-8")):
        hcp = Hcp(name=item["name"], city=item["city"], country=item["country"])
        await hcp.save()
        ctx.hcps[item["name"]] = hcp.id
        await HcpErn.insert(*[HcpErn(hcp=hcp.id, ern=ctx.erns[a]) for a in item["erns"]])
