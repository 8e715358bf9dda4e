"""Fault injection against the sandbox over HTTP: unreadable records, rate limits, random
5xx, dropped connections, 524s, hangs, and bad local state. Each case ends with the mirror
compared to the sandbox's truth."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import testio_toolkit as tt
from testio_toolkit.client import TestIOClient
from testio_toolkit.errors import ServiceError, StoreError, SyncInProgress
from testio_toolkit.sandbox import Sandbox

from .conftest import FAST, assert_mirror_equals_truth, cli, cli_env, make_mirror, secret_sandbox

pytestmark = pytest.mark.usefixtures("token_never_leaks")


def products(sb: Sandbox) -> list[int]:
    """The products in the order the service lists them: sizes 75, 52 and 23 tests."""
    return list(sb.truth().products)


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def open_entries(path: Path) -> list[dict[str, Any]]:
    return rows(path, "SELECT * FROM unreadable WHERE resolved_at IS NULL ORDER BY id")


def last_run(path: Path) -> dict[str, Any]:
    return rows(path, "SELECT * FROM sync_runs ORDER BY id DESC LIMIT 1")[0]


def assert_mirror_holds_all_but(path: Path, sb: Sandbox, missing: set[int]) -> None:
    """The mirror holds every test except ``missing``, each once and as served, with its
    bugs; every feature and product too."""
    truth = sb.truth().without_credentials()
    tests = {r["id"]: json.loads(r["raw"]) for r in rows(path, "SELECT id, raw FROM tests")}
    expected = {tid: t for tid, t in truth.tests.items() if tid not in missing}
    assert set(tests) == set(expected), "test ids differ"
    assert tests == expected, "test contents differ"
    bugs = {r["id"]: json.loads(r["raw"]) for r in rows(path, "SELECT id, raw FROM bugs")}
    assert bugs == {b: v for b, v in truth.bugs.items() if v["test"]["id"] in expected}
    features = {r["id"]: json.loads(r["raw"]) for r in rows(path, "SELECT id, raw FROM features")}
    assert features == truth.features
    assert {r["id"] for r in rows(path, "SELECT id FROM products")} == set(truth.products)


# -- 1. unreadable records ------------------------------------------------------------------


def test_poisoned_records_are_logged_once_with_neighbours_and_read_by_problematic_retry(
    sb: Sandbox, db_path: Path
) -> None:
    big, middle, small = products(sb)
    ids = {pid: sb.test_ids(pid) for pid in (big, middle, small)}
    assert [len(ids[p]) for p in (big, middle, small)] == [75, 52, 23]
    positions = [
        (big, 25),  # first record of page 2
        (big, 49),  # last record of page 2: the salvaged page is short, not the end
        (big, 61),  # two in one window of five (60-64)
        (big, 63),
        (big, 74),  # last record of a product with exactly 3 pages
        (middle, 0),  # first record of a product's first page
        (small, 22),  # last record of a short last page
    ]
    poisoned = {ids[pid][pos]: (pid, pos) for pid, pos in positions}
    sb.set_faults(poisoned_test_ids=set(poisoned))
    mirror = make_mirror(sb, db_path)

    result = mirror.sync()

    assert result.status == "partial"
    assert {r.product_id: (r.status, r.unreadable) for r in result.products} == {
        big: ("partial", 5),
        middle: ("partial", 1),
        small: ("partial", 1),
    }
    assert result.tests.added == 150 - len(poisoned)  # each readable test exactly once
    assert_mirror_holds_all_but(db_path, sb, set(poisoned))
    assert last_run(db_path)["status"] == "partial"

    def expected_log() -> set[tuple[Any, ...]]:
        logged = set()
        for pid, pos in positions:
            before = ids[pid][pos - 1] if pos > 0 else None
            after = ids[pid][pos + 1] if pos + 1 < len(ids[pid]) else None
            logged.add((pid, "position", pos, None, before, after))
        return logged

    entries = open_entries(db_path)
    assert len(entries) == len(poisoned)
    assert {
        (e["product_id"], e["kind"], e["position"], e["record_id"], e["prev_id"], e["next_id"])
        for e in entries
    } == expected_log()
    for entry in entries:
        assert entry["first_seen_at"] and entry["last_tried_at"], entry
        assert "500" in entry["error"], entry

    # Still broken on the next run: the same entries, tried again, none added.
    again = mirror.refresh()
    assert again.status == "partial"
    assert [(e["id"], e["attempts"]) for e in open_entries(db_path)] == [
        (e["id"], 2) for e in entries
    ]
    assert_mirror_holds_all_but(db_path, sb, set(poisoned))

    env = cli_env(sb, db_path)
    listed = cli("problematic", "list", env=env)
    assert listed.exit_code == 0, listed.stderr
    assert len(listed.stdout.strip().splitlines()) == 1 + len(poisoned)  # a header, a row each

    sb.clear_faults()
    retried = cli("problematic", "retry", "--no-progress", env=env)

    assert retried.exit_code == 0, retried.stderr
    assert "sync success" in retried.stdout
    assert open_entries(db_path) == []
    assert len(rows(db_path, "SELECT * FROM unreadable WHERE resolved_at IS NOT NULL")) == 7
    assert_mirror_equals_truth(db_path, sb)


def test_a_stored_test_that_turns_unreadable_is_logged_once(sb: Sandbox, db_path: Path) -> None:
    mirror = make_mirror(sb, db_path)
    mirror.sync()
    product_id = products(sb)[0]
    # A changeable test on the first page: the list cannot serve it, nor can its detail.
    first_page = sb.test_ids(product_id)[:25]
    truth = sb.truth()
    victim = next(
        t for t in first_page if truth.tests[t]["status"] not in ("archived", "cancelled")
    )
    sb.set_faults(poisoned_test_ids={victim})

    result = mirror.sync()

    assert result.status == "partial"
    entries = open_entries(db_path)
    assert len(entries) == 1
    assert entries[0]["kind"] == "position"
    assert entries[0]["product_id"] == product_id
    sb.clear_faults()
    assert mirror.retry_unreadable() is not None
    assert open_entries(db_path) == []
    assert_mirror_equals_truth(db_path, sb)


def test_a_salvaged_short_page_is_not_taken_for_the_end_of_the_list(
    sb: Sandbox, db_path: Path
) -> None:
    big = products(sb)[0]
    last_of_page_one = sb.test_ids(big)[24]
    sb.set_faults(poisoned_test_ids={last_of_page_one})

    result = make_mirror(sb, db_path).refresh()

    assert result.status == "partial"
    # Pages 2 and 3 come after a page that yielded only 24 records: all of them are read.
    assert_mirror_holds_all_but(db_path, sb, {last_of_page_one})
    (entry,) = open_entries(db_path)
    assert entry["position"] == 24


def test_a_product_failing_for_another_reason_is_failed_and_the_others_are_synced(
    sb: Sandbox, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big, broken, small = products(sb)
    real_page = TestIOClient.tests_page

    async def pages_of_one_product_fail(
        self: TestIOClient, product_id: int, page: int, per_page: int | None = None
    ) -> list[dict[str, Any]]:
        if product_id == broken:
            # What the client raises once its retries of a 503 are used up.
            raise ServiceError(
                f"GET products/{broken}/exploratory_tests page {page} failed: "
                "HTTP 503 after 5 attempts",
                endpoint=f"products/{broken}/exploratory_tests",
                status_code=503,
            )
        return await real_page(self, product_id, page, per_page)

    monkeypatch.setattr(TestIOClient, "tests_page", pages_of_one_product_fail)
    mirror = make_mirror(sb, db_path)

    result = mirror.sync()

    assert result.status == "partial"
    by_product = {r.product_id: r for r in result.products}
    assert by_product[broken].status == "failed"
    assert "503" in (by_product[broken].error or "")
    assert result.failed_products == [by_product[broken]]
    assert by_product[big].status == by_product[small].status == "success"
    assert_mirror_equals_truth(db_path, sb, products=[big, small])
    assert last_run(db_path)["status"] == "partial"

    monkeypatch.undo()
    healed = mirror.sync()

    assert healed.status == "success"
    assert_mirror_equals_truth(db_path, sb)


def test_a_run_that_could_read_nothing_is_failed(sb: Sandbox, db_path: Path) -> None:
    sb.set_faults(fail_after=1)  # the product list is served, then only 503s

    result = make_mirror(sb, db_path).sync()

    assert result.status == "failed"
    assert all(r.status == "failed" for r in result.products)
    assert last_run(db_path)["status"] == "failed"
    sb.clear_faults()
    assert make_mirror(sb, db_path).sync().status == "success"
    assert_mirror_equals_truth(db_path, sb)


def test_the_cli_exits_1_for_partial_and_for_failed_runs(tmp_path: Path) -> None:
    with secret_sandbox() as partial_sb, secret_sandbox() as failed_sb:
        first = products(partial_sb)[0]
        partial_sb.set_faults(poisoned_test_ids={partial_sb.test_ids(first)[30]})
        failed_sb.set_faults(fail_after=1)  # the failed run waits out the default backoff
        partial, failed = (
            cli("sync", "--no-progress", env=cli_env(sb, tmp_path / name))
            for sb, name in ((partial_sb, "p.db"), (failed_sb, "f.db"))
        )

    assert partial.exit_code == 1, partial.stderr
    assert "sync partial" in partial.stdout
    assert last_run(tmp_path / "p.db")["status"] == "partial"
    assert failed.exit_code == 1, failed.stderr
    assert "sync failed" in failed.stdout
    assert "503" in failed.stderr
    assert last_run(tmp_path / "f.db")["status"] == "failed"


# -- 2. rate limits, random 5xx, dropped connections, 524 -----------------------------------

CHAOS_OPTIONS = FAST  # the client's defaults, with quick backoff
CHAOS = {
    "error_rate": 0.10,  # 500, 502 (HTML), 503, 504 (HTML)
    "drop_rate": 0.05,
    "bugs_524_over": 8,  # a full batch of 15 test ids answers 524; 7 and 8 pass
    "retry_after": 1,
}
BURST = 4  # 429s in a row, set off mid-run so that they strike requests in flight


def request_bound(fault_free: int, fault_free_bugs: int) -> float:
    """The most requests a run under CHAOS may make, from the same run without faults.

    - 524: a bugs request for 15 ids is refused and asked again in two halves (7 + 8 ids),
      so each bugs request may become 3: at most ``fault_free + 2 * fault_free_bugs``.
    - 15% of attempts fail (10% 5xx, 5% dropped) and are sent again: 1 / 0.85 = 1.18
      requests per request on average; 1.6 leaves room for chance and for the prefetch of
      list pages, which varies by up to three pages per product from run to run.
    - plus the BURST of 429s, each sent again, and a few salvage reads of a list page that
      drew a 500: 15.
    """
    return 1.6 * (fault_free + 2 * fault_free_bugs) + BURST + 15


def test_sync_refresh_and_nuke_under_rate_limits_5xx_drops_and_524_equal_the_truth(
    sb: Sandbox, tmp_path: Path
) -> None:
    reference = make_mirror(sb, tmp_path / "reference.db")  # the same runs without faults
    chaotic = make_mirror(sb, tmp_path / "chaos.db", client_options=CHAOS_OPTIONS)
    big, middle, small = products(sb)

    def fault_free(run: str) -> tuple[int, int]:
        sb.clear_faults()
        sb.reset_counters()
        result = getattr(reference, run)(**({"confirm": True} if run == "nuke" else {}))
        assert result.status == "success"
        return sb.requests_total, sb.counters["bugs"]

    def under_chaos(run: str, retry_after_format: str) -> None:
        requests, bug_requests = fault_free(run)
        sb.set_faults(**CHAOS, retry_after_format=retry_after_format)
        sb.reset_counters()

        def burst_once(event: tt.ProgressEvent) -> None:
            if event.phase == "tests" and not burst:
                burst.append(time.monotonic())
                sb.set_faults(rate_limit_next=BURST)

        burst: list[float] = []
        options: dict[str, Any] = {"on_progress": burst_once}
        if run == "nuke":
            options["confirm"] = True
        result = getattr(chaotic, run)(**options)
        ended = time.monotonic()

        assert result.status == "success", result.to_frame().to_string()
        assert_mirror_equals_truth(chaotic.path, sb)
        assert sb.faults.rate_limit_next == 0, "the burst of 429s never struck"
        assert sb.counters["bugs"] > bug_requests, "no bugs request was halved after a 524"
        assert ended - burst[0] >= 0.9, "the run did not pause for Retry-After"
        assert sb.requests_total <= request_bound(requests, bug_requests), (
            run,
            sb.requests_total,
            requests,
            bug_requests,
        )

    under_chaos("sync", "seconds")

    new = sb.add_tests(middle, count=30)
    archived = sb.test_ids(big)[40]
    sb.update_test(archived, status="archived", title="archived upstream")
    sb.delete_tests([sb.test_ids(small)[5]])
    under_chaos("refresh", "http-date")
    assert set(new) <= {r["id"] for r in rows(chaotic.path, "SELECT id FROM tests")}

    sb.add_tests(small, count=3)
    under_chaos("nuke", "http-date")


# -- 3. hangs -------------------------------------------------------------------------------

# Seconds a hanging request sleeps on the server: far beyond the 0.5 s client timeout used
# here, so a run that waited for a hang would take longer than the bounds asserted below.
HANG = 30


def test_a_524_for_large_bugs_batches_costs_a_handful_of_requests_per_run(
    sb: Sandbox, tmp_path: Path
) -> None:
    """The batch size that works is learned once per run, not found again for each batch."""
    over = 4  # a bugs request for more than 4 tests answers 524
    sb.set_faults(bugs_524_over=over)
    options = dataclasses.replace(FAST, concurrency=8)  # pinned: the first wave is known
    mirror = make_mirror(sb, tmp_path / "m.db", client_options=options)

    result = mirror.sync()

    assert result.status == "success"
    assert_mirror_equals_truth(mirror.path, sb)
    # The engine asks for the bugs of each product's tests 15 at a time (the last batch
    # shorter); at the learned size each batch of n tests takes ceil(n / 4) requests.
    batch = FAST.bug_batch_size
    sizes = [len(tests) for tests in _tests_by_product(sb).values()]
    needed = sum(
        (n // batch) * math.ceil(batch / over) + math.ceil(n % batch / over) for n in sizes
    )
    # The first wave of requests in flight may all answer 524 (the concurrency limit),
    # then the search for the size takes at most one failed probe per halving, and each
    # failed batch is split once more than it needs: a constant, whatever the account size.
    overhead = 8 + 2 * math.ceil(math.log2(batch))
    assert sb.counters["bugs"] <= needed + overhead, (sb.counters["bugs"], needed)


def _tests_by_product(sb: Sandbox) -> dict[int, list[int]]:
    truth = sb.truth()
    by_product: dict[int, list[int]] = {pid: [] for pid in truth.products}
    for test_id, product_id in truth.product_of_test.items():
        by_product[product_id].append(test_id)
    return by_product


def test_a_request_hanging_past_the_timeout_is_retried(sb: Sandbox, db_path: Path) -> None:
    options = dataclasses.replace(FAST, timeout=0.5)
    sb.set_faults(hang_next=1, hang_seconds=HANG)
    started = time.monotonic()

    result = make_mirror(sb, db_path, client_options=options).sync()

    assert time.monotonic() - started < HANG / 2  # did not wait for the hang to end
    assert result.status == "success"
    assert sb.counters["products"] == 2  # the first request hung and was sent again
    assert_mirror_equals_truth(db_path, sb)


def test_a_request_that_keeps_hanging_is_reported_and_the_run_does_not_hang(
    sb: Sandbox, db_path: Path
) -> None:
    options = dataclasses.replace(FAST, timeout=0.5, max_attempts=3)
    sb.set_faults(hang_rate=1.0, hang_seconds=HANG)
    started = time.monotonic()

    with pytest.raises(ServiceError) as failure:
        make_mirror(sb, db_path, client_options=options).sync()

    assert time.monotonic() - started < HANG / 2  # 3 attempts of 0.5 s, not 3 hangs
    assert "GET products" in str(failure.value)
    assert "timed out" in str(failure.value)
    assert "3 attempts" in str(failure.value)
    assert sb.counters["products"] == 3
    assert not db_path.exists()  # nothing was written: the product list never came


def test_hangs_in_the_middle_of_a_run_end_in_a_complete_mirror(sb: Sandbox, db_path: Path) -> None:
    options = dataclasses.replace(FAST, timeout=0.5)
    sb.set_faults(hang_rate=0.05, hang_seconds=HANG)
    started = time.monotonic()

    result = make_mirror(sb, db_path, client_options=options).refresh()

    assert time.monotonic() - started < HANG / 2
    assert result.status == "success", result.to_frame().to_string()
    assert_mirror_equals_truth(db_path, sb)


# -- bad local state ------------------------------------------------------------------------


def not_sqlite(good: bytes, path: Path) -> None:
    path.write_text("id,title\n1,my notes - not a database\n" * 200)


def corrupt(good: bytes, path: Path) -> None:
    # The header and the schema page survive; every page after them is overwritten.
    filler = bytes(range(256)) * (len(good) // 256 + 1)
    path.write_bytes(good[:4096] + filler[: len(good) - 4096])


def damaged_header(good: bytes, path: Path) -> None:
    path.write_bytes(good[:16] + b"\x00\x07" + good[18:])  # an impossible page size


def newer_schema(good: bytes, path: Path) -> None:
    path.write_bytes(good)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()


def other_program(good: bytes, path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tests (id INTEGER PRIMARY KEY, note TEXT)")
    conn.execute("INSERT INTO tests VALUES (1, 'somebody else''s data')")
    conn.commit()
    conn.close()


BAD_STATES = {
    "not-sqlite": not_sqlite,
    "corrupt": corrupt,
    "damaged-header": damaged_header,
    "newer-schema": newer_schema,
    "other-program": other_program,
}


def bad_database(
    state: str,
    good: bytes,
    folder: Path,
    states: dict[str, Callable[[bytes, Path], None]] = BAD_STATES,
) -> Path:
    """``folder/mirror.db`` in a bad state, and nothing else in ``folder``."""
    folder.mkdir()
    path = folder / "mirror.db"
    states[state](good, path)
    for side in folder.iterdir():
        if side != path:
            side.unlink()
    return path


@pytest.mark.parametrize("state", sorted(BAD_STATES))
@pytest.mark.parametrize("operation", ["sync", "refresh", "nuke", "status", "frames"])
def test_bad_local_state_is_a_clear_error_naming_the_file_and_nothing_is_overwritten(
    steady: Sandbox,
    good_bytes: bytes,
    tmp_path: Path,
    state: str,
    operation: str,
    request: pytest.FixtureRequest,
) -> None:
    path = bad_database(state, good_bytes, tmp_path / "data")
    before = path.read_bytes()
    mirror = make_mirror(steady, path)
    calls = {
        "sync": mirror.sync,
        "refresh": mirror.refresh,
        "nuke": lambda: mirror.nuke(confirm=True),
        "status": mirror.status,
        "frames": mirror.tests,
    }

    with pytest.raises(StoreError) as error:
        calls[operation]()

    assert str(path) in str(error.value)
    assert not isinstance(error.value, SyncInProgress), error.value
    assert path.read_bytes() == before
    leftovers = [
        p.name for p in path.parent.iterdir() if ".backup-" in p.name or ".rebuild-" in p.name
    ]
    assert leftovers == []


def test_bad_local_state_from_the_cli_exits_1_naming_the_file(
    steady: Sandbox, good_bytes: bytes, tmp_path: Path
) -> None:
    path = bad_database("corrupt", good_bytes, tmp_path / "data")
    before = path.read_bytes()

    env = cli_env(steady, path)
    synced = cli("sync", "--force", "--no-progress", env=env)
    status = cli("status", env=env)

    for done in (synced, status):
        assert done.exit_code == 1, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert str(path) in done.stderr
    assert path.read_bytes() == before


READ_ONLY_PATH = Path("/proc/testio-toolkit-mirror.db")  # not writable, even for root


@pytest.mark.parametrize("operation", ["sync", "refresh", "nuke", "clear"])
def test_a_read_only_location_is_a_clear_error_naming_the_file(
    steady: Sandbox, operation: str
) -> None:
    mirror = make_mirror(steady, READ_ONLY_PATH)
    calls = {
        "sync": mirror.sync,
        "refresh": mirror.refresh,
        "nuke": lambda: mirror.nuke(confirm=True),
        "clear": mirror.clear_unreadable,
    }

    with pytest.raises(StoreError) as error:
        calls[operation]()

    assert str(READ_ONLY_PATH) in str(error.value)
    assert not isinstance(error.value, SyncInProgress), error.value
    assert "running" not in str(error.value), error.value
    assert not READ_ONLY_PATH.exists()


def test_a_read_only_location_from_the_cli_is_not_reported_as_a_running_sync(
    steady: Sandbox,
) -> None:
    done = cli("sync", "--no-progress", env=cli_env(steady, READ_ONLY_PATH))

    assert done.exit_code == 1
    assert str(READ_ONLY_PATH) in done.stderr
    assert "SyncInProgress" not in done.stderr and "running" not in done.stderr, done.stderr
