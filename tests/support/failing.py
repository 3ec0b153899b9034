"""Failure injection for the tests that prove a write and its audit entry commit together: the
audit trail made unreachable (as a crash or a lost database connection between the two would)."""

from __future__ import annotations

from pathlib import Path


def break_audit_trail(monkeypatch) -> None:
    """Every audit append raises until ``monkeypatch.undo()``."""
    from core.audit import chain

    async def unreachable(*args, **kwargs):
        raise RuntimeError("the audit trail is unreachable")

    monkeypatch.setattr(chain, "record", unreachable)


def stored_file_names(settings) -> set[str]:
    """The names of every file in the core store (temporary files included)."""
    return {p.name for p in (Path(settings.data_dir) / "files").rglob("*") if p.is_file()}
