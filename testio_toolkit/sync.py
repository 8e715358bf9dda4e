"""The sync engine: the three modes as one algorithm over a client and a store.

Usage (the public functions in ``api.py`` do this for you)::

    async with TestIOClient(url, token) as client:
        with Store.open(path) as store:
            accounts = await client.products()
            result = await run_plan(client, store, Plan(mode="refresh"), accounts, accounts,
                                    source="https://api.test.io/customer/v2")

What differs between the modes is a handful of decisions, all made here:

- ``sync`` reads each product's tests newest first and stops once it has seen
  ``STOP_AFTER_KNOWN`` tests in a row that the mirror held before this run; it then re-reads
  the tests whose status can still change, and the bugs of new, changed and changeable tests.
  A product whose first backfill never finished, or that has unreadable records logged, is
  read in full instead.
- ``refresh`` and ``nuke`` read every page of every product and every bug, and mark what is
  gone upstream (after checking each candidate on its detail endpoint, because the list can
  shift under a reader and hide a test that still exists).

Every page and every bug batch is written in its own transaction as it arrives, together with
the bookkeeping it implies, so an interrupted run leaves a consistent mirror.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .client import TestIOClient
from .errors import ApiError, AuthenticationError, NotFound, ServiceError, first_error
from .results import Counts, ProductReport, ProgressCallback, ProgressEvent, SyncResult
from .rows import (
    bug_row,
    feature_row,
    is_final,
    is_sectioned,
    product_row,
    section_ids,
    test_row,
)
from .store import Store, TestState, UpsertCounts, utc_now

Mode = Literal["sync", "refresh", "nuke"]

# Known tests seen in a row before an incremental sync stops paging a product. Larger than a
# few list shifts, smaller than a page, so a no-change sync costs one page per product.
STOP_AFTER_KNOWN = 10
# Pages of one product requested ahead of the one being processed in a full read.
PREFETCH_PAGES = 1
# Window sizes tried, in order, when a list page answers 500 (each divides the one before).
SALVAGE_SIZES = (5, 1)

# The product a request is made for, so the report can count requests per product.
current_report: contextvars.ContextVar[ProductReport | None] = contextvars.ContextVar(
    "current_report", default=None
)


def count_request(kind: str) -> None:
    """The client's ``on_request`` hook: charge the request to the product being read."""
    report = current_report.get()
    if report is not None:
        report.requests += 1


@dataclass(frozen=True)
class Plan:
    """What to do: the mode, an optional product filter and date limit, dry run or not."""

    mode: Mode = "sync"
    product_ids: tuple[int, ...] = ()
    since: str | None = None
    dry_run: bool = False


@dataclass
class PageRead:
    """One list page: the items read with their offsets, the offsets that failed, and
    whether the list ended inside this page."""

    items: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    unreadable: list[tuple[int, str]] = field(default_factory=list)
    ended: bool = False


@dataclass
class _ProductRun:
    """State of one product during a run."""

    product: dict[str, Any]
    report: ProductReport
    held: dict[int, TestState]
    open_entries: list[dict[str, Any]]
    backfilled: bool  # the whole list was read once: `held` is the product's size
    full_read: bool = True
    seen: set[int] = field(default_factory=set)
    order: dict[int, int | None] = field(
        default_factory=dict
    )  # offset -> test id (None: unreadable)
    need_bugs: set[int] = field(default_factory=set)
    bug_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    listing_complete: bool = False
    unreadable_positions: list[tuple[int, str]] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.product["id"])


def add_upsert(counts: Counts, upserted: UpsertCounts) -> None:
    counts.added += upserted.added
    counts.updated += upserted.updated
    counts.unchanged += upserted.unchanged
    counts.unmarked += upserted.unmarked


def in_window(end_at: str | None, since: str | None) -> bool:
    """A test belongs to a ``since`` window when it ended then or later (or has no end)."""
    return since is None or end_at is None or end_at >= since


class Engine:
    """Runs one plan against one client and one store. Use once."""

    def __init__(
        self,
        client: TestIOClient,
        store: Store,
        plan: Plan,
        *,
        source: str,
        on_progress: ProgressCallback | None = None,
        run_mode: str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.plan = plan
        self.source = source
        self.run_mode = run_mode or plan.mode
        self.on_progress = on_progress
        self.full = plan.mode != "sync"
        self.now = utc_now()
        # Products run side by side; the client's own limit bounds the requests in flight.
        self._product_slots = asyncio.Semaphore(max(2, client.options.concurrency))

    # -- entry point ----------------------------------------------------------------------

    async def run(
        self, accounts: list[dict[str, Any]], selected: list[dict[str, Any]]
    ) -> SyncResult:
        """Read, write, and report. ``accounts`` is the service's product list and
        ``selected`` the products to work on (see ``select_products``). Product-level failures
        end up in the result; run-level ones (a bad token) are raised."""
        started = time.monotonic()
        result = SyncResult(
            mode=self.run_mode,
            status="running",
            db_path=str(self.store.path),
            source=self.source,
            dry_run=self.plan.dry_run,
            started_at=self.now,
        )
        self._emit("products", total=len(selected))
        result.run_id = (
            self.store.start_run(self.run_mode, self.plan.product_ids, self.plan.since) or None
        )
        result.products = [
            ProductReport(product_id=int(p["id"]), name=str(p.get("name") or "")) for p in selected
        ]
        try:
            self._write_products(accounts, selected)
            async with asyncio.TaskGroup() as group:
                for product, report in zip(selected, result.products, strict=True):
                    group.create_task(self._guarded_product(product, report))
            result.status = self._overall_status(result.products)
        except BaseException as exc:
            result.status = "cancelled" if _is_cancel(exc) else "failed"
            result.error = _first_message(exc)
            self._finish(result, started)
            raise
        self._finish(result, started)
        return result

    def _finish(self, result: SyncResult, started: float) -> None:
        result.seconds = time.monotonic() - started
        result.requests = self.client.stats.requests
        if result.run_id:
            self.store.finish_run(
                result.run_id,
                status=result.status,
                requests=result.requests,
                counts=result.counts_json(),
                error=result.error,
            )

    @staticmethod
    def _overall_status(reports: Sequence[ProductReport]) -> str:
        statuses = {r.status for r in reports}
        if not reports or statuses == {"success"}:
            return "success"
        if statuses == {"failed"}:
            return "failed"
        return "partial"

    def _write_products(
        self, products: list[dict[str, Any]], selected: list[dict[str, Any]]
    ) -> None:
        with self.store.transaction():
            self.store.upsert("products", [product_row(p, self.now) for p in selected])
            if not self.plan.product_ids:
                listed = {int(p["id"]) for p in products}
                gone = self.store.live_ids("products", "1", ()) - listed
                self.store.mark_gone("products", gone, self.now)

    def _emit(
        self, phase: str, advance: int = 0, total: int = 0, message: str | None = None
    ) -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(phase, advance=advance, total=total, message=message))

    # -- one product ----------------------------------------------------------------------

    async def _guarded_product(self, product: dict[str, Any], report: ProductReport) -> None:
        async with self._product_slots:
            current_report.set(report)
            started = time.monotonic()
            try:
                await self._product(product, report)
            except AuthenticationError:
                raise  # the token is bad for everything: stop the whole run
            except ApiError as exc:
                report.status = "failed"
                report.error = str(exc)
            finally:
                report.seconds = time.monotonic() - started
                self._emit("products", advance=1)
            if report.status == "success" and report.unreadable:
                report.status = "partial"

    async def _product(self, product: dict[str, Any], report: ProductReport) -> None:
        pid = int(product["id"])
        open_entries = self.store.open_unreadable(pid)
        run = _ProductRun(
            product=product,
            report=report,
            held=self.store.test_states(pid),
            open_entries=open_entries,
            backfilled=self.store.backfill_complete(pid),
        )
        run.full_read = self.full or bool(open_entries) or not run.backfilled
        try:
            await self._list_tests(run)
            if not self.full:
                await self._reread_changeable(run)
            self._queue_unread_bugs(run)
            await self._read_bugs(run)
            await self._read_features(run)
            if self.full and run.listing_complete and not run.unreadable_positions:
                await self._mark_gone_tests(run)
        except BaseException:
            for task in run.bug_tasks:
                task.cancel()
            await asyncio.gather(*run.bug_tasks, return_exceptions=True)
            raise
        self._settle_unreadable(run)

    # -- tests: the list ------------------------------------------------------------------

    async def _list_tests(self, run: _ProductRun) -> None:
        per_page = self.client.options.per_page
        ahead = PREFETCH_PAGES if run.full_read else 0
        # Where the list should end, from what we hold: reading ahead stops there, so a
        # refresh of an unchanged product asks for exactly the pages it needs. Unknown
        # (never read to the end): read ahead all the way.
        live = sum(1 for state in run.held.values() if not state.gone)
        last_expected = live // per_page + 1 if run.backfilled else None
        tasks: dict[int, asyncio.Task[PageRead]] = {}
        known_in_a_row = 0
        page = 1
        try:
            while True:
                until = page + ahead
                if last_expected is not None:
                    until = max(page, min(until, last_expected))
                for next_page in range(page, until + 1):
                    if next_page not in tasks:
                        tasks[next_page] = asyncio.ensure_future(
                            self._read_part(run.id, (next_page - 1) * per_page, per_page)
                        )
                read = await tasks.pop(page)
                rows, known_in_a_row, older = self._take_page(run, read, known_in_a_row)
                self._write_tests(run, rows, page_done=read.ended)
                if run.full_read:
                    # A full read wants the bugs of every test: fetch them while paging on.
                    self._start_bug_batches(run, whole_only=True)
                if read.ended:
                    run.listing_complete = True
                    return
                if older:
                    # Past the `since` limit: the window is read completely (the list is
                    # sorted by end_at), which is all a since-limited run may judge.
                    run.listing_complete = True
                    return
                if not run.full_read and known_in_a_row >= STOP_AFTER_KNOWN:
                    return
                page += 1
        except BaseException:
            for task in tasks.values():
                task.cancel()
            raise
        finally:
            # Pages read ahead past the end are let finish, not cancelled: a cancelled
            # request frees our slot while the service still works on it, so the service
            # would see more requests in flight than our limit allows.
            if tasks:
                await asyncio.gather(*tasks.values(), return_exceptions=True)

    def _take_page(
        self, run: _ProductRun, read: PageRead, known_in_a_row: int
    ) -> tuple[list[dict[str, Any]], int, bool]:
        """Turn a page into rows to write; returns them, the known streak, and whether the
        page went past the ``since`` limit."""
        rows: list[dict[str, Any]] = []
        older = False
        for offset, error in read.unreadable:
            run.order[offset] = None
            run.unreadable_positions.append((offset, error))
        for offset, item in read.items:
            row = test_row(item, run.id, self.now)
            run.order[offset] = row["id"]
            if not in_window(row["end_at"], self.plan.since):
                older = True
                continue
            if row["id"] in run.seen:
                continue  # the list shifted and showed it twice
            run.seen.add(row["id"])
            before = run.held.get(row["id"])
            # Only tests held before this run count as known: never ones written minutes ago.
            known_in_a_row = known_in_a_row + 1 if before and not before.gone else 0
            rows.append(row)
        return rows, known_in_a_row, older

    def _write_tests(
        self, run: _ProductRun, rows: list[dict[str, Any]], *, page_done: bool
    ) -> None:
        with self.store.transaction():
            upserted = self.store.upsert("tests", rows)
            if page_done and not self.plan.since:
                self.store.set_backfill_complete(run.id, self.now)
        add_upsert(run.report.tests, upserted)
        changed = set(upserted.changed_ids)
        for row in rows:
            if self.full or row["id"] in changed or not is_final(row["status"]):
                run.need_bugs.add(row["id"])
        self._emit("tests", advance=len(rows))

    async def _salvage(self, product_id: int, offset: int, size: int, error: str) -> PageRead:
        """Re-read the window ``[offset, offset + size)`` in smaller aligned pages."""
        smaller = [s for s in SALVAGE_SIZES if s < size and size % s == 0 and offset % s == 0]
        if not smaller:
            return PageRead(unreadable=[(offset, error)])
        step = smaller[0]
        parts = await asyncio.gather(
            *(
                self._read_part(product_id, start, step)
                for start in range(offset, offset + size, step)
            )
        )
        read = PageRead()
        for part in parts:
            read.items += part.items
            read.unreadable += part.unreadable
            if part.ended:
                read.ended = True
                break  # what lies after the end of the list is not part of it
        return read

    async def _read_part(self, product_id: int, offset: int, size: int) -> PageRead:
        """Read the page ``[offset, offset + size)``; when it answers 500, salvage its window
        in smaller pages."""
        try:
            items = await self.client.tests_page(product_id, offset // size + 1, size)
        except ServiceError as exc:
            if exc.status_code != 500:
                raise
            return await self._salvage(product_id, offset, size, str(exc))
        return PageRead(items=list(enumerate(items, start=offset)), ended=len(items) < size)

    # -- tests: details -------------------------------------------------------------------

    async def _reread_changeable(self, run: _ProductRun) -> None:
        """Re-read held tests whose status can still change and that the list did not show."""
        due = [
            test_id
            for test_id, state in run.held.items()
            if not state.gone
            and not is_final(state.status)
            and test_id not in run.seen
            and in_window(state.end_at, self.plan.since)
        ]
        await self._read_details(run, due)

    async def _read_details(self, run: _ProductRun, test_ids: list[int]) -> None:
        """Re-read held tests on their detail endpoint; a 404 marks one gone, with its bugs."""

        async def one(test_id: int) -> None:
            try:
                item = await self.client.test(test_id)
            except NotFound:
                with self.store.transaction():
                    run.report.tests.marked_gone += self.store.mark_gone(
                        "tests", [test_id], self.now
                    )
                    bugs = self.store.bug_ids_of_tests([test_id])
                    run.report.bugs.marked_gone += self.store.mark_gone("bugs", bugs, self.now)
                return
            except ServiceError as exc:
                if exc.status_code == 500 and run.unreadable_positions:
                    # Most likely the broken record the list could not serve either: it is
                    # logged once, as that position, and the next run reads the product in
                    # full anyway.
                    return
                self._log(run, "test", record_id=test_id, error=str(exc))
                return
            row = test_row(item, run.id, self.now)
            run.seen.add(test_id)
            self._write_tests(run, [row], page_done=False)

        await asyncio.gather(*(one(test_id) for test_id in test_ids))

    async def _mark_gone_tests(self, run: _ProductRun) -> None:
        """Tests held but not listed: confirm each on its detail endpoint before marking."""
        missing = [
            test_id
            for test_id, state in run.held.items()
            if not state.gone
            and test_id not in run.seen
            and in_window(state.end_at, self.plan.since)
        ]
        # A test found this way was hidden by a shifting list; writing it queues its bugs.
        await self._read_details(run, missing)
        await self._read_bugs(run)

    def _queue_unread_bugs(self, run: _ProductRun) -> None:
        """Tests whose bugs were never read completely (a failed batch, an interrupted run)
        get them read now."""
        for test_id, state in run.held.items():
            if not state.bugs_read and not state.gone and in_window(state.end_at, self.plan.since):
                run.need_bugs.add(test_id)

    # -- bugs -----------------------------------------------------------------------------

    def _start_bug_batches(self, run: _ProductRun, *, whole_only: bool) -> None:
        """Start reading the bugs of the tests due, in batches; with ``whole_only``, leave
        a last batch smaller than the batch size for later (more tests may join it)."""
        size = self.client.options.bug_batch_size
        due = sorted(run.need_bugs)
        if whole_only:
            due = due[: len(due) - len(due) % size]
        run.need_bugs.difference_update(due)
        if due:
            self._emit("bugs", total=len(due))
        for start in range(0, len(due), size):
            batch = due[start : start + size]
            run.bug_tasks.append(asyncio.ensure_future(self._read_bug_batch(run, batch)))

    async def _read_bugs(self, run: _ProductRun) -> None:
        """Read the bugs of every test still due, and wait for all batches started."""
        self._start_bug_batches(run, whole_only=False)
        tasks, run.bug_tasks = run.bug_tasks, []
        await asyncio.gather(*tasks)

    async def _read_bug_batch(self, run: _ProductRun, test_ids: list[int]) -> None:
        try:
            bugs = await self.client.bugs(test_ids)
        except ServiceError as exc:
            for test_id in test_ids:
                self._log(run, "bugs", record_id=test_id, error=str(exc))
            return
        rows = [bug_row(bug, run.id, self.now) for bug in bugs]
        listed = {row["id"] for row in rows}
        with self.store.transaction():
            add_upsert(run.report.bugs, self.store.upsert("bugs", rows))
            # The batch holds every bug of these tests, so a stored bug not in it is gone.
            gone = self.store.bug_ids_of_tests(test_ids) - listed
            run.report.bugs.marked_gone += self.store.mark_gone("bugs", gone, self.now)
            self.store.mark_bugs_read(test_ids, self.now)
            self._resolve(run, "bugs", test_ids)
        self._emit("bugs", advance=len(test_ids))

    # -- features -------------------------------------------------------------------------

    async def _read_features(self, run: _ProductRun) -> None:
        product = run.product
        if is_sectioned(product):
            sections: list[int | None] = list(section_ids(product))
        else:
            sections = [None]
        lists = await asyncio.gather(
            *(self.client.features(run.id, section) for section in sections)
        )
        rows: dict[int, dict[str, Any]] = {}
        for section, features in zip(sections, lists, strict=True):
            for feature in features:
                row = feature_row(feature, run.id, section, self.now)
                rows.setdefault(row["id"], row)
        with self.store.transaction():
            add_upsert(run.report.features, self.store.upsert("features", list(rows.values())))
            gone = self.store.live_ids("features", "product_id = ?", (run.id,)) - set(rows)
            run.report.features.marked_gone += self.store.mark_gone("features", gone, self.now)
        self._emit("features", advance=len(rows))

    # -- unreadable records ---------------------------------------------------------------

    def _log(
        self,
        run: _ProductRun,
        kind: str,
        *,
        record_id: int | None = None,
        position: int | None = None,
        prev_id: int | None = None,
        next_id: int | None = None,
        error: str,
    ) -> None:
        run.report.unreadable += 1
        with self.store.transaction():
            self.store.log_unreadable(
                run.id,
                kind,
                position=position,
                record_id=record_id,
                prev_id=prev_id,
                next_id=next_id,
                error=error,
                when=self.now,
            )

    def _resolve(self, run: _ProductRun, kind: str, record_ids: Sequence[int]) -> None:
        wanted = set(record_ids)
        done = [
            entry["id"]
            for entry in run.open_entries
            if entry["kind"] == kind and entry["record_id"] in wanted
        ]
        if done:
            self.store.resolve_unreadable(done, self.now)

    def _settle_unreadable(self, run: _ProductRun) -> None:
        """Log this run's unreadable list positions with their neighbours, and resolve the
        logged records this run did read."""
        for offset, error in run.unreadable_positions:
            self._log(
                run,
                "position",
                position=offset,
                prev_id=run.order.get(offset - 1),
                next_id=run.order.get(offset + 1),
                error=error,
            )
        resolved: list[int] = []
        for entry in run.open_entries:
            if (entry["kind"] == "test" and entry["record_id"] in run.seen) or (
                entry["kind"] == "position"
                and run.listing_complete
                and not run.unreadable_positions
            ):
                resolved.append(entry["id"])
        if resolved:
            with self.store.transaction():
                self.store.resolve_unreadable(resolved, self.now)


def _is_cancel(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_cancel(e) for e in exc.exceptions)
    return isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)


def _first_message(exc: BaseException) -> str:
    first = first_error(exc)
    return str(first) or type(first).__name__


def select_products(
    accounts: list[dict[str, Any]], product_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """The products to work on: all, or those asked for; an unknown id is a clear error."""
    if not product_ids:
        return accounts
    by_id = {int(p["id"]): p for p in accounts}
    unknown = [pid for pid in product_ids if pid not in by_id]
    if unknown:
        known = ", ".join(str(pid) for pid in sorted(by_id)[:20])
        raise NotFound(
            f"unknown product id {', '.join(map(str, unknown))}: the account has {known}",
            endpoint="products",
        )
    return [by_id[pid] for pid in dict.fromkeys(product_ids)]


async def run_plan(
    client: TestIOClient,
    store: Store,
    plan: Plan,
    accounts: list[dict[str, Any]],
    selected: list[dict[str, Any]],
    *,
    source: str,
    on_progress: ProgressCallback | None = None,
    run_mode: str | None = None,
) -> SyncResult:
    """Run one plan; re-raises the first error of a task group as itself."""
    engine = Engine(client, store, plan, source=source, on_progress=on_progress, run_mode=run_mode)
    try:
        return await engine.run(accounts, selected)
    except BaseExceptionGroup as group:
        raise first_error(group) from None


__all__ = ["Engine", "PageRead", "Plan", "count_request", "run_plan", "select_products"]
