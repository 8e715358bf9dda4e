"""testio-toolkit: a local SQLite mirror of a TestIO account, as pandas DataFrames.

Usage::

    import testio_toolkit as tt
    tt.sync()                        # incremental update (no token: the bundled sandbox)
    tt.tests(status="running")       # DataFrames: products, tests, bugs, features, runs
    tt.changes(since="7d")           # what the runs changed: the change feed
    tt.refresh()                     # full, non-destructive refresh (CLI: sync --force)
    tt.nuke_plan()                   # what a nuke would throw away; reads only
    tt.nuke(confirm=True)            # rebuild from scratch, keep a backup (CLI: sync --nuke)
    tt.panel()                       # buttons for all of the above, in a notebook
    tt.db.query("select ...")        # a sqlite_utils.Database on the mirror, for SQL

A portfolio of customers (``testio-toolkit account add acme``, token in the OS keyring)::

    tt.use("acme")                   # the functions here now work on acme's mirror
    tt.Mirror(account="globex").sync()
    tt.sync_all()                    # every account, a few at a time (CLI: sync --all)
    tt.portfolio.bugs(since="30d")   # frames across accounts, with an `account` column

Everything here works on the default mirror (configured from the environment, see
``tt.configure``); ``tt.Mirror(...)`` gives the same methods for another database, and
``tt.AsyncMirror(...)`` the same again, awaitable, for code in an event loop. Every error
is a ``tt.ToolkitError``; the tree is in ``testio_toolkit.errors``.

The functions here forward to ``default_mirror()`` with the parameters of the ``Mirror``
method of the same name, written out (tested), so Shift+Tab and ``help()`` show them.
"""

from __future__ import annotations

import typing

from . import accounts as accounts  # tt.accounts.add(...): named accounts
from . import portfolio as portfolio  # tt.portfolio.bugs(...): frames across accounts
from .api import (
    AsyncMirror,
    Mirror,
    MirrorStatus,
    bundled_sandbox,
    configure,
    default_mirror,
    use,
)
from .backups import NukePlan
from .batch import sync_all
from .errors import (
    ApiError,
    AuthenticationError,
    Cancelled,
    ConfigError,
    ConfirmationRequired,
    ExportError,
    NoBackup,
    NotFound,
    PagingIgnored,
    PermissionDenied,
    RateLimited,
    RebuildFailed,
    SchemaTooNew,
    ServiceError,
    StoreCorrupt,
    StoreError,
    SyncInProgress,
    ToolkitError,
)
from .export import ExportResult
from .results import ProgressEvent, SyncResult
from .scrub import ScrubReport

if typing.TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    import pandas as pd
    import sqlite_utils

    from . import frames
    from .api import BaseMirror, Products, Since
    from .metrics import HealthFrame
    from .reporting import Report
    from .results import ProgressCallback
    from .widgets import ActionButton, Panel


def sync(
    products: Products = None,
    since: Since = None,
    *,
    dry_run: bool = False,
    progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> SyncResult:
    """Incremental sync of the default mirror; see ``Mirror.sync``.

    >>> tt.sync()                              # every product
    >>> tt.sync(products=[12], since="30d", dry_run=True)
    """
    return default_mirror().sync(
        products, since, dry_run=dry_run, progress=progress, on_progress=on_progress
    )


def refresh(
    products: Products = None,
    since: Since = None,
    *,
    dry_run: bool = False,
    progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> SyncResult:
    """Full, non-destructive refresh of the default mirror; see ``Mirror.refresh``.

    >>> tt.refresh()                           # CLI: testio-toolkit sync --force
    """
    return default_mirror().refresh(
        products, since, dry_run=dry_run, progress=progress, on_progress=on_progress
    )


def nuke(
    products: Products = None,
    *,
    confirm: bool = False,
    progress: bool | None = None,
    on_progress: ProgressCallback | None = None,
) -> SyncResult:
    """Confirmed, reversible rebuild of the default mirror; see ``Mirror.nuke``.

    >>> tt.nuke(confirm=True)      # CLI: testio-toolkit sync --nuke --yes
    >>> tt.nuke()                  # raises tt.ConfirmationRequired; nothing changes
    """
    return default_mirror().nuke(
        products, confirm=confirm, progress=progress, on_progress=on_progress
    )


def export(
    destination: str | None = None,
    account: str | None = None,
    *,
    include_raw: bool = False,
    include_local: bool = False,
    pseudonymize: bool = False,
    progress: bool | None = None,
) -> ExportResult:
    """Load the default mirror into DuckDB, Postgres or another dlt destination; see
    ``Mirror.export`` (needs ``testio-toolkit[export]``).

    >>> tt.export()                            # team.duckdb beside the mirror
    >>> tt.export(destination="postgres")      # CLI: testio-toolkit export --to postgres
    """
    return default_mirror().export(
        destination,
        account,
        include_raw=include_raw,
        include_local=include_local,
        pseudonymize=pseudonymize,
        progress=progress,
    )


def nuke_plan(products: Products = None) -> NukePlan:
    """What a nuke of the default mirror would throw away; reads only.

    >>> tt.nuke_plan()             # CLI: testio-toolkit sync --nuke --dry-run
    """
    return default_mirror().nuke_plan(products)


def restore() -> Path:
    """Bring back the newest backup a nuke kept: ``tt.restore()``; see ``Mirror.restore``."""
    return default_mirror().restore()


def scrub() -> ScrubReport | None:
    """Remove customers' credentials from the default mirror and its backups:
    ``tt.scrub()``; see ``Mirror.scrub`` (every run does it once by itself)."""
    return default_mirror().scrub()


def status() -> MirrorStatus:
    """What the default mirror holds and when each mode last ran: ``tt.status()``."""
    return default_mirror().status()


def products(*, include_deleted: bool = False) -> pd.DataFrame:
    """Products as a DataFrame: ``tt.products()``."""
    return default_mirror().products(include_deleted=include_deleted)


def tests(
    product: frames.Filter = None,
    status: frames.Filter = None,
    since: Since = None,
    *,
    until: Since = None,
    include_deleted: bool = False,
) -> pd.DataFrame:
    """Tests as a DataFrame: ``tt.tests(product=12, status="running", since="30d")``;
    ``since``/``until`` filter ``end_at`` ("2026-Q3", "2026-07", "3mo", ...); see
    ``Mirror.tests``."""
    return default_mirror().tests(
        product, status, since, until=until, include_deleted=include_deleted
    )


def bugs(
    product: frames.Filter = None,
    test: frames.Filter = None,
    status: frames.Filter = None,
    severity: frames.Filter = None,
    since: Since = None,
    *,
    until: Since = None,
    include_deleted: bool = False,
) -> pd.DataFrame:
    """Bugs with test title and product: ``tt.bugs(severity="critical", since="30d")``;
    ``test`` takes ids or titles, ``since``/``until`` filter ``created_at``; see
    ``Mirror.bugs``."""
    return default_mirror().bugs(
        product, test, status, severity, since, until=until, include_deleted=include_deleted
    )


def bug_devices(
    product: frames.Filter = None,
    test: frames.Filter = None,
    since: Since = None,
    *,
    until: Since = None,
) -> pd.DataFrame:
    """The devices bugs were reported on, one row each: ``tt.bug_devices(product=12)``;
    see ``Mirror.bug_devices``."""
    return default_mirror().bug_devices(product, test, since, until=until)


def features(product: frames.Filter = None) -> pd.DataFrame:
    """Features as a DataFrame: ``tt.features(product=12)``."""
    return default_mirror().features(product)


def changes(
    since: Since = "7d",
    product: frames.Filter = None,
    entity: frames.Filter = None,
    kind: frames.Filter = None,
    run: frames.Filter = None,
    *,
    until: Since = None,
) -> pd.DataFrame:
    """What the runs changed, one row per change: ``tt.changes(since="7d", entity="bug")``;
    see ``Mirror.changes``."""
    return default_mirror().changes(since, product, entity, kind, run, until=until)


def review_times(
    product: frames.Filter = None, since: Since = None, *, until: Since = None
) -> pd.DataFrame:
    """When each bug was first seen decided, bounded by the syncs around it:
    ``tt.review_times(product=12)``; see ``Mirror.review_times``."""
    return default_mirror().review_times(product, since, until=until)


def health(
    by: str | list[str] | None = "product",
    period: str | None = "month",
    product: frames.Filter = None,
    since: Since = None,
    *,
    until: Since = None,
    thresholds: dict[str, Any] | None = None,
) -> HealthFrame:
    """Health measures, coloured by the playbook's thresholds:
    ``tt.health(by="product", period="month")``; see ``Mirror.health`` and
    ``testio_toolkit.metrics`` for the formulas."""
    return default_mirror().health(by, period, product, since, until=until, thresholds=thresholds)


def report(
    product: frames.Filter = None,
    period: str = "",
    *,
    path: str | Path | None = None,
) -> Report:
    """A period's report as HTML and Markdown: ``tt.report(product=12, period="2026-Q3")``;
    ``path="q3.md"`` (or ``.html``) saves it; see ``Mirror.report``."""
    return default_mirror().report(product, period, path=path)


def runs() -> pd.DataFrame:
    """The run history as a DataFrame: ``tt.runs()``."""
    return default_mirror().runs()


def unreadable(*, include_resolved: bool = False) -> pd.DataFrame:
    """Records the service could not serve, waiting for a retry: ``tt.unreadable()``."""
    return default_mirror().unreadable(include_resolved=include_resolved)


def retry_unreadable(*, progress: bool | None = None) -> SyncResult | None:
    """Read the unreadable records again: ``tt.retry_unreadable()``."""
    return default_mirror().retry_unreadable(progress=progress)


def panel(mirror: BaseMirror | None = None) -> Panel:
    """The control panel for a notebook: ``tt.panel()`` (needs ipywidgets)."""
    from .widgets import Panel

    return Panel(mirror or default_mirror())


def sync_button(
    mirror: BaseMirror | None = None,
    *,
    products: Products = None,
    since: Since = None,
    dry_run: bool = False,
) -> ActionButton:
    """A single Sync button with progress and summary: ``tt.sync_button()``."""
    from . import widgets

    return widgets.sync_button(mirror, products=products, since=since, dry_run=dry_run)


def refresh_button(
    mirror: BaseMirror | None = None,
    *,
    products: Products = None,
    since: Since = None,
    dry_run: bool = False,
) -> ActionButton:
    """A single Refresh button with progress and summary: ``tt.refresh_button()``."""
    from . import widgets

    return widgets.refresh_button(mirror, products=products, since=since, dry_run=dry_run)


def nuke_button(mirror: BaseMirror | None = None, *, products: Products = None) -> ActionButton:
    """A Nuke... button that shows the plan and asks for the word first: ``tt.nuke_button()``."""
    from . import widgets

    return widgets.nuke_button(mirror, products=products)


def __getattr__(name: str) -> sqlite_utils.Database:
    # `tt.db` is computed on each access, so it always opens the database now in place.
    if name == "db":
        return default_mirror().db
    raise AttributeError(f"module 'testio_toolkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    # `db` lives in __getattr__; dir(tt) and tab completion should show it all the same.
    return sorted({*globals(), "db"})


# `db` is public (in `dir(tt)` and the module's docstring) but not in `__all__`: `__all__` is what
# `from testio_toolkit import *` evaluates, and `db` opens the database file, so listing it
# would make a star import fail before the first sync (tested).


__all__ = [
    "ApiError",
    "AsyncMirror",
    "AuthenticationError",
    "Cancelled",
    "ConfigError",
    "ConfirmationRequired",
    "ExportError",
    "ExportResult",
    "Mirror",
    "MirrorStatus",
    "NoBackup",
    "NotFound",
    "NukePlan",
    "PagingIgnored",
    "PermissionDenied",
    "ProgressEvent",
    "RateLimited",
    "RebuildFailed",
    "SchemaTooNew",
    "ScrubReport",
    "ServiceError",
    "StoreCorrupt",
    "StoreError",
    "SyncInProgress",
    "SyncResult",
    "ToolkitError",
    "bug_devices",
    "bugs",
    "bundled_sandbox",
    "changes",
    "configure",
    "default_mirror",
    "export",
    "features",
    "health",
    "nuke",
    "nuke_button",
    "nuke_plan",
    "panel",
    "products",
    "refresh",
    "refresh_button",
    "report",
    "restore",
    "retry_unreadable",
    "review_times",
    "runs",
    "scrub",
    "status",
    "sync",
    "sync_all",
    "sync_button",
    "tests",
    "unreadable",
    "use",
]
