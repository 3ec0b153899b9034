"""Coordinators edit their ERN's consultation template (JSON), as new versions.

``panels.templates.manage`` is held per ERN: the list shows the ERNs where the actor holds it;
an ERN's pages answer 404 to anyone without it there, exactly as for a missing ERN.
"""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import urlencode

from litestar import MediaType, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from core.events import Event
from core.panels import templates_store as store
from core.panels.forms import TYPES, validate_definition
from core.web import page

MANAGE = "panels.templates.manage"
#: Largest template text (JSON) a coordinator may save.
MAX_DEFINITION_BYTES = 200_000
#: Largest request body for the edit form: the text URL-encoded can take three times its size.
MAX_EDIT_BODY = 3 * MAX_DEFINITION_BYTES + 40_000


def _managed_ern_ids(actor) -> set[int] | None:
    """ERN ids where the actor holds the permission; None: everywhere (a platform-wide grant)."""
    scopes = actor.grants.get(MANAGE, frozenset())
    return None if None in scopes else {e for e in scopes if e is not None}


async def _ern_for(request: Request, ern_id: int) -> dict:
    from core.orgs.tables import Ern

    actor = request.scope["user"]
    # Another ERN's template looks exactly like a missing ERN.
    if actor is None or not actor.can(MANAGE, ern_id):
        raise NotFoundException("No such consultation form.")
    row = await Ern.select(Ern.id, Ern.acronym, Ern.name).where(Ern.id == ern_id).first()
    if row is None:
        raise NotFoundException("No such consultation form.")
    return row


def _code_search(request: Request) -> dict[str, str]:
    from core.patients.clinical import code_search_urls

    return code_search_urls(request.app.state.host)


def pretty(definition: dict) -> str:
    return json.dumps(definition, indent=2, ensure_ascii=False)


# --- list and history -------------------------------------------------------------------------------


@get("/panels/templates", opt={"permission": MANAGE}, include_in_schema=False)
async def templates_list(request: Request) -> Template:
    from core.orgs.tables import Ern

    ids = _managed_ern_ids(request.scope["user"])
    query = Ern.select(Ern.id, Ern.acronym, Ern.name).order_by(Ern.acronym)
    if ids is not None:
        query = query.where(Ern.id.is_in(sorted(ids) or [0]))
    rows = []
    for ern in await query:
        current = await store.current_template(ern["id"])
        rows.append({**ern, "current": current, "own": current["ern"] == ern["id"]})
    default = await store.current_template(None)
    return page(request, "panels/templates_list.html", {"erns": rows, "default": default})


@get("/panels/templates/{ern_id:int}", opt={"authenticated": True}, include_in_schema=False)
async def template_ern(
    request: Request, ern_id: FromPath[int], version: Annotated[int | None, QueryParameter(ge=1, le=1_000_000)] = None
) -> Template:
    ern = await _ern_for(request, ern_id)
    current = await store.current_template(ern_id)
    shown = current
    if version is not None:
        shown = await store.template_version(ern_id, version)
        if shown is None:
            raise NotFoundException("No such version of the consultation form.")
    return page(request, "panels/template_ern.html", {
        "ern": ern, "current": current, "shown": shown, "own": current["ern"] == ern_id,
        "versions": await store.versions(ern_id), "default_versions": await store.versions(None) if current["ern"] is None else [],
        "code_search": _code_search(request), "types": TYPES,
    })


# --- editing ------------------------------------------------------------------------------------------


async def _edit_page(request: Request, ern: dict, text: str, *, base_version: int, problems=(), message: str = "", preview=None, status_code: int = 200) -> Template:
    current = await store.current_template(ern["id"])
    return page(request, "panels/template_edit.html", {
        "ern": ern, "current": current, "own": current["ern"] == ern["id"], "text": text, "base_version": base_version,
        "problems": list(problems), "message": message, "preview": preview, "code_search": _code_search(request),
        "max_kb": MAX_DEFINITION_BYTES // 1000, "failed": status_code >= 400,
    }, status_code=status_code)


@get("/panels/templates/{ern_id:int}/edit", opt={"authenticated": True}, include_in_schema=False)
async def edit_form(request: Request, ern_id: FromPath[int], start: Annotated[str, QueryParameter(max_length=20)] = "") -> Template:
    ern = await _ern_for(request, ern_id)
    current = await store.current_template(ern_id)
    definition = (await store.current_template(None))["definition"] if start == "default" else current["definition"]
    base = current["version"] if current["ern"] == ern_id else 0
    return await _edit_page(request, ern, pretty(definition), base_version=base)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed in a template")


def parse_json(text: str) -> tuple[object, str]:
    """The template text as JSON, or a message saying where it is broken."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant), ""
    except json.JSONDecodeError as exc:
        return None, f"The text is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
    except _DuplicateKey as exc:
        return None, f"The text is not valid: the attribute \"{str(exc)[:40]}\" appears twice in the same object."
    except (ValueError, RecursionError) as exc:
        return None, f"The text is not valid JSON: {str(exc)[:100]}."


@post("/panels/templates/{ern_id:int}/edit", opt={"authenticated": True}, include_in_schema=False, request_max_body_size=MAX_EDIT_BODY)
async def edit_submit(request: Request, ern_id: FromPath[int]) -> Template | Redirect:
    actor = request.scope["user"]
    ern = await _ern_for(request, ern_id)
    form = await request.form()
    text = str(form.get("definition", "") or "")
    action = str(form.get("action", "save") or "save")
    try:
        base_version = int(str(form.get("base_version", "")).strip())
    except ValueError:
        base_version = None
    current = await store.current_template(ern_id)
    now_version = current["version"] if current["ern"] == ern_id else 0
    shown_base = now_version if base_version is None else base_version
    size = len(text.encode("utf-8"))
    if size > MAX_DEFINITION_BYTES:
        message = f"The template is {size / 1000:,.0f} kB; at most {MAX_DEFINITION_BYTES // 1000} kB. Nothing was saved."
        return await _edit_page(request, ern, text, base_version=shown_base, message=message, status_code=413)
    if not text.strip():
        return await _edit_page(request, ern, text, base_version=shown_base, message="The template is empty. Nothing was saved.", status_code=422)
    definition, error = parse_json(text)
    if error:
        return await _edit_page(request, ern, text, base_version=shown_base, message=error + " Nothing was saved.", status_code=422)
    problems = validate_definition(definition)
    if problems:
        return await _edit_page(request, ern, text, base_version=shown_base, problems=problems,
                                message=f"The template has {len(problems)} problem{'s' if len(problems) > 1 else ''}. Nothing was saved.", status_code=422)
    if action == "preview":
        return await _edit_page(request, ern, text, base_version=shown_base, preview=definition,
                                message="The template is valid. This is a preview: nothing was saved yet.")
    if base_version is not None and base_version != now_version:
        message = (f"Someone saved version {now_version} while you were editing (you started from version {base_version}). "
                   "Nothing was saved: compare with the current version, then save again.")
        return await _edit_page(request, ern, text, base_version=now_version, message=message, status_code=409)
    saved = await store.save_version(ern_id, definition, definition["title"], actor.user_id)
    await request.app.state.host.events.emit(Event("panel.template_saved", actor.user_id, "ern", str(ern_id), {"version": saved["version"]}))
    return Redirect(f"/panels/templates/{ern_id}", status_code=303)


# --- code search for coded fields ---------------------------------------------------------------------


@get("/panels/code-search/{kind:str}", opt={"permission": "panels.view"}, include_in_schema=False)
async def code_search(request: Request, kind: FromPath[str]) -> Response | Redirect:
    """A form's coded field asks here as the user types (htmx sends ``f_<key>_label=<text>``);
    the code-search plugin's URL is asked with ``?label=<text>``, as its hook documents."""
    if kind not in ("diagnoses", "phenotype"):
        raise NotFoundException("No such code search.")
    url = _code_search(request).get(kind)
    text = ""
    for name, value in request.query_params.items():
        if name == "label" or (name.startswith("f_") and name.endswith("_label")):
            text = str(value)
            break
    text = " ".join(text.split())[:200]
    if not url or not text:
        return Response("", media_type=MediaType.HTML)
    separator = "&" if "?" in url else "?"
    return Redirect(f"{url}{separator}{urlencode({'label': text})}", status_code=302)


ROUTES = [templates_list, template_ern, edit_form, edit_submit, code_search]
