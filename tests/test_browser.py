"""The notebooks as a user meets them: JupyterLab on 127.0.0.1, clicked in a real Chromium.

JupyterLab runs from the project's environment (the same ``uv run jupyter lab`` the README
gives) on a copy of ``notebooks/``; Playwright for Python drives Debian's Chromium
(``.ci/run`` installs it with apt-get; Playwright cannot download its own browsers here).
Every notebook is opened and run whole; the page must show no traceback, the browser must
log no console error, and every widget must render as a widget, not as its text repr. In
the control-panel notebook the panel's buttons are then clicked with the mouse, and after
each click both the page and the database file are checked.

Without a Chromium the test is skipped with the reason, except in CI (``CI`` set), where
``.ci/run`` installed one and its absence is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))
# TESTIO_BROWSER_NOTEBOOKS=04 runs only the notebooks whose name starts so (when debugging).
ONLY = os.environ.get("TESTIO_BROWSER_NOTEBOOKS", "")
TOKEN = "browser-test"
# Every wait is bounded: the whole test takes a minute or two; a hang fails, not blocks.
STEP_MS = int(os.environ.get("TESTIO_BROWSER_STEP_MS", "120000"))


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser_path() -> str:
    path = chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium in CI: .ci/run should have installed it with apt-get")
        print("skipping: no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH: apt-get install chromium (.ci/run does)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: uv sync installs the dev group")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, browser_path: str) -> Iterator[dict[str, Any]]:
    """JupyterLab on 127.0.0.1 over a copy of the notebooks; the kernels' temp dir is ours."""
    root = tmp_path_factory.mktemp("lab")
    work = root / "notebooks"
    work.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / name, work / name)
    scratch = root / "tmp"
    scratch.mkdir()
    jupyter = root / "jupyter"
    # Every cell in the page (no windowing), so the checks below see every output.
    tracker = jupyter / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(
        TMPDIR=str(scratch),  # the notebooks' mkdtemp folders land here, for the checks
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter / "settings"),
    )
    port = free_port()
    log = (root / "lab.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={work}",
            "--LabApp.news_url=",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1):
                    break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError((root / "lab.log").read_text()) from None
                time.sleep(0.1)
        else:
            raise RuntimeError("JupyterLab did not answer within 60 s")
        yield {"url": url, "work": work, "scratch": scratch, "log": root / "lab.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def page(lab: dict[str, Any], browser_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.console_errors = errors  # type: ignore[attr-defined]
        yield page
        context.close()
        browser.close()


def open_and_run_all(page: Any, lab: dict[str, Any], name: str) -> None:
    """Open a notebook in the lab, Run All, and wait until its last cell has run."""
    page.goto(f"{lab['url']}/lab/tree/{name}?token={TOKEN}&reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
    # The kernel is up once the toolbar's status says idle.
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    # The kernel must be connected and idle first, or Run All is dropped.
    page.wait_for_function(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            const kernel = panel?.sessionContext?.session?.kernel;
            return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
        }""",
        polling=250,
    )
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    # Done when every code cell has an execution count and the kernel is idle again.
    page.wait_for_function(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            const model = panel.content.model;
            for (let i = 0; i < model.cells.length; i++) {
                const cell = model.cells.get(i);
                if (cell.type === 'code' && !cell.executionCount) return false;
            }
            const kernel = panel.sessionContext.session?.kernel;
            return kernel && kernel.status === 'idle';
        }""",
        timeout=STEP_MS * 3,
        polling=250,
    )
    counts = page.evaluate(
        """() => {
            const model = window.jupyterapp.shell.currentWidget.content.model;
            const counts = [];
            for (let i = 0; i < model.cells.length; i++) {
                const cell = model.cells.get(i);
                if (cell.type === 'code') counts.push(cell.executionCount);
            }
            return counts;
        }"""
    )
    assert counts == list(range(1, len(counts) + 1)), f"{name}: cells ran as {counts}"


def assert_clean(page: Any, name: str) -> None:
    tracebacks = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
    texts = [t for t in tracebacks.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not texts, f"{name}: errors on the page: {texts}"
    assert page.locator(".jp-OutputArea-output .jp-RenderedText:has-text('Traceback')").count() == 0
    errors = page.console_errors
    assert not errors, f"{name}: browser console errors: {errors}"
    # A widget that did not render shows its text repr ('<Panel ...>', 'VBox(...)').
    unrendered = page.locator(".jp-OutputArea-output :text-matches('^<(Panel|ActionButton) ')")
    assert unrendered.count() == 0, f"{name}: a widget shows as text"
    assert page.locator(".jp-OutputArea-output:has-text('Error displaying widget')").count() == 0


def demo_db(lab: dict[str, Any]) -> Path:
    """The database the control-panel notebook made (in its mkdtemp folder, under ours)."""
    found = sorted(lab["scratch"].glob("testio-demo-*/demo.db"), key=os.path.getmtime)
    assert found, "the notebook made no database"
    return found[-1]


def mirror_runs(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute("SELECT mode, status FROM sync_runs ORDER BY id"))
    finally:
        conn.close()


def backups_of(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.glob(f"{db.stem}.backup-*{db.suffix}"))


def until(check: Any, what: str) -> None:
    """Wait for ``check()`` to hold, bounded (a hang fails the test instead of blocking)."""
    for _ in range(STEP_MS // 50):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def run_code(page: Any, code: str) -> None:
    """Type a new cell at the end of the notebook and run it, as a user would."""
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below, selected
    page.keyboard.press("Enter")  # edit it
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")


@pytest.mark.timeout(600)
def test_every_notebook_runs_in_jupyterlab(page: Any, lab: dict[str, Any]) -> None:
    for name in NOTEBOOKS:
        if not name.startswith(ONLY):
            continue
        print(f"{name}: opening", flush=True)
        page.console_errors.clear()
        try:
            open_and_run_all(page, lab, name)
        except Exception:
            page.screenshot(path=str(lab["log"].with_name(f"{name}.png")), full_page=True)
            print(lab["log"].read_text()[-3000:])
            raise
        assert_clean(page, name)
        print(f"{name}: ran clean", flush=True)
        if name.startswith("04"):
            assert page.locator(".testio-panel").count() >= 2, "panel and button as widgets"
            click_the_panel(page, lab)
            assert_clean(page, name)


def click_the_panel(page: Any, lab: dict[str, Any]) -> None:
    """Click the panel's buttons with the mouse; after each, check the page and the file."""
    from playwright.sync_api import expect

    db = demo_db(lab)
    panel = page.locator(".testio-panel").first
    summary = panel.locator(".testio-summary")
    progress = panel.locator(".widget-hprogress")
    confirmation = panel.locator(".testio-confirmation")

    def button(label: str) -> Any:
        # By its text (icons add CSS glyphs to a button's accessible name).
        exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
        return panel.locator("button.widget-button", has_text=exact)

    red = button("Delete and rebuild")

    def press(label: str, mode: str, status: str = "success") -> None:
        runs = mirror_runs(db)
        button(label).click()
        expect(summary).to_contain_text(f"{mode} {status}", timeout=STEP_MS)
        expect(button("Sync")).to_be_enabled()
        expect(progress).to_contain_text(f"{mode}: {status}")
        assert mirror_runs(db) == [*runs, (mode, status)]

    # The card shows what the mirror holds, in words.
    card = panel.locator(".testio-status")
    expect(card).to_contain_text("SANDBOX data")
    expect(card).to_contain_text("150 tests")

    press("Sync", "sync")
    press("Refresh", "refresh")
    expect(card).to_contain_text("Last refresh")

    # Nuke...: the plan, a wrong word (the red button stays disabled), Cancel.
    runs, backups = mirror_runs(db), backups_of(db)
    button("Nuke...").click()
    expect(confirmation).to_be_visible()
    expect(confirmation).to_contain_text("Nothing has changed yet")
    expect(confirmation).not_to_contain_text("confirm=True")
    expect(red).to_be_disabled()
    confirmation.locator("input").fill("nuk")
    expect(red).to_be_disabled()
    button("Cancel").click()
    expect(confirmation).to_be_hidden()
    assert (mirror_runs(db), backups_of(db)) == (runs, backups)

    # The right word, then Delete and rebuild: rebuilt, and the old file kept as a backup.
    button("Nuke...").click()
    confirmation.locator("input").fill("nuke")
    expect(red).to_be_enabled()
    red.click()
    expect(summary).to_contain_text("nuke success", timeout=STEP_MS)
    expect(summary).to_contain_text("tt.restore()")
    expect(confirmation).to_be_hidden()
    assert mirror_runs(db) == [*runs, ("nuke", "success")]
    kept = backups_of(db)
    assert kept and kept != backups, "a new backup"

    # Stop during a slowed refresh: shown as stopped, recorded as cancelled.
    run_code(page, "tt.bundled_sandbox().set_faults(latency_ms=300)")
    runs = mirror_runs(db)
    button("Refresh").click()
    until(lambda: ("refresh", "running") in mirror_runs(db)[len(runs) :], "the refresh to start")
    expect(button("Stop")).to_be_enabled()
    button("Stop").click()
    expect(summary).to_contain_text("Stopped.", timeout=STEP_MS)
    expect(progress).to_contain_text("refresh: stopped")
    expect(panel.locator(".testio-progress-text")).to_contain_text("stopped after")
    expect(button("Stop")).to_be_disabled()
    assert mirror_runs(db) == [*runs, ("refresh", "cancelled")]
    run_code(page, "tt.bundled_sandbox().set_faults(latency_ms=0)")
    press("Sync", "sync")
