"""The store's hygiene: readers that cannot write, a dry run that writes a scratch copy,
migrations as statement lists, errors told apart by SQLite's result code, nested
transactions as savepoints."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from testio_toolkit.errors import StoreCorrupt, StoreError
from testio_toolkit.rows import test_row as make_test_row
from testio_toolkit.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    DryRunStore,
    Reader,
    Store,
    translate_error,
)


def _mirror(path: Path, *ids: int) -> None:
    with Store.open(path) as store, store.transaction():
        store.upsert("tests", [make_test_row({"id": i, "title": f"t{i}"}, 9, "t0") for i in ids])


def test_a_reader_has_no_write_methods(db_path: Path) -> None:
    _mirror(db_path, 1)
    with Store.open_read_only(db_path) as reader:
        assert type(reader) is Reader
        for write in ("upsert", "mark_gone", "set_meta", "start_run", "transaction"):
            assert not hasattr(reader, write), write
        assert reader.table_counts()["tests"] == 1


def test_a_dry_run_counts_real_writes_in_a_scratch_copy_and_leaves_the_file(
    db_path: Path,
) -> None:
    _mirror(db_path, 1, 2, 3)
    before = db_path.read_bytes()
    with Store.open_dry_run(db_path) as dry:
        assert isinstance(dry, DryRunStore) and "dry run" in repr(dry)
        with dry.transaction():
            counts = dry.upsert(
                "tests", [make_test_row({"id": i, "title": "new"}, 9, "t1") for i in (3, 4)]
            )
            marked = dry.mark_gone("tests", [1, 2, 99], "t1")
        assert (counts.added, counts.updated, marked) == (1, 1, 2)
        assert dry.table_counts()["tests"] == 2  # the copy took the writes
        assert dry.start_run("refresh", (), None) == 0  # a dry run is not history
    assert db_path.read_bytes() == before


def test_a_dry_run_of_a_missing_file_creates_nothing(db_path: Path) -> None:
    with Store.open_dry_run(db_path) as dry:
        assert dry.upsert("tests", [make_test_row({"id": 1}, 9, "t0")]).added == 1
    assert list(db_path.parent.iterdir()) == []


def test_migrations_are_lists_of_whole_statements() -> None:
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))
    for statements in MIGRATIONS.values():
        assert isinstance(statements, tuple)
        for statement in statements:
            assert sqlite3.complete_statement(statement + ";"), statement
            assert not sqlite3.complete_statement(statement), "one statement, no ';'"


def test_a_nested_transaction_is_a_savepoint(db_path: Path) -> None:
    row = make_test_row({"id": 1}, 9, "t0")
    with Store.open(db_path) as store:
        with store.transaction():
            store.upsert("tests", [row])
            with pytest.raises(ZeroDivisionError), store.transaction():
                store.upsert("tests", [make_test_row({"id": 2}, 9, "t0")])
                1 / 0  # noqa: B018
            with store.transaction():  # a savepoint that succeeds is kept
                store.upsert("tests", [make_test_row({"id": 3}, 9, "t0")])
        assert not store.conn.in_transaction
        ids = [r["id"] for r in store.query("SELECT id FROM tests ORDER BY id")]
    assert ids == [1, 3]


def _error(kind: type[sqlite3.Error], message: str, code: int) -> sqlite3.Error:
    exc = kind(message)
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = "whatever"
    return exc


@pytest.mark.parametrize(
    ("code", "says", "corrupt"),
    [
        (sqlite3.SQLITE_CORRUPT, "is damaged", True),
        (sqlite3.SQLITE_NOTADB, "is damaged", True),
        (sqlite3.SQLITE_FULL, "cannot write", False),
        (sqlite3.SQLITE_IOERR | (3 << 8), "cannot write", False),  # an extended code
        (sqlite3.SQLITE_READONLY, "cannot write", False),
        (sqlite3.SQLITE_BUSY, "is locked by another program", False),
        (sqlite3.SQLITE_ERROR, "database error in", False),
    ],
)
def test_errors_are_told_apart_by_sqlites_code_not_the_message(
    code: int, says: str, corrupt: bool
) -> None:
    # The message says "locked" and "malformed" whatever the code: only the code counts.
    exc = _error(sqlite3.OperationalError, "no such table: locked_malformed", code)
    error = translate_error(exc, Path("m.db"))
    assert says in str(error)
    assert isinstance(error, StoreCorrupt) is corrupt and isinstance(error, StoreError)


def test_a_real_sqlite_error_carries_its_code(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.Error) as caught:
        conn.execute("SELECT * FROM locked")  # "no such table: locked"
    conn.close()
    assert "database error in" in str(translate_error(caught.value, tmp_path / "m.db"))
