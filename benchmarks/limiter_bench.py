#!/usr/bin/env python
"""Benchmark the adaptive limit against a capped sandbox: throughput, 429s, a storm.

Usage::

    uv run python benchmarks/limiter_bench.py                       # cap 20/s, 300 ms, 60 s storm
    uv run python benchmarks/limiter_bench.py --cap 10 --storm-seconds 0
    uv run python benchmarks/limiter_bench.py --json limiter.json

Two runs, each a first sync of a generated account (twelve equal products) into a new
mirror, against a sandbox whose load model (``testio_toolkit.sandbox.load``) serves at most
``--cap`` requests a second (429 with ``Retry-After`` beyond) at ``--latency-ms`` (which grows
with load):

- **steady**: throughput after the first 10 s, as a share of the cap, and the share of
  requests answered 429 there (targets: >= 85 %, <= 2 %);
- **storm**: ``--storm-seconds`` of 429 for every request, starting ``--storm-at`` seconds
  into the run; then how long until a 3 s stretch runs at >= 80 % of the cap again (target:
  within 10 s of the storm's end), and whether the run still ends a success.

Every figure comes from the sandbox's own per-second counts (``Sandbox.per_second()``), not
from the client. The sandbox runs in this process on its own threads: at these rates (tens
of requests a second) it costs next to nothing. The suite's tests (tests/test_load.py) do
the same with a 10 s storm.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PINNED_NOW = "2025-06-02T12:00:00Z"


def preset(tests: int) -> Any:
    from testio_toolkit.sandbox.presets import Preset

    size = tests // 12
    return Preset(
        products=12, tests=12 * size, bugs_per_test=2.0, largest=size, sectioned=1,
        sizes=(size,) * 12,
    )  # fmt: skip


def mean_ok(series: list[dict[str, int]], first: int, last: int) -> float | None:
    rows = [row for row in series if first <= row["second"] < last]
    if len(rows) < last - first:
        return None
    return sum(row.get("ok", 0) for row in rows) / len(rows)


def run(
    args: argparse.Namespace, tests: int, storm: float = 0.0, storm_at: float = 0.0
) -> dict[str, Any]:
    import testio_toolkit as tt
    from testio_toolkit.sandbox import Sandbox

    with (
        Sandbox(preset=preset(tests), latency_ms=args.latency_ms) as sb,
        tempfile.TemporaryDirectory() as folder,
    ):
        sb.set_faults(capacity_rps=args.cap)
        mirror = tt.Mirror(Path(folder) / "m.db", token=sb.token, base_url=sb.url, progress=False)
        ended = threading.Event()

        def storm_thread() -> None:
            time.sleep(storm_at)
            sb.set_faults(rate_limit_rate=1.0)
            time.sleep(storm)
            sb.set_faults(rate_limit_rate=0.0)
            ended.set()

        sb.reset_counters()
        started = time.monotonic()
        if storm:
            threading.Thread(target=storm_thread, daemon=True).start()
        result = mirror.sync()
        wall = time.monotonic() - started
        series = sb.per_second()
        statuses = sb.statuses
    figures: dict[str, Any] = {
        "status": result.status,
        "wall_s": round(wall, 1),
        "requests": sb.requests_total,
        "answered_429": statuses[429],
        "limiter": result.limiter.short() if result.limiter else None,
        "series_ok": [row.get("ok", 0) for row in series],
    }
    if not storm:
        last = len(series) - 2  # the run's last second is partial: leave it out
        rows = [row for row in series if 10 <= row["second"] < last]
        requests = sum(row.get("requests", 0) for row in rows)
        figures["throughput_share"] = round(
            sum(row.get("ok", 0) for row in rows) / max(len(rows), 1) / args.cap, 3
        )
        figures["share_429"] = round(sum(row.get("429", 0) for row in rows) / max(requests, 1), 4)
        figures["passed"] = figures["throughput_share"] >= 0.85 and figures["share_429"] <= 0.02
    else:
        figures["storm_ended"] = ended.is_set()
        end = int(storm_at + storm) + 1
        back = None
        for start in range(end, end + 30):
            value = mean_ok(series, start, start + 3)
            if value is not None and value >= 0.8 * args.cap:
                back = start - (storm_at + storm)
                break
        figures["seconds_to_80pct"] = None if back is None else round(back, 1)
        figures["passed"] = (
            result.status == "success" and ended.is_set() and back is not None and back <= 10
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", type=float, default=20.0, help="requests a second")
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of the steady run")
    parser.add_argument("--storm-seconds", type=float, default=60.0, help="0: no storm run")
    parser.add_argument("--storm-at", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TESTIO_SANDBOX_NOW", PINNED_NOW)

    # About 0.12 requests a test in a first sync of this account: size the account so the
    # run lasts about --seconds at the cap.
    steady_tests = int(args.seconds * args.cap / 0.123)
    report: dict[str, Any] = {
        "command": "uv run python benchmarks/limiter_bench.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "cap_rps": args.cap,
        "latency_ms": args.latency_ms,
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
    }
    print(f"steady: cap {args.cap:g}/s, {args.latency_ms:g} ms, ~{args.seconds:g} s", flush=True)
    steady = report["steady"] = run(args, steady_tests)
    print(
        f"  throughput {steady['throughput_share']:.0%} of the cap after 10 s, "
        f"{steady['share_429']:.2%} answered 429; {steady['limiter']}; "
        f"{'PASS' if steady['passed'] else 'FAIL'} (>= 85 %, <= 2 %)",
        flush=True,
    )
    ok = bool(steady["passed"])
    if args.storm_seconds:
        # Work for the storm's start, the storm itself (no progress) and 20 s after it.
        storm_tests = int((args.storm_at + 20) * args.cap / 0.123)
        print(f"storm: {args.storm_seconds:g} s of 429s from {args.storm_at:g} s", flush=True)
        storm = report["storm"] = run(args, storm_tests, args.storm_seconds, args.storm_at)
        back = storm["seconds_to_80pct"]
        print(
            f"  run {storm['status']}; back to >= 80 % of the cap "
            f"{'never' if back is None else f'{back:g} s'} after the storm; "
            f"{storm['answered_429']} answered 429; {storm['limiter']}; "
            f"{'PASS' if storm['passed'] else 'FAIL'} (within 10 s)",
            flush=True,
        )
        ok = ok and bool(storm["passed"])
    report["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
