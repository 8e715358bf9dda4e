"""The control panel and single buttons, driven by .click() against a real sandbox.

The widgets are tested by their state (disabled, values, HTML), as a notebook user sees
them; every job goes over real HTTP into a real database file.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import testio_toolkit as tt
from testio_toolkit.errors import RebuildFailed
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.widgets import (
    ActionButton,
    Panel,
    nuke_button,
    refresh_button,
    sync_button,
)

from .conftest import make_mirror
from .test_nuke import dump_data, runs


def files_beside(path: Path) -> dict[str, bytes]:
    """Every file in the database's folder with its bytes.

    Left out: SQLite's -shm index and an empty -wal, which a reader may create and which
    hold no data.
    """
    files = {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.is_file()}
    return {
        name: data
        for name, data in files.items()
        if not name.endswith("-shm") and not (name.endswith("-wal") and not data)
    }


def count(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def all_buttons(panel: Panel) -> list[object]:
    return [panel.sync_button, panel.refresh_button, panel.nuke_button]


def test_panel_shows_database_path_and_what_it_holds(synced: tt.Mirror) -> None:
    panel = Panel(synced)
    assert str(synced.path) in panel.status_html.value
    assert "150 tests" in panel.status_html.value
    assert "<th>Last sync</th><td>success at" in panel.status_html.value
    assert len(panel.products_picker.options) == 3
    assert panel.job is None and panel.wait() is None


def test_the_panel_shows_each_runs_change_line_and_the_last_seven_days(
    sandbox: Sandbox, synced: tt.Mirror
) -> None:
    panel = Panel(synced)
    assert "What changed in the last 7 days</b>: 3 changes" in panel.changes_html.value
    assert "<th>products</th><td>3</td>" in panel.changes_html.value
    pid = max(sandbox.truth().products, key=lambda p: len(sandbox.test_ids(p)))
    new = sandbox.add_tests(pid, 1)
    new_bugs = len(sandbox.truth([pid]).bugs) - len(synced.bugs(product=pid))

    panel.refresh_button.click()
    result = panel.wait()

    assert isinstance(result, tt.SyncResult)
    line = f"1 new test; {new_bugs} new bugs" if new_bugs else "1 new test"
    assert result.change_line == line
    assert line in panel.summary.value
    assert f"{4 + new_bugs} changes" in panel.changes_html.value
    assert f"test {new[0]}</td>" in panel.changes_html.value


def test_panel_says_sandbox_clearly(db_path: Path) -> None:
    # No token configured: the bundled sandbox is the source (nothing is synced here).
    panel = Panel(tt.Mirror(db_path))
    assert "SANDBOX data" in panel.status_html.value
    assert "SANDBOX" in repr(panel)


def test_sync_button_fills_the_database_and_shows_a_summary(
    sandbox: Sandbox, db_path: Path
) -> None:
    panel = Panel(make_mirror(sandbox, db_path))
    panel.sync_button.click()
    result = panel.wait()
    assert isinstance(result, tt.SyncResult) and result.mode == "sync" and result.ok
    assert count(db_path, "SELECT count(*) FROM tests") == 150
    assert "sync success" in panel.summary.value and "<table>" in panel.summary.value
    assert panel.error.value == ""
    assert "150 tests" in panel.status_html.value
    assert panel.progress.value == panel.progress.max and panel.progress.bar_style == "success"
    assert not any(b.disabled for b in all_buttons(panel))


def test_a_panel_over_an_async_mirror_works_the_same(sandbox: Sandbox, db_path: Path) -> None:
    # The panel awaits the mirror's async face either way (tt.AsyncMirror, or tt.Mirror's).
    mirror = tt.AsyncMirror(db_path, token=sandbox.token, base_url=sandbox.url, progress=False)
    panel = Panel(mirror)
    panel.sync_button.click()
    result = panel.wait()
    assert isinstance(result, tt.SyncResult) and result.mode == "sync" and result.ok
    assert count(db_path, "SELECT count(*) FROM tests") == 150
    assert "150 tests" in panel.status_html.value


def test_refresh_button_updates_the_database_and_shows_a_summary(
    sandbox: Sandbox, synced: tt.Mirror
) -> None:
    product = next(iter(sandbox.truth().products))
    new = sandbox.add_tests(product, count=3)
    gone = sandbox.test_ids(product)[-1]
    sandbox.delete_tests([gone])
    panel = Panel(synced)
    panel.refresh_button.click()
    result = panel.wait()
    assert isinstance(result, tt.SyncResult) and result.mode == "refresh"
    assert result.tests.added == 3 and result.tests.marked_gone == 1
    ids = ",".join(map(str, new))
    assert count(synced.path, f"SELECT count(*) FROM tests WHERE id IN ({ids})") == 3
    assert (
        count(
            synced.path,
            f"SELECT count(*) FROM tests WHERE id = {gone} AND deleted_upstream_at IS NOT NULL",
        )
        == 1
    )
    assert "refresh success" in panel.summary.value
    assert "<th>Last refresh</th><td>success" in panel.status_html.value


def test_pickers_choose_products_and_dry_run(synced: tt.Mirror) -> None:
    panel = Panel(synced)
    first = panel.products_picker.options[0][1]
    panel.products_picker.value = (first,)
    panel.dry_run_checkbox.value = True
    before = files_beside(synced.path)
    panel.refresh_button.click()
    result = panel.wait()
    assert isinstance(result, tt.SyncResult) and result.dry_run
    assert [r.product_id for r in result.products] == [first]
    assert "dry run" in panel.summary.value
    assert files_beside(synced.path) == before


def test_nuke_button_alone_changes_nothing(synced: tt.Mirror) -> None:
    before = files_beside(synced.path)
    panel = Panel(synced)
    panel.nuke_button.click()
    assert panel.confirming and panel.confirmation.layout.display != "none"
    assert "Thrown away and rebuilt" in panel.plan.value  # the plan is on show
    assert "backup" in panel.plan.value.lower()
    assert panel.confirm_button.disabled and panel.confirm_button.button_style == "danger"
    assert panel.job is None
    assert files_beside(synced.path) == before
    assert synced.backups() == []


def test_cancel_changes_nothing(synced: tt.Mirror) -> None:
    before = files_beside(synced.path)
    panel = Panel(synced)
    panel.nuke_button.click()
    panel.confirm_text.value = "nuke"
    panel.cancel_button.click()
    assert not panel.confirming and panel.confirmation.layout.display == "none"
    assert panel.confirm_text.value == "" and panel.confirm_button.disabled
    # Even a stray click on the red button after Cancel does nothing.
    panel.confirm_button.click()
    assert panel.job is None
    assert files_beside(synced.path) == before
    assert synced.backups() == []


def test_the_word_and_the_red_button_nuke_and_keep_a_backup(synced: tt.Mirror) -> None:
    conn = sqlite3.connect(synced.path)
    conn.execute("ALTER TABLE tests ADD COLUMN csm_note TEXT")
    conn.execute("UPDATE tests SET csm_note = 'call the customer'")
    conn.commit()
    conn.close()
    panel = Panel(synced)
    panel.nuke_button.click()
    panel.confirm_text.value = "nuke"
    assert not panel.confirm_button.disabled
    panel.confirm_button.click()
    result = panel.wait()
    assert isinstance(result, tt.SyncResult) and result.mode == "nuke" and result.ok
    backups = synced.backups()
    assert len(backups) == 1
    assert count(backups[0], "SELECT count(*) FROM tests WHERE csm_note IS NOT NULL") == 150
    assert count(synced.path, "SELECT count(*) FROM tests") == 150
    assert backups[0].name in panel.summary.value
    assert not panel.confirming
    assert "<th>Last nuke</th><td>success" in panel.status_html.value


@pytest.mark.parametrize("word", ["", "nuk", "NUKE", "nuke "])
def test_a_wrong_word_never_nukes(synced: tt.Mirror, word: str) -> None:
    before = files_beside(synced.path)
    panel = Panel(synced)
    panel.nuke_button.click()
    panel.confirm_text.value = word
    assert panel.confirm_button.disabled
    # From code, click() reaches the handler even on a disabled button: it must refuse too.
    panel.confirm_button.click()
    panel._on_confirm(panel.confirm_button)
    assert panel.job is None
    assert files_beside(synced.path) == before
    assert synced.backups() == []


def test_buttons_are_disabled_while_a_job_runs(sandbox: Sandbox, synced: tt.Mirror) -> None:
    sandbox.set_faults(latency_ms=200)
    panel = Panel(synced)
    panel.refresh_button.click()
    try:
        assert panel.busy
        assert all(b.disabled for b in all_buttons(panel))
        assert panel.confirm_button.disabled
        # A second click while busy starts nothing new.
        job = panel.job
        panel.sync_button.click()
        panel.nuke_button.click()
        assert panel.job is job and not panel.confirming
    finally:
        result = panel.wait()
    assert isinstance(result, tt.SyncResult) and result.mode == "refresh"
    assert not any(b.disabled for b in all_buttons(panel))


def test_an_error_shows_in_the_panel_without_the_token(sandbox: Sandbox, db_path: Path) -> None:
    sandbox.set_faults(unauthorized=True)
    mirror = make_mirror(sandbox, db_path)
    panel = Panel(mirror)
    panel.sync_button.click()
    assert panel.wait() is None
    assert "AuthenticationError" in panel.error.value
    assert "token" in panel.error.value  # the message says what went wrong...
    assert sandbox.token not in panel.error.value  # ...but never shows it
    assert sandbox.token not in panel.summary.value + panel.status_html.value + repr(panel)
    assert isinstance(panel.last_error, tt.ToolkitError)
    assert panel.progress.bar_style == "danger"
    assert not any(b.disabled for b in all_buttons(panel))
    assert not db_path.exists()


def test_single_buttons_share_the_behaviour(sandbox: Sandbox, db_path: Path) -> None:
    mirror = make_mirror(sandbox, db_path)
    sync = sync_button(mirror)
    assert isinstance(sync, ActionButton) and sync.button.description == "Sync"
    sync.button.click()
    assert isinstance(sync.wait(), tt.SyncResult)
    assert "sync success" in sync.summary.value

    refresh = refresh_button(mirror)
    refresh.button.click()
    assert isinstance(refresh.wait(), tt.SyncResult) and "refresh" in refresh.summary.value

    nuke = nuke_button(mirror)
    before = files_beside(db_path)
    nuke.button.click()
    nuke.confirm_text.value = "nope"
    nuke.confirm_button.click()
    assert nuke.job is None and files_beside(db_path) == before
    nuke.confirm_text.value = "nuke"
    nuke.confirm_button.click()
    result = nuke.wait()
    assert isinstance(result, tt.SyncResult) and result.mode == "nuke"
    assert len(mirror.backups()) == 1


def test_single_button_shows_errors(sandbox: Sandbox, db_path: Path) -> None:
    sandbox.set_faults(unauthorized=True)
    button = refresh_button(make_mirror(sandbox, db_path))
    button.button.click()
    assert button.wait() is None
    assert "AuthenticationError" in button.error.value
    assert sandbox.token not in button.error.value


def test_panels_display_as_their_widget(synced: tt.Mirror) -> None:
    panel = Panel(synced)
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("<Panel")
    assert sync_button(synced)._repr_mimebundle_()["text/plain"].startswith("<ActionButton")


def test_without_ipywidgets_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # makes `import ipywidgets` fail
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        Panel(tt.Mirror(db_path))
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        sync_button(tt.Mirror(db_path))


def test_a_failed_rebuild_shows_the_error_and_keeps_the_mirror(
    sandbox: Sandbox, synced: tt.Mirror
) -> None:
    before = dump_data(synced.path)
    panel = Panel(synced)
    panel.nuke_button.click()
    panel.confirm_text.value = "nuke"
    sandbox.set_faults(fail_after=3)  # the service breaks down in the middle of the rebuild
    panel.confirm_button.click()
    assert panel.wait() is None
    assert isinstance(panel.last_error, RebuildFailed)
    assert "RebuildFailed" in panel.error.value and "left exactly as it was" in panel.error.value
    assert dump_data(synced.path) == before  # only the failed nuke's row was added
    assert runs(synced.path)[-1] == ("nuke", "failed")
    assert synced.backups() == []
    assert not any(b.disabled for b in all_buttons(panel))


def test_a_dry_run_nuke_shows_the_plan_without_asking(synced: tt.Mirror) -> None:
    before = files_beside(synced.path)
    panel = Panel(synced)
    panel.dry_run_checkbox.value = True
    panel.nuke_button.click()
    assert not panel.confirming
    assert isinstance(panel.wait(), tt.NukePlan)
    assert "Dry run" in panel.summary.value and "Thrown away" in panel.summary.value
    assert files_beside(synced.path) == before


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_stop_cancels_a_running_refresh_and_the_next_refresh_completes(
    sandbox: Sandbox, synced: tt.Mirror, db_path: Path
) -> None:
    panel = Panel(synced)
    assert panel.stop_button.disabled  # nothing to stop
    panel.stop()  # no job: nothing happens
    assert panel.job is None

    sandbox.set_faults(latency_ms=200)
    panel.refresh_button.click()
    assert not panel.stop_button.disabled
    wait_until(
        lambda: count(db_path, "SELECT count(*) FROM sync_runs WHERE status = 'running'") == 1,
        "the refresh to start",
    )
    panel.stop_button.click()

    assert panel.wait() is None
    assert "Stopped." in panel.summary.value and "recorded as cancelled" in panel.summary.value
    assert panel.error.value == "" and panel.last_error is None
    assert panel.progress.bar_style == "warning"
    # The bar keeps what was done when Stop was pressed: not a full bar, and it says so.
    assert panel.progress.value < panel.progress.max
    assert panel.progress.description == "refresh: stopped"
    assert "stopped after" in panel.progress_text.value
    assert not any(b.disabled for b in all_buttons(panel)) and panel.stop_button.disabled
    runs = synced.runs()
    assert sorted(zip(runs["mode"], runs["status"], strict=True)) == [
        ("refresh", "cancelled"),
        ("sync", "success"),
    ]

    sandbox.clear_faults()
    panel.refresh_button.click()  # the lock was released
    again = panel.wait()
    assert isinstance(again, tt.SyncResult) and again.status == "success"
    assert (
        count(db_path, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check != 'ok'")
        == 0
    )


def test_stop_during_a_nuke_leaves_the_database_as_it_was(
    sandbox: Sandbox, synced: tt.Mirror, db_path: Path
) -> None:
    before = dump_data(db_path)
    button = nuke_button(synced)
    button.button.click()
    button.confirm_text.value = "nuke"
    sandbox.set_faults(latency_ms=200)
    button.confirm_button.click()
    wait_until(lambda: bool(list(db_path.parent.glob("*.rebuild-*"))), "the rebuild to start")
    button.stop()

    assert button.wait() is None
    assert "Stopped." in button.summary.value and "as it was" in button.summary.value
    assert button.error.value == ""
    assert dump_data(db_path) == before  # only the stopped nuke's row was added
    assert runs(db_path)[-1] == ("nuke", "cancelled")
    assert not list(db_path.parent.glob("*.rebuild-*"))
    assert synced.backups() == []


def test_a_stopped_dry_run_says_it_wrote_nothing_and_wrote_nothing(
    sandbox: Sandbox, synced: tt.Mirror, db_path: Path
) -> None:
    before = files_beside(db_path)
    button = refresh_button(synced, dry_run=True)
    sandbox.set_faults(latency_ms=200)
    button.button.click()
    assert not button.stop_button.disabled
    time.sleep(0.5)  # inside the reads: the product list alone takes 200 ms
    button.stop_button.click()

    assert button.wait() is None
    assert "Stopped." in button.summary.value and "wrote nothing" in button.summary.value
    assert files_beside(db_path) == before


def test_progress_only_moves_forward_and_names_its_phase() -> None:
    from testio_toolkit.results import ProgressEvent
    from testio_toolkit.widgets import _Tally

    tally = _Tally()
    assert tally.fraction() is None  # the products are not listed yet: no share to show
    tally.add(ProgressEvent("products", total=4))
    tally.add(ProgressEvent("tests", advance=30))
    assert tally.fraction() == 0.0 and tally.text().startswith("reading test lists")
    tally.add(ProgressEvent("bugs", total=50))
    tally.add(ProgressEvent("bugs", advance=10))
    tally.add(ProgressEvent("products", advance=1))
    assert tally.fraction() == 0.25
    # More bug lists found later do not pull the bar back (the old bar fell from 97% to 91%).
    tally.add(ProgressEvent("bugs", total=500))
    assert tally.fraction() == 0.25
    assert tally.text() == ("reading bugs · products 1/4 · tests read 30 · bug lists 10/550")


def test_the_account_picker_switches_the_panel_to_another_accounts_mirror(
    keyring_dir: Path,
) -> None:
    from testio_toolkit import accounts
    from testio_toolkit.sandbox import SandboxCustomers

    with SandboxCustomers() as customers:
        for name, sb in customers.sandboxes.items():
            accounts.add(name, sb.token, url=sb.url)
        panel = Panel(tt.Mirror(account="acme", progress=False))
        assert [v for _, v in panel.account_picker.options] == ["", "acme", "globex", "initech"]
        assert panel.account_picker.value == "acme"

        panel.account_picker.value = "globex"
        panel.sync_button.click()
        result = panel.wait()

        assert isinstance(result, tt.SyncResult) and result.ok
        assert panel.mirror.account == "globex" and not panel.account_picker.disabled
        assert result.db_path == str(accounts.default_db_path("globex"))
        truth = customers["globex"].truth()
        assert {v for _, v in panel.products_picker.options} == set(truth.products)
        assert count(accounts.default_db_path("globex"), "SELECT count(*) FROM bugs") == len(
            truth.bugs
        )
        assert not accounts.default_db_path("acme").exists()


def test_without_named_accounts_the_picker_is_hidden(synced: tt.Mirror) -> None:
    assert Panel(synced).account_picker.layout.display == "none"


def test_sync_all_accounts_from_the_panel_shows_each_account(keyring_dir: Path) -> None:
    from testio_toolkit import accounts
    from testio_toolkit.sandbox import SandboxCustomers

    with SandboxCustomers() as customers:
        for name, sb in customers.sandboxes.items():
            accounts.add(name, sb.token, url=sb.url)
        customers["initech"].stop()  # its service is down
        panel = Panel(tt.Mirror(account="acme", progress=False))
        assert panel.sync_all_button.layout.display != "none"

        panel.sync_all_button.click()
        result = panel.wait_all()

        assert result is not None and not result.ok
        assert [(o.account, o.status) for o in result.outcomes] == [
            ("acme", "success"),
            ("globex", "success"),
            ("initech", "failed"),
        ]
        shown = panel.accounts_html.value
        assert "2 of 3 accounts succeeded" in shown and "ServiceError" in shown
        assert not panel.sync_button.disabled and not panel.sync_all_button.disabled
        assert count(accounts.default_db_path("globex"), "SELECT count(*) FROM tests") == len(
            customers["globex"].truth().tests
        )
        assert "150 tests" in panel.status_html.value  # acme's mirror, now synced


def test_the_panel_shows_the_worst_product_quarters_by_the_thresholds(synced: tt.Mirror) -> None:
    health = synced.health(by="product", period="quarter")
    grades = health.grades()
    critical = (grades == "critical").sum(axis=1)
    worst = health.loc[critical.sort_values(ascending=False, kind="stable").index[:3]]

    panel = Panel(synced)

    card = panel.health_html.value
    assert "Health: the worst product quarters" in card
    assert card.count("<tr><td>") == 3
    for product, period in zip(worst["product"], worst["period"], strict=True):
        assert f"<tr><td>{product}</td><td>{period}</td>" in card
    assert card.count("background-color: #f8d7da") == int(critical.loc[worst.index].sum())
