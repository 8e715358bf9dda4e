#!/usr/bin/env python
"""Benchmark the three sync modes against the sandbox, each against a floor measured in the
same run.

Usage::

    uv run python benchmarks/sync_bench.py --preset medium --latency-ms 50
    uv run python benchmarks/sync_bench.py --preset medium --latency-ms 50 --concurrency 4,8,16
    uv run python benchmarks/sync_bench.py --preset small --latency-ms 0 --repeat 1 --json out.json
    uv run python benchmarks/sync_bench.py --large-memory        # also: refresh of `large` < 150 MB
    uv run python benchmarks/sync_bench.py --modes none --history-weeks 52   # change feed size

Layout, so that the numbers are honest on a shared, noisy machine:

- The sandbox runs in its own process (a ``multiprocessing`` child driven over a Pipe), so its
  CPU and memory never count against the toolkit's.
- Every measured mode runs in a fresh worker process (this file with ``--worker``), so its
  peak RSS (``ru_maxrss``) is its own. The worker records every URL the toolkit got answered.
- Right after each mode, a second fresh worker measures the floor: the same URLs downloaded
  with a bare ``httpx.AsyncClient`` under an ``asyncio.Semaphore(concurrency)``, plus a bare
  ``executemany`` of the rows the mode wrote (same tables, same columns) into a new SQLite file.
  ratio = mode wall time / floor. Mode and floor alternate, so drifting load hits both.
- Rows written are read back from the database (rows whose ``synced_at`` or
  ``deleted_upstream_at`` is newer than anything before the run), next to the SyncResult's
  counts and SQLite's ``total_changes``; ``--triggers`` adds exact per-table counts from temp
  triggers (slower; used by the smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import json
import math
import multiprocessing
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

MODES = ("first_sync", "nochange_sync", "refresh_nochange", "refresh_1pct", "nuke")
MODE_TITLES = {
    "first_sync": "first sync (empty db)",
    "nochange_sync": "no-change sync",
    "refresh_nochange": "refresh, nothing changed",
    "refresh_1pct": "refresh, 1% tests changed",
    "nuke": "nuke",
}
# Allowed ratio to the floor, per mode (None: reported, no target).
RATIO_TARGETS: dict[str, float | None] = {
    "first_sync": 1.5,
    "nochange_sync": None,
    "refresh_nochange": 1.3,
    # Also records one change row per changed title (the change feed): the same target as
    # the refresh that changes nothing.
    "refresh_1pct": 1.3,
    "nuke": 1.5,
}
MIRROR_TABLES = ("products", "tests", "bugs", "features")
FINAL_STATUSES = ("archived", "cancelled")
LARGE_MEMORY_LIMIT_MB = 150.0
CHANGED_FRACTION = 0.01
HERE = Path(__file__).resolve()

Json = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Small helpers shared by every process
# ---------------------------------------------------------------------------------------------


def maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def utc_stamp() -> str:
    """Now, in the store's timestamp format (whole seconds, ``Z``)."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=30)


def latest_stamp(path: Path) -> str:
    """The newest ``synced_at``/``deleted_upstream_at`` in a mirror ('' when none)."""
    if not path.exists():
        return ""
    conn = connect(path)
    try:
        stamps = [""]
        for table in MIRROR_TABLES:
            row = conn.execute(
                f"SELECT max(synced_at), max(deleted_upstream_at) FROM {table}"
            ).fetchone()
            stamps += [s for s in row if s]
        return max(stamps)
    finally:
        conn.close()


def rows_written_since(path: Path, stamp: str) -> dict[str, int]:
    """Mirror rows written after ``stamp``: every upsert sets ``synced_at``, every mark sets
    ``deleted_upstream_at``, so this counts inserts, content updates and marks."""
    conn = connect(path)
    try:
        return {
            table: int(
                conn.execute(
                    f"SELECT count(*) FROM {table} WHERE synced_at > ? OR deleted_upstream_at > ?",
                    (stamp, stamp),
                ).fetchone()[0]
            )
            for table in MIRROR_TABLES
        }
    finally:
        conn.close()


def copy_db(source: Path, target: Path) -> None:
    """A consistent copy of a mirror (SQLite's backup API, WAL folded in)."""
    src = connect(source)
    dst = connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def full_read_needs(path: Path, per_page: int, bug_batch_size: int) -> Json:
    """The fewest requests a full read of this mirror's account can make: the product list,
    every list page up to the first short one (a product of 25*k tests needs the empty page
    k+1), one bug batch per ``bug_batch_size`` tests of a product, and the features lists."""
    from testio_toolkit.rows import is_sectioned, section_ids

    conn = connect(path)
    try:
        products = [
            json.loads(raw)
            for (raw,) in conn.execute("SELECT raw FROM products WHERE deleted_upstream_at IS NULL")
        ]
        sizes = dict(
            conn.execute(
                "SELECT product_id, count(*) FROM tests WHERE deleted_upstream_at IS NULL "
                "GROUP BY product_id"
            ).fetchall()
        )
    finally:
        conn.close()
    needs = {
        "products": 1,
        "exploratory_tests": sum(sizes.get(int(p["id"]), 0) // per_page + 1 for p in products),
        "bugs": sum(math.ceil(n / bug_batch_size) for n in sizes.values()),
        "features": sum(len(section_ids(p)) if is_sectioned(p) else 1 for p in products),
    }
    return {"needs": needs, "total": sum(needs.values())}


def request_budget(path: Path, bug_batch_size: int) -> Json:
    """What the acceptance allows a no-change incremental sync on this mirror: the product
    list, two list windows per product (the one page a product that a sync read before it
    read the tail of unscheduled tests, plus one), a detail re-read per test whose status can
    change, and those tests' bug batches (per product, ``bug_batch_size`` ids each)."""
    conn = connect(path)
    try:
        products = int(
            conn.execute(
                "SELECT count(*) FROM products WHERE deleted_upstream_at IS NULL"
            ).fetchone()[0]
        )
        marks = ",".join("?" * len(FINAL_STATUSES))
        per_product = conn.execute(
            "SELECT product_id, count(*) FROM tests WHERE deleted_upstream_at IS NULL "
            f"AND (status IS NULL OR status NOT IN ({marks})) GROUP BY product_id",
            FINAL_STATUSES,
        ).fetchall()
    finally:
        conn.close()
    changeable = sum(n for _, n in per_product)
    batches = sum(math.ceil(n / bug_batch_size) for _, n in per_product)
    allowed = {
        "products": 1,
        "exploratory_tests": 2 * products,
        "exploratory_test": changeable,
        "bugs": batches,
    }
    return {"allowed": allowed, "total": sum(allowed.values()), "changeable_tests": changeable}


# ---------------------------------------------------------------------------------------------
# The sandbox, in its own process
# ---------------------------------------------------------------------------------------------


def _sandbox_main(conn: Connection, preset: str, latency_ms: float) -> None:
    """Child process: serve a sandbox and obey commands from the Pipe until 'stop'."""
    from testio_toolkit.sandbox import Sandbox, server

    # A listen backlog of 5 (socketserver's default) drops the SYNs of a pool that opens more
    # connections at once, and each dropped one waits out a 1 s TCP retransmit: that would
    # measure the sandbox, not the toolkit. Older sandboxes need the bigger backlog set here.
    backlog = int(server.SandboxServer.request_queue_size)
    if backlog < 128:
        server.SandboxServer.request_queue_size = 128
    sandbox = Sandbox(preset=preset, latency_ms=latency_ms).start()
    conn.send({"url": sandbox.url, "token": sandbox.token, "backlog_was": backlog})
    try:
        while True:
            command, arg = conn.recv()
            if command == "stop":
                break
            if command == "reset":
                sandbox.reset_counters()
                conn.send(None)
            elif command == "stats":
                conn.send(
                    {
                        "counters": dict(sandbox.counters),
                        # Routed requests only: the workers' warm-up hits an unrouted path.
                        "requests": sum(sandbox.counters.values()),
                        "requests_all": sandbox.requests_total,
                        "max_in_flight": sandbox.max_in_flight,
                        "connections": sandbox.connections_total,
                    }
                )
            elif command == "change_titles":
                # Every 1/fraction-th test over the whole account, in a fixed order.
                ids = sorted(t for pid in arg["product_ids"] for t in sandbox.test_ids(pid))
                step = max(1, round(1 / arg["fraction"]))
                chosen = ids[::step]
                for test_id in chosen:
                    sandbox.update_test(test_id, title=f"Changed by benchmark {arg['tag']}")
                conn.send(chosen)
            else:
                conn.send(RuntimeError(f"unknown command {command!r}"))
    finally:
        sandbox.stop()


class SandboxProcess:
    """A sandbox served by a child process; commands go over a Pipe."""

    def __init__(self, preset: str, latency_ms: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_sandbox_main, args=(child, preset, latency_ms), daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(300):
            self.close()
            raise RuntimeError("the sandbox process did not start within 300 s")
        hello: Json = self._conn.recv()
        self.url: str = hello["url"]
        self.token: str = hello["token"]
        self.backlog_was: int = hello["backlog_was"]
        self.preset = preset
        self.latency_ms = latency_ms

    def _ask(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def reset(self) -> None:
        self._ask("reset")

    def stats(self) -> Json:
        stats: Json = self._ask("stats")
        return stats

    def change_titles(self, product_ids: list[int], fraction: float, tag: str) -> list[int]:
        changed: list[int] = self._ask(
            "change_titles", {"product_ids": product_ids, "fraction": fraction, "tag": tag}
        )
        return changed

    def product_ids(self) -> list[int]:
        import httpx

        response = httpx.get(
            f"{self.url}/products", headers={"Authorization": f"Token {self.token}"}, timeout=60
        )
        response.raise_for_status()
        return [int(p["id"]) for p in response.json()["products"]]

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop", None))
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._conn.close()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def warm_up(url: str) -> None:
    """Pay the one-time lazy imports of httpx's async path (httpcore, h11, anyio) before any
    clock starts, in the mode worker and the floor worker alike. The request goes to a path
    the sandbox does not route, so its per-endpoint counters stay untouched."""
    import httpx

    async def once() -> None:
        async with httpx.AsyncClient() as client:
            await client.get(url.rstrip("/") + "/_benchmark_warm_up")

    asyncio.run(once())


def occupancy(spans: Sequence[tuple[float, float]], start: float, end: float) -> Json:
    """How busy the run kept its request slots: the mean number of requests in flight over
    the run, and the seconds during which none was (the engine worked, or waited on itself).
    Measured around httpx's transport, so time queued for a slot does not count as in flight.
    """
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    idle = 0.0
    level = 0
    last = start
    for moment, step in events:
        if level == 0:
            idle += max(0.0, moment - last)
        level += step
        last = moment
    idle += max(0.0, end - last) if level == 0 else 0.0
    busy = sum(e - s for s, e in spans)
    wall = max(end - start, 1e-9)
    return {"mean": busy / wall, "idle_s": idle, "request_s": busy}


# ---------------------------------------------------------------------------------------------
# Worker: one measured mode in a fresh process
# ---------------------------------------------------------------------------------------------


def _instrument(
    triggers: bool,
) -> tuple[list[str], list[tuple[float, float]], list[str], list[Any], list[Json]]:
    """Record URLs, the clients' stats and each store connection's write counts.

    All three hooks run outside the hot path (a list append per request, work at close).
    """
    import httpx

    from testio_toolkit.client import TestIOClient
    from testio_toolkit.store import Store

    urls: list[str] = []  # every request answered, in the order the answers came
    spans: list[tuple[float, float]] = []
    # Requests abandoned mid-flight (cancelled prefetches): the server may still be working
    # on them when the freed slot sends the next request.
    abandoned: list[str] = []
    client_stats: list[Any] = []
    stores: list[Json] = []

    send = httpx.AsyncHTTPTransport.handle_async_request
    clock = time.perf_counter

    async def recording_send(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        started = clock()
        try:
            response = await send(self, request)
        except BaseException:
            abandoned.append(str(request.url))
            raise
        finally:
            spans.append((started, clock()))
        urls.append(str(request.url))
        return response

    httpx.AsyncHTTPTransport.handle_async_request = recording_send  # type: ignore[method-assign]

    aclose = TestIOClient.aclose

    async def recording_aclose(self: TestIOClient) -> None:
        client_stats.append(self.stats)
        await aclose(self)

    TestIOClient.aclose = recording_aclose  # type: ignore[method-assign]

    prepare = Store._prepare
    close = Store.close

    def prepare_with_triggers(self: Store) -> None:
        prepare(self)
        if triggers:
            conn = self.conn
            conn.execute("CREATE TEMP TABLE bench_writes (tbl TEXT, event TEXT, id INTEGER)")
            for table in MIRROR_TABLES:
                for event in ("INSERT", "UPDATE"):
                    conn.execute(
                        f"CREATE TEMP TRIGGER bench_{table}_{event.lower()} AFTER {event} "
                        f"ON main.{table} BEGIN INSERT INTO bench_writes "
                        f"VALUES ('{table}', '{event.lower()}', new.id); END"
                    )

    def recording_close(self: Store) -> None:
        try:
            entry: Json = {"path": str(self.path), "total_changes": self.conn.total_changes}
            if triggers:
                entry["triggers"] = {
                    f"{table}.{event}": n
                    for table, event, n in self.conn.execute(
                        "SELECT tbl, event, count(*) FROM bench_writes GROUP BY tbl, event"
                    )
                }
            stores.append(entry)
        except sqlite3.ProgrammingError:
            pass  # already closed
        close(self)

    Store._prepare = prepare_with_triggers  # type: ignore[method-assign]
    Store.close = recording_close  # type: ignore[method-assign]
    return urls, spans, abandoned, client_stats, stores


def worker_mode(spec: Json) -> Json:
    """Run one mode on ``spec['db']`` and measure it."""
    import gc

    from testio_toolkit.api import AsyncMirror, Mirror
    from testio_toolkit.client import ClientOptions
    from testio_toolkit.results import SyncResult
    from testio_toolkit.store import COLUMNS

    warm_up(spec["url"])
    urls, spans, abandoned, client_stats, stores = _instrument(bool(spec.get("triggers")))
    db = Path(spec["db"])
    before = latest_stamp(db)
    # Rows this run writes carry its start second: make it later than anything already there.
    while utc_stamp() <= before:
        time.sleep(0.05)
    options = ClientOptions(concurrency=int(spec["concurrency"]))
    mirror = Mirror(
        db, token=spec["token"], base_url=spec["url"], client_options=options, progress=False
    )
    twin = AsyncMirror(
        db, token=spec["token"], base_url=spec["url"], client_options=options, progress=False
    )
    mode = spec["mode"]
    if mode in ("first_sync", "nochange_sync", "sync"):
        blocking: Callable[[], Any] = mirror.sync
        coroutine: Callable[[], Coroutine[Any, Any, Any]] = twin.sync
    elif mode in ("refresh_nochange", "refresh_1pct", "refresh"):
        blocking, coroutine = mirror.refresh, twin.refresh
    elif mode == "nuke":
        blocking = functools.partial(mirror.nuke, confirm=True)
        coroutine = functools.partial(twin.nuke, confirm=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")

    def run() -> Any:
        # cProfile sees only its own thread, and the blocking API runs the engine on the
        # toolkit's loop thread: a profiled run awaits the async twin on this thread instead.
        if spec.get("profile"):
            return asyncio.run(coroutine())
        return blocking()

    gc.collect()
    baseline_mb = maxrss_mb()
    profiler = cProfile.Profile() if spec.get("profile") else None
    cpu0 = cpu_seconds()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = run()
    if profiler is not None:
        profiler.disable()
    ended = time.perf_counter()
    wall = ended - started
    cpu = cpu_seconds() - cpu0
    peak_mb = maxrss_mb()
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    assert isinstance(result, SyncResult), result
    written = rows_written_since(Path(result.db_path), before)
    counts = {
        entity: {
            name: getattr(getattr(result, entity), name)
            for name in ("added", "updated", "unchanged", "marked_gone", "unmarked")
        }
        for entity in ("tests", "bugs", "features")
    }
    return {
        "mode": mode,
        "status": result.status,
        "wall_s": wall,
        "result_seconds": result.seconds,
        "cpu_s": cpu,
        "peak_mb": peak_mb,
        "baseline_mb": baseline_mb,
        "requests_client": result.requests,
        "client_max_in_flight": max((s.max_in_flight for s in client_stats), default=0),
        "client_by_endpoint": {k: v for s in client_stats for k, v in dict(s.by_endpoint).items()},
        "in_flight": occupancy(spans, started, ended),
        "abandoned_requests": len(abandoned),
        "abandoned_urls": abandoned[:50],
        "rows_written": sum(written.values()),
        "rows_written_by_table": written,
        "result_counts": counts,
        "result_rows_written": sum(
            c["added"] + c["updated"] + c["marked_gone"] + c["unmarked"] for c in counts.values()
        ),
        "sqlite_total_changes": sum(s["total_changes"] for s in stores),
        "stores": stores,
        "before_stamp": before,
        "db_after": result.db_path,
        "urls": urls,
        "answered_requests": len(urls),
        "columns": {table: list(COLUMNS[table]) for table in MIRROR_TABLES},
    }


# ---------------------------------------------------------------------------------------------
# Worker: the floor in a fresh process
# ---------------------------------------------------------------------------------------------


async def download(urls: Sequence[str], token: str, concurrency: int) -> tuple[float, int]:
    """GET every URL with at most ``concurrency`` in flight; returns (seconds, non-2xx)."""
    import httpx

    failures = 0
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Token {token}", "Accept": "application/json"},
        limits=limits,
        timeout=httpx.Timeout(120.0),
    ) as client:
        slots = asyncio.Semaphore(concurrency)

        async def one(url: str) -> None:
            nonlocal failures
            async with slots:
                response = await client.get(url)
            if not response.is_success:
                failures += 1

        await asyncio.gather(*(one(url) for url in urls))
    return time.perf_counter() - started, failures


def bare_insert(
    target: Path,
    schema: list[str],
    rows: dict[str, list[tuple[Any, ...]]],
    columns: dict[str, list[str]],
) -> float:
    """Seconds to create the tables and ``executemany`` the rows in one transaction, with the
    store's pragmas (WAL, synchronous=NORMAL)."""
    started = time.perf_counter()
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("BEGIN")
    for statement in schema:
        conn.execute(statement)
    for table, table_rows in rows.items():
        if table_rows:
            cols = columns[table]
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                table_rows,
            )
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def worker_floor(spec: Json) -> Json:
    """The floor of one mode: its URLs, downloaded bare, plus its rows, inserted bare."""
    mirror = Path(spec["db"])
    columns: dict[str, list[str]] = spec["columns"]
    conn = connect(mirror)
    try:
        schema = [
            sql
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name IN (?, ?, ?, ?) AND sql IS NOT NULL "
                "ORDER BY type DESC",  # tables before indexes
                MIRROR_TABLES,
            )
        ]
        rows = {
            table: conn.execute(
                f"SELECT {', '.join(columns[table])} FROM {table} "
                "WHERE synced_at > ? OR deleted_upstream_at > ?",
                (spec["before_stamp"], spec["before_stamp"]),
            ).fetchall()
            for table in MIRROR_TABLES
        }
    finally:
        conn.close()
    urls: list[str] = spec["urls"]
    warm_up(spec["url"])
    cpu0 = cpu_seconds()
    network_s, failures = asyncio.run(download(urls, spec["token"], int(spec["concurrency"])))
    target = Path(spec["scratch"])
    db_s = bare_insert(target, schema, rows, columns)
    cpu = cpu_seconds() - cpu0
    return {
        "network_s": network_s,
        "db_s": db_s,
        "floor_s": network_s + db_s,
        "cpu_s": cpu,
        "requests": len(urls),
        "failed_requests": failures,
        "rows": sum(len(r) for r in rows.values()),
    }


def worker_main(spec_path: str) -> None:
    spec: Json = json.loads(Path(spec_path).read_text())
    kind = spec["kind"]
    out = worker_mode(spec) if kind == "mode" else worker_floor(spec)
    Path(spec["out"]).write_text(json.dumps(out))


# ---------------------------------------------------------------------------------------------
# The conductor
# ---------------------------------------------------------------------------------------------


def run_worker(spec: Json, workdir: Path, timeout: float = 1800) -> Json:
    """Run a worker process on ``spec`` and return what it measured."""
    tag = f"{spec['kind']}-{spec.get('mode', '')}-{time.monotonic_ns()}"
    spec = {**spec, "out": str(workdir / f"{tag}.out.json")}
    spec_path = workdir / f"{tag}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    proc = subprocess.run(
        [sys.executable, str(HERE), "--worker", str(spec_path)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {tag} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    result: Json = json.loads(Path(spec["out"]).read_text())
    return result


@dataclass
class ModeRun:
    """One repetition of one mode with its floor."""

    mode: str
    measured: Json
    floor: Json
    sandbox: Json
    sandbox_floor: Json
    budget: Json | None = None
    changed_ids: int = 0
    needs: Json | None = None

    @property
    def ratio(self) -> float:
        return float(self.measured["wall_s"]) / max(float(self.floor["floor_s"]), 1e-9)


@dataclass
class ModeSummary:
    """The repetitions of one mode, reduced to one table row."""

    mode: str
    runs: list[ModeRun]
    concurrency: int
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def median(self, key: Callable[[ModeRun], float]) -> float:
        return statistics.median(key(r) for r in self.runs)

    @property
    def first(self) -> ModeRun:
        return self.runs[0]

    @property
    def wall(self) -> float:
        return self.median(lambda r: float(r.measured["wall_s"]))

    @property
    def floor(self) -> float:
        return self.median(lambda r: float(r.floor["floor_s"]))

    @property
    def ratio(self) -> float:
        return self.median(lambda r: r.ratio)

    @property
    def peak_mb(self) -> float:
        return max(float(r.measured["peak_mb"]) for r in self.runs)

    @property
    def max_in_flight(self) -> int:
        return max(int(r.sandbox["max_in_flight"]) for r in self.runs)

    @property
    def requests_cell(self) -> str:
        """Requests the sandbox served / the fewest a full read needs (``<=N``: the allowance
        of a no-change sync)."""
        first = self.first
        served = first.sandbox["requests"]
        if first.needs is not None:
            return f"{served}/{first.needs['total']}"
        if first.budget is not None:
            return f"{served}/<={first.budget['total']}"
        return str(served)

    @property
    def target(self) -> str:
        limit = RATIO_TARGETS.get(self.mode)
        if self.mode == "nochange_sync" and self.first.budget is not None:
            return f"<= {self.first.budget['total']} req"
        if self.mode == "refresh_nochange":
            return f"<= {limit}x, 0 rows"
        return f"<= {limit}x" if limit else "-"

    def evaluate(self) -> None:
        limit = RATIO_TARGETS.get(self.mode)
        if limit is not None:
            self.checks.append((f"ratio {self.ratio:.2f} <= {limit}", self.ratio <= limit))
        if self.mode == "refresh_nochange":
            rows = max(int(r.measured["rows_written"]) for r in self.runs)
            self.checks.append((f"{rows} mirror rows rewritten == 0", rows == 0))
        if self.mode == "nochange_sync":
            # The acceptance's allowance is a total (one list page per product, the re-reads
            # of changeable tests, their bug batches); each part is checked on its own too.
            # Requests of other kinds (features) count against the total only. Every
            # repetition starts from the same mirror: the largest count of each kind is judged.
            budget = self.first.budget
            assert budget is not None
            allowed: dict[str, int] = budget["allowed"]
            used: dict[str, int] = {}
            for run in self.runs:
                for kind, n in run.sandbox["counters"].items():
                    used[kind] = max(used.get(kind, 0), int(n))
            for kind, may in allowed.items():
                self.checks.append(
                    (f"{kind}: {used.get(kind, 0)} <= {may}", used.get(kind, 0) <= may)
                )
            total = max(int(run.sandbox["requests"]) for run in self.runs)
            extra = {k: n for k, n in used.items() if k not in allowed}
            note = ", ".join(f"{n} {k}" for k, n in extra.items())
            note = f" ({note} outside the allowance)" if note else ""
            self.checks.append(
                (f"requests {total} <= {budget['total']}{note}", total <= budget["total"])
            )
        for run in self.runs:
            if run.measured["status"] != "success":
                self.checks.append((f"status {run.measured['status']}", False))
        self.checks.append(
            (
                f"max in flight {self.max_in_flight} <= {self.concurrency}",
                self.max_in_flight <= self.concurrency,
            )
        )

    @property
    def passed(self) -> bool:
        return all(ok for _, ok in self.checks)

    def row(self) -> list[str]:
        first = self.first
        return [
            MODE_TITLES.get(self.mode, self.mode),
            f"{self.wall:.2f}",
            f"{self.median(lambda r: float(r.measured['cpu_s'])):.1f}"
            f"/{self.median(lambda r: float(r.floor['cpu_s'])):.1f}",
            f"{self.median(lambda r: float(r.measured['in_flight']['mean'])):.1f}"
            f"/{self.max_in_flight}",
            self.requests_cell,
            str(first.measured["rows_written"]),
            f"{self.peak_mb:.0f}",
            f"{self.floor:.2f}",
            f"{self.median(lambda r: float(r.floor['network_s'])):.2f}"
            f"+{self.median(lambda r: float(r.floor['db_s'])):.2f}",
            f"{self.ratio:.2f}",
            self.target,
            "PASS" if self.passed else "FAIL",
        ]

    def to_json(self) -> Json:
        def strip(measured: Json) -> Json:
            return {k: v for k, v in measured.items() if k not in ("urls", "columns")}

        return {
            "mode": self.mode,
            "wall_s": self.wall,
            "floor_s": self.floor,
            "ratio": self.ratio,
            "peak_mb": self.peak_mb,
            "sandbox_max_in_flight": self.max_in_flight,
            "target": self.target,
            "passed": self.passed,
            "checks": [{"check": text, "ok": ok} for text, ok in self.checks],
            "runs": [
                {
                    "measured": strip(r.measured),
                    "floor": r.floor,
                    "sandbox": r.sandbox,
                    "sandbox_floor": r.sandbox_floor,
                    "budget": r.budget,
                    "needs": r.needs,
                    "ratio": r.ratio,
                    "changed_tests": r.changed_ids,
                }
                for r in self.runs
            ],
        }


HEADER = [
    "mode",
    "wall s",
    "cpu s/floor",
    "avg/max in flight",
    "requests/min",
    "rows written",
    "peak MB",
    "floor s",
    "net+db s",
    "ratio",
    "target",
    "verdict",
]


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


class Suite:
    """Every requested mode, ``repeat`` times, at one concurrency, on one sandbox."""

    def __init__(
        self,
        sandbox: SandboxProcess,
        workdir: Path,
        concurrency: int,
        modes: Sequence[str],
        repeat: int,
        *,
        triggers: bool,
        profile_dir: Path | None,
        bug_batch_size: int,
        per_page: int,
        log: Callable[[str], None],
    ) -> None:
        self.sandbox = sandbox
        self.workdir = workdir / f"c{concurrency}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.concurrency = concurrency
        self.modes = [m for m in MODES if m in modes]
        self.repeat = repeat
        self.triggers = triggers
        self.profile_dir = profile_dir
        self.bug_batch_size = bug_batch_size
        self.per_page = per_page
        self.log = log
        self.baseline: Path | None = None
        self._serial = 0

    def _fresh_path(self, name: str) -> Path:
        self._serial += 1
        folder = self.workdir / f"{self._serial:03d}-{name}"
        folder.mkdir()
        return folder / "mirror.db"

    def _spec(self, mode: str, db: Path, rep: int) -> Json:
        spec: Json = {
            "kind": "mode",
            "mode": mode,
            "db": str(db),
            "url": self.sandbox.url,
            "token": self.sandbox.token,
            "concurrency": self.concurrency,
            "triggers": self.triggers,
        }
        if self.profile_dir is not None:
            spec["profile"] = str(self.profile_dir / f"{mode}-c{self.concurrency}-r{rep}.prof")
        return spec

    def _ensure_baseline(self) -> Path:
        """A mirror after one complete first sync (made unmeasured when first_sync is not run)."""
        if self.baseline is None:
            db = self._fresh_path("baseline")
            self.log(f"  [c={self.concurrency}] preparing a synced baseline mirror")
            run_worker(self._spec("sync", db, 0) | {"profile": None}, self.workdir)
            self.baseline = db
        return self.baseline

    def _prepare(self, mode: str, rep: int) -> tuple[Path, int]:
        if mode == "first_sync":
            return self._fresh_path(mode), 0
        db = self._fresh_path(mode)
        copy_db(self._ensure_baseline(), db)
        changed = 0
        if mode == "refresh_1pct":
            ids = self.sandbox.product_ids()
            tag = f"c{self.concurrency} r{rep} {time.time_ns()}"
            changed = len(self.sandbox.change_titles(ids, CHANGED_FRACTION, tag))
        return db, changed

    def run_mode(self, mode: str, rep: int) -> ModeRun:
        db, changed = self._prepare(mode, rep)
        budget = request_budget(db, self.bug_batch_size) if mode == "nochange_sync" else None
        self.sandbox.reset()
        measured = run_worker(self._spec(mode, db, rep), self.workdir)
        sandbox_stats = self.sandbox.stats()
        if mode == "first_sync" and self.baseline is None:
            self.baseline = self.workdir / "baseline.db"
            copy_db(Path(measured["db_after"]), self.baseline)
        self.sandbox.reset()
        floor = run_worker(
            {
                "kind": "floor",
                "mode": mode,
                "db": measured["db_after"],
                "before_stamp": measured["before_stamp"],
                "columns": measured["columns"],
                "urls": measured["urls"],
                "url": self.sandbox.url,
                "token": self.sandbox.token,
                "concurrency": self.concurrency,
                "scratch": str(db.parent / "floor.db"),
            },
            self.workdir,
        )
        floor_stats = self.sandbox.stats()
        needs = None
        if mode != "nochange_sync":
            needs = full_read_needs(Path(measured["db_after"]), self.per_page, self.bug_batch_size)
        run = ModeRun(mode, measured, floor, sandbox_stats, floor_stats, budget, changed, needs)
        self.log(
            f"  [c={self.concurrency}] {mode} #{rep + 1}: {measured['wall_s']:.2f} s, "
            f"floor {floor['floor_s']:.2f} s (net {floor['network_s']:.2f} + db "
            f"{floor['db_s']:.2f}), ratio {run.ratio:.2f}, {sandbox_stats['requests']} requests, "
            f"{measured['rows_written']} rows, {measured['peak_mb']:.0f} MB, "
            f"in flight {sandbox_stats['max_in_flight']} (floor run: "
            f"{floor_stats['max_in_flight']})"
        )
        for suffix in ("", "-wal", "-shm"):
            (db.parent / f"floor.db{suffix}").unlink(missing_ok=True)
        return run

    def run(self) -> list[ModeSummary]:
        summaries = []
        for mode in self.modes:
            runs = [self.run_mode(mode, rep) for rep in range(self.repeat)]
            summary = ModeSummary(mode, runs, self.concurrency)
            summary.evaluate()
            summaries.append(summary)
        return summaries


def large_memory_check(
    latency_ms: float, concurrency: int, workdir: Path, log: Callable[[str], None]
) -> Json:
    """Sync the `large` preset once (unmeasured), then refresh it in a fresh worker: peak RSS."""
    folder = workdir / "large"
    folder.mkdir()
    db = folder / "mirror.db"
    log(f"large-memory: starting the `large` sandbox (latency {latency_ms:g} ms)")
    with SandboxProcess("large", latency_ms) as sandbox:
        base: Json = {
            "kind": "mode",
            "db": str(db),
            "url": sandbox.url,
            "token": sandbox.token,
            "concurrency": concurrency,
        }
        log("large-memory: first sync (for the data; also measured)")
        sandbox.reset()
        first = run_worker(base | {"mode": "first_sync"}, folder)
        first_stats = sandbox.stats()
        log(
            f"large-memory: first sync {first['wall_s']:.1f} s, {first_stats['requests']} "
            f"requests, {first['rows_written']} rows, peak {first['peak_mb']:.0f} MB"
        )
        sandbox.reset()
        refresh = run_worker(base | {"mode": "refresh_nochange"}, folder)
        refresh_stats = sandbox.stats()
        log(
            f"large-memory: refresh {refresh['wall_s']:.1f} s, {refresh_stats['requests']} "
            f"requests, {refresh['rows_written']} rows, peak {refresh['peak_mb']:.0f} MB "
            f"(after imports: {refresh['baseline_mb']:.0f} MB); measuring its floor"
        )
        floor = run_worker(
            {
                "kind": "floor",
                "db": refresh["db_after"],
                "before_stamp": refresh["before_stamp"],
                "columns": refresh["columns"],
                "urls": refresh["urls"],
                "url": sandbox.url,
                "token": sandbox.token,
                "concurrency": concurrency,
                "scratch": str(folder / "floor.db"),
            },
            folder,
        )
    log(f"large-memory: refresh floor {floor['floor_s']:.1f} s")

    def strip(measured: Json) -> Json:
        return {k: v for k, v in measured.items() if k not in ("urls", "columns")}

    return {
        "limit_mb": LARGE_MEMORY_LIMIT_MB,
        "peak_mb": refresh["peak_mb"],
        "baseline_mb": refresh["baseline_mb"],
        "passed": refresh["peak_mb"] < LARGE_MEMORY_LIMIT_MB and refresh["status"] == "success",
        "refresh": strip(refresh),
        "refresh_sandbox": refresh_stats,
        "refresh_floor": floor,
        "refresh_ratio": refresh["wall_s"] / max(floor["floor_s"], 1e-9),
        "first_sync": strip(first),
        "first_sync_sandbox": first_stats,
    }


def weekly_upstream_changes(sandbox: Any, week: int) -> Json:
    """A week of an account, played on the sandbox: per product 3 new tests (with their
    bugs), open tests moving one status on (half of them), a fifth of the bugs waiting for a
    decision decided (7 of 10 accepted), and one test deleted in every fifth product."""
    import random

    rng = random.Random(week)
    order = ["initialized", "waiting", "running", "locked", "customer_finalized", "archived"]
    truth = sandbox.truth()
    made = {"tests_added": 0, "tests_moved": 0, "bugs_decided": 0, "tests_deleted": 0}
    for n, pid in enumerate(sorted(truth.products)):
        tests = sandbox.test_ids(pid)
        if n % 5 == week % 5 and len(tests) > 10:
            doomed = tests.pop(rng.randrange(len(tests)))
            sandbox.delete_tests([doomed])
            made["tests_deleted"] += 1
        for test_id in tests:
            status = truth.tests[test_id]["status"]
            if status in order[:-1] and rng.random() < 0.5:
                sandbox.update_test(test_id, status=order[order.index(status) + 1])
                made["tests_moved"] += 1
        made["tests_added"] += len(sandbox.add_tests(pid, 3, where="sorted"))
    for bug_id, bug in truth.bugs.items():
        if bug["status"] == "forwarded" and rng.random() < 0.2:
            with contextlib.suppress(LookupError):  # its test was deleted above
                sandbox.update_bug(bug_id, status="accepted" if rng.random() < 0.7 else "rejected")
                made["bugs_decided"] += 1
    return made


def history_growth(preset: str, weeks: int, workdir: Path, log: Callable[[str], None]) -> Json:
    """The change feed's size after ``weeks`` weekly refreshes with upstream changes between
    them (in process, no latency: this measures bytes, not time).

    The feed's cost on disk is the size of a vacuumed copy of the mirror less the size of the
    same copy without the ``changes`` table (its indexes included)."""
    import testio_toolkit as tt
    from testio_toolkit.sandbox import Sandbox

    folder = workdir / "history"
    folder.mkdir()
    db = folder / "mirror.db"
    with Sandbox(preset=preset) as sandbox:
        mirror = tt.Mirror(db, token=sandbox.token, base_url=sandbox.url, progress=False)
        first = mirror.sync()
        log(f"history: first sync {first.change_line}")
        started = time.monotonic()
        made_total: dict[str, int] = {}
        for week in range(weeks):
            made = weekly_upstream_changes(sandbox, week)
            for key, n in made.items():
                made_total[key] = made_total.get(key, 0) + n
            sandbox.advance(7 * 24 * 3600)
            result = mirror.refresh()
            if result.status != "success":
                raise RuntimeError(f"week {week + 1}: refresh {result.status}: {result.error}")
            log(f"history: week {week + 1}/{weeks}: {result.changes.total} changes "
                f"({result.change_line[:90]})")  # fmt: skip
        seconds = time.monotonic() - started
    with_feed, without_feed = folder / "with.db", folder / "without.db"
    conn = sqlite3.connect(db)
    try:
        conn.execute("VACUUM INTO ?", (str(with_feed),))
        rows = int(conn.execute("SELECT count(*) FROM changes").fetchone()[0])
        by_kind = dict(
            conn.execute("SELECT entity || ' ' || kind, count(*) FROM changes GROUP BY 1")
        )
    finally:
        conn.close()
    conn = sqlite3.connect(with_feed)
    try:
        conn.execute("DROP TABLE changes")
        conn.commit()
        conn.execute("VACUUM INTO ?", (str(without_feed),))
    finally:
        conn.close()
    feed_bytes = with_feed.stat().st_size - without_feed.stat().st_size
    return {
        "preset": preset,
        "weeks": weeks,
        "rows": rows,
        "rows_by_kind": by_kind,
        "upstream_changes": made_total,
        "feed_mb": feed_bytes / 1e6,
        "mirror_mb": with_feed.stat().st_size / 1e6,
        "bytes_per_row": feed_bytes / max(rows, 1),
        "refresh_seconds_total": seconds,
    }


def report_suite(concurrency: int, summaries: list[ModeSummary]) -> Json:
    """Print one suite's table and its failures; return it for the JSON report."""
    table = format_table([HEADER, *(s.row() for s in summaries)])
    print(table)
    in_flight = max((s.max_in_flight for s in summaries), default=0)
    runs = [r for s in summaries for r in s.runs]
    floor_in_flight = max((int(r.sandbox_floor["max_in_flight"]) for r in runs), default=0)
    client_in_flight = max((int(r.measured["client_max_in_flight"]) for r in runs), default=0)
    abandoned = max((int(r.measured["abandoned_requests"]) for r in runs), default=0)
    print(
        f"max in flight seen by the sandbox: {in_flight} (limit {concurrency}; bare floor "
        f"client: {floor_in_flight}; the toolkit's own count: {client_in_flight}; requests "
        f"the toolkit abandoned mid-flight in one run: up to {abandoned})"
    )
    for summary in summaries:
        failed = [text for text, good in summary.checks if not good]
        if failed:
            print(f"  {summary.mode} FAIL: {'; '.join(failed)}")
    return {
        "concurrency": concurrency,
        "table": table,
        "passed": all(s.passed for s in summaries),
        "max_in_flight": in_flight,
        "floor_max_in_flight": floor_in_flight,
        "client_max_in_flight": client_in_flight,
        "modes": [s.to_json() for s in summaries],
    }


def git_state() -> Json:
    """The commit measured, and whether the package had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "head": git("rev-parse", "--short", "HEAD"),
        "package_changes": git("status", "--porcelain", "--", "testio_toolkit").splitlines(),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark sync/refresh/nuke against the sandbox, with a same-run floor."
    )
    parser.add_argument("--preset", default="medium", choices=("small", "medium", "large"))
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--concurrency",
        default=None,
        help="requests in flight; a comma list (4,8,16) runs the suite once per value "
        "(default: the toolkit's default)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma list of {', '.join(MODES)}; 'none' with --large-memory runs only that",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (median is shown)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument(
        "--large-memory",
        action="store_true",
        help=f"also check the peak RSS of a refresh of the `large` preset "
        f"(< {LARGE_MEMORY_LIMIT_MB:g} MB)",
    )
    parser.add_argument(
        "--large-latency-ms", type=float, default=None, help="default: --latency-ms"
    )
    parser.add_argument(
        "--history-weeks",
        type=int,
        default=0,
        help="also measure the change feed's size after this many weekly refreshes with "
        "upstream changes between them (52: a year; several minutes on medium)",
    )
    parser.add_argument(
        "--triggers",
        action="store_true",
        help="count writes with temp triggers too (exact per table; slows the writes)",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile each mode into this folder"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip() and m.strip() != "none"]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    args.modes = modes
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0

    from testio_toolkit.client import ClientOptions
    from testio_toolkit.limiter import DEFAULT_START

    defaults = ClientOptions()

    # The floor downloads under a fixed semaphore, so the toolkit is pinned to the same
    # number here (its default adapts: benchmarks/limiter_bench.py measures that).
    if args.concurrency is None:
        levels = [DEFAULT_START]
    else:
        levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    command = "uv run python benchmarks/sync_bench.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report: Json = {
        "command": command.strip(),
        "preset": args.preset,
        "latency_ms": args.latency_ms,
        "repeat": args.repeat,
        "default_concurrency": DEFAULT_START,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_start": os.getloadavg(),
        },
        "started_at": utc_stamp(),
        "git": git_state(),
        "suites": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.profile = args.profile.resolve()
    ok = True
    try:
        if args.modes:
            log(f"starting the `{args.preset}` sandbox (latency {args.latency_ms:g} ms) ...")
            with SandboxProcess(args.preset, args.latency_ms) as sandbox:
                if sandbox.backlog_was < 128:
                    log(f"note: the sandbox's listen backlog was {sandbox.backlog_was}; now 128")
                report["sandbox_backlog_was"] = sandbox.backlog_was
                for concurrency in levels:
                    log(f"concurrency {concurrency}:")
                    suite = Suite(
                        sandbox,
                        workdir,
                        concurrency,
                        args.modes,
                        args.repeat,
                        triggers=args.triggers,
                        profile_dir=args.profile,
                        bug_batch_size=defaults.bug_batch_size,
                        per_page=defaults.per_page,
                        log=log,
                    )
                    summaries = suite.run()
                    print(
                        f"\npreset {args.preset}, latency {args.latency_ms:g} ms, concurrency "
                        f"{concurrency}, median of {args.repeat} run(s), commit "
                        f"{report['git']['head'] or '?'}"
                        f"{' (+ local changes)' if report['git']['package_changes'] else ''}"
                    )
                    suite_report = report_suite(concurrency, summaries)
                    ok = ok and suite_report["passed"]
                    report["suites"].append(suite_report)
        if args.large_memory:
            latency = args.latency_ms if args.large_latency_ms is None else args.large_latency_ms
            large = large_memory_check(latency, levels[0], workdir, log)
            report["large_memory"] = large
            verdict = "PASS" if large["passed"] else "FAIL"
            print(
                f"\nlarge preset refresh: peak {large['peak_mb']:.0f} MB (after imports "
                f"{large['baseline_mb']:.0f} MB), limit {LARGE_MEMORY_LIMIT_MB:g} MB: {verdict}; "
                f"{large['refresh_sandbox']['requests']} requests in "
                f"{large['refresh']['wall_s']:.1f} s (floor {large['refresh_floor']['floor_s']:.1f}"
                f" s), {large['refresh']['rows_written']} rows written"
            )
            ok = ok and bool(large["passed"])
        if args.history_weeks:
            history = history_growth(args.preset, args.history_weeks, workdir, log)
            report["history"] = history
            print(
                f"\nchange feed after {history['weeks']} weekly refreshes ({args.preset}): "
                f"{history['rows']:,} rows, {history['feed_mb']:.2f} MB "
                f"({history['bytes_per_row']:.0f} bytes a row) in a "
                f"{history['mirror_mb']:.1f} MB mirror; upstream: "
                + ", ".join(f"{n:,} {k}" for k, n in history["upstream_changes"].items())
            )
            print("  rows: " + ", ".join(f"{n:,} {k}" for k, n in history["rows_by_kind"].items()))
    finally:
        report["load_avg_end"] = os.getloadavg()
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2, default=str))
        if args.keep:
            log(f"scratch kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
