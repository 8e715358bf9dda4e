"""The sync engine: the three modes as one algorithm over a client and a store.

Usage (the public functions in ``api.py`` do this for you)::

    async with TestIOClient(url, token) as client:
        with Store.open(path) as store:
            accounts = await client.products()
            result = await run_plan(client, store, Plan(mode="refresh"), accounts, accounts,
                                    source="https://api.test.io/customer/v2")

How a product's test list is read, and when a read counts as complete, is ``listing.py``'s
job; this module decides what to read and writes what comes back. What differs between the
modes is a handful of decisions, all made here:

- ``sync`` reads a product's list from the head until its tests ended before the product's
  *watermark* (the service's clock when the last complete read began, less a margin), and
  the tail where unscheduled tests sort; then the held tests whose status can still change,
  and the bugs of new, changed and changeable tests. A product whose list was never read
  whole, whose last whole read is older than ``FULL_READ_AFTER_DAYS``, that has no
  watermark, or that has unreadable records logged, is read in full instead.
- ``refresh`` and ``nuke`` read every product's whole list and every bug, and mark what is
  gone upstream after checking each candidate on its detail endpoint. A nuke checks the
  tests of the mirror it replaces the same way, so a rebuild never lacks a test that exists.

Every full read checks the tests it held that the list did not show on their detail
endpoint: one that is alive means the list hid it, which is evidence that the list moved.
With evidence, the list is read again (``listing.MAX_PASSES``), and a product whose read
still does not prove complete is ``partial``: "the list moved while it was read".

Every page and every bug batch is written in its own transaction as it arrives, together with
the bookkeeping it implies and the changes it records (the change feed: the store records
them as it writes, see ``Store.begin_recording``), so an interrupted run leaves a consistent
mirror and history. A nuke's rebuild starts empty, so it records instead what it changed
compared with the mirror it replaces (``_record_rebuild``), once it read everything; every
run ends by pruning changes older than ``Plan.keep_changes``. Each product
runs in one task group that owns its pages, details and bug batches: a failure cancels and
awaits every sibling.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import feed
from .client import TestIOClient
from .errors import ApiError, AuthenticationError, ConfigError, NotFound, ServiceError, first_error
from .listing import MAX_PASSES, Listing, ListingReader, Snapshot
from .results import Counts, ProductReport, ProgressCallback, ProgressEvent, SyncResult
from .rows import (
    bug_row,
    feature_row,
    is_final,
    is_sectioned,
    parse_since,
    product_row,
    section_ids,
    test_row,
    utc_text,
)
from .store import Reader, Store, TestState, UpsertCounts, utc_now
from .vocabulary import Mode, Phase, RunStatus

log = logging.getLogger(__name__)

# An incremental sync reads a whole product again when its last whole read is this old: the
# backstop for anything the watermark rule relies on and the service does not honour.
FULL_READ_AFTER_DAYS = 7
# Subtracted from the service's clock to make a watermark: clocks of the service's machines
# may disagree, and reading the tests that ended in one more hour costs next to nothing.
WATERMARK_MARGIN = timedelta(hours=1)
# Products read side by side at most (fewer when the client's limit is pinned lower): enough
# to fill an adaptive limit, few enough that a large account does not hold every list at once.
PRODUCTS_AT_ONCE = 16
# The mirror's meta key for the limit a run ended at: the next run starts there.
LEARNED_LIMIT_KEY = "learned_concurrency"

# The product a request is made for, so the report can count requests per product.
current_report: contextvars.ContextVar[ProductReport | None] = contextvars.ContextVar(
    "current_report", default=None
)

MOVED = "the list moved while it was read"


def learned_limit(store: Reader) -> int | None:
    """The limit of requests in flight the last run against this mirror's account ended at
    (``meta``; a mirror holds one account), or None."""
    text = store.get_meta(LEARNED_LIMIT_KEY)
    return int(text) if text and text.isdigit() else None


def count_request(kind: str) -> None:
    """The client's ``on_request`` hook: charge the request to the product being read."""
    report = current_report.get()
    if report is not None:
        report.requests += 1


@dataclass(frozen=True)
class Plan:
    """What to do: the mode, an optional product filter and date limit, dry run or not;
    ``keep_changes``: how long recorded changes are kept ("365d"; None: for ever)."""

    mode: Mode = Mode.SYNC
    product_ids: tuple[int, ...] = ()
    since: str | None = None
    dry_run: bool = False
    keep_changes: str | None = None
    # Products asked for by name (`sync --product "Flourish Pro"`): resolved against the
    # service's list, as it is read, into product_ids (AsyncMirror._run).
    product_names: tuple[str, ...] = ()


@dataclass
class _ProductRun:
    """State of one product during a run."""

    product: dict[str, Any]
    report: ProductReport
    group: asyncio.TaskGroup
    held: dict[int, TestState]
    open_entries: list[dict[str, Any]]
    full_read: bool
    stop_before: str | None  # where a head read may stop (None: read the whole list)
    seen: set[int] = field(default_factory=set)
    listing: Listing = field(default_factory=Listing)
    need_bugs: set[int] = field(default_factory=set)
    bug_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    listing_complete: bool = False
    moved: list[str] = field(default_factory=list)  # evidence that the list moved
    checked: set[int] = field(default_factory=set)  # tests missing from a pass, checked
    alive: dict[int, str | None] = field(default_factory=dict)  # ... and found, with end_at
    unreadable_positions: list[tuple[int, str]] = field(default_factory=list)

    @property
    def id(self) -> int:
        return int(self.product["id"])

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self.group.create_task(coro)


def add_upsert(counts: Counts, upserted: UpsertCounts) -> None:
    counts.added += upserted.added
    counts.updated += upserted.updated
    counts.unchanged += upserted.unchanged
    counts.unmarked += upserted.unmarked


def in_window(end_at: str | None, since: str | None) -> bool:
    """A test belongs to a ``since`` window when it ended then or later (or has no end)."""
    return since is None or end_at is None or end_at >= since


def later(a: str | None, b: str | None) -> str | None:
    """The later of two UTC texts; None only when both are."""
    if a is None or b is None:
        return a or b
    return max(a, b)


def reads_in_full(
    *, full_mode: bool, backfilled: bool, watermark: str | None, last_read: str | None,
    unreadable_logged: bool, now: datetime,
) -> bool:  # fmt: skip
    """Whether a product's whole list is read: always in refresh and nuke; in a sync when
    the list was never read whole, has no watermark, has unreadable records logged, or was
    last read whole ``FULL_READ_AFTER_DAYS`` ago."""
    if full_mode or not backfilled or watermark is None or unreadable_logged:
        return True
    if last_read is None:
        return True
    return last_read < utc_text(now - timedelta(days=FULL_READ_AFTER_DAYS))


async def _all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run these side by side; the first failure cancels and awaits the rest."""
    async with asyncio.TaskGroup() as group:
        for coro in coros:
            group.create_task(coro)


class Engine:
    """Runs one plan against one client and one store. Use once.

    ``previous`` is the mirror a nuke replaces: its tests are what the rebuild is checked
    against (they count as held, though the rebuild is written into ``store``). The other
    keywords are what the result says about a run that writes elsewhere than the mirror it
    is about (a nuke's rebuild, ``rebuild.py``): ``db_path``, the mirror (default: the
    store's file); ``run_id``, the run's row, started by the caller and copied into
    ``store``, where the engine finishes it (None: the engine starts one); ``backup_path``,
    where the replaced mirror is kept once a successful rebuild is in; ``note``, a word for
    the user (sandbox data served by URL).
    """

    def __init__(
        self,
        client: TestIOClient,
        store: Store,
        plan: Plan,
        *,
        source: str,
        on_progress: ProgressCallback | None = None,
        previous: Reader | None = None,
        db_path: Path | None = None,
        run_id: int | None = None,
        backup_path: Path | None = None,
        note: str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.previous = previous
        self.plan = plan
        self.source = source
        self.db_path = db_path or store.path
        self.run_id = run_id
        self.backup_path = backup_path
        self.note = note
        self.on_progress = on_progress
        self.full = plan.mode != Mode.SYNC
        self.now = utc_now()
        self.wall_now = datetime.fromisoformat(self.now.replace("Z", "+00:00"))
        # Where the next incremental sync may stop reading a list this run proves complete
        # (set from the service's clock when the run starts).
        self.watermark: str | None = None
        # Products run side by side; the client's own limit bounds the requests in flight.
        self._product_slots = asyncio.Semaphore(
            max(2, min(client.concurrency_ceiling, PRODUCTS_AT_ONCE))
        )

    # -- entry point ----------------------------------------------------------------------

    async def run(
        self, accounts: list[dict[str, Any]], selected: list[dict[str, Any]]
    ) -> SyncResult:
        """Read, write, and report. ``accounts`` is the service's product list and
        ``selected`` the products to work on (see ``select_products``). Product-level failures
        end up in the result; run-level ones (a bad token) are raised."""
        started = time.monotonic()
        # Where the limit of requests in flight ended last run against this account.
        self.client.resume_limit(learned_limit(self.previous or self.store))
        result = SyncResult(
            mode=self.plan.mode,
            status=RunStatus.RUNNING,
            db_path=str(self.db_path),
            source=self.source,
            dry_run=self.plan.dry_run,
            started_at=self.now,
            note=self.note,
        )
        # Tests created after the run began may be missed by it; the next sync reads back
        # to here (the service's clock: its Date header on the product list).
        began = self.client.stats.first_server_date
        self.watermark = utc_text(began - WATERMARK_MARGIN) if began else None
        self._emit(Phase.PRODUCTS, total=len(selected))
        result.run_id = self.run_id or (
            self.store.start_run(self.plan.mode, self.plan.product_ids, self.plan.since) or None
        )
        # A rebuild (previous given) starts empty: its writes record nothing on their own.
        recording = self.store.begin_recording(
            result.run_id or 0, self.plan.mode, self.now, per_row=self.previous is None
        )
        result.changes = recording.tally
        result.products = [
            ProductReport(product_id=int(p["id"]), name=str(p.get("name") or "")) for p in selected
        ]
        try:
            self._write_products(accounts, selected)
            # Largest first: a product's list is read one window after the other, so the
            # longest lists set the run's length unless they start at once.
            sizes = (self.previous or self.store).live_test_counts()
            work = sorted(
                zip(selected, result.products, strict=True),
                key=lambda pair: -sizes.get(pair[1].product_id, 0),
            )
            async with asyncio.TaskGroup() as group:
                for product, report in work:
                    group.create_task(self._guarded_product(product, report))
            result.status = self._overall_status(result.products)
            if self.previous is not None and result.status == RunStatus.SUCCESS:
                self._record_rebuild(self.previous, [int(p["id"]) for p in selected])
        except BaseException as exc:
            result.status = RunStatus.CANCELLED if _is_cancel(exc) else RunStatus.FAILED
            result.error = _first_message(exc)
            self._finish(result, started)
            raise
        self._finish(result, started)
        return result

    def _finish(self, result: SyncResult, started: float) -> None:
        result.seconds = time.monotonic() - started
        result.requests = self.client.stats.requests
        result.limiter = self.client.limiter.figures()
        if result.status == RunStatus.SUCCESS and self.backup_path is not None:
            # A rebuild is swapped in only when it read everything (rebuild.py): only then
            # is the mirror it replaces kept there.
            result.backup_path = str(self.backup_path)
        keep = parse_since(self.plan.keep_changes)
        with self.store.transaction():
            if result.run_id:
                self.store.finish_run(
                    result.run_id,
                    status=result.status,
                    requests=result.requests,
                    counts=result.counts_json(),
                    error=result.error,
                )
            if keep is not None:
                self.store.prune_changes(keep)
            if not result.limiter.pinned:
                self.store.set_meta(LEARNED_LIMIT_KEY, str(result.limiter.end))

    def _record_rebuild(self, previous: Reader, product_ids: list[int]) -> None:
        """A nuke's changes: what the rebuild holds now against the mirror it replaces, for
        the products it rebuilt (a whole nuke: also products that left the account).

        A product new to the mirror records only its own ``added`` row (its baseline, as in
        any run); a product gone records only its ``gone`` row.
        """
        held = previous.product_ids()
        products = (
            sorted(set(held) | set(product_ids)) if not self.plan.product_ids else product_ids
        )
        compared = sorted(set(held) & set(product_ids))
        found: list[feed.Change] = []
        for table, scope in (
            ("products", products),
            ("tests", compared),
            ("bugs", compared),
            ("features", compared),
        ):
            # SQLite finds the rows that differ; only those are read and compared here.
            ids = self.store.differing_ids(previous.path, table, scope) if scope else set()
            found += feed.diff_rebuild(
                table, previous.tracked_rows(table, ids), self.store.tracked_rows(table, ids)
            )
        with self.store.transaction():
            self.store.record(found)

    @staticmethod
    def _overall_status(reports: Sequence[ProductReport]) -> str:
        statuses = {r.status for r in reports}
        if not reports or statuses == {RunStatus.SUCCESS}:
            return RunStatus.SUCCESS
        if statuses == {RunStatus.FAILED}:
            return RunStatus.FAILED
        return RunStatus.PARTIAL

    def _write_products(
        self, products: list[dict[str, Any]], selected: list[dict[str, Any]]
    ) -> None:
        """Upsert the selected products; a product back from the dead brings back the rows
        marked with it, and products gone upstream are marked with theirs."""
        with self.store.transaction():
            returned = self.store.marked_gone_at("products", (int(p["id"]) for p in selected))
            self.store.upsert("products", [product_row(p, self.now) for p in selected])
            for product_id, marked_at in returned.items():
                self.store.unmark_product_rows(product_id, marked_at)
            if not self.plan.product_ids:
                listed = {int(p["id"]) for p in products}
                gone = self.store.live_ids("products", "1", ()) - listed
                self.store.mark_products_gone(gone, self.now)

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
                report.status = RunStatus.FAILED
                report.error = str(exc)
            finally:
                report.seconds = time.monotonic() - started
                self._emit(Phase.PRODUCTS, advance=1)
            if report.status == RunStatus.SUCCESS and report.unreadable:
                report.status = RunStatus.PARTIAL

    async def _product(self, product: dict[str, Any], report: ProductReport) -> None:
        pid = int(product["id"])
        state = self.store.product_state(pid)
        open_entries = self.store.open_unreadable(pid)
        full_read = reads_in_full(
            full_mode=self.full,
            backfilled=state.backfill_complete,
            watermark=state.watermark,
            last_read=state.last_complete_read_at,
            unreadable_logged=bool(open_entries),
            now=self.wall_now,
        )
        since = self.plan.since
        try:
            async with asyncio.TaskGroup() as group:
                run = _ProductRun(
                    product=product,
                    report=report,
                    group=group,
                    held=(self.previous or self.store).test_states(pid),
                    open_entries=open_entries,
                    full_read=full_read,
                    stop_before=since if full_read else later(state.watermark, since),
                )
                await self._list_tests(run)
                if not full_read:
                    await self._reread_changeable(run)
                self._queue_unread_bugs(run)
                await self._read_bugs(run)
                await self._read_features(run)
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None
        self._settle_unreadable(run)
        self._settle_listing(run, since_covered=since is None or since <= (state.watermark or ""))

    # -- tests: the list ------------------------------------------------------------------

    async def _list_tests(self, run: _ProductRun) -> None:
        """Read the list until a pass proves it complete, at most ``MAX_PASSES`` times."""

        async def fetch(page: int, per_page: int) -> list[dict[str, Any]]:
            return await self.client.tests_page(run.id, page, per_page)

        def on_snapshot(snapshot: Snapshot) -> None:
            self._take_snapshot(run, snapshot)

        reader = ListingReader(fetch, self.client.options.per_page, on_snapshot)
        for attempt in range(1, MAX_PASSES + 1):
            run.listing = listing = Listing()
            head = listing.segment()
            await reader.read_head(head, run.stop_before)
            if not head.reached_end:
                await reader.read_tail(listing.segment(), self._expected_length(run))
            if listing.unreadable:
                # A broken record makes the product partial whatever else the read shows;
                # reading again would not help (the next run reads it in full).
                run.unreadable_positions = sorted(listing.unreadable.items())
                return
            evidence = listing.evidence()
            if not evidence and run.full_read:
                evidence = await self._confirm_missing(run)
            if not evidence:
                run.listing_complete = True
                run.moved = []
                return
            run.moved = evidence
            log.info(
                "product %s: %s (%s); read %d of %d",
                run.id, MOVED, "; ".join(evidence[:3]), attempt, MAX_PASSES,
            )  # fmt: skip

    def _expected_length(self, run: _ProductRun) -> int:
        """How long the list should be: the live tests held plus the new ones seen."""
        live = {test_id for test_id, state in run.held.items() if not state.gone}
        return len(live | run.seen)

    def _take_snapshot(self, run: _ProductRun, snapshot: Snapshot) -> None:
        """Write the tests of one answered window that this run has not written yet."""
        rows: list[dict[str, Any]] = []
        for item in snapshot.items:
            row = test_row(item, run.id, self.now)
            if row["id"] in run.seen or not in_window(row["end_at"], self.plan.since):
                continue  # read twice (windows overlap), or outside the `since` window
            run.seen.add(row["id"])
            rows.append(row)
        self._write_tests(run, rows)
        if run.full_read:
            # A full read wants the bugs of every test: fetch them while paging on.
            self._start_bug_batches(run, whole_only=True)

    def _write_tests(self, run: _ProductRun, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        with self.store.transaction():
            upserted = self.store.upsert("tests", rows)
        add_upsert(run.report.tests, upserted)
        changed = set(upserted.changed_ids)
        for row in rows:
            if self.full or row["id"] in changed or not is_final(row["status"]):
                run.need_bugs.add(row["id"])
        self._emit(Phase.TESTS, advance=len(rows))

    async def _confirm_missing(self, run: _ProductRun) -> list[str]:
        """Tests that should be in the list but this pass did not show (held ones in the
        window, and ones an earlier pass showed): each is read once on its detail endpoint
        (a 404 marks it gone). One that is alive where the pass looked means the list hid
        it: evidence that the list moved, for as long as the list keeps hiding it."""
        shown = run.listing.seen()
        expected = run.seen | {
            test_id
            for test_id, state in run.held.items()
            if not state.gone and in_window(state.end_at, self.plan.since)
        }
        missing = expected - shown
        unchecked = sorted(missing - run.checked)
        run.checked.update(unchecked)
        run.alive.update(await self._read_details(run, unchecked))
        hidden = sorted(
            test_id
            for test_id in missing
            if test_id in run.alive
            and (run.stop_before is None or in_window(run.alive[test_id], run.stop_before))
        )
        return [f"test {test_id} was missing from the list but exists" for test_id in hidden]

    def _settle_listing(self, run: _ProductRun, *, since_covered: bool) -> None:
        """Record how far the list was read, and report a read that proved nothing."""
        if run.unreadable_positions:
            return  # partial through the unreadable records; the next run reads in full
        with self.store.transaction():
            if not run.listing_complete:
                self.store.set_backfill_incomplete(run.id)
            elif run.full_read and self.plan.since is None:
                self.store.set_backfill_complete(run.id, self.now, self.watermark)
            elif not run.full_read and since_covered:
                self.store.set_watermark(run.id, self.watermark)
        if not run.listing_complete and run.report.status == RunStatus.SUCCESS:
            run.report.status = RunStatus.PARTIAL
            evidence = "; ".join(run.moved[:3])
            run.report.error = f"{MOVED} ({evidence}); the next run reads it in full"

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

    async def _read_details(self, run: _ProductRun, test_ids: list[int]) -> dict[int, str | None]:
        """Re-read held tests on their detail endpoint; a 404 marks one gone, with its bugs.
        Returns the tests found alive, with their end_at."""
        found: dict[int, str | None] = {}
        # The detail form may carry fields the list does not: store the list form only, so
        # a test's row does not depend on which endpoint served it.
        stored = (self.previous or self.store).raw_of("tests", test_ids)

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
            row = test_row(list_form(item, stored.get(test_id)), run.id, self.now)
            found[test_id] = row["end_at"]
            run.seen.add(test_id)
            self._write_tests(run, [row])

        await _all(one(test_id) for test_id in test_ids)
        return found

    def _queue_unread_bugs(self, run: _ProductRun) -> None:
        """Tests whose bugs were never read completely (a failed batch, an interrupted run)
        get them read now. A full read has seen, or checked on its detail endpoint, every
        held test that still exists: the others are gone."""
        for test_id, state in run.held.items():
            if run.full_read and test_id not in run.seen:
                continue
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
            self._emit(Phase.BUGS, total=len(due))
        for start in range(0, len(due), size):
            batch = due[start : start + size]
            run.bug_tasks.append(run.spawn(self._read_bug_batch(run, batch)))

    async def _read_bugs(self, run: _ProductRun) -> None:
        """Read the bugs of every test still due, and wait for all batches started.

        The batches belong to the product's task group: one that fails cancels the rest."""
        self._start_bug_batches(run, whole_only=False)
        tasks, run.bug_tasks = run.bug_tasks, []
        if tasks:
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise error

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
        self._emit(Phase.BUGS, advance=len(test_ids))

    # -- features -------------------------------------------------------------------------

    async def _read_features(self, run: _ProductRun) -> None:
        product = run.product
        if is_sectioned(product):
            sections: list[int | None] = list(section_ids(product))
        else:
            sections = [None]
        async with asyncio.TaskGroup() as group:
            reads = [group.create_task(self.client.features(run.id, s)) for s in sections]
        lists = [read.result() for read in reads]
        rows: dict[int, dict[str, Any]] = {}
        for section, features in zip(sections, lists, strict=True):
            for feature in features:
                row = feature_row(feature, run.id, section, self.now)
                rows.setdefault(row["id"], row)
        with self.store.transaction():
            add_upsert(run.report.features, self.store.upsert("features", list(rows.values())))
            gone = self.store.live_ids("features", "product_id = ?", (run.id,)) - set(rows)
            run.report.features.marked_gone += self.store.mark_gone("features", gone, self.now)
        self._emit(Phase.FEATURES, advance=len(rows))

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
        order = run.listing.order()
        for offset, error in run.unreadable_positions:
            self._log(
                run,
                "position",
                position=offset,
                prev_id=order.get(offset - 1),
                next_id=order.get(offset + 1),
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


def list_form(detail: dict[str, Any], stored_raw: str | None) -> dict[str, Any]:
    """A test from its detail endpoint in the form the list serves: the fields of the stored
    (list) form, valued from the detail; the detail's own extras (``product``, ...) apart.

    Without a stored form, only ``product`` is known to be the detail's own.
    """
    if stored_raw is None:
        return {key: value for key, value in detail.items() if key != "product"}
    stored: dict[str, Any] = json.loads(stored_raw)
    return {key: detail.get(key, value) for key, value in stored.items()}


def _is_cancel(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_cancel(e) for e in exc.exceptions)
    return isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)


def _first_message(exc: BaseException) -> str:
    first = first_error(exc)
    return str(first) or type(first).__name__


def select_products(
    accounts: list[dict[str, Any]], product_ids: Sequence[int], names: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The products to work on: all, or those asked for by id or name (any case); an
    unknown one is a ConfigError naming the account's products."""
    if not product_ids and not names:
        return accounts
    by_id = {int(p["id"]): p for p in accounts}
    by_name = {str(p.get("name", "")).casefold(): int(p["id"]) for p in accounts}
    unknown = [str(pid) for pid in product_ids if pid not in by_id]
    unknown += [repr(name) for name in names if name.strip().casefold() not in by_name]
    if unknown:
        known = ", ".join(f"{pid} {by_id[pid].get('name', '')!r}" for pid in sorted(by_id)[:20])
        raise ConfigError(
            f"unknown product {', '.join(unknown)}: the account has {known or 'no products'}"
            " (give an id or a name)"
        )
    wanted = [*product_ids, *(by_name[name.strip().casefold()] for name in names)]
    return [by_id[pid] for pid in dict.fromkeys(wanted)]


async def run_plan(
    client: TestIOClient,
    store: Store,
    plan: Plan,
    accounts: list[dict[str, Any]],
    selected: list[dict[str, Any]],
    *,
    source: str,
    on_progress: ProgressCallback | None = None,
    previous: Reader | None = None,
    db_path: Path | None = None,
    run_id: int | None = None,
    backup_path: Path | None = None,
    note: str | None = None,
) -> SyncResult:
    """Run one plan; re-raises the first error of a task group as itself.

    ``previous``, ``db_path``, ``run_id``, ``backup_path``, ``note``: see ``Engine``."""
    engine = Engine(
        client,
        store,
        plan,
        source=source,
        on_progress=on_progress,
        previous=previous,
        db_path=db_path,
        run_id=run_id,
        backup_path=backup_path,
        note=note,
    )
    try:
        return await engine.run(accounts, selected)
    except BaseExceptionGroup as group:
        raise first_error(group) from None


__all__ = ["Engine", "Plan", "count_request", "list_form", "run_plan", "select_products"]
