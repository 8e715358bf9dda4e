"""The public face: a ``Mirror`` per database, and one-shot functions over a default one.

Usage in a notebook::

    import testio_toolkit as tt
    tt.sync()                   # incremental: new tests, changeable tests, their bugs
    tt.tests(status="running")  # a DataFrame
    tt.refresh()                # re-read everything, upsert, mark what is gone; keeps local state
    tt.nuke()                   # a plan of what would be thrown away; nothing changes
    tt.nuke(confirm=True)       # rebuild aside, swap in, keep a backup
    tt.restore()                # bring the backup back

With no token configured everything runs against the bundled sandbox (and says so).
To point at another database or account, make a ``Mirror`` (or ``tt.configure(...)``)::

    acme = tt.Mirror("~/acme.db", token="...")
    acme.refresh(products=[12], since="30d")

Each mode has an async twin with an ``a`` prefix for code that already runs in an event loop:
``await tt.arefresh()``, ``await tt.anuke(confirm=True)``, and ``await tt.async_()`` for
``sync`` (``async`` is a reserved word, so PEP 8's trailing underscore).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import account, backups
from .backups import NukePlan
from .client import ClientOptions, TestIOClient
from .config import Settings, parse_product_ids
from .errors import Cancelled, ConfigError, RebuildFailed, StoreError, ToolkitError
from .lock import WriterLock
from .progress import ProgressBars
from .results import ProgressCallback, SyncResult
from .rows import parse_since
from .runner import run_blocking
from .store import Reader, Store, check_database_file, storage_problem
from .sync import Plan, count_request, run_plan, select_products
from .vocabulary import Mode, RunStatus

if TYPE_CHECKING:
    import pandas as pd
    import sqlite_utils

    from . import frames
    from .sandbox import Sandbox

log = logging.getLogger(__name__)

Products = int | Iterable[int] | str | None
Since = str | date | datetime | None

_sandboxes: dict[str, Sandbox] = {}
_sandbox_lock = threading.Lock()


def bundled_sandbox(preset: str = "small") -> Sandbox:
    """The sandbox this process talks to when no token is configured (started once).

    Notebooks use it to play the service's side: ``tt.bundled_sandbox().add_tests(...)``.
    """
    from .sandbox import Sandbox

    with _sandbox_lock:
        sandbox = _sandboxes.get(preset)
        if sandbox is None:
            sandbox = Sandbox(preset=preset)
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

    def lines(self) -> list[str]:
        """The status as text lines."""
        label = "SANDBOX data (no token configured)" if self.source == "sandbox" else self.source
        if self.sandbox_server:
            label = f"SANDBOX data served at {self.source} (the sandbox's own token)"
        out = [f"database: {self.db_path} ({self.size_bytes / 1e6:.1f} MB)", f"source:   {label}"]
        if not self.exists:
            return [*out, "no database yet: run a sync"]
        out.append("holds:    " + ", ".join(f"{n} {t}" for t, n in self.table_counts.items()))
        for mode in Mode:
            run = self.last_runs.get(mode)
            text = f"{run['status']} at {run['started_at']}" if run else "never"
            out.append(f"last {mode + ':':9}{text}")
        out.append(f"unreadable records waiting for a retry: {self.open_unreadable}")
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


class Mirror:
    """One local mirror database and the account (or sandbox) it mirrors.

    >>> m = Mirror("acme.db", token="...")          # or Mirror() for the configured default
    >>> m.sync()                                     # -> SyncResult
    >>> m.tests(status="running")                    # -> DataFrame

    :param db_path: the database file (default: ``TESTIO_DB_PATH`` or the per-user folder)
    :param token: API token (default: ``TESTIO_CUSTOMER_API_TOKEN``; none: the sandbox)
    :param base_url: the API's base URL, path prefix included
    :param products: default product filter (``TESTIO_PRODUCT_IDS``)
    :param sandbox: read the bundled sandbox even when a token is configured
    :param keep_backups: how many nuke backups to keep beside the database
    :param keep_changes: how long the change feed keeps rows (``"365d"``; default
        ``TESTIO_KEEP_CHANGES``, else everything); older ones are pruned as a run ends
    :param client_options: concurrency, timeouts and retry budgets
    :param progress: show progress bars by default
    :param wait: when another sync holds the lock, wait for it (True, or seconds) instead
        of failing at once
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
        client_options: ClientOptions | None = None,
        progress: bool = True,
        wait: bool | float = False,
        keep_changes: str | None = None,
    ) -> None:
        settings = Settings.load(
            keep_changes=keep_changes,
            # No products given (None, not ()): TESTIO_PRODUCT_IDS or .env may name some.
            token=token,
            base_url=base_url,
            db_path=db_path,
            product_ids=_ids(products) or None,
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

    def __repr__(self) -> str:
        return f"<Mirror {self.source} db={self.path}>"

    # -- plumbing -------------------------------------------------------------------------

    def _credentials(self) -> tuple[str, str]:
        if self.sandbox:
            sandbox = bundled_sandbox(self.settings.sandbox_preset)
            return sandbox.url, sandbox.token
        assert self.settings.token is not None
        return self.settings.base_url, self.settings.token.reveal()

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
        ids = _ids(products) or self.settings.product_ids
        return Plan(
            mode=mode,
            product_ids=ids,
            since=parse_since(since),
            dry_run=dry_run,
            keep_changes=self.settings.keep_changes,
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
        return {
            "source": self.source,
            "account_salt": salt,
            "account_token": token_hash,
            "account_products": json.dumps(products),
        }

    @staticmethod
    def _record_identity(store: Store, identity: dict[str, str]) -> None:
        with store.transaction():
            for key, value in identity.items():
                store.set_meta(key, value)

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

    def _bars(self, progress: bool | None, forward: ProgressCallback | None) -> ProgressBars:
        shown = self.progress if progress is None else progress
        return ProgressBars(disable=not shown, forward=forward)

    async def _execute(
        self, plan: Plan, progress: bool | None, on_progress: ProgressCallback | None
    ) -> SyncResult:
        self._check_path()
        # A dry run takes no lock and only reads the file: it writes into a scratch copy.
        lock = (
            contextlib.nullcontext()
            if plan.dry_run
            else WriterLock(self.path, mode=plan.mode, wait=self.wait)
        )
        open_store = Store.open_dry_run if plan.dry_run else Store.open
        with self._bars(progress, on_progress) as emit, lock:
            if not plan.dry_run:
                backups.clean_leftovers(self.path)
            async with self._client() as client:
                # Ask the service first: a bad token or product id must not touch the file.
                accounts = await client.products()
                selected = select_products(accounts, plan.product_ids)
                with open_store(self.path) as store:
                    self._record_identity(store, self._check_account(store, accounts))
                    result = await run_plan(
                        client,
                        store,
                        plan,
                        accounts,
                        selected,
                        source=self.source,
                        on_progress=emit,
                    )
        if self.settings.sandbox_data and not self.sandbox:
            # A `testio-toolkit sandbox` server, reached by URL: still sample data.
            result.note = " ".join(filter(None, [result.note, "SANDBOX DATA (server)"]))
        return result

    # -- the three modes ------------------------------------------------------------------

    async def async_(
        self,
        products: Products = None,
        since: Since = None,
        *,
        dry_run: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Async twin of ``sync()``."""
        plan = self._plan(Mode.SYNC, products, since, dry_run)
        return await self._execute(plan, progress, on_progress)

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
            self.async_(
                products, since, dry_run=dry_run, progress=progress, on_progress=on_progress
            )
        )

    async def arefresh(
        self,
        products: Products = None,
        since: Since = None,
        *,
        dry_run: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Async twin of ``refresh()``."""
        plan = self._plan(Mode.REFRESH, products, since, dry_run)
        return await self._execute(plan, progress, on_progress)

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
            self.arefresh(
                products, since, dry_run=dry_run, progress=progress, on_progress=on_progress
            )
        )

    async def anuke(
        self,
        products: Products = None,
        *,
        confirm: bool = False,
        dry_run: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> NukePlan | SyncResult:
        """Async twin of ``nuke()``."""
        ids = _ids(products) or self.settings.product_ids
        self._check_path()
        plan = backups.make_plan(self.path, ids, self.keep_backups, self.source)
        if dry_run or not confirm:
            return plan
        done: list[SyncResult] = []  # holds the result once the new mirror is in place
        try:
            with self._bars(progress, on_progress) as emit:
                async with self._client() as client:
                    with WriterLock(self.path, mode=Mode.NUKE, wait=self.wait):
                        backups.clean_leftovers(self.path)
                        accounts = await client.products()
                        selected = select_products(accounts, ids)
                        work = Plan(
                            mode=Mode.NUKE, product_ids=ids, keep_changes=self.settings.keep_changes
                        )
                        nuke = self._nuke_products if ids else self._nuke_all
                        return await nuke(client, work, accounts, selected, emit, done)
        except asyncio.CancelledError:
            if not done:
                raise
            # Interrupted after the swap (closing the connections, say): the nuke is done,
            # so say so instead of "cancelled".
            result = done[0]
            result.note = "interrupted after the new mirror was swapped in: the nuke completed"
            return result

    def nuke(
        self,
        products: Products = None,
        *,
        confirm: bool = False,
        dry_run: bool = False,
        progress: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> NukePlan | SyncResult:
        """Throw the mirror away and rebuild it from the service, safely.

        >>> tt.nuke()                     # -> NukePlan: what would go, where the backup goes
        >>> tt.nuke(confirm=True)         # rebuild aside, swap in, keep a backup
        >>> tt.nuke(products=[12], confirm=True)   # rebuild one product only

        Without ``confirm=True`` nothing changes. The new mirror is built beside the old one
        and swapped in only when the rebuild read everything; otherwise RebuildFailed is
        raised and the database is exactly as it was. ``tt.restore()`` brings the backup back.
        """
        return run_blocking(
            self.anuke(
                products,
                confirm=confirm,
                dry_run=dry_run,
                progress=progress,
                on_progress=on_progress,
            )
        )

    def _start_nuke(
        self, accounts: list[dict[str, Any]], product_ids: tuple[int, ...], *, create: bool
    ) -> tuple[dict[str, str], int | None]:
        """Check the account against the live mirror and record the nuke as running there.

        The run row goes into the live mirror, not only into the rebuild: an interrupted or
        failed rebuild is thrown away, and its outcome must still be in the history (a kill
        -9 leaves the row 'running', which the next run marks failed). Returns the account
        identity and the row's id (None when there is no mirror yet and ``create`` is off).
        """
        if not self.path.exists() and not create:
            with Store.open_read_only(self.path) as empty:
                return self._check_account(empty, accounts), None
        with Store.open(self.path) as live:
            identity = self._check_account(live, accounts)
            return identity, live.start_run(Mode.NUKE, product_ids, None) or None

    def _record_failed_nuke(
        self, run_id: int | None, product_ids: tuple[int, ...], exc: BaseException, requests: int
    ) -> None:
        """Write the true outcome of a nuke that did not swap in into the live mirror."""
        result = exc.result if isinstance(exc, RebuildFailed) else None
        status: str
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | Cancelled):
            status, error = (
                RunStatus.CANCELLED,
                "interrupted before the swap; the mirror was kept as it was",
            )
        elif isinstance(result, SyncResult):
            status, error = result.status, str(exc)
        else:
            status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
        counts = result.counts_json() if isinstance(result, SyncResult) else {}
        try:
            with Store.open(self.path) as live, live.transaction():
                if run_id is None:
                    run_id = live.start_run(Mode.NUKE, product_ids, None)
                live.finish_run(
                    run_id, status=status, requests=requests, counts=counts, error=error
                )
        except (ToolkitError, sqlite3.Error, OSError) as failure:  # never hide the cause
            log.warning("could not record the nuke's outcome in %s: %s", self.path, failure)

    async def _nuke_all(
        self,
        client: TestIOClient,
        plan: Plan,
        accounts: list[dict[str, Any]],
        selected: list[dict[str, Any]],
        emit: ProgressCallback,
        done: list[SyncResult],
    ) -> SyncResult:
        identity, run_id = self._start_nuke(accounts, plan.product_ids, create=False)
        build = backups.build_path_for(self.path)
        try:
            with Store.open(build) as fresh, self._previous() as previous:
                self._record_identity(fresh, identity)
                if self.path.exists():
                    fresh.copy_history_from(self.path, before=run_id)
                result = await run_plan(
                    client,
                    fresh,
                    plan,
                    accounts,
                    selected,
                    source=self.source,
                    on_progress=emit,
                    previous=previous,
                )
            _require_success(result, self.path)
            # No await from here on: once swapped in, the nuke is done, whatever comes.
            backup = backups.swap_in(build, self.path, forget_run=run_id)
        except BaseException as exc:
            backups.remove_database_files(build)
            self._record_failed_nuke(run_id, plan.product_ids, exc, client.stats.requests)
            raise
        done.append(result)
        backups.prune_backups(self.path, self.keep_backups)
        result.db_path = str(self.path)
        result.backup_path = str(backup) if backup else None
        return result

    async def _nuke_products(
        self,
        client: TestIOClient,
        plan: Plan,
        accounts: list[dict[str, Any]],
        selected: list[dict[str, Any]],
        emit: ProgressCallback,
        done: list[SyncResult],
    ) -> SyncResult:
        existed = self.path.exists()
        identity, run_id = self._start_nuke(accounts, plan.product_ids, create=True)
        build = backups.build_path_for(self.path)
        try:
            with Store.open(build) as fresh, self._previous() as previous:
                result = await run_plan(
                    client,
                    fresh,
                    plan,
                    accounts,
                    selected,
                    source=self.source,
                    on_progress=emit,
                    previous=previous,
                )
            _require_success(result, self.path)
            # No await from here on: once replaced, the nuke is done, whatever comes.
            backup = backups.make_backup(self.path, forget_run=run_id) if existed else None
            with Store.open(self.path) as store:
                self._record_identity(store, identity)

                def finish() -> None:
                    store.finish_run(
                        run_id or 0,
                        status=result.status,
                        requests=result.requests,
                        counts=result.counts_json(),
                        error=None,
                    )

                # The rows and the run's outcome commit together.
                store.replace_products(build, plan.product_ids, also=finish)
        except BaseException as exc:
            self._record_failed_nuke(run_id, plan.product_ids, exc, client.stats.requests)
            raise
        finally:
            backups.remove_database_files(build)
        done.append(result)
        backups.prune_backups(self.path, self.keep_backups)
        result.db_path = str(self.path)
        result.run_id = run_id
        result.backup_path = str(backup) if backup else None
        return result

    @contextlib.contextmanager
    def _previous(self) -> Iterator[Reader | None]:
        """The mirror a nuke replaces, read-only: the rebuild is checked against its tests."""
        if not self.path.exists():
            yield None
            return
        with Store.open_read_only(self.path) as store:
            yield store

    def restore(self) -> Path:
        """Put the newest backup back in place of the database; returns the backup used.

        >>> tt.restore()        # CLI: testio-toolkit restore

        The database it replaces is kept as a backup in turn, so a restore can be undone.
        """
        with WriterLock(self.path, mode="restore", wait=self.wait):
            backups.clean_leftovers(self.path)
            restored, _ = backups.restore_latest(self.path)
        backups.prune_backups(self.path, max(self.keep_backups, 1))
        return restored

    def backups(self) -> list[Path]:
        """The backups kept beside the database, newest first."""
        return backups.list_backups(self.path)

    # -- unreadable records ---------------------------------------------------------------

    def retry_unreadable(self, *, progress: bool | None = None) -> SyncResult | None:
        """Read again the products whose records the service could not serve before.

        >>> tt.retry_unreadable()     # CLI: testio-toolkit problematic retry

        Entries are marked resolved as their records are read. Returns None when nothing
        waits for a retry.
        """
        self._check_path()
        if not self.path.exists():
            return None
        with Store.open_read_only(self.path) as store:
            ids = sorted({int(entry["product_id"]) for entry in store.open_unreadable()})
        if not ids:
            return None
        return self.sync(products=ids, progress=progress)

    def clear_unreadable(self, products: Products = None) -> int:
        """Forget logged unreadable records (all, or some products'); returns how many."""
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

    # -- reading --------------------------------------------------------------------------

    def status(self) -> MirrorStatus:
        """What the mirror holds and when each mode last ran. Reads only."""
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
                status.last_runs = store.last_runs()
                status.open_unreadable = len(store.open_unreadable())
        return status

    def products(self, *, include_deleted: bool = False) -> pd.DataFrame:
        """Products: id, name, type, sectioned, tests (count), synced_at, ..."""
        from . import frames

        self._check_path()
        return frames.products(self.path, include_deleted=include_deleted)

    def tests(
        self,
        product: frames.Filter = None,
        status: frames.Filter = None,
        since: str | None = None,
        *,
        include_deleted: bool = False,
    ) -> pd.DataFrame:
        """Tests: id, product_id, product, title, status, testing_type, start_at, end_at,
        created_at, bugs (count) and any column you added."""
        from . import frames

        self._check_path()
        return frames.tests(
            self.path, product=product, status=status, since=since, include_deleted=include_deleted
        )

    def bugs(
        self,
        product: frames.Filter = None,
        test: frames.Filter = None,
        status: frames.Filter = None,
        severity: frames.Filter = None,
        since: str | None = None,
        *,
        include_deleted: bool = False,
    ) -> pd.DataFrame:
        """Bugs with their test's title and end and their product's name."""
        from . import frames

        self._check_path()
        return frames.bugs(
            self.path,
            product=product,
            test=test,
            status=status,
            severity=severity,
            since=since,
            include_deleted=include_deleted,
        )

    def features(self, product: frames.Filter = None) -> pd.DataFrame:
        """Features: id, product_id, section_id, title, description, howtofind, user_stories."""
        from . import frames

        self._check_path()
        return frames.features(self.path, product=product)

    def changes(
        self,
        since: str | None = "7d",
        product: frames.Filter = None,
        entity: frames.Filter = None,
        kind: frames.Filter = None,
        run: frames.Filter = None,
    ) -> pd.DataFrame:
        """What the runs changed, one row per change, oldest first (the change feed).

        >>> tt.changes()                                   # the last seven days
        >>> tt.changes(since="30d", entity="bug", kind="added")
        >>> tt.changes(since=None, run=42)                 # everything one run recorded

        Columns: at (UTC), entity (product/test/feature/bug), kind (added/changed/gone/
        returned), field, old, new, ids, run_id, mode, product (name) and title.
        """
        from . import frames

        self._check_path()
        return frames.changes(
            self.path, since=since, product=product, entity=entity, kind=kind, run=run
        )

    def runs(self) -> pd.DataFrame:
        """The run history: mode, status, started_at, ended_at, seconds, requests, counts."""
        from . import frames

        self._check_path()
        return frames.runs(self.path)

    def unreadable(self, *, include_resolved: bool = False) -> pd.DataFrame:
        """Records the service could not serve: product, kind, position, neighbours, tries."""
        from . import frames

        self._check_path()
        return frames.unreadable(self.path, include_resolved=include_resolved)

    @property
    def db(self) -> sqlite_utils.Database:
        """A ``sqlite_utils.Database`` on the mirror for ad-hoc queries (a new one each time).

        >>> list(tt.db.query("select status, count(*) n from tests group by status"))
        """
        import sqlite3

        import sqlite_utils

        if not self.path.exists():
            raise StoreError(f"no database at {self.path}; run a sync first", path=str(self.path))
        if storage_problem(self.path) is not None:
            # Read-only storage: SQLite could not make the -shm file; nobody writes there.
            uri = f"{self.path.resolve().as_uri()}?immutable=1"
            return sqlite_utils.Database(sqlite3.connect(uri, uri=True))
        return sqlite_utils.Database(self.path)


def _ids(products: Products) -> tuple[int, ...]:
    if products is None:
        return ()
    if isinstance(products, int | str):
        return parse_product_ids(products if isinstance(products, str) else str(products))
    return parse_product_ids([int(p) for p in products])


def _require_success(result: SyncResult, path: Path) -> None:
    if result.status == RunStatus.SUCCESS:
        return
    reasons = "; ".join(
        f"product {r.product_id}: {r.error or f'{r.unreadable} unreadable records'}"
        for r in result.products
        if r.status != RunStatus.SUCCESS
    )
    result.db_path = str(path)  # the half-built file is gone; the database is what stays
    raise RebuildFailed(
        f"the rebuild did not read everything ({result.status}: {reasons}); "
        f"{path} was left exactly as it was (only this run was added to its history)",
        result=result,
    )


# -- the default mirror and the one-shot functions ----------------------------------------

_default: Mirror | None = None
_default_lock = threading.Lock()


def configure(
    db_path: str | os.PathLike[str] | None = None,
    *,
    token: str | None = None,
    base_url: str | None = None,
    products: Products = None,
    **options: Any,
) -> Mirror:
    """Set the mirror the one-shot functions (``tt.sync()`` ...) use, and return it.

    >>> tt.configure("~/acme.db")      # token and URL still from the environment / .env
    """
    global _default
    with _default_lock:
        _default = Mirror(db_path, token=token, base_url=base_url, products=products, **options)
        return _default


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
