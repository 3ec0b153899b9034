"""Research projects: filed by a researcher, decided per ERN by its coordinators, used until they end.

A project gives access to the research data of the ERNs that approved it, from approval until its
end date, to the researcher who filed it (and to the platform admin, for oversight). Research
identifiers are keyed per project (``research_id``): the same patient has unrelated identifiers in
two projects, so their exports cannot be joined.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timezone

from core.permissions import Actor

DEFAULT_K = 5
MIN_K, MAX_K = 2, 50
MAX_DAYS = 5 * 366
LIMITS = {"title": 200, "aims": 4000, "ethics_ref": 100, "data_wanted": 4000, "reason": 1000}


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    aims: str
    ethics_ref: str
    data_wanted: str
    starts: date
    ends: date
    researcher: int
    #: acronym -> (ern id, status, reason)
    erns: dict[str, tuple[int, str, str]]

    @property
    def approved_erns(self) -> tuple[str, ...]:
        return tuple(sorted(a for a, (_, status, _) in self.erns.items() if status == "approved"))

    @property
    def expired(self) -> bool:
        return date.today() > self.ends

    @property
    def usable(self) -> bool:
        return bool(self.approved_erns) and not self.expired and date.today() >= self.starts

    @property
    def status(self) -> str:
        if self.expired:
            return "ended"
        statuses = {s for _, s, _ in self.erns.values()}
        if "approved" in statuses:
            return "approved"
        if "pending" in statuses:
            return "pending"
        return "rejected"


def validate(form) -> tuple[dict, dict]:
    """Values and errors of a project form (nothing is stored while there is an error)."""
    values: dict = {}
    errors: dict = {}
    for key in ("title", "aims", "ethics_ref", "data_wanted"):
        value = str(form.get(key, "") or "").strip()
        values[key] = value
        if not value:
            errors[key] = "Required."
        elif len(value) > LIMITS[key]:
            errors[key] = f"At most {LIMITS[key]} characters."
    try:
        ends = date.fromisoformat(str(form.get("ends", "")))
        values["ends"] = ends
        if ends <= date.today():
            errors["ends"] = "The end date must be in the future."
        elif (ends - date.today()).days > MAX_DAYS:
            errors["ends"] = "A project may run for at most five years; file a new one to go on."
    except ValueError:
        values["ends"] = None
        errors["ends"] = "Give the date the project ends (YYYY-MM-DD)."
    erns = (form.getall("erns") if hasattr(form, "getall") else form.get("erns", [])) if "erns" in form else []
    if isinstance(erns, str):
        erns = [erns]
    try:
        values["erns"] = sorted({int(e) for e in erns})
    except (TypeError, ValueError):
        values["erns"] = []
    if not values["erns"]:
        errors["erns"] = "Choose at least one ERN whose data you need."
    return values, errors


async def file_project(settings, actor: Actor, values: dict) -> int:
    from core.crypto import keyring
    from core.orgs.tables import Ern
    from plugins.research.tables import ResearchProject, ResearchProjectErn

    known = {r["id"] for r in await Ern.select(Ern.id).where(Ern.id.is_in(values["erns"]))}
    if known != set(values["erns"]):
        raise ValueError("unknown ERN")
    key = keyring(settings).encrypt(base64.b64encode(secrets.token_bytes(32)).decode(), "research-project")
    async with ResearchProject._meta.db.transaction():
        row = (await ResearchProject.insert(ResearchProject(
            title=values["title"], aims=values["aims"], ethics_ref=values["ethics_ref"], data_wanted=values["data_wanted"],
            starts=date.today(), ends=values["ends"], researcher=actor.user_id, id_key=key,
        )).returning(ResearchProject.id))[0]
        await ResearchProjectErn.insert(*[ResearchProjectErn(project=row["id"], ern=e) for e in values["erns"]])
        await log(row["id"], actor, "project.filed", {"erns": values["erns"]})
    return row["id"]


async def _projects(where=None) -> list[Project]:
    """Projects with their ERN decisions: two queries, however many projects."""
    from plugins.research.tables import ResearchProject, ResearchProjectErn

    query = ResearchProject.select().order_by(ResearchProject.id, ascending=False)
    rows = await (query.where(where) if where is not None else query)
    if not rows:
        return []
    erns: dict[int, dict] = {}
    for e in await ResearchProjectErn.select(
        ResearchProjectErn.project, ResearchProjectErn.ern, ResearchProjectErn.ern.acronym.as_alias("acronym"),
        ResearchProjectErn.status, ResearchProjectErn.reason,
    ).where(ResearchProjectErn.project.is_in([r["id"] for r in rows])):
        erns.setdefault(e["project"], {})[e["acronym"]] = (e["ern"], e["status"], e["reason"])
    return [Project(r["id"], r["title"], r["aims"], r["ethics_ref"], r["data_wanted"], r["starts"], r["ends"],
                    r["researcher"], erns.get(r["id"], {})) for r in rows]


async def load(project_id: int) -> Project | None:
    from plugins.research.tables import ResearchProject

    found = await _projects(ResearchProject.id == project_id)
    return found[0] if found else None


async def for_actor(actor: Actor) -> list[Project]:
    """The researcher's own projects; every project for the admin (oversight)."""
    from plugins.research.tables import ResearchProject

    return await _projects(None if "admin" in actor.role_names else ResearchProject.researcher == actor.user_id)


def may_open(actor: Actor, project: Project) -> bool:
    return project.researcher == actor.user_id or "admin" in actor.role_names


def research_id(key: bytes, patient_id: int) -> str:
    """A patient's identifier in one project: HMAC under the project's own key, 16 base32 characters."""
    digest = hmac.new(key, f"patient:{patient_id}".encode(), hashlib.sha256).digest()
    return "R" + base64.b32encode(digest[:10]).decode().rstrip("=")


async def id_function(settings, project_id: int):
    """``patient id -> research id`` for one project (its key decrypted once)."""
    from core.crypto import keyring
    from plugins.research.tables import ResearchProject

    row = await ResearchProject.select(ResearchProject.id_key).where(ResearchProject.id == project_id).first()
    key = base64.b64decode(keyring(settings).decrypt(row["id_key"], "research-project"))
    return lambda patient_id: research_id(key, patient_id)


async def k_for(erns: tuple[str, ...]) -> int:
    """The strictest k of the ERNs whose data is used (each ERN sets its own; default 5)."""
    from plugins.research.tables import ResearchSetting

    if not erns:
        return DEFAULT_K
    rows = await ResearchSetting.select(ResearchSetting.k).where(ResearchSetting.ern.acronym.is_in(list(erns)))
    found = [r["k"] for r in rows]
    missing = len(erns) - len(found)
    return max(found + ([DEFAULT_K] if missing > 0 else []))


async def decide(actor: Actor, project_ern_id: int, approve: bool, reason: str) -> dict | None:
    """A coordinator's decision for their ERN; None when it is not theirs to decide (or already decided)."""
    from plugins.research.tables import ResearchProjectErn

    row = await ResearchProjectErn.select().where(ResearchProjectErn.id == project_ern_id).first()
    if row is None or not may_review(actor, row["ern"]) or row["status"] != "pending":
        return None
    status = "approved" if approve else "rejected"
    async with ResearchProjectErn._meta.db.transaction():
        await ResearchProjectErn.update({
            ResearchProjectErn.status: status, ResearchProjectErn.reason: reason,
            ResearchProjectErn.decided_by: actor.user_id, ResearchProjectErn.decided_at: datetime.now(timezone.utc),
        }).where((ResearchProjectErn.id == project_ern_id) & (ResearchProjectErn.status == "pending"))
        await log(row["project"], actor, f"project.{status}", {"ern": row["ern"]})
    return {**row, "status": status}


def review_erns(actor: Actor) -> set | None:
    """ERN ids whose projects the actor decides; None: all (platform-wide grant)."""
    from plugins.research import REVIEW

    held = actor.grants.get(REVIEW, frozenset())
    return None if None in held else set(held)


def may_review(actor: Actor, ern_id: int) -> bool:
    erns = review_erns(actor)
    return erns is None or ern_id in erns


async def tell_coordinators(settings, project_id: int, title: str, ern_ids: list[int]) -> int:
    """Notify the coordinators of these ERNs that a project waits for their decision."""
    from core.identity.tables import RoleAssignment
    from core.notify.service import notify
    from plugins.research import PROJECT_FILED

    rows = await RoleAssignment.select(RoleAssignment.user).where(
        (RoleAssignment.role == "coordinator") & RoleAssignment.ern.is_in(ern_ids or [-1]))
    users = sorted({r["user"] for r in rows})
    return await notify(settings, users, PROJECT_FILED, f"Research project to decide: {title[:120]}", "/research/review",
                        "A researcher asks to use your ERN's anonymised data. Their aims, ethics approval and the data "
                        "they want are on the review page.") if users else 0


async def tell_researcher(settings, project_id: int, acronym: str, status: str, reason: str) -> int:
    from core.notify.service import notify
    from plugins.research import PROJECT_DECIDED
    from plugins.research.tables import ResearchProject

    row = await ResearchProject.select(ResearchProject.researcher, ResearchProject.title).where(ResearchProject.id == project_id).first()
    body = f"{acronym} {status} your project." + (f" Reason: {reason}" if reason else "")
    return await notify(settings, [row["researcher"]], PROJECT_DECIDED, f"{row['title'][:120]}: {status} by {acronym}",
                        f"/research/projects/{project_id}", body)


async def log(project_id: int | None, actor: Actor | None, action: str, detail: dict | None = None) -> None:
    from plugins.research.tables import ResearchLog

    await ResearchLog.insert(ResearchLog(
        project=project_id, actor=actor.user_id if actor else None, action=action[:30],
        detail=json.dumps(detail or {}, sort_keys=True, default=str),
    ))
