"""pandas views of the mirror. The only module that imports pandas.

Usage::

    tt.tests(product=12, status="running", since="30d")
    tt.bugs(severity=["high", "critical"]).groupby("product")["id"].count()

Every reader opens its own read-only connection, so it never waits for a running sync (WAL)
and always sees the database that is in place now, also right after a nuke swapped it.
Timestamps are ``datetime64[ns, UTC]``; status, severity and testing type are categoricals;
ids are nullable integers. Rows marked gone upstream are left out unless
``include_deleted=True``. Columns a user added to a table come along.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError
from .rows import Moment, parse_since
from .store import Store, translate_error
from .vocabulary import (
    SCRUB,
    BugStatus,
    ChangeKind,
    Entity,
    Mode,
    RunStatus,
    Severity,
    TestingType,
    TestStatus,
)

TEST_STATUSES = tuple(status.value for status in TestStatus)
TESTING_TYPES = tuple(kind.value for kind in TestingType)
BUG_STATUSES = tuple(status.value for status in BugStatus)
SEVERITIES = tuple(severity.value for severity in Severity)
RUN_STATUSES = tuple(status.value for status in RunStatus)
ENTITIES = tuple(entity.value for entity in Entity)
CHANGE_KINDS = tuple(kind.value for kind in ChangeKind)

_TIMES = (
    "start_at",
    "end_at",
    "created_at",
    "synced_at",
    "deleted_upstream_at",
    "started_at",
    "ended_at",
    "first_seen_at",
    "last_tried_at",
    "resolved_at",
    "test_end_at",
    "bugs_read_at",
    "last_complete_read_at",
    "since",
    "at",
    "last_synced_at",
)
_IDS = (
    "id",
    "product_id",
    "test_id",
    "section_id",
    "record_id",
    "prev_id",
    "next_id",
    "run_id",
    "entity_id",
    "feature_id",
    "test_feature_id",
)
_CATEGORIES: dict[str, tuple[str, ...]] = {
    "status": (),  # filled per frame: tests and bugs use different status lists
    "testing_type": TESTING_TYPES,
    "severity": SEVERITIES,
    "mode": (*(str(m) for m in Mode), SCRUB),
    "entity": ENTITIES,
    "kind": CHANGE_KINDS,
}
Filter = int | str | Iterable[int | str] | None


def _values(value: Filter) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, int | str):
        return [value]
    return list(value)


def _known(path: Path, sql: str) -> list[Any]:
    with Store.open_read_only(path) as store:
        try:
            return [row[0] for row in store.conn.execute(sql)]
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from None


def _products(path: Path, value: Filter) -> list[int]:
    """Product ids for ``product=``: ids (or their text) and names, case-insensitive.

    An unknown product raises ConfigError naming the products the mirror holds: a filter
    that matches nothing by mistake must not look like an empty answer.
    """
    wanted = _values(value)
    if not wanted:
        return []
    held = {int(pid): str(name) for pid, name in _pairs(path)}
    by_name = {name.casefold(): pid for pid, name in held.items()}
    ids, unknown = [], []
    for item in wanted:
        text = str(item).strip()
        if isinstance(item, int) or text.isdigit():
            pid: int | None = int(text)
            if pid not in held:
                pid = None
        else:
            pid = by_name.get(text.casefold())
        if pid is None:
            unknown.append(item)
        else:
            ids.append(pid)
    if unknown:
        shown = ", ".join(f"{pid} {name!r}" for pid, name in sorted(held.items())[:20])
        more = f" and {len(held) - 20} more" if len(held) > 20 else ""
        valid = f"the mirror holds {shown}{more}" if held else "the mirror holds no products yet"
        names = ", ".join(repr(u) for u in unknown)
        raise ConfigError(f"unknown product {names}: {valid} (give an id or a name)")
    return ids


def product_ids(path: Path, value: Filter) -> list[int]:
    """The ids of products given by id or name, as ``product=`` takes them (see above)."""
    return _products(path, value)


def _pairs(path: Path) -> list[tuple[int, str]]:
    with Store.open_read_only(path) as store:
        try:
            return [
                (int(r[0]), str(r[1])) for r in store.conn.execute("SELECT id, name FROM products")
            ]
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from None


def _choices(path: Path, value: Filter, what: str, known: tuple[str, ...], sql: str) -> Filter:
    """Check ``status=`` or ``severity=`` values against the known ones (and those held)."""
    wanted = _values(value)
    if not wanted:
        return value
    valid = [*known, *sorted(v for v in _known(path, sql) if v is not None and v not in known)]
    unknown = [v for v in wanted if v not in valid]
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise ConfigError(f"unknown {what} {names}; valid values: {', '.join(valid)}")
    return wanted


def _where(clauses: list[str], params: list[Any], column: str, value: Filter) -> None:
    values = _values(value)
    if values:
        clauses.append(f"{column} IN ({','.join('?' * len(values))})")
        params.extend(values)


def _read(path: Path, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    with Store.open_read_only(path) as store:
        try:
            cursor = store.conn.execute(sql, tuple(params))
            names = [d[0] for d in cursor.description]
            records = cursor.fetchall()
        except sqlite3.Error as exc:
            raise translate_error(exc, path) from None
    return pd.DataFrame.from_records(records, columns=names)


def _typed(frame: pd.DataFrame, statuses: tuple[str, ...] = ()) -> pd.DataFrame:
    for column in frame.columns:
        if column in _TIMES:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        elif column in _IDS:
            frame[column] = frame[column].astype("Int64")
        elif column in _CATEGORIES:
            known = statuses if column == "status" else _CATEGORIES[column]
            seen = [v for v in frame[column].dropna().unique() if v not in known]
            frame[column] = pd.Categorical(frame[column], categories=[*known, *sorted(seen)])
    for column in ("known", "auto_accepted", "sectioned", "environment_login"):
        if column in frame.columns:
            frame[column] = frame[column].astype("boolean")
    return frame


def _live(alias: str, include_deleted: bool) -> str:
    return "1" if include_deleted else f"{alias}.deleted_upstream_at IS NULL"


# When each product was last read successfully: the newest run whose per-product outcome
# (``sync_runs.counts.products``) says success. A no-change run writes no mirror row (so
# ``synced_at``, the time a row was last written, stays), but its run row says it read.
_LAST_SYNCED = (
    "(SELECT max(r.ended_at) FROM sync_runs r, json_each(r.counts, '$.products') j "
    "WHERE json_valid(r.counts) AND j.key = CAST(p.id AS TEXT) AND j.value = 'success') "
    "AS last_synced_at"
)
STALE_AFTER = pd.Timedelta(days=1)


def products(path: Path, *, include_deleted: bool = False, raw: bool = False) -> pd.DataFrame:
    """Products, with ``tests`` (count), ``last_synced_at`` (the end of the newest run that
    read the product successfully, no-change runs included) and ``stale`` (never read
    successfully, or not for ``STALE_AFTER``, a day). ``synced_at`` is when the product's
    row was last written (it changes only when the product does)."""
    frame = _read(
        path,
        "SELECT p.*, (SELECT count(*) FROM tests t WHERE t.product_id = p.id "
        f"AND t.deleted_upstream_at IS NULL) AS tests, {_LAST_SYNCED} "
        f"FROM products p WHERE {_live('p', include_deleted)} ORDER BY p.id",
    )
    frame = _typed(frame if raw else frame.drop(columns=["raw"]))
    now = pd.Timestamp.now(tz="UTC")
    last = frame["last_synced_at"]
    frame["stale"] = pd.array((last.isna() | (now - last > STALE_AFTER)).tolist(), dtype="boolean")
    return frame


# A test's environment as a CSM uses it: its title and url, and whether the customer gave
# testers a login (its credentials are never stored: redact.py).
_ENVIRONMENT = (
    "json_extract(t.raw, '$.test_environment.title') AS environment, "
    "json_extract(t.raw, '$.test_environment.url') AS environment_url, "
    "CASE WHEN json_type(t.raw, '$.test_environment') = 'object' THEN "
    "coalesce(json_extract(t.raw, '$.test_environment.username'), '') "
    "|| coalesce(json_extract(t.raw, '$.test_environment.password'), '') != '' END "
    "AS environment_login"
)


# A test's columns a CSM reads, out of its JSON: who made and submitted it, its features
# (product feature ids and titles, in the test's order) and device requirements.
_TEST_COLUMNS = (
    "json_extract(t.raw, '$.created_by') AS created_by, "
    "json_extract(t.raw, '$.submitted_by') AS submitted_by, "
    "(SELECT json_group_array(json_extract(f.value, '$.feature_id')) "
    "FROM json_each(t.raw, '$.features') f) AS feature_ids, "
    "(SELECT json_group_array(json_extract(f.value, '$.title')) "
    "FROM json_each(t.raw, '$.features') f) AS features, "
    "json_extract(t.raw, '$.requirements') AS requirements"
)
_JSON_LISTS = ("feature_ids", "features", "requirements", "steps")


def _span(
    clauses: list[str],
    params: list[Any],
    column: str,
    since: Moment,
    until: Moment,
    *,
    keep_null: bool = False,
) -> None:
    """``since <= column < until`` (``keep_null``: rows without a value stay)."""
    for value, end, op in ((since, False, ">="), (until, True, "<")):
        limit = parse_since(value, end=end, what="until" if end else "since")
        if limit:
            test = f"{column} {op} ?"
            clauses.append(f"({column} IS NULL OR {test})" if keep_null else test)
            params.append(limit)


def _test_ids(path: Path, value: Filter, products: list[int]) -> list[int]:
    """Test ids for ``test=``: ids (or their text) and titles, case-insensitive (a title
    held by several tests means all of them). An unknown one raises ConfigError."""
    wanted = _values(value)
    if not wanted:
        return []
    held = _read(path, "SELECT id, title, product_id FROM tests")
    if products:
        held = held[held["product_id"].isin(products)]
    ids_held = set(int(i) for i in held["id"])
    titles: dict[str, list[int]] = {}
    for tid, title in zip(held["id"], held["title"], strict=True):
        if isinstance(title, str):
            titles.setdefault(title.casefold(), []).append(int(tid))
    found: list[int] = []
    unknown = []
    for item in wanted:
        text = str(item).strip()
        if isinstance(item, int) or text.isdigit():
            if int(text) in ids_held:
                found.append(int(text))
                continue
        elif text.casefold() in titles:
            found.extend(titles[text.casefold()])
            continue
        unknown.append(item)
    if unknown:
        where = " of the product given" if products else ""
        names = ", ".join(repr(u) for u in unknown)
        sample = ", ".join(repr(t) for t in sorted({str(t) for t in held["title"]})[:5])
        hint = f" (titles such as {sample}; see tt.tests())" if sample else ""
        raise ConfigError(
            f"unknown test {names}: the mirror holds no test{where} with that id or title{hint}"
        )
    return found


def tests(
    path: Path,
    *,
    product: Filter = None,
    status: Filter = None,
    since: Moment = None,
    until: Moment = None,
    include_deleted: bool = False,
    raw: bool = False,
) -> pd.DataFrame:
    """Tests; ``since``/``until`` filter ``end_at`` (unscheduled tests, without one, stay)."""
    clauses = [_live("t", include_deleted)]
    params: list[Any] = []
    status = _choices(
        path, status, "test status", TEST_STATUSES, "SELECT DISTINCT status FROM tests"
    )
    _where(clauses, params, "t.product_id", _products(path, product))
    _where(clauses, params, "t.status", status)
    _span(clauses, params, "t.end_at", since, until, keep_null=True)
    frame = _read(
        path,
        "SELECT t.*, p.name AS product, "
        "(SELECT count(*) FROM bugs b WHERE b.test_id = t.id "
        "AND b.deleted_upstream_at IS NULL) AS bugs, "
        f"{_ENVIRONMENT}, {_TEST_COLUMNS} "
        "FROM tests t LEFT JOIN products p ON p.id = t.product_id "
        f"WHERE {' AND '.join(clauses)} ORDER BY t.end_at DESC, t.id DESC",
        params,
    )
    return _lists(_typed(frame if raw else frame.drop(columns=["raw"]), TEST_STATUSES))


def _lists(frame: pd.DataFrame) -> pd.DataFrame:
    for column in _JSON_LISTS:
        if column in frame.columns:
            values = [_parsed(v) if isinstance(v, str) else None for v in frame[column]]
            frame[column] = pd.Series(values, index=frame.index, dtype="object")
    for column in ("created_by", "submitted_by", "feature", "expected_result", "actual_result"):
        if column in frame.columns:
            frame[column] = _texts(frame[column])
    return frame


def _texts(column: pd.Series) -> pd.Series:
    """Text with None (not NaN) where there is none: what the record says."""
    return pd.Series(
        [v if isinstance(v, str) else None for v in column], index=column.index, dtype="object"
    )


# A bug's columns out of its JSON: its feature (the test feature it was filed under, the
# product feature that is, and its title), steps, results, how many comments and devices.
_TEST_FEATURE = "json_extract(b.raw, '$.test_feature.id')"
_PRODUCT_FEATURE = (
    "(SELECT json_extract(f.value, '$.feature_id') FROM json_each(t.raw, '$.features') f "
    f"WHERE json_extract(f.value, '$.id') = {_TEST_FEATURE})"
)
_BUG_COLUMNS = (
    f"{_TEST_FEATURE} AS test_feature_id, {_PRODUCT_FEATURE} AS feature_id, "
    "coalesce(json_extract(b.raw, '$.test_feature.title'), "
    f"(SELECT title FROM features WHERE id = {_PRODUCT_FEATURE})) AS feature, "
    "json_extract(b.raw, '$.steps') AS steps, "
    "json_extract(b.raw, '$.expected_result') AS expected_result, "
    "json_extract(b.raw, '$.actual_result') AS actual_result, "
    "coalesce(json_array_length(b.raw, '$.comments'), 0) AS comment_count, "
    "coalesce(json_array_length(b.raw, '$.devices'), 0) AS device_count"
)


def bugs(
    path: Path,
    *,
    product: Filter = None,
    test: Filter = None,
    status: Filter = None,
    severity: Filter = None,
    since: Moment = None,
    until: Moment = None,
    include_deleted: bool = False,
    raw: bool = False,
) -> pd.DataFrame:
    """Bugs; ``since``/``until`` filter ``created_at``; ``test`` is ids or titles."""
    clauses = [_live("b", include_deleted)]
    params: list[Any] = []
    status = _choices(path, status, "bug status", BUG_STATUSES, "SELECT DISTINCT status FROM bugs")
    severity = _choices(
        path, severity, "severity", SEVERITIES, "SELECT DISTINCT severity FROM bugs"
    )
    product_ids = _products(path, product)
    _where(clauses, params, "b.product_id", product_ids)
    if _values(test):
        _where(clauses, params, "b.test_id", _test_ids(path, test, product_ids))
    _where(clauses, params, "b.status", status)
    _where(clauses, params, "b.severity", severity)
    _span(clauses, params, "b.created_at", since, until)
    frame = _read(
        path,
        "SELECT b.*, t.title AS test_title, t.end_at AS test_end_at, p.name AS product, "
        f"{_BUG_COLUMNS} "
        "FROM bugs b LEFT JOIN tests t ON t.id = b.test_id "
        "LEFT JOIN products p ON p.id = b.product_id "
        f"WHERE {' AND '.join(clauses)} ORDER BY b.created_at DESC, b.id DESC",
        params,
    )
    frame = _typed(frame if raw else frame.drop(columns=["raw"]), BUG_STATUSES)
    for column in ("comment_count", "device_count"):
        frame[column] = frame[column].astype("Int64")
    return _lists(frame)


def bug_devices(
    path: Path,
    *,
    product: Filter = None,
    test: Filter = None,
    since: Moment = None,
    until: Moment = None,
    include_deleted: bool = False,
) -> pd.DataFrame:
    """One row per device a bug was reported on: bug_id, test_id, product_id, device_id,
    device, os, os_version, browser (None without one); ``since``/``until`` filter the
    bug's ``created_at``. Join with ``bugs()`` on ``bug_id`` = ``id``."""
    clauses = [_live("b", include_deleted)]
    params: list[Any] = []
    product_ids = _products(path, product)
    _where(clauses, params, "b.product_id", product_ids)
    if _values(test):
        _where(clauses, params, "b.test_id", _test_ids(path, test, product_ids))
    _span(clauses, params, "b.created_at", since, until)
    frame = _read(
        path,
        "SELECT b.id AS bug_id, b.test_id, b.product_id, "
        "json_extract(d.value, '$.id') AS device_id, "
        "json_extract(d.value, '$.name') AS device, "
        "json_extract(d.value, '$.operating_system.name') AS os, "
        "json_extract(d.value, '$.operating_system.version') AS os_version, "
        "json_extract(d.value, '$.browser.name') AS browser "
        "FROM bugs b, json_each(b.raw, '$.devices') d "
        f"WHERE {' AND '.join(clauses)} ORDER BY b.id, d.key",
        params,
    )
    for column in ("bug_id", "device_id"):
        frame[column] = frame[column].astype("Int64")
    frame = _typed(frame)
    for column in ("device", "os", "os_version", "browser"):
        frame[column] = _texts(frame[column])
    return frame


def features(
    path: Path, *, product: Filter = None, include_deleted: bool = False, raw: bool = False
) -> pd.DataFrame:
    clauses = [_live("f", include_deleted)]
    params: list[Any] = []
    _where(clauses, params, "f.product_id", _products(path, product))
    frame = _read(
        path,
        "SELECT f.*, p.name AS product FROM features f "
        "LEFT JOIN products p ON p.id = f.product_id "
        f"WHERE {' AND '.join(clauses)} ORDER BY f.product_id, f.id",
        params,
    )
    if "user_stories" in frame.columns:
        frame["user_stories"] = [_parsed(v) for v in frame["user_stories"]]
    return _typed(frame if raw else frame.drop(columns=["raw"]))


def _parsed(text: Any) -> Any:
    """A JSON text column's value as Python (lists, dicts); plain text is kept."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


RUN_COUNTS = tuple(
    f"{entity}_{name}"
    for entity in ("tests", "bugs", "features")
    for name in ("added", "updated", "unchanged", "marked_gone", "unmarked")
)


def runs(path: Path) -> pd.DataFrame:
    """The run history; the stored counts become columns (tests_added, ..., unreadable)."""
    frame = _read(path, "SELECT * FROM sync_runs ORDER BY id")
    counts = [_parsed(v) if v else {} for v in frame["counts"]]
    for column in RUN_COUNTS:
        entity, name = column.split("_", 1)
        values = [c.get(entity, {}).get(name) if isinstance(c, dict) else None for c in counts]
        frame[column] = pd.array(values, dtype="Int64")
    frame["unreadable"] = pd.array(
        [c.get("unreadable") if isinstance(c, dict) else None for c in counts], dtype="Int64"
    )
    frame["product_status"] = [c.get("products") if isinstance(c, dict) else None for c in counts]
    frame["product_filter"] = [_parsed(v) for v in frame["product_filter"]]
    frame = _typed(frame.drop(columns=["counts"]), RUN_STATUSES)
    if len(frame):
        frame["seconds"] = (frame["ended_at"] - frame["started_at"]).dt.total_seconds()
    else:
        frame["seconds"] = pd.Series(dtype="float64")
    return frame


def unreadable(path: Path, *, include_resolved: bool = False) -> pd.DataFrame:
    where = "1" if include_resolved else "u.resolved_at IS NULL"
    frame = _read(
        path,
        "SELECT u.*, p.name AS product FROM unreadable u "
        f"LEFT JOIN products p ON p.id = u.product_id WHERE {where} ORDER BY u.id",
    )
    return _typed(frame)


def _words(value: Filter, what: str, allowed: tuple[str, ...]) -> list[Any]:
    """Check ``entity=`` or ``kind=`` values against the words of the change feed."""
    wanted = _values(value)
    unknown = [v for v in wanted if str(v) not in allowed]
    if unknown:
        names = ", ".join(repr(u) for u in unknown)
        raise ConfigError(f"unknown {what} {names}; valid values: {', '.join(allowed)}")
    return [str(v) for v in wanted]


def _runs(value: Filter) -> list[int]:
    runs: list[int] = []
    for item in _values(value):
        text = str(item).strip()
        if not text.isdigit():
            raise ConfigError(f"run {item!r} is not a run id (a number, see tt.runs())")
        runs.append(int(text))
    return runs


# The record's current title (a product's name), to read a change by.
_TITLE = (
    "CASE c.entity "
    "WHEN 'product' THEN (SELECT name FROM products WHERE id = c.entity_id) "
    "WHEN 'test' THEN (SELECT title FROM tests WHERE id = c.entity_id) "
    "WHEN 'bug' THEN (SELECT title FROM bugs WHERE id = c.entity_id) "
    "WHEN 'feature' THEN (SELECT title FROM features WHERE id = c.entity_id) END"
)


def changes(
    path: Path,
    *,
    since: Moment = "7d",
    product: Filter = None,
    entity: Filter = None,
    kind: Filter = None,
    run: Filter = None,
    until: Moment = None,
) -> pd.DataFrame:
    """The change feed, oldest first: what each run changed (see ``feed.py``).

        Columns: id, run_id, mode, at (UTC), entity and kind (categoricals), entity_id,
        product_id, test_id (bugs), field, old, new, product (its name) and title (the record's
        current title or name). ``since``/``until`` filter ``at`` (when the run that recorded
    the change began); ``since=None`` (or ``"all"``) reads the whole history.
    """
    clauses = ["1"]
    params: list[Any] = []
    _where(clauses, params, "c.product_id", _products(path, product))
    _where(clauses, params, "c.entity", _words(entity, "entity", ENTITIES))
    _where(clauses, params, "c.kind", _words(kind, "kind", CHANGE_KINDS))
    _where(clauses, params, "c.run_id", _runs(run))
    _span(clauses, params, "c.at", None if since == "all" else since, until)
    columns = ["id", "run_id", "mode", "at", "entity", "kind", "entity_id", "product_id"]
    columns += ["test_id", "field", "old", "new", "product", "title"]
    if not _known(path, "SELECT name FROM sqlite_master WHERE name = 'changes'"):
        # A v2 mirror not synced by this version yet: no history to show (its next run
        # migrates it).
        frame = pd.DataFrame({column: pd.Series(dtype="object") for column in columns})
    else:
        frame = _read(
            path,
            f"SELECT c.*, p.name AS product, {_TITLE} AS title FROM changes c "
            "LEFT JOIN products p ON p.id = c.product_id "
            f"WHERE {' AND '.join(clauses)} ORDER BY c.at, c.id",
            params,
        )
    frame = _typed(frame[columns])
    for column in ("field", "old", "new", "product", "title"):
        frame[column] = frame[column].astype("object").where(frame[column].notna(), None)
    return frame
