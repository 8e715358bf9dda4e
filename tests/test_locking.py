"""One writer per database, interrupts, and readers that are never blocked: real processes
(``python -m testio_toolkit``) against a slowed-down sandbox over HTTP."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

from testio_toolkit.errors import SyncInProgress
from testio_toolkit.lock import WriterLock
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.store import Store

from .conftest import (
    assert_mirror_equals_truth,
    assert_no_secret,
    cli_env,
    make_mirror,
    run_cli,
    secret_sandbox,
)

REFRESH = [sys.executable, "-m", "testio_toolkit", "sync", "--force", "--no-progress"]
# Slow enough that a refresh holds the lock for several seconds, whatever the start-up
# time of the processes; tests drop the latency again once they have seen what they need.
SLOW_MS = 1000


pytestmark = pytest.mark.usefixtures("token_never_leaks")


@pytest.fixture
def slow() -> Iterator[Sandbox]:
    with secret_sandbox(latency_ms=SLOW_MS) as sandbox:
        yield sandbox


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the database the way a second program would; None while it cannot."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except sqlite3.Error:
            pass  # the database is not there yet
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def run_is_writing(path: Path) -> bool:
    """A run is marked running and has committed some tests."""
    if not path.exists():
        return False
    running = query(path, "SELECT count(*) FROM sync_runs WHERE status = 'running'")[0][0]
    return running == 1 and query(path, "SELECT count(*) FROM tests")[0][0] > 0


def spawn(env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``testio-toolkit sync --force`` as its own process."""
    return subprocess.Popen(
        REFRESH, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still alive at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def in_parallel(*commands: list[str], env: dict[str, str]) -> list[CompletedProcess[str]]:
    """Run CLI commands side by side (each pays the interpreter's start-up alone)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: run_cli(*args, env=env), commands))


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# -- 4. one writer --------------------------------------------------------------------------


def test_two_refreshes_started_at_once_one_runs_and_the_other_fails_fast_naming_it(
    slow: Sandbox, db_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    env = cli_env(slow, db_path)
    processes += [spawn(env), spawn(env)]

    # The first to exit is the one that lost the race for the lock, while the winner works.
    wait_for(lambda: any(p.poll() is not None for p in processes), "a process to exit")
    loser = next(p for p in processes if p.poll() is not None)
    winner = next(p for p in processes if p is not loser)
    winner_was_running = winner.poll() is None
    slow.set_faults(latency_ms=0)  # let the winner finish quickly
    loser_out, loser_err = loser.communicate()
    winner_out, winner_err = winner.communicate(timeout=60)

    assert winner_was_running, "the loser did not fail before the winner finished"
    assert loser.returncode == 1, loser_err
    assert winner.returncode == 0, winner_err
    assert "SyncInProgress" in loser_err
    assert f"a refresh (pid {winner.pid} on " in loser_err, loser_err
    assert str(db_path) in loser_err
    assert "refresh success" in winner_out
    for text in (loser_out, loser_err, winner_out, winner_err):
        assert_no_secret(text, "the output of a racing refresh")
    runs = query(db_path, "SELECT mode, status FROM sync_runs")
    assert runs == [("refresh", "success")]  # the loser never started a run
    assert_mirror_equals_truth(db_path, slow)


def test_a_holder_killed_with_kill_9_does_not_block_the_next_run(
    slow: Sandbox, db_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    holder = spawn(cli_env(slow, db_path))
    processes.append(holder)
    wait_for(lambda: run_is_writing(db_path), "the refresh to write")

    holder.kill()  # SIGKILL: no cleanup, no chance to release anything
    holder.wait(timeout=10)
    slow.set_faults(latency_ms=0)
    assert holder.returncode == -signal.SIGKILL

    result = make_mirror(slow, db_path).refresh()

    assert result.status == "success"
    assert integrity(db_path) == "ok"
    assert_mirror_equals_truth(db_path, slow)
    # The killed run could not record its end; the next one does not leave it "running".
    runs = query(db_path, "SELECT status, error FROM sync_runs ORDER BY id")
    assert [status for status, _ in runs] == ["failed", "success"]
    assert "killed" in runs[0][1]


def test_a_second_writer_fails_fast_naming_the_holder_from_library_and_cli(
    sb: Sandbox, db_path: Path
) -> None:
    mirror = make_mirror(sb, db_path)
    mirror.sync()
    env = cli_env(sb, db_path)

    with WriterLock(db_path, mode="refresh"):
        started = time.monotonic()
        with pytest.raises(SyncInProgress) as library:
            mirror.refresh()
        library_seconds = time.monotonic() - started
        with pytest.raises(SyncInProgress):
            mirror.clear_unreadable()
        nuke = run_cli("sync", "--nuke", "--yes", "--no-progress", env=env)

    assert library_seconds < 5  # waiting for the lock would never end: it is ours
    holder = f"a refresh (pid {os.getpid()} on "
    assert holder in str(library.value)
    assert nuke.returncode == 1, nuke.stderr
    assert holder in nuke.stderr, nuke.stderr
    assert not list(db_path.parent.glob("*.rebuild-*"))
    assert mirror.refresh().status == "success"  # released: the next one runs


# -- readers are never blocked --------------------------------------------------------------


def test_status_and_frames_are_not_blocked_by_a_writer_in_the_middle_of_a_transaction(
    sb: Sandbox, db_path: Path
) -> None:
    mirror = make_mirror(sb, db_path)
    mirror.sync()
    truth_titles = dict(zip(mirror.tests()["id"], mirror.tests()["title"], strict=True))
    env = cli_env(sb, db_path)

    with WriterLock(db_path, mode="refresh"), Store.open(db_path) as writer:
        writer.conn.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock until ROLLBACK
        writer.conn.execute("UPDATE tests SET title = 'not committed yet'")
        started = time.monotonic()
        frames = {
            "tests": mirror.tests(),
            "bugs": mirror.bugs(),
            "products": mirror.products(),
            "features": mirror.features(),
            "runs": mirror.runs(),
            "unreadable": mirror.unreadable(),
        }
        status = mirror.status()
        library_seconds = time.monotonic() - started
        status_cli, listed = in_parallel(["status"], ["problematic", "list"], env=env)
        writer.conn.execute("ROLLBACK")

    assert library_seconds < 5  # a blocked reader would wait out the 10 s busy timeout
    assert dict(zip(frames["tests"]["id"], frames["tests"]["title"], strict=True)) == truth_titles
    assert len(frames["bugs"]) == len(sb.truth().bugs)
    assert status.table_counts["tests"] == len(sb.truth().tests)
    assert status_cli.returncode == 0, status_cli.stderr
    assert "last sync:" in status_cli.stdout
    assert listed.returncode == 0 and "No unreadable records." in listed.stdout
    assert "not committed yet" not in set(mirror.tests()["title"])  # rolled back


# -- 5. interrupts --------------------------------------------------------------------------


def test_sigint_to_a_cli_refresh_exits_130_within_2s_and_the_next_refresh_completes(
    slow: Sandbox, db_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    proc = spawn(cli_env(slow, db_path))
    processes.append(proc)
    wait_for(lambda: run_is_writing(db_path), "the refresh to write")

    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pytest.fail("the interrupted refresh was still running 2 s after SIGINT")
    seconds = time.monotonic() - sent
    out, err = proc.communicate()
    slow.set_faults(latency_ms=0)

    assert_no_secret(out + err, "the output of an interrupted refresh")
    assert proc.returncode == 130, err
    assert seconds < 2
    assert "Interrupted" in err and "Traceback" not in err, err
    assert query(db_path, "SELECT mode, status FROM sync_runs") == [("refresh", "cancelled")]
    (ended_at,) = query(db_path, "SELECT ended_at FROM sync_runs")[0]
    assert ended_at is not None
    assert integrity(db_path) == "ok"
    stored = query(db_path, "SELECT count(*) FROM tests")[0][0]
    assert 0 < stored < len(slow.truth().tests), "the refresh was not interrupted mid-way"

    again = make_mirror(slow, db_path).refresh()

    assert again.status == "success"
    assert query(db_path, "SELECT status FROM sync_runs ORDER BY id") == [
        ("cancelled",),
        ("success",),
    ]
    assert_mirror_equals_truth(db_path, slow)
