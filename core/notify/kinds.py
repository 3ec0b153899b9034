"""The kinds of notification: each is one row of the preferences page.

A module registers its kinds at import time with ``register_kind``; ``notify`` refuses a
kind that is not registered, so a typo cannot create a kind nobody can switch off. The
panel kinds are registered here, not by the panels module alone, so the preferences page
is complete whichever plugins are loaded; registering a name again is harmless.
"""

from __future__ import annotations

import re

#: name -> description shown on the preferences page, in registration order.
KINDS: dict[str, str] = {}

# Stored in Varchar(40) columns; dotted lower-case names ("panel.invited").
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def register_kind(name: str, description: str) -> str:
    """Declare a kind of notification; returns ``name``. Registering it again keeps its
    place and takes the new description."""
    if len(name) > 40 or not _NAME.match(name):
        raise ValueError(f"notification kind {name!r}: use a dotted lower-case name of at most 40 characters")
    if not description.strip():
        raise ValueError(f"notification kind {name!r} needs a description")
    KINDS[name] = description.strip()
    return name


def require_kind(name: str) -> None:
    if name not in KINDS:
        raise ValueError(f"unknown notification kind {name!r}; register it with core.notify.kinds.register_kind")


for _name, _description in (
    ("panel.invited", "You are invited to take part in a panel"),
    ("panel.urgent", "A panel you take part in was marked urgent"),
    ("panel.message", "A new message in the discussion of a panel you take part in"),
    ("panel.mention", "Someone mentioned you in a panel"),
    ("panel.data_request", "Someone asks for more data on a panel you submitted or coordinate"),
    ("panel.data_answered", "A data request you made on a panel was answered"),
    ("panel.meeting", "A panel meeting was scheduled, moved or cancelled"),
    ("panel.outcome", "A panel you take part in reached its outcome (findings, recommendations)"),
    ("panel.status", "A panel you take part in changed status (submitted, accepted, closed...)"),
    ("panel.consent", "A panel you lead or submitted was suspended or resumed by a change of the patient's consent"),
):
    register_kind(_name, _description)
