"""Serve a sandbox from a terminal: ``python -m testio_toolkit.sandbox --preset medium``.

The same command as ``testio-toolkit sandbox`` (``command.py``): same options, same defaults.
"""

from __future__ import annotations

from .command import sandbox

if __name__ == "__main__":
    sandbox(prog_name="python -m testio_toolkit.sandbox")
