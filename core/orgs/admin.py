"""Administration of hospitals (HCPs) and their ERN memberships (helpdesk)."""

from __future__ import annotations

import re

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.events import Event
from core.web import page

MANAGE = "orgs.manage"
COUNTRY = re.compile(r"^[A-Z]{2}$")


async def _list_context(errors=None, values=None, message="") -> dict:
    from core.orgs.tables import Hcp, HcpErn

    counts: dict[int, int] = {}
    for row in await HcpErn.select(HcpErn.hcp):
        counts[row["hcp"]] = counts.get(row["hcp"], 0) + 1
    hcps = await Hcp.select().order_by(Hcp.country).order_by(Hcp.name)
    return {"hcps": hcps, "counts": counts, "errors": errors or {}, "values": values or {}, "message": message}


def _validate(form) -> tuple[dict, dict]:
    values = {
        "name": str(form.get("name", "")).strip()[:200],
        "city": str(form.get("city", "")).strip()[:100],
        "country": str(form.get("country", "")).strip().upper(),
    }
    errors = {}
    if len(values["name"]) < 3:
        errors["name"] = "Enter the hospital's name."
    if len(values["city"]) < 2:
        errors["city"] = "Enter the city."
    if not COUNTRY.match(values["country"]):
        errors["country"] = "Use the two-letter country code (ISO 3166-1), e.g. DE."
    return values, errors


@get("/admin/hcps", opt={"permission": MANAGE}, include_in_schema=False)
async def hcp_list(request: Request) -> Template:
    return page(request, "orgs/admin_hcps.html", await _list_context())


@post("/admin/hcps", opt={"permission": MANAGE}, include_in_schema=False)
async def hcp_create(request: Request) -> Template | Redirect:
    from core.orgs.tables import Hcp

    values, errors = _validate(await request.form())
    if errors:
        return page(request, "orgs/admin_hcps.html", await _list_context(errors, values), status_code=422)
    hcp = Hcp(**values)
    await hcp.save()
    await request.app.state.host.events.emit(Event("hcp.created", request.scope["user"].user_id, "hcp", str(hcp.id)))
    return Redirect(f"/admin/hcps/{hcp.id}")


async def _detail_context(hcp_id: int, errors=None, message="") -> dict:
    from core.orgs.tables import Ern, Hcp, HcpErn

    hcp = await Hcp.select().where(Hcp.id == hcp_id).first()
    if hcp is None:
        raise NotFoundException("No such hospital.")
    member = {r["ern"] for r in await HcpErn.select(HcpErn.ern).where(HcpErn.hcp == hcp_id)}
    return {"hcp": hcp, "erns": await Ern.select().order_by(Ern.acronym), "member": member, "errors": errors or {}, "message": message}


@get("/admin/hcps/{hcp_id:int}", opt={"permission": MANAGE}, include_in_schema=False)
async def hcp_detail(request: Request, hcp_id: FromPath[int]) -> Template:
    return page(request, "orgs/admin_hcp.html", await _detail_context(hcp_id))


@post("/admin/hcps/{hcp_id:int}", opt={"permission": MANAGE}, include_in_schema=False)
async def hcp_update(request: Request, hcp_id: FromPath[int]) -> Template:
    from core.orgs.tables import Ern, Hcp, HcpErn

    await _detail_context(hcp_id)  # 404 first
    form = await request.form()
    values, errors = _validate(form)
    try:
        wanted = {int(v) for v in form.getall("erns")} if hasattr(form, "getall") else set()
    except ValueError:
        errors["erns"] = "Unknown network."
        wanted = set()
    known = {e["id"] for e in await Ern.select(Ern.id)}
    if wanted - known:
        errors["erns"] = "Unknown network."
    if errors:
        return page(request, "orgs/admin_hcp.html", await _detail_context(hcp_id, errors), status_code=422)
    values["active"] = str(form.get("active", "")) == "1"
    async with Hcp._meta.db.transaction():
        await Hcp.update(values).where(Hcp.id == hcp_id)
        current = {r["ern"] for r in await HcpErn.select(HcpErn.ern).where(HcpErn.hcp == hcp_id)}
        if current - wanted:
            await HcpErn.delete().where((HcpErn.hcp == hcp_id) & HcpErn.ern.is_in(list(current - wanted)))
        if wanted - current:
            await HcpErn.insert(*[HcpErn(hcp=hcp_id, ern=e) for e in sorted(wanted - current)])
    await request.app.state.host.events.emit(
        Event("hcp.updated", request.scope["user"].user_id, "hcp", str(hcp_id), {"erns": sorted(wanted)})
    )
    return page(request, "orgs/admin_hcp.html", await _detail_context(hcp_id, message="Saved."))


ROUTES = [hcp_list, hcp_create, hcp_detail, hcp_update]
