"""The API token stays secret: never in logs, messages, reprs, database files or CLI output;
nor do the customers' test-environment credentials the sandbox serves (``CREDENTIALS``,
scanned by the same helpers; the scrub of older mirrors is in ``test_credentials.py``).

The helpers live in ``conftest.py`` and are shared with ``test_messages.py``,
``test_resilience.py`` and ``test_locking.py``: their sandboxes use ``SECRET`` as the token
(``sb``), every CLI run's output is scanned (``cli()``, ``run_cli()``), and
``token_never_leaks`` scans the logs (DEBUG, httpx and httpcore included) and every file a
test left in its ``tmp_path``. So "the token is found nowhere after all of the above" is
checked after every fault-injection case, not only here.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

import testio_toolkit as tt
from testio_toolkit.client import TestIOClient
from testio_toolkit.config import Settings
from testio_toolkit.lock import WriterLock
from testio_toolkit.sandbox import Sandbox

from .conftest import (
    CREDENTIALS,
    FAST,
    FRAGMENT,
    SECRET,
    assert_no_secret,
    assert_no_secret_in_exception,
    assert_no_secret_in_files,
    cli,
    cli_env,
    make_mirror,
    secret_sandbox,
    watch_for_token,
)

pytestmark = pytest.mark.usefixtures("token_never_leaks")


def mirror_with_token(sb: Sandbox, path: Path, token: str) -> tt.Mirror:
    return tt.Mirror(path, token=token, base_url=sb.url, client_options=FAST, progress=False)


# -- the tests ------------------------------------------------------------------------------


def test_the_checks_would_see_a_leak(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """The scans are not vacuous: a token in a message, a file or a log record is found."""
    with pytest.raises(AssertionError):
        assert_no_secret(f"Authorization: Token {SECRET}", "a header")
    with pytest.raises(AssertionError):
        assert_no_secret(f"token ...{FRAGMENT}...", "a masked token")
    # ... and so is a customer's credential the sandbox served, in output or in a file.
    assert len(CREDENTIALS) >= 10
    with pytest.raises(AssertionError, match="credential"):
        assert_no_secret(f'"password": "{CREDENTIALS[0]}"', "a record")
    leak = tmp_path / "mirror.db-wal"
    leak.write_bytes(b"\x00" + SECRET.encode() + b"\x00")
    with pytest.raises(AssertionError, match=r"mirror\.db-wal"):
        assert_no_secret_in_files(tmp_path)
    leak.unlink()

    watcher = watch_for_token(caplog, tmp_path)
    next(watcher)
    logging.getLogger("httpcore.http11").debug(
        "send_request_headers.started headers=%r", [(b"Authorization", f"Token {SECRET}")]
    )
    with pytest.raises(AssertionError, match="httpcore"):
        next(watcher, None)
    caplog.clear()


def test_debug_logs_of_a_faulty_sync_never_show_the_token(
    sb: Sandbox, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Retries, 429 pauses, salvaged pages and 524 halving all log something.
    first = sb.test_ids(next(iter(sb.truth().products)))[3]
    sb.set_faults(
        poisoned_test_ids={first},
        rate_limit_next=1,
        retry_after=0,
        drop_next=1,
        garbage_next=1,
        bugs_524_over=4,
    )

    result = make_mirror(sb, db_path).sync()

    assert result.status == "partial"
    names = {record.name.split(".")[0] for record in caplog.records}
    assert {"httpx", "httpcore", "testio_toolkit"} <= names, "DEBUG logging was not captured"
    assert any("429" in r.getMessage() for r in caplog.records)
    for record in caplog.records:  # (the autouse fixture checks again after every test)
        assert_no_secret(record.getMessage(), record.name)
        assert_no_secret(str(record.args), record.name)


def test_reprs_and_strings_of_every_public_object_hide_the_token(
    sb: Sandbox, db_path: Path
) -> None:
    mirror = make_mirror(sb, db_path)
    result = mirror.sync()
    plan = mirror.nuke_plan()
    client = TestIOClient(sb.url, SECRET)
    settings = Settings.load(token=SECRET, base_url=sb.url, db_path=db_path)
    objects: list[Any] = [
        mirror,
        mirror.settings,
        settings,
        settings.token,
        result,
        result.products[0],
        mirror.status(),
        plan,
        client,
        WriterLock(db_path, mode="sync"),
    ]
    for obj in objects:
        assert_no_secret(repr(obj), f"repr({type(obj).__name__})")
        assert_no_secret(str(obj), f"str({type(obj).__name__})")
        assert_no_secret(f"{obj}", f"an f-string of {type(obj).__name__}")
    assert_no_secret(result._repr_html_(), "SyncResult._repr_html_")
    assert_no_secret(mirror.status()._repr_html_(), "MirrorStatus._repr_html_")
    assert_no_secret(str(mirror.__dict__), "vars(Mirror)")
    assert_no_secret(result.to_frame().to_string(), "SyncResult.to_frame()")
    assert_no_secret(mirror.runs().to_string(), "Mirror.runs()")
    assert settings.token is not None and settings.token.reveal() == SECRET
    asyncio.run(client.aclose())


def test_error_messages_never_quote_the_token(sb: Sandbox, db_path: Path) -> None:
    # Refused by the service (401): the message names the request, not the header.
    wrong = SECRET.replace("SECRET", "WRONG")
    with pytest.raises(tt.ToolkitError) as refused:
        mirror_with_token(sb, db_path, wrong).sync()
    assert "401" in str(refused.value)
    assert_no_secret_in_exception(refused.value)
    assert wrong not in str(refused.value) and wrong not in repr(refused.value)

    # Refused locally: a token with a space in it never reaches the HTTP stack.
    with pytest.raises(tt.ToolkitError) as malformed:
        mirror_with_token(sb, db_path, f"{SECRET} {SECRET}").sync()
    assert_no_secret_in_exception(malformed.value)

    # The service turns the token down in the middle of a run.
    sb.set_faults(unauthorized=True)
    with pytest.raises(tt.ToolkitError) as midway:
        make_mirror(sb, db_path).refresh()
    assert_no_secret_in_exception(midway.value)

    # Timeouts and dropped connections chain httpx errors, whose requests carry the header.
    sb.clear_faults()
    sb.set_faults(drop_rate=1.0)
    with pytest.raises(tt.ToolkitError) as dropped:
        make_mirror(sb, db_path).sync()
    assert "dropped" in str(dropped.value)
    assert_no_secret_in_exception(dropped.value)


def test_database_files_wal_and_backups_never_hold_the_token(
    sb: Sandbox, db_path: Path, tmp_path: Path
) -> None:
    mirror = make_mirror(sb, db_path)
    wal = db_path.with_name(db_path.name + "-wal")
    seen_wal: list[bytes] = []

    def look_at_the_files(event: tt.ProgressEvent) -> None:
        # While the run writes, the rows sit in the WAL before any checkpoint.
        if wal.exists():
            seen_wal.append(wal.read_bytes())
        if db_path.exists():
            assert_no_secret(db_path.read_bytes(), "the database file during a run")

    sb.set_faults(poisoned_test_ids={sb.test_ids(next(iter(sb.truth().products)))[7]})
    mirror.sync(on_progress=look_at_the_files)  # unreadable log, error texts
    sb.clear_faults()
    mirror.refresh(on_progress=look_at_the_files)
    mirror.nuke(confirm=True, on_progress=look_at_the_files)  # a backup beside it

    assert any(seen_wal), "the WAL was never seen with data in it"
    for data in seen_wal:
        assert_no_secret(data, "the -wal file during a run")
    scanned = {p.name for p in assert_no_secret_in_files(tmp_path)}
    assert db_path.name in scanned
    assert any(".backup-" in name for name in scanned), scanned


def test_cli_output_never_shows_the_token(tmp_path: Path) -> None:
    # Every CLI run of the fault-injection modules goes through cli(), which checks its
    # output; here: a partial run that did not ask for --no-progress, and a run the service
    # refuses.
    with secret_sandbox() as poisoned, secret_sandbox() as refusing:
        product = next(iter(poisoned.truth().products))
        poisoned.set_faults(poisoned_test_ids={poisoned.test_ids(product)[0]})
        refusing.set_faults(unauthorized=True)
        partial = cli("sync", env=cli_env(poisoned, tmp_path / "p.db"))
        refused = cli("sync", "--force", "--no-progress", env=cli_env(refusing, tmp_path / "r.db"))

    assert partial.exit_code == 1, partial.stderr
    assert "sync partial" in partial.stdout
    assert refused.exit_code == 1 and "401" in refused.stderr
