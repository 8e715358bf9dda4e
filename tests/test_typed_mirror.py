"""A typed mirror for readers: every column of every mirror table holds one SQLite storage
class (NULL allowed beside it), the one its declared type names, after each mode.

SQLite lets any column hold any value; a reader (pandas, DuckDB, the export) then has to
guess. The oracle is SQLite's own ``typeof()`` over every row, against the declared type
(``PRAGMA table_info``), and the export's column kinds (``export.EXPORTED``) agree with both.
"""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path

import pytest

import testio_toolkit as tt
from testio_toolkit.sandbox import Sandbox

export_module = importlib.import_module("testio_toolkit.export")

DECLARED = {"INTEGER": "integer", "TEXT": "text"}
# How each exported kind is stored in the mirror.
STORED = {"int": "integer", "bool": "integer", "time": "text", "text": "text"}


def storage_classes(path: Path) -> dict[tuple[str, str], set[str]]:
    """(table, column) -> the storage classes its rows hold, NULL left out."""
    conn = sqlite3.connect(path)
    try:
        found: dict[tuple[str, str], set[str]] = {}
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )]  # fmt: skip
        for table in tables:
            for column in [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]:
                kinds = {
                    r[0] for r in conn.execute(f'SELECT DISTINCT typeof("{column}") FROM {table}')
                }
                found[(table, column)] = kinds - {"null"}
        return found
    finally:
        conn.close()


def declared_types(path: Path) -> dict[tuple[str, str], str]:
    conn = sqlite3.connect(path)
    try:
        out: dict[tuple[str, str], str] = {}
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            if table.startswith("sqlite_"):
                continue
            for row in conn.execute(f"PRAGMA table_info({table})"):
                out[(table, row[1])] = str(row[2]).upper()
        return out
    finally:
        conn.close()


def assert_typed(path: Path, mode: str) -> None:
    classes = storage_classes(path)
    declared = declared_types(path)
    for (table, column), kinds in classes.items():
        assert len(kinds) <= 1, f"after {mode}: {table}.{column} holds {sorted(kinds)}"
        want = DECLARED[declared[(table, column)]]
        assert kinds <= {want}, f"after {mode}: {table}.{column} declared {want}, holds {kinds}"
    for table, columns in export_module.EXPORTED.items():
        for column, kind in columns.items():
            assert classes[(table, column)] <= {STORED[kind]}, f"{table}.{column} is not {kind}"
    # The tables were not empty: the check saw values.
    assert classes[("tests", "end_at")] == {"text"} and classes[("bugs", "known")] == {"integer"}


def test_every_column_holds_one_storage_class_after_sync_refresh_and_nuke(
    synced: tt.Mirror, sandbox: Sandbox
) -> None:
    assert_typed(synced.path, "the first sync")
    truth = sandbox.truth()
    product = sorted(truth.products)[0]
    sandbox.add_tests(product, count=3, where="unscheduled")  # null start/end
    sandbox.add_tests(product, count=3, where="head")
    tests = sorted(truth.tests)
    sandbox.update_test(tests[0], status="archived", title="retitled")
    sandbox.update_bug(sorted(truth.bugs)[0], severity="critical", known=True)
    sandbox.delete_tests([tests[5]])
    assert synced.sync().status == "success"
    assert_typed(synced.path, "an incremental sync")

    sandbox.delete_tests([tests[9]])
    assert synced.refresh().status == "success"
    assert_typed(synced.path, "a refresh")

    assert synced.nuke(confirm=True).status == "success"
    assert_typed(synced.path, "a nuke")


@pytest.mark.parametrize("table", sorted(export_module.EXPORTED))
def test_the_export_gives_every_mirror_column_it_sends_a_declared_type(
    synced: tt.Mirror, table: str
) -> None:
    declared = declared_types(synced.path)
    for column, kind in export_module.EXPORTED[table].items():
        assert DECLARED[declared[(table, column)]] == STORED[kind], f"{table}.{column}"
