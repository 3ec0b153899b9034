"""Expert groups: named lists of an ERN's experts (say "Paediatric neurogenetics") that a
panel invites in one go. Coordinators keep them, per ERN.

``panels.templates.manage`` is held per ERN: the list shows the groups of the ERNs where the
actor holds it; another ERN's group answers 404, exactly like a missing one, and nothing changes.
"""

from __future__ import annotations

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.panels.members import ern_experts, fold
from core.web import page

MANAGE = "panels.templates.manage"
OPT = {"permission": MANAGE}
NAME_MAX = 120
AREA_MAX = 200


def managed_erns(actor) -> set[int] | None:
    """ERN ids where the actor keeps expert groups; None: every ERN (a platform-wide grant)."""
    scopes = actor.grants.get(MANAGE, frozenset())
    return None if None in scopes else {e for e in scopes if e is not None}


async def _erns(actor) -> list[dict]:
    from core.orgs.tables import Ern

    ids = managed_erns(actor)
    query = Ern.select(Ern.id, Ern.acronym, Ern.name).order_by(Ern.acronym)
    if ids is not None:
        query = query.where(Ern.id.is_in(sorted(ids) or [0]))
    return await query


async def _group_for(request: Request, group_id: int) -> dict:
    """The group, if the actor keeps the groups of its ERN; otherwise 404 as for a missing one."""
    from core.panels.tables import ExpertGroup

    row = await ExpertGroup.select(
        ExpertGroup.id, ExpertGroup.ern, ExpertGroup.name, ExpertGroup.area, ExpertGroup.ern.acronym.as_alias("ern_acronym"),
    ).where(ExpertGroup.id == group_id).first()
    actor = request.scope.get("user")
    if row is None or actor is None or not actor.can(MANAGE, row["ern"]):
        raise NotFoundException("No such expert group.")
    return row


async def _list_page(request: Request, *, values=None, errors=None, status_code: int = 200) -> Template:
    from core.panels.tables import ExpertGroup, ExpertGroupMember

    erns = await _erns(request.scope["user"])
    ids = [e["id"] for e in erns]
    groups = await ExpertGroup.select().where(ExpertGroup.ern.is_in(ids or [0])).order_by(ExpertGroup.name)
    counts: dict[int, int] = {}
    if groups:
        for link in await ExpertGroupMember.select(ExpertGroupMember.group).where(ExpertGroupMember.group.is_in([g["id"] for g in groups])):
            counts[link["group"]] = counts.get(link["group"], 0) + 1
    by_ern = [{**e, "groups": [{**g, "count": counts.get(g["id"], 0)} for g in groups if g["ern"] == e["id"]]} for e in erns]
    return page(request, "panels/groups.html", {
        "erns": by_ern, "values": values or {}, "errors": errors or {}, "name_max": NAME_MAX, "area_max": AREA_MAX,
    }, status_code=status_code)


async def _members(group: dict) -> list[dict]:
    from core.panels.tables import ExpertGroupMember

    rows = await ExpertGroupMember.select(
        ExpertGroupMember.user, ExpertGroupMember.user.name.as_alias("name"), ExpertGroupMember.user.hcp.name.as_alias("hcp_name"),
        ExpertGroupMember.user.hcp.country.as_alias("country"),
    ).where(ExpertGroupMember.group == group["id"])
    experts = await ern_experts(group["ern"], [r["user"] for r in rows])
    # Someone who lost their role in the ERN stays listed, marked, and is not invited with the group.
    return sorted(({**r, "hcp_name": r["hcp_name"] or "", "current": r["user"] in experts} for r in rows), key=lambda r: fold(r["name"]))


async def _detail_page(request: Request, group: dict, *, message: str = "", error: str = "", status_code: int = 200) -> Template:
    members = await _members(group)
    listed = {m["user"] for m in members}
    experts = await ern_experts(group["ern"])
    choices = sorted((e for uid, e in experts.items() if uid not in listed), key=lambda e: (fold(e["name"]), e["id"]))
    return page(request, "panels/groups_detail.html", {
        "group": group, "members": members, "choices": choices, "message": message, "error": error,
    }, status_code=status_code)


@get("/panels/groups", opt=OPT, include_in_schema=False)
async def groups_list(request: Request) -> Template:
    return await _list_page(request)


@post("/panels/groups", opt=OPT, include_in_schema=False)
async def group_create(request: Request) -> Template | Redirect:
    from core.panels.tables import ExpertGroup

    actor = request.scope["user"]
    form = await request.form()
    raw_ern = str(form.get("ern", "") or "").strip()
    if not raw_ern.isdecimal() or len(raw_ern) > 12 or not actor.can(MANAGE, int(raw_ern)):
        raise NotFoundException("No such network among those whose expert groups you keep.")
    ern_id = int(raw_ern)
    name = " ".join(str(form.get("name", "") or "").split())
    area = " ".join(str(form.get("area", "") or "").split())
    errors = {}
    if not 1 <= len(name) <= NAME_MAX:
        errors["name"] = f"Name the group (at most {NAME_MAX} characters)."
    if len(area) > AREA_MAX:
        errors["area"] = f"At most {AREA_MAX} characters."
    if not errors:
        same = await ExpertGroup.select(ExpertGroup.name).where(ExpertGroup.ern == ern_id)
        if any(fold(g["name"]) == fold(name) for g in same):
            errors["name"] = "This network already has a group of that name."
    if errors:
        return await _list_page(request, values={"ern": ern_id, "name": name, "area": area}, errors=errors, status_code=422)
    row = ExpertGroup(ern=ern_id, name=name, area=area)
    await row.save()
    return Redirect(f"/panels/groups/{row.id}", status_code=303)


@get("/panels/groups/{group_id:int}", opt=OPT, include_in_schema=False)
async def group_detail(request: Request, group_id: FromPath[int]) -> Template:
    return await _detail_page(request, await _group_for(request, group_id))


@post("/panels/groups/{group_id:int}/members", opt=OPT, include_in_schema=False)
async def group_add(request: Request, group_id: FromPath[int]) -> Template | Redirect:
    from core.panels.tables import ExpertGroupMember

    group = await _group_for(request, group_id)
    form = await request.form()
    raw = str(form.get("user", "") or "").strip()
    user_id = int(raw) if raw.isdecimal() and len(raw) <= 12 else None
    if user_id is None or user_id not in await ern_experts(group["ern"], [user_id]):
        return await _detail_page(request, group, error=f"Choose a healthcare professional or coordinator of {group['ern_acronym']}.", status_code=422)
    async with ExpertGroupMember._meta.db.transaction():
        if await ExpertGroupMember.exists().where((ExpertGroupMember.group == group_id) & (ExpertGroupMember.user == user_id)):
            return await _detail_page(request, group, error="This person is already in the group.", status_code=409)
        await ExpertGroupMember.insert(ExpertGroupMember(group=group_id, user=user_id))
    return Redirect(f"/panels/groups/{group_id}", status_code=303)


@post("/panels/groups/{group_id:int}/members/{user_id:int}/remove", opt=OPT, include_in_schema=False)
async def group_remove(request: Request, group_id: FromPath[int], user_id: FromPath[int]) -> Redirect:
    from core.panels.tables import ExpertGroupMember

    await _group_for(request, group_id)
    gone = await ExpertGroupMember.delete().where((ExpertGroupMember.group == group_id) & (ExpertGroupMember.user == user_id)).returning(ExpertGroupMember.id)
    if not gone:
        raise NotFoundException("This person is not in the group.")
    return Redirect(f"/panels/groups/{group_id}", status_code=303)


@post("/panels/groups/{group_id:int}/delete", opt=OPT, include_in_schema=False)
async def group_delete(request: Request, group_id: FromPath[int]) -> Redirect:
    from core.panels.tables import ExpertGroup

    await _group_for(request, group_id)
    await ExpertGroup.delete().where(ExpertGroup.id == group_id)
    return Redirect("/panels/groups", status_code=303)


ROUTES = [groups_list, group_create, group_detail, group_add, group_remove, group_delete]
