"""`sync --all` / `tt.sync_all()`: every account, a few at a time; one failing stops no other."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import testio_toolkit as tt
from testio_toolkit import accounts
from testio_toolkit.sandbox import CUSTOMERS, Customer, SandboxCustomers
from testio_toolkit.sandbox.customers import TINY

from .conftest import FAST, assert_mirror_equals_truth, cli

FIVE = (*CUSTOMERS, Customer("hooli", TINY, 14), Customer("umbrella", TINY, 15))


@pytest.fixture
def five(keyring_dir: Path) -> Iterator[SandboxCustomers]:
    with SandboxCustomers(FIVE) as customers:
        for name, sb in customers.sandboxes.items():
            accounts.add(name, sb.token, url=sb.url)
        yield customers


def hold_lock(db_path: Path) -> subprocess.Popen[str]:
    """Another process holding the account's writer lock (as a running sync does)."""
    script = (
        "import sys; from pathlib import Path; from testio_toolkit.lock import WriterLock\n"
        f"with WriterLock(Path({str(db_path)!r}), mode='sync'):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_three_failures_of_three_kinds_stop_no_other_account(
    five: SandboxCustomers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTIO_TOKEN_GLOBEX", "a-wrong-token")  # a refused token
    five["initech"].stop()  # its service is down
    accounts.default_db_path("hooli").parent.mkdir(parents=True, exist_ok=True)
    holder = hold_lock(accounts.default_db_path("hooli"))  # another process is writing
    try:
        result = cli("sync", "--all", "--at-once", "2")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)

    assert result.exit_code == 1
    table = result.stdout
    rows = {line.split()[0]: line for line in table.splitlines()[2:] if line.strip()}
    assert "success" in rows["acme"] and "success" in rows["umbrella"]
    assert "failed" in rows["globex"] and "AuthenticationError" in rows["globex"]
    assert "failed" in rows["initech"] and "ServiceError" in rows["initech"]
    assert "failed" in rows["hooli"] and "SyncInProgress" in rows["hooli"]
    assert "3 accounts succeeded" not in table and "2 of 5 accounts succeeded" in table
    assert "not done: globex, hooli, initech" in table
    for name in ("globex", "initech", "hooli"):
        assert f"  {name} failed: " in result.stderr  # named with why, on stderr too
    # Progress per account, as each started and ended.
    for name in five.names():
        assert f"{name}: started" in result.stderr
    # Nothing mixed between mirrors: each holds its own account's data, exactly.
    for name in ("acme", "umbrella"):
        assert_mirror_equals_truth(accounts.default_db_path(name), five[name])
    for name in ("globex", "initech"):
        assert not accounts.default_db_path(name).exists()  # refused before any write
    assert not accounts.default_db_path("hooli").exists()


def test_sync_all_from_the_library_then_refresh_all(five: SandboxCustomers) -> None:
    seen: list[str] = []

    result = tt.sync_all(client_options=FAST, at_once=3, on_done=lambda o: seen.append(o.account))

    assert result.ok and sorted(seen) == sorted(five.names())
    assert [o.account for o in result.outcomes] == sorted(five.names())  # name order
    for name in five.names():
        assert_mirror_equals_truth(accounts.default_db_path(name), five[name])
        outcome = next(o for o in result.outcomes if o.account == name)
        assert outcome.result is not None
        assert outcome.result.tests.added == len(five[name].truth().tests)
    html = result._repr_html_()
    assert "5 of 5 accounts succeeded" in html and "<table>" in html and "umbrella" in html

    # refresh --all: nothing changed upstream but one test -> only that account records it.
    test_id = next(iter(five["acme"].truth().tests))
    five["acme"].update_test(test_id, title="Renamed upstream")
    refreshed = cli("sync", "--all", "--force")
    assert refreshed.exit_code == 0, refreshed.stderr
    assert "refresh --all: 5 of 5 accounts succeeded" in refreshed.stdout
    for name in five.names():
        assert_mirror_equals_truth(accounts.default_db_path(name), five[name])


def test_sync_all_refuses_what_makes_no_sense_for_every_account(five: SandboxCustomers) -> None:
    for args, message in [
        (["--nuke"], "--all does not go with --nuke"),
        (["--product", "12"], "--all does not go with --product"),
        (["--account", "acme"], "--all does not go with --db, --base-url or --account"),
    ]:
        result = cli("sync", "--all", *args)
        assert result.exit_code == 2 and message in result.stderr
    assert not any(accounts.default_db_path(name).exists() for name in five.names())
    bad = cli("sync", "--at-once", "2")
    assert bad.exit_code == 2 and "--at-once only goes with --all" in bad.stderr
