"""The panel discussion: messages, one level of replies, @mentions, and live updates.

Messages are clinical data: posting one is audited, and everything shown is the members'
own text (escaped). Posting does not check the panel revision: people discuss concurrently.

Live updates: every post is published on ``panel:<id>``; each open panel page holds
``GET /panels/<id>/live`` (server-sent events), and the stream renders the message for *its*
viewer after checking again that the viewer may still see the panel. The author's own page
gets the new message from the response to the post, so the stream skips the author's own
messages (a message never appears twice).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone

from litestar import Request, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from core.panels import notices
from core.panels.access import DISCUSSING, PanelCtx, audit, load_panel, member_ids, panel_roles
from core.web import is_fragment_request, page

BODY_MAX = 10000
#: Words too common in names to mention someone on their own ("@Dr").
_TITLES = frozenset({"dr", "prof", "professor", "mr", "mrs", "ms", "md", "phd", "von", "van", "de", "der", "den", "la", "le", "di", "da", "del"})
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")


def channel(panel_id: int) -> str:
    return f"panel:{panel_id}"


# --- mentions -----------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case- and accent-insensitive form ("Müller" -> "muller")."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _folded_with_map(text: str) -> tuple[str, list[int]]:
    """``fold(text)`` and, for each of its characters, the index of the original character."""
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        f = fold(ch)
        out.append(f)
        where.extend([i] * len(f))
    return "".join(out), where


def _phrases(name: str) -> list[str]:
    """What may follow "@" to mean this person: the whole name, or runs of its words."""
    words = [fold(w) for w in _WORD.findall(name)]
    out = {" ".join(words)} if words else set()
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            run = words[i:j]
            if len(run) == 1 and (len(run[0]) < 2 or run[0] in _TITLES):
                continue
            out.add(" ".join(run))
    return [p for p in out if p]


def mention_spans(body: str, people: dict[int, str]) -> list[tuple[int, int, set[int]]]:
    """Mentions in ``body`` among ``people`` (id -> name): (start, end, user ids) in the original
    text, the "@" included. After "@" comes a person's full name or a part of it that no one
    else among ``people`` has; the longest such phrase wins, and it must end at a word boundary."""
    table: dict[str, set[int]] = {}
    full: dict[str, set[int]] = {}
    for uid, name in people.items():
        whole = " ".join(fold(w) for w in _WORD.findall(name))
        if whole:
            full.setdefault(whole, set()).add(uid)
        for phrase in _phrases(name):
            table.setdefault(phrase, set()).add(uid)
    usable = {p: ids for p, ids in table.items() if len(ids) == 1}
    usable.update(full)  # identical full names: all who bear it
    if not usable:
        return []
    # One pattern, longest phrases first; whitespace (after an optional full stop: "Dr. Lena")
    # in the text matches the space of a phrase, and a phrase must not stop inside a word.
    ordered = sorted(usable, key=len, reverse=True)
    pattern = re.compile("@(" + "|".join(r"\.?\s+".join(re.escape(w) for w in p.split(" ")) for p in ordered) + r")(?![^\W_]|-[^\W_])")
    folded, where = _folded_with_map(body)
    spans = []
    pos = 0
    while True:
        at = folded.find("@", pos)
        if at < 0:
            break
        pos = at + 1
        if at > 0 and folded[at - 1].isalnum():  # an e-mail address, not a mention
            continue
        m = pattern.match(folded, at)
        if m is None:
            continue
        ids = usable[" ".join(m.group(1).replace(".", " ").split())]
        spans.append((where[at], where[m.end() - 1] + 1, set(ids)))
        pos = m.end()
    return spans


# --- links to this site ----------------------------------------------------------------------------

# A path on this site ("/pathology/slides/3/view?x=…"), or an absolute URL whose origin is checked
# against the site's own. It starts after a space, a line start or an opening bracket (so "and/or"
# is no link), its first segment is lowercase letters ("//host" and "/\\host", other sites, never
# match) and something follows it ("/panels/3", "/x?y"; not "5 mg /day").
_LINK = re.compile(r"(?<![^\s(\[<])((?:https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?)?/[a-z][a-z0-9_\-]*[/?#][A-Za-z0-9\-._~%!$&'()*+,;=:@/?#]+)")
_TRAILING = ".,;:!?'\")]"


def link_spans(body: str, origin: str = "") -> list[tuple[int, int, str]]:
    """Links to this site in ``body``: (start, end, href). Relative paths always (they can only
    lead here); absolute URLs only when their scheme, host and port are ``origin`` (the site's
    base URL), and then the link is the path alone. Trailing punctuation stays text."""
    origin = origin.rstrip("/").lower()
    out = []
    for m in _LINK.finditer(body):
        text = m.group(1)
        while text and text[-1] in _TRAILING and not (text[-1] == ")" and text.count("(") >= text.count(")")):
            text = text[:-1]
        path = text
        if not text.startswith("/"):
            cut = text.find("/", text.index("//") + 2)
            if not origin or text[:cut].lower() != origin:
                continue
            path = text[cut:]
        if len(path) > 1:
            out.append((m.start(1), m.start(1) + len(text), path))
    return out


def segments(body: str, people: dict[int, str], origin: str = "") -> list[dict]:
    """The body cut into plain text, mentions and links to this site, for the template (which
    escapes all; a link segment carries its ``href``, always a path starting with "/")."""
    out, last = [], 0

    def plain(text: str) -> None:
        at = 0
        for start, end, href in link_spans(text, origin):
            if start > at:
                out.append({"text": text[at:start], "mention": False})
            out.append({"text": text[start:end], "mention": False, "href": href})
            at = end
        if at < len(text):
            out.append({"text": text[at:], "mention": False})

    for start, end, ids in mention_spans(body, people):
        if start > last:
            plain(body[last:start])
        out.append({"text": body[start:end], "mention": True})
        last = end
    if last < len(body):
        plain(body[last:])
    return out


# --- reading ------------------------------------------------------------------------------------


async def mentionable(panel_id: int) -> dict[int, str]:
    """Who can be @mentioned: the lead, the creator and the accepted members (id -> name)."""
    from core.identity.tables import User

    ids = await member_ids(panel_id)
    rows = await User.select(User.id, User.name).where(User.id.is_in(sorted(ids) or [0]))
    return {r["id"]: r["name"] for r in rows}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def origin_of(request: Request) -> str:
    """The site's own origin (``CPMS_BASE_URL``): absolute links to it in messages become links."""
    return request.app.state.settings.base_url


async def _shape(rows: list[dict], origin: str = "") -> list[dict]:
    """Rows of ``Message`` (with author name and hospital) ready for ``_message.html``."""
    from core.identity.tables import User
    from core.panels.tables import Mention

    ids = [r["id"] for r in rows]
    mentioned: dict[int, set[int]] = {}
    if ids:
        for m in await Mention.select(Mention.message, Mention.user).where(Mention.message.is_in(ids)):
            mentioned.setdefault(m["message"], set()).add(m["user"])
    users = {u for s in mentioned.values() for u in s}
    names = {r["id"]: r["name"] for r in await User.select(User.id, User.name).where(User.id.is_in(sorted(users) or [0]))}
    out = []
    for r in rows:
        people = {u: names[u] for u in mentioned.get(r["id"], ()) if u in names}
        at = _utc(r["created_at"])
        out.append({
            "id": r["id"], "parent": r["parent"], "author": r["author"], "author_name": r["author_name"], "hcp_name": r["hcp_name"] or "",
            "body": r["body"], "segments": segments(r["body"], people, origin), "mentioned": sorted(people),
            "at": at, "at_text": at.strftime("%Y-%m-%d %H:%M UTC"), "replies": [],
        })
    return out


def _select():
    from core.panels.tables import Message

    return Message.select(
        Message.id, Message.panel, Message.parent, Message.author, Message.body, Message.created_at,
        Message.author.name.as_alias("author_name"), Message.author.hcp.name.as_alias("hcp_name"),
    )


async def thread(panel_id: int, origin: str = "") -> list[dict]:
    """The top-level messages, oldest first, each with its replies (oldest first)."""
    from core.panels.tables import Message

    shaped = await _shape(await _select().where(Message.panel == panel_id).order_by(Message.id), origin)
    top = {m["id"]: m for m in shaped if m["parent"] is None}
    for m in shaped:
        if m["parent"] is not None and m["parent"] in top:
            top[m["parent"]]["replies"].append(m)
    return list(top.values())


async def one_message(panel_id: int, message_id: int, origin: str = "") -> dict | None:
    from core.panels.tables import Message

    rows = await _select().where((Message.id == message_id) & (Message.panel == panel_id))
    if not rows:
        return None
    m = (await _shape(rows, origin))[0]
    # The first message of the thread also removes the "no messages yet" note.
    m["first"] = not await Message.exists().where((Message.panel == panel_id) & (Message.id < message_id))
    return m


async def section(request: Request, ctx: PanelCtx) -> dict:
    people = await mentionable(ctx.id)
    return {
        "discussion_messages": await thread(ctx.id, origin_of(request)),
        "discussion_mentionable": sorted(({"id": k, "name": v} for k, v in people.items()), key=lambda p: p["name"].lower()),
        "discussion_may_post": may_post(ctx),
        "discussion_body_max": BODY_MAX,
    }


def may_post(ctx: PanelCtx) -> bool:
    return ctx.participant and ctx.panel["status"] in DISCUSSING


# --- posting ------------------------------------------------------------------------------------


@post("/panels/{panel_id:int}/messages", opt={"permission": "panels.view"}, include_in_schema=False)
async def post_message(request: Request, panel_id: FromPath[int]) -> Template | Redirect:
    from core.panels.tables import Mention, Message

    ctx = await load_panel(request, panel_id)
    if not ctx.participant:
        raise HTTPException(status_code=403, detail="Only the panel's members take part in its discussion.")
    if ctx.panel["status"] not in DISCUSSING:
        raise HTTPException(status_code=409, detail="The discussion is open only while the panel is open or its outcome is in review.")
    form = await request.form()
    body = str(form.get("body", "") or "").replace("\r\n", "\n").strip()
    raw_parent = str(form.get("parent", "") or "").strip()
    parent = None
    form_parent = int(raw_parent) if raw_parent.isdecimal() and len(raw_parent) < 13 else None  # which form to give back
    error = ""
    if raw_parent:
        row = None
        if raw_parent.isdecimal() and len(raw_parent) < 13:
            row = await Message.select(Message.id).where(
                (Message.id == int(raw_parent)) & (Message.panel == panel_id) & Message.parent.is_null()
            ).first()
        if row is None:
            error = "You can only reply to a message of this panel's discussion (not to a reply)."
        else:
            parent = row["id"]
    if not error and not 1 <= len(body) <= BODY_MAX:
        error = f"Write a message (at most {BODY_MAX:,} characters)."
    if error:
        if is_fragment_request(request):
            return _form_fragment(request, panel_id, form_parent, error=error, body=body, status_code=422)
        raise HTTPException(status_code=422, detail=error)

    people = await mentionable(panel_id)
    mentioned = set().union(*(ids for _, _, ids in mention_spans(body, people))) if people else set()
    mentioned.discard(ctx.actor.user_id)
    async with Message._meta.db.transaction():
        message = Message(panel=panel_id, author=ctx.actor.user_id, parent=parent, body=body)
        await message.save()
        if mentioned:
            await Mention.insert(*[Mention(message=message.id, user=u) for u in sorted(mentioned)])
    await audit(request, ctx, "panel.message_posted", {"message": message.id, "parent": parent, "mentions": len(mentioned)})
    await notices.emit(request, "panel.message_posted", ctx.panel, {"message": message.id, "parent": parent})
    author = ctx.actor.name
    anchor = f"#msg-{message.id}"
    if mentioned:
        await notices.tell(request, ctx.panel, mentioned, "panel.mention", f"{author} mentioned you in the discussion", anchor=anchor)
    others = set(people) - mentioned
    if others:
        await notices.tell(request, ctx.panel, others, "panel.message", f"New message by {author} in the discussion", anchor=anchor)
    await notices.live(request, panel_id, {"type": "message", "id": message.id})
    if not is_fragment_request(request):
        return Redirect(f"/panels/{panel_id}#msg-{message.id}", status_code=303)
    m = await one_message(panel_id, message.id, origin_of(request))
    return _form_fragment(request, panel_id, parent, new=m)


def _form_fragment(request: Request, panel_id: int, parent: int | None, *, new: dict | None = None, error: str = "", body: str = "", status_code: int = 200) -> Template:
    """The answer to an htmx post: a fresh (or, on error, refilled) form, and the new message
    placed into the thread out of band."""
    return page(request, "panels/_message.html", {
        "form_only": True, "panel_id": panel_id, "parent": parent, "error": error, "body": body[:BODY_MAX],
        "m": new, "oob": new is not None, "may_reply": True, "body_max": BODY_MAX,
    }, status_code=status_code)


# --- live updates -------------------------------------------------------------------------------


async def _viewer_roles(actor, panel_id: int) -> tuple[dict | None, set[str]]:
    """The panel and ``actor``'s roles in it now (none if it or its patient is gone)."""
    from core.panels.tables import Panel
    from core.patients.tables import Patient

    panel = await Panel.select().where(Panel.id == panel_id).first()
    if panel is None:
        return None, set()
    patient = await Patient.select(Patient.hcp, Patient.erased_at).where(Patient.id == panel["patient"]).first()
    if patient is None or patient["erased_at"] is not None:
        return None, set()
    roles, _ = await panel_roles(actor, panel, patient["hcp"])
    if roles and "home" not in roles:
        from core.patients.consent_rules import patient_shareable

        if not await patient_shareable(panel["patient"]):  # suspended by consent, as in load_panel
            return panel, set()
    return panel, roles


async def viewer_may_see(actor, panel_id: int) -> bool:
    """Whether ``actor`` may (still) see the panel fully: checked again for every live event,
    so a member removed meanwhile, a panel whose patient was erased or whose consent was
    withdrawn, shows nothing more."""
    _, roles = await _viewer_roles(actor, panel_id)
    return bool(roles - {"invited"})


async def render_message(request: Request, panel_id: int, message_id: int) -> str | None:
    """One message as HTML for ``request``'s viewer, or None: when they may no longer see the
    panel, or wrote the message themselves (their page has it from the post's response)."""
    import html

    from litestar.utils.scope.state import ScopeState

    actor = request.scope.get("user")
    if actor is None:
        return None
    panel, roles = await _viewer_roles(actor, panel_id)
    if not roles - {"invited"}:
        return None
    m = await one_message(panel_id, message_id, origin_of(request))
    if m is None or m["author"] == actor.user_id:
        return None
    token = ScopeState.from_scope(request.scope).csrf_token or ""
    context = {
        "m": m, "panel_id": panel_id, "oob": True, "form_only": False, "body_max": BODY_MAX,
        "csrf_input": f'<input type="hidden" name="_csrf_token" value="{html.escape(token)}" />',
        "may_reply": bool(roles & {"lead", "creator", "member"}) and panel["status"] in DISCUSSING,
    }
    return request.app.template_engine.get_template("panels/_message.html").render(**context)


@get("/panels/{panel_id:int}/live", opt={"permission": "panels.view"}, include_in_schema=False)
async def live_stream(request: Request, panel_id: FromPath[int]) -> Response:
    """Server-sent events for an open panel page: "message" events carry new messages."""
    from core.live import sse_response

    await load_panel(request, panel_id)
    viewer = request.scope["user"]

    async def render(payload: dict):
        if not isinstance(payload, dict) or payload.get("type") != "message":
            return None
        try:
            message_id = int(payload.get("id"))
        except (TypeError, ValueError):
            return None
        html = await render_message(request, panel_id, message_id)
        if html is None:
            return None
        return "message", html

    return sse_response(request, channel(panel_id), render)


ROUTES = [post_message, live_stream]
