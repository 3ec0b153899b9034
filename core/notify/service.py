"""Sending notifications, and reading and changing one user's inbox and preferences.

Everything here takes a user id and touches only that user's rows: the routes pass the
logged-in actor's id, so nobody can read or change another user's inbox.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timezone

from core.mail.sender import Attachment, send_mail
from core.notify.kinds import KINDS, require_kind
from core.settings import Settings

log = logging.getLogger("cpms.notify")

TITLE_MAX = 300  # the column's length; the mail subject is cut there too
# Rows per INSERT: stays far below SQLite's limit on bound parameters.
INSERT_BATCH = 200


def _now() -> datetime:
    return datetime.now(timezone.utc)


def is_local_path(link: str) -> bool:
    """A path on this site. "//host" and "/\\host" are read by browsers as another site, so a
    stored link can never become an open redirect."""
    return (
        isinstance(link, str) and link.startswith("/") and not link.startswith("//")
        and "\\" not in link and not any(ch.isspace() or ord(ch) < 32 for ch in link)
    )


async def notify(
    settings: Settings,
    user_ids: Iterable[int],
    kind: str,
    title: str,
    link: str,
    body: str = "",
    *,
    urgent: bool = False,
    attachment: Attachment | None = None,
) -> int:
    """Tell users about something: an inbox entry and/or an e-mail, as each user chose for
    ``kind`` (both by default). Returns how many users were notified by at least one channel.

    The caller guarantees that ``title`` and ``body`` carry no patient identity: pseudonyms
    and nicknames only. They go out by e-mail, which leaves the system unencrypted.

    ``link`` is a local path ("/panels/12"); the mail carries it as an absolute URL under
    ``settings.base_url``. ``urgent`` overrides the user's choices: the notification is put in
    the inbox and e-mailed regardless. Inactive and unknown users are skipped, duplicates
    counted once. A mail that cannot be delivered stays in the outbox (``send_mail``); it never
    fails the caller. Raises ``ValueError`` for an unregistered kind, a link that is not a
    local path, or an empty title.
    """
    from core.identity.tables import User
    from core.notify.tables import Notification, NotificationPreference

    require_kind(kind)
    if not is_local_path(link) or len(link) > 300:
        raise ValueError(f"notification link must be a local path of at most 300 characters, not {link!r}")
    title = " ".join(str(title).split())
    if not title:
        raise ValueError("a notification needs a title")
    title = title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"
    ids = list(dict.fromkeys(int(u) for u in user_ids))  # de-duplicated, order kept
    if not ids:
        return 0

    users = await User.select(User.id, User.email, User.name).where(User.id.is_in(ids) & (User.is_active == True))  # noqa: E712
    by_id = {u["id"]: u for u in users}
    prefs = {
        p["user"]: (p["in_app"], p["email"])
        for p in await NotificationPreference.select(
            NotificationPreference.user, NotificationPreference.in_app, NotificationPreference.email
        ).where(NotificationPreference.user.is_in(ids) & (NotificationPreference.kind == kind))
    }

    created = _now()
    rows, mails, notified = [], [], 0
    for uid in ids:
        user = by_id.get(uid)
        if user is None:
            continue
        in_app, email = prefs.get(uid, (True, True))
        if urgent:
            in_app = email = True
        if in_app:
            rows.append(Notification(user=uid, kind=kind, title=title, link=link, body=body, urgent=urgent, created_at=created))
        if email:
            mails.append(user)
        if in_app or email:
            notified += 1

    # The inbox first: it is the durable record, whatever happens to the mails.
    for start in range(0, len(rows), INSERT_BATCH):
        await Notification.insert(*rows[start:start + INSERT_BATCH])
    for user in mails:
        text = mail_body(settings, user["name"], title, body, link, urgent=urgent)
        try:
            await send_mail(settings, user["email"], f"[CPMS] {title}", text, attachment)
        except Exception:  # send_mail already queues delivery failures; this is the outbox itself failing
            log.exception("notification mail (%s) for user %s could not be queued", kind, user["id"])
    return notified


def mail_body(settings: Settings, name: str, title: str, body: str, link: str, *, urgent: bool = False) -> str:
    from core.identity.accounts import SIGNATURE

    base = settings.base_url.rstrip("/")
    why = (
        "Urgent notifications are always sent by e-mail."
        if urgent else
        f"Choose which notifications you receive by e-mail at {base}/notifications/preferences"
    )
    parts = [f"Hello {name},", title]
    if body.strip():
        parts.append(body.strip())
    parts += [f"Open it in CPMS: {base}{link}", why, SIGNATURE]
    return "\n\n".join(parts) + "\n"


# --- one user's inbox -------------------------------------------------------------------------


async def unread_count(user_id: int) -> int:
    from core.notify.tables import Notification

    return await Notification.count().where((Notification.user == user_id) & Notification.read_at.is_null())


async def mark_read(user_id: int, ids: Iterable[int] | None = None) -> int:
    """Mark the user's unread notifications read: all of them, or only ``ids`` (ids of other
    users' notifications are ignored). Returns how many changed."""
    from core.notify.tables import Notification

    where = (Notification.user == user_id) & Notification.read_at.is_null()
    if ids is not None:
        wanted = [int(i) for i in ids]
        if not wanted:  # an empty selection marks nothing, never everything
            return 0
        where &= Notification.id.is_in(wanted)
    changed = await Notification.update({Notification.read_at: _now()}).where(where).returning(Notification.id)
    return len(changed)


async def own_notification(user_id: int, notification_id: int) -> dict | None:
    """The notification if it is the user's; someone else's looks exactly like a missing one."""
    from core.notify.tables import Notification

    return await Notification.select().where(
        (Notification.id == notification_id) & (Notification.user == user_id)
    ).first()


async def inbox_page(user_id: int, before: int | None = None, limit: int = 50) -> tuple[list[dict], int | None]:
    """Up to ``limit`` notifications, newest first, older than id ``before``; and the ``before``
    of the next page (None on the last). Keyset paging: a page stays cheap however deep."""
    from core.notify.tables import Notification

    where = Notification.user == user_id
    if before is not None:
        where &= Notification.id < before
    rows = await Notification.select().where(where).order_by(Notification.id, ascending=False).limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)


# --- preferences ------------------------------------------------------------------------------


async def preferences(user_id: int) -> dict[str, tuple[bool, bool]]:
    """(in-app, e-mail) for every registered kind; kinds without a saved row are on."""
    from core.notify.tables import NotificationPreference

    saved = {
        p["kind"]: (p["in_app"], p["email"])
        for p in await NotificationPreference.select(
            NotificationPreference.kind, NotificationPreference.in_app, NotificationPreference.email
        ).where(NotificationPreference.user == user_id)
    }
    return {kind: saved.get(kind, (True, True)) for kind in KINDS}


async def save_preferences(user_id: int, choices: dict[str, tuple[bool, bool]]) -> None:
    """Store the user's (in-app, e-mail) choice for each kind in ``choices``; other kinds keep
    theirs, and names that are not registered kinds are ignored."""
    from core.notify.tables import NotificationPreference

    kinds = [kind for kind in choices if kind in KINDS]
    if not kinds:
        return
    rows = [
        NotificationPreference(user=user_id, kind=kind, in_app=bool(choices[kind][0]), email=bool(choices[kind][1]))
        for kind in kinds
    ]
    # Replaced in one transaction: a concurrent notify() sees the old choices or the new ones.
    async with NotificationPreference._meta.db.transaction():
        await NotificationPreference.delete().where(
            (NotificationPreference.user == user_id) & NotificationPreference.kind.is_in(kinds)
        )
        await NotificationPreference.insert(*rows)
