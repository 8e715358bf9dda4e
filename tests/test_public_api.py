"""The public surface is a reviewed list, and every name in it explains itself."""

from __future__ import annotations
import __future__

import asyncio
import inspect
import os
import subprocess
import sys

import testio_toolkit as tt
from testio_toolkit import errors, widgets
from testio_toolkit.sandbox import Sandbox

from .conftest import make_mirror


def test_all_is_every_public_name_of_the_package() -> None:
    # Derived from the module, as httpx's test_exported_members is: whatever a user can
    # reach as tt.<name> (submodules and `from __future__` aside) is listed, and resolves.
    defined = {
        name
        for name, value in vars(tt).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and not isinstance(value, __future__._Feature)
    }
    assert defined == set(tt.__all__)
    assert len(tt.__all__) == len(set(tt.__all__))
    for name in tt.__all__:
        assert getattr(tt, name) is not None
    # `db` opens the file, so it is left out of `__all__` (star imports) but shown by dir().
    assert set(tt.__all__) | {"db"} <= set(dir(tt))


def test_a_star_import_works_before_the_first_sync(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A fresh interpreter, no database yet: `import *` must not open (or create) anything.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env["TESTIO_DB_PATH"] = str(tmp_path / "none.db")
    script = "from testio_toolkit import *; print(Mirror.__name__, callable(sync))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Mirror", "True"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_every_error_of_the_tree_is_exported() -> None:
    for name in errors.__all__:
        assert getattr(tt, name) is getattr(errors, name)
        assert issubclass(getattr(tt, name), tt.ToolkitError)


def test_every_public_name_has_a_docstring_with_a_call() -> None:
    for name in tt.__all__:
        doc = inspect.getdoc(getattr(tt, name)) or ""
        assert doc, f"tt.{name} has no docstring"
    assert "tt.db" in (inspect.getdoc(tt.Mirror.db) or "")
    for name in ("sync", "refresh", "nuke", "nuke_plan"):
        assert f"tt.{name}(" in (inspect.getdoc(getattr(tt.Mirror, name)) or "")


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


def test_mirror_and_async_mirror_have_the_same_methods_and_signatures() -> None:
    blocking, awaitable = public_methods(tt.Mirror), public_methods(tt.AsyncMirror)

    assert blocking == awaitable
    assert {"sync", "refresh", "nuke", "nuke_plan", "restore", "status", "tests"} <= set(blocking)
    # The methods that talk to the service are awaited on one face and not on the other.
    for name in ("sync", "refresh", "nuke", "retry_unreadable"):
        assert inspect.iscoroutinefunction(getattr(tt.AsyncMirror, name)), name
        assert not inspect.iscoroutinefunction(getattr(tt.Mirror, name)), name
    assert inspect.signature(tt.Mirror) == inspect.signature(tt.AsyncMirror)


def without_self(signature: inspect.Signature) -> inspect.Signature:
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def test_the_module_functions_take_the_mirror_methods_parameters() -> None:
    forwarded = [
        name
        for name, value in vars(tt).items()
        if inspect.isfunction(value) and not name.startswith("_") and hasattr(tt.Mirror, name)
    ]
    assert {"sync", "refresh", "nuke", "nuke_plan", "restore", "bugs", "runs"} <= set(forwarded)
    for name in forwarded:
        mirror_method = without_self(inspect.signature(getattr(tt.Mirror, name)))
        assert inspect.signature(getattr(tt, name)) == mirror_method, name
    configure = inspect.signature(tt.configure).parameters
    assert configure == without_self(inspect.signature(tt.Mirror.__init__)).parameters
    for button in ("sync_button", "refresh_button", "nuke_button"):
        assert inspect.signature(getattr(tt, button)) == inspect.signature(
            getattr(widgets, button)
        ), button


def test_importing_the_package_does_not_import_pandas_or_the_server() -> None:
    code = (
        "import sys, testio_toolkit; print('pandas' in sys.modules, 'http.server' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_async_twins_work_inside_asyncio_run(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mirror = make_mirror(sandbox, tmp_path / "m.db")
    twin = tt.AsyncMirror(mirror.path, token=sandbox.token, base_url=sandbox.url, progress=False)

    async def main() -> tuple[str, str]:
        first = await twin.sync()
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


def test_the_blocking_face_runs_the_async_one_with_its_current_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from testio_toolkit.api import as_async

    mirror = tt.Mirror(tmp_path / "m.db", progress=False)
    mirror.wait = 3  # changed after construction: the next run must see it

    twin = as_async(mirror)

    assert isinstance(twin, tt.AsyncMirror) and twin.path == mirror.path and twin.wait == 3
    assert as_async(twin) is twin
