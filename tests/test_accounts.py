"""Named accounts: settings in accounts.toml, tokens in a real (file-backed) keyring."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.core
import pytest

import testio_toolkit as tt
from testio_toolkit import accounts, api
from testio_toolkit.sandbox import SandboxCustomers

from .conftest import assert_mirror_equals_truth, cli, make_mirror


@pytest.fixture
def customers() -> Iterator[SandboxCustomers]:
    with SandboxCustomers() as started:
        yield started


def add(name: str, customers: SandboxCustomers, *extra: str) -> str:
    sb = customers[name]
    result = cli("account", "add", name, "--url", sb.url, *extra, input=sb.token + "\n")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def data_dir() -> Path:
    return Path(os.environ["XDG_DATA_HOME"])


def config_dir() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"])


def files_holding(token: str) -> list[Path]:
    """Every file under the config and data folders whose bytes contain the token."""
    found = []
    for root in (config_dir(), data_dir()):
        for path in sorted(root.rglob("*")):
            if path.is_file() and token.encode() in path.read_bytes():
                found.append(path)
    return found


def test_add_checks_the_token_shows_the_products_and_keeps_the_token_in_the_keyring(
    keyring_dir: Path, customers: SandboxCustomers
) -> None:
    out = add("acme", customers)

    truth = customers["acme"].truth()
    for pid, product in truth.products.items():
        assert f"{pid} {product['name']}" in out
    # The keyring's own file holds it (read back without the toolkit) ...
    entries = json.loads((keyring_dir / "keyring.json").read_text())
    assert entries == {"testio-toolkit/acme": customers["acme"].token}
    # ... and the settings file does not.
    toml = (config_dir() / "testio-toolkit" / "accounts.toml").read_text()
    assert customers["acme"].token not in toml
    assert 'default = "acme"' in toml
    assert customers["acme"].url in toml


def test_a_refused_token_is_not_stored(keyring_dir: Path, customers: SandboxCustomers) -> None:
    sb = customers["acme"]
    result = cli("account", "add", "acme", "--url", sb.url, input="wrong-token\n")

    assert result.exit_code == 1
    assert "AuthenticationError" in result.stderr
    assert not (keyring_dir / "keyring.json").exists()
    assert not (config_dir() / "testio-toolkit" / "accounts.toml").exists()


def test_list_use_and_remove(keyring_dir: Path, customers: SandboxCustomers) -> None:
    for name in ("acme", "globex"):
        add(name, customers)
    assert cli("--account", "acme", "sync").exit_code == 0
    # --account after the command name too, and TESTIO_ACCOUNT.
    assert cli("sync", "--account", "globex").exit_code == 0

    listed = cli("account", "list")
    assert listed.exit_code == 0, listed.stderr
    lines = {
        line.split()[1] if line.startswith("*") else line.split()[0]: line
        for line in listed.stdout.splitlines()[2:]
    }
    assert lines["acme"].startswith("* ")  # the first account added is the default
    for name in ("acme", "globex"):
        line = lines[name]
        assert customers[name].url in line and "the keyring" in line
        assert f"...{customers[name].token[-4:]}" in line
        assert customers[name].token not in line  # at most its last 4 characters
        assert str(accounts.default_db_path(name)) in line
        assert "sync " in line and "(success)" in line

    # Each mirror holds its own account's data.
    for name in ("acme", "globex"):
        assert_mirror_equals_truth(accounts.default_db_path(name), customers[name])

    # The library: tt.use, tt.Mirror(account=), TESTIO_ACCOUNT.
    tt.use("globex")
    assert len(tt.bugs()) == len(customers["globex"].truth().bugs)
    assert tt.Mirror(account="acme").path == accounts.default_db_path("acme")
    os.environ["TESTIO_ACCOUNT"] = "globex"
    try:
        assert tt.Mirror().path == accounts.default_db_path("globex")
    finally:
        del os.environ["TESTIO_ACCOUNT"]

    assert cli("account", "default", "globex").exit_code == 0
    api.reset()
    assert tt.default_mirror().account == "globex"

    # remove asks (no terminal: refuses), keeps the mirror unless told.
    refused = cli("account", "remove", "acme")
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert cli("account", "remove", "acme", "--yes").exit_code == 0
    assert "testio-toolkit/acme" not in json.loads((keyring_dir / "keyring.json").read_text())
    assert accounts.load().names() == ["globex"]
    assert accounts.default_db_path("acme").exists()
    gone = cli("--account", "acme", "status")
    assert gone.exit_code == 2 and "no account named 'acme'" in gone.stderr
    assert cli("account", "remove", "globex", "--yes", "--delete-mirror").exit_code == 0
    assert not accounts.default_db_path("globex").exists()


def test_the_token_is_in_no_file_of_the_config_and_data_folders(
    keyring_dir: Path, customers: SandboxCustomers
) -> None:
    for name in customers.names():
        add(name, customers)
    result = cli("sync", "--all")
    assert result.exit_code == 0, result.stdout + result.stderr

    scanned = [p for root in (config_dir(), data_dir()) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "accounts.toml" for p in scanned)
    assert sum(p.suffix == ".db" for p in scanned) == 3
    for name in customers.names():
        assert files_holding(customers[name].token) == []


def test_without_a_keyring_add_fails_naming_the_ways_out_and_only_insecure_storage_writes_a_file(
    customers: SandboxCustomers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    keyring.core.init_backend()
    try:
        sb = customers["acme"]
        refused = cli("account", "add", "acme", "--url", sb.url, input=sb.token + "\n")
        assert refused.exit_code == 2
        for way_out in ("--insecure-storage", "TESTIO_TOKEN_ACME", "PYTHON_KEYRING_BACKEND"):
            assert way_out in refused.stderr
        assert not (config_dir() / "testio-toolkit").exists()  # nothing saved

        stored = cli(
            "account", "add", "acme", "--url", sb.url, "--insecure-storage", input=sb.token + "\n"
        )
        assert stored.exit_code == 0, stored.stderr
        assert "plain text" in stored.stderr  # the warning
        holding = files_holding(sb.token)
        assert len(holding) == 1 and holding[0].parent.name == "tokens"
        assert stat.S_IMODE(holding[0].stat().st_mode) == 0o600
        assert cli("--account", "acme", "sync").exit_code == 0
        assert files_holding(sb.token) == holding  # the sync wrote it nowhere else
        assert "--insecure-storage" in cli("account", "list").stdout
        assert cli("account", "remove", "acme", "--yes").exit_code == 0
        assert files_holding(sb.token) == []
    finally:
        monkeypatch.undo()
        keyring.core.init_backend()


def test_the_environment_overrides_the_keyring(
    keyring_dir: Path, customers: SandboxCustomers, monkeypatch: pytest.MonkeyPatch
) -> None:
    add("acme", customers)
    monkeypatch.setenv("TESTIO_TOKEN_ACME", "not-the-token")

    result = cli("--account", "acme", "sync")

    assert result.exit_code == 1
    assert "AuthenticationError" in result.stderr and "TESTIO_TOKEN_ACME" in result.stderr
    assert "not-the-token" not in result.stderr


def test_an_account_pointed_at_another_accounts_mirror_is_refused(
    keyring_dir: Path, customers: SandboxCustomers
) -> None:
    add("acme", customers)
    assert cli("--account", "acme", "sync").exit_code == 0
    before = accounts.default_db_path("acme").read_bytes()
    add("globex", customers, "--db", str(accounts.default_db_path("acme")))

    result = cli("sync", "--account", "globex")

    assert result.exit_code == 2
    assert "mirrors 'http://127.0.0.1" in result.stderr and "nothing was written" in result.stderr
    assert "a mirror of its own" in result.stderr
    with sqlite3.connect(accounts.default_db_path("acme")) as conn:
        assert conn.execute("SELECT count(*) FROM sync_runs").fetchone()[0] == 1
    assert len(before) > 0


def test_a_token_configured_the_old_way_wins_over_the_default_account(
    keyring_dir: Path, customers: SandboxCustomers, tmp_path: Path
) -> None:
    add("acme", customers)
    sb = customers["globex"]
    env = dict(os.environ)
    env.update(
        TESTIO_CUSTOMER_API_TOKEN=sb.token,
        TESTIO_CUSTOMER_API_BASE_URL=sb.url,
        TESTIO_DB_PATH=str(tmp_path / "old.db"),
    )

    assert cli("sync", env=env).exit_code == 0

    assert_mirror_equals_truth(tmp_path / "old.db", sb)
    assert not accounts.default_db_path("acme").exists()
    assert make_mirror(sb, tmp_path / "old.db").account is None


def test_the_sandbox_command_serves_customers_to_add_as_accounts(keyring_dir: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "testio_toolkit", "sandbox", "--customers"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("Sandbox customers serving: acme, globex")
        commands = [proc.stdout.readline().split() for _ in range(3)]
        for words in commands:  # echo TOKEN | testio-toolkit account add NAME --url URL
            assert words[0] == "echo" and words[2:5] == ["|", "testio-toolkit", "account"]
            added = cli(*words[4:], input=words[1] + "\n")
            assert added.exit_code == 0, added.stderr
        result = cli("sync", "--all")
        assert result.exit_code == 0, result.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # The same customers, seeds and pinned clock in this process serve the same data.
    with SandboxCustomers() as same:
        for name, sb in same.sandboxes.items():
            bugs = tt.Mirror(account=name).bugs()
            assert set(bugs["id"]) == set(sb.truth().bugs)


def test_an_accounts_product_filter_and_retention_are_its_settings(
    keyring_dir: Path, customers: SandboxCustomers, tmp_path: Path
) -> None:
    truth = customers["initech"].truth()
    pid = sorted(truth.products)[2]
    db = tmp_path / "initech-here.db"
    add("initech", customers, "--product", str(pid), "--keep-changes", "30d", "--db", str(db))

    toml = (config_dir() / "testio-toolkit" / "accounts.toml").read_text()
    assert f"products = [\n    {pid},\n]" in toml or f"products = [{pid}]" in toml
    assert 'keep_changes = "30d"' in toml and str(db) in toml
    mirror = tt.Mirror(account="initech")
    assert (mirror.path, mirror.settings.keep_changes) == (db, "30d")
    assert cli("sync", "--account", "initech").exit_code == 0
    assert_mirror_equals_truth(db, customers["initech"], products=[pid])

    broken = cli("account", "add", "bad name", "--url", customers["acme"].url, input="x\n")
    assert broken.exit_code == 2 and "is not usable" in broken.stderr
