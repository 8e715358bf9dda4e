"""A real PostgreSQL server for the export tests and benchmark, in a temporary folder.

Debian's ``initdb`` and ``pg_ctl`` refuse root, so the cluster belongs to ``nobody``: its
folder is made in the system's temp dir (pytest's own tmp folders are private to root),
the server listens on a free port of 127.0.0.1 only (no Unix socket), password auth, and
it is stopped by its process id (``postmaster.pid``).

    with PostgresServer() as pg:
        pg.url()              # postgresql://testio:...@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

USER = "testio"
PASSWORD = "pg-Pass-7c1e2b-not-real"
OWNER = "nobody"


def available() -> str | None:
    """Why a server cannot be started here, or None when it can."""
    for tool in ("initdb", "pg_ctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install postgresql)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """``initdb`` + ``pg_ctl start`` as an unprivileged user; ``stop()`` kills its pid."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="testio-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.pid: int | None = None

    def _as_owner(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", OWNER, "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, check=False)

    def start(self) -> Self:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        password_file = self.folder / "password"
        password_file.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        done = self._as_owner(
            "initdb", "-D", str(self.data), "-U", USER, "--auth=scram-sha-256",
            f"--pwfile={password_file}", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=off -c full_page_writes=off"
        log = str(self.folder / "server.log")
        done = self._as_owner(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start"
        )
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-2000:]}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def url(self, password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{port or self.port}/postgres"

    def connect(self) -> Any:
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="postgres"
        )

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)  # "fast" shutdown
                for _ in range(100):
                    os.kill(self.pid, 0)
                    time.sleep(0.05)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
