"""Working files that must not outlive the process that made them.

An upload is written to a temporary file, or to a private folder holding the original (identifying)
files until they are de-identified. If the process is killed, nothing removes them. Age is a poor
test of "abandoned" (a slow upload is old; a file left a second ago by a killed process is new), so
the process working on them holds an exclusive ``flock`` on them (the temporary file itself, or a
``.owner`` file in the folder) for as long as it works. The kernel drops the lock when the process
dies, however it dies: a sweeper that can take the lock knows the owner is gone and removes the
files at once (at start-up, and periodically: ``core.sweeper``).

Where ``flock`` is not available (some network filesystems), the sweepers fall back to age.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

OWNER = ".owner"

#: Lock file descriptors held by this process, per folder.
_held: dict[str, int] = {}


def lock_fd(fd: int) -> None:
    """Hold an exclusive lock on an open file for as long as it stays open."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # no flock here: the sweepers fall back to the file's age


def hold_folder(folder: Path) -> None:
    """Mark ``folder`` as worked on by this process until ``release_folder`` (or death)."""
    fd = os.open(folder / OWNER, os.O_CREAT | os.O_RDWR, 0o600)
    lock_fd(fd)
    _held[str(folder)] = fd


def release_folder(folder: Path) -> None:
    fd = _held.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def remove_folder(folder: Path) -> None:
    """Release and delete a working folder (synchronous: safe in a ``finally`` under cancellation)."""
    release_folder(folder)
    shutil.rmtree(folder, ignore_errors=True)


def abandoned(path: Path, *, older_than: float) -> bool:
    """Whether the working file or folder ``path`` belongs to no live process: its lock can be taken
    (folders: their ``.owner`` file), or, without a lock to ask, it is untouched for ``older_than`` s."""
    target = path / OWNER if path.is_dir() else path
    if str(path) in _held:
        return False  # ours, in use
    try:
        fd = os.open(target, os.O_RDONLY)
    except FileNotFoundError:
        return _age(path) > older_than  # a folder from before owner files, or being created
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live process holds it
        except OSError:
            return _age(path) > older_than
        return True
    finally:
        os.close(fd)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
