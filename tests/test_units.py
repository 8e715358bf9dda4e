"""Unit tests of the pieces that need no server: rows, settings, the store, results."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from testio_toolkit import store as store_module
from testio_toolkit.config import Secret, Settings
from testio_toolkit.errors import ConfigError, SchemaTooNew, StoreCorrupt
from testio_toolkit.results import Counts, ProductReport, SyncResult
from testio_toolkit.rows import canonical_json, is_final, parse_since, to_utc
from testio_toolkit.rows import test_row as make_test_row
from testio_toolkit.store import SCHEMA_VERSION, Store


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2025-03-02T10:00:00Z", "2025-03-02T10:00:00Z"),
        ("2025-03-02T11:00:00+01:00", "2025-03-02T10:00:00Z"),
        ("2025-03-02T04:30:00-05:30", "2025-03-02T10:00:00Z"),
        ("2025-03-02T10:00:00", "2025-03-02T10:00:00Z"),
        ("2025-03-02 10:00:00Z", "2025-03-02T10:00:00Z"),
        ("20250302T100000.123Z", "2025-03-02T10:00:00Z"),
        ("2025-02-30T10:00:00Z", None),
        (None, None),
        ("not a time", None),
    ],
)
def test_timestamps_are_normalised_to_utc(given: str | None, expected: str | None) -> None:
    assert to_utc(given) == expected


def test_since_accepts_dates_timestamps_and_relative_spans() -> None:
    assert parse_since("2025-01-31") == "2025-01-31T00:00:00Z"
    assert parse_since("2025-01-31T12:00:00+02:00") == "2025-01-31T10:00:00Z"
    assert parse_since("30d") is not None and parse_since("30d") < parse_since("1d")  # type: ignore[operator]
    assert parse_since(None) is None
    with pytest.raises(ConfigError, match="is not a date"):
        parse_since("31/01/2025")


def test_unknown_statuses_count_as_changeable() -> None:
    assert is_final("archived") and is_final("cancelled")
    assert not is_final("running")
    assert not is_final("something_new")


def test_a_test_row_is_the_same_from_the_list_and_from_the_detail_endpoint() -> None:
    listed = {
        "id": 7,
        "title": "Ünïcode 🚀",
        "status": "running",
        "end_at": "2025-01-01T01:00:00+01:00",
    }
    detail = {**listed, "product": {"id": 3, "name": "Shop"}}

    assert make_test_row(listed, 3, "now") == make_test_row(detail, 3, "now")
    assert make_test_row(listed, 3, "now")["end_at"] == "2025-01-01T00:00:00Z"


def test_canonical_json_does_not_depend_on_key_order() -> None:
    assert canonical_json({"a": 1, "b": "é"}) == canonical_json({"b": "é", "a": 1})


def test_settings_precedence_is_arguments_then_environment_then_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "TESTIO_CUSTOMER_API_TOKEN=from-dotenv\nTESTIO_DB_PATH=/dotenv.db\n"
        "TESTIO_PRODUCT_IDS=1,2\nTESTIO_CUSTOMER_API_BASE_URL=https://dotenv.example/v2\n"
    )
    env = {"TESTIO_DB_PATH": "/env.db"}

    settings = Settings.load(env=env, dotenv_path=dotenv, base_url="https://arg.example/x/v2")

    assert settings.token == Secret("from-dotenv")
    assert settings.db_path == Path("/env.db")
    assert settings.base_url == "https://arg.example/x/v2"
    assert settings.product_ids == (1, 2)
    assert not settings.sandbox


def test_no_token_means_the_sandbox_and_its_own_database(tmp_path: Path) -> None:
    settings = Settings.load(env={}, dotenv_path=None)

    assert settings.sandbox
    assert settings.db_path.name == "sandbox.db"


def test_the_token_never_shows_in_reprs() -> None:
    settings = Settings.load(token="tok-123-secret", env={}, dotenv_path=None, db_path="x.db")

    assert "tok-123-secret" not in repr(settings)
    assert "tok-123-secret" not in str(settings.token)
    assert "tok-123-secret" not in f"{settings.token!r}"
    assert settings.token is not None and settings.token.reveal() == "tok-123-secret"


def test_bad_product_ids_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'abc' is not a number"):
        Settings.load(env={"TESTIO_PRODUCT_IDS": "1,abc"}, dotenv_path=None)


def fresh_store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "s.db")


def test_upsert_counts_added_updated_unchanged_and_unmarked(tmp_path: Path) -> None:
    with fresh_store(tmp_path) as store:
        row = make_test_row({"id": 1, "title": "a", "status": "running"}, 9, "t0")
        other = make_test_row({"id": 2, "title": "b", "status": "archived"}, 9, "t0")
        first = store.upsert("tests", [row, other])
        store.mark_gone("tests", [2], "t1")
        changed = make_test_row({"id": 1, "title": "A", "status": "running"}, 9, "t2")
        second = store.upsert("tests", [changed, other])

        assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
        assert (second.added, second.updated, second.unchanged, second.unmarked) == (0, 1, 1, 1)
        assert second.changed_ids == [1]
        assert store.live_ids("tests", "1", ()) == {1, 2}


def test_upsert_keeps_columns_a_user_added(tmp_path: Path) -> None:
    with fresh_store(tmp_path) as store:
        store.upsert("tests", [make_test_row({"id": 1, "title": "a"}, 9, "t0")])
        store.conn.execute("ALTER TABLE tests ADD COLUMN csm_note TEXT")
        store.conn.execute("UPDATE tests SET csm_note = 'mine'")
        store.upsert("tests", [make_test_row({"id": 1, "title": "changed"}, 9, "t1")])

        assert store.query("SELECT title, csm_note FROM tests") == [
            {"title": "changed", "csm_note": "mine"}
        ]


def _write_ten_megabytes(store: Store) -> None:
    # Well past SQLite's default autocheckpoint of 1,000 pages (4 MB).
    rows = [make_test_row({"id": i, "title": "x" * 2000}, 9, "t0") for i in range(5000)]
    with store.transaction():
        store.upsert("tests", rows)


def test_a_commit_never_checkpoints_and_closing_folds_the_wal_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY_SECONDS", 3600)
    path = tmp_path / "mirror.db"
    with Store.open(path) as store:
        empty = path.stat().st_size
        _write_ten_megabytes(store)

        assert path.stat().st_size == empty, "the writer checkpointed on its own commit"

    assert path.stat().st_size > 10_000_000
    assert not path.with_name("mirror.db-wal").exists()


def test_the_wal_is_checkpointed_in_the_background_while_the_store_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY_SECONDS", 0.05)
    path = tmp_path / "mirror.db"
    with Store.open(path) as store:
        _write_ten_megabytes(store)
        deadline = time.monotonic() + 10
        while path.stat().st_size < 10_000_000 and time.monotonic() < deadline:
            time.sleep(0.02)

        assert path.stat().st_size > 10_000_000, "no checkpoint ran while the store was open"
        assert store.query("SELECT count(*) AS n FROM tests") == [{"n": 5000}]


def test_a_database_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    fresh_store(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(SchemaTooNew, match="upgrade testio-toolkit"):
        Store.open(tmp_path / "s.db")


def test_a_corrupt_file_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    before = path.read_bytes()

    with pytest.raises(StoreCorrupt, match=str(path)):
        Store.open(path)

    assert path.read_bytes() == before


def test_result_status_and_repr_say_what_matters() -> None:
    report = ProductReport(product_id=1, name="Shop", tests=Counts(added=7, updated=5))
    failed = ProductReport(product_id=2, name="App", status="failed", error="HTTP 503")
    result = SyncResult(
        mode="refresh",
        status="partial",
        db_path="/x.db",
        source="sandbox",
        products=[report, failed],
    )

    assert not result.ok
    assert result.tests.added == 7
    assert "refresh partial" in repr(result)
    assert "failed: 2" in repr(result)
    assert "SANDBOX" in repr(result)
    assert "HTTP 503" in result._repr_html_()
    assert list(result.to_frame()["status"]) == ["success", "failed"]


def test_sandbox_true_ignores_a_configured_token(tmp_path: Path) -> None:
    import testio_toolkit as tt

    mirror = tt.Mirror(tmp_path / "m.db", token="a-real-token", sandbox=True)

    assert mirror.sandbox
    assert mirror.source == "sandbox"


def test_a_refused_writer_names_a_holder_whose_note_comes_a_moment_late(tmp_path: Path) -> None:
    import json
    import os
    import socket
    import threading

    from filelock import FileLock

    from testio_toolkit.errors import SyncInProgress
    from testio_toolkit.lock import WriterLock, holder_path, lock_path

    db = tmp_path / "m.db"
    note = {"mode": "refresh", "pid": os.getpid(), "host": socket.gethostname(), "since": "now"}
    # A holder between taking the lock and writing its note (another process in real life;
    # filelock is per-thread here, so a second thread holds it).
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with FileLock(str(lock_path(db))):
            taken.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    taken.wait(5)
    timer = threading.Timer(0.2, lambda: holder_path(db).write_text(json.dumps(note)))
    timer.start()
    try:
        expected = f"a refresh \\(pid {os.getpid()} on "
        with pytest.raises(SyncInProgress, match=expected), WriterLock(db, mode="sync"):
            pass
    finally:
        release.set()
        thread.join()
        timer.join()
