"""The user's own profile: who they are, roles, second factor, and active sessions."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from core.events import Event
from core.identity.login import client_address
from core.identity.roles import ROLES
from core.web import page


async def _context(request: Request, actor, message: str = "") -> dict:
    from core.identity.sessions import live_sessions
    from core.orgs.tables import Ern, Hcp

    hcp = await Hcp.objects().get(Hcp.id == actor.hcp_id) if actor.hcp_id else None
    erns = {e["id"]: e["acronym"] for e in await Ern.select(Ern.id, Ern.acronym)}
    roles = sorted((role, ROLES.get(role, role).split(":")[0], erns.get(e, "?") if e else "platform") for role, e in actor.roles)
    sessions = await live_sessions(request.app.state.settings, actor.user_id)
    return {
        "hcp": hcp, "roles": roles, "ern_names": sorted({erns[e] for _, e in actor.roles if e in erns}),
        "sessions": sessions, "current_session": actor.session_id, "message": message,
    }


@get("/profile", opt={"authenticated": True}, include_in_schema=False)
async def profile(request: Request) -> Template:
    return page(request, "identity/profile.html", await _context(request, request.scope["user"]))


@post("/profile/sessions/revoke-others", opt={"authenticated": True}, include_in_schema=False)
async def revoke_others(request: Request) -> Template:
    from core.identity.sessions import revoke_user_sessions

    actor = request.scope["user"]
    ended = await revoke_user_sessions(request.app.state.settings, actor.user_id, keep=actor.session_id)
    await request.app.state.host.events.emit(
        Event("user.sessions_revoked", actor.user_id, "user", str(actor.user_id), {"count": ended}, client_address(request))
    )
    return page(request, "identity/profile.html", await _context(request, actor, f"Logged out {ended} other session(s)."))


@post("/profile/sessions/{session_id:str}/revoke", opt={"authenticated": True}, include_in_schema=False)
async def revoke_one(request: Request, session_id: FromPath[str]) -> Template:
    from core.identity.sessions import revoke_user_sessions

    actor = request.scope["user"]
    ended = await revoke_user_sessions(request.app.state.settings, actor.user_id, only=[session_id[:64]])
    if not ended:
        raise NotFoundException("No such session.")
    await request.app.state.host.events.emit(
        Event("user.sessions_revoked", actor.user_id, "user", str(actor.user_id), {"count": 1}, client_address(request))
    )
    return page(request, "identity/profile.html", await _context(request, actor, "Session ended."))


ROUTES = [profile, revoke_others, revoke_one]
