"""Errors a new user meets, tried as a new user would (the CLI, a real sandbox over HTTP):
each message names what to check and where that value came from, never the token."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import testio_toolkit as tt
from testio_toolkit.client import ClientOptions
from testio_toolkit.errors import AuthenticationError, ServiceError
from testio_toolkit.sandbox import Sandbox

from .conftest import SECRET, cli, cli_env, make_mirror

pytestmark = pytest.mark.usefixtures("token_never_leaks")


def dead_url() -> str:
    """A base URL where nothing listens (a port just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/customer/v2"


def test_a_base_url_with_a_wrong_path_names_the_url_and_where_it_came_from(
    sb: Sandbox, tmp_path: Path
) -> None:
    wrong = sb.url.removesuffix("/customer/v2").rstrip("/")
    env = cli_env(sb, tmp_path / "m.db", TESTIO_CUSTOMER_API_BASE_URL=wrong)

    done = cli("sync", "--no-progress", env=env)

    assert done.exit_code == 1
    assert "Traceback" not in done.stderr
    assert f"{wrong}/products" in done.stderr, done.stderr
    assert "from TESTIO_CUSTOMER_API_BASE_URL" in done.stderr
    assert "/customer/v2" in done.stderr  # what the URL should look like
    assert not (tmp_path / "m.db").exists()


def test_a_dead_host_names_the_base_url_and_fails_after_few_attempts(tmp_path: Path) -> None:
    url = dead_url()
    options = ClientOptions(backoff_base=0.001, backoff_max=0.01)
    mirror = tt.Mirror(tmp_path / "m.db", token=SECRET, base_url=url, client_options=options)

    with pytest.raises(ServiceError) as error:
        mirror.sync(progress=False)

    text = str(error.value)
    assert "could not connect" in text and url in text, text
    assert "base_url argument" in text  # where the URL came from
    # Nothing ever answered: a wrong host or port, not a blip; no five backoffs for it.
    assert "after 3 attempts" in text

    done = cli("sync", "--no-progress", env={**cli_env_for(url, tmp_path)})
    assert done.exit_code == 1
    assert url in done.stderr and "from TESTIO_CUSTOMER_API_BASE_URL" in done.stderr
    done = cli("--base-url", url, "sync", "--no-progress", env=cli_env_for(None, tmp_path))
    assert "from --base-url" in done.stderr, done.stderr


def cli_env_for(url: str | None, tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(TESTIO_CUSTOMER_API_TOKEN=SECRET, TESTIO_DB_PATH=str(tmp_path / "m.db"))
    if url:
        env["TESTIO_CUSTOMER_API_BASE_URL"] = url
    return env


def test_a_refused_token_points_at_the_variable_and_the_env_file(
    sb: Sandbox,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sb.set_faults(unauthorized=True)
    env = cli_env(sb, tmp_path / "m.db")

    done = cli("sync", "--no-progress", env=env)

    assert done.exit_code == 1
    assert "(401)" in done.stderr
    assert "TESTIO_CUSTOMER_API_TOKEN" in done.stderr and ".env" in done.stderr, done.stderr

    # The token in a .env file (outside tmp_path, which is searched for the token): the
    # message names that file.
    work = tmp_path_factory.mktemp("work")
    (work / ".env").write_text(f"TESTIO_CUSTOMER_API_TOKEN={SECRET}\n")
    monkeypatch.chdir(work)
    mirror = tt.Mirror(tmp_path / "m.db", base_url=sb.url, progress=False)
    with pytest.raises(AuthenticationError) as error:
        mirror.sync()
    assert f"TESTIO_CUSTOMER_API_TOKEN in {work / '.env'}" in str(error.value)


def test_a_partial_run_says_how_to_retry_the_unreadable_records(
    sb: Sandbox, tmp_path: Path
) -> None:
    truth = sb.truth()
    sb.set_faults(poisoned_test_ids={next(iter(truth.tests))})

    done = cli("sync", "--no-progress", env=cli_env(sb, tmp_path / "cli.db"))
    assert done.exit_code == 1
    assert "partial" in done.stdout
    assert "testio-toolkit problematic retry" in done.stderr, done.stderr

    result = make_mirror(sb, tmp_path / "lib.db").sync()
    assert result.status == "partial"
    assert "tt.retry_unreadable()" in repr(result)
    assert "tt.retry_unreadable()" in result._repr_html_()
    assert result.advice() is not None and "testio-toolkit" not in result.advice()


def test_a_bad_database_path_is_reported_under_the_name_it_came_from(
    sb: Sandbox, tmp_path: Path
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    missing = tmp_path / "no-such-folder" / "m.db"

    for bad in (folder, missing):
        for command in (["status"], ["sync", "--no-progress"]):
            done = cli(*command, env=cli_env(sb, bad))
            assert done.exit_code != 0
            assert str(bad.parent if bad == missing else bad) in done.stderr
            assert "TESTIO_DB_PATH" in done.stderr and "--db" not in done.stderr, done.stderr

        done = cli("--db", str(bad), "status", env=cli_env(sb, tmp_path / "ignored.db"))
        assert done.exit_code != 0
        assert "comes from --db" in done.stderr, done.stderr
    assert not missing.parent.exists()
