"""nuke() and `sync --nuke`: confirmed, atomic, reversible rebuilds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import testio_toolkit as tt
from testio_toolkit.backups import NukePlan
from testio_toolkit.errors import RebuildFailed, SyncInProgress
from testio_toolkit.sandbox import Sandbox

from .conftest import assert_mirror_equals_truth, cli, digest, make_mirror


def dump(path: Path) -> dict[str, Any]:
    """Every table's schema and rows, to compare two databases by content."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            table: (
                [col[1] for col in conn.execute(f"PRAGMA table_info({table})")],
                sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr),
            )
            for table in tables
        }
    finally:
        conn.close()


def dump_data(path: Path) -> dict[str, Any]:
    """``dump`` without the run history, which every run (a failed nuke too) adds to."""
    return {k: v for k, v in dump(path).items() if k not in ("sync_runs", "sqlite_sequence")}


def runs(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT mode, status FROM sync_runs ORDER BY id").fetchall()
    finally:
        conn.close()


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [col[1] for col in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def add_note(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE tests ADD COLUMN csm_note TEXT")
    conn.execute("UPDATE tests SET csm_note = 'keep me'")
    conn.execute("CREATE TABLE my_tags (test_id INTEGER, tag TEXT)")
    conn.execute("INSERT INTO my_tags VALUES (1, 'vip')")
    conn.commit()
    conn.close()


def test_nuke_yes_rebuilds_from_scratch_keeps_a_backup_and_restore_brings_it_back(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    add_note(db_path)
    sandbox.delete_tests(sorted(sandbox.truth().tests)[:2])
    assert cli("sync", "--force", "--no-progress", env=env).exit_code == 0
    before = dump(db_path)

    nuked = cli("sync", "--nuke", "--yes", "--no-progress", env=env)

    assert nuked.exit_code == 0, nuked.stderr
    assert "csm_note" not in columns(db_path, "tests")
    assert "my_tags" not in dump(db_path)
    conn = sqlite3.connect(db_path)
    marked = conn.execute(
        "SELECT count(*) FROM tests WHERE deleted_upstream_at IS NOT NULL"
    ).fetchone()[0]
    history = conn.execute("SELECT mode FROM sync_runs ORDER BY id").fetchall()
    conn.close()
    assert marked == 0
    assert history == [("sync",), ("refresh",), ("nuke",)]
    assert_mirror_equals_truth(db_path, sandbox)
    backups = sorted(db_path.parent.glob("mirror.backup-*.db"))
    assert len(backups) == 1
    assert dump(backups[0]) == before
    assert "Previous database kept as" in nuked.stdout

    restored = cli("restore", env=env)

    assert restored.exit_code == 0, restored.stderr
    assert dump(db_path) == before


def test_force_and_nuke_together_is_a_usage_error_that_touches_nothing(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    before = digest(db_path)

    result = cli("sync", "--force", "--nuke", "--yes", env=env)

    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert "--nuke" in result.stderr
    assert digest(db_path) == before


def test_nuke_without_terminal_or_yes_refuses_and_changes_nothing(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    before = digest(db_path)
    sandbox.reset_counters()

    result = cli("sync", "--nuke", env=env)

    assert result.exit_code == 1
    assert "--yes" in result.stderr
    assert digest(db_path) == before
    assert not list(db_path.parent.glob("*.backup-*"))


def test_nuke_plan_shows_what_goes_and_changes_nothing(synced: tt.Mirror, db_path: Path) -> None:
    mirror = synced
    before = digest(db_path)

    plan = mirror.nuke_plan()

    assert isinstance(plan, NukePlan)
    assert plan.table_counts["tests"] == len(mirror.tests())
    assert str(db_path) in repr(plan)
    assert "backup" in "\n".join(plan.lines()).lower()
    assert digest(db_path) == before


def test_nuke_without_confirm_raises_with_the_plan_and_touches_nothing(
    mirror: tt.Mirror, db_path: Path
) -> None:
    with pytest.raises(tt.ConfirmationRequired):
        mirror.nuke()
    assert list(db_path.parent.iterdir()) == []  # no database, no lock file: nothing at all

    mirror.sync()
    mirror.nuke_plan()  # a reader leaves the -wal and -shm files a WAL database needs
    lock = db_path.with_name(db_path.name + ".lock")
    names = sorted(p.name for p in db_path.parent.iterdir())
    before = (digest(db_path), db_path.stat().st_mtime_ns, lock.stat().st_mtime_ns)
    runs_before = runs(db_path)

    for unconfirmed in ({}, {"confirm": False}, {"confirm": "yes"}):
        with pytest.raises(tt.ConfirmationRequired) as caught:
            mirror.nuke(**unconfirmed)  # type: ignore[arg-type]

        assert isinstance(caught.value.plan, NukePlan)
        assert caught.value.plan.table_counts == mirror.nuke_plan().table_counts
        assert "confirm=True" in str(caught.value) and "--yes" in str(caught.value)
        assert str(db_path) in str(caught.value)
    # No rebuild, no backup, no lock taken, no run row, the file byte for byte as it was.
    assert sorted(p.name for p in db_path.parent.iterdir()) == names
    assert (digest(db_path), db_path.stat().st_mtime_ns, lock.stat().st_mtime_ns) == before
    assert runs(db_path) == runs_before


def test_dry_run_nuke_shows_the_plan_only(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    before = digest(db_path)

    result = cli("sync", "--nuke", "--dry-run", env=env)

    assert result.exit_code == 0
    assert "Thrown away" in result.stdout
    assert digest(db_path) == before


def test_a_failing_rebuild_leaves_the_database_as_it_was_and_records_the_run(
    synced: tt.Mirror, sandbox: Sandbox, db_path: Path
) -> None:
    mirror = synced
    before, inode = dump_data(db_path), db_path.stat().st_ino
    sandbox.set_faults(fail_after=8)  # every request after the first 8 answers 503

    with pytest.raises(RebuildFailed, match="left exactly as it was"):
        mirror.nuke(confirm=True)

    assert dump_data(db_path) == before
    assert runs(db_path)[-1][0] == "nuke" and runs(db_path)[-1][1] in ("failed", "partial")
    assert db_path.stat().st_ino == inode
    assert not list(db_path.parent.glob("*.rebuild-*"))
    assert not list(db_path.parent.glob("*.backup-*"))


def rebuild_has_tests(db_path: Path) -> bool:
    """Whether a nuke's rebuild file beside ``db_path`` holds some tests already."""
    for build in db_path.parent.glob(f"{db_path.name}.rebuild-*"):
        if build.name.endswith(("-wal", "-shm", "-journal")):
            continue
        try:
            conn = sqlite3.connect(f"{build.resolve().as_uri()}?mode=ro", uri=True)
            try:
                if conn.execute("SELECT count(*) FROM tests").fetchone()[0] > 0:
                    return True
            finally:
                conn.close()
        except sqlite3.Error:
            pass  # not created yet, or no schema yet
    return False


def test_a_nuke_killed_part_way_leaves_the_database_intact(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    before, inode = dump_data(db_path), db_path.stat().st_ino
    sandbox.set_faults(latency_ms=150)
    proc = subprocess.Popen(
        [sys.executable, "-m", "testio_toolkit", "sync", "--nuke", "--yes", "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not rebuild_has_tests(db_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the nuke ended before it could be killed mid-rebuild"
    proc.kill()
    proc.wait(timeout=10)
    sandbox.clear_faults()

    assert dump_data(db_path) == before
    assert db_path.stat().st_ino == inode
    assert runs(db_path) == [("sync", "success"), ("nuke", "running")]
    # The next run cleans the half-built file up, records the killed nuke, and proceeds.
    assert cli("sync", "--no-progress", env=env).exit_code == 0
    assert not list(db_path.parent.glob("*.rebuild-*"))
    assert runs(db_path) == [("sync", "success"), ("nuke", "failed"), ("sync", "success")]


def test_per_product_nuke_rebuilds_that_product_only(
    synced: tt.Mirror, sandbox: Sandbox, db_path: Path
) -> None:
    mirror = synced
    add_note(db_path)
    products = sorted(sandbox.truth().products)
    target, others = products[0], products[1:]
    gone = next(t for t, p in sandbox.truth().product_of_test.items() if p == target)
    sandbox.delete_tests([gone])
    mirror.refresh()  # marks `gone`
    before = dump(db_path)

    result = mirror.nuke(products=[target], confirm=True)

    assert isinstance(result, tt.SyncResult) and result.ok
    after = dump(db_path)
    assert after["my_tags"] == before["my_tags"]
    conn = sqlite3.connect(db_path)
    notes = dict(conn.execute("SELECT product_id, count(csm_note) FROM tests GROUP BY product_id"))
    still_there = conn.execute("SELECT count(*) FROM tests WHERE id = ?", (gone,)).fetchone()[0]
    conn.close()
    assert notes[target] == 0  # rebuilt: local columns of its rows start empty
    for product_id in others:
        assert notes[product_id] > 0
    assert still_there == 0
    old = sqlite3.connect(result.backup_path or "")
    assert old.execute("SELECT count(*) FROM tests WHERE id = ?", (gone,)).fetchone()[0] == 1
    old.close()
    assert_mirror_equals_truth(db_path, sandbox)
    for table in ("tests", "bugs"):
        rows_before = [r for r in before[table][1] if r[2 if table == "bugs" else 1] != target]
        rows_after = [r for r in after[table][1] if r[2 if table == "bugs" else 1] != target]
        assert rows_after == rows_before


def test_a_second_process_cannot_sync_while_a_nuke_runs(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    sandbox.set_faults(latency_ms=1500)  # the nuke outlasts the second process's start-up
    proc = subprocess.Popen(
        [sys.executable, "-m", "testio_toolkit", "sync", "--nuke", "--yes", "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not list(db_path.parent.glob("*.rebuild-*")) and time.monotonic() < deadline:
            time.sleep(0.05)

        second = cli("sync", "--no-progress", env=env)

        assert second.exit_code == 1
        assert "a sync is running" in second.stderr
        assert "nuke" in second.stderr
        with pytest.raises(SyncInProgress):
            make_mirror(sandbox, db_path).sync()
    finally:
        sandbox.clear_faults()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_restore_without_backup_is_a_clear_error(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env

    result = cli("restore", env=env)

    assert result.exit_code == 1
    assert "no backup" in result.stderr


def test_readers_see_the_new_database_after_a_nuke(synced: tt.Mirror, sandbox: Sandbox) -> None:
    mirror = synced
    gone = sorted(sandbox.truth().tests)[:3]
    sandbox.delete_tests(gone)
    mirror.refresh()
    assert set(gone) <= set(mirror.tests(include_deleted=True)["id"])

    mirror.nuke(confirm=True)

    assert not set(gone) & set(mirror.tests(include_deleted=True)["id"])


def test_keep_backups_keeps_that_many_of_the_newest(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    for _ in range(3):
        result = cli("--keep-backups", "2", "sync", "--nuke", "--yes", "--no-progress", env=env)
        assert result.exit_code == 0, result.stderr

    assert len(list(db_path.parent.glob("mirror.backup-*.db"))) == 2
