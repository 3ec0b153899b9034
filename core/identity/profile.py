"""The user's own profile: who they are, roles, second factor, and active sessions."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Template

from core.events import Event
from core.identity.login import client_address
from core.identity.passkeys import credentials_of
from core.identity.roles import ROLES
from core.web import page


async def _context(request: Request, actor, message: str = "") -> dict:
    from core.identity.sessions import live_sessions
    from core.orgs.tables import Ern, Hcp

    hcp = await Hcp.objects().get(Hcp.id == actor.hcp_id) if actor.hcp_id else None
    erns = {e["id"]: e["acronym"] for e in await Ern.select(Ern.id, Ern.acronym)}
    roles = sorted((role, ROLES.get(role, role).split(":")[0], erns.get(e, "?") if e else "platform") for role, e in actor.roles)
    sessions = await live_sessions(request.app.state.settings, actor.user_id)
    from core.identity.tables import AssistantFor

    assistants = await AssistantFor.select(
        AssistantFor.id, AssistantFor.assistant.name.as_alias("name"), AssistantFor.assistant.email.as_alias("email")
    ).where(AssistantFor.hp == actor.user_id).order_by(AssistantFor.id)
    acting_for = await AssistantFor.select(
        AssistantFor.hp.name.as_alias("name"), AssistantFor.hp.email.as_alias("email")
    ).where(AssistantFor.assistant == actor.user_id)
    return {
        "assistants": assistants, "acting_for": acting_for, "is_hp": "hp" in actor.role_names,
        "hcp": hcp, "roles": roles, "ern_names": sorted({erns[e] for _, e in actor.roles if e in erns}),
        "sessions": sessions, "current_session": actor.session_id, "message": message,
        "passkeys": await credentials_of(actor.user_id),
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


async def acting_for(user_id: int) -> list[int]:
    """The HPs an assistant acts for (the assistant sees what they see)."""
    from core.identity.tables import AssistantFor

    return [r["hp"] for r in await AssistantFor.select(AssistantFor.hp).where(AssistantFor.assistant == user_id)]


@post("/profile/assistants", opt={"authenticated": True}, include_in_schema=False)
async def name_assistant(request: Request) -> Template:
    """An HP names an assistant of the same hospital who may act for them."""
    from core.identity.tables import AssistantFor, RoleAssignment, User

    actor = request.scope["user"]
    if "hp" not in actor.role_names:
        raise PermissionDeniedException("Only healthcare professionals name assistants.")
    email = str((await request.form()).get("email", "")).strip().lower()[:254]
    other = await User.select(User.id, User.hcp, User.is_active).where(User.email == email).first()
    error = ""
    if other is None or not other["is_active"] or other["hcp"] != actor.hcp_id or actor.hcp_id is None:
        error = "No active account with that address at your hospital."
    elif not await RoleAssignment.exists().where((RoleAssignment.user == other["id"]) & (RoleAssignment.role == "assistant")):
        error = "That person does not hold the assistant role."
    elif await AssistantFor.exists().where((AssistantFor.hp == actor.user_id) & (AssistantFor.assistant == other["id"])):
        error = "That person already acts for you."
    if error:
        ctx = await _context(request, actor)
        ctx["assistant_error"] = error
        return page(request, "identity/profile.html", ctx, status_code=422)
    await AssistantFor.insert(AssistantFor(hp=actor.user_id, assistant=other["id"]))
    await request.app.state.host.events.emit(
        Event("assistant.named", actor.user_id, "user", str(other["id"]), address=client_address(request))
    )
    return page(request, "identity/profile.html", await _context(request, actor, "Assistant added."))


@post("/profile/assistants/{link_id:int}/remove", opt={"authenticated": True}, include_in_schema=False)
async def remove_assistant(request: Request, link_id: FromPath[int]) -> Template:
    from core.identity.tables import AssistantFor

    actor = request.scope["user"]
    gone = await AssistantFor.delete().where((AssistantFor.id == link_id) & (AssistantFor.hp == actor.user_id)).returning(AssistantFor.assistant)
    if not gone:
        raise NotFoundException("No such assistant.")
    await request.app.state.host.events.emit(
        Event("assistant.removed", actor.user_id, "user", str(gone[0]["assistant"]), address=client_address(request))
    )
    return page(request, "identity/profile.html", await _context(request, actor, "Assistant removed."))


ROUTES = [profile, revoke_others, revoke_one, name_assistant, remove_assistant]
