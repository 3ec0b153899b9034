"""Nothing left behind after a crash: working files, temporary uploads, orphaned stored files.

- ``sweep_working``: temporary upload files of the core store and every plugin's working files
  (``sweep_working_files`` hook) whose owner process is gone (``core.workfiles``: at once, by lock).
  Run at start-up and then every ``CPMS_SWEEP_INTERVAL`` seconds by every app process.
- ``check_storage``: compares the files in the core store with the keys every plugin's rows refer
  to (``storage_keys`` hook). A file no row claims is an *orphan* (a process killed between writing
  the file and committing its row); a key without its file is *missing* (damage: restore from
  backup). ``repair`` removes orphans older than ``grace`` (a file younger than that may belong to
  an upload that commits in a moment). Run at start-up and daily in the background, and as
  ``cpms storage check [--repair]``. Missing files are reported, never "repaired".
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

from anyio import to_thread

from core.events import await_me_maybe

log = logging.getLogger("cpms.sweeper")

#: A stored file no row claims is removed only once this old.
ORPHAN_GRACE = timedelta(hours=1)
#: Fallback age for working files where locks are not available.
WORKING_GRACE = timedelta(minutes=30)
#: How often the background task checks the whole store for orphans.
STORAGE_CHECK_EVERY = 24 * 3600


@dataclass
class StorageReport:
    files: int = 0
    orphans: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)  # plugin -> keys without a file
    temp_removed: int = 0

    @property
    def clean(self) -> bool:
        return not self.orphans and not any(self.missing.values())

    def lines(self) -> list[str]:
        out = [f"{self.files} stored file(s) checked"]
        if self.temp_removed:
            out.append(f"{self.temp_removed} temporary upload file(s) of interrupted uploads removed")
        young = [k for k in self.orphans if k not in self.removed]
        if self.removed:
            out.append(f"{len(self.removed)} orphaned file(s) removed (no row refers to them)")
        if young:
            out.append(f"{len(young)} orphaned file(s) kept for now (younger than the grace period, or no --repair)")
        for plugin, keys in sorted(self.missing.items()):
            if keys:
                out.append(f"{len(keys)} file(s) referred to by {plugin} are missing: restore them from a backup")
        if self.clean:
            out.append("no orphaned and no missing files")
        return out


async def sweep_working(host, settings) -> int:
    """Remove every plugin's abandoned working files and the store's abandoned temporary files."""
    from core.storage import Storage

    removed = await Storage(settings).cleanup_temp(WORKING_GRACE)
    for plugin, result in host.results_by_plugin("sweep_working_files", settings=settings):
        try:
            removed += int(await await_me_maybe(result) or 0)
        except Exception:  # one plugin's failure must not stop the others' cleaning
            log.exception("plugin %s failed sweeping its working files", plugin)
    if removed:
        log.info("removed %d working file(s) or folder(s) left by interrupted processes", removed)
    return removed


async def referenced_keys(host) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for plugin, result in host.results_by_plugin("storage_keys"):
        out[plugin] = {k for k in (await await_me_maybe(result) or ()) if k}
    return out


async def check_storage(host, settings, *, repair: bool = False, grace: timedelta = ORPHAN_GRACE) -> StorageReport:
    from core.storage import TEMP_PREFIX, Storage

    storage = Storage(settings)
    report = StorageReport(temp_removed=await storage.cleanup_temp(WORKING_GRACE))
    # Keys first, files second: a file committed in between is then seen without its row and
    # kept by the grace period, never the other way round.
    claimed = await referenced_keys(host)
    every = set().union(*claimed.values()) if claimed else set()

    def walk() -> list[tuple[str, float]]:
        found = []
        for path in storage.root.rglob("*"):
            if path.is_file() and not path.name.startswith(TEMP_PREFIX):
                try:
                    found.append((path.relative_to(storage.root).as_posix(), path.stat().st_mtime))
                except FileNotFoundError:
                    continue
        return found

    on_disk = await to_thread.run_sync(walk)
    report.files = len(on_disk)
    present = {key for key, _ in on_disk}
    limit = time.time() - grace.total_seconds()
    report.orphans = sorted(key for key, _ in on_disk if key not in every)
    old = [key for key, mtime in sorted(on_disk) if key not in every and mtime <= limit]
    if repair and old:
        # Ask once more, just before deleting: a row may have been committed since the first look.
        now_claimed = set().union(*(await referenced_keys(host)).values())
        for key in old:
            if key not in now_claimed and await storage.delete(key):
                report.removed.append(key)
    report.missing = {plugin: sorted(keys - present) for plugin, keys in claimed.items()}
    if report.removed:
        log.warning("removed %d orphaned stored file(s) (no row refers to them)", len(report.removed))
    for plugin, keys in report.missing.items():
        if keys:
            log.error("%d stored file(s) referred to by %s are missing", len(keys), plugin)
    return report


class BackgroundSweeper:
    """The start-up sweep and the periodic one, for one app process (``core.app``)."""

    def __init__(self, host, settings) -> None:
        self.host, self.settings = host, settings
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        interval = self.settings.sweep_interval
        try:
            await sweep_working(self.host, self.settings)  # originals must not outlive a crash
        except Exception:
            log.exception("start-up sweep of working files failed")
        if interval > 0:
            self.task = asyncio.get_running_loop().create_task(self._run(interval), name="cpms-sweeper")

    async def _run(self, interval: int) -> None:
        last_check = 0.0
        while True:
            try:
                if time.monotonic() - last_check >= STORAGE_CHECK_EVERY or not last_check:
                    last_check = time.monotonic()
                    await check_storage(self.host, self.settings, repair=True)
                await asyncio.sleep(interval)
                await sweep_working(self.host, self.settings)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background sweep failed; trying again in %d s", interval)
                await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
            self.task = None
