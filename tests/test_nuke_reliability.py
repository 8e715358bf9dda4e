"""Issue 11, items 1-4: a nuke beside open connections, honest run records for interrupted
nukes, one account per mirror, and restore on a full disk. Real processes and real files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testio_toolkit.account import fingerprint, new_salt, same_account
from testio_toolkit.errors import ConfigError, StoreError
from testio_toolkit.sandbox import Sandbox

from .conftest import assert_mirror_equals_truth, cli, cli_env, make_mirror
from .test_nuke import dump, dump_data, rebuild_has_tests, runs

# What tells the mirror before a nuke from the one after: two tests marked gone upstream
# (a nuke does not carry marked rows over) and the last finished run.
STATE_SQL = {
    "marked": "SELECT count(*) FROM tests WHERE deleted_upstream_at IS NOT NULL",
    "last": "SELECT mode FROM sync_runs WHERE status != 'running' ORDER BY id DESC LIMIT 1",
    "tests": "SELECT count(*) FROM tests",
    "orphans": "SELECT count(*) FROM bugs WHERE test_id NOT IN (SELECT id FROM tests)",
}


def state(conn: sqlite3.Connection) -> list[Any]:
    return [conn.execute(sql).fetchone()[0] for sql in STATE_SQL.values()]


def prepare_old_mirror(sandbox: Sandbox, db_path: Path) -> tuple[list[Any], list[Any]]:
    """A mirror with two tests marked gone; returns its state and the state after a nuke."""
    mirror = make_mirror(sandbox, db_path)
    mirror.sync()
    total = len(sandbox.truth().tests)
    sandbox.delete_tests(sorted(sandbox.truth().tests)[:2])
    mirror.refresh()
    return [2, "refresh", total, 0], [0, "nuke", total - 2, 0]


def current_state(db_path: Path) -> list[Any]:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return state(conn)
    finally:
        conn.close()


def leftovers(db_path: Path) -> list[str]:
    return sorted(
        p.name
        for p in db_path.parent.iterdir()
        if any(m in p.name for m in (".rebuild-", ".partial-", ".restore-"))
    )


def python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A second Python process running ``code`` (with ``sys.argv[1:] == args``)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- 1. a nuke beside open connections -----------------------------------------------------

READER = """
    import json, sqlite3, sys, threading, time
    from pathlib import Path
    db = Path(sys.argv[1])
    sqls = json.loads(sys.argv[2])
    def state(conn):
        return [conn.execute(sql).fetchone()[0] for sql in sqls]
    rw = sqlite3.connect(db)                                        # idle, read-write
    ro = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)  # idle, read-only
    tx = sqlite3.connect(db, isolation_level=None)
    first = [state(rw), state(ro)]
    tx.execute("BEGIN")
    first.append(state(tx))                                        # an open read transaction
    seen, slowest, stop, polls = [], 0.0, threading.Event(), [0]
    def poll():
        global slowest
        conn = sqlite3.connect(db, isolation_level=None)
        while not stop.is_set():
            started = time.monotonic()
            conn.execute("BEGIN")
            now = state(conn)
            conn.execute("COMMIT")
            slowest = max(slowest, time.monotonic() - started)
            if now not in seen:
                seen.append(now)
            polls[0] += 1
            time.sleep(0.005)
    poller = threading.Thread(target=poll)
    poller.start()
    print(json.dumps({"ready": first}), flush=True)
    sys.stdin.readline()
    in_tx = state(tx)                                              # still the old snapshot
    tx.execute("COMMIT")
    after = [state(tx), state(rw), state(ro)]
    # The poller's last read must start after the nuke ended: a busy machine may not have
    # scheduled it since, so wait for two more of its reads before stopping it.
    target = polls[0] + 2
    while polls[0] < target:
        time.sleep(0.005)
    stop.set()
    poller.join()
    print(json.dumps({"in_tx": in_tx, "after": after, "seen": seen, "slowest": slowest}))
"""


def test_a_nuke_succeeds_beside_idle_connections_and_a_read_transaction_of_another_process(
    sandbox: Sandbox, db_path: Path
) -> None:
    old, new = prepare_old_mirror(sandbox, db_path)
    reader = python(READER, str(db_path), json.dumps(list(STATE_SQL.values())))
    try:
        assert reader.stdout is not None and reader.stdin is not None
        ready = json.loads(reader.stdout.readline())
        assert ready["ready"] == [old, old, old]

        nuked = cli("sync", "--nuke", "--yes", "--no-progress", env=cli_env(sandbox, db_path))

        reader.stdin.write("check\n")
        reader.stdin.flush()
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert nuked.exit_code == 0, nuked.stderr
    report = json.loads(out.splitlines()[-1])
    assert report["in_tx"] == old  # the open read transaction kept its snapshot
    assert report["after"] == [new, new, new]  # every connection sees the new mirror
    assert report["seen"][0] == old and report["seen"][-1] == new
    assert all(seen in (old, new) for seen in report["seen"]), report["seen"]  # never a mix
    assert report["slowest"] < 2.0  # never blocked (a busy wait would last 5 s)
    assert current_state(db_path) == new
    assert_mirror_equals_truth(db_path, sandbox)
    assert leftovers(db_path) == []


KILLED_SWAP = """
    import os, signal, sys
    import testio_toolkit as tt
    from testio_toolkit import store
    db, url, token, phase = sys.argv[1:5]
    real_copy, copies = store.copy_pages, []

    def copy(src, dst):
        copies.append(1)
        into_live = len(copies) == 2  # the first copy is the backup, the second the swap
        if (phase == "backup" and not into_live) or (phase.startswith("live") and into_live):
            def progress(status, remaining, total):
                done = total - remaining
                if done >= (1 if phase != "live-middle" else total // 2):
                    os.kill(os.getpid(), signal.SIGKILL)
            src.backup(dst, pages=1, progress=progress)
        else:
            real_copy(src, dst)
        if phase == "after" and into_live:
            os.kill(os.getpid(), signal.SIGKILL)

    store.copy_pages = copy
    tt.Mirror(db, token=token, base_url=url, progress=False).nuke(confirm=True)
    print("not killed")
"""


@pytest.mark.parametrize("phase", ["backup", "live-first", "live-middle", "after"])
def test_a_kill_9_at_any_moment_of_the_swap_leaves_the_old_or_the_new_mirror_whole(
    sandbox: Sandbox, db_path: Path, phase: str
) -> None:
    old, new = prepare_old_mirror(sandbox, db_path)
    proc = python(KILLED_SWAP, str(db_path), sandbox.url, sandbox.token, phase)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err

    assert current_state(db_path) == (new if phase == "after" else old)
    if phase == "backup":
        assert any(".partial-" in name for name in leftovers(db_path))

    assert cli("sync", "--no-progress", env=cli_env(sandbox, db_path)).exit_code == 0
    assert leftovers(db_path) == []
    assert current_state(db_path)[:1] == (new if phase == "after" else old)[:1]
    killed_nuke = [status for mode, status in runs(db_path) if mode == "nuke"]
    # Killed before the swap: the row left running is marked failed by the next run.
    assert killed_nuke == (["success"] if phase == "after" else ["failed"])


# -- 2. an interrupted nuke is recorded -----------------------------------------------------


@pytest.mark.parametrize("per_product", [False, True], ids=["full", "per-product"])
def test_sigint_during_a_nuke_exits_130_and_records_a_cancelled_nuke_in_the_mirror(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str], per_product: bool
) -> None:
    env = synced_env
    before = dump_data(db_path)
    target = ["--product", str(sorted(sandbox.truth().products)[0])] if per_product else []
    sandbox.set_faults(latency_ms=300)  # the rebuild outlasts the wait for its first tests
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testio_toolkit",
            "sync",
            "--nuke",
            "--yes",
            "--no-progress",
            *target,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not rebuild_has_tests(db_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the nuke ended before it could be interrupted"

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    sandbox.clear_faults()

    assert proc.returncode == 130, err
    assert "Interrupted" in err and "Traceback" not in err, err
    assert runs(db_path) == [("sync", "success"), ("nuke", "cancelled")]
    assert dump_data(db_path) == before
    assert leftovers(db_path) == []
    again = cli("sync", "--no-progress", env=env)
    assert again.exit_code == 0, again.stderr
    assert runs(db_path)[-2:] == [("nuke", "cancelled"), ("sync", "success")]


INTERRUPTED_AFTER_SWAP = """
    import os, signal, sys, time
    from testio_toolkit import backups, store
    from testio_toolkit.cli import cli
    per_product = sys.argv[1] == "1"

    def then_interrupt(real):
        def wrapper(*args, **kwargs):
            done = real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, just after the swap
            time.sleep(1.0)  # the loop is busy: the cancellation lands at its next await
            return done
        return wrapper

    if per_product:
        store.Store.replace_products = then_interrupt(store.Store.replace_products)
    else:
        backups.swap_in = then_interrupt(backups.swap_in)
    cli(sys.argv[2:])
"""


@pytest.mark.parametrize("per_product", [False, True], ids=["full", "per-product"])
def test_an_interrupt_after_the_swap_reports_that_the_nuke_completed(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str], per_product: bool
) -> None:
    env = synced_env
    target = ["--product", str(sorted(sandbox.truth().products)[0])] if per_product else []
    args = ["sync", "--nuke", "--yes", "--no-progress", *target]

    proc = python(INTERRUPTED_AFTER_SWAP, "1" if per_product else "0", *args, env=env)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert "nuke success" in out, out
    assert "Interrupted" not in err, err
    assert runs(db_path) == [("sync", "success"), ("nuke", "success")]
    assert list(db_path.parent.glob("mirror.backup-*.db"))
    assert_mirror_equals_truth(db_path, sandbox)


# -- 3. one account per mirror --------------------------------------------------------------


def point_at(db_path: Path, sandbox: Sandbox) -> None:
    """Make the mirror believe it came from ``sandbox``'s URL: the same host, as for two
    accounts of one service."""
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'source'", (sandbox.url,))
    conn.commit()
    conn.close()


def meta(db_path: Path) -> dict[str, str]:
    conn = sqlite3.connect(db_path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta"))
    finally:
        conn.close()


@pytest.fixture
def other_account() -> Iterator[Sandbox]:
    with Sandbox(preset="small", seed=1, token="other-account-token-7d41") as sb:
        yield sb


@pytest.mark.parametrize("legacy", [False, True], ids=["fingerprinted", "made-before-fingerprints"])
def test_another_account_at_the_same_url_is_refused_before_anything_is_written(
    sandbox: Sandbox, other_account: Sandbox, db_path: Path, legacy: bool
) -> None:
    make_mirror(sandbox, db_path).sync()
    assert not set(sandbox.truth().products) & set(other_account.truth().products)
    point_at(db_path, other_account)
    if legacy:  # a mirror written before the account was fingerprinted: its products tell
        conn = sqlite3.connect(db_path)
        conn.execute("DELETE FROM meta WHERE key LIKE 'account_%'")
        conn.commit()
        conn.close()
    before = dump(db_path)
    intruder = make_mirror(other_account, db_path)

    done = cli("sync", "--force", "--no-progress", env=cli_env(other_account, db_path))
    for attempt in (intruder.sync, intruder.refresh, lambda: intruder.nuke(confirm=True)):
        with pytest.raises(ConfigError, match="another account"):
            attempt()
    with pytest.raises(ConfigError, match="another account"):
        intruder.nuke(products=[sorted(other_account.truth().products)[0]], confirm=True)

    assert done.exit_code == 2, done.stderr
    for hint in ("another account", "nothing was written", "TESTIO_DB_PATH", "--db", "Mirror("):
        assert hint in done.stderr, done.stderr
    assert other_account.token not in done.stderr
    assert dump(db_path) == before
    assert leftovers(db_path) == [] and not list(db_path.parent.glob("*.backup-*"))


def test_a_rotated_token_for_the_same_account_is_accepted_and_remembered(
    sandbox: Sandbox, db_path: Path
) -> None:
    make_mirror(sandbox, db_path).sync()
    first = meta(db_path)
    with Sandbox(preset="small", seed=0, token="rotated-token-93be") as rotated:
        point_at(db_path, rotated)

        result = make_mirror(rotated, db_path).refresh()

    assert result.status == "success"
    now = meta(db_path)
    assert now["account_salt"] == first["account_salt"]
    assert now["account_token"] != first["account_token"]  # updated to the new token
    assert json.loads(now["account_products"]) == sorted(sandbox.truth().products)
    data = db_path.read_bytes()
    for token in (sandbox.token, "rotated-token-93be"):
        assert token.encode() not in data  # a fingerprint, never the token


def test_the_account_rule() -> None:
    salt = new_salt()
    token = fingerprint("token-a", salt)
    assert token == fingerprint("token-a", salt) != fingerprint("token-b", salt)
    assert fingerprint("token-a", new_salt()) != token  # salted per mirror
    assert "token-a" not in token
    assert same_account(token, [1, 2, 3], token, [7, 8])  # same token: same account
    assert same_account(token, [1, 2, 3], "other", [1, 2, 3, 4])  # rotated: same products
    assert same_account(token, [1, 2, 3, 4], "other", [1, 2])  # a token that sees fewer
    assert same_account(None, [], "other", [9])  # nothing known yet
    assert not same_account(token, [1, 2, 3], "other", [7, 8, 9])  # disjoint
    assert not same_account(token, [1, 2, 3, 4, 5, 6], "other", [6, 7, 8, 9, 10, 11])
    assert not same_account(None, [1, 2, 3], "other", [])


# -- 4. restore on a full disk, and leftovers -----------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MB tmpfs (as root); skipped, with the reason, where it cannot be mounted."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip() or made.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until only ``leave`` bytes are free."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with (disk / "filler").open("wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))


def nuked_mirror_on(disk: Path, sandbox: Sandbox) -> Path:
    db = disk / "mirror.db"
    mirror = make_mirror(sandbox, db)
    mirror.sync()
    mirror.nuke(confirm=True)
    assert len(mirror.backups()) == 1
    return db


def test_restore_on_a_full_disk_names_the_file_and_the_space_needed_and_leaves_nothing(
    sandbox: Sandbox, small_disk: Path
) -> None:
    db = nuked_mirror_on(small_disk, sandbox)
    before = dump(db)
    fill(small_disk, leave=db.stat().st_size // 2)

    result = cli("restore", env=cli_env(sandbox, db))

    assert result.exit_code == 1
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr, result.stderr
    assert "not enough free space" in result.stderr
    assert str(db) in result.stderr and "MB free" in result.stderr
    assert leftovers(db) == []
    assert dump(db) == before


def test_a_disk_that_fills_up_during_the_restore_is_reported_and_leaves_nothing(
    sandbox: Sandbox, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = nuked_mirror_on(small_disk, sandbox)
    before = dump(db)
    fill(small_disk, leave=200_000)
    # The free-space check is fooled, so the copy itself meets ENOSPC / SQLITE_FULL.
    from testio_toolkit import backups

    roomy = backups.shutil.disk_usage(small_disk)._replace(free=10**12)
    monkeypatch.setattr(backups.shutil, "disk_usage", lambda path: roomy)

    with pytest.raises(StoreError, match="disk filled up") as failed:
        make_mirror(sandbox, db).restore()

    assert str(db) in str(failed.value) and "MB free" in str(failed.value)
    assert leftovers(db) == []
    assert dump(db) == before


KILLED_RESTORE = """
    import sys, time
    import testio_toolkit as tt
    from testio_toolkit import store

    def slow_copy(src, dst):
        def progress(status, remaining, total):
            print("copying", flush=True)
            time.sleep(0.05)
        src.backup(dst, pages=1, progress=progress)

    store.copy_pages = slow_copy
    tt.Mirror(sys.argv[1], token=sys.argv[3], base_url=sys.argv[2], progress=False).restore()
"""


def test_a_restore_killed_while_copying_leaves_a_file_the_next_run_removes(
    sandbox: Sandbox, db_path: Path
) -> None:
    old, new = prepare_old_mirror(sandbox, db_path)
    make_mirror(sandbox, db_path).nuke(confirm=True)
    stale = db_path.with_name(f"{db_path.name}.restore-20250101T000000000000Z")
    stale.write_bytes(b"left by an older version's restore")
    proc = python(KILLED_RESTORE, str(db_path), sandbox.url, sandbox.token)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "copying", proc.communicate()
    proc.kill()
    proc.wait(timeout=10)
    assert any(".partial-" in name for name in leftovers(db_path))
    assert current_state(db_path) == new

    again = cli("sync", "--no-progress", env=cli_env(sandbox, db_path))

    assert again.exit_code == 0, again.stderr
    assert leftovers(db_path) == []
    make_mirror(sandbox, db_path).restore()  # the backup is whole: it restores
    assert current_state(db_path)[:2] == old[:2]
