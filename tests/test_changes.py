"""The change feed: every run records exactly what it changed, and the history is kept.

The oracle is the sandbox: what a test changed upstream, with the before and after values
read from ``sandbox.truth()``, never what the store holds.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import testio_toolkit as tt
from testio_toolkit.errors import ConfigError
from testio_toolkit.feed import Change, Tally, diff_rebuild, diff_row, summary_line
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.store import MIGRATIONS, SCHEMA_VERSION, Store
from testio_toolkit.vocabulary import ChangeKind, Entity

from .conftest import cli, cli_env, digest, make_mirror

Row = tuple[str, int, str, str | None, str | None, str | None]


def feed(mirror: tt.Mirror, **filters: Any) -> set[Row]:
    """The recorded changes as (entity, id, kind, field, old, new)."""
    filters.setdefault("since", None)
    frame = mirror.changes(**filters)
    return {
        (str(r.entity), int(r.entity_id), str(r.kind), r.field, r.old, r.new)
        for r in frame.itertuples()
    }


def history(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM changes ORDER BY id").fetchall()
    finally:
        conn.close()


def utc(text: str | None) -> str | None:
    """The oracle's own normalisation of a service time to UTC 'Z' text."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def added(entity: str, ids: Any) -> set[Row]:
    return {(entity, int(i), "added", None, None, None) for i in ids}


def gone(entity: str, ids: Any) -> set[Row]:
    return {(entity, int(i), "gone", None, None, None) for i in ids}


def bugs_of(sb: Sandbox, test_ids: Any) -> set[int]:
    wanted = set(test_ids)
    return {b for b, v in sb.truth().bugs.items() if v["test"]["id"] in wanted}


def largest_products(sb: Sandbox) -> list[int]:
    truth = sb.truth()
    return sorted(truth.products, key=lambda p: -len(sb.test_ids(p)))


def other(value: str, choices: tuple[str, ...]) -> str:
    return next(c for c in choices if c != value)


# -- the pure decisions ------------------------------------------------------------------


def test_the_feed_modules_examples_hold() -> None:
    import doctest

    from testio_toolkit import feed

    assert doctest.testmod(feed).failed == 0


def test_diff_row_records_tracked_fields_only_and_returns_before_changes() -> None:
    before = {"status": "running", "title": "A", "start_at": None, "end_at": "x"}
    before |= {"testing_type": "coverage"}
    after = {**before, "id": 7, "product_id": 3, "status": "locked", "raw": "ignored"}
    assert diff_row("tests", before, after, was_gone=False) == [
        Change(Entity.TEST, 7, 3, ChangeKind.CHANGED, field="status", old="running", new="locked")
    ]
    assert diff_row("tests", before, {**before, "id": 7, "product_id": 3}, was_gone=False) == []
    back = diff_row("tests", before, {**before, "id": 7, "product_id": 3}, was_gone=True)
    assert [c.kind for c in back] == ["returned"]
    bug = {"id": 9, "product_id": 3, "test_id": 7, "severity": "critical", "status": None}
    assert diff_row("bugs", None, bug, was_gone=False) == [
        Change(Entity.BUG, 9, 3, ChangeKind.ADDED, test_id=7, severity="critical")
    ]


def test_diff_rebuild_compares_live_records_of_both_mirrors() -> None:
    def row(i: int, title: str, gone: bool = False) -> dict[str, Any]:
        return {"id": i, "product_id": 1, "title": title, "gone": gone}

    previous = {1: row(1, "a"), 2: row(2, "b"), 3: row(3, "c", gone=True), 4: row(4, "d", True)}
    rebuilt = {1: row(1, "a2"), 3: row(3, "c"), 4: row(4, "d", True), 5: row(5, "e")}
    found = {(c.entity_id, c.kind, c.field) for c in diff_rebuild("features", previous, rebuilt)}
    assert found == {
        (1, "changed", "title"),
        (2, "gone", None),
        (3, "returned", None),
        (5, "added", None),
    }


def test_summary_line_names_news_transitions_and_the_rest() -> None:
    tally = Tally()
    assert summary_line(tally) == "no changes"
    tally.add(
        [Change(Entity.BUG, i, 1, ChangeKind.ADDED, severity="critical" if i < 3 else "low")
         for i in range(12)]
        + [Change(Entity.TEST, i, 1, ChangeKind.CHANGED, field="status", old="running",
                  new="customer_finalized") for i in range(4)]
        + [Change(Entity.BUG, i, 1, ChangeKind.CHANGED, field="status", old="forwarded",
                  new="rejected") for i in range(2)]
        + [Change(Entity.TEST, 1, 1, ChangeKind.CHANGED, field="title", old="a", new="b"),
           Change(Entity.TEST, 8, 1, ChangeKind.GONE),
           Change(Entity.PRODUCT, 1, 1, ChangeKind.RETURNED)]
    )  # fmt: skip
    assert summary_line(tally) == (
        "12 new bugs, 3 of them critical; 4 tests finished; 2 bugs rejected; "
        "1 other change; 1 test gone; 1 product back"
    )
    one = Tally()
    one.add([Change(Entity.BUG, 1, 1, ChangeKind.ADDED, severity="critical")])
    assert summary_line(one) == "1 new bug, all critical"


# -- each mode records exactly what changed upstream -------------------------------------


def test_a_first_sync_records_each_product_once_as_its_baseline(mirror: tt.Mirror) -> None:
    result = mirror.sync()
    products = list(mirror.products()["id"])
    assert feed(mirror) == added("product", products)
    assert result.change_line == f"{len(products)} new products"


def test_a_refresh_records_exactly_the_upstream_changes_with_old_and_new_values(
    sandbox: Sandbox, mirror: tt.Mirror
) -> None:
    mirror.sync()
    before = feed(mirror)
    truth = sandbox.truth()
    pid, second = largest_products(sandbox)[:2]
    tests = sandbox.test_ids(pid)
    with_bugs = [t for t in tests if bugs_of(sandbox, [t])]
    a, b, c, d, e = with_bugs[:5]
    expected: set[Row] = set()

    # a test's status and title; another's testing type and end; an untracked field
    t_a = truth.tests[a]
    sandbox.update_test(a, status="customer_finalized", title="Neu ✨ тест")
    expected |= {
        ("test", a, "changed", "status", t_a["status"], "customer_finalized"),
        ("test", a, "changed", "title", t_a["title"], "Neu ✨ тест"),
    }
    t_b = truth.tests[b]
    new_type = other(t_b["testing_type"], ("coverage", "focused", "rapid"))
    sandbox.update_test(b, testing_type=new_type, end_at="2025-06-01T09:00:00Z")
    expected.add(("test", b, "changed", "testing_type", t_b["testing_type"], new_type))
    if utc(t_b["end_at"]) != "2025-06-01T09:00:00Z":
        expected.add(("test", b, "changed", "end_at", utc(t_b["end_at"]), "2025-06-01T09:00:00Z"))
    sandbox.update_test(c, goal_text="untracked: records nothing")

    # bugs: status and severity, a title, an untracked field, added, deleted
    x, y, z, w = sorted(bugs_of(sandbox, [a, b, c]))[:4]
    b_x = truth.bugs[x]
    status = other(b_x["status"], ("accepted", "rejected"))
    severity = other(b_x["severity"], ("low", "high", "critical"))
    sandbox.update_bug(x, status=status, severity=severity)
    expected |= {
        ("bug", x, "changed", "status", b_x["status"], status),
        ("bug", x, "changed", "severity", b_x["severity"], severity),
    }
    sandbox.update_bug(y, title="Kasse: Knopf fehlt")
    expected.add(("bug", y, "changed", "title", truth.bugs[y]["title"], "Kasse: Knopf fehlt"))
    sandbox.update_bug(z, known=not truth.bugs[z]["known"], actual_result="untracked")
    sandbox.delete_bugs([w])
    expected |= gone("bug", [w])
    new_bugs = sandbox.add_bugs(c, 2)
    expected |= added("bug", new_bugs)

    # tests added (with their bugs) and deleted (with theirs)
    doomed_bugs = bugs_of(sandbox, [d])
    sandbox.delete_tests([d])
    expected |= gone("test", [d]) | gone("bug", doomed_bugs)
    new_tests = sandbox.add_tests(pid, 2)
    expected |= added("test", new_tests) | added("bug", bugs_of(sandbox, new_tests))

    # a feature's title, another product's name
    fid = next(f for f, p in truth.product_of_feature.items() if p == pid)
    sandbox.update_feature(fid, title="Kasse 2.0")
    expected.add(("feature", fid, "changed", "title", truth.features[fid]["title"], "Kasse 2.0"))
    sandbox.update_product(second, name="Umbenannt GmbH")
    expected.add(
        ("product", second, "changed", "name", truth.products[second]["name"], "Umbenannt GmbH")
    )
    del e

    result = mirror.refresh()

    assert result.ok
    assert feed(mirror, run=result.run_id) == expected
    assert feed(mirror) == before | expected
    frame = mirror.changes(run=result.run_id)
    assert set(frame["mode"]) == {"refresh"}
    assert set(frame.loc[frame["entity"] == "bug", "product_id"]) <= {pid}
    assert result.changes.total == len(expected)
    assert f"{len(new_tests)} new tests" in result.change_line
    assert "1 test finished" in result.change_line


def test_an_incremental_sync_records_new_tests_and_changed_changeable_ones(
    sandbox: Sandbox, mirror: tt.Mirror
) -> None:
    mirror.sync()
    pid = largest_products(sandbox)[0]
    truth = sandbox.truth()
    running = next(t for t in sandbox.test_ids(pid) if truth.tests[t]["status"] == "running")
    sandbox.update_test(running, status="locked")
    new = sandbox.add_tests(pid, 1)

    result = mirror.sync()

    assert feed(mirror, run=result.run_id) == (
        {("test", running, "changed", "status", "running", "locked")}
        | added("test", new)
        | added("bug", bugs_of(sandbox, new))
    )


def test_a_product_gone_and_back_records_one_row_each(sandbox: Sandbox, mirror: tt.Mirror) -> None:
    mirror.sync()
    pid = largest_products(sandbox)[-1]
    sandbox.delete_product(pid)
    first = mirror.refresh()
    sandbox.restore_product(pid)
    second = mirror.refresh()

    assert feed(mirror, run=first.run_id) == gone("product", [pid])
    assert feed(mirror, run=second.run_id) == {("product", pid, "returned", None, None, None)}
    assert second.change_line == "1 product back"


def test_a_no_change_run_records_nothing_and_writes_no_change_row(
    mirror: tt.Mirror, db_path: Path
) -> None:
    mirror.sync()
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE change_writes (n INTEGER)")
    conn.execute(
        "CREATE TRIGGER count_changes AFTER INSERT ON changes "
        "BEGIN INSERT INTO change_writes VALUES (new.id); END"
    )
    conn.commit()
    conn.close()

    for run in (mirror.refresh, mirror.sync):
        assert run().change_line == "no changes"

    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT count(*) FROM change_writes").fetchone() == (0,)
    conn.close()


def test_a_dry_run_reports_the_changes_and_records_none(
    sandbox: Sandbox, mirror: tt.Mirror, db_path: Path
) -> None:
    mirror.sync()
    pid = largest_products(sandbox)[0]
    new = sandbox.add_tests(pid, 3)
    kept = history(db_path)
    mirror_file = digest(db_path)

    dry = mirror.refresh(dry_run=True)

    assert history(db_path) == kept
    assert digest(db_path) == mirror_file
    real = mirror.refresh()
    assert dry.changes == real.changes
    assert dry.changes.total == len(new) + len(bugs_of(sandbox, new))
    assert dry.change_line == "would record: " + real.change_line
    assert "would record: 3 new tests" in repr(dry)
    assert "would record: 3 new tests" in dry._repr_html_()


# -- the history is kept ---------------------------------------------------------------


def test_the_history_survives_a_refresh_a_nuke_and_a_restore(
    sandbox: Sandbox, mirror: tt.Mirror, db_path: Path
) -> None:
    mirror.sync()
    pid = largest_products(sandbox)[0]
    sandbox.add_tests(pid, 1)
    mirror.refresh()
    kept = history(db_path)
    assert len(kept) > 1
    mirror.refresh()
    assert history(db_path) == kept

    truth = sandbox.truth()
    changed, doomed = [t for t in sandbox.test_ids(pid) if truth.tests[t]["status"] == "running"][
        :2
    ]
    sandbox.update_test(changed, status="archived")
    doomed_bugs = bugs_of(sandbox, [doomed])
    sandbox.delete_tests([doomed])
    new = sandbox.add_tests(pid, 1)
    nuked = mirror.nuke(confirm=True)

    assert isinstance(nuked, tt.SyncResult) and nuked.ok
    assert history(db_path)[: len(kept)] == kept
    assert feed(mirror, run=nuked.run_id) == (
        {("test", changed, "changed", "status", "running", "archived")}
        | gone("test", [doomed])
        | gone("bug", doomed_bugs)
        | added("test", new)
        | added("bug", bugs_of(sandbox, new))
    )
    assert set(mirror.changes(run=nuked.run_id)["mode"]) == {"nuke"}

    mirror.restore()
    assert history(db_path) == kept


def test_a_product_nuke_keeps_the_history_and_records_under_its_own_run(
    sandbox: Sandbox, mirror: tt.Mirror, db_path: Path
) -> None:
    mirror.sync()
    pid, untouched = largest_products(sandbox)[:2]
    truth = sandbox.truth()
    test_id = sandbox.test_ids(pid)[0]
    sandbox.update_test(test_id, title="Nach dem Nuke")
    sandbox.update_test(sandbox.test_ids(untouched)[0], title="not rebuilt, not recorded")
    kept = history(db_path)

    nuked = mirror.nuke(products=[pid], confirm=True)

    assert isinstance(nuked, tt.SyncResult) and nuked.ok
    assert history(db_path)[: len(kept)] == kept
    assert nuked.run_id == int(mirror.runs()["id"].max())
    assert feed(mirror, run=nuked.run_id) == {
        ("test", test_id, "changed", "title", truth.tests[test_id]["title"], "Nach dem Nuke")
    }
    assert nuked.change_line == "1 other change"


def test_product_and_since_runs_record_only_what_they_touched(
    sandbox: Sandbox, mirror: tt.Mirror
) -> None:
    mirror.sync()
    pid, second = largest_products(sandbox)[:2]
    truth = sandbox.truth()
    by_end = sorted(
        (t for t in sandbox.test_ids(pid) if truth.tests[t]["end_at"]),
        key=lambda t: utc(truth.tests[t]["end_at"]) or "",
    )
    old, recent = by_end[0], by_end[-1]
    since = utc(truth.tests[recent]["end_at"])
    assert since is not None and since > (utc(truth.tests[old]["end_at"]) or "")
    elsewhere = sandbox.test_ids(second)[0]
    for test_id in (old, recent, elsewhere):
        sandbox.update_test(test_id, title=f"renamed {test_id}")

    one = mirror.refresh(products=[pid], since=since[:10])
    assert feed(mirror, run=one.run_id) == {
        ("test", recent, "changed", "title", truth.tests[recent]["title"], f"renamed {recent}")
    }
    rest = mirror.refresh()
    assert feed(mirror, run=rest.run_id) == {
        ("test", t, "changed", "title", truth.tests[t]["title"], f"renamed {t}")
        for t in (old, elsewhere)
    }


# -- reading and bounding the feed -------------------------------------------------------


def test_the_frame_is_typed_and_its_filters_check_their_values(
    sandbox: Sandbox, mirror: tt.Mirror
) -> None:
    mirror.sync()
    pid = largest_products(sandbox)[0]
    name = sandbox.truth().products[pid]["name"]
    new = sandbox.add_tests(pid, 1)
    result = mirror.refresh()

    frame = mirror.changes()
    assert str(frame["at"].dtype).startswith("datetime64") and str(frame["at"].dt.tz) == "UTC"
    assert list(frame["entity"].cat.categories) == ["product", "test", "feature", "bug"]
    assert list(frame["kind"].cat.categories) == ["added", "changed", "gone", "returned"]
    tests = mirror.changes(product=name, entity="test", kind="added", run=result.run_id)
    assert list(tests["entity_id"]) == new
    assert list(tests["title"]) == [sandbox.truth().tests[new[0]]["title"]]
    assert set(tests["product"]) == {name}
    assert mirror.changes(since="2000-01-01").equals(mirror.changes(since=None))
    future = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert mirror.changes(since=future).empty

    with pytest.raises(ConfigError, match="product, test, feature, bug"):
        mirror.changes(entity="tests")
    with pytest.raises(ConfigError, match="added, changed, gone, returned"):
        mirror.changes(kind="new")
    with pytest.raises(ConfigError, match="unknown product"):
        mirror.changes(product="nope")
    with pytest.raises(ConfigError, match="not a run id"):
        mirror.changes(run="last")
    with pytest.raises(ConfigError, match="not a date"):
        mirror.changes(since="yesterday")


def test_tt_changes_reads_the_default_mirror(sandbox: Sandbox, tmp_path: Path) -> None:
    tt.configure(tmp_path / "m.db", token=sandbox.token, base_url=sandbox.url, progress=False)
    tt.sync()
    assert len(tt.changes()) == len(sandbox.truth().products)
    assert tt.changes(entity="bug").empty


def test_retention_prunes_older_changes_as_a_run_ends(
    sandbox: Sandbox, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_mirror(sandbox, db_path).sync()
    conn = sqlite3.connect(db_path)
    old = (datetime.now(UTC) - timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
    conn.execute("UPDATE changes SET at = ? WHERE id % 2 = 1", (old,))
    conn.commit()
    kept = conn.execute("SELECT id FROM changes WHERE id % 2 = 0").fetchall()
    conn.close()

    make_mirror(sandbox, db_path).refresh()  # default: everything is kept
    assert len(history(db_path)) == len(sandbox.truth().products)
    make_mirror(sandbox, db_path, keep_changes="365d").refresh()
    assert [(row[0],) for row in history(db_path)] == kept

    monkeypatch.setenv("TESTIO_KEEP_CHANGES", "a year")
    with pytest.raises(ConfigError, match="TESTIO_KEEP_CHANGES"):
        make_mirror(sandbox, db_path)


def test_a_v2_mirror_reads_an_empty_feed_and_migrates_in_place_keeping_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in (1, 2):
        for statement in MIGRATIONS[step]:
            conn.execute(statement)
    conn.execute("PRAGMA application_id = 8279824")  # 0x7E5710
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO products (id, name, raw, synced_at) VALUES (1, 'p', '{}', '2025-01-01')"
    )
    conn.close()
    before = tt.Mirror(path, sandbox=True).changes(since=None)
    assert before.empty and list(before.columns) == [
        "id", "run_id", "mode", "at", "entity", "kind", "entity_id", "product_id", "test_id",
        "field", "old", "new", "product", "title",
    ]  # fmt: skip

    with Store.open(path) as store:
        assert store.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 4
        assert store.query("SELECT count(*) AS n FROM changes") == [{"n": 0}]
        assert store.product_ids() == [1]


def test_the_cli_prints_the_change_line_and_the_feed_as_table_csv_and_json(
    sandbox: Sandbox, db_path: Path
) -> None:
    env = cli_env(sandbox, db_path)
    first = cli("sync", env=env)
    assert first.exit_code == 0, first.stderr
    assert "changes: 3 new products" in first.stdout
    pid = largest_products(sandbox)[0]
    new = sandbox.add_tests(pid, 1)
    second = cli("sync", "--force", env=env)
    assert f"changes: 1 new test; {len(bugs_of(sandbox, new))} new bugs" in second.stdout

    frame = make_mirror(sandbox, db_path).changes()
    as_json = cli("changes", "--format", "json", env=env)
    as_csv = cli("changes", "--format", "csv", env=env)
    table = cli("changes", "--entity", "test", "--product", str(pid), env=env)

    rows = json.loads(as_json.stdout)
    assert [r["id"] for r in rows] == list(frame["id"])
    assert list(rows[0]) == list(frame.columns)
    test_row = next(r for r in rows if r["entity"] == "test")
    assert test_row == {
        **test_row,
        "kind": "added",
        "entity_id": new[0],
        "product_id": pid,
        "test_id": None,
        "field": None,
        "mode": "refresh",
    }
    assert datetime.fromisoformat(test_row["at"].replace("Z", "+00:00")).tzinfo is not None
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [int(r["id"]) for r in parsed] == list(frame["id"])
    assert parsed[-1]["at"] == rows[-1]["at"]
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert len(lines) == 3 and str(new[0]) in lines[2]

    unknown = cli("changes", "--product", "nope", env=env)
    assert unknown.exit_code == 2 and "unknown product 'nope'" in unknown.stderr
    nothing = cli("changes", "--kind", "returned", env=env)
    assert nothing.exit_code == 0 and "No changes recorded since 7d" in nothing.stdout
