"""Share links: one slide shown inside any other web page, without an account.

The enrolling hospital (``pathology.edit``) creates a link for one slide at
``/pathology/slides/{id}/share-links`` (a note saying where it is used, an expiry of 1 to
``MAX_DAYS`` days, with or without the slide's annotations), lists and revokes them.

The token is ``<link id>.<nonce>.<expiry>.<key id>.<mac>``: ``mac`` is HMAC-SHA256 over the first
three parts with a key derived (HKDF) from the site keyring key ``key id`` (the current key when
the link is made), compared in constant time. A link is refused when its token was altered or
not made here (403), its slide is gone (404), or it expired or was revoked (410). The row is the
authority: the nonce and expiry in the token must match it. Rotating keys keeps old links working
while their key stays in the ring; retiring a key ends its links.

``/pathology/embed/{token}`` is a page without the site's chrome that OpenSeadragon fills with the
slide's pyramid from ``/pathology/embed/{token}/image.dzi`` and ``…/image_files/…`` (the same tile
server as the viewer; never the label, the macro or any property). It is the only page whose
content-security policy lets other sites frame it (``opt={"frame_ancestors": "*"}``,
``core.security``). ``/static/pathology_viewer/embed.js`` turns
``<div data-cpms-slide="https://host/pathology/embed/TOKEN"></div>`` into that iframe.

Audited: creating and revoking a link (the hospital's user), and each opening of the embed page
(actor: none, detail: the link), not each tile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.web import page

EDIT = "pathology.edit"
MAX_DAYS = 90
NOTE_MAX = 200
TOKEN = re.compile(r"^([1-9][0-9]{0,11})\.([A-Za-z0-9_-]{16,32})\.([0-9]{1,12})\.([0-9a-f]{1,16})\.([A-Za-z0-9_-]{43})$")
#: A checked link is remembered this long per process, so tiles do not each query the database;
#: revoking forgets it at once in this process (another worker may serve tiles up to this long).
TTL = 30.0
_cache: dict[str, tuple[float, "Shared"]] = {}
INFO = b"cpms pathology share link v1"


class LinkRefused(HTTPException):
    """A share link that cannot be used: the status says why (403 forged, 404 gone, 410 expired/revoked)."""


@dataclass(frozen=True)
class Shared:
    link: dict
    slide: dict
    patient: dict


# --- tokens --------------------------------------------------------------------------------------


def _key(settings, kid: str) -> bytes | None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from core.crypto import keyring

    ring = keyring(settings)
    if kid not in ring.keys:
        return None
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(ring.keys[kid])


def _mac(key: bytes, link_id: int, nonce: str, expiry: int) -> str:
    digest = hmac.new(key, f"{link_id}.{nonce}.{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_token(settings, link_id: int, nonce: str, expires_at: datetime) -> str:
    from core.crypto import keyring

    kid = keyring(settings).current
    expiry = int(_utc(expires_at).timestamp())
    return f"{link_id}.{nonce}.{expiry}.{kid}.{_mac(_key(settings, kid), link_id, nonce, expiry)}"


def read_token(settings, token: str) -> tuple[int, str, int]:
    """(link id, nonce, expiry) of an authentic token, else LinkRefused(403)."""
    m = TOKEN.match(token or "")
    if m is None:
        raise LinkRefused(status_code=403, detail="This share link is not valid: it was altered or cut short.")
    link_id, nonce, expiry, kid, mac = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4), m.group(5)
    key = _key(settings, kid)
    expected = _mac(key, link_id, nonce, expiry) if key else "x" * 43
    if not hmac.compare_digest(expected.encode(), mac.encode()) or key is None:
        raise LinkRefused(status_code=403, detail="This share link is not valid: it was not made by this site, or was altered.")
    return link_id, nonce, expiry


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def forget(link_id: int | None = None) -> None:
    """Drop remembered checks: of one link (after revoking it), or all."""
    if link_id is None:
        _cache.clear()
        return
    for token in [t for t, (_, s) in _cache.items() if s.link["id"] == link_id]:
        _cache.pop(token, None)


async def check(request: Request, token: str) -> Shared:
    """The link, its slide and patient for a token that may be used now, else LinkRefused."""
    now = time.monotonic()
    hit = _cache.get(token)
    if hit is not None and hit[0] > now and _utc(hit[1].link["expires_at"]) > datetime.now(timezone.utc):
        return hit[1]
    from core.patients.tables import Patient
    from plugins.pathology_viewer.tables import ShareLink, Slide

    link_id, nonce, expiry = read_token(request.app.state.settings, token)
    if expiry <= time.time():
        raise LinkRefused(status_code=410, detail="This share link has expired. Ask the hospital that shared the slide for a new one.")
    link = await ShareLink.select().where(ShareLink.id == link_id).first()
    if link is None or not hmac.compare_digest(link["nonce"].encode(), nonce.encode()):
        raise LinkRefused(status_code=404, detail="This share link no longer leads to a slide.")
    if int(_utc(link["expires_at"]).timestamp()) != expiry:
        raise LinkRefused(status_code=403, detail="This share link is not valid: it was altered.")
    if link["revoked_at"] is not None:
        raise LinkRefused(status_code=410, detail="This share link was revoked by the hospital that shared the slide.")
    slide = await Slide.select().where(Slide.id == link["slide"]).first()
    patient = await Patient.select(Patient.id, Patient.pseudonym, Patient.hcp, Patient.erased_at, Patient.restricted).where(
        Patient.id == (slide["patient"] if slide else 0)).first()
    if slide is None or patient is None or patient["erased_at"] is not None:
        raise LinkRefused(status_code=404, detail="This share link no longer leads to a slide.")
    if patient["restricted"]:
        # GDPR restriction: the record is no longer processed, so it is not shown outside either.
        raise LinkRefused(status_code=410, detail="This slide is no longer shared.")
    from core.patients.consent_rules import patient_shareable

    if not await patient_shareable(patient["id"]):
        # A share link shows the slide outside the hospital: the patient's consent must allow it.
        raise LinkRefused(status_code=410, detail="This slide is no longer shared.")
    shared = Shared(link, slide, patient)
    if len(_cache) > 1024:
        _cache.clear()
    _cache[token] = (now + TTL, shared)
    return shared


# --- the embed page and its tiles (no session) ---------------------------------------------------


def _refused(request: Request, exc: LinkRefused, *, page_wanted: bool) -> Response:
    if not page_wanted:
        return Response({"type": "about:blank", "title": "Share link refused", "status": exc.status_code, "detail": exc.detail},
                        status_code=exc.status_code, media_type="application/problem+json")
    return Template("pathology/embed_error.html", context={"status": exc.status_code, "detail": exc.detail},
                    status_code=exc.status_code)


EMBED = "/pathology/embed/{token:str}"
PUBLIC = {"public": True}


@get(EMBED, opt={"public": True, "frame_ancestors": "*"}, include_in_schema=False)
async def embed_page(request: Request, token: FromPath[str]) -> Response:
    import json

    from core.audit.chain import record
    from core.identity.login import client_address
    from plugins.pathology_viewer.annotations import rows_of, shape

    try:
        shared = await check(request, token)
    except LinkRefused as exc:
        return _refused(request, exc, page_wanted=True)
    slide = shared.slide
    annotations = []
    if shared.link["with_annotations"]:
        annotations = [shape(r, slide, with_author=False) for r in await rows_of(slide["id"])]
    await record("pathology.embed_view", patient_pseudonym=shared.patient["pseudonym"], patient_hcp=shared.patient["hcp"],
                 actor=None, address=client_address(request), detail={"slide": slide["id"], "share_link": shared.link["id"]})
    base = f"/pathology/embed/{token}"
    config = {
        "slide": slide["id"], "width": int(slide["width"]), "height": int(slide["height"]),
        "mppX": slide.get("mpp_x"), "mppY": slide.get("mpp_y") or slide.get("mpp_x"),
        "dzi": base + "/image.dzi", "mode": "embed", "mayAnnotate": False, "view": None, "focus": None,
    }
    return Template("pathology/embed.html", context={
        "slide": slide, "config_json": json.dumps(config), "annotations_json": json.dumps(annotations),
        "annotations": annotations, "with_annotations": bool(shared.link["with_annotations"]),
    })


@get(EMBED + "/image.dzi", opt=PUBLIC, include_in_schema=False)
async def embed_dzi(request: Request, token: FromPath[str]) -> Response:
    from plugins.pathology_viewer.tiles import dzi_response

    try:
        shared = await check(request, token)
    except LinkRefused as exc:
        return _refused(request, exc, page_wanted=False)
    return await dzi_response(shared.slide, request)


TILE = re.compile(r"^([0-9]{1,6})_([0-9]{1,6})\.([a-z]{3,4})$")


@get(EMBED + "/image_files/{level:int}/{name:str}", opt=PUBLIC, include_in_schema=False)
async def embed_tile(request: Request, token: FromPath[str], level: FromPath[int], name: FromPath[str]) -> Response:
    from plugins.pathology_viewer.tiles import tile_response

    try:
        shared = await check(request, token)
    except LinkRefused as exc:
        return _refused(request, exc, page_wanted=False)
    m = TILE.match(name)
    if m is None:
        return Response({"type": "about:blank", "title": "Not found", "status": 404, "detail": "Tiles are named COL_ROW.jpeg"},
                        status_code=404, media_type="application/problem+json")
    return await tile_response(shared.slide, level, int(m.group(1)), int(m.group(2)), m.group(3), request)


# --- managing links (the enrolling hospital) -----------------------------------------------------


def _status(link: dict) -> str:
    if link["revoked_at"] is not None:
        return "revoked"
    return "expired" if _utc(link["expires_at"]) <= datetime.now(timezone.utc) else "active"


async def _links(request: Request, slide_id: int) -> list[dict]:
    from core.identity.tables import User
    from plugins.pathology_viewer.tables import ShareLink

    settings = request.app.state.settings
    rows = await ShareLink.select().where(ShareLink.slide == slide_id).order_by(ShareLink.id, ascending=False)
    ids = sorted({r["created_by"] for r in rows if r["created_by"]})
    names = {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in(ids))} if ids else {}
    base = settings.base_url.rstrip("/")
    out = []
    for r in rows:
        status = _status(r)
        token = make_token(settings, r["id"], r["nonce"], r["expires_at"]) if status == "active" else ""
        out.append({**r, "status": status, "by": names.get(r["created_by"], ""),
                    "url": f"{base}/pathology/embed/{token}" if token else "",
                    "expires_text": _utc(r["expires_at"]).strftime("%Y-%m-%d %H:%M UTC")})
    return out


async def _page(request: Request, ctx, *, errors: list[str] | None = None, form: dict | None = None,
                status: int = 200, created: int | None = None) -> Template:
    base = request.app.state.settings.base_url.rstrip("/")
    return page(request, "pathology/share_links.html", {
        "slide": ctx.slide, "patient": ctx.patient, "links": await _links(request, ctx.id), "errors": errors or [],
        "form": form or {}, "max_days": MAX_DAYS, "note_max": NOTE_MAX, "created": created,
        "snippet_src": f"{base}/static/pathology_viewer/embed.js",
    }, fragment="pathology/_share_links.html", status_code=status)


@get("/pathology/slides/{slide_id:int}/share-links", opt={"permission": EDIT}, include_in_schema=False)
async def share_links(request: Request, slide_id: FromPath[int]) -> Template:
    from plugins.pathology_viewer.access import load_slide

    ctx = await load_slide(request, slide_id, edit=True)
    raw = request.query_params.get("created") or ""
    return await _page(request, ctx, created=int(raw) if raw.isdecimal() and len(raw) < 12 else None)


@post("/pathology/slides/{slide_id:int}/share-links", opt={"permission": EDIT}, include_in_schema=False)
async def create_link(request: Request, slide_id: FromPath[int]) -> Template | Redirect:
    from plugins.pathology_viewer.access import audit_read, load_slide
    from plugins.pathology_viewer.tables import ShareLink

    ctx = await load_slide(request, slide_id, edit=True)
    form = await request.form()
    note = str(form.get("note", "") or "").strip()
    raw_days = str(form.get("days", "") or "").strip()
    with_annotations = str(form.get("with_annotations", "") or "") in ("1", "on", "true")
    errors = []
    if len(note) > NOTE_MAX or any(ord(c) < 32 for c in note):
        errors.append(f"The note is one line of at most {NOTE_MAX} characters.")
    if not (raw_days.isdecimal() and 1 <= int(raw_days) <= MAX_DAYS):
        errors.append(f"The link lasts 1 to {MAX_DAYS} days.")
    if errors:
        return await _page(request, ctx, errors=errors, status=422,
                           form={"note": note[:NOTE_MAX], "days": raw_days[:3], "with_annotations": with_annotations})
    expires = (datetime.now(timezone.utc) + timedelta(days=int(raw_days))).replace(microsecond=0)
    link = ShareLink(slide=ctx.id, nonce=secrets.token_urlsafe(18), created_by=request.scope["user"].user_id, note=note,
                     with_annotations=with_annotations, expires_at=expires)
    await link.save()
    await audit_read(request, ctx, "pathology.share_link_created",
                     {"share_link": link.id, "days": int(raw_days), "with_annotations": with_annotations})
    if request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") != "true":
        return await _page(request, ctx, created=link.id)
    return Redirect(f"/pathology/slides/{ctx.id}/share-links?created={link.id}", status_code=303)


@post("/pathology/slides/{slide_id:int}/share-links/{link_id:int}/revoke", opt={"permission": EDIT}, include_in_schema=False)
async def revoke_link(request: Request, slide_id: FromPath[int], link_id: FromPath[int]) -> Template | Redirect:
    from plugins.pathology_viewer.access import audit_read, load_slide
    from plugins.pathology_viewer.tables import ShareLink

    ctx = await load_slide(request, slide_id, edit=True)
    row = await ShareLink.select().where((ShareLink.id == link_id) & (ShareLink.slide == ctx.id)).first()
    if row is None:
        raise HTTPException(status_code=404, detail="No such share link for this slide.")
    if row["revoked_at"] is None:
        await ShareLink.update({ShareLink.revoked_at: datetime.now(timezone.utc)}).where(ShareLink.id == row["id"])
        await audit_read(request, ctx, "pathology.share_link_revoked", {"share_link": row["id"]})
    forget(row["id"])
    if request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") != "true":
        return await _page(request, ctx)
    return Redirect(f"/pathology/slides/{ctx.id}/share-links", status_code=303)


ROUTES = [embed_page, embed_dzi, embed_tile, share_links, create_link, revoke_link]
