#!/usr/bin/env python
"""Benchmark a portfolio: ``sync --all`` against one account after another, and a question
over many mirrors.

Usage::

    uv run python benchmarks/portfolio_bench.py          # 10 accounts at 300 ms; 30 mirrors
    uv run python benchmarks/portfolio_bench.py --accounts 10 --latency-ms 300 --at-once 4
    uv run python benchmarks/portfolio_bench.py --query-accounts 30 --preset small

What runs:

- The sandbox customers (``SandboxCustomers.numbered``: ``customer-01`` ..., each its own
  server, token and data) run in a child process, so their CPU does not count against the
  toolkit's; every request waits ``--latency-ms``.
- **sync --all**: ``tt.sync_all(at_once=N)`` of ``--accounts`` empty mirrors, against the
  same accounts synced one after another (``tt.Mirror(account=name).sync()`` in a loop), each
  into fresh folders. Wall time of each; ratio = one after another / all at once.
- **portfolio query**: ``--query-accounts`` mirrors synced (no latency), then the wall time of a
  grouped count over all their bugs two ways: ``tt.portfolio.query`` (SQL in each mirror) and
  ``tt.portfolio.bugs().groupby("account").size()`` (every bug row read into one frame).

Tokens come from ``TESTIO_TOKEN_<NAME>`` (no keyring is needed), config and data folders are
a scratch folder (``XDG_CONFIG_HOME``, ``XDG_DATA_HOME``). The figures are one run's, on
whatever else the machine does: compare the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path


def serve(conn: Connection, count: int, preset: str, latency_ms: float) -> None:
    """The child: start the customers, send (name, url, token) of each, serve until told."""
    from testio_toolkit.sandbox import SandboxCustomers

    customers = SandboxCustomers.numbered(count, preset, latency_ms=latency_ms).start()
    conn.send([(name, sb.url, sb.token) for name, sb in customers.sandboxes.items()])
    conn.recv()
    customers.stop()


class Customers:
    """Sandbox customers in a child process."""

    def __init__(self, count: int, preset: str, latency_ms: float) -> None:
        self._conn, child = multiprocessing.Pipe()
        self._process = multiprocessing.Process(
            target=serve, args=(child, count, preset, latency_ms), daemon=True
        )
        self._process.start()
        self.served: list[tuple[str, str, str]] = self._conn.recv()

    def close(self) -> None:
        self._conn.send("stop")
        self._process.join(timeout=30)


def fresh_folders(root: Path, label: str) -> None:
    """Point the config and data folders at new scratch folders (new accounts, no mirrors)."""
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
    os.environ["XDG_CONFIG_HOME"] = str(folder / "config")
    os.environ["XDG_DATA_HOME"] = str(folder / "data")


def add_accounts(served: list[tuple[str, str, str]]) -> list[str]:
    from testio_toolkit import accounts

    for name, url, token in served:
        os.environ[accounts.token_variable(name)] = token
        accounts.add(name, url=url)
    return [name for name, _, _ in served]


def bench_sync_all(args: argparse.Namespace, root: Path) -> dict[str, float]:
    import testio_toolkit as tt

    customers = Customers(args.accounts, args.preset, args.latency_ms)
    try:
        fresh_folders(root, "all")
        names = add_accounts(customers.served)
        started = time.perf_counter()
        result = tt.sync_all(at_once=args.at_once)
        together = time.perf_counter() - started
        assert result.ok, result.text()

        fresh_folders(root, "serial")
        add_accounts(customers.served)
        started = time.perf_counter()
        for name in names:
            assert tt.Mirror(account=name, progress=False).sync().ok
        serial = time.perf_counter() - started
    finally:
        customers.close()
    return {"sync_all_s": together, "one_after_another_s": serial, "ratio": serial / together}


def bench_query(args: argparse.Namespace, root: Path) -> dict[str, float]:
    import testio_toolkit as tt

    customers = Customers(args.query_accounts, args.preset, 0.0)
    try:
        fresh_folders(root, "query")
        add_accounts(customers.served)
        started = time.perf_counter()
        assert tt.sync_all(at_once=args.at_once).ok
        synced = time.perf_counter() - started
    finally:
        customers.close()
    import pandas  # noqa: F401 - imported before the clock starts, as in a notebook

    sql = "SELECT severity, count(*) AS n FROM bugs GROUP BY severity"
    timings: dict[str, list[float]] = {"query": [], "frame": []}
    for _ in range(3):  # the first call opens every file for the first time
        started = time.perf_counter()
        counts = tt.portfolio.query(sql)
        timings["query"].append(time.perf_counter() - started)
        started = time.perf_counter()
        bugs = tt.portfolio.bugs()
        per_account = bugs.groupby("account", observed=True).size()
        timings["frame"].append(time.perf_counter() - started)
    assert int(counts["n"].sum()) == len(bugs) == int(per_account.sum())
    return {
        "sync_s": synced,
        "query_first_s": timings["query"][0],
        "query_s": min(timings["query"][1:]),
        "frame_first_s": timings["frame"][0],
        "frame_s": min(timings["frame"][1:]),
        "bugs": float(len(bugs)),
        "mirrors": float(counts["account"].nunique()),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--at-once", type=int, default=4)
    parser.add_argument("--query-accounts", type=int, default=30, help="0: no query")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--skip-sync", action="store_true", help="only the portfolio query")
    args = parser.parse_args(argv)
    for name in list(os.environ):
        if name.startswith("TESTIO_") and name != "TESTIO_SANDBOX_NOW":
            del os.environ[name]
    with tempfile.TemporaryDirectory(prefix="portfolio-bench-") as scratch:
        root = Path(scratch)
        if not args.skip_sync:
            figures = bench_sync_all(args, root)
            print(
                f"sync --all of {args.accounts} {args.preset} accounts at {args.latency_ms:.0f} "
                f"ms a request: {figures['sync_all_s']:.1f}s at {args.at_once} at once, "
                f"{figures['one_after_another_s']:.1f}s one after another "
                f"(x{figures['ratio']:.1f})"
            )
        if not args.query_accounts:
            return 0
        query = bench_query(args, root)
        print(
            f"portfolio over {query['mirrors']:.0f} mirrors ({query['bugs']:.0f} bugs; synced in "
            f"{query['sync_s']:.1f}s): grouped count in SQL {query['query_first_s']:.2f}s "
            f"first, {query['query_s']:.2f}s again; all bugs as one frame then groupby "
            f"{query['frame_first_s']:.2f}s first, {query['frame_s']:.2f}s again"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
