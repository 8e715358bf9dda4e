"""Incremental sync against the sandbox over real HTTP, into real database files."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from testio_toolkit.rows import is_final, to_utc
from testio_toolkit.sandbox import Sandbox

from .conftest import (
    assert_mirror_equals_truth,
    assert_within_budget,
    digest,
    make_mirror,
    synced_copy,
)

WATCHED = ("products", "tests", "bugs", "features")


def watch_writes(path: Path) -> None:
    """Triggers that log every insert or update of a mirror row into `write_log`."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE write_log (tbl TEXT, id INTEGER)")
    for table in WATCHED:
        for event in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER log_{table}_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN INSERT INTO write_log VALUES ('{table}', new.id); END"
            )
    conn.commit()
    conn.close()


def logged_writes(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT tbl, id FROM write_log").fetchall()
    finally:
        conn.close()


def sorted_test_ids(sb: Sandbox, product_id: int) -> list[int]:
    """A product's tests in the service's list order: end_at newest first, then id."""
    truth = sb.truth()
    ids = [tid for tid, pid in truth.product_of_test.items() if pid == product_id]
    return sorted(ids, key=lambda t: (to_utc(truth.tests[t]["end_at"]) or "", t), reverse=True)


def test_first_sync_holds_exactly_the_sandbox_truth(
    medium_sandbox: Sandbox, tmp_path: Path
) -> None:
    truth = medium_sandbox.truth()
    biggest = max(
        truth.products, key=lambda p: sum(1 for v in truth.product_of_test.values() if v == p)
    )
    assert sum(1 for v in truth.product_of_test.values() if v == biggest) > 1300

    result = make_mirror(medium_sandbox, tmp_path / "m.db").sync()

    assert result.status == "success"
    assert result.tests.added == len(truth.tests)
    assert result.bugs.added == len(truth.bugs)
    assert_mirror_equals_truth(tmp_path / "m.db", medium_sandbox)


def test_second_sync_rewrites_nothing_and_makes_only_the_expected_requests(
    sandbox: Sandbox, db_path: Path
) -> None:
    mirror = make_mirror(sandbox, db_path)
    mirror.sync()
    watch_writes(db_path)
    sandbox.reset_counters()

    result = mirror.sync()

    assert result.status == "success"
    assert logged_writes(db_path) == []
    assert (result.tests.added, result.tests.updated) == (0, 0)
    assert (result.bugs.added, result.bugs.updated) == (0, 0)
    truth = sandbox.truth()
    per_page = 25
    expected_details = expected_bug_requests = 0
    for product_id in truth.products:
        ordered = sorted_test_ids(sandbox, product_id)
        changeable = [t for t in ordered if not is_final(truth.tests[t]["status"])]
        expected_details += sum(1 for t in changeable if t not in ordered[:per_page])
        expected_bug_requests += math.ceil(len(changeable) / 15)
    counters = sandbox.counters
    longer = sum(1 for p in truth.products if len(sorted_test_ids(sandbox, p)) >= per_page)
    assert_within_budget(
        counters["exploratory_tests"],
        len(truth.products) + longer,
        "the head window, and one window over the tail (where unscheduled tests sort) for a "
        "product longer than a page",
    )
    assert_within_budget(
        counters["exploratory_test"],
        expected_details,
        "changeable tests neither window showed are re-read on their detail endpoint",
    )
    assert_within_budget(
        counters["bugs"],
        expected_bug_requests,
        "the bugs of every changeable test, in batches of 15 test ids",
    )
    # Every request is charged to its product, but the one `products` call of the run.
    assert sum(r.requests for r in result.products) + 1 == result.requests == sandbox.requests_total


def test_sync_picks_up_new_tests_and_a_status_change(sandbox: Sandbox, db_path: Path) -> None:
    mirror = make_mirror(sandbox, db_path)
    mirror.sync()
    truth = sandbox.truth()
    product_id = next(iter(truth.products))
    running = next(
        t
        for t, v in truth.tests.items()
        if v["status"] == "running" and truth.product_of_test[t] != product_id
    )
    new_ids = sandbox.add_tests(product_id, count=30)
    sandbox.update_test(running, status="locked")

    result = mirror.sync()

    assert result.tests.added == 30
    assert result.tests.updated == 1
    by_product = {r.product_id: r for r in result.products}
    assert by_product[product_id].tests.added == 30
    assert by_product[truth.product_of_test[running]].tests.updated == 1
    assert set(new_ids) <= set(mirror.tests()["id"])
    assert_mirror_equals_truth(db_path, sandbox)


def test_an_interrupted_first_sync_is_completed_by_the_next(
    sandbox: Sandbox, db_path: Path
) -> None:
    mirror = make_mirror(sandbox, db_path)
    sandbox.set_faults(fail_after=6)  # the service dies after a few pages

    first = mirror.sync()

    assert first.status in {"partial", "failed"}
    stored = len(mirror.tests())
    assert 0 < stored < len(sandbox.truth().tests)
    sandbox.clear_faults()

    second = mirror.sync()

    assert second.status == "success"
    assert_mirror_equals_truth(db_path, sandbox)


def test_product_filter_limits_the_work(sandbox: Sandbox, db_path: Path) -> None:
    truth = sandbox.truth()
    product_id = sorted(truth.products)[1]

    result = make_mirror(sandbox, db_path).sync(products=[product_id])

    assert [r.product_id for r in result.products] == [product_id]
    assert_mirror_equals_truth(db_path, sandbox, products=[product_id])


def test_since_limits_the_work(sandbox: Sandbox, db_path: Path) -> None:
    truth = sandbox.truth()
    ends = sorted(to_utc(t["end_at"]) or "" for t in truth.tests.values())
    since = ends[len(ends) // 2][:10]

    make_mirror(sandbox, db_path).sync(since=since)

    conn = sqlite3.connect(db_path)
    stored = {row[0]: row[1] for row in conn.execute("SELECT id, end_at FROM tests")}
    conn.close()
    expected = {
        t
        for t, v in truth.tests.items()
        # Unscheduled tests (no end_at yet) belong to every window.
        if v["end_at"] is None or to_utc(v["end_at"]) >= f"{since}T00:00:00Z"  # type: ignore[operator]
    }
    assert any(truth.tests[t]["end_at"] is None for t in expected)
    assert set(stored) == expected


def test_dry_run_leaves_the_database_file_unchanged(sandbox: Sandbox, db_path: Path) -> None:
    mirror = make_mirror(sandbox, db_path)
    mirror.sync()
    new = sandbox.add_tests(next(iter(sandbox.truth().products)), count=3)
    wal = db_path.with_name(db_path.name + "-wal")
    before = digest(db_path)
    wal_before = wal.read_bytes() if wal.exists() else b""

    result = mirror.sync(dry_run=True)

    assert result.dry_run
    assert result.tests.added == len(new) == 3
    assert digest(db_path) == before
    # Nothing went into the WAL either, where the next reader would see it (an empty WAL
    # holds nothing).
    assert (wal.read_bytes() if wal.exists() else b"") == wal_before
    conn = sqlite3.connect(db_path)
    stored = {row[0] for row in conn.execute("SELECT id FROM tests")}
    conn.close()
    assert stored == set(sandbox.truth().tests) - set(new)


def test_dry_run_on_a_missing_database_creates_nothing(sandbox: Sandbox, db_path: Path) -> None:
    result = make_mirror(sandbox, db_path).sync(dry_run=True)

    assert result.tests.added == len(sandbox.truth().tests)
    assert not db_path.exists()


@pytest.mark.parametrize("status", ["running", "customer_finalized", "some_new_status"])
def test_changeable_statuses_are_reread(sandbox: Sandbox, db_path: Path, status: str) -> None:
    mirror = make_mirror(sandbox, db_path)
    truth = sandbox.truth()
    product_id = next(iter(truth.products))
    # An old test far down the list, made changeable: only the re-read can see it change.
    old = sorted_test_ids(sandbox, product_id)[-1]
    sandbox.update_test(old, status=status)
    mirror.sync()
    sandbox.update_test(old, title="renamed upstream")

    result = mirror.sync()

    assert result.tests.updated == 1
    assert mirror.tests().set_index("id").loc[old, "title"] == "renamed upstream"


def test_a_synced_copy_is_what_a_first_sync_leaves(
    sandbox: Sandbox, db_path: Path, small_template: Path
) -> None:
    """The ``synced`` fixture's shortcut holds: a copy of the session's template, adopted by
    a fresh sandbox, holds that sandbox's truth and its next sync finds nothing to do."""
    synced_copy(small_template, sandbox, db_path)
    assert_mirror_equals_truth(db_path, sandbox)
    watch_writes(db_path)

    result = make_mirror(sandbox, db_path).sync()

    assert result.status == "success"
    assert logged_writes(db_path) == []
    conn = sqlite3.connect(db_path)
    history = conn.execute("SELECT mode, status FROM sync_runs ORDER BY id").fetchall()
    conn.close()
    assert history == [("sync", "success"), ("sync", "success")]
