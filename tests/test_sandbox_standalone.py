"""The sandbox stands alone: it imports nothing from the rest of testio_toolkit, and its two
command names are one command."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import testio_toolkit
from testio_toolkit.cli import cli
from testio_toolkit.sandbox.command import sandbox as sandbox_command

PACKAGE = Path(testio_toolkit.__file__).parent
SANDBOX = PACKAGE / "sandbox"

# Imports every module of the sandbox without running testio_toolkit/__init__.py (which
# imports the toolkit), then prints the toolkit modules that got imported.
ALONE = """
import importlib, pkgutil, sys, types
package = types.ModuleType("testio_toolkit")
package.__path__ = [sys.argv[1]]
sys.modules["testio_toolkit"] = package
import testio_toolkit.sandbox as sandbox
for info in pkgutil.walk_packages(sandbox.__path__, "testio_toolkit.sandbox."):
    importlib.import_module(info.name)
sandbox.Sandbox(preset="small").start().stop()
print(sorted(m for m in sys.modules if m.startswith("testio_toolkit")
             and m != "testio_toolkit" and not m.startswith("testio_toolkit.sandbox")))
"""


def test_the_sandbox_imports_nothing_of_the_toolkit() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ALONE, str(PACKAGE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_sandbox_module_names_a_toolkit_module_even_inside_a_function() -> None:
    for path in SANDBOX.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name}:{node.lineno} imports from outside"
                assert not (node.module or "").startswith("testio_toolkit"), path.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("testio_toolkit"), path.name


def test_python_m_sandbox_is_the_toolkit_cli_sandbox_command() -> None:
    assert cli.commands["sandbox"] is sandbox_command
    done = subprocess.run(
        [sys.executable, "-m", "testio_toolkit.sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: python -m testio_toolkit.sandbox [OPTIONS]")
    in_cli = CliRunner().invoke(cli, ["sandbox", "--help"]).output
    # The same options with the same defaults, under two names.
    # (compared without white space: the two wrap their help at different widths)
    assert "".join(done.stdout.split("Options:")[1].split()) == "".join(
        in_cli.split("Options:")[1].split()
    )
