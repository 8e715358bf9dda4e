"""One writer per database: a lock file beside it, and a note saying who holds it.

Usage::

    with WriterLock(db_path, mode="refresh"):
        ...  # only this process writes to db_path now

The lock is an OS-level file lock (filelock), so the kernel releases it when its holder dies:
a crashed or ``kill -9``-ed run never blocks the next one. Readers take no lock; WAL mode
lets them read while a writer works.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from .errors import StoreError, SyncInProgress
from .store import check_writable, utc_now


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


def holder_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock.json")


# How long a refused process waits for the holder's note: the holder writes it just after
# taking the lock, so a process refused in between would otherwise name nobody.
NOTE_GRACE_SECONDS = 1.0


def _read_note(db_path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(holder_path(db_path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not {"mode", "pid", "host", "since"} <= set(info):
        return None
    if info["host"] == socket.gethostname() and not _alive(info["pid"]):
        return None  # left by a holder that died; the new holder is about to replace it
    return info


def _alive(pid: object) -> bool:
    try:
        os.kill(int(str(pid)), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True  # exists but not ours, or unreadable: do not claim it is dead
    return True


def describe_holder(db_path: Path) -> str:
    """'a refresh (pid 4242 on host, since 2026-11-27T08:00:00Z)', or a vaguer text."""
    deadline = time.monotonic() + NOTE_GRACE_SECONDS
    while (info := _read_note(db_path)) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if info is None:
        return "another sync"
    return f"a {info['mode']} (pid {info['pid']} on {info['host']}, since {info['since']})"


class WriterLock:
    """Hold the writer lock of ``db_path`` for the duration of a ``with`` block.

    ``wait=False`` (the default) fails at once with SyncInProgress naming the holder;
    ``wait=True`` blocks until the lock is free, ``wait=30.0`` for at most 30 seconds.
    """

    def __init__(self, db_path: Path, *, mode: str, wait: bool | float = False) -> None:
        self.db_path = db_path
        self.mode = mode
        self.timeout = -1.0 if wait is True else (0.0 if wait is False else float(wait))
        self._lock = FileLock(str(lock_path(db_path)), timeout=self.timeout)

    def __enter__(self) -> WriterLock:
        self._check_writable()
        try:
            self._lock.acquire()
        except Timeout:
            raise SyncInProgress(
                f"a sync is running: {describe_holder(self.db_path)} is writing to "
                f"{self.db_path}; wait for it to finish (or pass wait=True / --wait)",
                path=str(self.db_path),
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot take the writer lock {lock_path(self.db_path)}: {exc.strerror}",
                path=str(self.db_path),
            ) from None
        info = {"mode": self.mode, "pid": os.getpid(), "host": socket.gethostname()}
        info["since"] = utc_now()
        # The note is a courtesy; the lock itself is what protects the file.
        with contextlib.suppress(OSError):
            holder_path(self.db_path).write_text(json.dumps(info))
        return self

    def _check_writable(self) -> None:
        """filelock reports a lock file it cannot create as a lock held by someone else
        (Timeout, or waiting forever with ``wait=True``): so that a read-only folder is
        not mistaken for a running sync, make sure the file can be created first."""
        check_writable(self.db_path)  # a read-only file or folder: say so, create nothing
        path = lock_path(self.db_path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot write beside {self.db_path}: the lock file {path} cannot be created "
                f"({exc.strerror})",
                path=str(self.db_path),
            ) from None
        os.close(fd)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            holder_path(self.db_path).unlink(missing_ok=True)
        self._lock.release()

    def __repr__(self) -> str:
        state = "held" if self._lock.is_locked else "free"
        return f"<WriterLock {self.db_path} ({state})>"
