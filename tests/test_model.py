"""A model-based test: random upstream changes, every mode, and the product's promises.

Hypothesis drives a state machine (``MirrorMachine``) over the real sandbox (small preset,
over HTTP) and a real mirror database file. Rules change the account between runs (tests
added at the head, where their end sorts them, or unscheduled in the tail; status and title
changes; deletions; bugs added, changed and deleted; products deleted and restored) and run
``sync``, ``refresh`` and ``nuke`` with a random product filter, ``since`` and dry run,
sometimes while the list moves under the reader (``list_moves_every``) or with transient
errors (``error_rate``). The model is the sandbox's own truth, taken before and after each
run; the mirror is read with sqlite3 directly (live rows: ``deleted_upstream_at IS NULL``).

Invariants checked after every run (where a run's filter or ``since`` makes one not
applicable, only what applies is checked):

1. A refresh or nuke without movement or faults, filter or ``since``: the live mirror
   equals the service (full raw JSON of tests, bugs, features; product ids). Rows gone
   upstream stay marked (refresh: nothing is ever deleted) or are absent (nuke: no marked
   row at all). With a filter, the same for that product; with ``since``, every test in the
   window is live and equal to the service, with its bugs.
2. An incremental sync without movement or faults: every test that exists upstream (in the
   filter and window) is live; tests whose status can still change (not archived or
   cancelled) are fresh (status and title equal the service) and so are their bugs (ids and
   status); no live test is gone upstream, except **a test that was already live in the
   mirror with a final status (archived/cancelled) before the run: an incremental sync does
   not re-read final tests, so it may leave a deleted final test live; only a full read
   (refresh, nuke, or a sync that reads the product in full) notices that it is gone.**
   (A test that ends before it was created is beyond an incremental sync's reach by
   design: ``test_a_new_test_that_ends_before_it_was_created_is_left_to_a_full_read``.)
3. With movement or transient faults during a run: either every test that existed through
   the run (in the truth before and after it, in the filter and in the ``since`` window by
   the end_at it had before the run) is live, or the run did not report ``success`` (a nuke
   may raise ``RebuildFailed``; its old mirror's rows then stay exactly as they were). A
   ``success`` without movement (transient errors only) must also satisfy 1-2. Once the
   faults are cleared, one more full run of the same mode succeeds and satisfies 1-2.
4. ``products=[p]``: the rows of other products (products, tests, bugs, features) are
   byte-identical; ``since``: held tests outside the window (by their stored end_at and the
   service's, of products alive on both sides) and their bugs are byte-identical;
   ``dry_run=True``: the database file is byte-identical (or still absent).
5. ``result.ok`` (what the CLI's exit code 0 is made of) is true exactly when the status is
   ``success``, and ``success`` exactly when every product's report says success.
   ``test_cli_exit_code_follows_status`` runs the CLI once to tie the exit code to ``ok``.

Failures Hypothesis found and shrank are replayed as plain tests at the end of this file:
a still list of 182+ tests read in pages of 5 taken for a moving one (fixed in listing.py),
and new tests the sandbox moved to end before their creation (fixed in the sandbox: the
service never does that, and an incremental sync relies on it). While a failure is open,
``MirrorMachine.tolerate_known`` can let the machine explore past it.
Profiles: ``default`` (bounded, derandomized, for CI) and ``long`` (``--hypothesis-profile=long``),
registered in ``conftest.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import testio_toolkit as tt
from testio_toolkit.backups import NukePlan
from testio_toolkit.listing import Window, window_after
from testio_toolkit.rows import FINAL_STATUSES, to_utc
from testio_toolkit.sandbox import Sandbox
from testio_toolkit.sandbox.faults import MOVE_KINDS
from testio_toolkit.sandbox.state import Truth

from .conftest import FAST, assert_mirror_equals_truth, cli, cli_env, digest, make_mirror

# Small pages: the small preset (75, 52, 23 tests) has many page boundaries to move across.
SMALL_PAGES = replace(FAST, per_page=5)
TABLES = ("products", "tests", "bugs", "features")
STATUSES = ("initialized", "waiting", "running", "locked", "customer_finalized")
MOVES = (*MOVE_KINDS, ",".join(MOVE_KINDS))


# -- reading the mirror ---------------------------------------------------------------------


@dataclass
class Rows:
    """Every row of the data tables, by table and id, as plain dicts (marked rows too)."""

    tables: dict[str, dict[int, dict[str, Any]]]
    watermarks: dict[int, str | None]  # product_state.watermark by product

    @classmethod
    def read(cls, path: Path) -> Rows:
        if not path.exists():  # sqlite3.connect would create it
            return cls({table: {} for table in TABLES}, {})
        conn = sqlite3.connect(path)
        conn.row_factory = sqlite3.Row
        try:
            return cls(
                {
                    table: {
                        row["id"]: dict(row)
                        for row in conn.execute(f"SELECT * FROM {table} ORDER BY id")
                    }
                    for table in TABLES
                },
                dict(conn.execute("SELECT product_id, watermark FROM product_state").fetchall()),
            )
        finally:
            conn.close()

    def live(self, table: str) -> dict[int, dict[str, Any]]:
        return {i: r for i, r in self.tables[table].items() if r["deleted_upstream_at"] is None}

    def of_products(self, table: str, pids: set[int]) -> dict[int, dict[str, Any]]:
        key = "id" if table == "products" else "product_id"
        return {i: r for i, r in self.tables[table].items() if r[key] in pids}

    def product_ids(self) -> set[int]:
        return set(self.tables["products"])


def in_window(end_at: str | None, since: str | None) -> bool:
    """A test belongs to a ``since`` window when its UTC end_at >= since, or it has none."""
    utc = to_utc(end_at)
    return since is None or utc is None or utc >= since


def truth_tests(truth: Truth, pids: set[int], since: str | None) -> dict[int, dict[str, Any]]:
    return {
        tid: t
        for tid, t in truth.tests.items()
        if truth.product_of_test[tid] in pids and in_window(t.get("end_at"), since)
    }


# -- a known failure (see test_regression_a_still_list_of_182_tests_reads_as_moved) --------


def unjoined_boundaries(max_size: int, limit: int = 5000) -> set[tuple[int, int]]:
    """Pairs of window starts of a plain head read that ``Segment.evidence`` compares and
    finds not overlapping although nothing moved: ``window_after``'s fallback (a larger
    window at the start of the one before, e.g. 175+5 then 175+7 then 180+5) puts a smaller
    window before one it does not overlap in ``(start, -size)`` order."""
    windows = [Window(0, max_size)]
    while windows[-1].start < limit:
        windows.append(window_after(windows[-1].end, max_size))
    ordered = sorted(windows, key=lambda w: (w.start, -w.size))
    return {
        (a.start, b.start)
        for a, b in itertools.pairwise(ordered)
        if not range(b.start, min(a.end, b.end))
    }


KNOWN_UNJOINED = unjoined_boundaries(SMALL_PAGES.per_page)
EVIDENCE = re.compile(r"the list moved while it was read \((.*)\); the next run reads it in full")
NOT_OVERLAPPING = re.compile(r"the windows at offsets (\d+) and (\d+) do not overlap")


def only_known_failure(result: object) -> bool:
    """A run that is not ``success`` only because of the known false evidence above."""
    if not isinstance(result, tt.SyncResult) or result.status == "success":
        return False
    for report in result.products:
        if report.status == "success":
            continue
        found = EVIDENCE.fullmatch(report.error or "")
        if found is None:
            return False
        for reason in found.group(1).split("; "):
            pair = NOT_OVERLAPPING.fullmatch(reason)
            if pair is None or (int(pair[1]), int(pair[2])) not in KNOWN_UNJOINED:
                return False
    return True


def note(what: str) -> None:
    """A Hypothesis event (shown by --hypothesis-show-statistics); nothing in a replay."""
    if currently_in_test_context():
        event(what)


# -- the machine ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Faulty:
    """Fault switches for one run: the list moves every ``every`` list requests, errors."""

    every: int | None
    moves: str
    error_rate: float
    seed: int


faults_strategy = (
    st.none()
    | st.builds(
        Faulty,
        every=st.integers(1, 6),
        moves=st.sampled_from(MOVES),
        error_rate=st.sampled_from([0.0, 0.0, 0.03]),
        seed=st.integers(0, 50),
    )
    | st.builds(
        Faulty,
        every=st.none(),
        moves=st.just(""),
        error_rate=st.just(0.03),
        seed=st.integers(0, 50),
    )
)
pick = st.integers(0, 10**6)


class MirrorMachine(RuleBasedStateMachine):
    """A fresh small sandbox and a fresh database file per example.

    ``tolerate_known`` lets a run that is not ``success`` only because of the known false
    evidence (``only_known_failure``; a list longer than 181 tests at 5 per page) pass as
    "not success": the machine then checks rule 3 for it and explores on, instead of finding
    that failure again in every long example. The regression tests replay with it off.
    """

    tolerate_known = False  # both failures it found are fixed; kept for the next one

    def __init__(self) -> None:
        super().__init__()
        self.sb = Sandbox(preset="small").start()
        self.dir = Path(tempfile.mkdtemp(prefix="model-"))
        self.path = self.dir / "mirror.db"
        self.mirror = make_mirror(self.sb, self.path, client_options=SMALL_PAGES)
        self.title_counter = 0
        self.steps = -1  # the invariant below also runs once before the first step
        self.runs: dict[str, int] = {}
        self.products = sorted(self.sb.truth().products)

    def teardown(self) -> None:
        if report := os.environ.get("MODEL_STATS"):  # a JSON line per example, for reports
            with open(report, "a", encoding="utf-8") as out:
                out.write(json.dumps({"steps": self.steps, "runs": self.runs}) + "\n")
        self.sb.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------------

    def alive(self) -> list[int]:
        return sorted(self.sb.truth().products)

    def hidden(self) -> list[int]:
        return sorted(set(self.products) - set(self.alive()))

    def tests(self, *, changeable: bool = False) -> list[int]:
        truth = self.sb.truth()
        return sorted(
            tid
            for tid, t in truth.tests.items()
            if not (changeable and t["status"] in FINAL_STATUSES)
        )

    @invariant()
    def count_steps(self) -> None:
        self.steps += 1

    # -- upstream changes ---------------------------------------------------------------

    @rule(
        product=pick,
        count=st.integers(1, 4),
        where=st.sampled_from(["head", "sorted", "unscheduled"]),
        status=st.sampled_from([None, "archived", "locked"]),
    )
    def add_tests(self, product: int, count: int, where: str, status: str | None) -> None:
        self.sb.advance(60)
        alive = self.alive()
        self.sb.add_tests(alive[product % len(alive)], count, status, where=where)  # type: ignore[arg-type]

    @rule(
        test=pick,
        change=st.sampled_from(["archived", "cancelled", *STATUSES, "title"]),
    )
    def change_test(self, test: int, change: str) -> None:
        """A status change (final is final: only tests that can still change change) or a
        new title (any test)."""
        if change == "title":
            ids = self.tests()
            self.title_counter += 1
            fields = {"title": f"Renamed ✓ 测试 {self.title_counter}"}
        else:
            ids = self.tests(changeable=True)
            fields = {"status": change}
        if ids:
            self.sb.update_test(ids[test % len(ids)], **fields)

    @rule(test=pick, count=st.integers(1, 3))
    def delete_tests(self, test: int, count: int) -> None:
        ids = self.tests()
        chosen = sorted({ids[(test + 7 * k) % len(ids)] for k in range(count)}) if ids else []
        self.sb.delete_tests(chosen)

    @rule(
        action=st.sampled_from(["add", "status", "delete"]),
        item=pick,
        status=st.sampled_from(["accepted", "rejected", "forwarded"]),
    )
    def change_bug(self, action: str, item: int, status: str) -> None:
        truth = self.sb.truth()
        if action == "add":
            ids = sorted(truth.tests)
            if ids:
                self.sb.add_bugs(ids[item % len(ids)], count=1 + item % 3)
            return
        bugs = sorted(truth.bugs)
        if not bugs:
            return
        bug = bugs[item % len(bugs)]
        if action == "status":
            self.sb.update_bug(bug, status=status)
        else:
            self.sb.delete_bugs([bug])

    @rule()
    def rotate_credentials(self) -> None:
        """The customer changes every environment's credentials: no change for a mirror
        that stores none (the checks compare with the masked truth and count changes)."""
        self.sb.rotate_credentials()

    @rule(restore=st.booleans(), product=pick)
    def change_product(self, restore: bool, product: int) -> None:
        """Delete a product (one always stays) or bring a deleted one back."""
        alive, hidden = self.alive(), self.hidden()
        if restore and hidden:
            self.sb.restore_product(hidden[product % len(hidden)])
        elif len(alive) > 1:
            self.sb.delete_product(alive[product % len(alive)])

    # -- runs ---------------------------------------------------------------------------

    @rule(
        product=st.none() | pick,
        since=st.none() | pick,
        dry_run=st.booleans(),
        faults=faults_strategy,
    )
    def sync(
        self, product: int | None, since: int | None, dry_run: bool, faults: Faulty | None
    ) -> None:
        self.run("sync", product, since, dry_run, faults)

    @rule(
        product=st.none() | pick,
        since=st.none() | pick,
        dry_run=st.booleans(),
        faults=faults_strategy,
    )
    def refresh(
        self, product: int | None, since: int | None, dry_run: bool, faults: Faulty | None
    ) -> None:
        self.run("refresh", product, since, dry_run, faults)

    @rule(product=st.none() | pick, dry_run=st.booleans(), faults=faults_strategy)
    def nuke(self, product: int | None, dry_run: bool, faults: Faulty | None) -> None:
        self.run("nuke", product, None, dry_run, faults)

    def run(
        self,
        mode: str,
        product: int | None,
        since: int | None,
        dry_run: bool,
        faults: Faulty | None,
    ) -> None:
        self.runs[mode] = self.runs.get(mode, 0) + 1
        truth = self.sb.truth()
        alive = sorted(truth.products)
        products = None if product is None else [alive[product % len(alive)]]
        since_text = None
        if since is not None:
            ends = sorted({to_utc(t["end_at"]) for t in truth.tests.values() if t["end_at"]})
            since_text = ends[since % len(ends)] if ends else None
        self.execute(mode, products, since_text, dry_run, faults)
        if faults is not None:
            # Once the faults are cleared, one more run of the same mode makes it whole.
            self.execute(mode, None, None, False, None)

    def execute(
        self,
        mode: str,
        products: list[int] | None,
        since: str | None,
        dry_run: bool,
        faults: Faulty | None,
    ) -> None:
        sb, path = self.sb, self.path
        truth0 = sb.truth().without_credentials()
        before = Rows.read(path)
        existed = path.exists()
        file_before = digest(path) if existed else None
        sb.clear_movements()
        if faults is not None:
            switches: dict[str, Any] = {"fault_seed": faults.seed, "error_rate": faults.error_rate}
            if faults.every is not None:
                switches.update(list_moves_every=faults.every, list_moves=faults.moves)
            sb.set_faults(**switches)
        outcome: tt.SyncResult | NukePlan | None = None
        error: tt.ToolkitError | None = None
        try:
            if mode == "nuke" and dry_run:
                outcome = self.mirror.nuke_plan(products)
            elif mode == "nuke":
                outcome = self.mirror.nuke(products, confirm=True)
            else:
                outcome = getattr(self.mirror, mode)(products, since, dry_run=dry_run)
        except tt.ToolkitError as exc:
            error = exc
        finally:
            sb.clear_faults()
        moved = bool(sb.movements)
        quiet = faults is None or (not moved and faults.error_rate == 0)
        truth1 = sb.truth().without_credentials()
        after = Rows.read(path)
        selected = set(products) if products else set(truth0.products)
        label = f"{mode}(products={products}, since={since!r}, dry_run={dry_run}, {faults})"
        for file in path.parent.glob(f"{path.stem}*"):  # the mirror, its WAL, its backups
            stored = file.read_bytes()
            leaked = [s for s in sb.served_secrets() if s.encode() in stored]
            assert not leaked, f"{label}: {file.name} holds {len(leaked)} credentials"
        status = type(error).__name__ if error else getattr(outcome, "status", "plan")
        shape = "quiet" if quiet else ("moving" if moved else "errors")
        note(f"{mode}{' dry' if dry_run else ''}, {shape}: {status}")

        known = self.tolerate_known and only_known_failure(
            outcome if error is None else getattr(error, "result", None)
        )
        if known:
            note("known failure: a still list of 182+ tests reads as moved")
        if error is not None:
            # Allowed only while faults are on; a nuke that could not prove its rebuild
            # leaves the old mirror's rows as they were.
            assert not quiet or known, f"{label} raised {type(error).__name__}: {error}"
            if mode == "nuke":
                assert after.tables == before.tables, f"{label} failed but changed the mirror"
            self.check_filter(before, after, products, label)
            return

        if dry_run:
            if mode == "nuke":
                assert isinstance(outcome, NukePlan), f"{label} returned {outcome!r}"
            if existed:
                assert digest(path) == file_before, f"{label} changed the database file"
            else:
                assert not path.exists(), f"{label} created the database file"
            if mode != "nuke":
                assert isinstance(outcome, tt.SyncResult)
                check_status(outcome, label)
                if quiet and not known:
                    assert outcome.status == "success", f"{label}: {errors_of(outcome)}"
            return

        assert isinstance(outcome, tt.SyncResult), f"{label} returned {outcome!r}"
        result = outcome
        check_status(result, label)
        if quiet and not known:
            assert result.status == "success", f"{label}: {result.status} {errors_of(result)}"
        self.check_filter(before, after, products, label)
        if since is not None:
            check_since(before, after, truth0, truth1, selected, since, label)
        if not quiet or known:
            if result.status == "success":
                # Rule 3: every test that existed through the run is live.
                through = {
                    tid
                    for tid in truth_tests(truth0, selected, since)
                    if tid in truth1.tests and truth1.product_of_test[tid] in selected
                }
                missing = sorted(through - set(after.live("tests")))
                assert not missing, f"{label} said success, yet tests {missing} are missing"
            if moved or result.status != "success":
                return
        # Quiet (or a success through transient errors only): rules 1 and 2.
        if mode == "sync":
            check_sync(
                before,
                after,
                truth1,
                selected,
                products,
                since,
                label,
                tolerate_known=self.tolerate_known,
            )
        else:
            self.check_full(mode, before, after, truth1, selected, products, since, label)

    def check_filter(
        self, before: Rows, after: Rows, products: list[int] | None, label: str
    ) -> None:
        """Rule 4, a product filter: other products' rows are byte-identical."""
        if not products:
            return
        others = (before.product_ids() | after.product_ids()) - set(products)
        for table in TABLES:
            assert before.of_products(table, others) == after.of_products(table, others), (
                f"{label} changed {table} rows of other products"
            )

    def check_full(
        self,
        mode: str,
        before: Rows,
        after: Rows,
        truth: Truth,
        selected: set[int],
        products: list[int] | None,
        since: str | None,
        label: str,
    ) -> None:
        """Rule 1, after a refresh or nuke that read everything it was asked to."""
        if mode == "refresh":
            for table in TABLES:
                gone = sorted(set(before.tables[table]) - set(after.tables[table]))
                assert not gone, f"{label} deleted {table} rows {gone[:10]}"
        if products is None and since is None:
            assert_mirror_equals_truth(self.path, self.sb)
            if mode == "nuke":
                for table in TABLES:
                    marked = sorted(set(after.tables[table]) - set(after.live(table)))
                    assert not marked, f"{label} rebuilt marked {table} rows {marked[:10]}"
            return
        # One product, or a since window: what was asked for equals the service.
        expected = truth_tests(truth, selected, since)
        live = after.live("tests")
        held = {tid: json.loads(live[tid]["raw"]) for tid in expected if tid in live}
        missing = sorted(set(expected) - set(held))
        assert not missing, f"{label} lacks tests {missing[:10]}"
        assert held == expected, f"{label}: test contents differ"
        bugs = {
            bid: json.loads(row["raw"])
            for bid, row in after.live("bugs").items()
            if row["test_id"] in expected
        }
        expected_bugs = {b: v for b, v in truth.bugs.items() if v["test"]["id"] in expected}
        assert bugs == expected_bugs, f"{label}: bugs of the tests read differ"
        if since is None:
            live_tests = {t for t, r in live.items() if r["product_id"] in selected}
            assert live_tests == set(expected), f"{label}: live tests differ"
            features = {
                f: json.loads(r["raw"])
                for f, r in after.live("features").items()
                if r["product_id"] in selected
            }
            expected_features = {
                f: v for f, v in truth.features.items() if truth.product_of_feature[f] in selected
            }
            assert features == expected_features, f"{label}: features differ"


def check_status(result: tt.SyncResult, label: str) -> None:
    """Rule 5: the exit code's source (``ok``) follows the status, and the status the
    products' reports."""
    assert result.ok == (result.status == "success"), label
    every = bool(result.products) and all(r.status == "success" for r in result.products)
    assert (result.status == "success") == (every or not result.products), (
        f"{label}: status {result.status} with reports {[r.status for r in result.products]}"
    )


def errors_of(result: tt.SyncResult) -> list[str]:
    return [f"{r.product_id}: {r.status} {r.error}" for r in result.products if r.error]


def check_since(
    before: Rows,
    after: Rows,
    truth0: Truth,
    truth1: Truth,
    selected: set[int],
    since: str,
    label: str,
) -> None:
    """Rule 4, ``since``: held tests outside the window, and their bugs, are untouched."""
    steady = selected & set(truth0.products) & set(truth1.products) & set(before.live("products"))

    def outside(truth: Truth, tid: int) -> bool:
        t = truth.tests.get(tid)
        return t is None or not in_window(t.get("end_at"), since)

    untouched = {
        tid
        for tid, row in before.tables["tests"].items()
        if row["product_id"] in steady
        and not in_window(row["end_at"], since)
        and outside(truth0, tid)
        and outside(truth1, tid)
    }
    for tid in sorted(untouched):
        assert after.tables["tests"].get(tid) == before.tables["tests"][tid], (
            f"{label} changed test {tid}, outside the since window"
        )
    for bid, row in before.tables["bugs"].items():
        if row["test_id"] in untouched:
            assert after.tables["bugs"].get(bid) == row, (
                f"{label} changed bug {bid} of test {row['test_id']}, outside the since window"
            )


def check_sync(
    before: Rows,
    after: Rows,
    truth: Truth,
    selected: set[int],
    products: list[int] | None,
    since: str | None,
    label: str,
    *,
    tolerate_known: bool = True,
) -> None:
    """Rule 2, after an incremental sync that read everything it was asked to."""
    live = after.live("tests")
    expected = truth_tests(truth, selected, since)
    held = before.live("tests")
    # The watermark assumption (sync.py): a test that appeared after a complete read ends
    # after that read began, less an hour. A test the mirror did not hold that ends before
    # its product's watermark breaks it (the sandbox's move_down can give a new test an
    # end before its creation); only the FULL_READ_AFTER_DAYS backstop finds it.
    beyond = {
        tid
        for tid, t in expected.items()
        if tolerate_known
        and tid not in held
        and (mark := before.watermarks.get(truth.product_of_test[tid])) is not None
        and (end := to_utc(t.get("end_at"))) is not None
        and end < mark
    }
    if set(expected) - set(live) & beyond:
        note("watermark assumption broken: a new test ends before the watermark")
    missing = sorted(set(expected) - set(live) - beyond)
    assert not missing, f"{label}: tests {missing[:10]} exist upstream but are not live"
    fresh = {
        tid for tid, t in expected.items() if t["status"] not in FINAL_STATUSES and tid in live
    }
    stale = sorted(
        tid
        for tid in fresh
        if (live[tid]["status"], live[tid]["title"])
        != (expected[tid]["status"], expected[tid]["title"])
    )
    assert not stale, f"{label}: changeable tests {stale[:10]} are stale"
    bugs = {
        bid: row["status"] for bid, row in after.live("bugs").items() if row["test_id"] in fresh
    }
    expected_bugs = {b: v["status"] for b, v in truth.bugs.items() if v["test"]["id"] in fresh}
    changed = sorted(b for b in bugs if b in expected_bugs and bugs[b] != expected_bugs[b])
    assert bugs == expected_bugs, (
        f"{label}: bugs of changeable tests differ: "
        f"extra {sorted(set(bugs) - set(expected_bugs))[:10]}, "
        f"missing {sorted(set(expected_bugs) - set(bugs))[:10]}, status {changed[:10]}"
    )
    if since is None:
        held_final = {
            tid for tid, row in before.live("tests").items() if row["status"] in FINAL_STATUSES
        }
        gone = sorted(
            tid
            for tid, row in live.items()
            if row["product_id"] in selected and tid not in truth.tests and tid not in held_final
        )
        assert not gone, f"{label}: tests {gone[:10]} are gone upstream but live"
    if products is None:
        assert set(after.live("products")) == set(truth.products), f"{label}: products differ"


# The state machine, under the loaded Hypothesis profile (``default`` in the suite).
TestMirrorModel = MirrorMachine.TestCase


def test_cli_exit_code_follows_status(sandbox: Sandbox, tmp_path: Path) -> None:
    """Rule 5 at the edge: exit 0 for a successful run, 1 for one that is not."""
    path = tmp_path / "cli.db"
    env = cli_env(sandbox, path)
    done = cli("sync", "--no-progress", env=env)
    assert done.exit_code == 0, done.stderr
    sandbox.set_faults(list_moves_every=1, list_moves="delete_above,move_up", fault_seed=1)
    moved = cli("sync", "--force", "--no-progress", env=env)
    assert moved.exit_code == 1, moved.stdout + moved.stderr
    assert "partial" in moved.stdout


# -- failures the machine found, shrunk and replayed ------------------------------------------


class StrictMachine(MirrorMachine):
    """The machine without its tolerance of the known failures: replays them."""

    tolerate_known = False


def replay(*steps: tuple[str, dict[str, Any]]) -> None:
    """Run shrunk steps on a fresh strict machine, as Hypothesis printed them."""
    state = StrictMachine()
    try:
        for name, arguments in steps:
            getattr(state, name)(**arguments)
    finally:
        state.teardown()


def test_regression_a_still_list_of_182_tests_reads_as_moved(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    product = min(sandbox.truth().products, key=lambda p: -len(sandbox.test_ids(p)))
    sandbox.add_tests(product, 182 - len(sandbox.test_ids(product)), where="sorted")
    mirror = make_mirror(sandbox, tmp_path / "m.db", client_options=SMALL_PAGES)

    result = mirror.refresh()  # nothing moves: no fault is on

    assert result.status == "success", errors_of(result)


def test_regression_shrunk_a_refresh_while_tests_are_inserted() -> None:
    # Hypothesis' shrunk example: the moving refresh inserts a test before every list
    # request, the list grows past 181 tests, and the refresh after it (faults off) is partial.
    faults = Faulty(every=1, moves="insert", error_rate=0.0, seed=0)
    replay(("refresh", {"dry_run": False, "faults": faults, "product": None, "since": None}))


def test_regression_shrunk_a_nuke_while_tests_are_inserted() -> None:
    faults = Faulty(every=1, moves="insert", error_rate=0.0, seed=0)
    replay(("nuke", {"dry_run": False, "faults": faults, "product": None}))


def test_a_new_test_that_ends_before_it_was_created_is_left_to_a_full_read(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """What the watermark rule relies on (CLAUDE.md): a test never ends before it was
    created. One that does (set by hand here; the service does not do it) is beyond an
    incremental sync's reach and is found by the next full read."""
    mirror = make_mirror(sandbox, tmp_path / "m.db", client_options=SMALL_PAGES)
    assert mirror.sync().status == "success"
    product = next(iter(sandbox.truth().products))
    sandbox.advance(60)
    (test,) = sandbox.add_tests(product, 1, where="sorted")
    sandbox.update_test(test, start_at="2023-10-02T10:00:00Z", end_at="2023-10-02T20:00:00Z")

    assert mirror.sync().status == "success"
    assert test not in Rows.read(tmp_path / "m.db").live("tests")
    assert mirror.refresh().status == "success"
    assert test in Rows.read(tmp_path / "m.db").live("tests")


def test_regression_shrunk_a_dry_run_while_the_list_moves_then_a_sync() -> None:
    # Hypothesis' shrunk example: the dry run's movements insert tests and move some of them
    # down, before the nuke's watermark; the dry run writes nothing, the next sync trusts the
    # watermark and misses them.
    every_kind = ",".join(MOVE_KINDS)
    replay(
        ("nuke", {"dry_run": False, "faults": None, "product": None}),
        (
            "sync",
            {
                "dry_run": True,
                "faults": Faulty(every=1, moves=every_kind, error_rate=0.0, seed=0),
                "product": None,
                "since": None,
            },
        ),
    )


def test_regression_shrunk_many_new_unscheduled_tests_then_a_quiet_sync() -> None:
    # Hypothesis' shrunk example (long profile): every list request of the first sync added
    # an unscheduled test, and so did dry runs after it; the tail of product 18640 grew far
    # past what the mirror expected, and the quiet sync's tail read gave up after 40 windows.
    replay(
        (
            "sync",
            {
                "dry_run": False,
                "faults": Faulty(every=1, moves="insert_unscheduled", error_rate=0.0, seed=0),
                "product": None,
                "since": 50464,
            },
        ),
        (
            "sync",
            {
                "dry_run": True,
                "faults": Faulty(every=4, moves="insert", error_rate=0.03, seed=3),
                "product": None,
                "since": None,
            },
        ),
        (
            "sync",
            {
                "dry_run": True,
                "faults": Faulty(every=1, moves="move_down", error_rate=0.03, seed=37),
                "product": 45,
                "since": 943,
            },
        ),
        (
            "sync",
            {
                "dry_run": True,
                "faults": Faulty(every=4, moves="insert_unscheduled", error_rate=0.0, seed=34),
                "product": 3906,
                "since": 721949,
            },
        ),
    )
