"""The benchmark runs end to end on the small preset without latency, and its exact figures are
right: request counts, rows written, the structure of its JSON. Times are never asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from testio_toolkit.client import ClientOptions
from testio_toolkit.limiter import DEFAULT_START
from testio_toolkit.rows import is_final, is_sectioned, section_ids, to_utc
from testio_toolkit.sandbox import Sandbox

from .conftest import REPO, assert_within_budget

BENCH = REPO / "benchmarks" / "sync_bench.py"
MODES = ["first_sync", "nochange_sync", "refresh_nochange", "refresh_1pct", "nuke"]
MIRROR_TABLES = ("products", "tests", "bugs", "features")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--preset",
            "small",
            "--latency-ms",
            "0",
            "--repeat",
            "1",
            "--triggers",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    # Exit 1 means a target failed (times on a tiny preset mean nothing); 2+ is a crash.
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "verdict" in proc.stdout and "max in flight seen by the sandbox" in proc.stdout
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    """What the small sandbox holds, and what a no-change sync of it must request."""
    with Sandbox(preset="small") as sb:
        truth = sb.truth()
    per_page = ClientOptions().per_page
    batch = ClientOptions().bug_batch_size
    by_product: dict[int, list[int]] = {}
    for test_id, product_id in truth.product_of_test.items():
        by_product.setdefault(product_id, []).append(test_id)
    details = bug_batches = longer = 0
    for product_id in truth.products:
        ids = sorted(
            by_product.get(product_id, []),
            key=lambda t: (to_utc(truth.tests[t]["end_at"]) or "", t),
            reverse=True,
        )
        changeable = [t for t in ids if not is_final(truth.tests[t]["status"])]
        first_page = set(ids[:per_page])
        details += sum(1 for t in changeable if t not in first_page)
        longer += len(ids) >= per_page
        bug_batches += math.ceil(len(changeable) / batch)
    features = sum(len(section_ids(p)) if is_sectioned(p) else 1 for p in truth.products.values())
    return {
        "rows": {
            "products": len(truth.products),
            "tests": len(truth.tests),
            "bugs": len(truth.bugs),
            "features": len(truth.features),
        },
        "nochange_requests": {
            "products": 1,
            # The head window, and one over the tail for a product longer than a page.
            "exploratory_tests": len(truth.products) + longer,
            "exploratory_test": details,  # at most the changeable tests page 1 did not show
            "bugs": bug_batches,
            "features": features,
        },
        "tests": len(truth.tests),
    }


def modes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (suite,) = report["suites"]
    return {m["mode"]: m for m in suite["modes"]}


def only_run(mode: dict[str, Any]) -> dict[str, Any]:
    (run,) = mode["runs"]
    return run  # type: ignore[no-any-return]


def test_report_has_every_mode_with_every_figure(report: dict[str, Any]) -> None:
    assert report["preset"] == "small"
    (suite,) = report["suites"]
    assert suite["concurrency"] == DEFAULT_START  # pinned like the floor's semaphore
    assert [m["mode"] for m in suite["modes"]] == MODES
    for mode in suite["modes"]:
        assert {"wall_s", "floor_s", "ratio", "peak_mb", "target", "passed", "checks"} <= set(mode)
        run = only_run(mode)
        assert run["measured"]["status"] == "success"
        assert run["measured"]["peak_mb"] > 0
        assert run["floor"]["failed_requests"] == 0
        # The floor downloads exactly the pages the mode received; requests the mode gave up
        # on (cancelled prefetches) may or may not have reached the sandbox.
        abandoned = run["measured"]["abandoned_requests"]
        assert run["floor"]["requests"] == run["measured"]["answered_requests"]
        assert run["sandbox_floor"]["requests"] == run["floor"]["requests"]
        served = run["sandbox"]["requests"]
        assert run["floor"]["requests"] <= served <= run["floor"]["requests"] + abandoned
        # The toolkit counts the requests it sent, answered or not.
        assert sum(run["measured"]["client_by_endpoint"].values()) >= served
    for header in ("wall s", "requests/min", "rows written", "peak MB", "floor s", "ratio"):
        assert header in suite["table"]


def test_first_sync_and_nuke_write_every_row_once(
    report: dict[str, Any], expected: dict[str, Any]
) -> None:
    for name in ("first_sync", "nuke"):
        measured = only_run(modes(report)[name])["measured"]
        assert measured["rows_written_by_table"] == expected["rows"]
        inserts = Counter(
            {
                key: n
                for store in measured["stores"]
                for key, n in (store.get("triggers") or {}).items()
                if key.endswith(".insert")
            }
        )
        assert inserts == {f"{t}.insert": n for t, n in expected["rows"].items()}
        floor = only_run(modes(report)[name])["floor"]
        assert floor["rows"] == sum(expected["rows"].values())


def test_no_change_sync_stays_within_the_allowed_requests(
    report: dict[str, Any], expected: dict[str, Any]
) -> None:
    run = only_run(modes(report)["nochange_sync"])
    counters, budget = run["sandbox"]["counters"], expected["nochange_requests"]
    assert set(counters) <= set(budget)
    why = {
        "products": "one products request a run",
        "exploratory_tests": "the head window, and one over the tail for a product longer "
        "than a page",
        "exploratory_test": "the changeable tests page 1 did not show",
        "bugs": "the bugs of every changeable test, in batches of ClientOptions().bug_batch_size",
        "features": "one features request a product or section",
    }
    for kind, reason in why.items():
        assert_within_budget(counters.get(kind, 0), budget[kind], f"{kind}: {reason}")
    assert run["measured"]["rows_written"] == 0
    # The benchmark's allowance: one list page a product, as before the tail was read, plus
    # one a product.
    assert run["budget"]["allowed"]["exploratory_tests"] == 2 * expected["rows"]["products"]


def test_no_change_refresh_rewrites_no_row(report: dict[str, Any]) -> None:
    mode = modes(report)["refresh_nochange"]
    measured = only_run(mode)["measured"]
    assert measured["rows_written"] == 0
    assert measured["result_rows_written"] == 0
    triggered = {k: n for s in measured["stores"] for k, n in (s.get("triggers") or {}).items()}
    assert triggered == {}
    assert {"check": "0 mirror rows rewritten == 0", "ok": True} in mode["checks"]


def test_refresh_after_one_percent_changed_updates_exactly_those(
    report: dict[str, Any], expected: dict[str, Any]
) -> None:
    run = only_run(modes(report)["refresh_1pct"])
    changed = run["changed_tests"]
    assert changed == math.ceil(expected["tests"] / 100)
    measured = run["measured"]
    assert measured["result_counts"]["tests"]["updated"] == changed
    assert measured["rows_written_by_table"]["tests"] == changed
    # A test's title is part of each of its bugs (`test: {id, title}`): those change too.
    assert measured["rows_written_by_table"]["bugs"] == measured["result_counts"]["bugs"]["updated"]
    assert measured["rows_written_by_table"]["products"] == 0


def test_the_history_figure_counts_the_change_rows_of_the_weeks_played(tmp_path: Any) -> None:
    out = tmp_path / "history.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--preset", "small", "--modes", "none",
         "--history-weeks", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads(out.read_text())["history"]
    made, rows = history["upstream_changes"], history["rows_by_kind"]
    # The benchmark's own record of what it changed upstream is the oracle for the feed.
    assert rows["product added"] == 3
    assert rows["test added"] == made["tests_added"] == 2 * 3 * 3
    assert rows["test changed"] == made["tests_moved"]
    assert rows["test gone"] == made["tests_deleted"]
    assert rows["bug changed"] == made["bugs_decided"]
    assert history["rows"] == sum(rows.values())
    assert history["feed_mb"] > 0 and "change feed after 2 weekly refreshes" in proc.stdout


def test_the_portfolio_benchmark_runs_end_to_end() -> None:
    # Two accounts each way and two mirrors to query: its own asserts check that sync --all
    # succeeded and that the SQL count and the frame agree; the figures are printed.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "portfolio_bench.py"),
            "--accounts",
            "2",
            "--latency-ms",
            "0",
            "--query-accounts",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sync --all of 2 small accounts" in proc.stdout
    assert "portfolio over 2 mirrors (" in proc.stdout
