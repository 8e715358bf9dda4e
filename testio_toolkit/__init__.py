"""testio-toolkit: a local SQLite mirror of a TestIO account, as pandas DataFrames.

Usage::

    import testio_toolkit as tt
    tt.sync()                        # incremental update (no token: the bundled sandbox)
    tt.tests(status="running")       # DataFrames: products, tests, bugs, features, runs
    tt.changes(since="7d")           # what the runs changed: the change feed
    tt.refresh()                     # full, non-destructive refresh (CLI: sync --force)
    tt.nuke(confirm=True)            # rebuild from scratch, keep a backup (CLI: sync --nuke)
    tt.panel()                       # buttons for all of the above, in a notebook

Everything here works on the default mirror (configured from the environment, see
``tt.configure``); ``tt.Mirror(...)`` gives the same methods for another database.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .api import Mirror, MirrorStatus, bundled_sandbox, configure, default_mirror
from .backups import NukePlan
from .errors import ToolkitError
from .results import ProgressEvent, SyncResult

if TYPE_CHECKING:
    import pandas as pd
    import sqlite_utils

    from .widgets import Panel

F = TypeVar("F", bound=Callable[..., Any])


def _like(method: Callable[..., Any]) -> Callable[[F], F]:
    """Give a one-shot function the parameters of the ``Mirror`` method it calls, so
    Shift+Tab and ``help()`` show ``tt.bugs(product=None, ..., severity=None, ...)``, not
    ``(*args, **options)``. The function keeps its own docstring."""
    parameters = list(inspect.signature(method).parameters.values())[1:]  # without self
    shown = inspect.signature(method).replace(parameters=parameters)

    def give(func: F) -> F:
        func.__signature__ = shown  # type: ignore[attr-defined]
        return func

    return give


@_like(Mirror.sync)
def sync(products: Any = None, since: Any = None, **options: Any) -> SyncResult:
    """Incremental sync of the default mirror; see ``Mirror.sync``.

    >>> tt.sync()                              # every product
    >>> tt.sync(products=[12], since="30d", dry_run=True)
    """
    return default_mirror().sync(products, since, **options)


@_like(Mirror.async_)
async def async_(products: Any = None, since: Any = None, **options: Any) -> SyncResult:
    """Async twin of ``sync()``: ``await tt.async_()``."""
    return await default_mirror().async_(products, since, **options)


@_like(Mirror.refresh)
def refresh(products: Any = None, since: Any = None, **options: Any) -> SyncResult:
    """Full, non-destructive refresh of the default mirror; see ``Mirror.refresh``.

    >>> tt.refresh()                           # CLI: testio-toolkit sync --force
    """
    return default_mirror().refresh(products, since, **options)


@_like(Mirror.arefresh)
async def arefresh(products: Any = None, since: Any = None, **options: Any) -> SyncResult:
    """Async twin of ``refresh()``: ``await tt.arefresh()``."""
    return await default_mirror().arefresh(products, since, **options)


@_like(Mirror.nuke)
def nuke(products: Any = None, **options: Any) -> NukePlan | SyncResult:
    """Confirmed, reversible rebuild of the default mirror; see ``Mirror.nuke``.

    >>> tt.nuke()                  # a NukePlan; nothing changes
    >>> tt.nuke(confirm=True)      # CLI: testio-toolkit sync --nuke --yes
    """
    return default_mirror().nuke(products, **options)


@_like(Mirror.anuke)
async def anuke(products: Any = None, **options: Any) -> NukePlan | SyncResult:
    """Async twin of ``nuke()``: ``await tt.anuke(confirm=True)``."""
    return await default_mirror().anuke(products, **options)


def restore() -> Any:
    """Bring back the newest backup a nuke kept; see ``Mirror.restore``."""
    return default_mirror().restore()


def status() -> MirrorStatus:
    """What the default mirror holds and when each mode last ran."""
    return default_mirror().status()


@_like(Mirror.products)
def products(**options: Any) -> pd.DataFrame:
    """Products as a DataFrame: ``tt.products()``."""
    return default_mirror().products(**options)


@_like(Mirror.tests)
def tests(*args: Any, **options: Any) -> pd.DataFrame:
    """Tests as a DataFrame: ``tt.tests(product=12, status="running", since="30d")``."""
    return default_mirror().tests(*args, **options)


@_like(Mirror.bugs)
def bugs(*args: Any, **options: Any) -> pd.DataFrame:
    """Bugs with test title and product: ``tt.bugs(severity="critical", since="30d")``."""
    return default_mirror().bugs(*args, **options)


@_like(Mirror.features)
def features(*args: Any, **options: Any) -> pd.DataFrame:
    """Features as a DataFrame: ``tt.features(product=12)``."""
    return default_mirror().features(*args, **options)


def changes(
    since: str | None = "7d",
    product: Any = None,
    entity: Any = None,
    kind: Any = None,
    run: Any = None,
) -> pd.DataFrame:
    """What changed, one row per change: ``tt.changes(since="7d", entity="bug")``;
    see ``Mirror.changes``."""
    return default_mirror().changes(since=since, product=product, entity=entity, kind=kind, run=run)


def runs() -> pd.DataFrame:
    """The run history as a DataFrame: ``tt.runs()``."""
    return default_mirror().runs()


@_like(Mirror.unreadable)
def unreadable(**options: Any) -> pd.DataFrame:
    """Records the service could not serve, waiting for a retry: ``tt.unreadable()``."""
    return default_mirror().unreadable(**options)


@_like(Mirror.retry_unreadable)
def retry_unreadable(**options: Any) -> SyncResult | None:
    """Read the unreadable records again: ``tt.retry_unreadable()``."""
    return default_mirror().retry_unreadable(**options)


def panel(mirror: Mirror | None = None) -> Panel:
    """The control panel for a notebook: ``tt.panel()`` (needs ipywidgets)."""
    from .widgets import Panel

    return Panel(mirror or default_mirror())


def sync_button(mirror: Mirror | None = None, **options: Any) -> Any:
    """A single Sync button with progress and summary: ``tt.sync_button()``."""
    from . import widgets

    return widgets.sync_button(mirror, **options)


def refresh_button(mirror: Mirror | None = None, **options: Any) -> Any:
    """A single Refresh button with progress and summary: ``tt.refresh_button()``."""
    from . import widgets

    return widgets.refresh_button(mirror, **options)


def nuke_button(mirror: Mirror | None = None, **options: Any) -> Any:
    """A Nuke... button that shows the plan and asks for the word first: ``tt.nuke_button()``."""
    from . import widgets

    return widgets.nuke_button(mirror, **options)


def __getattr__(name: str) -> sqlite_utils.Database:
    # `tt.db` is computed on each access, so it always opens the database now in place.
    if name == "db":
        return default_mirror().db
    raise AttributeError(f"module 'testio_toolkit' has no attribute {name!r}")


__all__ = [
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
]
