"""Shared fixtures: the sandbox as a real HTTP server, fresh databases, clean environments."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import testio_toolkit as tt
from testio_toolkit import api
from testio_toolkit.client import ClientOptions
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.sandbox.sandbox import ANCHOR_VARIABLE

# Every sandbox of the suite ends its data at the same fixed "now" (data.ANCHOR), so exact
# dates and counts hold on any day; a test that wants today's clock passes anchor="now".
PINNED_NOW = "2025-06-02T12:00:00Z"
os.environ[ANCHOR_VARIABLE] = PINNED_NOW

# Retries stay real but quick, so fault tests finish in seconds.
FAST = ClientOptions(backoff_base=0.001, backoff_max=0.01, timeout=2.0)
REPO = Path(__file__).resolve().parent.parent

# Hypothesis profiles (tests/test_model.py). "default" bounds the model test to about a minute
# and is derandomized, so CI sees the same examples every time; "long" explores:
#   uv run pytest tests/test_model.py --hypothesis-profile=long --timeout=0   (~8 min)
# HYPOTHESIS_PROFILE=long does the same; --hypothesis-profile wins over both.
settings.register_profile(
    "default",
    max_examples=8,
    stateful_step_count=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=100,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def clean_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reaches a real account or a user's files: no token, data folders in tmp."""
    for name in list(os.environ):
        if name.startswith("TESTIO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(ANCHOR_VARIABLE, PINNED_NOW)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.chdir(home)  # no stray .env is picked up
    api.reset()
    yield
    api.reset()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh small sandbox per test (tests change its data)."""
    with Sandbox(preset="small") as sb:
        yield sb


@pytest.fixture(scope="session")
def medium_sandbox() -> Iterator[Sandbox]:
    """One medium sandbox for the session: read it, do not change it."""
    with Sandbox(preset="medium") as sb:
        yield sb


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "mirror.db"


def make_mirror(sb: Sandbox, path: Path, **options: Any) -> tt.Mirror:
    options.setdefault("client_options", FAST)
    options.setdefault("progress", False)
    return tt.Mirror(path, token=sb.token, base_url=sb.url, **options)


@pytest.fixture
def mirror(sandbox: Sandbox, db_path: Path) -> tt.Mirror:
    """A mirror of the per-test sandbox in a new database file."""
    return make_mirror(sandbox, db_path)


def cli_env(sb: Sandbox, path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(
        TESTIO_CUSTOMER_API_TOKEN=sb.token,
        TESTIO_CUSTOMER_API_BASE_URL=sb.url,
        TESTIO_DB_PATH=str(path),
    )
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m testio_toolkit ARGS`` as a user would, and capture everything."""
    return subprocess.run(
        [sys.executable, "-m", "testio_toolkit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=stdin,
    )


def digest(path: Path) -> str:
    """The file's content, as a hash: equal digests mean a byte-identical file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_rows(path: Path, table: str) -> dict[int, dict[str, Any]]:
    """Every row of a table, keyed by id (for before/after comparisons)."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return {row["id"]: dict(row) for row in conn.execute(f"SELECT * FROM {table}")}
    finally:
        conn.close()


def assert_mirror_equals_truth(path: Path, sb: Sandbox, products: list[int] | None = None) -> None:
    """The mirror holds exactly what the sandbox serves (rows marked gone don't count)."""
    import json
    import sqlite3

    truth = sb.truth()
    conn = sqlite3.connect(path)
    try:

        def live(table: str) -> dict[int, Any]:
            return {
                row[0]: json.loads(row[1])
                for row in conn.execute(
                    f"SELECT id, raw FROM {table} WHERE deleted_upstream_at IS NULL"
                )
            }

        tests = live("tests")
        expected_tests = {
            tid: t
            for tid, t in truth.tests.items()
            if products is None or truth.product_of_test[tid] in products
        }
        assert set(tests) == set(expected_tests), "test ids differ"
        assert tests == expected_tests, "test contents differ"
        bugs = live("bugs")
        expected_bugs = {b: v for b, v in truth.bugs.items() if v["test"]["id"] in expected_tests}
        assert set(bugs) == set(expected_bugs), "bug ids differ"
        assert bugs == expected_bugs, "bug contents differ"
        features = live("features")
        expected_features = {
            f: v
            for f, v in truth.features.items()
            if products is None or truth.product_of_feature[f] in products
        }
        assert features == expected_features, "features differ"
        if products is None:
            assert set(live("products")) == set(truth.products)
    finally:
        conn.close()
