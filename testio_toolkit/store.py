"""The local SQLite mirror: schema, migrations, upserts and bookkeeping. The only SQL writer.

Usage::

    with Store.open(Path("acme.db")) as store:
        with store.transaction():
            counts = store.upsert("tests", rows)   # -> UpsertCounts(added=3, updated=1, ...)
        store.table_counts()                       # {'products': 3, 'tests': 150, ...}

Rules every write follows:

- Rows are written with ``INSERT ... ON CONFLICT(id) DO UPDATE`` and only our own columns
  are set, so columns a user added keep their values and nothing is deleted and re-inserted.
- A row whose content did not change is not written at all (we compare the stored JSON
  first), so a no-change refresh rewrites nothing.
- Rows gone upstream are marked (``deleted_upstream_at``), never deleted.
- What a write changes is recorded in ``changes`` in the same transaction (the change feed:
  ``feed.py`` decides, ``begin_recording`` says for which run), so the history can never
  disagree with the mirror. A write that changes nothing records nothing.

The store opens files carefully: it never creates a missing folder the user named, never
touches a file that is not a SQLite database, and refuses one written by a newer schema.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Self

from . import feed, redact
from .errors import SchemaTooNew, StoreCorrupt, StoreError
from .feed import Change, Tally
from .rows import utc_text
from .vocabulary import RunStatus

SCHEMA_VERSION = 4
# Marks a file as ours (PRAGMA application_id), so we never write into someone else's SQLite.
APPLICATION_ID = 0x7E5710
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 10_000
# How often a writer's WAL is copied into the database file, off the writing thread.
CHECKPOINT_EVERY_SECONDS = 1.0

log = logging.getLogger(__name__)

# Each version is a list of statements, run one by one inside the migration's transaction
# (``executescript`` would commit first, and splitting SQL text on ";" breaks on a literal).
_SCHEMA_V1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        name TEXT,
        type TEXT,
        description TEXT,
        sectioned INTEGER NOT NULL DEFAULT 0,
        raw TEXT NOT NULL,
        synced_at TEXT NOT NULL,
        deleted_upstream_at TEXT
    )""",
    """CREATE TABLE tests (
        id INTEGER PRIMARY KEY,
        product_id INTEGER NOT NULL,
        title TEXT,
        status TEXT,
        testing_type TEXT,
        start_at TEXT,
        end_at TEXT,
        created_at TEXT,
        raw TEXT NOT NULL,
        synced_at TEXT NOT NULL,
        bugs_read_at TEXT,
        deleted_upstream_at TEXT
    )""",
    "CREATE INDEX tests_by_product ON tests (product_id, end_at)",
    """CREATE TABLE bugs (
        id INTEGER PRIMARY KEY,
        test_id INTEGER NOT NULL,
        product_id INTEGER NOT NULL,
        title TEXT,
        severity TEXT,
        status TEXT,
        known INTEGER,
        auto_accepted INTEGER,
        created_at TEXT,
        author TEXT,
        raw TEXT NOT NULL,
        synced_at TEXT NOT NULL,
        deleted_upstream_at TEXT
    )""",
    "CREATE INDEX bugs_by_test ON bugs (test_id)",
    "CREATE INDEX bugs_by_product ON bugs (product_id)",
    """CREATE TABLE features (
        id INTEGER PRIMARY KEY,
        product_id INTEGER NOT NULL,
        section_id INTEGER,
        title TEXT,
        description TEXT,
        howtofind TEXT,
        user_stories TEXT,
        raw TEXT NOT NULL,
        synced_at TEXT NOT NULL,
        deleted_upstream_at TEXT
    )""",
    "CREATE INDEX features_by_product ON features (product_id)",
    """CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mode TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        product_filter TEXT,
        since TEXT,
        requests INTEGER,
        counts TEXT,
        error TEXT
    )""",
    """CREATE TABLE product_state (
        product_id INTEGER PRIMARY KEY,
        backfill_complete INTEGER NOT NULL DEFAULT 0,
        last_complete_read_at TEXT
    )""",
    """CREATE TABLE unreadable (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        product_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        position INTEGER,
        record_id INTEGER,
        prev_id INTEGER,
        next_id INTEGER,
        error TEXT,
        first_seen_at TEXT NOT NULL,
        last_tried_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        resolved_at TEXT
    )""",
    "CREATE INDEX unreadable_open ON unreadable (product_id, resolved_at)",
)

# v2: where an incremental sync may stop reading a product's list (see sync.py).
_SCHEMA_V2 = ("ALTER TABLE product_state ADD COLUMN watermark TEXT",)

# v3: the change feed (``feed.py``): one row per change a run recorded. Kept by refresh
# (same file), carried over by a nuke (``copy_history_from``, ``replace_products``), brought
# back by a restore (it is in the backup file); bounded by ``prune_changes``.
_SCHEMA_V3 = (
    """CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        mode TEXT NOT NULL,
        at TEXT NOT NULL,
        entity TEXT NOT NULL,
        entity_id INTEGER NOT NULL,
        product_id INTEGER NOT NULL,
        test_id INTEGER,
        kind TEXT NOT NULL,
        field TEXT,
        old TEXT,
        new TEXT
    )""",
    "CREATE INDEX changes_by_at ON changes (at)",
    "CREATE INDEX changes_by_product ON changes (product_id, at)",
    "CREATE INDEX changes_by_run ON changes (run_id)",
)

# v4: no new table. Raw JSON is stored without customers' credentials (``redact.py``);
# an older mirror is scrubbed once (``scrub.py``; ``meta.credentials_redacted`` says it was),
# and the version number keeps older toolkits, which would store credentials again, out.
_SCHEMA_V4: tuple[str, ...] = ()

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: _SCHEMA_V1,
    2: _SCHEMA_V2,
    3: _SCHEMA_V3,
    4: _SCHEMA_V4,
}
# meta key: the redaction rule (``redact.RULE_VERSION``) every stored raw value follows.
REDACTED_KEY = "credentials_redacted"


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a schema at ``version`` (0: empty) to SCHEMA_VERSION, step by step."""
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[step]:
            conn.execute(statement)
    if version == 0:  # a new mirror has nothing to scrub: every write is redacted
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)", (REDACTED_KEY, redact.RULE_VERSION)
        )


# The columns each mirror table gets from the service, in write order (id first).
COLUMNS: dict[str, tuple[str, ...]] = {
    "products": ("id", "name", "type", "description", "sectioned", "raw", "synced_at"),
    "tests": (
        "id",
        "product_id",
        "title",
        "status",
        "testing_type",
        "start_at",
        "end_at",
        "created_at",
        "raw",
        "synced_at",
    ),
    "bugs": (
        "id",
        "test_id",
        "product_id",
        "title",
        "severity",
        "status",
        "known",
        "auto_accepted",
        "created_at",
        "author",
        "raw",
        "synced_at",
    ),
    "features": (
        "id",
        "product_id",
        "section_id",
        "title",
        "description",
        "howtofind",
        "user_stories",
        "raw",
        "synced_at",
    ),
}
MIRROR_TABLES = tuple(COLUMNS)
Row = dict[str, Any]


def redact_raw(conn: sqlite3.Connection, batch: int = 2_000) -> dict[str, int]:
    """Rewrite every raw value of the mirror tables that holds a credential
    (``redact.redact_json``), in batches by id so memory stays flat on a large mirror;
    returns the rows rewritten per table. Any database with our tables: a mirror, a backup."""
    rewritten: dict[str, int] = {}
    for table in MIRROR_TABLES:
        count, last = 0, -(2**63)
        while rows := conn.execute(
            f"SELECT id, raw FROM {table} WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
        ).fetchall():
            last = rows[-1][0]
            changed = [(new, i) for i, raw in rows if (new := redact.redact_json(raw)) != raw]
            conn.executemany(f"UPDATE {table} SET raw = ? WHERE id = ?", changed)
            count += len(changed)
        rewritten[table] = count
    return rewritten


def utc_now() -> str:
    """Now, as the UTC ISO text every timestamp in the store uses."""
    return utc_text(datetime.now(UTC))


@dataclass
class UpsertCounts:
    """What one upsert did: rows added, updated (content changed), unchanged, unmarked;
    ``changed_ids`` are the ids added or updated."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    unmarked: int = 0
    changed_ids: list[int] = field(default_factory=list)


@dataclass
class Recording:
    """Which run the store records changes for (``Store.begin_recording``).

    ``per_row`` off: the writes themselves record nothing (a nuke's rebuild starts empty, so
    everything would look added; the engine records what it changed against the replaced
    mirror instead). ``baseline``: products new to the mirror in this run, whose tests, bugs
    and features are not recorded one by one (see ``feed.py``). ``tally`` counts what was
    recorded, for the run's summary line.
    """

    run_id: int
    mode: str
    at: str
    per_row: bool = True
    baseline: set[int] = field(default_factory=set)
    tally: Tally = field(default_factory=Tally)


class ProductState(NamedTuple):
    """How far a product's list was read: whole once (``backfill_complete``), when last
    read whole, and where an incremental sync may stop (``watermark``, UTC text)."""

    backfill_complete: bool
    last_complete_read_at: str | None
    watermark: str | None


class TestState(NamedTuple):
    """A stored test as the sync engine sees it."""

    status: str | None
    end_at: str | None
    gone: bool
    bugs_read: bool


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    # SQLite limits the number of ? placeholders per statement.
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_database_file(path: Path) -> None:
    """Refuse a path we must not open: a missing folder, a file that is not SQLite, another
    program's SQLite database, or one of a newer schema.

    Creates nothing: the file's header is read directly, and the schema (when the header
    leaves a doubt) through an ``immutable`` connection, which makes no ``-wal``, ``-shm``
    or lock file. So a refused run leaves the folder as it found it.
    """
    if not path.parent.is_dir():
        raise StoreError(f"the folder {path.parent} does not exist", path=str(path))
    if not path.exists():
        return
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a database file", path=str(path))
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}", path=str(path)) from None
    if not header:
        return  # an empty file: SQLite makes it a new database
    if header[: len(SQLITE_HEADER)] != SQLITE_HEADER:
        raise StoreCorrupt(
            f"{path} is not a SQLite database; it was left untouched", path=str(path)
        )
    if len(header) < 100:
        return  # SQLite will say what is wrong with it
    user_version = int.from_bytes(header[60:64], "big", signed=True)
    application_id = int.from_bytes(header[68:72], "big", signed=True)
    if application_id == APPLICATION_ID:
        _check_version(path, user_version)
        return
    # Not marked as ours (yet): a mirror is marked when its tables are made, so a file
    # with tables is another program's. (A new mirror's first transaction may still sit in
    # its -wal file, which this check does not read: then the file holds no tables yet.)
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
        try:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise translate_error(exc, path) from None
    if tables:
        raise _another_program(path)


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path} has schema version {version}, newer than this toolkit's "
            f"{SCHEMA_VERSION}; upgrade testio-toolkit",
            path=str(path),
        )


def _another_program(path: Path) -> StoreCorrupt:
    return StoreCorrupt(
        f"{path} is a SQLite database of another program; it was left untouched",
        path=str(path),
    )


def storage_problem(path: Path) -> str | None:
    """Why the mirror at ``path`` cannot be updated there, or None when it can.

    A sync writes the file, its ``-wal`` and ``-shm`` and a lock file beside it, and a nuke
    builds a new file beside it: so both the file and its folder must be writable.
    ``os.access`` also answers for root, for whom a read-only mount or an immutable file
    (``chattr +i``) still cannot be written.
    """
    targets = [("the file", path)] if path.exists() else []
    for what, target in [*targets, ("the folder", path.parent)]:
        if not os.access(target, os.W_OK):
            try:
                read_only_fs = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
            except OSError:
                read_only_fs = False
            why = "on a read-only file system" if read_only_fs else "not writable"
            return f"{what} {target} is {why}"
    return None


def check_writable(path: Path) -> None:
    """Refuse, before any work, to update a mirror on storage that cannot be written."""
    problem = storage_problem(path)
    if problem is not None:
        raise StoreError(
            f"cannot update {path}: {problem}. Reading it works (testio-toolkit status, "
            "tt.tests()); to sync, copy it to a writable folder and point TESTIO_DB_PATH "
            "(or --db) at the copy",
            path=str(path),
        )


# How SQLite says what went wrong: its primary result code (the low byte of an extended one).
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_CANNOT_WRITE = {
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
}
_LOCKED = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database or disk is full" (SQLITE_FULL)."""
    return isinstance(exc, sqlite3.Error) and _primary_code(exc) == sqlite3.SQLITE_FULL


def translate_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """Turn a sqlite3 error into one of ours, naming the file, by SQLite's result code
    (``sqlite_errorcode``), not by its message text."""
    code = _primary_code(exc)
    text = str(exc)
    if code in _DAMAGED:
        return StoreCorrupt(f"{path} is damaged ({text}); it was left untouched", path=str(path))
    if code in _CANNOT_WRITE:
        return StoreError(f"cannot write {path}: {text}", path=str(path))
    if code in _LOCKED:
        return StoreError(f"{path} is locked by another program ({text})", path=str(path))
    return StoreError(f"database error in {path}: {text}", path=str(path))


@contextmanager
def _closed_on_failure(conn: sqlite3.Connection, path: Path) -> Iterator[None]:
    """Close ``conn`` if opening a store on it fails; a sqlite3 error names the file."""
    try:
        yield
    except sqlite3.Error as exc:
        conn.close()
        raise translate_error(exc, path) from None
    except BaseException:
        conn.close()
        raise


# -- whole files: the copies that nukes, backups and restores make ------------------------


def connect_file(path: Path) -> sqlite3.Connection:
    """A plain connection to a database file, for copying it whole."""
    return sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)


def copy_pages(source: sqlite3.Connection, target: sqlite3.Connection) -> None:
    """Copy every page of ``source`` into ``target`` (SQLite's backup API).

    One step for all pages: one write transaction on the target, committed when whole.
    """
    source.backup(target)


def copy_to_standalone(source: Path, target: Path, *, forget_run: int | None = None) -> None:
    """Copy the database ``source`` into a new file ``target`` that needs no WAL.

    ``forget_run``: the id of a run row left out of the copy (with the id sequence put back),
    so the copy is the mirror as it was before that run.
    """
    src = connect_file(source)
    try:
        dst = connect_file(target)
        try:
            copy_pages(src, dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # a backup is one file
            if forget_run is not None:
                dst.execute("BEGIN")
                dst.execute("DELETE FROM sync_runs WHERE id = ?", (forget_run,))
                dst.execute(
                    "UPDATE sqlite_sequence SET seq = "
                    "(SELECT coalesce(max(id), 0) FROM sync_runs) WHERE name = 'sync_runs'"
                )
                dst.execute("COMMIT")
        finally:
            dst.close()
    finally:
        src.close()


def copy_into_live(source: Path, path: Path) -> None:
    """Replace the content of the live database ``path`` with ``source``'s, in one write
    transaction through SQLite's own locking, whoever has ``path`` open."""
    src = connect_file(source)
    try:
        dst = connect_file(path)
        try:
            src_page = src.execute("PRAGMA page_size").fetchone()[0]
            dst_page = dst.execute("PRAGMA page_size").fetchone()[0]
            if src_page != dst_page and dst.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                raise StoreError(
                    f"cannot copy into {path}: its page size ({dst_page}) differs from "
                    f"{source.name}'s ({src_page}); nothing was changed",
                    path=str(path),
                )
            copy_pages(src, dst)
        finally:
            dst.close()
    finally:
        src.close()


def fold_wal(path: Path) -> None:
    """Move everything in the WAL into the main file and leave no WAL behind.

    Needs exclusive access: only for files nobody else has open (a finished rebuild).
    """
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


class _Checkpointer:
    """Copies the WAL into the database file from a thread of its own, once a second.

    Why: by default the connection that commits past 1,000 WAL pages runs the checkpoint
    itself, and its writes and fsync stall the sync's event loop (measured: a first sync of
    the medium preset took 1.41x its floor that way, 1.13x with this thread; see
    benchmarks/README.md). A PASSIVE checkpoint on a second connection never blocks the
    writer, and sqlite3 releases the GIL while it works.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"testio-toolkit-checkpoint {path.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:  # the writer's close still checkpoints
            log.debug("no background checkpoints for %s: %s", self.path, exc)
            return
        try:
            while not self._stop.wait(CHECKPOINT_EVERY_SECONDS):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.debug("background checkpoints of %s stopped: %s", self.path, exc)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Reader:
    """One read-only connection to a mirror, and every question the toolkit asks of it.

    It has no write methods: ``Store`` (a ``Reader`` that writes) has them.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @staticmethod
    def open_read_only(path: Path) -> Reader:
        """Open for reading only (``Store.open_read_only(path)``, a ``Reader``); a missing
        file opens as an empty in-memory mirror.

        It can never change the file: the connection is read-only and the object has no
        write methods. On storage that cannot be written (a read-only folder or mount),
        SQLite could not make the ``-shm`` file a WAL database needs to be read, so the file
        is opened ``immutable`` instead: nobody can be writing to it there.
        """
        check_database_file(path)
        if not path.exists():
            conn = sqlite3.connect(":memory:", isolation_level=None)
            _migrate(conn, 0)
            return Reader(conn, path)
        uri = path.resolve().as_uri()
        target = f"{uri}?immutable=1" if storage_problem(path) is not None else f"{uri}?mode=ro"
        try:
            conn = sqlite3.connect(
                target, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from None
        reader = Reader(conn, path)
        with _closed_on_failure(conn, path):
            reader._check_version(reader._user_version())
            reader._check_application()
        return reader

    def _user_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, version: int) -> None:
        _check_version(self.path, version)

    def _check_application(self) -> None:
        """Refuse a SQLite database with tables that another program made."""
        app_id = int(self.conn.execute("PRAGMA application_id").fetchone()[0])
        has_tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        if has_tables and app_id != APPLICATION_ID:
            raise _another_program(self.path)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.path} ({self._mode})>"

    _mode = "read-only"

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a read query and return plain dicts."""
        try:
            cursor = self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from None
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def test_states(self, product_id: int) -> dict[int, TestState]:
        """What the store knows of one product's tests, by id."""
        cursor = self.conn.execute(
            "SELECT id, status, end_at, deleted_upstream_at IS NOT NULL, bugs_read_at IS NOT NULL "
            "FROM tests WHERE product_id = ?",
            (product_id,),
        )
        return {row[0]: TestState(row[1], row[2], bool(row[3]), bool(row[4])) for row in cursor}

    def tracked_rows(self, table: str, ids: Iterable[int]) -> dict[int, Row]:
        """These rows as the change feed compares them: id, owners, the tracked fields
        (``feed.TRACKED``) and ``gone`` (marked deleted upstream), by id."""
        owner = "id" if table == "products" else "product_id"
        extra = ", test_id" if table == "bugs" else ""
        columns = ", ".join(feed.TRACKED[table])
        found: dict[int, Row] = {}
        for chunk in _chunks(sorted(set(ids))):
            marks = ",".join("?" * len(chunk))
            for row in self.query(
                f"SELECT id, {owner} AS product_id{extra}, {columns}, "
                f"deleted_upstream_at IS NOT NULL AS gone FROM {table} WHERE id IN ({marks})",
                tuple(chunk),
            ):
                found[row["id"]] = row
        return found

    def live_test_counts(self) -> dict[int, int]:
        """Live tests per product id."""
        cursor = self.conn.execute(
            "SELECT product_id, count(*) FROM tests WHERE deleted_upstream_at IS NULL "
            "GROUP BY product_id"
        )
        return dict(cursor.fetchall())

    def live_ids(self, table: str, where: str, params: Sequence[Any]) -> set[int]:
        """Ids of rows not marked gone that match ``where``."""
        cursor = self.conn.execute(
            f"SELECT id FROM {table} WHERE deleted_upstream_at IS NULL AND ({where})", params
        )
        return {row[0] for row in cursor}

    def bug_ids_of_tests(self, test_ids: Sequence[int]) -> set[int]:
        """Ids of the stored, unmarked bugs that belong to these tests."""
        found: set[int] = set()
        for chunk in _chunks(list(test_ids)):
            marks = ",".join("?" * len(chunk))
            found |= self.live_ids("bugs", f"test_id IN ({marks})", tuple(chunk))
        return found

    def raw_of(self, table: str, ids: Sequence[int]) -> dict[int, str]:
        """The stored ``raw`` JSON of these rows, by id (missing ids are left out)."""
        found: dict[int, str] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            cursor = self.conn.execute(
                f"SELECT id, raw FROM {table} WHERE id IN ({marks})", tuple(chunk)
            )
            found.update(cursor.fetchall())
        return found

    def marked_gone_at(self, table: str, ids: Iterable[int]) -> dict[int, str]:
        """When each of these rows was marked gone upstream (rows not marked are left out)."""
        found: dict[int, str] = {}
        for chunk in _chunks(sorted(set(ids))):
            marks = ",".join("?" * len(chunk))
            cursor = self.conn.execute(
                f"SELECT id, deleted_upstream_at FROM {table} "
                f"WHERE id IN ({marks}) AND deleted_upstream_at IS NOT NULL",
                tuple(chunk),
            )
            found.update(cursor.fetchall())
        return found

    def product_state(self, product_id: int) -> ProductState:
        """What the store knows about how far a product's list was read."""
        rows = self.query(
            "SELECT backfill_complete, last_complete_read_at, watermark FROM product_state "
            "WHERE product_id = ?",
            (product_id,),
        )
        if not rows:
            return ProductState(False, None, None)
        row = rows[0]
        return ProductState(
            bool(row["backfill_complete"]), row["last_complete_read_at"], row["watermark"]
        )

    def backfill_complete(self, product_id: int) -> bool:
        return self.product_state(product_id).backfill_complete

    def open_unreadable(self, product_id: int | None = None) -> list[Row]:
        """Entries not resolved yet, oldest first (optionally of one product)."""
        where = "resolved_at IS NULL"
        params: tuple[Any, ...] = ()
        if product_id is not None:
            where += " AND product_id = ?"
            params = (product_id,)
        return self.query(f"SELECT * FROM unreadable WHERE {where} ORDER BY id", params)

    def last_runs(self) -> dict[str, Row]:
        """The most recent run of each mode: ``{'sync': {...}, 'refresh': {...}}``."""
        rows = self.query(
            "SELECT * FROM sync_runs WHERE id IN (SELECT max(id) FROM sync_runs GROUP BY mode)"
        )
        return {row["mode"]: row for row in rows}

    def product_ids(self) -> list[int]:
        """Ids of every product the mirror holds (marked gone or not)."""
        return [row["id"] for row in self.query("SELECT id FROM products ORDER BY id")]

    def table_counts(self) -> dict[str, int]:
        """Rows per mirror table, not counting rows marked gone upstream."""
        return {
            table: self.query(
                f"SELECT count(*) AS n FROM {table} WHERE deleted_upstream_at IS NULL"
            )[0]["n"]
            for table in MIRROR_TABLES
        }

    def product_counts(self) -> list[Row]:
        """Per live product: its name and how many live tests, bugs and features it has."""
        return self.query(
            "SELECT p.id AS product_id, p.name, "
            "(SELECT count(*) FROM tests t WHERE t.product_id = p.id "
            "AND t.deleted_upstream_at IS NULL) AS tests, "
            "(SELECT count(*) FROM bugs b WHERE b.product_id = p.id "
            "AND b.deleted_upstream_at IS NULL) AS bugs, "
            "(SELECT count(*) FROM features f WHERE f.product_id = p.id "
            "AND f.deleted_upstream_at IS NULL) AS features "
            "FROM products p WHERE p.deleted_upstream_at IS NULL ORDER BY p.id"
        )


class Store(Reader):
    """One open connection to a mirror database, and every write the sync makes to it."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn, path)
        self._checkpointer: _Checkpointer | None = None
        self._savepoints = 0  # names nested transactions apart
        self.recording: Recording | None = None  # the run changes are recorded for

    _mode = "read-write"

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Store:
        """Open (and create or migrate) the database at ``path`` for writing.

        Any failure closes the connection and names the file.
        """
        check_database_file(path)
        if not path.exists() and not create:
            raise StoreError(f"no database at {path}; run a sync first", path=str(path))
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from None
        store = cls(conn, path)
        with _closed_on_failure(conn, path):
            store._prepare()
            store._checkpointer = _Checkpointer(path)
        return store

    @staticmethod
    def open_dry_run(path: Path) -> DryRunStore:
        """A store for a dry run: a private scratch copy of the mirror at ``path``.

        Every write goes to the copy (SQLite's temporary database: deleted when closed), so a
        dry run counts exactly what a real run would write, through the same code, and the
        file itself is only read: no lock, no ``-wal``, nothing changed.
        """
        scratch = sqlite3.connect("", isolation_level=None)  # "": a private temporary database
        with _closed_on_failure(scratch, path):
            if path.exists():
                with Store.open_read_only(path) as source:
                    copy_pages(source.conn, scratch)
            else:
                check_database_file(path)
            store = DryRunStore(scratch, path)
            store._migrate()
            if store.get_meta(REDACTED_KEY) != redact.RULE_VERSION:
                # A mirror not yet scrubbed (the next real run does it): the copy is, so
                # the dry run neither counts credentials as changes nor shows them.
                with store.transaction():
                    store.redact_stored()
                    store.set_meta(REDACTED_KEY, redact.RULE_VERSION)
        return store

    def _prepare(self) -> None:
        conn = self.conn
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across application crashes in WAL mode; only power loss can
        # lose the last transactions, never corrupt the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the _Checkpointer's job
        self._migrate()

    def _migrate(self) -> None:
        """Check the file is ours and not newer, then bring its schema up to date."""
        version = self._user_version()
        self._check_version(version)
        self._check_application()
        if version < SCHEMA_VERSION:
            with self.transaction():
                _migrate(self.conn, version)
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection (idempotent). The last one to close folds the WAL in."""
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit: everything inside commits together or not at all.

        Nested inside another, it is a SAVEPOINT (as sqlite-utils' ``atomic()``): a failure
        inside undoes only its own writes, and the outer transaction decides on the rest.
        """
        if self.conn.in_transaction:
            self._savepoints += 1
            name = f"store_{self._savepoints}"
            begin, commit, undo = f"SAVEPOINT {name}", f"RELEASE {name}", f"ROLLBACK TO {name}"
        else:
            begin, commit, undo = "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"
        try:
            self.conn.execute(begin)
            yield
            self.conn.execute(commit)
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute(undo)
                if undo.startswith("ROLLBACK TO"):
                    self.conn.execute(commit)  # a savepoint rolled back is still open
            if isinstance(exc, sqlite3.Error):
                raise translate_error(exc, self.path) from None
            raise

    def _write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from None

    def _write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from None

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value "
            "WHERE meta.value IS NOT excluded.value",
            (key, value),
        )

    def redact_stored(self) -> dict[str, int]:
        """Rewrite stored raw JSON that still holds customers' credentials (a mirror made
        before they were redacted at ingestion), in the caller's transaction; returns the
        rows rewritten per table (``redact_raw``)."""
        try:
            return redact_raw(self.conn)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from None

    def upsert(self, table: str, rows: Sequence[Row]) -> UpsertCounts:
        """Add new rows, update changed ones, leave identical ones alone; count each kind.

        ``rows`` are dicts with the keys of ``COLUMNS[table]``. While a run is recorded
        (``begin_recording``), the rows it adds, changes in a tracked field or brings back
        are recorded as changes in the same transaction (``feed.diff_row``).
        """
        counts = UpsertCounts()
        if not rows:
            return counts
        columns = COLUMNS[table]
        recording = self.recording if self.recording and self.recording.per_row else None
        # The tracked columns come with the same read, so recording costs no extra query.
        tracked = feed.TRACKED[table] if recording else ()
        # Each stored row as SQLite gives it: (id, raw, deleted_upstream_at, *tracked).
        existing: dict[int, tuple[Any, ...]] = {}
        ids = [row["id"] for row in rows]
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            cursor = self.conn.execute(
                f"SELECT id, raw, deleted_upstream_at{''.join(', ' + c for c in tracked)} "
                f"FROM {table} WHERE id IN ({marks})",
                tuple(chunk),
            )
            existing.update((stored[0], stored) for stored in cursor)
        to_write: list[tuple[Any, ...]] = []
        recorded: list[Change] = []
        for row in rows:
            before = existing.get(row["id"])
            if before is None:
                counts.added += 1
                counts.changed_ids.append(row["id"])
                if recording:
                    if table == "products":
                        recording.baseline.add(int(row["id"]))
                        recorded.append(feed.added(table, row))
                    elif row["product_id"] not in recording.baseline:
                        recorded.append(feed.added(table, row))
            else:
                changed = before[1] != row["raw"]
                was_marked = before[2] is not None
                counts.updated += changed
                counts.unchanged += not changed
                counts.unmarked += was_marked
                if changed:
                    counts.changed_ids.append(row["id"])
                if not (changed or was_marked):
                    continue
                if recording:
                    stored = dict(zip(tracked, before[3:], strict=True))
                    recorded += feed.diff_row(table, stored, row, was_gone=was_marked)
            to_write.append(tuple(row[c] for c in columns))
        self.record(recorded)
        if to_write:
            marks = ",".join("?" * len(columns))
            updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
            self._write_many(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}, deleted_upstream_at = NULL",
                to_write,
            )
        return counts

    def mark_gone(self, table: str, ids: Iterable[int], when: str) -> int:
        """Mark rows as deleted upstream (never delete them); returns how many were marked."""
        todo = sorted(set(ids))
        if not todo:
            return 0
        marked = 0
        for chunk in _chunks(todo):
            marks = ",".join("?" * len(chunk))
            if self.recording and self.recording.per_row:
                owners = {"products": "id AS product_id", "bugs": "product_id, test_id"}
                live = self.query(
                    f"SELECT id, {owners.get(table, 'product_id')} FROM {table} "
                    f"WHERE id IN ({marks}) AND deleted_upstream_at IS NULL",
                    tuple(chunk),
                )
                self.record(feed.gone(table, row) for row in live)
            marked += self._write(
                f"UPDATE {table} SET deleted_upstream_at = ? "
                f"WHERE id IN ({marks}) AND deleted_upstream_at IS NULL",
                (when, *chunk),
            ).rowcount
        return marked

    # -- the change feed --------------------------------------------------------------

    def begin_recording(
        self, run_id: int, mode: str, at: str, *, per_row: bool = True
    ) -> Recording:
        """From now on, writes record their changes under this run (see ``Recording``)."""
        self.recording = Recording(run_id, mode, at, per_row=per_row)
        return self.recording

    def record(self, found: Iterable[Change]) -> int:
        """Write change rows for the current run (none without ``begin_recording``)."""
        if self.recording is None:
            return 0
        recording = self.recording
        found = list(found)
        rows = [c.as_row(recording.run_id, recording.mode, recording.at) for c in found]
        if not rows:
            return 0
        marks = ",".join("?" * len(feed.COLUMNS))
        self._write_many(f"INSERT INTO changes ({', '.join(feed.COLUMNS)}) VALUES ({marks})", rows)
        recording.tally.add(found)
        return len(rows)

    def prune_changes(self, before: str) -> int:
        """Delete change rows recorded before ``before`` (UTC text); returns how many."""
        return self._write("DELETE FROM changes WHERE at < ?", (before,)).rowcount

    def mark_bugs_read(self, test_ids: Sequence[int], when: str) -> None:
        """Note that these tests' bugs were read completely (only the first time, so a
        refresh that finds nothing new writes nothing)."""
        for chunk in _chunks(list(test_ids)):
            marks = ",".join("?" * len(chunk))
            self._write(
                f"UPDATE tests SET bugs_read_at = ? WHERE id IN ({marks}) AND bugs_read_at IS NULL",
                (when, *chunk),
            )

    def mark_products_gone(self, product_ids: Iterable[int], when: str) -> dict[str, int]:
        """Mark products gone upstream together with their tests, bugs and features.

        Their backfill is reset, so a product that comes back is read in full. Returns the
        rows marked per table.
        """
        todo = sorted(set(product_ids))
        marked = {"products": self.mark_gone("products", todo, when)}
        for table in ("tests", "bugs", "features"):
            marked[table] = 0
            for chunk in _chunks(todo):
                marks = ",".join("?" * len(chunk))
                marked[table] += self._write(
                    f"UPDATE {table} SET deleted_upstream_at = ? "
                    f"WHERE product_id IN ({marks}) AND deleted_upstream_at IS NULL",
                    (when, *chunk),
                ).rowcount
        for product_id in todo:
            self.set_backfill_incomplete(product_id)
        return marked

    def unmark_product_rows(self, product_id: int, marked_at: str) -> dict[str, int]:
        """A product came back: unmark the tests, bugs and features that were marked with it
        (at ``marked_at``); rows gone on their own before stay marked. Returns the counts."""
        unmarked: dict[str, int] = {}
        for table in ("tests", "bugs", "features"):
            unmarked[table] = self._write(
                f"UPDATE {table} SET deleted_upstream_at = NULL "
                "WHERE product_id = ? AND deleted_upstream_at = ?",
                (product_id, marked_at),
            ).rowcount
        return unmarked

    def set_backfill_complete(
        self, product_id: int, when: str, watermark: str | None = None
    ) -> None:
        """The product's whole list was read and proven complete at ``when``."""
        self._write(
            "INSERT INTO product_state "
            "(product_id, backfill_complete, last_complete_read_at, watermark) "
            "VALUES (?, 1, ?, ?) ON CONFLICT(product_id) DO UPDATE SET backfill_complete = 1, "
            "last_complete_read_at = excluded.last_complete_read_at, "
            "watermark = excluded.watermark",
            (product_id, when, watermark),
        )

    def set_watermark(self, product_id: int, watermark: str | None) -> None:
        """Where the next incremental sync of a (backfilled) product may stop reading."""
        self._write(
            "UPDATE product_state SET watermark = ? WHERE product_id = ? AND watermark IS NOT ?",
            (watermark, product_id, watermark),
        )

    def set_backfill_incomplete(self, product_id: int) -> None:
        """The next run must read the product's whole list again."""
        self._write(
            "UPDATE product_state SET backfill_complete = 0, watermark = NULL "
            "WHERE product_id = ? AND backfill_complete = 1",
            (product_id,),
        )

    def log_unreadable(
        self,
        product_id: int,
        kind: str,
        *,
        position: int | None = None,
        record_id: int | None = None,
        prev_id: int | None = None,
        next_id: int | None = None,
        error: str,
        when: str,
    ) -> None:
        """Record a record the service could not serve, once: a repeat bumps ``attempts``."""
        if record_id is not None:
            match = self.query(
                "SELECT id FROM unreadable WHERE resolved_at IS NULL AND product_id = ? "
                "AND kind = ? AND record_id = ?",
                (product_id, kind, record_id),
            )
        else:
            # A list position has no id of its own: it is known by its neighbours.
            match = self.query(
                "SELECT id FROM unreadable WHERE resolved_at IS NULL AND product_id = ? "
                "AND kind = ? AND prev_id IS ? AND next_id IS ?",
                (product_id, kind, prev_id, next_id),
            )
        if match:
            self._write(
                "UPDATE unreadable SET attempts = attempts + 1, last_tried_at = ?, error = ?, "
                "position = coalesce(?, position) WHERE id = ?",
                (when, error, position, match[0]["id"]),
            )
            return
        self._write(
            "INSERT INTO unreadable (product_id, kind, position, record_id, prev_id, next_id, "
            "error, first_seen_at, last_tried_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (product_id, kind, position, record_id, prev_id, next_id, error, when, when),
        )

    def resolve_unreadable(self, entry_ids: Iterable[int], when: str) -> int:
        """Mark entries resolved (the record was finally read); returns how many."""
        todo = list(entry_ids)
        if not todo:
            return 0
        marks = ",".join("?" * len(todo))
        return self._write(
            f"UPDATE unreadable SET resolved_at = ? WHERE resolved_at IS NULL AND id IN ({marks})",
            (when, *todo),
        ).rowcount

    def clear_unreadable(self, product_id: int | None = None) -> int:
        """Delete the log entries (all, or one product's); returns how many."""
        if product_id is None:
            return self._write("DELETE FROM unreadable").rowcount
        return self._write("DELETE FROM unreadable WHERE product_id = ?", (product_id,)).rowcount

    def start_run(self, mode: str, product_filter: Sequence[int], since: str | None) -> int:
        """Record a run as running; its id (0: a run that is not recorded)."""
        # Runs start only under the writer lock, so a run still marked running is one whose
        # process died (kill -9, a crash) before it could record how it ended.
        self._write(
            "UPDATE sync_runs SET status = ?, error = coalesce(error, ?) WHERE status = ?",
            (
                RunStatus.FAILED,
                "the process ended before the run finished (killed or crashed)",
                RunStatus.RUNNING,
            ),
        )
        cursor = self._write(
            "INSERT INTO sync_runs (mode, status, started_at, product_filter, since) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                mode,
                RunStatus.RUNNING,
                utc_now(),
                json.dumps(list(product_filter)) if product_filter else None,
                since,
            ),
        )
        return int(cursor.lastrowid or 0)

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        requests: int,
        counts: dict[str, Any],
        error: str | None,
    ) -> None:
        if not run_id:
            return
        self._write(
            "UPDATE sync_runs SET status = ?, ended_at = ?, requests = ?, counts = ?, error = ? "
            "WHERE id = ?",
            (status, utc_now(), requests, json.dumps(counts), error, run_id),
        )

    def copy_history_from(self, other: Path) -> None:
        """Copy another mirror's ``sync_runs`` and ``changes`` into this (new, empty) one:
        the audit trail and the change feed.

        A nuke's own row, 'running' in the live mirror, comes along: the rebuild finishes it
        (it has no change rows yet: the rebuild records them).
        """
        self._write("ATTACH DATABASE ? AS previous", (str(other),))
        try:
            with self.transaction():
                self._write("INSERT INTO sync_runs SELECT * FROM previous.sync_runs ORDER BY id")
                cols = ", ".join(("id", *feed.COLUMNS))
                self._write(
                    f"INSERT INTO changes ({cols}) SELECT {cols} FROM previous.changes ORDER BY id"
                )
        finally:
            self._write("DETACH DATABASE previous")

    def differing_ids(self, other: Path, table: str, product_ids: Sequence[int]) -> set[int]:
        """Ids of these products' rows that differ between this mirror and ``other`` in
        what the change feed compares (present, marked gone, a tracked field): the rows a
        nuke's rebuild may have changed. SQLite compares; ``feed.diff_rebuild`` decides."""
        owner = "id" if table == "products" else "product_id"
        differs = " OR ".join(f"o.{c} IS NOT n.{c}" for c in feed.TRACKED[table])
        marks = ",".join("?" * len(product_ids))
        self._write("ATTACH DATABASE ? AS other", (str(other),))
        try:
            rows = self.query(
                f"SELECT n.id FROM main.{table} n LEFT JOIN other.{table} o ON o.id = n.id "
                f"WHERE n.{owner} IN ({marks}) AND (o.id IS NULL OR "
                f"(o.deleted_upstream_at IS NULL) <> (n.deleted_upstream_at IS NULL) OR "
                f"{differs}) "
                f"UNION SELECT o.id FROM other.{table} o LEFT JOIN main.{table} n "
                f"ON n.id = o.id WHERE o.{owner} IN ({marks}) AND n.id IS NULL",
                (*product_ids, *product_ids),
            )
        finally:
            self._write("DETACH DATABASE other")
        return {int(row["id"]) for row in rows}

    def replace_products(
        self,
        aside: Path,
        product_ids: Sequence[int],
        *,
        also: Callable[[], None] | None = None,
    ) -> None:
        """Swap in the rebuilt tests, bugs and features of some products, in one transaction.

        ``aside`` is a mirror that holds exactly those products, freshly read. Every other
        product, and every table a user made, stays as it is. ``also`` runs inside the same
        transaction (the nuke records its outcome with the rows it swapped in).

        The history stays: ``changes`` rows of these products are not deleted, and the
        aside's change rows (what the rebuild changed against this mirror, recorded under
        the nuke's run row here, see ``sync.Engine``) are added.
        """
        marks = ",".join("?" * len(product_ids))
        ids = tuple(product_ids)
        self._write("ATTACH DATABASE ? AS aside", (str(aside),))
        try:
            with self.transaction():
                for table in ("bugs", "tests", "features", "product_state", "unreadable"):
                    self._write(f"DELETE FROM {table} WHERE product_id IN ({marks})", ids)
                for table in ("tests", "bugs", "features"):
                    extra = ("bugs_read_at",) if table == "tests" else ()
                    cols = ", ".join((*COLUMNS[table], *extra, "deleted_upstream_at"))
                    self._write(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM aside.{table}")
                cols = ", ".join(COLUMNS["products"])
                updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS["products"][1:])
                self._write(
                    f"INSERT INTO products ({cols}) SELECT {cols} FROM aside.products WHERE true "
                    f"ON CONFLICT(id) DO UPDATE SET {updates}, deleted_upstream_at = NULL"
                )
                self._write("INSERT INTO product_state SELECT * FROM aside.product_state")
                cols = ", ".join(feed.COLUMNS)
                self._write(
                    f"INSERT INTO changes ({cols}) SELECT {cols} FROM aside.changes ORDER BY id"
                )
                if also is not None:
                    also()
        finally:
            self._write("DETACH DATABASE aside")


class DryRunStore(Store):
    """The dry run's store (``Store.open_dry_run``): every write lands in a scratch copy.

    The one thing it does not do is record a run: what a dry run did is its result, and
    the mirror's history holds the runs that wrote.
    """

    _mode = "dry run: a scratch copy"

    def start_run(self, mode: str, product_filter: Sequence[int], since: str | None) -> int:
        return 0
