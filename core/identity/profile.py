"""The user's own profile: who they are, roles, second factor, and active sessions."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from core.events import Event
from core.identity.login import client_address
from core.identity.roles import ROLES
from core.identity.sessions import now
from core.web import page


async def _context(actor, message: str = "") -> dict:
    from core.identity.tables import Session
    from core.orgs.tables import Ern, Hcp

    hcp = await Hcp.objects().get(Hcp.id == actor.hcp_id) if actor.hcp_id else None
    erns = {e["id"]: e["acronym"] for e in await Ern.select(Ern.id, Ern.acronym)}
    roles = sorted((role, ROLES.get(role, role).split(":")[0], erns.get(e, "?") if e else "platform") for role, e in actor.roles)
    sessions = await Session.select(
        Session.id, Session.created_at, Session.last_seen_at, Session.address, Session.user_agent, Session.method
    ).where((Session.user == actor.user_id) & Session.revoked_at.is_null() & (Session.expires_at > now()) & (Session.stage == "full")).order_by(
        Session.last_seen_at, ascending=False
    )
    return {
        "hcp": hcp, "roles": roles, "ern_names": sorted({erns[e] for _, e in actor.roles if e in erns}),
        "sessions": sessions, "current_session": actor.session_id, "message": message,
    }


@get("/profile", opt={"authenticated": True}, include_in_schema=False)
async def profile(request: Request) -> Template:
    return page(request, "identity/profile.html", await _context(request.scope["user"]))


@post("/profile/sessions/revoke-others", opt={"authenticated": True}, include_in_schema=False)
async def revoke_others(request: Request) -> Template:
    from core.identity.tables import Session

    actor = request.scope["user"]
    ended = await Session.update({Session.revoked_at: now()}).where(
        (Session.user == actor.user_id) & (Session.id != int(actor.session_id)) & Session.revoked_at.is_null()
    ).returning(Session.id)
    await request.app.state.host.events.emit(
        Event("user.sessions_revoked", actor.user_id, "user", str(actor.user_id), {"count": len(ended)}, client_address(request))
    )
    return page(request, "identity/profile.html", await _context(actor, f"Logged out {len(ended)} other session(s)."))


@post("/profile/sessions/{session_id:int}/revoke", opt={"authenticated": True}, include_in_schema=False)
async def revoke_one(request: Request, session_id: FromPath[int]) -> Template:
    from core.identity.tables import Session

    actor = request.scope["user"]
    ended = await Session.update({Session.revoked_at: now()}).where(
        (Session.id == session_id) & (Session.user == actor.user_id) & Session.revoked_at.is_null()
    ).returning(Session.id)
    if not ended:
        raise NotFoundException("No such session.")
    await request.app.state.host.events.emit(
        Event("user.sessions_revoked", actor.user_id, "user", str(actor.user_id), {"count": 1}, client_address(request))
    )
    return page(request, "identity/profile.html", await _context(actor, "Session ended."))


ROUTES = [profile, revoke_others, revoke_one]
