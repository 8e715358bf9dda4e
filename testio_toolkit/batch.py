"""Every account at once: ``tt.sync_all()``, ``testio-toolkit sync --all``.

Usage::

    result = tt.sync_all()                 # every named account, a few at a time
    result = tt.sync_all(refresh=True)     # = testio-toolkit refresh --all (sync --all --force)
    result.ok, result.failed               # True only when every account succeeded
    result                                 # in a notebook: the summary table (HTML)

Each account runs as its own ``AsyncMirror`` (its own writer lock, client and request
limits), at most ``at_once`` of them at a time (``TESTIO_ACCOUNTS_AT_ONCE``, default 4), on
the toolkit's loop, so their waits on the service overlap. One account failing (a refused
token, a service that does not answer, a mirror another process is writing) is recorded in
its row and never stops the others. There is no nuke of every account, on purpose.
"""

from __future__ import annotations

import asyncio
import html
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import accounts
from .client import ClientOptions
from .errors import ConfigError
from .results import SyncResult, format_table
from .runner import run_blocking
from .vocabulary import Mode, RunStatus

if TYPE_CHECKING:
    import pandas as pd

ENV_AT_ONCE = "TESTIO_ACCOUNTS_AT_ONCE"
DEFAULT_AT_ONCE = 4


@dataclass
class AccountOutcome:
    """How one account's run went: its SyncResult, or the error that stopped it."""

    account: str
    status: str
    db_path: str
    result: SyncResult | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the account's run read everything it was asked to."""
        return self.status == RunStatus.SUCCESS

    def line(self) -> str:
        """``acme: success · tests +40 · ...`` or ``beta: failed: AuthenticationError: ...``."""
        if self.result is not None and self.error is None:
            return f"{self.account}: {self.result.headline()}"
        return f"{self.account}: {self.status}: {self.error}"

    def row(self) -> list[str]:
        result = self.result
        why = self.error or (result.change_line if result is not None else "")
        return [
            self.account,
            self.status,
            result.tests.short() if result else "",
            result.bugs.short() if result else "",
            str(result.requests) if result else "",
            f"{self.seconds:.1f}s",
            why[:90],
        ]


@dataclass
class BatchResult:
    """The outcome of ``tt.sync_all()``: one ``AccountOutcome`` per account, in name order."""

    mode: str
    outcomes: list[AccountOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True only when every account succeeded."""
        return all(outcome.ok for outcome in self.outcomes)

    @property
    def failed(self) -> list[AccountOutcome]:
        """The accounts that did not succeed, with why."""
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def table(self) -> list[list[str]]:
        """The summary: account, status, tests and bugs (+added ~updated -gone), requests,
        seconds, and what changed or why it failed."""
        head = ["account", "status", "tests", "bugs", "requests", "time", "changes / why"]
        return [head, *(outcome.row() for outcome in self.outcomes)]

    def headline(self) -> str:
        """``sync --all: 2 of 3 accounts succeeded · failed: beta (AuthenticationError)``."""
        done = sum(outcome.ok for outcome in self.outcomes)
        line = f"{self.mode} --all: {done} of {len(self.outcomes)} accounts succeeded"
        line += f" · {self.seconds:.1f}s"
        if self.failed:
            line += " · not done: " + ", ".join(o.account for o in self.failed)
        return line

    def to_frame(self) -> pd.DataFrame:
        """One row per account: the summary table as a DataFrame."""
        import pandas as pd

        head, *rows = self.table()
        return pd.DataFrame(rows, columns=head)

    def __repr__(self) -> str:
        return f"<BatchResult {self.headline()}>"

    def _repr_html_(self) -> str:
        head, *rows = self.table()
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in rows
        )
        colour = "#2e7d32" if self.ok else "#c62828"
        return (
            f'<div><b style="color:{colour}">{html.escape(self.headline())}</b>'
            f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table></div>"
        )

    def text(self) -> str:
        """The summary table and headline, for a terminal."""
        return format_table(self.table()) + "\n" + self.headline()


def at_once_default() -> int:
    """``TESTIO_ACCOUNTS_AT_ONCE`` or 4."""
    value = os.environ.get(ENV_AT_ONCE, "").strip()
    if not value:
        return DEFAULT_AT_ONCE
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{ENV_AT_ONCE}={value!r} is not a positive whole number")
    return int(value)


async def run_all(
    names: Iterable[str] | None = None,
    *,
    refresh: bool = False,
    at_once: int | None = None,
    client_options: ClientOptions | None = None,
    wait: bool | float = False,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[AccountOutcome], None] | None = None,
) -> BatchResult:
    """The awaitable ``sync_all``: ``await batch.run_all()``. See ``sync_all``."""
    from .api import AsyncMirror  # api imports nothing of this module

    registry = accounts.load()
    chosen = list(names) if names else registry.names()
    if not chosen:
        raise ConfigError(
            f"no accounts in {registry.path}: add one with `testio-toolkit account add NAME`"
        )
    for name in chosen:
        registry.get(name)  # an unknown name is a usage error before anything runs
    limit = at_once if at_once is not None else at_once_default()
    if limit < 1:
        raise ConfigError(f"at_once={limit} must be 1 or more")
    slots = asyncio.Semaphore(limit)
    mode = Mode.REFRESH if refresh else Mode.SYNC

    async def one(name: str) -> AccountOutcome:
        async with slots:
            if on_start is not None:
                on_start(name)
            started = time.monotonic()
            path = str(registry.accounts[name].db_path)
            try:
                mirror = AsyncMirror(
                    account=name, client_options=client_options, progress=False, wait=wait
                )
                run = mirror.refresh if refresh else mirror.sync
                result = await run()
                outcome = AccountOutcome(
                    name, result.status, path, result=result, error=result.error
                )
                if not result.ok and outcome.error is None:
                    failed = [f"{r.product_id}: {r.error}" for r in result.failed_products]
                    outcome.error = "; ".join(failed) or f"the run was {result.status}"
            except Exception as exc:
                outcome = AccountOutcome(
                    name, RunStatus.FAILED, path, error=f"{type(exc).__name__}: {exc}"
                )
            outcome.seconds = time.monotonic() - started
            if on_done is not None:
                on_done(outcome)
            return outcome

    started = time.monotonic()
    outcomes = await asyncio.gather(*(one(name) for name in chosen))
    return BatchResult(mode, list(outcomes), time.monotonic() - started)


def sync_all(
    names: Iterable[str] | None = None,
    *,
    refresh: bool = False,
    at_once: int | None = None,
    client_options: ClientOptions | None = None,
    wait: bool | float = False,
    on_start: Callable[[str], None] | None = None,
    on_done: Callable[[AccountOutcome], None] | None = None,
) -> BatchResult:
    """Sync (or refresh) every named account, a few at a time; never a nuke.

    >>> result = tt.sync_all()                      # CLI: testio-toolkit sync --all
    >>> tt.sync_all(["acme", "globex"], refresh=True, at_once=2)
    >>> result.ok, [o.account for o in result.failed]

    Every account runs with its own lock and client; one that fails (token refused,
    service down, mirror locked) is reported in its row and the others go on.
    ``on_start(name)`` and ``on_done(outcome)`` report each account's progress.
    """
    return run_blocking(
        run_all(
            names,
            refresh=refresh,
            at_once=at_once,
            client_options=client_options,
            wait=wait,
            on_start=on_start,
            on_done=on_done,
        )
    )
