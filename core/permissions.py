"""Permissions are declared as data by the core and by plugins, and checked in one place.

A role grants permissions through the ``identity_role_permission`` table, seeded from
each permission's ``default_roles``; changing who may do what is a data change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


class StartupError(RuntimeError):
    """The plugin set is inconsistent; CPMS refuses to start."""


@dataclass(frozen=True)
class Permission:
    name: str
    description: str
    #: Roles granted this permission when the grant table is first seeded.
    default_roles: tuple[str, ...] = ()
    #: Whether the permission is scoped to an ERN (checked against the actor's roles there).
    ern_scoped: bool = False
    #: Set by the host: which plugin declared it.
    plugin: str = field(default="", compare=False)


class PermissionRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, Permission] = {}

    def add(self, permission: Permission, plugin: str) -> None:
        if permission.name in self._by_name:
            other = self._by_name[permission.name].plugin
            raise StartupError(
                f"permission {permission.name!r} is declared by both {other!r} and {plugin!r}"
            )
        self._by_name[permission.name] = Permission(
            permission.name, permission.description, tuple(permission.default_roles),
            permission.ern_scoped, plugin,
        )

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(sorted(self._by_name.values(), key=lambda p: p.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Permission | None:
        return self._by_name.get(name)

    def by_plugin(self, plugin: str) -> list[Permission]:
        return [p for p in self if p.plugin == plugin]


@dataclass(frozen=True)
class Actor:
    """Who is making a request, with what they may do (and in which ERNs)."""

    user_id: int
    email: str
    name: str
    hcp_id: int | None
    roles: tuple[tuple[str, int | None], ...]  # (role, ern_id or None for platform roles)
    #: permission name -> ERN ids it holds in (``None`` in the set: everywhere).
    grants: dict[str, frozenset] = field(default_factory=dict)
    session_id: str = ""
    #: Whether the user has a second factor enrolled, and whether their roles demand one.
    mfa_enabled: bool = False
    mfa_required: bool = False
    #: This session's login passed a second factor at a trusted OpenID provider (its acr/amr).
    mfa_by_provider: bool = False

    @property
    def role_names(self) -> frozenset[str]:
        return frozenset(role for role, _ in self.roles)

    def ern_ids(self, role: str | None = None) -> frozenset[int]:
        return frozenset(e for r, e in self.roles if e is not None and (role is None or r == role))

    def can(self, permission: str, ern_id: int | None = None) -> bool:
        scopes = self.grants.get(permission)
        if not scopes:
            return False
        if ern_id is None or None in scopes:
            return True
        return ern_id in scopes


def allowed(actor: Actor | None, permission: str, ern_id: int | None = None) -> bool:
    """The one check every route, menu and template goes through."""
    return actor is not None and actor.can(permission, ern_id)


def grants_for(
    roles: Iterable[tuple[str, int | None]], role_permissions: dict[str, set[str]]
) -> dict[str, frozenset]:
    grants: dict[str, set] = {}
    for role, ern_id in roles:
        for perm in role_permissions.get(role, ()):
            grants.setdefault(perm, set()).add(ern_id)
    return {perm: frozenset(scopes) for perm, scopes in grants.items()}
