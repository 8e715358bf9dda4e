"""Local storage the toolkit cannot or must not write: read-only mounts and files, and files
that are not a mirror. Reading works where it can; a refused run creates nothing.

Root ignores permission bits, so read-only storage here is real: a tmpfs mounted and then
remounted read-only, or a file bind-mounted read-only onto itself. Where mounting is not
allowed, those tests are skipped with the reason.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import testio_toolkit as tt
from testio_toolkit.errors import StoreError, SyncInProgress
from testio_toolkit.sandbox import Sandbox

from .conftest import cli, cli_env, make_mirror
from .test_resilience import BAD_STATES, bad_database, other_program


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A small tmpfs folder, and a function that remounts it read-only."""
    folder = tmp_path / "mnt"
    folder.mkdir()
    done = _mount("-t", "tmpfs", "-o", "size=32m", "tmpfs", str(folder))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")

    def freeze() -> None:
        remounted = _mount("-o", "remount,ro", str(folder))
        assert remounted.returncode == 0, remounted.stderr

    try:
        yield folder, freeze
    finally:
        _umount(folder)


@pytest.fixture
def read_only_file(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """A function that makes one file read-only (bind-mounted read-only onto itself)."""
    frozen: list[Path] = []

    def freeze(path: Path) -> None:
        bound = _mount("--bind", str(path), str(path))
        if bound.returncode != 0:
            pytest.skip(f"cannot bind-mount a file here ({bound.stderr.strip()})")
        frozen.append(path)
        remounted = _mount("-o", "remount,bind,ro", str(path))
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount a bind mount read-only ({remounted.stderr.strip()})")

    try:
        yield freeze
    finally:
        for path in frozen:
            _umount(path)


def frames(mirror: tt.Mirror) -> dict[str, int]:
    db = mirror.db
    try:
        ad_hoc = len(list(db.query("SELECT id FROM tests")))
    finally:
        db.close()
    return {
        "products": len(mirror.products()),
        "tests": len(mirror.tests()),
        "bugs": len(mirror.bugs()),
        "features": len(mirror.features()),
        "runs": len(mirror.runs()),
        "unreadable": len(mirror.unreadable()),
        "db": ad_hoc,
    }


# -- 5. read-only storage ------------------------------------------------------------------


def test_a_mirror_on_a_read_only_mount_reads_and_says_it_cannot_be_updated(
    sandbox: Sandbox, small_mount: tuple[Path, Callable[[], None]]
) -> None:
    folder, freeze = small_mount
    mirror = make_mirror(sandbox, folder / "m.db")
    mirror.sync()
    expected = frames(mirror)
    freeze()
    before = listing(folder)

    assert frames(mirror) == expected
    status = mirror.status()
    assert status.table_counts["tests"] == expected["tests"]
    assert status.cannot_update and "read-only" in status.cannot_update
    assert any(line.startswith("updates:  not possible here") for line in status.lines())
    tt.configure(mirror.path, token=sandbox.token, base_url=sandbox.url, progress=False)
    assert tt.status().table_counts == status.table_counts
    assert len(tt.tests()) == expected["tests"]
    shown = cli("status", env=cli_env(sandbox, mirror.path))
    assert shown.exit_code == 0, shown.stderr
    assert "not possible here" in shown.stdout
    assert f"{expected['tests']} tests" in shown.stdout
    assert listing(folder) == before


@pytest.mark.parametrize("operation", ["sync", "refresh", "nuke", "clear"])
def test_updating_a_mirror_on_a_read_only_mount_fails_before_any_request(
    sandbox: Sandbox, small_mount: tuple[Path, Callable[[], None]], operation: str
) -> None:
    folder, freeze = small_mount
    mirror = make_mirror(sandbox, folder / "m.db")
    mirror.sync()
    freeze()
    before = listing(folder)
    sandbox.reset_counters()

    with pytest.raises(StoreError) as error:
        run(mirror, operation)

    assert not isinstance(error.value, SyncInProgress)
    assert "read-only" in str(error.value) and str(mirror.path) in str(error.value)
    assert sandbox.requests_total == 0
    assert listing(folder) == before


@pytest.mark.parametrize("operation", ["sync", "refresh", "nuke", "clear"])
def test_updating_a_read_only_file_fails_before_any_request_and_creates_nothing(
    sandbox: Sandbox, tmp_path: Path, read_only_file: Callable[[Path], None], operation: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    mirror = make_mirror(sandbox, folder / "m.db")
    mirror.sync()
    for side in folder.iterdir():  # the lock file the sync left
        if side != mirror.path:
            side.unlink()
    expected = frames(mirror)
    read_only_file(mirror.path)
    before = listing(folder)  # the reader's -wal and -shm, perhaps; no lock file
    sandbox.reset_counters()

    with pytest.raises(StoreError) as error:
        run(mirror, operation)

    assert "read-only" in str(error.value) and str(mirror.path) in str(error.value)
    assert sandbox.requests_total == 0
    assert listing(folder) == before
    assert "m.db.lock" not in before
    assert frames(mirror) == expected  # and reading still works
    assert mirror.status().cannot_update is not None


def run(mirror: tt.Mirror, operation: str) -> object:
    calls: dict[str, Callable[[], object]] = {
        "sync": mirror.sync,
        "refresh": mirror.refresh,
        "nuke": lambda: mirror.nuke(confirm=True),
        "clear": mirror.clear_unreadable,
        "status": mirror.status,
        "frames": mirror.tests,
        "retry": mirror.retry_unreadable,
    }
    return calls[operation]()


# -- 6. a refused run creates nothing --------------------------------------------------------


def other_program_in_wal_mode(good: bytes, path: Path) -> None:
    other_program(good, path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


REFUSED = {
    "not-sqlite": BAD_STATES["not-sqlite"],
    "other-program": BAD_STATES["other-program"],
    "other-program-wal": other_program_in_wal_mode,
    "newer-schema": BAD_STATES["newer-schema"],
}


@pytest.mark.parametrize("state", sorted(REFUSED))
@pytest.mark.parametrize(
    "operation", ["sync", "refresh", "nuke", "clear", "status", "frames", "retry"]
)
def test_a_run_refused_because_the_file_is_not_a_mirror_creates_nothing_beside_it(
    steady: Sandbox, good_bytes: bytes, tmp_path: Path, state: str, operation: str
) -> None:
    folder = tmp_path / "data"
    path = bad_database(state, good_bytes, folder, REFUSED)
    before = path.read_bytes()
    mirror = make_mirror(steady, path)

    with pytest.raises(StoreError) as error:
        run(mirror, operation)

    assert str(path) in str(error.value)
    assert listing(folder) == ["mirror.db"]
    assert path.read_bytes() == before


def test_a_refused_cli_run_creates_nothing_beside_the_file(
    steady: Sandbox, good_bytes: bytes, tmp_path: Path
) -> None:
    path = bad_database("other-program", good_bytes, tmp_path / "data")
    env = cli_env(steady, path)

    for args in (["sync", "--no-progress"], ["sync", "--nuke", "--yes"], ["status"]):
        done = cli(*args, env=env)
        assert done.exit_code == 1, done.stderr
        assert "another program" in done.stderr
        assert listing(path.parent) == ["mirror.db"], args
