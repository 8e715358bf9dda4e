"""Files beside the database: backups, rebuilds in progress, and the atomic swap.

A nuke builds ``acme.db.rebuild-<time>`` next to ``acme.db``, then swaps it in with
``os.replace`` (atomic on one file system) after hard-linking the old file as
``acme.backup-<time>.db``. Before linking, the old database's WAL is folded into the main
file, so the backup holds everything, including what was only in the WAL.

Usage::

    plan = make_plan(path, products=(), keep_backups=1)   # what a nuke would throw away
    swap_in(build_path, path)                              # -> the backup's path
    restore_latest(path)                                   # bring the newest backup back
"""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import NoBackup, StoreError
from .store import Store

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")
# What a person types to confirm a nuke, in the terminal and in the panel.
CONFIRM_WORD = "nuke"


def _stamp() -> str:
    # Microseconds: a nuke and a restore in the same second must not share a name.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def backup_path_for(path: Path, stamp: str | None = None) -> Path:
    """``acme.db`` -> ``acme.backup-20261127T080102123456Z.db``."""
    return path.with_name(f"{path.stem}.backup-{stamp or _stamp()}{path.suffix}")


def build_path_for(path: Path) -> Path:
    """Where a nuke builds the new database: ``acme.db.rebuild-<time>``."""
    return path.with_name(f"{path.name}.rebuild-{_stamp()}")


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


def clean_leftovers(path: Path) -> list[Path]:
    """Remove rebuilds left by a nuke that was killed; returns what was removed.

    Call only while holding the writer lock: a running nuke's build looks the same.
    """
    removed = []
    if path.parent.is_dir():
        for build in path.parent.glob(f"{path.name}.rebuild-*"):
            if not build.name.endswith(SIDE_SUFFIXES):
                remove_database_files(build)
                removed.append(build)
    return removed


def prune_backups(path: Path, keep: int) -> None:
    """Keep the ``keep`` most recent backups of ``path``; delete older ones."""
    for old in list_backups(path)[max(keep, 0) :]:
        remove_database_files(old)


def fold_wal(path: Path) -> None:
    """Move everything in the WAL into the main file and leave no WAL behind."""
    if not path.exists():
        return
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot prepare {path} for the swap: {exc}", path=str(path)) from None
    finally:
        conn.close()


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def swap_in(build: Path, path: Path) -> Path | None:
    """Replace ``path`` with ``build`` atomically, keeping the old file as a backup.

    Returns the backup's path (None when there was no database yet).
    """
    fold_wal(build)
    backup = None
    if path.exists():
        fold_wal(path)
        backup = backup_path_for(path)
        _link_or_copy(path, backup)
    os.replace(build, path)
    return backup


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live database (SQLite's backup API)."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def restore_latest(path: Path) -> tuple[Path, Path | None]:
    """Put the newest backup back in place of ``path``.

    The database being replaced becomes a backup itself, so a restore can be undone by
    another restore. Returns (the backup restored, the backup made of the replaced file).
    """
    backups = list_backups(path)
    if not backups:
        raise NoBackup(f"no backup of {path} found in {path.parent}", path=str(path))
    latest = backups[0]
    staging = path.with_name(f"{path.name}.restore-{_stamp()}")
    shutil.copy2(latest, staging)
    try:
        saved = swap_in(staging, path)
    except BaseException:
        remove_database_files(staging)
        raise
    return latest, saved


@dataclass
class NukePlan:
    """What ``nuke()`` would do, returned when it is called without ``confirm=True``.

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
        with Store.open_read_only(path) as store:
            rows = store.product_counts()
            if not products:
                plan.table_counts = store.table_counts()
        plan.product_counts = [r for r in rows if not products or r["product_id"] in products]
        if products:
            plan.table_counts = {
                table: sum(int(r[table]) for r in plan.product_counts)
                for table in ("tests", "bugs", "features")
            }
    return plan
