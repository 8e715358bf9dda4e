"""The command line as a user meets it: the sandbox default, status, and bad input."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from testio_toolkit.sandbox import Sandbox

from .conftest import assert_mirror_equals_truth, cli, cli_env, digest, run_cli


def test_sync_without_a_token_uses_the_sandbox_and_its_own_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env["XDG_DATA_HOME"] = str(tmp_path)

    result = cli("sync", "--no-progress", env=env)

    assert result.exit_code == 0, result.stderr
    assert "SANDBOX" in result.stderr
    assert "SANDBOX DATA" in result.stdout
    database = tmp_path / "testio-toolkit" / "sandbox.db"
    assert database.exists()
    status = cli("status", env=env)
    assert "SANDBOX" in status.stdout
    assert "150 tests" in status.stdout


def test_python_dash_m_and_the_console_script_are_the_same_cli() -> None:
    import subprocess

    script = subprocess.run(
        ["testio-toolkit", "--help"], capture_output=True, text=True, check=False
    )
    module = run_cli("--help", env=dict(os.environ))
    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout


def test_status_reports_counts_and_last_runs_and_writes_nothing(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    before = digest(db_path)

    result = cli("status", env=env)

    assert result.exit_code == 0
    assert str(db_path) in result.stdout
    assert "last sync:    success" in result.stdout
    assert "last refresh: never" in result.stdout
    for pid, product in sandbox.truth().products.items():
        assert f"product {pid} {product['name']}: " in result.stdout  # ids and names
    assert digest(db_path) == before


def test_a_wrong_token_is_refused_clearly_without_printing_it(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    before = digest(db_path)
    env["TESTIO_CUSTOMER_API_TOKEN"] = "wrong-token-s3cr3t"

    result = cli("sync", "--no-progress", env=env)

    assert result.exit_code == 1
    assert "refused the API token" in result.stderr
    assert "wrong-token-s3cr3t" not in result.stdout + result.stderr
    assert digest(db_path) == before


def test_a_wrong_token_on_a_first_run_creates_no_database(sandbox: Sandbox, db_path: Path) -> None:
    env = cli_env(sandbox, db_path, TESTIO_CUSTOMER_API_TOKEN="nope")

    result = cli("sync", "--no-progress", env=env)

    assert result.exit_code == 1
    assert not db_path.exists()


def test_an_unknown_product_id_is_named_and_changes_nothing(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    before = digest(db_path)

    result = cli("sync", "--product", "424242", env=env)
    by_name = cli("sync", "--product", "No Such Product", env=env)

    # A usage error, like the other bad values, naming the account's products.
    assert result.exit_code == 2
    assert "unknown product 424242" in result.stderr and "Flourish Pro" in result.stderr
    assert by_name.exit_code == 2 and "unknown product 'No Such Product'" in by_name.stderr
    assert digest(db_path) == before


@pytest.mark.parametrize("since", ["yesterday", "2025-02-30", "30x", "-5d"])
def test_a_malformed_since_is_a_usage_error(sandbox: Sandbox, db_path: Path, since: str) -> None:
    result = cli("sync", "--since", since, env=cli_env(sandbox, db_path))

    assert result.exit_code == 2
    assert "is not a date" in result.stderr
    assert not db_path.exists()


def test_a_database_in_a_missing_folder_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "folder" / "m.db"

    result = cli("sync", env=cli_env(sandbox, path))

    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert not (tmp_path / "no").exists()


def test_a_database_in_a_folder_that_cannot_be_written_is_refused(sandbox: Sandbox) -> None:
    # /proc refuses new files even to root, which CI runs as.
    result = cli("sync", "--no-progress", env=cli_env(sandbox, Path("/proc/testio.db")))

    assert result.exit_code == 1
    assert "/proc" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_that_is_not_sqlite_is_never_overwritten(sandbox: Sandbox, db_path: Path) -> None:
    db_path.write_text("name,notes\nimportant,spreadsheet\n")
    before = digest(db_path)

    result = cli("sync", "--no-progress", env=cli_env(sandbox, db_path))

    assert result.exit_code == 1
    assert "not a SQLite database" in result.stderr
    assert str(db_path) in result.stderr
    assert digest(db_path) == before


def test_a_sqlite_file_of_another_program_is_never_written(sandbox: Sandbox, db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE invoices (id INTEGER, amount REAL)")
    conn.commit()
    conn.close()
    before = digest(db_path)

    result = cli("sync", "--no-progress", env=cli_env(sandbox, db_path))

    assert result.exit_code == 1
    assert "another program" in result.stderr
    assert digest(db_path) == before


def test_sandbox_data_never_goes_into_a_real_accounts_database(
    sandbox: Sandbox, db_path: Path, synced_env: dict[str, str]
) -> None:
    env = synced_env
    before = digest(db_path)
    del env["TESTIO_CUSTOMER_API_TOKEN"]  # forgot the token: the bundled sandbox answers

    result = cli("sync", "--no-progress", env=env)

    assert result.exit_code == 2
    assert "mirrors" in result.stderr
    assert digest(db_path) == before


def test_every_command_documents_itself_with_an_example() -> None:
    from testio_toolkit.cli import cli as root

    def commands(group: object, prefix: str = "") -> list[tuple[str, object]]:
        found = []
        for name, command in getattr(group, "commands", {}).items():
            found.append((prefix + name, command))
            found += commands(command, prefix + name + " ")
        return found

    for name, command in commands(root):
        assert "Example:" in (command.help or ""), f"`{name}` has no example in its help"  # type: ignore[attr-defined]


def test_the_sandbox_command_serves_with_faults_switched_at_start_up() -> None:
    import subprocess
    import sys
    import time

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "testio_toolkit", "sandbox", "--fault", "unauthorized=true"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" serving at ")[1].strip()
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = httpx.get(f"{url}/products", headers={"Authorization": "Token x"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert answer.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_unknown_fault_switch_is_a_usage_error() -> None:
    result = cli("sandbox", "--fault", "no_such_fault=1", env=dict(os.environ))

    assert result.exit_code == 2
    assert "no_such_fault" in result.stderr


def test_testio_product_ids_in_the_environment_limits_the_sync(
    sandbox: Sandbox, db_path: Path
) -> None:
    first, *others = sorted(sandbox.truth().products)
    env = cli_env(sandbox, db_path, TESTIO_PRODUCT_IDS=str(first))

    done = cli("sync", "--no-progress", env=env)

    assert done.exit_code == 0, done.stderr
    conn = sqlite3.connect(db_path)
    try:
        synced = {row[0] for row in conn.execute("SELECT DISTINCT product_id FROM tests")}
    finally:
        conn.close()
    assert synced == {first} and others


def test_options_work_where_users_type_them(sandbox: Sandbox, tmp_path: Path) -> None:
    """`sync --db`, `sync --wait`, `sync --nuke --keep-backups 3`: after the command too."""
    db = tmp_path / "here.db"
    env = {
        **os.environ,
        "TESTIO_CUSTOMER_API_TOKEN": sandbox.token,
        "TESTIO_CUSTOMER_API_BASE_URL": sandbox.url,
    }
    first = cli("sync", "--db", str(db), "--wait", env=env)
    assert first.exit_code == 0, first.output
    assert db.exists()
    # No terminal here: no progress bars, so no escape codes in what a log would get.
    assert "\x1b[" not in first.output and "\r" not in first.output
    assert "SANDBOX DATA (server)" in first.output
    for _ in range(4):
        nuked = cli("sync", "--nuke", "--yes", "--keep-backups", "3", "--db", str(db), env=env)
        assert nuked.exit_code == 0, nuked.output
    assert len(list(tmp_path.glob("here.backup-*.db"))) == 3
    status = cli("status", "--db", str(db), env=env)
    assert "SANDBOX data served at" in status.output
    # Every command takes the shared options after its name (problematic list too) ...
    listed = cli("problematic", "list", "--db", str(db), env=env)
    assert listed.exit_code == 0 and "No unreadable records." in listed.output
    assert cli("problematic", "clear", "--db", str(db), "--wait", env=env).exit_code == 0
    # ... and read-only commands do not offer --wait or --keep-backups.
    for command in (["status"], ["changes"], ["problematic", "list"]):
        for option in ("--wait", "--keep-backups=2"):
            refused = cli(*command, "--db", str(db), option, env=env)
            assert refused.exit_code == 2 and "No such option" in refused.stderr


def test_sync_product_takes_names_as_changes_product_does(sandbox: Sandbox, db_path: Path) -> None:
    env = {**os.environ, **cli_env(sandbox, db_path)}
    truth = sandbox.truth()
    pid, product = sorted(truth.products.items())[1]

    result = cli("sync", "--product", product["name"].upper(), env=env)

    assert result.exit_code == 0, result.stderr
    assert_mirror_equals_truth(db_path, sandbox, products=[pid])


def test_the_sandbox_command_prints_the_database_to_use(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env["XDG_DATA_HOME"] = str(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-m", "testio_toolkit", "sandbox"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(4)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    exports = dict(
        line.split("#")[0].strip().removeprefix("export ").split("=", 1)
        for line in lines
        if line.startswith("export ")
    )
    assert set(exports) == {
        "TESTIO_CUSTOMER_API_BASE_URL",
        "TESTIO_CUSTOMER_API_TOKEN",
        "TESTIO_DB_PATH",
    }
    assert exports["TESTIO_DB_PATH"].endswith("sandbox-small.db")
    assert "testio.db" not in exports["TESTIO_DB_PATH"]
