"""Files beside the database: backups, rebuilds in progress, the swap, and restore.

A nuke builds ``acme.db.rebuild-<time>`` next to ``acme.db``. To swap it in, it first copies
the live database to ``acme.backup-<time>.db`` (written as ``acme.db.partial-<time>`` and
renamed when whole), then copies the rebuild INTO the live file with SQLite's online backup
API, in one write transaction.

Why the backup API into the live file, and not ``os.replace`` of the file: a notebook or
another program usually has a connection open on the mirror. Replacing the file leaves those
connections on the old, unlinked inode, and getting the live file ready for a rename (folding
its WAL, leaving WAL mode) needs exclusive access, which fails with "database is locked" as
soon as one idle connection exists. The backup API writes through SQLite's own locking: in
WAL mode it is an ordinary write transaction, so readers are never blocked, a reader inside
a read transaction keeps its snapshot of the old mirror, the next read sees the new one (a
schema change makes their statements re-prepare), and a kill -9 at any moment leaves either
the old mirror (the transaction never committed; its WAL frames are ignored) or the new one.

``rebuild.py`` runs a nuke with these pieces (when to build, swap, back up, or throw away).

Every temporary file has a marker in its name (``TEMP_MARKERS``), so the next run, under the
writer lock, removes what an interrupted one left.

Usage::

    plan = make_plan(path, products=(), keep_backups=1)   # what a nuke would throw away
    swap_in(build_path, path)                              # -> the backup's path
    restore_latest(path)                                   # bring the newest backup back
"""

from __future__ import annotations

import contextlib
import errno
import html
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import store
from .errors import NoBackup, StoreError
from .store import Store, fold_wal

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
# Names of files that exist only while an operation runs: a rebuild, a backup being copied,
# a restore's staging file (older versions). Whatever carries one after a run is a leftover.
TEMP_MARKERS = (".rebuild-", ".partial-", ".restore-")


def _stamp() -> str:
    # Microseconds: a nuke and a restore in the same second must not share a name.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def backup_path_for(path: Path, stamp: str | None = None) -> Path:
    """``acme.db`` -> ``acme.backup-20261127T080102123456Z.db``."""
    return path.with_name(f"{path.stem}.backup-{stamp or _stamp()}{path.suffix}")


def build_path_for(path: Path) -> Path:
    """Where a nuke builds the new database: ``acme.db.rebuild-<time>``."""
    return path.with_name(f"{path.name}.rebuild-{_stamp()}")


def partial_path_for(path: Path) -> Path:
    """Where a copy is written before it is renamed into place: ``acme.db.partial-<time>``."""
    return path.with_name(f"{path.name}.partial-{_stamp()}")


def list_backups(path: Path) -> list[Path]:
    """Backups of ``path``, newest first."""
    if not path.parent.is_dir():
        return []
    found = path.parent.glob(f"{path.stem}.backup-*{path.suffix}")
    return sorted((p for p in found if not p.name.endswith(SIDE_SUFFIXES)), reverse=True)


def remove_database_files(path: Path) -> None:
    """Delete a database file and its WAL/SHM/journal companions, if present."""
    for candidate in (path, *(path.with_name(path.name + s) for s in SIDE_SUFFIXES)):
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()


def _main_file(path: Path) -> Path:
    for suffix in SIDE_SUFFIXES:
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def clean_leftovers(path: Path) -> list[Path]:
    """Remove what interrupted operations left beside ``path``; returns what was removed.

    Rebuilds of a killed nuke, backups or restores killed while copying, and their WAL/SHM
    files. Call only while holding the writer lock: a running operation's files look the same.
    """
    removed: set[Path] = set()
    if path.parent.is_dir():
        for marker in TEMP_MARKERS:
            for found in path.parent.glob(f"{path.name}{marker}*"):
                main = _main_file(found)
                if main not in removed:
                    remove_database_files(main)
                    removed.add(main)
    return sorted(removed)


def prune_backups(path: Path, keep: int) -> None:
    """Keep the ``keep`` most recent backups of ``path``; delete older ones."""
    for old in list_backups(path)[max(keep, 0) :]:
        remove_database_files(old)


def database_size(path: Path) -> int:
    """Bytes of a database file and its WAL (0 when missing)."""
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return total


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def require_space(path: Path, needed: int, what: str) -> None:
    """Refuse, naming the file and the space needed, when ``path``'s folder has too little."""
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise StoreError(
            f"not enough free space to {what} {path}: it needs about {_megabytes(needed)} "
            f"free in {path.parent}, which has {_megabytes(free)}; nothing was changed",
            path=str(path),
        )


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return store.is_disk_full(exc)


@contextlib.contextmanager
def _disk_full_is_clear(path: Path, needed: int, what: str) -> Iterator[None]:
    """Turn "no space left" (ENOSPC, SQLITE_FULL) while copying into a clear StoreError."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        if not _is_disk_full(exc):
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot {what} {path}: {exc}", path=str(path)) from None
            raise
        free = shutil.disk_usage(path.parent).free
        raise StoreError(
            f"the disk filled up while trying to {what} {path}: it needs about "
            f"{_megabytes(needed)} free in {path.parent}, which has {_megabytes(free)}; "
            f"{path} was left as it was",
            path=str(path),
        ) from None


def copy_database(
    source: Path, target: Path, *, beside: Path, forget_run: int | None = None
) -> None:
    """A consistent copy of a live database, as one standalone file (no WAL).

    Written as ``<beside>.partial-<time>`` and renamed when whole, so a killed copy is a
    leftover that ``clean_leftovers(beside)`` removes, never a truncated database under
    ``target``'s name. ``beside`` is the mirror the copy belongs to. ``forget_run``: the id
    of the run making the copy (a nuke's 'running' row), left out of the copy, so the
    backup is the mirror as it was before that run.
    """
    partial = partial_path_for(beside)
    try:
        store.copy_to_standalone(source, partial, forget_run=forget_run)
        os.replace(partial, target)
    except BaseException:
        remove_database_files(partial)
        raise


def make_backup(path: Path, *, forget_run: int | None = None, backup: Path | None = None) -> Path:
    """Copy the live database ``path`` to a new ``<stem>.backup-<time><suffix>``; its path.

    ``forget_run``: see ``copy_database``. ``backup``: the name, when chosen beforehand (a
    nuke names its backup as it starts, so its result can say where it is).
    """
    backup = backup or backup_path_for(path)
    copy_database(path, backup, beside=path, forget_run=forget_run)
    return backup


def swap_in(
    build: Path,
    path: Path,
    *,
    keep_build: bool = False,
    forget_run: int | None = None,
    backup: Path | None = None,
) -> Path | None:
    """Put ``build``'s content in place of ``path``, keeping the old content as a backup.

    Returns the backup's path (None when there was no database yet). ``build`` is removed
    afterwards unless ``keep_build`` (a restore's source is a backup that stays);
    ``forget_run`` is left out of the backup (see ``copy_database``); ``backup``: its name,
    when chosen beforehand (see ``make_backup``).
    """
    needed = database_size(build)
    if path.exists():
        needed += database_size(path)  # the backup; the build's pages go through the WAL
    what = "swap the rebuilt mirror into" if not keep_build else "restore"
    require_space(path, needed, what)
    with _disk_full_is_clear(path, needed, what):
        if not path.exists():
            if keep_build:
                copy_database(build, path, beside=path)
            else:
                fold_wal(build)
                os.replace(build, path)
            return None
        backup = make_backup(path, forget_run=forget_run, backup=backup)
        try:
            store.copy_into_live(build, path)
        except BaseException:
            remove_database_files(backup)  # the live file is unchanged: no backup needed
            raise
    if not keep_build:
        remove_database_files(build)
    return backup


def restore_latest(path: Path) -> tuple[Path, Path | None]:
    """Put the newest backup back in place of ``path``.

    The database being replaced becomes a backup itself, so a restore can be undone by
    another restore. Returns (the backup restored, the backup made of the replaced file).
    Fails before copying anything, naming the file and the space needed, when the disk is
    too full; a disk that fills up while copying is reported the same way.
    """
    backups = list_backups(path)
    if not backups:
        raise NoBackup(f"no backup of {path} found in {path.parent}", path=str(path))
    latest = backups[0]
    current = database_size(path)
    restored = latest.stat().st_size
    # Room for the backup of the current file, the restored pages in the WAL, and the file
    # growing when the WAL is folded in.
    needed = current + restored + max(0, restored - current)
    require_space(path, needed, "restore")
    with _disk_full_is_clear(path, needed, "restore"):
        saved = swap_in(latest, path, keep_build=True)
    return latest, saved


@dataclass
class NukePlan:
    """What ``nuke()`` would do: ``tt.nuke_plan()``, and ``ConfirmationRequired.plan``.

    ``table_counts`` and ``product_counts`` are the rows that would be thrown away; the
    whole file is kept as ``backup_path`` after a successful rebuild.
    """

    db_path: str
    exists: bool
    size_bytes: int
    product_ids: tuple[int, ...]
    table_counts: dict[str, int] = field(default_factory=dict)
    product_counts: list[dict[str, Any]] = field(default_factory=list)
    backup_path: str = ""
    keep_backups: int = 1
    source: str = ""

    def lines(self) -> list[str]:
        """The plan as text lines for a terminal or a widget."""
        scope = (
            f"products {', '.join(map(str, self.product_ids))}"
            if self.product_ids
            else "the whole mirror"
        )
        out = [f"Nuke {scope} in {self.db_path} ({self.size_bytes / 1e6:.1f} MB)"]
        if not self.exists:
            out.append("There is no database yet: the nuke just builds one.")
        else:
            totals = ", ".join(f"{n} {table}" for table, n in self.table_counts.items())
            out.append(f"Thrown away and rebuilt from the service: {totals}")
            for row in self.product_counts:
                out.append(
                    f"  product {row['product_id']} {row['name']}: {row['tests']} tests, "
                    f"{row['bugs']} bugs, {row['features']} features"
                )
            out.append(
                "Local columns, tables and marked rows of what is rebuilt are not carried "
                "over; they stay in the backup."
            )
            out.append(
                f"Backup kept (the previous {self.keep_backups} backup(s) at most): "
                f"{self.backup_path}"
            )
        if self.source == "sandbox":
            out.append("Source: the bundled SANDBOX, not a real account.")
        out.append("Nothing has changed. Confirm with nuke(confirm=True) or `sync --nuke --yes`.")
        return out

    def __repr__(self) -> str:
        return "<NukePlan " + " | ".join(self.lines()[:2]) + ">"

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape("\n".join(self.lines())) + "</pre>"


def make_plan(path: Path, products: tuple[int, ...], keep_backups: int, source: str) -> NukePlan:
    """Describe what a nuke of ``path`` would throw away. Reads only."""
    plan = NukePlan(
        db_path=str(path),
        exists=path.exists(),
        size_bytes=path.stat().st_size if path.exists() else 0,
        product_ids=products,
        backup_path=str(backup_path_for(path, "<time>")),
        keep_backups=keep_backups,
        source=source,
    )
    if plan.exists:
        with Store.open_read_only(path) as mirror:
            rows = mirror.product_counts()
            if not products:
                plan.table_counts = mirror.table_counts()
        plan.product_counts = [r for r in rows if not products or r["product_id"] in products]
        if products:
            plan.table_counts = {
                table: sum(int(r[table]) for r in plan.product_counts)
                for table in ("tests", "bugs", "features")
            }
    return plan
