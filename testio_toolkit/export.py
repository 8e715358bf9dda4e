"""The team's copy: the mirror's tables loaded into DuckDB, Postgres or a warehouse by dlt.

Usage::

    tt.export()                                  # team.duckdb beside the mirror
    tt.export(destination="duckdb:/shared/team.duckdb")
    tt.export(destination="postgres")            # credentials from dlt's config, see below
    tt.export(destination="bigquery", account="acme")   # any dlt destination, by name
    # CLI: testio-toolkit export --to postgres

Needs the ``export`` extra (``pip install 'testio-toolkit[export]'``): dlt, DuckDB,
psycopg2 and pyarrow. The core imports none of them.

What goes across, one dataset (schema) per account, named ``account`` (by default after the
mirror file: ``sandbox.db`` -> ``sandbox``): ``products``, ``tests``, ``bugs``, ``features``
(merged on ``id``) and ``changes`` (the change feed, appended, never rewritten), as typed
columns (``EXPORTED``): integers, booleans, UTC timestamps, the enumerations as text. Rows
gone upstream stay, with ``deleted_upstream_at`` set; the views ``live_products``,
``live_tests``, ``live_bugs`` and ``live_features`` hold the rest (on SQL destinations; on
others: ``WHERE deleted_upstream_at IS NULL``). ``raw`` (the service's JSON, as ingestion
stored it) only with ``include_raw=True``; the run history and the unreadable log only with
``include_local=True``; columns a user added to the mirror never. With
``pseudonymize=True`` bug authors become ``tester-<12 hex>``, an HMAC-SHA256 of the name
under the key in ``TESTIO_PSEUDONYM_KEY``: the same key gives the same pseudonym in every
export (so a team's copies join), and without the key the name cannot be recovered.

Incremental, and safe to repeat: every entity row carries ``row_hash``, a hash of its
exported values (``synced_at`` left out: a nuke that changed nothing moves nothing), and
the export sends only rows the destination does not hold with that hash; change rows are
sent from the destination's highest ``changes.id`` on. To avoid hashing the whole mirror
each time, the export records in the dataset's ``testio_account`` row how far it read
(``exported_through``: the newest ``synced_at``/``deleted_upstream_at`` it saw, or the start
of a run still going), once the rows are in; the next export reads only rows stamped since
then (``incremental_since`` says when the mark is not trusted: another mirror file, a
restored backup, other options, a clock set back; then every row is compared). So the state
is the destination itself (dlt keeps its own in ``_dlt_*`` tables there too): an export
after a no-change refresh loads 0 rows, two people exporting the same account one after the
other each send only what the destination lacks, and a failed export is simply repeated.
Two exports into one dataset at the same time are refused (Postgres: an advisory lock;
DuckDB: its file lock). A dataset holding another account (``testio_account``: its product
ids, by the rule of ``account.same_account``) is refused too.

Postgres credentials never come from an argument (it would land in shell history and logs):
``DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:password@host:5432/db`` in the
environment, or ``[destination.postgres] credentials = "..."`` in ``.dlt/secrets.toml``,
as dlt reads them; the same goes for every other destination (see dlt's docs).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import account
from .errors import ConfigError, ExportError, StoreError
from .store import Reader, utc_now

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

PSEUDONYM_KEY_VARIABLE = "TESTIO_PSEUDONYM_KEY"
ROW_HASH = "row_hash"
ACCOUNT_TABLE = "testio_account"
ENTITIES = ("products", "tests", "bugs", "features")
LOCAL_TABLES = ("sync_runs", "unreadable")

# What each exported table holds: column -> kind ("int", "bool", "time", "text"), id first.
# A column not listed (bookkeeping such as tests.bugs_read_at, a user's own column) stays
# local. ``raw`` is added after these with include_raw.
EXPORTED: dict[str, dict[str, str]] = {
    "products": {
        "id": "int",
        "name": "text",
        "type": "text",
        "description": "text",
        "sectioned": "bool",
        "synced_at": "time",
        "deleted_upstream_at": "time",
    },
    "tests": {
        "id": "int",
        "product_id": "int",
        "title": "text",
        "status": "text",
        "testing_type": "text",
        "start_at": "time",
        "end_at": "time",
        "created_at": "time",
        "synced_at": "time",
        "deleted_upstream_at": "time",
    },
    "bugs": {
        "id": "int",
        "test_id": "int",
        "product_id": "int",
        "title": "text",
        "severity": "text",
        "status": "text",
        "known": "bool",
        "auto_accepted": "bool",
        "created_at": "time",
        "author": "text",
        "synced_at": "time",
        "deleted_upstream_at": "time",
    },
    "features": {
        "id": "int",
        "product_id": "int",
        "section_id": "int",
        "title": "text",
        "description": "text",
        "howtofind": "text",
        "user_stories": "text",
        "synced_at": "time",
        "deleted_upstream_at": "time",
    },
    "changes": {
        "id": "int",
        "run_id": "int",
        "mode": "text",
        "at": "time",
        "entity": "text",
        "entity_id": "int",
        "product_id": "int",
        "test_id": "int",
        "kind": "text",
        "field": "text",
        "old": "text",
        "new": "text",
    },
    "sync_runs": {
        "id": "int",
        "mode": "text",
        "status": "text",
        "started_at": "time",
        "ended_at": "time",
        "product_filter": "text",
        "since": "time",
        "requests": "int",
        "counts": "text",
        "error": "text",
    },
    "unreadable": {
        "id": "int",
        "product_id": "int",
        "kind": "text",
        "position": "int",
        "record_id": "int",
        "prev_id": "int",
        "next_id": "int",
        "error": "text",
        "first_seen_at": "time",
        "last_tried_at": "time",
        "attempts": "int",
        "resolved_at": "time",
    },
}
# The mirror stores every timestamp as this UTC text (rows.utc_text).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The default destination: one file beside the mirrors, one dataset per account in it.
DEFAULT_DUCKDB = "team.duckdb"
EXTRA = "pip install 'testio-toolkit[export]'  (or: uv add 'testio-toolkit[export]')"


def available() -> bool:
    """True when the export extra (dlt) is installed: ``tt.export`` can run."""
    try:
        import dlt  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _dlt() -> Any:
    try:
        os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no network but the load
        import dlt
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"the export needs the 'export' extra ({exc.name} is not installed): {EXTRA}"
        ) from None
    return dlt


# -- pure decisions ----------------------------------------------------------------------


def dataset_name(mirror_path: Path, account_name: str | None = None) -> str:
    """The dataset (schema) an account's tables go to: ``account_name``, or the mirror file's
    stem (``sandbox.db`` -> ``"sandbox"``), as a lower-case SQL identifier."""
    name = account_name if account_name else mirror_path.stem
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    if not cleaned:
        raise ConfigError(f"account {name!r} gives no usable dataset name: use letters or digits")
    return cleaned if not cleaned[0].isdigit() else f"a_{cleaned}"


def pseudonym(name: str, key: bytes) -> str:
    """A tester's stable pseudonym: ``tester-`` and 12 hex of HMAC-SHA256(key, name)."""
    return "tester-" + hmac.new(key, name.encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def row_hash(values: Sequence[Any]) -> int:
    """A 64-bit signed hash of a row's exported values (equal values, equal hash)."""
    digest = hashlib.blake2b(repr(tuple(values)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def pseudonymize_raw(raw: str, key: bytes) -> str:
    """A bug's raw JSON with its author's and its comments' authors' names pseudonymized."""
    obj = orjson.loads(raw)
    for holder in [obj, *(obj.get("comments") or [])]:
        author = holder.get("author") if isinstance(holder, dict) else None
        if isinstance(author, dict) and isinstance(author.get("name"), str):
            author["name"] = pseudonym(author["name"], key)
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True)
class Target:
    """Where an export goes: a dlt destination name, and a DuckDB file when it is one."""

    name: str
    duckdb_file: Path | None = None


def parse_destination(spec: str | None, mirror_path: Path) -> Target:
    """``None``/``"duckdb"`` -> ``team.duckdb`` beside the mirror; ``"duckdb:PATH"`` or a
    ``*.duckdb`` path -> that file; any other word -> that dlt destination (credentials from
    dlt's configuration). A connection string is refused: it would carry a password."""
    text = (spec or "duckdb").strip()
    if "://" in text or "@" in text:
        raise ConfigError(
            "pass the destination's name (for example --to postgres), not a connection string: "
            "put credentials in DESTINATION__POSTGRES__CREDENTIALS or .dlt/secrets.toml, where "
            "they stay out of shell history and logs"
        )
    if text == "duckdb":
        return Target("duckdb", mirror_path.with_name(DEFAULT_DUCKDB))
    if text.startswith("duckdb:"):
        return Target("duckdb", Path(text.removeprefix("duckdb:")).expanduser())
    if text.endswith(".duckdb"):
        return Target("duckdb", Path(text).expanduser())
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.]*", text):
        raise ConfigError(f"destination {text!r} is not a dlt destination name nor a .duckdb file")
    return Target(text)


# -- the result --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    """What ``tt.export()`` loaded: rows per table (0: nothing new), where, how long.

    >>> result = tt.export()
    >>> result.rows            # {'products': 3, 'tests': 150, 'bugs': 600, ...}
    >>> result.total, result.destination, result.dataset
    """

    destination: str
    dataset: str
    rows: dict[str, int]
    seconds: float
    views: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        """Rows loaded, all tables together."""
        return sum(self.rows.values())

    def lines(self) -> list[str]:
        """The result as text lines (the CLI prints them)."""
        moved = ", ".join(f"{table} {count}" for table, count in self.rows.items())
        return [
            f"exported {self.total} rows to {self.destination}, dataset {self.dataset} "
            f"in {self.seconds:.1f}s",
            f"  {moved}",
        ]

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td>{escape(table)}</td><td style='text-align:right'>{count}</td></tr>"
            for table, count in self.rows.items()
        )
        return (
            f"<div><b>Exported {self.total} rows</b> to <code>{escape(self.destination)}</code>,"
            f" dataset <code>{escape(self.dataset)}</code> in {self.seconds:.1f}s"
            f"<table><tr><th>table</th><th>rows loaded</th></tr>{cells}</table></div>"
        )


# -- reading the mirror --------------------------------------------------------------------


@dataclass
class Snapshot:
    """The mirror's exported rows, read in one transaction (column order of ``columns``).

    ``since``: the entity rows were read from this stamp on (None: all of them); ``marker``
    is what the export records in the destination's ``testio_account`` once it loaded."""

    columns: dict[str, list[str]]
    rows: dict[str, list[tuple[Any, ...]]]
    product_ids: list[int]
    since: str | None
    marker: dict[str, Any]


def incremental_since(
    marker: dict[str, Any] | None,
    *,
    mirror: str | None,
    run_state: str | None,
    earliest_new_run: str | None,
    options: str,
) -> tuple[str, bool] | None:
    """From which stamp (``synced_at``/``deleted_upstream_at``) the entity rows may differ
    from the destination, and whether rows of that very stamp may too (``True``: read them,
    ``>=``; ``False``: only later ones, ``>``), or None (compare them all).

    The last export recorded ``exported_through``: no row of the mirror it read was written
    later with an older stamp (a run stamps its rows with its start, runs take turns under
    the writer lock, and a run still going lowered the mark to its start). That holds only
    for the same mirror file (its salt), not restored to a backup (``run_state``: the run
    the mark was taken after, as this file has it now, must be as it was then: a backup
    holds its nuke as still running), with the clock not set back (a newer run that started
    earlier) and the same options. Rows of the mark's own stamp were all read (``through_
    closed`` 1) when no run was going and the export began a second later than the stamp: a
    later run's stamp is then later (the stamps are whole seconds).
    """
    if marker is None or not marker.get("exported_through") or mirror is None:
        return None
    if marker.get("mirror") != mirror or marker.get("options") != options:
        return None
    if run_state != marker.get("mirror_run_state"):
        return None  # a restore brought back another file
    through = str(marker["exported_through"])
    closed = bool(int(marker.get("through_closed") or 0))
    if earliest_new_run is not None and (
        earliest_new_run <= through if closed else earliest_new_run < through
    ):
        return None
    return through, not closed


def read_mirror(
    path: Path,
    tables: Sequence[str],
    *,
    include_raw: bool,
    pseudonym_key: bytes | None,
    changes_after: int,
    marker: dict[str, Any] | None = None,
    options: str = "",
) -> Snapshot:
    """Read what goes across from the mirror at ``path``: read-only, one transaction.

    Entity rows are read from ``incremental_since(marker, ...)`` on, with every row of a
    product whose own row is that recent (a product that came back unmarks its rows without
    restamping them); the change feed after ``changes_after``.
    """
    if not path.exists():
        raise StoreError(f"{path} does not exist: sync first (tt.sync())", path=str(path))
    reader = Reader.open_read_only(path)
    columns: dict[str, list[str]] = {}
    rows: dict[str, list[tuple[Any, ...]]] = {}
    try:
        conn = reader.conn
        conn.execute("BEGIN")
        mirror = reader.get_meta("account_salt")
        running = conn.execute(
            "SELECT min(started_at) FROM sync_runs WHERE status = 'running'"
        ).fetchone()[0]
        last_run, last_state = conn.execute(
            "SELECT coalesce(max(id), 0), max(status || '@' || coalesce(ended_at, '')) "
            "FROM sync_runs WHERE id = (SELECT max(id) FROM sync_runs WHERE status != 'running')"
        ).fetchone()
        marked_run = int((marker or {}).get("mirror_run") or 0)
        state, earliest = conn.execute(
            "SELECT (SELECT status || '@' || coalesce(ended_at, '') FROM sync_runs WHERE id = ?),"
            " (SELECT min(started_at) FROM sync_runs WHERE id > ?)",
            (marked_run, marked_run),
        ).fetchone()
        began = utc_now()  # after the transaction's first read: the snapshot is taken
        found = incremental_since(
            marker, mirror=mirror, run_state=state, earliest_new_run=earliest, options=options
        )
        since, op = (found[0], ">=" if found[1] else ">") if found else (None, ">=")
        recent = f"(synced_at {op} :since OR deleted_upstream_at {op} :since)"
        stamps: list[str] = []
        for table in tables:
            names = list(EXPORTED[table])
            if include_raw and table in ENTITIES:
                names.append("raw")
            columns[table] = names
            quoted = ", ".join(f'"{name}"' for name in names)
            where, params = "", {"since": since, "after": changes_after}
            if table == "changes":
                where = "WHERE id > :after"
            elif table in ENTITIES and since is not None:
                where = f"WHERE {recent}"
                if table != "products":
                    where += f" OR product_id IN (SELECT id FROM products WHERE {recent})"
            cursor = conn.execute(f"SELECT {quoted} FROM {table} {where} ORDER BY id", params)
            rows[table] = cursor.fetchall()
            if table in ENTITIES:
                stamps += [v for v in conn.execute(
                    f"SELECT max(synced_at), max(deleted_upstream_at) FROM {table}"
                ).fetchone() if v]  # fmt: skip
        product_ids = [r[0] for r in conn.execute("SELECT id FROM products ORDER BY id")]
        source = reader.get_meta("source")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path} to export it: {exc}", path=str(path)) from None
    finally:
        reader.close()
    if pseudonym_key is not None:
        author = columns["bugs"].index("author")
        raw = columns["bugs"].index("raw") if include_raw else None
        rows["bugs"] = [
            _pseudonymized(row, author, raw, pseudonym_key) for row in rows.get("bugs", [])
        ]
    newest = max(stamps, default="")
    through = min([newest, *([running] if running else [])])
    closed = int(not running and bool(newest) and began > newest)
    new_marker = {
        "source": _source_kind(source),
        "products": orjson.dumps(product_ids).decode(),
        "mirror": mirror,
        "mirror_run": int(last_run),
        "mirror_run_state": last_state,
        "exported_through": through or None,
        "through_closed": closed,
        "options": options,
    }
    return Snapshot(columns, rows, product_ids, since, new_marker)


def _pseudonymized(
    row: tuple[Any, ...], author: int, raw: int | None, key: bytes
) -> tuple[Any, ...]:
    values = list(row)
    if values[author] is not None:
        values[author] = pseudonym(values[author], key)
    if raw is not None and values[raw] is not None:
        values[raw] = pseudonymize_raw(values[raw], key)
    return tuple(values)


def to_arrow(table: str, names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """Rows of a mirror table as an arrow table with one type per column (``EXPORTED``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kinds = {**EXPORTED[table], "raw": "text", ROW_HASH: "int"}
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    values_by_column = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    for name, values in zip(names, values_by_column, strict=True):
        kind = kinds[name]
        if kind == "int":
            array = pa.array(values, pa.int64())
        elif kind == "bool":
            array = pa.array([None if v is None else bool(v) for v in values], pa.bool_())
        elif kind == "time":
            text = pa.array(values, pa.string())
            array = pc.strptime(text, format=TIME_FORMAT, unit="s").cast(
                pa.timestamp("us", tz="UTC")
            )
        else:
            array = pa.array(values, pa.string())
        arrays.append(array)
        fields.append(pa.field(name, array.type, nullable=name != "id"))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# -- the export ----------------------------------------------------------------------------


@dataclass
class _Known:
    """What the destination already holds of this dataset."""

    last_change: int = 0
    marker: dict[str, Any] | None = None

    @property
    def products(self) -> list[int] | None:
        if self.marker is None:
            return None
        return [int(i) for i in orjson.loads(self.marker["products"])]


def export_mirror(
    mirror_path: Path,
    destination: str | None = None,
    account_name: str | None = None,
    *,
    include_raw: bool = False,
    include_local: bool = False,
    pseudonymize: bool = False,
    progress: bool = True,
) -> ExportResult:
    """Load the mirror at ``mirror_path`` into ``destination`` (see the module's docstring).

    Reads the mirror read-only; a failure leaves it as it was and the next export completes
    (it sends whatever the destination still lacks).
    """
    started = time.monotonic()
    dlt = _dlt()
    target = parse_destination(destination, mirror_path)
    dataset = dataset_name(mirror_path, account_name)
    if target.duckdb_file is not None and target.duckdb_file.stem.lower() == dataset:
        raise ConfigError(
            f"the DuckDB file {target.duckdb_file.name} and the dataset {dataset} share a name, "
            "which DuckDB cannot tell apart: pick another file name or account"
        )
    key = _pseudonym_key() if pseudonymize else None
    tables = [*ENTITIES, "changes", *(LOCAL_TABLES if include_local else ())]
    working = Path(tempfile.mkdtemp(prefix="testio-export-"))
    try:
        pipeline = _pipeline(dlt, target, dataset, working, progress)
        with _destination_session(pipeline, target, dataset) as session:
            known = session.known()
            snapshot = read_mirror(
                mirror_path,
                tables,
                include_raw=include_raw,
                pseudonym_key=key,
                changes_after=known.last_change,
                marker=known.marker,
                options=_options_word(include_raw, key),
            )
            _check_account(known, snapshot, dataset, target)
            resources = list(_resources(dlt, snapshot, session))
            counts: dict[str, int] = {}
            if resources:
                _run(pipeline, resources, target)
                counts = dict(pipeline.last_trace.last_normalize_info.row_counts)
            marker = {"dataset": dataset, **snapshot.marker}
            if known.marker is None or marker != {**known.marker, "dataset": dataset}:
                # Only once the rows are in: a failed load leaves the old mark.
                _run(pipeline, [_marker_resource(dlt, marker)], target)
            views = _make_views(pipeline)
    finally:
        shutil.rmtree(working, ignore_errors=True)
    return ExportResult(
        destination=_describe(target, pipeline),
        dataset=dataset,
        rows={table: int(counts.get(table, 0)) for table in tables},
        seconds=time.monotonic() - started,
        views=views,
    )


def _options_word(include_raw: bool, key: bytes | None) -> str:
    """What shapes the exported values besides the mirror: raw, and the pseudonym key (as a
    fingerprint). Another word means every row is compared again."""
    pseudonyms = "-"
    if key is not None:
        pseudonyms = hmac.new(key, b"testio-pseudonym-check", hashlib.sha256).hexdigest()[:12]
    return f"raw={int(include_raw)};pseudonyms={pseudonyms}"


def _pseudonym_key() -> bytes:
    key = os.environ.get(PSEUDONYM_KEY_VARIABLE, "")
    if len(key) < 16:
        raise ConfigError(
            f"pseudonymize needs a key of at least 16 characters in {PSEUDONYM_KEY_VARIABLE} "
            "(the same key for the whole team gives the same pseudonyms)"
        )
    return key.encode("utf-8")


def _pipeline(dlt: Any, target: Target, dataset: str, working: Path, progress: bool) -> Any:
    from dlt.common.destination.exceptions import UnknownDestinationModule

    try:
        if target.duckdb_file is not None:
            if not target.duckdb_file.parent.is_dir():
                raise ConfigError(f"the folder {target.duckdb_file.parent} does not exist")
            where = dlt.destinations.duckdb(credentials=str(target.duckdb_file))
        else:
            where = dlt.destinations.postgres() if target.name == "postgres" else target.name
        return dlt.pipeline(
            pipeline_name=f"testio_export_{dataset}",
            destination=where,
            dataset_name=dataset,
            pipelines_dir=str(working),
            progress="tqdm" if progress else None,
        )
    except UnknownDestinationModule:
        raise ConfigError(
            f"unknown destination {target.name!r}: use duckdb (the default), duckdb:PATH, "
            "postgres, or another dlt destination's name (bigquery, snowflake, motherduck, "
            "...) with its package installed"
        ) from None


class _destination_session:
    """Open the destination, refuse a concurrent export there, and read what it holds."""

    def __init__(self, pipeline: Any, target: Target, dataset: str) -> None:
        self.pipeline, self.target, self.dataset = pipeline, target, dataset
        self.client: Any = None
        self.empty = False  # no dataset there yet

    def __enter__(self) -> _destination_session:
        try:
            self.client = self.pipeline.sql_client()
            self.client.open_connection()
        except Exception as exc:
            raise _translate(exc, self.target, self.pipeline) from None
        try:
            self._lock()
            return self
        except BaseException:
            self._close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        if self.client is not None:
            try:
                self.client.close_connection()
            except Exception:
                log.debug("closing the destination connection failed", exc_info=True)
            self.client = None

    def _lock(self) -> None:
        if self.target.name != "postgres":
            return  # DuckDB holds a file lock; other destinations: see the module docstring
        key = row_hash(("testio-export", self.dataset))
        held = self.client.execute_sql("SELECT pg_try_advisory_lock(%s)", key)[0][0]
        if not held:
            raise ExportError(
                f"another export into dataset {self.dataset} of this Postgres is running: "
                "wait for it to finish and export again"
            )

    def _query(self, sql: str) -> list[tuple[Any, ...]] | None:
        from dlt.destinations.exceptions import DatabaseUndefinedRelation

        try:
            return list(self.client.execute_sql(sql) or [])
        except DatabaseUndefinedRelation:
            return None

    def known(self) -> _Known:
        """The destination's last change id and account row (none: a new dataset)."""
        known = _Known()
        if not self.client.has_dataset():
            self.empty = True
            return known
        name = self.client.make_qualified_table_name
        last = self._query(f"SELECT max(id) FROM {name('changes')}")
        known.last_change = int(last[0][0] or 0) if last else 0
        columns = (
            "products",
            "mirror",
            "mirror_run",
            "mirror_run_state",
            "exported_through",
            "through_closed",
            "options",
            "source",
        )
        quoted = ", ".join(self.client.escape_column_name(c) for c in columns)
        found = self._query(f"SELECT {quoted} FROM {name(ACCOUNT_TABLE)}")
        if found is None:  # an older account table: products only
            found = [
                (r[0], None, None, None, None, None, None, None)
                for r in self._query(f"SELECT products FROM {name(ACCOUNT_TABLE)}") or []
            ]
        if found:
            known.marker = dict(zip(columns, found[0], strict=True))
            if known.marker["mirror_run"] is not None:
                known.marker["mirror_run"] = int(known.marker["mirror_run"])
        return known

    def hashes(self, table: str, ids: Sequence[int] | None) -> dict[int, int]:
        """The destination's ``row_hash`` per id of ``table``: of ``ids``, or all (None)."""
        if self.empty:
            return {}
        name = self.client.make_qualified_table_name(table)
        sql = f"SELECT id, {ROW_HASH} FROM {name}"
        if ids is None or len(ids) > 20_000:
            found = self._query(sql) or []
        else:
            found = []
            for start in range(0, len(ids), 1000):
                chunk = ",".join(str(int(i)) for i in ids[start : start + 1000])
                found += self._query(f"{sql} WHERE id IN ({chunk})") or []
        return {int(i): int(h) for i, h in found if h is not None}


def _check_account(known: _Known, snapshot: Snapshot, dataset: str, target: Target) -> None:
    if known.products is None:
        return
    if not account.same_account(None, known.products, "", snapshot.product_ids):
        raise ExportError(
            f"dataset {dataset} at {target.duckdb_file or target.name} holds another account "
            f"(its products: {_few(known.products)}; this mirror's: "
            f"{_few(snapshot.product_ids)}): export with another account name "
            "(tt.export(account=...), --account) or to another destination"
        )


def _few(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:5])
    return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _resources(dlt: Any, snapshot: Snapshot, session: _destination_session) -> Iterator[Any]:
    for table, names in snapshot.columns.items():
        rows = snapshot.rows[table]
        if table == "changes":
            if rows:
                yield _resource(dlt, table, to_arrow(table, names, rows), "append")
            continue
        if not rows:
            continue
        incremental = snapshot.since is not None and table in ENTITIES
        stored = session.hashes(table, [row[0] for row in rows] if incremental else None)
        hashed = [row for row in _with_hashes(names, rows) if stored.get(row[0]) != row[-1]]
        if hashed:
            yield _resource(dlt, table, to_arrow(table, [*names, ROW_HASH], hashed), "merge")


def _marker_resource(dlt: Any, marker: dict[str, Any]) -> Any:
    return dlt.resource(
        [marker],
        name=ACCOUNT_TABLE,
        write_disposition="merge",
        primary_key="dataset",
        columns={
            "mirror_run": {"data_type": "bigint"},
            "mirror_run_state": {"data_type": "text"},
            "exported_through": {"data_type": "text"},
            "through_closed": {"data_type": "bigint"},
        },
    )


def _with_hashes(names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each row with its ``row_hash`` appended (of every value but ``synced_at``)."""
    skip = list(names).index("synced_at")
    return [(*row, row_hash(row[:skip] + row[skip + 1 :])) for row in rows]


def _source_kind(source: str | None) -> str:
    # The sandbox's URL names a local port that changes every time: say what it is instead.
    if source is None or "127.0.0.1" in source or "localhost" in source:
        return "sandbox"
    return source


def _resource(dlt: Any, table: str, data: pa.Table, disposition: str) -> Any:
    return dlt.resource(
        [data],
        name=table,
        write_disposition=disposition,
        primary_key="id",
    )


def _run(pipeline: Any, resources: list[Any], target: Target) -> None:
    try:
        pipeline.run(resources)
    except Exception as exc:
        raise _translate(exc, target, pipeline) from None


def _make_views(pipeline: Any) -> tuple[str, ...]:
    """``live_<table>``: the rows not gone upstream, on destinations that take SQL views."""
    made: list[str] = []
    try:
        with pipeline.sql_client() as client:
            name = client.make_qualified_table_name
            for table in ENTITIES:
                client.execute_sql(
                    f"CREATE OR REPLACE VIEW {name('live_' + table)} AS SELECT * FROM "
                    f"{name(table)} WHERE deleted_upstream_at IS NULL"
                )
                made.append(f"live_{table}")
    except Exception:
        log.info("no live_* views at this destination", exc_info=True)
    return tuple(made)


def _describe(target: Target, pipeline: Any) -> str:
    if target.duckdb_file is not None:
        return f"duckdb {target.duckdb_file}"
    try:
        credentials = pipeline.destination_client().config.credentials
        shown = credentials.to_url().render_as_string(hide_password=True)
    except Exception:
        return target.name
    return f"{target.name} {shown}"


_WHAT_TO_CHECK = (
    "DESTINATION__{NAME}__CREDENTIALS in the environment or [destination.{name}] "
    "credentials in .dlt/secrets.toml"
)


def _translate(exc: BaseException, target: Target, pipeline: Any) -> ExportError | ConfigError:
    """A dlt or driver failure as an error that says what to check (never a password)."""
    chain = _chain_text(exc)
    where = str(target.duckdb_file) if target.duckdb_file else target.name
    check = _WHAT_TO_CHECK.format(NAME=target.name.upper(), name=target.name)
    lowered = chain.lower()
    if "no space left" in lowered or "disk is full" in lowered or "errno 28" in lowered:
        why = f"the disk holding {where} is full: free space there and export again"
    elif "password authentication failed" in lowered or "authentication failed" in lowered:
        why = f"{target.name} refused the user or password: check {check}"
    elif "could not connect" in lowered or "connection refused" in lowered or "timeout" in lowered:
        why = f"cannot reach {_describe(target, pipeline)}: is the server running? check {check}"
    elif "missing" in lowered and "credentials" in lowered:
        return ConfigError(f"no credentials for {target.name}: set {check}")
    elif "could not set lock" in lowered or "conflicting lock" in lowered:
        why = f"{where} is open in another program (another export?): close it, export again"
    else:
        why = f"loading into {where} failed: {_scrub(chain.splitlines()[-1] if chain else '')}"
    return ExportError(f"{why}; the mirror is untouched")


def _chain_text(exc: BaseException) -> str:
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        inner = getattr(current, "exception", None)
        current = (
            inner
            if isinstance(inner, BaseException)
            else (current.__cause__ or current.__context__)
        )
    return "\n".join(parts)


def _scrub(text: str) -> str:
    # A connection string in a driver's message: keep the host, never the password.
    return re.sub(r"(\w+://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)[:500]
