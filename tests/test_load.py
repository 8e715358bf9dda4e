"""The sandbox's load model, and the adaptive limit against it (issue #22).

The load model's decisions are checked by hand-computed sequences; then a sync runs
against a sandbox capped at ``CAP`` requests a second and the figures come from the
sandbox's own per-second counts (answers, 429s), never from the client or wall time.
The 60 s storm of the issue is in ``benchmarks/limiter_bench.py``; here a 10 s storm keeps
the suite short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from testio_toolkit.limiter import DEFAULT_START
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.sandbox.load import Capacity
from testio_toolkit.sandbox.presets import Preset

from .conftest import FAST, assert_mirror_equals_truth, cli, cli_env, make_mirror

CAP = 20  # requests a second
LATENCY_MS = 300  # as TestIO answers a test (200-500 ms)


def capped_preset(tests: int) -> Preset:
    """Twelve products of equal size: they finish together, so the run's demand stays
    above the cap until its last seconds."""
    return Preset(
        products=12, tests=tests, bugs_per_test=2.0, largest=tests // 12, sectioned=1,
        sizes=(tests // 12,) * 12,
    )  # fmt: skip


def window(series: list[dict[str, int]], first: int, last: int) -> dict[str, float]:
    """Sums over seconds ``first`` .. ``last - 1`` of the sandbox's per-second series."""
    rows = [row for row in series if first <= row["second"] < last]
    assert len(rows) == last - first, "the run ended before the window did"
    requests = sum(row.get("requests", 0) for row in rows)
    return {
        "ok_per_second": sum(row.get("ok", 0) for row in rows) / len(rows),
        "share_429": sum(row.get("429", 0) for row in rows) / max(requests, 1),
    }


# -- the model's decisions -------------------------------------------------------------------


def test_the_bucket_admits_its_burst_then_refuses_with_the_wait_for_a_token() -> None:
    cap = Capacity(rps=2, burst=2, now=0.0)
    assert [cap.admit(0.0, 1).status for _ in range(3)] == [None, None, 429]
    assert cap.admit(0.0, 1).retry_after == pytest.approx(0.5)  # one token takes 1/2 s
    assert cap.admit(0.5, 1).status is None  # it came
    assert cap.admit(0.5, 1).status == 429
    assert cap.admit(10.0, 1).status is None  # refilled, up to the burst only
    assert cap.admit(10.0, 1).status is None
    assert cap.admit(10.0, 1).status == 429


def test_requests_beyond_the_in_flight_capacity_answer_503_and_latency_grows_with_load() -> None:
    cap = Capacity(in_flight=4)
    assert [cap.admit(0.0, n).slowdown for n in (1, 2, 4)] == [1.25, 1.5, 2.0]
    assert cap.admit(0.0, 5).status == 503
    rate = Capacity(rps=10, now=0.0)  # burst: one second's worth
    assert rate.admit(0.0, 1).slowdown == pytest.approx(1.1)  # a tenth of the bucket spent
    assert rate.admit(0.0, 1).slowdown == pytest.approx(1.2)


@pytest.mark.parametrize(
    ("switch", "value"),
    [("capacity_rps", 0), ("capacity_in_flight", 0), ("capacity_in_flight", 2.5),
     ("capacity_burst", 0.5)],
)  # fmt: skip
def test_bad_capacity_switches_are_refused(switch: str, value: float) -> None:
    with Sandbox() as sb, pytest.raises(ValueError, match=switch):
        sb.set_faults(**{switch: value})


def test_the_sandbox_counts_429s_503s_and_seconds_over_http() -> None:
    with Sandbox(latency_ms=50) as sb:
        sb.set_faults(capacity_rps=5, capacity_in_flight=8)
        sb.reset_counters()

        def get(client: httpx.Client) -> httpx.Response:
            return client.get(f"{sb.url}/products", headers={"Authorization": f"Token {sb.token}"})

        answers: list[httpx.Response] = []
        with httpx.Client() as client:
            threads = [
                threading.Thread(target=lambda: answers.append(get(client))) for _ in range(12)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        statuses = sb.statuses
        # Twelve at once: at most 8 in flight (503 beyond), at most 5 in the bucket (429).
        assert statuses[200] <= 5
        assert statuses[200] + statuses[429] + statuses[503] == 12
        assert statuses[429] + statuses[503] >= 7
        assert all(
            r.headers.get("Retry-After") == "1" for r in answers if r.status_code == 429
        )  # a fraction of a second, rounded up to the header's whole seconds
        (row,) = [r for r in sb.per_second() if r.get("requests")]
        assert row["requests"] == 12
        assert row.get("ok", 0) == statuses[200]
        assert 1 <= row["peak_in_flight"] <= 12


# -- the adaptive limit against the capped sandbox -------------------------------------------


def test_a_sync_holds_the_cap_with_few_429s(tmp_path: Path) -> None:
    """Sustained throughput >= 85% of the cap, <= 2% of requests answered 429, after the
    first 10 s (the limit finds the cap), over seconds 10..25 of a ~28 s read."""
    with Sandbox(preset=capped_preset(4500), latency_ms=LATENCY_MS) as sb:
        sb.set_faults(capacity_rps=CAP)
        sb.reset_counters()
        mirror = make_mirror(sb, tmp_path / "m.db")

        result = mirror.sync()

        assert result.status == "success"
        assert_mirror_equals_truth(mirror.path, sb)
        figures = window(sb.per_second(), 10, 25)
        assert figures["ok_per_second"] >= 0.85 * CAP, figures
        assert figures["share_429"] <= 0.02, figures
        assert result.limiter is not None
        assert result.limiter.rate_limited == sb.statuses[429]


def test_after_a_storm_of_429s_the_run_is_back_near_the_cap_within_10_s(tmp_path: Path) -> None:
    """A 10 s storm (every request 429, Retry-After 1) mid-run; in the 10 s after it, a
    3 s stretch at >= 80% of the cap, and the run ends a success."""
    storm_starts, storm_seconds = 6.0, 10.0
    with Sandbox(preset=capped_preset(3600), latency_ms=LATENCY_MS) as sb:
        sb.set_faults(capacity_rps=CAP)
        mirror = make_mirror(sb, tmp_path / "m.db")
        stormed = threading.Event()

        def storm() -> None:
            time.sleep(storm_starts)
            sb.set_faults(rate_limit_rate=1.0)
            time.sleep(storm_seconds)
            sb.set_faults(rate_limit_rate=0.0)
            stormed.set()

        sb.reset_counters()
        thread = threading.Thread(target=storm, daemon=True)
        thread.start()
        result = mirror.sync()
        thread.join(timeout=30)

        assert stormed.is_set(), "the run ended before the storm did"
        assert result.status == "success"
        assert_mirror_equals_truth(mirror.path, sb)
        series = sb.per_second()
        # The storm in the sandbox's own series: inside it nothing answered 2xx (a request
        # admitted just before it may still answer in its first second), and 429s came.
        inside = range(int(storm_starts) + 1, int(storm_starts + storm_seconds))
        assert [r.get("ok", 0) for r in series if r["second"] in inside] == [0] * len(inside)
        assert sb.statuses[429] >= storm_seconds / 2
        ended = int(storm_starts + storm_seconds) + 1  # the first whole second after it
        best = max(
            window(series, start, start + 3)["ok_per_second"] for start in range(ended, ended + 8)
        )
        assert best >= 0.8 * CAP, (best, series)
        assert result.limiter is not None and result.limiter.decreases >= 1


def test_a_pinned_limit_is_kept_against_the_capped_sandbox(tmp_path: Path) -> None:
    with Sandbox(preset=capped_preset(240), latency_ms=20) as sb:
        sb.set_faults(capacity_in_flight=64)
        sb.reset_counters()
        options = dataclasses.replace(FAST, concurrency=3)
        result = make_mirror(sb, tmp_path / "m.db", client_options=options).sync()
        assert result.status == "success"
        assert sb.max_in_flight <= 3
        assert result.limiter is not None and result.limiter.pinned


# -- the learned limit, kept per mirror, and its report ---------------------------------------


def learned(path: Path) -> str | None:
    """The limit the mirror file keeps for the next run (read from the file itself)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'learned_concurrency'").fetchone()
    return None if row is None else str(row[0])


def test_the_learned_limit_is_kept_in_the_mirror_for_the_next_run(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # 503 beyond three at once (each taking 30 ms, so they overlap): the limit must fall
    sandbox.set_faults(capacity_in_flight=3, latency_ms=30)
    first = make_mirror(sandbox, tmp_path / "a.db").sync()
    assert first.status == "success"
    assert first.limiter is not None and first.limiter.start == DEFAULT_START
    assert sandbox.statuses[503] >= 1 and first.limiter.decreases >= 1
    assert first.limiter.end < DEFAULT_START
    assert learned(tmp_path / "a.db") == str(first.limiter.end)

    second = make_mirror(sandbox, tmp_path / "a.db").refresh()
    assert second.limiter is not None and second.limiter.start == first.limiter.end
    assert learned(tmp_path / "a.db") == str(second.limiter.end)
    # Another mirror (another account's, as far as it knows) starts from the default.
    other = make_mirror(sandbox, tmp_path / "b.db").sync()
    assert other.limiter is not None and other.limiter.start == DEFAULT_START


def test_a_pinned_run_neither_starts_from_nor_overwrites_the_learned_limit(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "a.db"
    sandbox.set_faults(capacity_in_flight=3, latency_ms=30)
    kept = make_mirror(sandbox, path).sync().limiter
    assert kept is not None
    pinned = dataclasses.replace(FAST, concurrency=2)
    result = make_mirror(sandbox, path, client_options=pinned).refresh()
    assert result.limiter is not None
    assert (result.limiter.start, result.limiter.end, result.limiter.pinned) == (2, 2, True)
    assert learned(path) == str(kept.end)


def test_the_cli_shows_the_limiter_in_the_result_line_and_in_status(
    sandbox: Sandbox, db_path: Path
) -> None:
    sandbox.set_faults(capacity_rps=40, capacity_burst=4)  # a few 429s at the start
    env = cli_env(sandbox, db_path)
    synced = cli("sync", "--no-progress", env=env)
    assert synced.exit_code == 0, synced.stderr
    (line,) = [x for x in synced.stdout.splitlines() if " requests · limit " in x]
    rate_limited = sandbox.statuses[429]
    assert rate_limited >= 1
    assert f"{rate_limited} rate-limited" in line
    status = cli("status", env=env)
    assert status.exit_code == 0
    (shown,) = [x for x in status.stdout.splitlines() if x.startswith("in flight: ")]
    assert f"next run starts at {learned(db_path)}" in shown
    assert "last run: limit " in shown


def test_an_unreadable_learned_limit_is_ignored_and_replaced(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "a.db"
    make_mirror(sandbox, path).sync()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = 'lots' WHERE key = 'learned_concurrency'")
    result = make_mirror(sandbox, path).sync()
    assert result.status == "success"
    assert result.limiter is not None and result.limiter.start == DEFAULT_START
    assert learned(path) == str(result.limiter.end)


def test_the_sandbox_command_refuses_a_bad_capacity_clearly() -> None:
    from click.testing import CliRunner

    from testio_toolkit.sandbox.command import sandbox as command

    result = CliRunner().invoke(command, ["--capacity-rps", "0"])
    assert result.exit_code == 2
    assert "capacity_rps must be None or a number > 0" in result.output
