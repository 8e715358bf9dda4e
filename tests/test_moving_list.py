"""A mirror that cannot silently lose a test: the five ways a moving account used to lose one.

Every test runs the sandbox over real HTTP, into real database files. The oracle is the
sandbox's own truth before and after the run: a test that existed through the whole run
(in both snapshots) must be in the mirror, or the run must not say ``success``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testio_toolkit.sandbox import Sandbox

from .conftest import FAST, assert_mirror_equals_truth, make_mirror, synced_copy

# Small pages make many boundaries on the small preset, where the list can move.
SMALL_PAGES = replace(FAST, per_page=5)


def live_test_ids(path: Path) -> set[int]:
    conn = sqlite3.connect(path)
    try:
        return {
            r[0] for r in conn.execute("SELECT id FROM tests WHERE deleted_upstream_at IS NULL")
        }
    finally:
        conn.close()


def at(sb: Sandbox, hours: float) -> str:
    """The sandbox's now plus some hours, as the service writes timestamps."""
    moment = datetime.fromtimestamp(sb.now(), UTC) + timedelta(hours=hours)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@pytest.mark.parametrize("mode", ["sync", "refresh", "nuke"])
@pytest.mark.parametrize("kinds", ["insert_head", "delete_above", "move_up", "move_down"])
def test_a_full_read_of_a_moving_list_holds_every_test_or_does_not_say_success(
    sandbox: Sandbox, tmp_path: Path, small_template: Path, mode: str, kinds: str
) -> None:
    path = tmp_path / "m.db"
    if mode != "sync":  # refresh and nuke start from a mirror; the first sync from nothing
        synced_copy(small_template, sandbox, path)
    mirror = make_mirror(sandbox, path, client_options=SMALL_PAGES)
    before = set(sandbox.truth().tests)
    sandbox.set_faults(list_moves_every=4, list_moves=kinds, fault_seed=3)

    if mode == "nuke":
        try:
            result = mirror.nuke(confirm=True)
        except Exception as exc:  # RebuildFailed: the old mirror stays, whole
            assert type(exc).__name__ == "RebuildFailed"
            assert "the list moved while it was read" in str(exc)
            result = None
    else:
        result = getattr(mirror, mode)()

    moved = sandbox.movements
    assert moved, "the fault must have moved the list"
    through = before & set(sandbox.truth().tests)
    missing = through - live_test_ids(path)
    if result is not None and result.status == "success":
        assert not missing, f"success, yet {len(missing)} tests that existed are missing"
    else:
        assert result is None or any(
            "the list moved while it was read" in (r.error or "") for r in result.products
        )

    # Once the list stops moving, one more run of the same mode leaves a whole mirror.
    sandbox.clear_faults()
    again = mirror.nuke(confirm=True) if mode == "nuke" else getattr(mirror, mode)()
    assert again.status == "success"
    if mode == "sync":
        assert set(sandbox.truth().tests) <= live_test_ids(path)
    else:
        assert_mirror_equals_truth(path, sandbox)


def test_a_read_that_sees_the_list_move_reads_it_again_and_says_so_when_it_cannot_prove_it(
    sandbox: Sandbox, db_path: Path
) -> None:
    # A movement on every list request: no read of a multi-page product can prove itself.
    mirror = make_mirror(sandbox, db_path, client_options=SMALL_PAGES)
    sandbox.set_faults(list_moves_every=1, list_moves="delete_above,move_up", fault_seed=1)

    result = mirror.sync()

    assert result.status == "partial"
    moved = [r for r in result.products if r.status == "partial"]
    assert moved and all("the list moved while it was read" in (r.error or "") for r in moved)
    conn = sqlite3.connect(db_path)
    complete = dict(conn.execute("SELECT product_id, backfill_complete FROM product_state"))
    conn.close()
    assert all(not complete.get(r.product_id) for r in moved)  # the next run reads in full

    sandbox.clear_faults()
    assert mirror.sync().status == "success"
    assert_mirror_equals_truth(db_path, sandbox)


def test_sync_finds_a_new_short_test_that_sorts_behind_known_ones(
    sandbox: Sandbox, db_path: Path
) -> None:
    mirror = make_mirror(sandbox, db_path)
    product_id = next(iter(sandbox.truth().products))
    sandbox.add_tests(product_id, count=30, where="head")  # long tests, scheduled far ahead
    mirror.sync()
    sandbox.advance(600)
    (short,) = sandbox.add_tests(product_id, count=1, where="sorted")
    sandbox.update_test(short, start_at=at(sandbox, 0), end_at=at(sandbox, 3))
    position = sandbox.test_ids(product_id).index(short)
    assert position > 25, "the new test must sort behind a whole page of known tests"

    result = mirror.sync()

    assert result.status == "success"
    assert short in live_test_ids(db_path)


@pytest.mark.parametrize("since", [None, "30d", "2025-01-01"])
@pytest.mark.parametrize("mode", ["sync", "refresh"])
def test_new_unscheduled_tests_in_the_tail_are_found(
    sandbox: Sandbox, db_path: Path, mode: str, since: str | None
) -> None:
    mirror = make_mirror(sandbox, db_path)
    mirror.sync()
    product_id = next(iter(sandbox.truth().products))
    sandbox.advance(600)
    new = sandbox.add_tests(product_id, count=2, where="unscheduled")
    order = sandbox.test_ids(product_id)
    served = sandbox.truth([product_id]).tests
    unscheduled = [t for t in order if served[t]["end_at"] is None]
    assert order[-len(unscheduled) :] == unscheduled  # after every scheduled test
    assert set(new) <= set(unscheduled) and min(map(order.index, new)) >= 25  # past page 1

    result = getattr(mirror, mode)(since=since)

    assert result.status == "success"
    assert set(new) <= live_test_ids(db_path)


def test_a_product_deleted_upstream_takes_its_rows_with_it_and_brings_them_back(
    sandbox: Sandbox, db_path: Path
) -> None:
    mirror = make_mirror(sandbox, db_path)
    mirror.sync()
    truth = sandbox.truth()
    product_id = next(iter(truth.products))
    its_tests = {t for t, p in truth.product_of_test.items() if p == product_id}
    sandbox.delete_product(product_id)

    for mode in ("sync", "refresh"):
        assert getattr(mirror, mode)().status == "success"
        assert mirror.tests()["product_id"].eq(product_id).sum() == 0
        assert mirror.bugs()["product_id"].eq(product_id).sum() == 0
        assert mirror.features()["product_id"].eq(product_id).sum() == 0
        assert product_id not in set(mirror.products()["id"])
        counts = mirror.status().table_counts
        assert counts["tests"] == len(truth.tests) - len(its_tests)
        assert counts["products"] == len(truth.products) - 1

    sandbox.restore_product(product_id)
    assert mirror.sync().status == "success"
    assert its_tests <= set(mirror.tests()["id"])
    assert_mirror_equals_truth(db_path, sandbox)


def test_the_cli_exits_1_while_the_list_moves_and_0_once_it_is_read_whole(
    sandbox: Sandbox, db_path: Path
) -> None:
    from click.testing import CliRunner

    from testio_toolkit.cli import cli

    env = {
        "TESTIO_CUSTOMER_API_TOKEN": sandbox.token,
        "TESTIO_CUSTOMER_API_BASE_URL": sandbox.url,
        "TESTIO_DB_PATH": str(db_path),
    }
    sandbox.set_faults(list_moves_every=1, list_moves="delete_above,move_up", fault_seed=2)
    moving = CliRunner().invoke(cli, ["sync", "--force"], env=env)
    assert moving.exit_code == 1, moving.output
    assert "the list moved while it was read" in moving.output

    sandbox.clear_faults()
    still = CliRunner().invoke(cli, ["sync"], env=env)
    assert still.exit_code == 0, still.output
    assert_mirror_equals_truth(db_path, sandbox)
