"""The public face: a mirror per database, and one-shot functions over a default one.

Usage in a notebook::

    import testio_toolkit as tt
    tt.sync()                   # incremental: new tests, changeable tests, their bugs
    tt.tests(status="running")  # a DataFrame
    tt.refresh()                # re-read everything, upsert, mark what is gone; keeps local state
    tt.nuke_plan()              # what a nuke would throw away; nothing changes
    tt.nuke(confirm=True)       # rebuild aside, swap in, keep a backup
    tt.restore()                # bring the backup back

With no token configured everything runs against the bundled sandbox (and says so).
To point at another database or account, make a ``Mirror`` (or ``tt.configure(...)``)::

    acme = tt.Mirror("~/acme.db", token="...")
    acme.refresh(products=[12], since="30d")

Code that already runs in an event loop uses ``tt.AsyncMirror``, as httpx has ``Client``
and ``AsyncClient``: the same methods and parameters, and the ones that talk to the service
(``sync``, ``refresh``, ``nuke``, ``retry_unreadable``) are awaited::

    acme = tt.AsyncMirror("~/acme.db", token="...")
    await acme.sync()

The async methods are the one implementation; ``Mirror`` runs them on the toolkit's loop
(``runner.py``), and the local reads (frames, ``status``, ``nuke_plan``, ``backups``, ``db``)
live in ``BaseMirror``, plain calls on both. Every mode runs through ``AsyncMirror._run``:
lock, leftovers, client, products, account, the store to write into (``rebuild.py``: the
mirror, a dry run's copy of it, or a nuke's rebuild), then the engine (``sync.run_plan``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import account, accounts, backups, rebuild
from .backups import NukePlan
from .client import ClientOptions, TestIOClient
from .config import Settings, parse_product_ids
from .errors import ConfigError, ConfirmationRequired, StoreError, ToolkitError
from .limiter import LimiterFigures
from .lock import WriterLock
from .progress import ProgressBars
from .results import ProgressCallback, SyncResult
from .rows import parse_since
from .runner import run_blocking
from .scrub import ScrubReport, scrub_before_reading, scrub_mirror
from .store import Reader, Store, check_database_file, storage_problem
from .sync import Plan, count_request, learned_limit, run_plan, select_products
from .vocabulary import Mode

if TYPE_CHECKING:
    import pandas as pd
    import sqlite_utils

    from . import frames
    from .export import ExportResult
    from .metrics import HealthFrame
    from .reporting import Report
    from .sandbox import Sandbox

log = logging.getLogger(__name__)

Products = int | str | Iterable[int | str] | None
Since = str | date | datetime | None

_sandboxes: dict[str, Sandbox] = {}
# meta key: the anchor a sandbox mirror was first synced against (``bundled_sandbox``).
SANDBOX_ANCHOR_KEY = "sandbox_anchor"
_sandbox_lock = threading.Lock()


def bundled_sandbox(preset: str = "small") -> Sandbox:
    """The sandbox this process talks to when no token is configured (started once).

    Notebooks use it to play the service's side: ``tt.bundled_sandbox().add_tests(...)``.

    Its data keeps its dates: a sandbox mirror remembers the anchor it was first synced
    against (``meta.sandbox_anchor``); a later process starts the sandbox there and lets the
    hours since pass (``Sandbox(evolve=True)``: new tests, tests ending, bugs reported and
    decided), so the change feed shows news, never the whole account re-dated. A pinned
    clock (``TESTIO_SANDBOX_NOW``: tests, notebooks) keeps the data fixed instead.
    """
    started = _sandboxes.get(preset)
    if started is not None:
        return started
    anchor = None
    with contextlib.suppress(ToolkitError):  # the default mirror's anchor, when it has one
        mirror = default_mirror()
        if mirror.sandbox and mirror.settings.sandbox_preset == preset:
            anchor = mirror._sandbox_anchor()
    return _bundled(preset, anchor)


def _bundled(preset: str, anchor: int | None) -> Sandbox:
    """One sandbox a preset per process, anchored by the first mirror that asks: at its
    stored anchor (then played on to now), or now; pinned, at ``TESTIO_SANDBOX_NOW``."""
    from .sandbox import Sandbox
    from .sandbox.sandbox import ANCHOR_VARIABLE, resolve_anchor

    with _sandbox_lock:
        sandbox = _sandboxes.get(preset)
        if sandbox is None:
            pinned = bool(os.environ.get(ANCHOR_VARIABLE))
            start = resolve_anchor(None) if pinned or anchor is None else anchor
            sandbox = Sandbox(preset=preset, anchor=start, evolve=not pinned)
            if not pinned:  # the hours since the mirror's anchor have passed
                sandbox.advance(max(0.0, time.time() - sandbox.now()))
            sandbox.start()
            _sandboxes[preset] = sandbox
        return sandbox


@dataclass
class MirrorStatus:
    """What the mirror holds: ``tt.status()``. Reads only."""

    db_path: str
    source: str
    exists: bool
    size_bytes: int
    table_counts: dict[str, int] = field(default_factory=dict)
    last_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    open_unreadable: int = 0
    backups: list[str] = field(default_factory=list)
    # Why a sync, refresh or nuke cannot update the mirror where it is (read-only storage).
    cannot_update: str | None = None
    # A sandbox server reached by URL (`testio-toolkit sandbox`): sample data all the same.
    sandbox_server: bool = False
    # Per live product: product_id, name, tests, bugs, features.
    products: list[dict[str, Any]] = field(default_factory=list)
    # The limit of requests in flight the next run starts at (learned by the last one), and
    # what the latest run's limiter did (``LimiterFigures``; None before any run records it).
    learned_limit: int | None = None
    last_limiter: LimiterFigures | None = None

    def lines(self) -> list[str]:
        """The status as text lines."""
        label = "SANDBOX data (no token configured)" if self.source == "sandbox" else self.source
        if self.sandbox_server:
            label = f"SANDBOX data served at {self.source} (the sandbox's own token)"
        out = [f"database: {self.db_path} ({self.size_bytes / 1e6:.1f} MB)", f"source:   {label}"]
        if not self.exists:
            return [*out, "no database yet: run a sync"]
        out.append("holds:    " + ", ".join(f"{n} {t}" for t, n in self.table_counts.items()))
        for row in self.products:
            out.append(
                f"  product {row['product_id']} {row['name']}: {row['tests']} tests, "
                f"{row['bugs']} bugs, {row['features']} features"
            )
        for mode in Mode:
            run = self.last_runs.get(mode)
            text = f"{run['status']} at {run['started_at']}" if run else "never"
            out.append(f"last {mode + ':':9}{text}")
        out.append(f"unreadable records waiting for a retry: {self.open_unreadable}")
        if self.learned_limit is not None or self.last_limiter is not None:
            start = "" if self.learned_limit is None else f"next run starts at {self.learned_limit}"
            last = "" if self.last_limiter is None else f"last run: {self.last_limiter.short()}"
            out.append("in flight: " + "; ".join(filter(None, [start, last])))
        if self.backups:
            out.append(f"backups:  {', '.join(self.backups)}")
        if self.cannot_update:
            out.append(f"updates:  not possible here: {self.cannot_update} (reading works)")
        return out

    def __repr__(self) -> str:
        return "<MirrorStatus " + " | ".join(self.lines()) + ">"

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape("\n".join(self.lines())) + "</pre>"


def _last_limiter(last_runs: dict[str, dict[str, Any]]) -> LimiterFigures | None:
    """The limiter figures the newest run recorded (in its ``counts``), if any."""
    if not last_runs:
        return None
    newest = max(last_runs.values(), key=lambda run: int(run["id"]))
    try:
        recorded = json.loads(newest.get("counts") or "{}").get("limiter")
        return LimiterFigures(**recorded) if isinstance(recorded, dict) else None
    except (ValueError, TypeError):
        return None  # an older or damaged record: nothing to show


class BaseMirror:
    """What ``Mirror`` and ``AsyncMirror`` share: the settings, and the local work.

    The methods here only touch local files (SQLite reads, the backups beside the database):
    they are plain methods on both faces. The methods that talk to the service (``sync``,
    ``refresh``, ``nuke``, ``retry_unreadable``) are ``async def`` on ``AsyncMirror``, the
    one implementation, and blocking on ``Mirror``, which runs them on the toolkit's loop.
    The constructor's parameters are listed on ``Mirror``.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        *,
        token: str | None = None,
        base_url: str | None = None,
        products: Products = None,
        sandbox: bool = False,
        sandbox_preset: str = "small",
        keep_backups: int = 1,
        keep_changes: str | None = None,
        client_options: ClientOptions | None = None,
        progress: bool = True,
        wait: bool | float = False,
        account: str | None = None,
    ) -> None:
        # A named account (accounts.py): given, TESTIO_ACCOUNT, or the default one.
        chosen = None if sandbox else accounts.choose(account, token_given=bool(token))
        if chosen is not None:
            settings = accounts.settings_for(
                chosen,
                token=token,
                base_url=base_url,
                db_path=db_path,
                product_ids=_ids(products) or None,
                keep_changes=keep_changes,
            )
        else:
            settings = Settings.load(
                # No products given (None, not ()): TESTIO_PRODUCT_IDS or .env may name some.
                token=token,
                base_url=base_url,
                db_path=db_path,
                product_ids=_ids(products) or None,
                keep_changes=keep_changes,
            )
        if sandbox:
            # Demos and trials: the bundled sandbox even where a token is configured.
            settings = settings.with_(token=None)
        self.settings = settings.with_(sandbox_preset=sandbox_preset)
        if settings.db_path_is_default:
            # The per-user data folder is ours; a folder the user named is not.
            settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.keep_backups = keep_backups
        self.client_options = client_options or ClientOptions()
        self.progress = progress
        self.wait = wait
        self._known_clean = False  # the file was seen scrubbed: reads need not look again

    @property
    def path(self) -> Path:
        """The database file."""
        return self.settings.db_path

    @property
    def sandbox(self) -> bool:
        """True when this mirror reads the bundled sandbox (no token configured)."""
        return self.settings.sandbox

    @property
    def source(self) -> str:
        """'sandbox', or the base URL of the real service."""
        return "sandbox" if self.sandbox else self.settings.base_url

    @property
    def account(self) -> str | None:
        """The named account this mirror is for (``tt.Mirror(account="acme")``), or None."""
        return self.settings.account

    def __repr__(self) -> str:
        named = f" account={self.account}" if self.account else ""
        return f"<{type(self).__name__} {self.source}{named} db={self.path}>"

    # -- plumbing -------------------------------------------------------------------------

    def _credentials(self) -> tuple[str, str]:
        if self.sandbox:
            sandbox = self._sandbox_instance()
            return sandbox.url, sandbox.token
        assert self.settings.token is not None
        return self.settings.base_url, self.settings.token.reveal()

    def _sandbox_instance(self) -> Sandbox:
        """The bundled sandbox this mirror reads (no token configured, or ``sandbox=True``).

        The mirror's stored anchor is read only to start it: a run asks again while its
        writer is open, and a second connection opened and closed then once kept another
        process (the browser test's) from seeing the run's rows until it ended."""
        started = _sandboxes.get(self.settings.sandbox_preset)
        if started is not None:
            return started
        return _bundled(self.settings.sandbox_preset, self._sandbox_anchor())

    def _sandbox_anchor(self) -> int | None:
        """The anchor this sandbox mirror was first synced against (None: new, not ours, or
        the clock is pinned, which wins)."""
        from .sandbox.sandbox import ANCHOR_VARIABLE

        if os.environ.get(ANCHOR_VARIABLE) or not self.path.exists():
            return None
        try:
            with Store.open_read_only(self.path) as reader:
                stored = reader.get_meta(SANDBOX_ANCHOR_KEY)
        except StoreError:
            return None  # the run that opens it for writing says what is wrong
        return int(stored) if stored and stored.isdigit() else None

    def _client(self) -> TestIOClient:
        url, token = self._credentials()
        if self.sandbox:
            # The sandbox's own token: nothing of the user's to check.
            return TestIOClient(
                url, token, self.client_options, on_request=count_request, token_hint=""
            )
        return TestIOClient(
            url,
            token,
            self.client_options,
            on_request=count_request,
            token_hint=self.settings.token_hint(),
            base_url_hint=self.settings.base_url_hint(),
        )

    def _plan(self, mode: Mode, products: Products, since: Since, dry_run: bool) -> Plan:
        ids, names = _ids_and_names(products)
        return Plan(
            mode=mode,
            product_ids=ids or (() if names else self.settings.product_ids),
            since=parse_since(since),
            dry_run=dry_run,
            keep_changes=self.settings.keep_changes,
            product_names=names,
        )

    def _check_account(self, store: Reader, accounts: list[dict[str, Any]]) -> dict[str, str]:
        """Refuse to mix accounts; return the account's identity for the store's ``meta``.

        Sandbox data never lands in a real account's mirror (``source``), and another
        account at the same URL is told apart by its token's salted fingerprint and its
        product ids (the rule is in ``account.py``). Raises before anything is written.
        """
        separate = (
            "use a separate database for it: TESTIO_DB_PATH=other.db, "
            "`testio-toolkit --db other.db ...` or tt.Mirror('other.db')"
        )
        if self.account is not None:
            separate = (
                f"give account {self.account!r} a mirror of its own (by default each account "
                f"has accounts/<name>.db): `testio-toolkit account add {self.account} --db "
                "other.db`"
            )
        recorded = store.get_meta("source")
        if recorded is not None and recorded != self.source:
            raise ConfigError(
                f"{self.path} mirrors {recorded!r}, not {self.source!r}; nothing was written; "
                + separate
            )
        salt = store.get_meta("account_salt") or account.new_salt()
        token_hash = account.fingerprint(self._credentials()[1], salt)
        known_hash = store.get_meta("account_token")
        listed = store.get_meta("account_products")
        known = [int(i) for i in json.loads(listed)] if listed else store.product_ids()
        products = sorted(int(p["id"]) for p in accounts)
        if not account.same_account(known_hash, known, token_hash, products):
            shown = ", ".join(map(str, known[:5])) + (", ..." if len(known) > 5 else "")
            raise ConfigError(
                f"{self.path} mirrors another account (products {shown}) than the one this "
                f"token reads at {self.source} ({len(products)} products, none or few of "
                f"them in the mirror); nothing was written; " + separate
            )
        identity = {
            "source": self.source,
            "account_salt": salt,
            "account_token": token_hash,
            "account_products": json.dumps(products),
        }
        sandbox = self._sandbox_instance() if self.sandbox else None
        if sandbox is not None and sandbox.evolve:
            identity[SANDBOX_ANCHOR_KEY] = str(sandbox.anchor)
        return identity

    def _check_path(self) -> None:
        """``check_database_file``, naming where a bad path came from (TESTIO_DB_PATH, a
        .env file, --db ...): the user has to know what to fix."""
        try:
            check_database_file(self.path)
        except StoreError as exc:
            if self.settings.origin("db_path") == "the default":
                raise
            note = self.settings.db_path_note()
            raise type(exc)(f"{exc} ({note})", path=exc.path) from None

    def _scrub_before_reading(self) -> None:
        """An older mirror is scrubbed before a frame or ``db`` shows it (once per object)."""
        if not self._known_clean:
            self._known_clean = scrub_before_reading(self.path)

    # -- local work: the same on both faces -------------------------------------------------

    def nuke_plan(self, products: Products = None) -> NukePlan:
        """What ``nuke()`` would throw away, and where its backup would go. Reads only.

        >>> tt.nuke_plan()                # CLI: testio-toolkit sync --nuke --dry-run
        >>> tt.nuke_plan(products=[12])
        """
        self._check_path()
        ids, names = _ids_and_names(products)
        if names:
            from . import frames  # names are the mirror's: resolved as the frames do

            ids = (*ids, *frames.product_ids(self.path, list(names)))
        ids = ids or self.settings.product_ids
        return backups.make_plan(self.path, ids, self.keep_backups, self.source)

    def restore(self) -> Path:
        """Put the newest backup back in place of the database; returns the backup used.

        >>> tt.restore()        # CLI: testio-toolkit restore

        The database it replaces is kept as a backup in turn, so a restore can be undone.
        """
        with WriterLock(self.path, mode="restore", wait=self.wait):
            backups.clean_leftovers(self.path)
            restored, _ = backups.restore_latest(self.path)
            scrub_mirror(self.path)  # a backup from before redaction, not yet scrubbed
        backups.prune_backups(self.path, max(self.keep_backups, 1))
        return restored

    def scrub(self) -> ScrubReport | None:
        """Remove customers' credentials from the mirror and every backup beside it.

        >>> tt.scrub()          # CLI: testio-toolkit scrub

        Every run does this once by itself for a mirror made before credentials were
        redacted (see ``redact.py``); call it to try again a backup that could not be
        written then (read-only, locked). Returns what it removed (``.line()``), or None
        when nothing held a credential.
        """
        self._check_path()  # refuse a file that is not a mirror: create nothing
        with WriterLock(self.path, mode="scrub", wait=self.wait):
            backups.clean_leftovers(self.path)
            return scrub_mirror(self.path, force=True)

    def backups(self) -> list[Path]:
        """The backups kept beside the database, newest first.

        >>> [backup.name for backup in tt.default_mirror().backups()]
        """
        return backups.list_backups(self.path)

    def clear_unreadable(self, products: Products = None) -> int:
        """Forget logged unreadable records (all, or some products'); returns how many.

        >>> tt.default_mirror().clear_unreadable()   # CLI: testio-toolkit problematic clear
        """
        self._check_path()  # refuse a file that is not a mirror: create nothing
        with (
            WriterLock(self.path, mode="clear", wait=self.wait),
            Store.open(self.path, create=False) as store,
            store.transaction(),
        ):
            ids = _ids(products)
            if not ids:
                return store.clear_unreadable()
            return sum(store.clear_unreadable(pid) for pid in ids)

    def status(self) -> MirrorStatus:
        """What the mirror holds and when each mode last ran. Reads only.

        >>> tt.status()         # CLI: testio-toolkit status
        """
        self._check_path()
        exists = self.path.exists()
        status = MirrorStatus(
            db_path=str(self.path),
            source=self.source,
            exists=exists,
            size_bytes=self.path.stat().st_size if exists else 0,
            backups=[p.name for p in self.backups()],
            cannot_update=storage_problem(self.path) if self.path.parent.is_dir() else None,
            sandbox_server=self.settings.sandbox_data and not self.sandbox,
        )
        if exists:
            with Store.open_read_only(self.path) as store:
                status.table_counts = store.table_counts()
                status.products = [dict(row) for row in store.product_counts()]
                status.last_runs = store.last_runs()
                status.open_unreadable = len(store.open_unreadable())
                status.learned_limit = learned_limit(store)
                status.last_limiter = _last_limiter(status.last_runs)
        return status

    def products(self, *, include_deleted: bool = False) -> pd.DataFrame:
        """Products: id, name, type, sectioned, tests (count), synced_at, ...

        >>> tt.products()
        """
        from . import frames

        self._check_path()
        self._scrub_before_reading()
        return frames.products(self.path, include_deleted=include_deleted)

    def tests(
        self,
        product: frames.Filter = None,
        status: frames.Filter = None,
        since: Since = None,
        *,
        until: Since = None,
        include_deleted: bool = False,
    ) -> pd.DataFrame:
        """Tests: id, product_id, product, title, status, testing_type, start_at, end_at,
        created_at, bugs (count), environment, environment_url, environment_login,
        created_by, submitted_by, feature_ids and features (lists, the test's order),
        requirements (the device requirements, a list of dicts) and any column you added.

        ``since``/``until`` filter ``end_at`` (``since <= end_at < until``; unscheduled
        tests, without an ``end_at``, are kept): a date, a month ``"2026-07"``, a quarter
        ``"2026-Q3"`` (as ``until``: all of it), or ``"12h"``, ``"30d"``, ``"2w"``, ``"3mo"``.

        >>> tt.tests(product=12, status="running", since="30d")
        >>> tt.tests(since="2026-Q3", until="2026-Q3")       # tests that ended in Q3
        """
        from . import frames

        self._check_path()
        self._scrub_before_reading()
        return frames.tests(
            self.path,
            product=product,
            status=status,
            since=since,
            until=until,
            include_deleted=include_deleted,
        )

    def bugs(
        self,
        product: frames.Filter = None,
        test: frames.Filter = None,
        status: frames.Filter = None,
        severity: frames.Filter = None,
        since: Since = None,
        *,
        until: Since = None,
        include_deleted: bool = False,
    ) -> pd.DataFrame:
        """Bugs with their test's title and end and their product's name, and from the
        bug's record: test_feature_id, feature_id (the product feature), feature (its
        title), steps (a list or None), expected_result, actual_result, comment_count,
        device_count (the devices themselves: ``bug_devices()``).

        ``test`` is ids or titles (an unknown one is an error); ``since``/``until`` filter
        ``created_at`` (same forms as ``tests()``).

        >>> tt.bugs(severity="critical", since="30d")
        >>> tt.bugs(test="Coverage 9.4", until="2026-06")
        """
        from . import frames

        self._check_path()
        self._scrub_before_reading()
        return frames.bugs(
            self.path,
            product=product,
            test=test,
            status=status,
            severity=severity,
            since=since,
            until=until,
            include_deleted=include_deleted,
        )

    def bug_devices(
        self,
        product: frames.Filter = None,
        test: frames.Filter = None,
        since: Since = None,
        *,
        until: Since = None,
    ) -> pd.DataFrame:
        """The devices bugs were reported on, one row each: bug_id, test_id, product_id,
        device_id, device, os, os_version, browser. ``since``/``until`` filter the bug's
        ``created_at``.

        >>> tt.bug_devices(product=12).groupby("os")["bug_id"].nunique()
        >>> tt.bugs().merge(tt.bug_devices(), left_on="id", right_on="bug_id")
        """
        from . import frames

        self._check_path()
        self._scrub_before_reading()
        return frames.bug_devices(self.path, product=product, test=test, since=since, until=until)

    def features(self, product: frames.Filter = None) -> pd.DataFrame:
        """Features: id, product_id, section_id, title, description, howtofind, user_stories.

        >>> tt.features(product=12)
        """
        from . import frames

        self._check_path()
        self._scrub_before_reading()
        return frames.features(self.path, product=product)

    def changes(
        self,
        since: Since = "7d",
        product: frames.Filter = None,
        entity: frames.Filter = None,
        kind: frames.Filter = None,
        run: frames.Filter = None,
        *,
        until: Since = None,
    ) -> pd.DataFrame:
        """What the runs changed, one row per change, oldest first (the change feed).

        ``since``/``until`` filter ``at``, when the run that recorded the change began
        (same forms as ``tests()``; ``since=None`` or ``"all"``: the whole history).

        >>> tt.changes()                                   # the last seven days
        >>> tt.changes(since="30d", entity="bug", kind="added")
        >>> tt.changes(since=None, run=42)                 # everything one run recorded

        Columns: at (UTC), entity (product/test/feature/bug), kind (added/changed/gone/
        returned), field, old, new, ids, run_id, mode, product (name) and title.
        """
        from . import frames

        self._check_path()
        self._scrub_before_reading()
        return frames.changes(
            self.path,
            since=since,
            product=product,
            entity=entity,
            kind=kind,
            run=run,
            until=until,
        )

    def export(
        self,
        destination: str | None = None,
        account: str | None = None,
        *,
        include_raw: bool = False,
        include_local: bool = False,
        pseudonymize: bool = False,
        progress: bool | None = None,
    ) -> ExportResult:
        """Load the mirror into DuckDB, Postgres or another dlt destination (the team's copy);
        only what changed since the last export moves. Needs ``testio-toolkit[export]``.

        >>> tt.export()                             # team.duckdb beside the mirror
        >>> tt.export(destination="postgres")       # DESTINATION__POSTGRES__CREDENTIALS
        >>> tt.export("duckdb:/shared/team.duckdb", account="acme", pseudonymize=True)

        ``account`` names the dataset: a named account's mirror goes into the dataset of its
        name (``tt.export(account="acme")`` exports acme's mirror); without one, this
        mirror's account, else the mirror file's name. What goes across, the options and
        where credentials come from: ``testio_toolkit.export``.
        """
        from . import accounts as named
        from .export import export_mirror

        self._check_path()
        path, dataset = self.path, account or self.account
        if account is not None and account != self.account:
            registry = named.load()
            if account in registry.names():  # another named account: its own mirror
                path = registry.get(account).db_path
        return export_mirror(
            path,
            destination,
            dataset,
            include_raw=include_raw,
            include_local=include_local,
            pseudonymize=pseudonymize,
            progress=self.progress if progress is None else progress,
        )

    def review_times(
        self, product: frames.Filter = None, since: Since = None, *, until: Since = None
    ) -> pd.DataFrame:
        """When each bug was first seen decided after it was reported, as a window bounded
        by the runs around it (``metrics.review_times``): review_hours_min/max,
        precision_hours, and ``auto`` for bugs no one reviewed. ``since``/``until`` filter
        the bug's ``created_at``.

        >>> tt.review_times(product=12)["review_hours_max"].median()
        """
        from . import frames, metrics

        self._check_path()
        self._scrub_before_reading()
        bugs = frames.bugs(self.path, product=product, since=since, until=until)
        feed = frames.changes(self.path, since=None, product=product, entity="bug")
        return metrics.review_times(bugs, feed, frames.runs(self.path))

    def health(
        self,
        by: str | list[str] | None = "product",
        period: str | None = "month",
        product: frames.Filter = None,
        since: Since = None,
        *,
        until: Since = None,
        thresholds: dict[str, Any] | None = None,
    ) -> HealthFrame:
        """Health measures per group and period, coloured by the playbook's thresholds in
        a notebook (formulas: ``testio_toolkit.metrics``): tests_run, bugs, accepted,
        auto_accepted, rejected, bugs_per_test, rejection_rate, auto_acceptance_rate,
        review_rate, review_hours_median, <severity>_share.

        ``by``: "product", "feature", "test", "account", a list of them, or None;
        ``period``: "week", "month", "quarter" or None. ``since``/``until`` filter bugs by
        ``created_at`` and tests by ``end_at``. ``thresholds={"rejection_rate": (0.25,
        0.4)}`` moves a threshold (healthy, critical).

        >>> tt.health()                                    # per product and month
        >>> tt.health(by="feature", period="quarter", product=12, since="2026-Q1")
        >>> tt.health().worst(3)
        """
        from . import frames, metrics

        self._check_path()
        self._scrub_before_reading()
        bugs = frames.bugs(self.path, product=product, since=since, until=until)
        tests = frames.tests(self.path, product=product, since=since, until=until)
        feed = frames.changes(self.path, since=None, product=product, entity="bug")
        reviews = metrics.review_times(bugs, feed, frames.runs(self.path))
        return metrics.health(
            bugs, tests, by=by, period=period, thresholds=thresholds, reviews=reviews
        )

    def report(
        self,
        product: frames.Filter = None,
        period: str = "",
        *,
        path: str | Path | None = None,
    ) -> Report:
        """A period's report: its measures against the period before, the trend inside
        it and the top features by bugs, as HTML (shown in a notebook) and Markdown;
        ``path`` also saves it (``.html``: a page; else Markdown). ``period`` is a quarter
        ``"2026-Q3"`` or a month ``"2026-07"``.

        >>> tt.report(product=12, period="2026-Q3")
        >>> tt.report(product=12, period="2026-07", path="july.md")
        """
        from . import frames, metrics
        from .reporting import Report, bounds, label, parse_period, top_features

        self._check_path()
        self._scrub_before_reading()
        chosen = parse_period(period)
        before = chosen - 1
        start, end = bounds(chosen)
        bugs = frames.bugs(self.path, product=product, since=start, until=end)
        tests = frames.tests(self.path, product=product, since=start, until=end)
        feed = frames.changes(self.path, since=None, product=product, entity="bug")
        runs = frames.runs(self.path)
        reviews = metrics.review_times(bugs, feed, runs)
        earlier = bounds(before)
        old_bugs = frames.bugs(self.path, product=product, since=earlier[0], until=earlier[1])
        old_tests = frames.tests(self.path, product=product, since=earlier[0], until=earlier[1])
        inner = "month" if chosen.freqstr.startswith("Q") else "week"
        names = sorted(set(frames.products(self.path)["name"]))
        if product is not None:
            names = sorted(
                {str(n) for n in bugs["product"].dropna()}
                | {str(n) for n in tests["product"].dropna()}
            ) or [str(product)]
        title = f"{', '.join(names)}: {label(chosen)}"
        built = Report(
            title=title,
            period=label(chosen),
            previous_period=label(before),
            measures=metrics.health(bugs, tests, by=None, period=None, reviews=reviews),
            previous=metrics.health(
                old_bugs,
                old_tests,
                by=None,
                period=None,
                reviews=metrics.review_times(old_bugs, feed, runs),
            ),
            trend=metrics.health(bugs, tests, by=None, period=inner, reviews=reviews),
            features=top_features(metrics.health(bugs, tests, by="feature", period=None)),
        )
        if path is not None:
            built.save(path)
        return built

    def runs(self) -> pd.DataFrame:
        """The run history: mode, status, started_at, ended_at, seconds, requests, counts.

        >>> tt.runs()
        """
        from . import frames

        self._check_path()
        self._scrub_before_reading()
        return frames.runs(self.path)

    def unreadable(self, *, include_resolved: bool = False) -> pd.DataFrame:
        """Records the service could not serve: product, kind, position, neighbours, tries.

        >>> tt.unreadable()
        """
        from . import frames

        self._check_path()
        self._scrub_before_reading()
        return frames.unreadable(self.path, include_resolved=include_resolved)

    @property
    def db(self) -> sqlite_utils.Database:
        """A ``sqlite_utils.Database`` on the mirror for ad-hoc queries (a new one each time).

        >>> list(tt.db.query("select status, count(*) n from tests group by status"))
        """

        import sqlite_utils

        if not self.path.exists():
            raise StoreError(f"no database at {self.path}; run a sync first", path=str(self.path))
        self._scrub_before_reading()
        if storage_problem(self.path) is not None:
            # Read-only storage: SQLite could not make the -shm file; nobody writes there.
            uri = f"{self.path.resolve().as_uri()}?immutable=1"
            return sqlite_utils.Database(sqlite3.connect(uri, uri=True))
        return sqlite_utils.Database(self.path)

    def _unreadable_products(self) -> list[int]:
        """The products with logged unreadable records (what ``retry_unreadable`` reads)."""
        self._check_path()
        if not self.path.exists():
            return []
        with Store.open_read_only(self.path) as store:
            return sorted({int(entry["product_id"]) for entry in store.open_unreadable()})


class AsyncMirror(BaseMirror):
    """One local mirror database, for code that runs in an event loop: awaitable methods.

    >>> m = tt.AsyncMirror("acme.db", token="...")
    >>> await m.sync()                               # -> SyncResult
    >>> m.tests(status="running")                    # local reads are plain: -> DataFrame

    The same constructor, methods and parameters as ``Mirror`` (tested);
    ``sync``, ``refresh``, ``nuke`` and ``retry_unreadable`` talk to the service and are
    awaited, everything else only reads local files and is a plain call.
    """

    async def sync(
        self,
        products: Products = None,
        since: Since = None,
        *,
        dry_run: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Bring the mirror up to date incrementally: ``await tt.AsyncMirror().sync()``.

        See ``Mirror.sync``.
        """
        plan = self._plan(Mode.SYNC, products, since, dry_run)
        return await self._run(plan, progress, on_progress)

    async def refresh(
        self,
        products: Products = None,
        since: Since = None,
        *,
        dry_run: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Re-read everything, keeping local state: ``await tt.AsyncMirror().refresh()``.

        See ``Mirror.refresh``.
        """
        plan = self._plan(Mode.REFRESH, products, since, dry_run)
        return await self._run(plan, progress, on_progress)

    async def nuke(
        self,
        products: Products = None,
        *,
        confirm: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Rebuild the mirror from the service: ``await tt.AsyncMirror().nuke(confirm=True)``.

        See ``Mirror.nuke``.
        """
        if confirm is not True:
            raise _confirmation_required(self.nuke_plan(products))
        plan = self._plan(Mode.NUKE, products, None, False)
        return await self._run(plan, progress, on_progress)

    async def retry_unreadable(self, *, progress: bool | None = None) -> SyncResult | None:
        """Read the products with unreadable records again: ``await m.retry_unreadable()``.

        See ``Mirror.retry_unreadable``.
        """
        ids = self._unreadable_products()
        return await self.sync(products=ids, progress=progress) if ids else None

    # -- the one way every mode runs -------------------------------------------------------

    async def _run(
        self, plan: Plan, progress: bool | None, on_progress: ProgressCallback | None
    ) -> SyncResult:
        """Run a plan: lock, leftovers, client, products, account, target store, engine.

        The target (``rebuild.py``) is the mirror itself for a sync or refresh (a scratch
        copy for a dry run) and a rebuild for a nuke, which swaps it in as the block ends.
        """
        self._check_path()
        # A dry run takes no lock and only reads the file: it writes into a scratch copy.
        lock = (
            contextlib.nullcontext()
            if plan.dry_run
            else WriterLock(self.path, mode=plan.mode, wait=self.wait)
        )
        shown = self.progress if progress is None else progress
        target: rebuild.Target | None = None
        try:
            with ProgressBars(disable=not shown, forward=on_progress) as emit, lock:
                scrubbed = None
                if not plan.dry_run:
                    backups.clean_leftovers(self.path)
                    # A mirror made before credentials were redacted is scrubbed first.
                    scrubbed = scrub_mirror(self.path)
                async with self._client() as client:
                    # Ask the service first: a bad token or product id must not touch the file.
                    accounts = await client.products()
                    selected = select_products(accounts, plan.product_ids, plan.product_names)
                    if plan.product_names:  # names asked for: from here on, their ids
                        ids = tuple(int(p["id"]) for p in selected)
                        plan = dataclasses.replace(plan, product_ids=ids, product_names=())
                    with self._target(plan, accounts, client) as target:
                        target.result = await run_plan(
                            client,
                            target.store,
                            plan,
                            accounts,
                            selected,
                            source=self.source,
                            on_progress=emit,
                            previous=target.previous,
                            db_path=self.path,
                            run_id=target.run_id,
                            backup_path=target.backup_path,
                            note=self._note(scrubbed),
                        )
        except asyncio.CancelledError:
            if target is None or not target.swapped or target.result is None:
                raise
            # Interrupted after the swap (closing the connections, say): the nuke is done,
            # so say so instead of "cancelled".
            swapped = "interrupted after the new mirror was swapped in: the nuke completed"
            target.result.note = " · ".join(filter(None, [target.result.note, swapped]))
        assert target is not None and target.result is not None  # run_plan returned
        return target.result

    def _target(
        self, plan: Plan, accounts: list[dict[str, Any]], client: TestIOClient
    ) -> contextlib.AbstractContextManager[rebuild.Target]:
        def check_account(store: Reader) -> dict[str, str]:
            return self._check_account(store, accounts)

        if plan.mode != Mode.NUKE:
            return rebuild.live(self.path, check_account, dry_run=plan.dry_run)
        return rebuild.rebuilding(
            self.path,
            plan.product_ids,
            check_account,
            keep_backups=self.keep_backups,
            requests=lambda: client.stats.requests,
        )

    def _note(self, scrubbed: ScrubReport | None) -> str | None:
        # A `testio-toolkit sandbox` server, reached by URL: still sample data.
        server = self.settings.sandbox_data and not self.sandbox
        said = ["SANDBOX DATA (server)"] if server else []
        if scrubbed is not None:  # told once: the run that scrubbed an older mirror
            said.append(scrubbed.line())
        return " · ".join(said) or None


class Mirror(BaseMirror):
    """One local mirror database and the account (or sandbox) it mirrors; blocking calls.

    >>> m = tt.Mirror("acme.db", token="...")        # or Mirror() for the configured default
    >>> m.sync()                                     # -> SyncResult
    >>> m.tests(status="running")                    # -> DataFrame

    :param db_path: the database file (default: ``TESTIO_DB_PATH`` or the per-user folder)
    :param token: API token (default: ``TESTIO_CUSTOMER_API_TOKEN``; none: the sandbox)
    :param base_url: the API's base URL, path prefix included
    :param products: default product filter (``TESTIO_PRODUCT_IDS``)
    :param sandbox: read the bundled sandbox even when a token is configured
    :param sandbox_preset: the bundled sandbox's size (``small``, ``medium``, ...)
    :param keep_backups: how many nuke backups to keep beside the database
    :param keep_changes: how long the change feed keeps rows (``"365d"``; default
        ``TESTIO_KEEP_CHANGES``, else everything); older ones are pruned as a run ends
    :param client_options: concurrency, timeouts and retry budgets
    :param progress: show progress bars by default
    :param wait: when another sync holds the lock, wait for it (True, or seconds) instead
        of failing at once
    :param account: a named account (``testio-toolkit account add acme``): its URL, token
        (keyring), product filter, retention and mirror path; default ``TESTIO_ACCOUNT``,
        else the default account when no token is configured the old way

    Code already in an event loop uses ``tt.AsyncMirror``, with the same methods, awaited.
    Why two classes, as httpx has ``Client`` and ``AsyncClient``: a method that sometimes
    blocks and sometimes returns a coroutine is a trap, and twins with an ``a`` prefix double
    every name. The async methods are the one implementation; each blocking method below runs
    its twin on the toolkit's own loop (``runner.run_blocking``: the same in a script, a
    notebook cell or inside ``asyncio.run``; Ctrl-C cancels the run cleanly and raises
    ``Cancelled``). The local reads are ``BaseMirror``'s, shared by both.
    """

    def sync(
        self,
        products: Products = None,
        since: Since = None,
        *,
        dry_run: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Bring the mirror up to date incrementally.

        >>> tt.sync()                          # every product
        >>> tt.sync(products=[12], since="30d")
        >>> tt.sync(dry_run=True)              # read, count, write nothing

        Reads new tests until it reaches ones it already holds, re-reads tests whose status
        can still change, and the bugs of new, changed and changeable tests; features too.
        Returns a SyncResult (``.status``, ``.tests.added``, ``.to_frame()`` ...).
        """
        return run_blocking(
            as_async(self).sync(
                products, since, dry_run=dry_run, progress=progress, on_progress=on_progress
            )
        )

    def refresh(
        self,
        products: Products = None,
        since: Since = None,
        *,
        dry_run: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Re-read everything and upsert it, keeping the database and all local state.

        >>> tt.refresh()                       # CLI: testio-toolkit sync --force
        >>> tt.refresh(products=[12], since="2025-01-01", dry_run=True)

        Existing rows are updated, new rows added, rows gone upstream marked in
        ``deleted_upstream_at`` (never deleted). Columns and tables you added survive.
        """
        return run_blocking(
            as_async(self).refresh(
                products, since, dry_run=dry_run, progress=progress, on_progress=on_progress
            )
        )

    def nuke(
        self,
        products: Products = None,
        *,
        confirm: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Throw the mirror away and rebuild it from the service, safely.

        >>> tt.nuke_plan()                # what would go, where the backup goes; reads only
        >>> tt.nuke(confirm=True)         # rebuild aside, swap in, keep a backup
        >>> tt.nuke(products=[12], confirm=True)   # rebuild one product only

        Without ``confirm=True`` it raises ``ConfirmationRequired`` (``exc.plan`` is the
        plan) and changes nothing. The new mirror is built beside the old one and swapped
        in only when the rebuild read everything; otherwise RebuildFailed is raised and
        the database is exactly as it was. ``tt.restore()`` brings the backup back.
        """
        return run_blocking(
            as_async(self).nuke(
                products, confirm=confirm, progress=progress, on_progress=on_progress
            )
        )

    def retry_unreadable(self, *, progress: bool | None = None) -> SyncResult | None:
        """Read again the products whose records the service could not serve before.

        >>> tt.retry_unreadable()     # CLI: testio-toolkit problematic retry

        Entries are marked resolved as their records are read. Returns None when nothing
        waits for a retry.
        """
        return run_blocking(as_async(self).retry_unreadable(progress=progress))


def as_async(mirror: BaseMirror) -> AsyncMirror:
    """The awaitable face of ``mirror``: itself, or an ``AsyncMirror`` with its settings.

    Made on each call from the mirror's attributes, so a change to ``mirror.wait`` (say)
    applies to the next run.
    """
    if isinstance(mirror, AsyncMirror):
        return mirror
    twin = AsyncMirror.__new__(AsyncMirror)
    vars(twin).update(vars(mirror))
    return twin


def products_seen(
    token: str, base_url: str | None = None, *, client_options: ClientOptions | None = None
) -> list[dict[str, Any]]:
    """The products a token reads at a base URL, in one request (``account add`` checks a
    token with it): ``[{"id": 12, "name": "Shop", ...}]``. A refused token raises
    ``AuthenticationError``."""
    settings = Settings.load(token=token, base_url=base_url, env={}, dotenv_path=None)

    async def ask() -> list[dict[str, Any]]:
        async with TestIOClient(
            settings.base_url,
            token,
            client_options,
            token_hint="check the token you gave",
            base_url_hint=f"check the URL {settings.base_url}",
        ) as client:
            return await client.products()

    return run_blocking(ask())


def _confirmation_required(plan: NukePlan) -> ConfirmationRequired:
    what, detail = plan.lines()[:2]
    return ConfirmationRequired(
        f"nuke() needs confirm=True to go ahead (CLI: sync --nuke --yes); nothing was changed. "
        f"{what}: {detail[0].lower()}{detail[1:]} (the whole plan: exc.plan or tt.nuke_plan())",
        plan=plan,
    )


def _ids_and_names(products: Products) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Product ids and names from ``products=``: ``12``, ``"12, 34"``, ``["Shop", 12]``."""
    if products is None:
        return (), ()
    items: list[Any]
    if isinstance(products, str):
        items = products.split(",")
    elif isinstance(products, int):
        items = [products]
    else:
        items = list(products)
    ids: list[int] = []
    names: list[str] = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, int) or text.isdigit():
            ids.append(int(text))
        elif text:
            names.append(text)
    return tuple(ids), tuple(names)


def _ids(products: Products) -> tuple[int, ...]:
    if products is None:
        return ()
    if isinstance(products, int | str):
        return parse_product_ids(products if isinstance(products, str) else str(products))
    return parse_product_ids([int(p) for p in products])


# -- the default mirror and the one-shot functions ----------------------------------------

_default: Mirror | None = None
_default_lock = threading.Lock()


def configure(
    db_path: str | os.PathLike[str] | None = None,
    *,
    token: str | None = None,
    base_url: str | None = None,
    products: Products = None,
    sandbox: bool = False,
    sandbox_preset: str = "small",
    keep_backups: int = 1,
    keep_changes: str | None = None,
    client_options: ClientOptions | None = None,
    progress: bool = True,
    wait: bool | float = False,
    account: str | None = None,
) -> Mirror:
    """Set the mirror the one-shot functions (``tt.sync()`` ...) use, and return it.

    >>> tt.configure("~/acme.db")      # token and URL still from the environment / .env
    >>> tt.configure(account="acme")   # a named account (= tt.use("acme"))

    Takes ``Mirror``'s parameters.
    """
    global _default
    with _default_lock:
        _default = Mirror(
            db_path,
            token=token,
            base_url=base_url,
            products=products,
            sandbox=sandbox,
            sandbox_preset=sandbox_preset,
            keep_backups=keep_backups,
            keep_changes=keep_changes,
            client_options=client_options,
            progress=progress,
            wait=wait,
            account=account,
        )
        return _default


def use(account: str) -> Mirror:
    """Make a named account the one ``tt.sync()``, ``tt.bugs()`` ... work on; returns its mirror.

    >>> tt.use("acme")
    >>> tt.bugs(severity="critical")     # acme's
    """
    return configure(account=account)


def default_mirror() -> Mirror:
    """The mirror the one-shot functions use (built from the environment on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Mirror()
        return _default


def reset() -> None:
    """Forget the default mirror, so the next call reads the environment again."""
    global _default
    with _default_lock:
        _default = None
