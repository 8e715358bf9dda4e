"""Execute the example notebooks for real and write them back with their outputs.

Usage, from the repository root::

    uv run python notebooks/run_notebooks.py                      # every notebook
    uv run python notebooks/run_notebooks.py 04-control-panel.ipynb

Each notebook runs top to bottom in a fresh ``python3`` kernel with ``notebooks/`` as its
working directory. The throwaway folder it works in (``tempfile.mkdtemp(prefix=
"testio-demo-")``) is then written as ``<demo-dir>`` everywhere in the file, outputs and
stored widget state alike, and a notebook that still holds a temp or home path, the
repository's path or the sandbox token is refused, so committed outputs stay portable and
secret-free. nbval maps fresh outputs the same way (``nbval-sanitize.cfg``).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent
DEMO_DIR = re.compile(r"""[^\s'"()<>=]*testio-demo-[A-Za-z0-9_]+""")
SANDBOX_TOKEN = "sandbox-token"


def scrub(value: Any) -> Any:
    """The same structure with every throwaway-folder path replaced by ``<demo-dir>``."""
    if isinstance(value, str):
        return DEMO_DIR.sub("<demo-dir>", value)
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, dict):
        return value.__class__({key: scrub(item) for key, item in value.items()})
    return value


def leaks(text: str) -> list[str]:
    """Machine-specific paths or secrets still present in the notebook's text."""
    forbidden = {
        SANDBOX_TOKEN,
        str(Path.home()) + "/",
        str(Path(tempfile.gettempdir())) + "/",
        str(HERE.parent) + "/",
        "/tmp/",
        "/root/",
    }
    return sorted(word for word in forbidden if word in text)


def run(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = scrub(cell.outputs)
    notebook.metadata = scrub(notebook.metadata)
    text = nbformat.writes(notebook)
    found = leaks(text)
    if found:
        where = [text[max(0, i - 80) : i + 80] for word in found for i in [text.index(word)]]
        raise SystemExit(f"{path.name}: outputs still hold {found}, e.g. {where}; not written")
    path.write_text(text, encoding="utf-8")
    print(f"{path.name}: executed and written")


def main(names: list[str]) -> None:
    paths = [HERE / name for name in names] if names else sorted(HERE.glob("[0-9]*.ipynb"))
    for path in paths:
        run(path)


if __name__ == "__main__":
    main(sys.argv[1:])
