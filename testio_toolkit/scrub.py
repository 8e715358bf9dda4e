"""The one-time scrub of customers' credentials from a mirror made before they were redacted,
and from its backups, leaving no copy behind.

Every run calls it first, under the writer lock (``AsyncMirror._run``; also ``restore`` and
``testio-toolkit scrub``)::

    report = scrub_mirror(Path("acme.db"))   # None: nothing to do (the usual case)
    report.line()   # 'removed credentials from 128 tests, 689 bugs and 2 backups'

What it does to the mirror, in order, each step safe to interrupt (kill -9 anywhere: nothing
is lost, and the next run does what is left, because ``meta.credentials_redacted`` is set
only at the end):

1. fold the WAL into the file and truncate it, so no old frame stays in the ``-wal``;
2. in one transaction, with ``secure_delete`` on (freed space is zeroed), rewrite every raw
   value that holds a credential (``Store.redact_stored``), and note the counts in ``meta``;
3. ``VACUUM`` (the file is written anew: no free page keeps an old value) and fold and
   truncate the WAL again;
4. scrub each backup the same way (a backup is a plain file without WAL);
5. in one transaction, record the scrub in the run history (mode ``scrub``) and set the flag.

A backup that cannot be written (read-only, locked, damaged) is left as it is, named in the
report and the run history (status ``partial``) with the command that scrubs it once it can
be written (``testio-toolkit scrub``, ``tt.scrub()``).
Leftover rebuild and restore files are removed before (``backups.clean_leftovers``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from . import backups, redact
from .errors import StoreError, SyncInProgress
from .lock import WriterLock
from .store import (
    BUSY_TIMEOUT_MS,
    MIRROR_TABLES,
    REDACTED_KEY,
    Store,
    redact_raw,
    storage_problem,
    translate_error,
)
from .vocabulary import SCRUB, RunStatus

PENDING_KEY = "credentials_scrub_pending"
COMMAND = "testio-toolkit scrub"


@dataclass
class ScrubReport:
    """What one scrub removed: rows per table, backups scrubbed, backups it could not."""

    rows: dict[str, int] = field(default_factory=dict)
    backups: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """``'removed credentials from 128 tests, 689 bugs and 2 backups'``."""
        parts = [f"{n} {table}" for table, n in self.rows.items() if n]
        if self.backups:
            parts.append(f"{self.backups} backup{'s' * (self.backups != 1)}")
        if not parts:
            said = "no stored credentials were found"
        elif len(parts) == 1:
            said = f"removed credentials from {parts[0]}"
        else:
            said = f"removed credentials from {', '.join(parts[:-1])} and {parts[-1]}"
        if self.problems:
            said += f"; not scrubbed: {'; '.join(self.problems)} (then run `{COMMAND}`)"
        return said


def _fold_and_truncate(conn: sqlite3.Connection) -> bool:
    """Copy the whole WAL into the file and cut it to zero bytes; False when a reader on an
    older snapshot kept it from finishing (what is left in the WAL is then only new, clean
    frames, and the scrub is finished by the next run)."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy


def scrub_backup(path: Path) -> bool:
    """Scrub one backup file in place; True when it held credentials. Raises StoreError.

    A backup is a plain file (rollback journal): the journal that holds the old pages while
    a transaction runs is deleted when it commits, and ``VACUUM`` writes the file anew.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            done = conn.execute("SELECT value FROM meta WHERE key = ?", (REDACTED_KEY,)).fetchone()
            if done and done[0] == redact.RULE_VERSION:
                return False
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("BEGIN IMMEDIATE")
            try:
                rewritten = redact_raw(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            # Free pages may still hold old values (a copy keeps them): only after VACUUM
            # is the backup marked done, so a kill before it leaves the work to the next run.
            conn.execute("VACUUM")
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (REDACTED_KEY, redact.RULE_VERSION),
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise translate_error(exc, path) from None
    return any(rewritten.values())


def scrub_before_reading(path: Path) -> bool:
    """Scrub an older mirror before a frame or ``tt.db`` shows it, as its first run would;
    True once the file is known clean. Not where it cannot be written (read-only storage)
    nor while another process holds the writer lock (that run scrubs it first)."""
    if not path.exists():
        return False
    with Store.open_read_only(path) as reader:
        if reader.get_meta(REDACTED_KEY) == redact.RULE_VERSION:
            return True
    if storage_problem(path) is not None:
        return False
    try:
        with WriterLock(path, mode="scrub"):
            backups.clean_leftovers(path)
            scrub_mirror(path)
    except SyncInProgress:
        return False
    return True


def scrub_mirror(path: Path, *, force: bool = False) -> ScrubReport | None:
    """Scrub the mirror at ``path`` and its backups unless that is done (``force``: look
    again, every backup included). Returns what it removed, once: None when there was
    nothing to do or nothing was found. Call it holding the writer lock."""
    if not path.exists():
        return None
    with Store.open(path, create=False) as store:
        if store.get_meta(REDACTED_KEY) == redact.RULE_VERSION and not force:
            return None
        conn = store.conn
        conn.execute("PRAGMA secure_delete = ON")
        folded = _fold_and_truncate(conn)
        with store.transaction():
            found = store.redact_stored()
            # Counts survive an interrupted scrub, so the one report says everything.
            noted = json.loads(store.get_meta(PENDING_KEY) or "{}")
            rows = {t: int(noted.get(t, 0)) + found[t] for t in MIRROR_TABLES}
            store.set_meta(PENDING_KEY, json.dumps(rows))
        try:
            conn.execute("VACUUM")
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from None
        folded = _fold_and_truncate(conn) and folded
        report = ScrubReport(rows={t: n for t, n in rows.items() if n})
        for backup in backups.list_backups(path):
            try:
                report.backups += scrub_backup(backup)
            except StoreError as exc:  # one backup must not stop the others
                report.problems.append(f"{backup.name}: {exc}")
        if not folded:
            return None  # the next run finishes (and reports) it
        with store.transaction():
            if report.rows or report.backups or report.problems:
                run_id = store.start_run(SCRUB, [], None)
                store.finish_run(
                    run_id,
                    status=RunStatus.PARTIAL if report.problems else RunStatus.SUCCESS,
                    requests=0,
                    counts={"scrubbed": report.rows, "backups": report.backups},
                    error=report.line() if report.problems else None,
                )
            # A backup that could not be written is named in the report and the run
            # history; `testio-toolkit scrub` tries it again (there is no way to keep
            # asking without scrubbing the mirror on every run).
            store.set_meta(REDACTED_KEY, redact.RULE_VERSION)
            store.conn.execute("DELETE FROM meta WHERE key = ?", (PENDING_KEY,))
    if not (report.rows or report.backups or report.problems):
        return None  # an old mirror that held no credentials: nothing to tell
    return report
