"""The change feed's decisions, without I/O: what counts as a change, and how to say it.

Usage::

    >>> from testio_toolkit.feed import diff_row, summary_line, Tally
    >>> before = {"id": 7, "product_id": 3, "status": "running", "title": "Checkout",
    ...           "start_at": None, "end_at": None, "testing_type": "coverage"}
    >>> [(c.kind, c.field, c.old, c.new)
    ...  for c in diff_row("tests", before, {**before, "status": "archived"}, was_gone=False)]
    [('changed', 'status', 'running', 'archived')]

Every writing run records what it changed in the ``changes`` table (``store.py`` writes the
rows, in the same transaction as the change itself; ``tt.changes()`` reads them). Decisions,
and why:

- **Tracked fields** (``TRACKED``) are the ones a CSM reads: a test's status, title, dates
  and testing type; a bug's status, severity and title; a feature's title; a product's name.
  A change to anything else (a description, a field only the raw JSON holds) records nothing:
  the feed is for people, and the raw JSON is still in the mirror.
- **One row per changed tracked field**, with its old and new value as text; **one row per
  record added, gone upstream (marked) or returned (unmarked)**, with no field. A record that
  returns with changed fields gets its ``returned`` row and a row per changed field.
- **A product's first read is its baseline**: a product new to the mirror records one
  ``added`` row for itself, not one per test, bug and feature it brings (a first sync of an
  account would otherwise "add" the whole account). Tests and bugs added to a product the
  mirror already holds are news, and are recorded one by one. A consequence: a test that was
  outside an earlier run's ``since`` window and is mirrored later counts as added then.
- **A product gone upstream records one ``gone`` row**, not one per test, bug and feature
  marked with it; they come back with it, and its ``returned`` row says so.
- **A nuke records what the rebuild changed compared with the mirror it replaced**
  (``diff_rebuild``), per rebuilt product, not the rebuild's own inserts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .vocabulary import BugStatus, ChangeKind, Entity, TestStatus

# The fields whose changes are recorded, per mirror table.
TRACKED: dict[str, tuple[str, ...]] = {
    "products": ("name",),
    "tests": ("status", "title", "start_at", "end_at", "testing_type"),
    "bugs": ("status", "severity", "title"),
    "features": ("title",),
}
ENTITY_OF: dict[str, Entity] = {
    "products": Entity.PRODUCT,
    "tests": Entity.TEST,
    "bugs": Entity.BUG,
    "features": Entity.FEATURE,
}
# What ``Change.as_row`` gives, in the order of the ``changes`` table's columns (after id).
COLUMNS = (
    "run_id",
    "mode",
    "at",
    "entity",
    "entity_id",
    "product_id",
    "test_id",
    "kind",
    "field",
    "old",
    "new",
)


@dataclass(frozen=True)
class Change:
    """One recorded change of one record (``field`` only for ``changed``)."""

    entity: Entity
    entity_id: int
    product_id: int
    kind: ChangeKind
    test_id: int | None = None
    field: str | None = None
    old: str | None = None
    new: str | None = None
    # Not stored: the severity of an added bug, for the summary's "3 of them critical".
    severity: str | None = None

    def as_row(self, run_id: int, mode: str, at: str) -> tuple[Any, ...]:
        """The values of a ``changes`` row, in ``COLUMNS`` order."""
        return (
            run_id,
            mode,
            at,
            self.entity,
            self.entity_id,
            self.product_id,
            self.test_id,
            self.kind,
            self.field,
            self.old,
            self.new,
        )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _owner(table: str, row: Mapping[str, Any]) -> tuple[int, int | None]:
    """The product (a product is its own) and, for a bug, the test a row belongs to."""
    if table == "products":
        return int(row["id"]), None
    test_id = int(row["test_id"]) if table == "bugs" and row.get("test_id") is not None else None
    return int(row["product_id"]), test_id


def added(table: str, row: Mapping[str, Any]) -> Change:
    """The ``added`` change of a record new to the mirror."""
    product_id, test_id = _owner(table, row)
    return Change(
        ENTITY_OF[table],
        int(row["id"]),
        product_id,
        ChangeKind.ADDED,
        test_id=test_id,
        severity=_text(row.get("severity")) if table == "bugs" else None,
    )


def gone(table: str, row: Mapping[str, Any]) -> Change:
    """The ``gone`` change of a record marked deleted upstream (``row``: id and owners)."""
    product_id, test_id = _owner(table, row)
    return Change(ENTITY_OF[table], int(row["id"]), product_id, ChangeKind.GONE, test_id=test_id)


def diff_row(
    table: str, before: Mapping[str, Any] | None, after: Mapping[str, Any], *, was_gone: bool
) -> list[Change]:
    """What writing ``after`` over the stored ``before`` changes, in tracked terms.

    ``before`` None: the record is new (one ``added``). ``was_gone``: it was marked gone
    upstream and is back (one ``returned``, then its changed fields). Otherwise one
    ``changed`` per tracked field whose value differs.
    """
    if before is None:
        return [added(table, after)]
    product_id, test_id = _owner(table, after)
    entity, entity_id = ENTITY_OF[table], int(after["id"])
    found: list[Change] = []
    if was_gone:
        found.append(Change(entity, entity_id, product_id, ChangeKind.RETURNED, test_id=test_id))
    for name in TRACKED[table]:
        old, new = _text(before.get(name)), _text(after.get(name))
        if old != new:
            found.append(
                Change(
                    entity,
                    entity_id,
                    product_id,
                    ChangeKind.CHANGED,
                    test_id=test_id,
                    field=name,
                    old=old,
                    new=new,
                )
            )
    return found


def diff_rebuild(
    table: str,
    previous: Mapping[int, Mapping[str, Any]],
    rebuilt: Mapping[int, Mapping[str, Any]],
) -> list[Change]:
    """What a nuke's rebuild changed, for one table of the products it rebuilt.

    Both maps hold rows by id with the tracked fields, the owners and ``gone`` (True when
    marked deleted upstream). A record live in the rebuild and absent from the previous
    mirror is ``added``; live in the previous mirror and absent (or marked) in the rebuild,
    ``gone``; marked in the previous mirror and live in the rebuild, ``returned``; live in
    both, its changed fields. A record marked in both is left alone.
    """
    found: list[Change] = []
    for record_id in sorted(set(previous) | set(rebuilt)):
        old, new = previous.get(record_id), rebuilt.get(record_id)
        old_live = old is not None and not old["gone"]
        new_live = new is not None and not new["gone"]
        if new is not None and new_live:
            if old is None:
                found.append(added(table, new))
            else:
                found.extend(diff_row(table, old, new, was_gone=not old_live))
        elif old is not None and old_live:
            found.append(gone(table, old))
    return found


@dataclass
class Tally:
    """How many changes of each kind a run recorded: what its summary line says.

    ``kinds`` counts rows by (entity, kind); ``statuses`` counts status changes by
    (entity, new status); ``critical`` counts added critical bugs.
    """

    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    critical: int = 0

    def add(self, changes: Iterable[Change]) -> None:
        for change in changes:
            self.kinds[(change.entity, change.kind)] += 1
            if change.kind == ChangeKind.CHANGED and change.field == "status" and change.new:
                self.statuses[(change.entity, change.new)] += 1
            if change.kind == ChangeKind.ADDED and change.severity == "critical":
                self.critical += 1

    @property
    def total(self) -> int:
        """Every change row counted."""
        return sum(self.kinds.values())

    def as_json(self) -> dict[str, Any]:
        """For the run history: ``{'bug added': 12, ..., 'critical': 3}``."""
        out: dict[str, Any] = {f"{e} {k}": n for (e, k), n in sorted(self.kinds.items())}
        out.update({f"{e} -> {s}": n for (e, s), n in sorted(self.statuses.items())})
        if self.critical:
            out["critical"] = self.critical
        return out


# Status changes the summary names (by their target status), in the order it names them.
# A test "finished" when its customer finalized it; archived and cancelled are final.
NAMED_STATUSES: tuple[tuple[Entity, str, str], ...] = (
    (Entity.TEST, TestStatus.CUSTOMER_FINALIZED, "finished"),
    (Entity.TEST, TestStatus.ARCHIVED, "archived"),
    (Entity.TEST, TestStatus.CANCELLED, "cancelled"),
    (Entity.BUG, BugStatus.ACCEPTED, "accepted"),
    (Entity.BUG, BugStatus.REJECTED, "rejected"),
)
_ORDER = (Entity.PRODUCT, Entity.TEST, Entity.BUG, Entity.FEATURE)


def _many(count: int, entity: str) -> str:
    return f"{count} {entity}{'' if count == 1 else 's'}"


def summary_line(tally: Tally) -> str:
    """The run's changes in a line a person reads; "no changes" when there were none.

    >>> t = Tally(); t.kinds[("bug", "added")] = 12; t.critical = 3
    >>> t.kinds[("test", "changed")] = 4; t.statuses[("test", "customer_finalized")] = 4
    >>> summary_line(t)
    '12 new bugs, 3 of them critical; 4 tests finished'

    New records first (with the critical bugs among them), then status changes into the
    states in ``NAMED_STATUSES``, then other field changes, records gone and returned.
    """
    parts: list[str] = []
    for entity in _ORDER:
        count = tally.kinds[(entity, ChangeKind.ADDED)]
        if count:
            text = f"{count} new {entity}{'' if count == 1 else 's'}"
            if entity == Entity.BUG and tally.critical:
                text += (
                    ", all critical"
                    if tally.critical == count
                    else (f", {tally.critical} of them critical")
                )
            parts.append(text)
    named = 0
    for entity, status, word in NAMED_STATUSES:
        count = tally.statuses[(entity, status)]
        if count:
            named += count
            parts.append(f"{_many(count, entity)} {word}")
    changed = sum(tally.kinds[(e, ChangeKind.CHANGED)] for e in _ORDER) - named
    if changed:
        parts.append(f"{changed} other change{'' if changed == 1 else 's'}")
    for kind, word in ((ChangeKind.GONE, "gone"), (ChangeKind.RETURNED, "back")):
        for entity in _ORDER:
            count = tally.kinds[(entity, kind)]
            if count:
                parts.append(f"{_many(count, entity)} {word}")
    return "; ".join(parts) or "no changes"
