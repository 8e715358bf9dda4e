"""Shared fixtures: the sandbox as a real HTTP server, fresh databases, clean environments."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
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
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))  # accounts.toml
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


# -- a synced mirror without a sync -----------------------------------------------------------
# Most tests start from "the mirror holds the small sandbox": a first sync, 0.3-0.5 s each.
# Every small sandbox serves the same data (one seed, the pinned anchor), so the session syncs
# one pristine small sandbox once and a test gets a copy of that file, adopted by its own
# sandbox. Tests about the first sync itself still sync (test_sync.py, the CLI's own tests).


@pytest.fixture(scope="session")
def small_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mirror file of a pristine small sandbox after one successful sync (read-only: copy
    it with ``synced_copy``)."""
    folder = tmp_path_factory.mktemp("template")
    path = folder / "mirror.db"
    with pytest.MonkeyPatch.context() as patch, Sandbox(preset="small") as sb:
        for name in list(os.environ):  # as clean_environment does for a test
            if name.startswith("TESTIO_"):
                patch.delenv(name)
        patch.setenv(ANCHOR_VARIABLE, PINNED_NOW)
        patch.chdir(folder)
        result = make_mirror(sb, path).sync()
    assert result.status == "success", result
    assert (
        not path.with_name(path.name + "-wal").exists()
        or not path.with_name(path.name + "-wal").stat().st_size
    ), "the template's WAL was not folded in"
    return path


def synced_copy(template: Path, sb: Sandbox, path: Path) -> Path:
    """``path`` as a first sync of ``sb`` would leave it: a copy of ``template``, whose
    recorded source (the base URL it was read from) is ``sb``'s. ``sb`` must still serve the
    small preset's pristine data."""
    import sqlite3

    shutil.copyfile(template, path)
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'source'", (sb.url,))
        conn.commit()
    finally:
        conn.close()
    return path


@pytest.fixture
def synced(sandbox: Sandbox, db_path: Path, small_template: Path) -> tt.Mirror:
    """``mirror`` after its first sync of the (still pristine) per-test sandbox."""
    synced_copy(small_template, sandbox, db_path)
    return make_mirror(sandbox, db_path)


@pytest.fixture
def synced_env(synced: tt.Mirror, sandbox: Sandbox, db_path: Path) -> dict[str, str]:
    """``cli_env`` for a mirror that already holds the per-test sandbox (``synced``)."""
    return cli_env(sandbox, db_path)


def cli_env(sb: Sandbox, path: Path, **extra: str) -> dict[str, str]:
    """The whole environment of a CLI run against ``sb`` into ``path`` (as a user's shell
    would have it: this process's variables, none of its ``TESTIO_`` ones, then these)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(
        TESTIO_CUSTOMER_API_TOKEN=sb.token,
        TESTIO_CUSTOMER_API_BASE_URL=sb.url,
        TESTIO_DB_PATH=str(path),
    )
    env.update(extra)
    return env


def cli(*args: str, env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
    """Run ``testio-toolkit ARGS`` in this process, with click's ``CliRunner``.

    ``env`` is the whole environment of the run, as it would be for a subprocess: variables
    of ``os.environ`` that it leaves out are unset while the command runs (so ``cli_env``
    works for both), and the working folder is the test's (``clean_environment``), so no
    stray ``.env`` is read. stdin is not a terminal and holds ``input``; stderr is kept
    apart from stdout (``result.stdout``, ``result.stderr``, ``result.exit_code``).
    Exceptions the CLI does not turn into an exit code propagate. Neither output may show
    the sandbox tokens of the fault-injection tests (``SECRET``).
    """
    from testio_toolkit.cli import cli as command

    overrides: dict[str, str | None] = {}
    if env is not None:
        overrides = {name: None for name in os.environ if name not in env}
        overrides.update(env)
    result = CliRunner().invoke(
        command,
        list(args),
        env=overrides,
        input=input,
        catch_exceptions=False,
        prog_name="testio-toolkit",
    )
    assert_no_secret(result.stdout, f"the stdout of {' '.join(args)}")
    assert_no_secret(result.stderr, f"the stderr of {' '.join(args)}")
    return result


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m testio_toolkit ARGS`` as its own process, and capture everything.

    Only where the behaviour is about processes (signals, a lock another process holds,
    kill -9, a fresh interpreter); everything else uses ``cli()``."""
    done = subprocess.run(
        [sys.executable, "-m", "testio_toolkit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=stdin,
    )
    assert_no_secret(done.stdout, f"the stdout of {' '.join(args)}")
    assert_no_secret(done.stderr, f"the stderr of {' '.join(args)}")
    return done


# -- the token stays secret -------------------------------------------------------------------
# The fault-injection modules (test_secrets, test_messages, test_resilience, test_locking) use
# sandboxes whose token is SECRET (`sb`, `secret_sandbox`), and scan the logs and every file a
# test left in its tmp_path for it after each test (`token_never_leaks`); every CLI run's
# output is scanned by `cli()` and `run_cli()`.

# A token nobody could mistake for anything else; FRAGMENT catches partial leaks too
# (a token cut to fit a line, or with its first characters masked).
SECRET = "ttk-SECRET-5f1c9e7a2b44d0-do-not-print"
FRAGMENT = "5f1c9e7a2b44d0"
# Customers' secrets: the credentials of the test environments every seed-0 sandbox serves
# (usernames, passwords, the code in `access`, a URL's password, an install token). The
# same scans look for them, so every fault-injection case also proves none is stored,
# logged or printed (tests that rotate credentials check the new ones themselves).
CREDENTIALS = tuple(sorted(Sandbox(preset="small").served_secrets()))
NEEDLES = (SECRET.encode(), FRAGMENT.encode(), *(c.encode() for c in CREDENTIALS))


def secret_sandbox(**options: Any) -> Sandbox:
    """A small sandbox (not started) whose only accepted token is ``SECRET``."""
    return Sandbox(preset="small", token=SECRET, **options)


def assert_no_secret(value: str | bytes, where: str) -> None:
    data = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
    for needle in NEEDLES:
        what = "the API token" if needle in NEEDLES[:2] else "a test environment's credential"
        assert needle not in data, f"{what} leaked into {where}"


def assert_no_secret_in_files(root: Path) -> list[Path]:
    """Scan every file below ``root`` (databases, -wal, -shm, backups, lock notes)."""
    scanned = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            assert_no_secret(path.read_bytes(), str(path))
            scanned.append(path)
    return scanned


def assert_no_secret_in_exception(exc: BaseException) -> None:
    """The message and repr of an error and of every error chained to it."""
    seen: BaseException | None = exc
    while seen is not None:
        assert_no_secret(str(seen), f"the message of {type(seen).__name__}")
        assert_no_secret(repr(seen), f"the repr of {type(seen).__name__}")
        seen = seen.__cause__ or seen.__context__


def watch_for_token(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> Iterator[None]:
    """Body of ``token_never_leaks``: log everything at DEBUG (httpx and httpcore
    included), run the test, then look for the token."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "testio_toolkit"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    for record in caplog.records:
        assert_no_secret(record.getMessage(), f"a log record of {record.name}")
    assert_no_secret(caplog.text, "the captured log")
    assert_no_secret_in_files(tmp_path)


@pytest.fixture
def token_never_leaks(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> Iterator[None]:
    """After the test, the token is in no log record and no file below ``tmp_path``.
    A module asks for it for every test: ``pytestmark = pytest.mark.usefixtures(...)``."""
    yield from watch_for_token(caplog, tmp_path)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    """A fresh small sandbox per test that accepts only ``SECRET``."""
    with secret_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def steady() -> Iterator[Sandbox]:
    """A ``SECRET`` sandbox for a module's tests that only read it (they never set faults)."""
    with secret_sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def good_bytes(steady: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A complete mirror of ``steady``, checkpointed into one file."""
    import sqlite3

    path = tmp_path_factory.mktemp("good") / "mirror.db"
    make_mirror(steady, path).sync()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.read_bytes()


def assert_within_budget(actual: int, budget: float, why: str) -> None:
    """A request count the algorithm may lower: at most ``budget``, which ``why`` explains.

    Exact counts stay exact where the count is the behaviour (rows written, no write on a
    no-change run, exactly one retry); how many requests a read takes is policy, and an
    exact figure would break on every improvement of it.
    """
    assert actual <= budget, f"{actual} is over the budget of {budget}: {why}"


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
    """The mirror holds exactly what the sandbox serves (rows marked gone don't count),
    as a client keeps it: without the test environments' credentials, which the sandbox
    masks itself (``Truth.without_credentials``: the fields it filled with secrets)."""
    import json
    import sqlite3

    truth = sb.truth().without_credentials()
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


@pytest.fixture
def keyring_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A real file-backed keyring (tests/file_keyring.py) in its own folder, outside the
    config and data folders, chosen through keyring's configuration (PYTHON_KEYRING_BACKEND)."""
    import keyring.core

    folder = tmp_path_factory.mktemp("keyring")
    monkeypatch.setenv("TT_TEST_KEYRING", str(folder))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.file_keyring.FileKeyring")
    keyring.core.init_backend()
    yield folder
    monkeypatch.undo()
    keyring.core.init_backend()
