"""refresh() and `sync --force`: a non-destructive full refresh, through the CLI."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

import testio_toolkit as tt
from testio_toolkit.rows import to_utc
from testio_toolkit.sandbox import Sandbox

from .conftest import (
    assert_mirror_equals_truth,
    cli,
    cli_env,
    digest,
    table_rows,
)
from .test_sync import logged_writes, sorted_test_ids, watch_writes


def annotate(path: Path) -> None:
    """What a CSM does locally: a note on every test, a table of their own."""
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE tests ADD COLUMN csm_note TEXT")
    conn.execute("UPDATE tests SET csm_note = 'note ' || id")
    conn.execute("CREATE TABLE my_tags (test_id INTEGER, tag TEXT)")
    conn.execute("INSERT INTO my_tags VALUES (1, 'vip'), (2, 'follow-up')")
    conn.commit()
    conn.close()


def change_upstream(sb: Sandbox) -> dict[str, list[int]]:
    """5 tests changed, 7 added, 2 deleted; 3 bugs changed, 4 added.

    Changes are picked so that each shows in one count only: a status change (a title
    change would also change the `test.title` embedded in every bug of the test), new tests
    without bugs, deleted tests without bugs (their bugs would be marked gone with them), and
    bug changes on archived tests (only a refresh, not an incremental sync, sees those).
    """
    truth = sb.truth()
    products = sorted(truth.products)
    archived = [t for t in sorted(truth.tests) if truth.tests[t]["status"] == "archived"]
    changed = archived[:5]
    for test_id in changed:
        sb.update_test(test_id, status="cancelled")
    added = sb.add_tests(products[0], count=4) + sb.add_tests(products[1], count=3)
    fresh = sb.truth().bugs
    sb.delete_bugs([b for b, v in fresh.items() if v["test"]["id"] in added])
    with_bugs = {v["test"]["id"] for v in truth.bugs.values()}
    deleted = [t for t in archived[10:] if t not in with_bugs][:2]
    assert len(deleted) == 2
    sb.delete_tests(deleted)
    bug_tests = archived[20:40]
    bugs = [b for b, v in truth.bugs.items() if v["test"]["id"] in bug_tests]
    changed_bugs = bugs[:3]
    for bug_id in changed_bugs:
        current = truth.bugs[bug_id]["status"]
        sb.update_bug(bug_id, status="rejected" if current != "rejected" else "accepted")
    added_bugs = sb.add_bugs(archived[30], count=4)
    return {
        "changed": changed,
        "added": added,
        "deleted": deleted,
        "changed_bugs": changed_bugs,
        "added_bugs": added_bugs,
    }


def counts_from_output(stdout: str) -> dict[str, list[int]]:
    """The TOTAL row of the CLI table: tests and bugs as added/updated/gone/unchanged."""
    total = next(line for line in stdout.splitlines() if line.startswith("TOTAL"))
    slashed = re.findall(r"(\d+)/(\d+)/(\d+)/(\d+)", total)
    return {"tests": [int(n) for n in slashed[0]], "bugs": [int(n) for n in slashed[1]]}


def test_force_refresh_keeps_local_state_and_applies_every_upstream_change(
    sandbox: Sandbox, db_path: Path
) -> None:
    env = cli_env(sandbox, db_path)
    first = cli("sync", "--no-progress", env=env)
    assert first.exit_code == 0, first.stderr
    annotate(db_path)
    inode = db_path.stat().st_ino
    tests_before = len(table_rows(db_path, "tests"))
    bugs_before = len(table_rows(db_path, "bugs"))
    change = change_upstream(sandbox)

    refresh = cli("sync", "--force", "--no-progress", env=env)

    assert refresh.exit_code == 0, refresh.stderr
    assert db_path.stat().st_ino == inode
    tests = table_rows(db_path, "tests")
    for test_id in set(tests) - set(change["added"]):
        assert tests[test_id]["csm_note"] == f"note {test_id}"
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM my_tags").fetchone()[0] == 2
    runs = conn.execute("SELECT mode, status FROM sync_runs ORDER BY id").fetchall()
    conn.close()
    assert runs == [("sync", "success"), ("refresh", "success")]
    for test_id in change["deleted"]:
        assert tests[test_id]["deleted_upstream_at"] is not None
    truth = sandbox.truth().without_credentials()
    for test_id in change["changed"]:
        assert json.loads(tests[test_id]["raw"]) == truth.tests[test_id]
    bugs = table_rows(db_path, "bugs")
    for bug_id in change["changed_bugs"] + change["added_bugs"]:
        assert json.loads(bugs[bug_id]["raw"]) == truth.bugs[bug_id]
    assert_mirror_equals_truth(db_path, sandbox)
    counts = counts_from_output(refresh.stdout)
    assert counts["tests"] == [7, 5, 2, tests_before - 5 - 2]
    assert counts["bugs"] == [4, 3, 0, bugs_before - 3]

    import testio_toolkit as tt

    frame = tt.Mirror(db_path, token=sandbox.token, base_url=sandbox.url).tests()
    assert not set(change["deleted"]) & set(frame["id"])
    assert set(change["deleted"]) <= set(
        tt.Mirror(db_path, token=sandbox.token, base_url=sandbox.url).tests(include_deleted=True)[
            "id"
        ]
    )


def test_second_refresh_with_nothing_changed_rewrites_no_row(
    sandbox: Sandbox, db_path: Path, synced: tt.Mirror
) -> None:
    mirror = synced
    mirror.refresh()
    watch_writes(db_path)

    result = mirror.refresh()

    assert logged_writes(db_path) == []
    assert (result.tests.added, result.tests.updated, result.tests.marked_gone) == (0, 0, 0)
    assert (result.bugs.added, result.bugs.updated, result.bugs.marked_gone) == (0, 0, 0)
    assert result.tests.unchanged == len(sandbox.truth().tests)
    assert result.bugs.unchanged == len(sandbox.truth().bugs)


def test_dry_run_force_is_byte_identical_and_predicts_the_real_run(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    change_upstream(sandbox)
    before = digest(db_path)

    dry = cli("sync", "--force", "--dry-run", "--no-progress", env=env)

    assert dry.exit_code == 0, dry.stderr
    assert "dry run" in dry.stdout
    assert digest(db_path) == before
    real = cli("sync", "--force", "--no-progress", env=env)
    assert counts_from_output(dry.stdout) == counts_from_output(real.stdout)


def test_refresh_of_one_product_touches_no_other_product(
    sandbox: Sandbox, db_path: Path, synced: tt.Mirror
) -> None:
    mirror = synced
    products = sorted(sandbox.truth().products)
    watch_writes(db_path)
    for product_id in products:  # changes everywhere; only one product is refreshed
        sandbox.update_test(sorted_test_ids(sandbox, product_id)[-1], title="changed")

    result = mirror.refresh(products=[products[0]])

    assert [r.product_id for r in result.products] == [products[0]]
    conn = sqlite3.connect(db_path)
    written = conn.execute(
        "SELECT DISTINCT t.product_id FROM write_log w JOIN tests t ON t.id = w.id "
        "WHERE w.tbl = 'tests'"
    ).fetchall()
    bug_products = conn.execute(
        "SELECT DISTINCT b.product_id FROM write_log w JOIN bugs b ON b.id = w.id "
        "WHERE w.tbl = 'bugs'"
    ).fetchall()
    conn.close()
    assert written == [(products[0],)]
    assert bug_products in ([], [(products[0],)])


def test_refresh_since_marks_nothing_outside_its_window(
    sandbox: Sandbox, db_path: Path, synced: tt.Mirror
) -> None:
    mirror = synced
    truth = sandbox.truth()
    ordered = sorted(truth.tests, key=lambda t: to_utc(truth.tests[t]["end_at"]) or "")
    since = (to_utc(truth.tests[ordered[len(ordered) // 2]]["end_at"]) or "")[:10]
    old, recent = [], []
    for product_id in truth.products:  # one deletion on each side of the window per product
        ids = sorted_test_ids(sandbox, product_id)
        recent.append(ids[2])
        # The oldest scheduled test: unscheduled ones (no end_at) sort after it.
        old.append([t for t in ids if truth.tests[t]["end_at"] is not None][-1])
    assert all((to_utc(truth.tests[t]["end_at"]) or "") >= since for t in recent)
    assert all((to_utc(truth.tests[t]["end_at"]) or "") < since for t in old)
    sandbox.delete_tests(old + recent)

    result = mirror.refresh(since=since)

    assert result.tests.marked_gone == len(recent)
    tests = table_rows(db_path, "tests")
    assert all(tests[t]["deleted_upstream_at"] is not None for t in recent)
    assert all(tests[t]["deleted_upstream_at"] is None for t in old)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--product", "999999"], 2, "unknown product 999999"),
        (["--since", "last tuesday"], 2, "is not a date"),
        (["--since", "2025-13-45"], 2, "is not a date"),
    ],
)
def test_force_with_bad_input_fails_clearly_and_changes_nothing(
    sandbox: Sandbox,
    db_path: Path,
    synced_env: dict[str, str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    env = synced_env
    before = digest(db_path)

    result = cli("sync", "--force", "--no-progress", *args, env=env)

    assert result.exit_code == code
    assert message in result.stderr
    assert digest(db_path) == before


def test_bugs_of_a_deleted_test_are_marked_gone(
    sandbox: Sandbox, db_path: Path, synced: tt.Mirror
) -> None:
    mirror = synced
    truth = sandbox.truth()
    test_id = next(v["test"]["id"] for v in truth.bugs.values())
    bug_ids = {b for b, v in truth.bugs.items() if v["test"]["id"] == test_id}
    sandbox.delete_tests([test_id])

    result = mirror.refresh()

    assert (result.tests.marked_gone, result.bugs.marked_gone) == (1, len(bug_ids))
    assert not bug_ids & set(mirror.bugs()["id"])
    assert bug_ids <= set(mirror.bugs(include_deleted=True)["id"])
    assert_mirror_equals_truth(db_path, sandbox)
