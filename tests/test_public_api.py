"""The public surface is a reviewed list, and every name in it explains itself."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys

import testio_toolkit as tt
from testio_toolkit.sandbox import Sandbox

from .conftest import make_mirror

PUBLIC = {
    "Mirror",
    "MirrorStatus",
    "NukePlan",
    "ProgressEvent",
    "SyncResult",
    "ToolkitError",
    "anuke",
    "arefresh",
    "async_",
    "bugs",
    "bundled_sandbox",
    "changes",
    "configure",
    "features",
    "nuke",
    "nuke_button",
    "panel",
    "products",
    "refresh",
    "refresh_button",
    "restore",
    "retry_unreadable",
    "runs",
    "status",
    "sync",
    "sync_button",
    "tests",
    "unreadable",
}


def test_all_is_exactly_the_public_names() -> None:
    assert set(tt.__all__) == PUBLIC


def test_every_public_name_has_a_docstring_with_a_call() -> None:
    for name in tt.__all__:
        doc = inspect.getdoc(getattr(tt, name)) or ""
        assert doc, f"tt.{name} has no docstring"
    for name in ("sync", "refresh", "nuke"):
        assert f"tt.{name}(" in (inspect.getdoc(getattr(tt.Mirror, name)) or "")


def test_importing_the_package_does_not_import_pandas_or_the_server() -> None:
    code = (
        "import sys, testio_toolkit; print('pandas' in sys.modules, 'http.server' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_async_twins_work_inside_asyncio_run(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mirror = make_mirror(sandbox, tmp_path / "m.db")

    async def main() -> tuple[str, str]:
        first = await mirror.async_()
        # The plain function works from inside a running loop too.
        second = mirror.refresh()
        return first.status, second.status

    assert asyncio.run(main()) == ("success", "success")


def test_the_plain_function_works_in_a_plain_script(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = (
        "import sys, testio_toolkit as tt\n"
        "m = tt.Mirror(sys.argv[1], token=sys.argv[2], base_url=sys.argv[3], progress=False)\n"
        "print(m.refresh().status)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "m.db"), sandbox.token, sandbox.url],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == "success"


def test_tt_db_is_a_sqlite_utils_database_on_the_current_file(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tt.configure(tmp_path / "m.db", token=sandbox.token, base_url=sandbox.url, progress=False)
    tt.sync()

    rows = list(tt.db.query("select count(*) as n from tests"))

    assert rows == [{"n": len(sandbox.truth().tests)}]
