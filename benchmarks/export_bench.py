#!/usr/bin/env python
"""Benchmark the team's copy (``tt.export``): the first export of a synced mirror to DuckDB
and to a real PostgreSQL, and the export after a sync that changed 1% of tests and bugs.

Usage::

    uv run python benchmarks/export_bench.py                  # large: 40,000 tests, 250,000 bugs
    uv run python benchmarks/export_bench.py --preset small --json out.json

Targets (on this machine): first export under 60 s, the 1% export under 5 s. Reported:
wall time of each ``export()`` call (dlt imported beforehand, so the first export does not
pay the import), the rows dlt reports it loaded, and whether they are the rows changed.
Postgres is started by ``tests/postgres_server.py`` (initdb/pg_ctl as nobody, 127.0.0.1).
The sync itself is timed for reference only: ``sync_bench.py`` is its benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import testio_toolkit as tt  # noqa: E402
from testio_toolkit.client import ClientOptions  # noqa: E402
from testio_toolkit.sandbox import Sandbox  # noqa: E402
from tests.postgres_server import PostgresServer, available  # noqa: E402

TARGETS = {"first": 60.0, "one_percent": 5.0}
FRACTION = 0.01


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("products", "tests", "bugs", "features", "changes")
        }
    finally:
        conn.close()


def change_one_percent(sb: Sandbox, path: Path, tag: str) -> tuple[int, int]:
    """Retitle every 100th test and bug of the mirror upstream; how many of each."""
    conn = sqlite3.connect(path)
    try:
        tests = [r[0] for r in conn.execute("SELECT id FROM tests ORDER BY id")]
        bugs = [r[0] for r in conn.execute("SELECT id FROM bugs ORDER BY id")]
    finally:
        conn.close()
    step = round(1 / FRACTION)
    for test_id in tests[::step]:
        sb.update_test(test_id, title=f"benchmark {tag} {test_id}")
    for bug_id in bugs[::step]:
        sb.update_bug(bug_id, title=f"benchmark {tag} {bug_id}")
    return len(tests[::step]), len(bugs[::step])


def timed_export(mirror: tt.Mirror, destination: str, dataset: str) -> dict[str, Any]:
    started = time.perf_counter()
    result = mirror.export(destination, dataset, progress=False)
    return {"seconds": round(time.perf_counter() - started, 2), "rows": result.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="large")
    parser.add_argument("--json", type=Path, help="Write the figures here too.")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    import dlt  # noqa: F401  (imported once, outside the timings)

    folder = Path(tempfile.mkdtemp(prefix="export-bench-"))
    report: dict[str, Any] = {"preset": args.preset, "targets_s": TARGETS}
    server = None
    if not args.no_postgres and available() is None:
        server = PostgresServer().start()
        os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = server.url()
    destinations = {"duckdb": f"duckdb:{folder / 'team.duckdb'}"}
    if server is not None:
        destinations["postgres"] = "postgres"
    try:
        with Sandbox(preset=args.preset) as sb:
            mirror = tt.Mirror(
                folder / "mirror.db",
                token=sb.token,
                base_url=sb.url,
                progress=False,
                client_options=ClientOptions(),
            )
            started = time.perf_counter()
            assert mirror.sync().status == "success"
            report["first_sync_s"] = round(time.perf_counter() - started, 1)
            report["mirror_rows"] = counts(mirror.path)
            print(f"synced {report['mirror_rows']} in {report['first_sync_s']} s", flush=True)
            for name, spec in destinations.items():
                report[f"{name}_first"] = timed_export(mirror, spec, "bench")
                print(name, "first", report[f"{name}_first"], flush=True)
            for name, spec in destinations.items():
                report[f"{name}_nochange"] = timed_export(mirror, spec, "bench")
                print(name, "no change", report[f"{name}_nochange"], flush=True)
            tests, bugs = change_one_percent(sb, mirror.path, "one")
            before = counts(mirror.path)["changes"]
            started = time.perf_counter()
            assert mirror.refresh().status == "success"
            report["refresh_1pct_s"] = round(time.perf_counter() - started, 1)
            report["changed"] = {
                "tests": tests,
                "bugs": bugs,
                "changes": counts(mirror.path)["changes"] - before,
            }
            for name, spec in destinations.items():
                report[f"{name}_1pct"] = timed_export(mirror, spec, "bench")
                print(name, "1%", report[f"{name}_1pct"], flush=True)
    finally:
        if server is not None:
            server.stop()
    passed = True
    for name in destinations:
        first, one = report[f"{name}_first"], report[f"{name}_1pct"]
        exact = (
            one["rows"]["tests"] == report["changed"]["tests"]
            and one["rows"]["bugs"] == (report["changed"]["bugs"])
        )
        report[f"{name}_1pct"]["exact"] = exact
        ok = first["seconds"] < TARGETS["first"] and one["seconds"] < TARGETS["one_percent"]
        passed = passed and ok and exact
        print(
            f"{name:9} first {first['seconds']:6.1f} s (< {TARGETS['first']:.0f})  "
            f"1% {one['seconds']:5.1f} s (< {TARGETS['one_percent']:.0f}), "
            f"rows {one['rows']['tests']} tests {one['rows']['bugs']} bugs "
            f"{'= changed' if exact else '!= changed'}  {'PASS' if ok and exact else 'FAIL'}"
        )
    report["passed"] = passed
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
