"""A CSM's questions against a real sandbox: since/until per frame, test= by title, the
columns out of the records (against the sandbox's own truth), when a product was last
synced, time to review from a real status change, the health totals."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import testio_toolkit as tt
from testio_toolkit import ConfigError
from testio_toolkit.rows import parse_since, to_utc
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.vocabulary import BugStatus, Severity, TestingType

from .conftest import cli


def when(value: Any) -> str | None:
    return to_utc(value)


def in_span(value: Any, start: str, end: str) -> bool:
    moment = when(value)
    return moment is not None and start <= moment < end


# -- the forms of since and until --------------------------------------------------------------


def test_since_and_until_take_months_quarters_and_spans() -> None:
    now = datetime(2026, 5, 31, 10, tzinfo=UTC)

    assert parse_since("2026-Q3") == "2026-07-01T00:00:00Z"
    assert parse_since("2026-Q3", end=True) == "2026-10-01T00:00:00Z"
    assert parse_since("2026q4", end=True) == "2027-01-01T00:00:00Z"
    assert parse_since("2026-07") == "2026-07-01T00:00:00Z"
    assert parse_since("2026-12", end=True) == "2027-01-01T00:00:00Z"
    assert parse_since("2026-09-30", end=True) == "2026-10-01T00:00:00Z"  # the whole day
    assert parse_since("3mo", now=now) == "2026-02-28T10:00:00Z"  # calendar months, clipped
    assert parse_since("1y", now=now) == "2025-05-31T10:00:00Z"
    assert parse_since("2w", now=now) == "2026-05-17T10:00:00Z"
    for bad in ("3m", "2026-13", "2026-Q5", "soon", "31/01/2025", "5x"):
        with pytest.raises(ConfigError, match=r"use YYYY-MM-DD.*quarter YYYY-Q3.*3mo"):
            parse_since(bad)
    with pytest.raises(ConfigError, match=r"until '3m' .*months are written 3mo"):
        parse_since("3m", end=True, what="until")


def test_tests_since_until_filter_end_at_and_keep_unscheduled_ones(
    synced: tt.Mirror, sandbox: Sandbox
) -> None:
    truth = sandbox.truth()
    start, end = "2025-04-01T00:00:00Z", "2025-07-01T00:00:00Z"

    frame = synced.tests(since="2025-Q2", until="2025-Q2")

    expected = {
        t for t, v in truth.tests.items() if v["end_at"] is None or in_span(v["end_at"], start, end)
    }
    assert set(frame["id"]) == expected
    assert any(truth.tests[t]["end_at"] is None for t in expected)  # unscheduled: kept
    assert len(expected) < len(truth.tests)


def test_bugs_since_until_filter_created_at(synced: tt.Mirror, sandbox: Sandbox) -> None:
    truth = sandbox.truth()

    may = synced.bugs(since="2025-05", until="2025-05")

    start, end = "2025-05-01T00:00:00Z", "2025-06-01T00:00:00Z"
    expected = {b for b, v in truth.bugs.items() if in_span(v["created_at"], start, end)}
    assert expected and set(may["id"]) == expected
    until_day = synced.bugs(until="2025-05-31")  # the whole day included
    assert set(until_day["id"]) == {
        b for b, v in truth.bugs.items() if (when(v["created_at"]) or "") < end
    }
    devices = synced.bug_devices(since="2025-05", until="2025-05")
    assert set(devices["bug_id"]) == {b for b in expected if truth.bugs[b]["devices"]}


def test_changes_since_until_filter_the_time_of_the_run(synced: tt.Mirror) -> None:
    every = synced.changes(since=None)

    assert len(every) > 0
    assert synced.changes(since=None, until="2000-01-01").empty
    first_at = every["at"].min()
    assert len(synced.changes(since=first_at.to_pydatetime(), until="2100-Q1")) == len(every)
    with pytest.raises(ConfigError, match="until 'tomorrow'"):
        synced.changes(until="tomorrow")


def test_bad_since_and_until_are_refused_by_every_frame(synced: tt.Mirror) -> None:
    with pytest.raises(ConfigError, match="months are written 3mo"):
        synced.tests(since="3m")
    with pytest.raises(ConfigError, match="until 'later'"):
        synced.bugs(until="later")
    with pytest.raises(ConfigError, match="since 'Q3'"):
        synced.health(since="Q3")
    with pytest.raises(ConfigError, match="since 'x'"):
        synced.bug_devices(since="x")


# -- test= by id or title ----------------------------------------------------------------------


def test_bugs_of_a_test_given_by_its_title_and_unknown_tests_refused(
    synced: tt.Mirror, sandbox: Sandbox
) -> None:
    truth = sandbox.truth()
    titles: dict[str, list[int]] = {}
    for t, v in truth.tests.items():
        titles.setdefault(v["title"], []).append(t)
    title, ids = next((k, v) for k, v in titles.items() if len(v) == 1 and truth_bugs(truth, v))

    by_title = synced.bugs(test=title.upper())

    assert set(by_title["id"]) == truth_bugs(truth, ids)
    assert set(synced.bugs(test=str(ids[0]))["id"]) == truth_bugs(truth, ids)
    with pytest.raises(ConfigError, match="unknown test 999999"):
        synced.bugs(test=999999)
    with pytest.raises(ConfigError, match=r"unknown test 'No such test'.*titles such as"):
        synced.bugs(test="No such test")
    other = next(p for p in truth.products if p != truth.product_of_test[ids[0]])
    with pytest.raises(ConfigError, match="no test of the product given"):
        synced.bugs(product=other, test=ids[0])


def truth_bugs(truth: Any, test_ids: list[int]) -> set[int]:
    return {b for b, v in truth.bugs.items() if v["test"]["id"] in test_ids}


# -- the columns, out of the records -----------------------------------------------------------


def test_bug_columns_match_the_sandbox_records(synced: tt.Mirror, sandbox: Sandbox) -> None:
    truth = sandbox.truth()
    frame = synced.bugs().set_index("id")

    assert str(frame["comment_count"].dtype) == "Int64"
    assert str(frame["feature_id"].dtype) == "Int64"
    for bug_id, bug in truth.bugs.items():
        got = frame.loc[bug_id]
        test_feature = bug.get("test_feature")
        features = truth.tests[bug["test"]["id"]]["features"]
        product_feature = next(
            (f["feature_id"] for f in features if test_feature and f["id"] == test_feature["id"]),
            None,
        )
        assert got["test_feature_id"] == (test_feature["id"] if test_feature else None) or (
            test_feature is None and pd.isna(got["test_feature_id"])
        )
        if product_feature is None:
            assert pd.isna(got["feature_id"])
        else:
            assert got["feature_id"] == product_feature
        assert got["feature"] == (test_feature["title"] if test_feature else None)
        assert got["steps"] == bug["steps"]
        assert got["expected_result"] == bug["expected_result"]
        assert got["actual_result"] == bug["actual_result"]
        assert got["comment_count"] == len(bug["comments"])
        assert got["device_count"] == len(bug["devices"])


def test_bug_devices_are_one_row_per_device_of_the_records(
    synced: tt.Mirror, sandbox: Sandbox
) -> None:
    truth = sandbox.truth()

    frame = synced.bug_devices()

    got = sorted(
        zip(
            frame["bug_id"],
            frame["device_id"],
            frame["device"],
            frame["os"],
            frame["os_version"],
            frame["browser"],
            strict=True,
        )
    )
    expected = sorted(
        (
            b,
            d["id"],
            d["name"],
            d["operating_system"]["name"],
            d["operating_system"]["version"],
            (d.get("browser") or {}).get("name"),
        )
        for b, v in truth.bugs.items()
        for d in v["devices"]
    )
    assert got == expected
    joined = synced.bugs().merge(frame, left_on="id", right_on="bug_id")
    assert len(joined) == len(expected)


def test_test_columns_match_the_sandbox_records(synced: tt.Mirror, sandbox: Sandbox) -> None:
    truth = sandbox.truth()
    frame = synced.tests().set_index("id")

    for test_id, test in truth.tests.items():
        got = frame.loc[test_id]
        assert got["created_by"] == test.get("created_by")
        assert got["submitted_by"] == test.get("submitted_by")
        assert got["feature_ids"] == [f["feature_id"] for f in test["features"]]
        assert got["features"] == [f["title"] for f in test["features"]]
        assert got["requirements"] == test.get("requirements")
        if test["testing_type"] is None:  # test-case runs have none
            assert pd.isna(got["testing_type"])
        else:
            assert got["testing_type"] == test["testing_type"]


# -- when a product was last synced -------------------------------------------------------------


def count_writes(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE written (n INTEGER)")
    for table in ("products", "tests", "bugs", "features", "changes"):
        for event in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER count_{table}_{event.lower()} AFTER {event} ON {table} "
                "BEGIN INSERT INTO written VALUES (1); END"
            )
    conn.commit()
    return conn


def test_a_no_change_sync_moves_last_synced_at_and_writes_no_mirror_row(
    synced: tt.Mirror, db_path: Path
) -> None:
    before = synced.products().set_index("id")
    conn = count_writes(db_path)

    result = synced.sync()

    assert result.status == "success"
    assert conn.execute("SELECT count(*) FROM written").fetchone()[0] == 0
    conn.close()
    after = synced.products().set_index("id")
    run_end = synced.runs().set_index("id").loc[result.run_id, "ended_at"]
    assert (after["last_synced_at"] == run_end).all()
    assert (after["last_synced_at"] > before["last_synced_at"]).all()
    assert (after["synced_at"] == before["synced_at"]).all()  # the rows were not rewritten
    assert not after["stale"].any()


def test_a_product_never_read_successfully_is_stale(synced: tt.Mirror, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE sync_runs SET counts = json_set(counts, '$.products', json('{}'))")
    conn.commit()
    conn.close()

    frame = synced.products()

    assert frame["last_synced_at"].isna().all() and frame["stale"].all()


# -- time to review, end to end ------------------------------------------------------------------


def test_review_time_of_a_bug_decided_between_two_syncs(
    synced: tt.Mirror, sandbox: Sandbox
) -> None:
    truth = sandbox.truth()
    running = {t for t, v in truth.tests.items() if v["status"] == "running"}
    bug_id = next(
        b
        for b, v in truth.bugs.items()
        if v["status"] == "forwarded" and v["test"]["id"] in running
    )
    first_run = int(synced.runs()["id"].max())
    sandbox.update_bug(bug_id, status="rejected")

    result = synced.sync()

    times = synced.review_times()
    assert list(times["id"]) == [bug_id]
    got = times.iloc[0]
    runs = synced.runs().set_index("id")
    created = pd.Timestamp(to_utc(truth.bugs[bug_id]["created_at"]))
    assert got["status"] == "rejected"
    assert got["decided_by"] == runs.loc[result.run_id, "ended_at"]
    assert got["decided_after"] == max(runs.loc[first_run, "started_at"], created)
    hours = (runs.loc[result.run_id, "ended_at"] - created).total_seconds() / 3600
    assert got["review_hours_max"] == pytest.approx(hours)
    frame = synced.health(by=None, period=None)
    assert frame.iloc[0]["review_hours_median"] == pytest.approx(hours)


# -- the health totals against the sandbox's records --------------------------------------------


def test_health_totals_match_the_sandbox_records(synced: tt.Mirror, sandbox: Sandbox) -> None:
    truth = sandbox.truth()
    bugs = list(truth.bugs.values())
    accepted = [b for b in bugs if b["status"] == "accepted"]

    whole = synced.health(by=None, period=None).iloc[0]

    assert whole["bugs"] == len(bugs)
    assert whole["accepted"] == len(accepted)
    assert whole["rejected"] == sum(b["status"] == "rejected" for b in bugs)
    assert whole["auto_accepted"] == sum(b.get("auto_accepted") is True for b in accepted)
    assert whole["flag_unknown"] == sum("auto_accepted" not in b for b in accepted)
    assert whole["tests_run"] == sum(
        v["end_at"] is not None and v["status"] not in ("initialized", "waiting", "cancelled")
        for v in truth.tests.values()
    )
    per_product = synced.health(by="product", period="quarter")
    assert per_product["bugs"].sum() == len(bugs)
    names = {v["name"] for v in truth.products.values()}
    assert set(per_product["product"]) == names


# -- the vocabularies ----------------------------------------------------------------------------


def test_the_service_vocabularies_come_first_and_unknown_values_follow(
    synced: tt.Mirror, sandbox: Sandbox
) -> None:
    truth = sandbox.truth()
    held = {v["severity"] for v in truth.bugs.values()}
    unknown = sorted(held - {s.value for s in Severity})
    assert unknown, "the sandbox serves a severity the API notes do not list"

    frame = synced.bugs()

    categories = list(frame["severity"].cat.categories)
    assert categories == [s.value for s in Severity] + unknown
    assert list(frame["status"].cat.categories)[:6] == [s.value for s in BugStatus]
    tests = synced.tests()
    assert list(tests["testing_type"].cat.categories)[:6] == [t.value for t in TestingType]
    odd = synced.bugs(severity=unknown[0])
    assert set(odd["id"]) == {b for b, v in truth.bugs.items() if v["severity"] == unknown[0]}
    with pytest.raises(
        ConfigError, match=r"valid values: low, high, critical, visual, content, suggestion"
    ):
        synced.bugs(severity="nope")


# -- the terminal ------------------------------------------------------------------------------


def test_the_cli_lists_tests_bugs_and_health_with_the_same_filters(
    synced_env: dict[str, str], sandbox: Sandbox
) -> None:
    truth = sandbox.truth()
    start, end = "2025-04-01T00:00:00Z", "2025-07-01T00:00:00Z"

    tests = cli(
        "tests", "--since", "2025-Q2", "--until", "2025-Q2", "--format", "json", env=synced_env
    )
    bugs = cli(
        "bugs", "--since", "2025-05", "--until", "2025-05", "--format", "csv", env=synced_env
    )
    health = cli("health", "--period", "none", "--format", "json", env=synced_env)
    table = cli("bugs", "--severity", "critical", env=synced_env)

    assert tests.exit_code == 0, tests.stderr
    rows = json.loads(tests.stdout)
    assert {r["id"] for r in rows} == {
        t for t, v in truth.tests.items() if v["end_at"] is None or in_span(v["end_at"], start, end)
    }
    assert all(isinstance(r["feature_ids"], list) for r in rows)
    parsed = list(csv.DictReader(io.StringIO(bugs.stdout)))
    may = {
        b
        for b, v in truth.bugs.items()
        if in_span(v["created_at"], "2025-05-01T00:00:00Z", "2025-06-01T00:00:00Z")
    }
    assert {int(r["id"]) for r in parsed} == may
    whole = json.loads(health.stdout)
    assert len(whole) == 1 and whole[0]["bugs"] == len(truth.bugs)
    assert whole[0]["rejection_rate_grade"] in ("healthy", "warning", "critical")
    critical = sum(v["severity"] == "critical" for v in truth.bugs.values())
    assert table.exit_code == 0 and len(table.stdout.splitlines()) == critical + 2
    bad = cli("tests", "--since", "3m", env=synced_env)
    assert bad.exit_code == 2 and "months are written 3mo" in bad.stderr
    unknown = cli("bugs", "--test", "No such test", env=synced_env)
    assert unknown.exit_code == 2 and "unknown test 'No such test'" in unknown.stderr


# -- the report ------------------------------------------------------------------------------------


def test_a_quarter_report_against_the_records_saved_in_one_call(
    synced: tt.Mirror, sandbox: Sandbox, tmp_path: Path
) -> None:
    truth = sandbox.truth()
    pid = max(
        truth.products,
        key=lambda p: sum(truth.product_of_test[v["test"]["id"]] == p for v in truth.bugs.values()),
    )
    start, end = "2025-04-01T00:00:00Z", "2025-07-01T00:00:00Z"
    bugs = [
        v
        for v in truth.bugs.values()
        if truth.product_of_test[v["test"]["id"]] == pid and in_span(v["created_at"], start, end)
    ]
    by_feature: dict[str, int] = {}
    for bug in bugs:
        if bug.get("test_feature"):
            by_feature[bug["test_feature"]["title"]] = (
                by_feature.get(bug["test_feature"]["title"], 0) + 1
            )
    top = sorted(by_feature.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    target = tmp_path / "q2.md"

    report = synced.report(product=pid, period="2025-Q2", path=target)

    text = target.read_text(encoding="utf-8")
    assert text == report.markdown()
    assert text.startswith(f"# {truth.products[pid]['name']}: 2025-Q2")
    assert f"| Bugs reported | {len(bugs)} |" in text
    rejected = sum(b["status"] == "rejected" for b in bugs)
    assert f"| Rejected | {rejected} |" in text
    name = re.escape(truth.products[pid]["name"])
    assert re.search(rf"\|\s*{name}\s*\|\s*{re.escape(top[0])}\s*\|\s*{top[1]}\s*\|", text)
    assert report.features.iloc[0]["feature"] == top[0]
    assert list(report.trend["period"]) == ["2025-04", "2025-05", "2025-06"]
    assert report.previous_period == "2025-Q1"
    page = tmp_path / "q2.html"
    report.save(page)
    assert "<h3>Top features by bugs</h3>" in page.read_text(encoding="utf-8")
    assert report._repr_html_() in page.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match=r"give a quarter \(2026-Q3\) or a month"):
        synced.report(period="summer")
