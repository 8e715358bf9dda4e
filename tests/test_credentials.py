"""Customers' test-environment credentials never reach the disk (redact.py, scrub.py).

The sandbox serves realistic credentials in every test environment (tests and bugs) and
knows each one it served (``sb.served_secrets()``) and where it put them
(``Truth.without_credentials``): those are the oracles. Files are read as bytes, WAL and
free pages included, never through SQL.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

import testio_toolkit as tt
from testio_toolkit import redact
from testio_toolkit.rows import canonical_json
from testio_toolkit.sandbox import Sandbox, Truth

from .conftest import (
    assert_mirror_equals_truth,
    cli,
    cli_env,
    make_mirror,
    synced_copy,
)

MARK = redact.MARKER


# -- the rule, on hand-written records ----------------------------------------------------------


def test_environment_credentials_are_replaced_and_what_a_csm_uses_stays() -> None:
    env = {
        "id": 7001,
        "title": "Staging",
        "url": "https://preview:Gx7!pw@staging.acme.example/app",
        "username": "qa@acme.example",
        "password": "hunter2",
        "access": "VPN code 4711",
        "proxy": True,
        "allow_orders": False,
        "access_type": "basic_auth",
        "binary_app": None,
    }
    assert redact.redact({"id": 1, "test_environment": dict(env)}) == {
        "id": 1,
        "test_environment": {
            "id": 7001,
            "title": "Staging",
            "url": f"https://{MARK}@staging.acme.example/app",
            "username": MARK,
            "password": MARK,
            "access": MARK,
            "proxy": True,
            "allow_orders": False,
            "access_type": "basic_auth",
            "binary_app": None,
        },
    }


def test_secret_names_anywhere_in_a_record_and_nothing_else() -> None:
    record = {
        "id": 5,
        "title": "Keyboard navigation",
        "keyboard": "us",
        "passed_features": 3,
        "access_type": "vpn",
        "username": "tester.anna",  # outside an environment: a tester's name, not a secret
        "binary_app": {"id": 2, "install_token": "abc123", "accessToken": "t0k"},
        "custom": [{"API_KEY": "k-1"}, {"client_secret": "s-2"}, {"pwd": "p-3"}],
        "enable_key": True,  # a flag holds no secret
        "test_environment": {"password": "", "username": None, "access": "   x"},
    }
    assert redact.redact(json.loads(json.dumps(record))) == record | {
        "binary_app": {"id": 2, "install_token": MARK, "accessToken": MARK},
        "custom": [{"API_KEY": MARK}, {"client_secret": MARK}, {"pwd": MARK}],
        "test_environment": {"password": "", "username": None, "access": MARK},
    }


def test_redaction_is_deterministic_so_a_rotated_password_is_no_change() -> None:
    before = {"test_environment": {"id": 1, "password": "old-one", "url": "https://a:b@h/"}}
    after = {"test_environment": {"id": 1, "password": "new-one", "url": "https://c:d@h/"}}
    once = canonical_json(redact.redact(before))
    assert once == canonical_json(redact.redact(after))
    assert redact.redact_json(once) is once  # nothing left to do: the very same text
    clean = '{"id":3,"title":"no environment"}'
    assert redact.redact_json(clean) is clean


# -- an older mirror, as the previous version wrote it ------------------------------------------


def secrets_in(data: bytes, secrets: Iterable[str]) -> list[str]:
    return sorted(s for s in secrets if s.encode() in data)


def files_under(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


def assert_no_credentials(secrets: set[str], *roots: Path, output: str = "") -> int:
    """No served credential in any byte of any file below ``roots``, nor in ``output``."""
    scanned = 0
    for path in files_under(*roots):
        found = secrets_in(path.read_bytes(), secrets)
        assert not found, f"{path} holds {len(found)} credentials"
        scanned += 1
    assert not secrets_in(output.encode(), secrets), "the output shows a credential"
    return scanned


def make_old_mirror(path: Path, truth: Truth, *, extra_bugs: int = 0) -> dict[str, int]:
    """Turn a synced mirror into what the previous version (schema 3) would have left: every
    raw value as the service sent it, credentials included, a WAL whose frames hold them, and
    free pages that held them. ``extra_bugs`` copies of bugs make the scrub take a while.
    Returns the rows per table that hold a credential (the sandbox's own account of them)."""
    code = """
import json, os, sqlite3, sys
tests, bugs, extra = json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), int(sys.argv[4])
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint = 0")
conn.execute("PRAGMA secure_delete = OFF")   # as many builds default: freed space keeps data
conn.execute("BEGIN")
for tid, raw in tests.items():
    conn.execute("UPDATE tests SET raw = ? WHERE id = ?", (raw, int(tid)))
for bid, raw in bugs.items():
    conn.execute("UPDATE bugs SET raw = ? WHERE id = ?", (raw, int(bid)))
rows = conn.execute("SELECT * FROM bugs").fetchall()
for k in range(1, extra + 1):
    for row in rows:
        conn.execute("INSERT INTO bugs VALUES (" + ",".join("?" * len(row)) + ")",
                     (row[0] + k * 10**8,) + tuple(row[1:]))
conn.execute("CREATE TABLE scratch AS SELECT raw FROM tests")
conn.execute("DROP TABLE scratch")   # free pages that held credentials
conn.execute("DELETE FROM meta WHERE key = 'credentials_redacted'")
conn.execute("PRAGMA user_version = 3")
conn.execute("COMMIT")
os._exit(0)   # no close: the frames stay in the WAL, as after a crash or a running reader
"""
    tests = {t: canonical_json(v) for t, v in truth.tests.items()}
    bugs = {b: canonical_json(v) for b, v in truth.bugs.items()}
    (path.parent / "tests.json").write_text(json.dumps(tests))
    (path.parent / "bugs.json").write_text(json.dumps(bugs))
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(path),
            *(str(path.parent / n) for n in ("tests.json", "bugs.json")),
            str(extra_bugs),
        ],
        check=True,
    )
    (path.parent / "tests.json").unlink()
    (path.parent / "bugs.json").unlink()
    masked = truth.without_credentials()
    return {
        "tests": sum(masked.tests[t] != v for t, v in truth.tests.items()),
        "bugs": sum(masked.bugs[b] != v for b, v in truth.bugs.items()) * (1 + extra_bugs),
    }


def make_old_backup(path: Path, stamp: str) -> Path:
    """A nuke backup the previous version left: a plain copy, credentials and all."""
    backup = path.with_name(f"{path.stem}.backup-{stamp}{path.suffix}")
    source = sqlite3.connect(path)
    target = sqlite3.connect(backup)
    source.backup(target)
    target.execute("PRAGMA journal_mode = DELETE")
    source.close()
    target.close()
    return backup


@pytest.fixture
def old_mirror(sandbox: Sandbox, db_path: Path, small_template: Path) -> dict[str, int]:
    synced_copy(small_template, sandbox, db_path)
    held = make_old_mirror(db_path, sandbox.truth())
    wal = db_path.with_name("mirror.db-wal").read_bytes()
    assert secrets_in(wal, sandbox.served_secrets()), "the old mirror's WAL should hold some"
    make_old_backup(db_path, "20250101T000000Z")
    make_old_backup(db_path, "20250102T000000Z")
    return held


def scrub_runs(path: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT status, counts FROM sync_runs WHERE mode = 'scrub'").fetchall()
    finally:
        conn.close()
    return [{"status": status, **json.loads(counts)} for status, counts in rows]


# -- every mode, then every byte ---------------------------------------------------------------


def test_every_mode_on_an_old_mirror_leaves_no_credential_in_any_file_or_output(
    sandbox: Sandbox, db_path: Path, old_mirror: dict[str, int], tmp_path: Path
) -> None:
    env = cli_env(sandbox, db_path)
    output = []
    first = cli("sync", env=env)
    output.append(first.output)
    assert first.exit_code == 0, first.output
    expected = (
        f"removed credentials from {old_mirror['tests']} tests, {old_mirror['bugs']} bugs "
        "and 2 backups"
    )
    assert expected in first.output
    assert scrub_runs(db_path) == [
        {
            "status": "success",
            "scrubbed": {"tests": old_mirror["tests"], "bugs": old_mirror["bugs"]},
            "backups": 2,
        }
    ]
    for args in (
        ("sync", "--force"),
        ("sync", "--force", "--dry-run"),
        ("sync", "--nuke", "--yes"),
        ("sync", "--dry-run"),
        ("restore",),
        ("scrub",),
        ("sync",),
    ):
        done = cli(*args, env=env)
        output.append(done.output)
        assert done.exit_code == 0, (args, done.output)
        assert "removed credentials" not in done.output, "the scrub is reported once"
    assert len(scrub_runs(db_path)) == 1
    assert_mirror_equals_truth(db_path, sandbox)
    assert tt.Mirror(db_path).backups(), "the nuke and the restore keep a backup"
    frames = make_mirror(sandbox, db_path)
    shown = [frames.tests().to_csv(), frames.bugs().to_csv(), frames.changes(since="all").to_csv()]
    for table in ("tests", "bugs"):  # tt.db: the raw JSON, as SQL gives it
        shown += [row["raw"] for row in frames.db.query(f"SELECT raw FROM {table}")]
    shown.append(repr(frames.status()))
    shown = "\n".join(shown)
    output.append(shown)
    scanned = assert_no_credentials(sandbox.served_secrets(), tmp_path, output="\n".join(output))
    assert scanned >= 4  # the mirror, its backups (and WAL/SHM files while open)


def test_a_password_rotated_upstream_records_no_change_and_rewrites_no_row(
    sandbox: Sandbox, synced: tt.Mirror, db_path: Path
) -> None:
    writes = count_writes(db_path)
    sandbox.rotate_credentials()
    for run in (synced.sync, synced.refresh):
        result = run()
        assert result.status == "success"
        assert result.tests.updated == result.bugs.updated == 0
        assert result.changes.total == 0
    assert writes() == 0
    assert len(synced.changes(since="all")) == 0 or all(
        synced.changes(since="all")["kind"] != "changed"
    )
    assert_no_credentials(sandbox.served_secrets(), db_path.parent)


def test_a_no_change_refresh_after_the_scrub_rewrites_nothing(
    sandbox: Sandbox, db_path: Path, old_mirror: dict[str, int]
) -> None:
    mirror = make_mirror(sandbox, db_path)
    assert "removed credentials" in (mirror.sync().note or "")
    writes = count_writes(db_path)
    result = mirror.refresh()
    assert result.status == "success"
    assert (result.tests.added, result.tests.updated) == (0, 0)
    assert (result.bugs.added, result.bugs.updated) == (0, 0)
    assert result.changes.total == 0
    assert writes() == 0


def count_writes(path: Path) -> Callable[[], int]:
    """Triggers that count every insert and update of a mirror table from now on."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS written (n INTEGER)")
    conn.execute("DELETE FROM written")
    for table in ("products", "tests", "bugs", "features", "changes"):
        for event in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER IF NOT EXISTS count_{table}_{event.lower()} AFTER {event} "
                f"ON {table} BEGIN INSERT INTO written VALUES (1); END"
            )
    conn.commit()
    conn.close()

    def writes() -> int:
        reader = sqlite3.connect(path)
        try:
            return int(reader.execute("SELECT count(*) FROM written").fetchone()[0])
        finally:
            reader.close()

    return writes


# -- interrupted -----------------------------------------------------------------------------


def test_a_scrub_killed_at_any_moment_loses_nothing_and_the_next_run_finishes_it(
    sandbox: Sandbox, small_template: Path, tmp_path: Path
) -> None:
    db_path = tmp_path / "data" / "mirror.db"
    db_path.parent.mkdir()
    synced_copy(small_template, sandbox, db_path)
    truth = sandbox.truth()
    make_old_mirror(db_path, truth, extra_bugs=EXTRA)  # ~21,000 bugs: a scrub of seconds
    make_old_backup(db_path, "20250101T000000Z")
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    for path in db_path.parent.glob("mirror*"):
        path.rename(pristine / path.name)
    expected_ids = ids_by_table(pristine / "mirror.db")
    masked = truth.without_credentials()
    env = cli_env(sandbox, db_path)
    size = (pristine / "mirror.db").stat().st_size
    wal = db_path.with_name("mirror.db-wal")
    journal = db_path.with_name("mirror.backup-20250101T000000Z.db-journal")
    # Moments of the scrub, seen from outside by the files it writes (a busy machine makes
    # a timer land anywhere): the rewrite going into the WAL, the VACUUM writing the whole
    # file anew into it, and a backup's rewrite (its journal exists).
    moments: dict[str, Callable[[], bool]] = {
        "rewriting": lambda: wal.exists() and wal.stat().st_size > size // 4,
        "vacuuming": lambda: wal.exists() and wal.stat().st_size > size + size // 2,
        "scrubbing a backup": journal.exists,
    }
    killed_during = []
    for moment, reached in moments.items():
        for path in pristine.glob("mirror*"):
            (db_path.parent / path.name).write_bytes(path.read_bytes())
        process = subprocess.Popen(
            [sys.executable, "-m", "testio_toolkit", "scrub"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while process.poll() is None and not reached() and time.monotonic() < deadline:
            time.sleep(0.002)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            killed_during.append(moment)
        process.wait()
        result = make_mirror(sandbox, db_path).sync()
        assert result.status == "success"
        assert ids_by_table(db_path) == expected_ids, f"a row was lost (killed {moment})"
        assert_no_credentials(sandbox.served_secrets(), db_path.parent)
        stored = raw_by_id(db_path, "bugs")
        for bug_id, bug in masked.bugs.items():
            assert json.loads(stored[bug_id]) == bug
            assert json.loads(stored[bug_id + 10**8 * EXTRA]) == bug
        for path in db_path.parent.glob("mirror*"):
            path.unlink()
    assert len(killed_during) >= 2, f"the kills should land while the scrub runs: {killed_during}"


EXTRA = 30  # copies of the bugs in the killed scrub's mirror


def ids_by_table(path: Path) -> dict[str, list[int]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]
            for table in ("products", "tests", "bugs", "features")
        }
    finally:
        conn.close()


def raw_by_id(path: Path, table: str) -> dict[int, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute(f"SELECT id, raw FROM {table}").fetchall())
    finally:
        conn.close()


# -- a backup that cannot be scrubbed --------------------------------------------------------


def test_a_backup_that_cannot_be_scrubbed_is_named_with_the_command_that_scrubs_it(
    sandbox: Sandbox, db_path: Path, old_mirror: dict[str, int]
) -> None:
    damaged = db_path.with_name("mirror.backup-20240101T000000Z.db")
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    result = make_mirror(sandbox, db_path).sync()
    assert result.status == "success"  # the mirror itself is clean and synced
    assert "and 2 backups; not scrubbed: mirror.backup-20240101T000000Z.db" in (result.note or "")
    assert "testio-toolkit scrub" in (result.note or "")
    assert [run["status"] for run in scrub_runs(db_path)] == ["partial"]
    again = cli("scrub", env=cli_env(sandbox, db_path))
    assert again.exit_code == 1
    assert "not scrubbed: mirror.backup-20240101T000000Z.db" in again.output
    damaged.unlink()
    done = cli("scrub", env=cli_env(sandbox, db_path))
    assert done.exit_code == 0, done.output
    assert "No stored credentials" in done.output
    assert_no_credentials(sandbox.served_secrets(), db_path.parent)


def test_frames_and_db_of_an_old_mirror_show_no_credential_before_any_run(
    sandbox: Sandbox, db_path: Path, old_mirror: dict[str, int]
) -> None:
    mirror = make_mirror(sandbox, db_path)
    shown = [mirror.tests().to_csv(), mirror.bugs().to_csv()]
    shown += [row["raw"] for row in mirror.db.query("SELECT raw FROM bugs")]
    assert_no_credentials(sandbox.served_secrets(), db_path.parent, output="\n".join(shown))
    assert len(scrub_runs(db_path)) == 1  # the first read scrubbed it, recorded as a run
    assert mirror.tests()["environment_url"].str.contains("@").sum() > 0  # userinfo masked
