"""The sandbox account as it is now: generated data, upstream changes, serving caches.

:class:`World` answers the server's questions with ready JSON bytes and applies the
upstream changes a test asks for (new tests, status changes, deletions, a product
hidden and restored, the list moving under a reader). Generated
objects are rebuilt on demand from their skeletons; changes are kept as overrides on
top (field patches, added bugs, deleted ids), so the ``large`` preset never has to hold
every object. Encoded tests and bug lists are cached and each product's list order is
computed once, then invalidated by the changes that affect it: the first full read of
``medium`` costs the server a second or two of CPU, later ones a fraction of that.

Every public method takes the lock, so changes and requests can interleave freely.

The world keeps the sandbox clock (:meth:`World.now`): its anchor plus the time
since the world was made, plus whatever :meth:`World.advance` added. New tests are
created at that "now".
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from . import data, objects
from .data import DAY, HOUR, Skeleton
from .faults import Movement, PlannedMove
from .presets import Preset
from .timeline import Event, Timeline

__all__ = ["Broken", "SectionRequired", "Truth", "Unknown", "World"]

_FIRST_ADDED_BUG_ID = 90_000_000
_FINAL = frozenset({"archived", "cancelled"})
_INSERTS = {"insert": "sorted", "insert_head": "head", "insert_unscheduled": "unscheduled"}
# A movement tries at most this many tests before it gives up (ties leave no room).
_MOVE_ATTEMPTS = 50
_V = TypeVar("_V")


class Unknown(LookupError):
    """No such product, section or test (the server answers 404)."""


class Broken(Exception):
    """A poisoned test lies in the requested window (the server answers 500)."""


class SectionRequired(Exception):
    """Features of a sectioned product were asked for without a section (422)."""


@dataclass
class Truth:
    """What the sandbox serves right now, as deep copies; deleted objects are absent.

    ``tests`` holds each test as the exploratory_tests list serves it (without
    ``product``), in list order per product; ``section_of_feature`` is None for features
    of unsectioned products.
    """

    products: dict[int, dict[str, Any]]
    tests: dict[int, dict[str, Any]]
    bugs: dict[int, dict[str, Any]]
    features: dict[int, dict[str, Any]]
    product_of_test: dict[int, int]
    product_of_feature: dict[int, int]
    section_of_feature: dict[int, int | None]

    def without_credentials(self, marker: str = "[redacted]") -> Truth:
        """The same snapshot as a client that stores no credentials keeps it: the fields
        the sandbox filled with a test environment's secrets hold ``marker``."""

        def masked(obj: dict[str, Any]) -> dict[str, Any]:
            if "test_environment" not in obj:
                return obj
            env = objects.without_credentials(obj["test_environment"], marker)
            return obj | {"test_environment": env}

        return dataclasses.replace(
            self,
            tests={t: masked(v) for t, v in self.tests.items()},
            bugs={b: masked(v) for b, v in self.bugs.items()},
        )


class _Lru(Generic[_V]):
    """A bounded cache keyed by test id."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[int, _V] = OrderedDict()

    def clear(self) -> None:
        self._items.clear()

    def get(self, key: int) -> _V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: int, value: _V) -> None:
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def drop(self, key: int) -> None:
        self._items.pop(key, None)


def _envelope(key: str, items: list[bytes]) -> bytes:
    return b'{"' + key.encode() + b'":[' + b",".join(items) + b"]}"


class World:
    """The mutable account behind one sandbox."""

    def __init__(
        self, preset: Preset, seed: int, anchor: int = data.ANCHOR, *, evolve: bool = False
    ) -> None:
        self._started = time.monotonic()
        self._clock_offset = 0.0
        self._lock = threading.RLock()
        self._acc = data.generate_account(preset, seed)
        # The data is generated around data.ANCHOR (so ids and shapes never depend on the
        # day) and moved, whole hours at a time, to end around ``anchor``.
        self._anchor = anchor - anchor % data.HOUR
        data.shift_account(self._acc, self._anchor - data.ANCHOR)
        self._seed = seed
        self._by_product: dict[int, set[int]] = {pid: set() for pid in self._acc.products}
        self._by_index: dict[int, int] = {}
        for skeleton in self._acc.skeletons.values():
            self._by_product[skeleton.product_id].add(skeleton.id)
            self._by_index[skeleton.index] = skeleton.id
        self._order: dict[int, list[int]] = {}
        self._test_patch: dict[int, dict[str, Any]] = {}
        self._bug_patch: dict[int, dict[str, Any]] = {}
        self._feature_patch: dict[int, dict[str, Any]] = {}
        self._deleted_bugs: set[int] = set()
        self._added_bugs: dict[int, list[dict[str, Any]]] = {}
        self._added_bug_test: dict[int, int] = {}
        self._next_bug_id = _FIRST_ADDED_BUG_ID
        # Tests with a changed, added or deleted bug: their bugs take the slow path.
        self._bugs_changed: set[int] = set()
        self._pools = objects.Pools(seed)
        self._products_json: bytes | None = None
        self._feature_json: dict[int, bytes] = {}
        # Bounded so that reading all of `large` does not keep it all in memory.
        self._parts_cache: _Lru[objects.TestParts] = _Lru(12_000)
        self._test_json: _Lru[bytes] = _Lru(60_000)
        self._bug_json: _Lru[bytes] = _Lru(8_000)
        # Deleted products, kept whole so that restore_product can bring them back.
        self._hidden: set[int] = set()
        self._movements: list[Movement] = []
        self._timeline = Timeline(self, seed, self._anchor) if evolve else None

    # -- the clock -------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox's "now" in epoch seconds: anchor + time since creation + advances.

        Lock-free (one float read), so a Date header never waits for a long snapshot.
        """
        return self._anchor + (time.monotonic() - self._started) + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"the clock only moves forward, not by {seconds!r} seconds")
        with self._lock:
            self._clock_offset += seconds
            self._tick()

    def _tick(self) -> None:
        """An evolving sandbox plays the hours the clock has passed (caller holds the lock)."""
        if self._timeline is not None:
            self._timeline.catch_up(self.now())

    def timeline(self) -> list[Event]:
        """What the evolving sandbox changed by itself so far (empty when it does not)."""
        with self._lock:
            self._tick()
            return [] if self._timeline is None else list(self._timeline.events)

    # -- building objects ------------------------------------------------------------

    def _skeleton(self, test_id: int) -> Skeleton:
        """A visible test's skeleton; Unknown for tests gone or of a deleted product."""
        skeleton = self._acc.skeletons.get(test_id)
        if skeleton is None or skeleton.product_id in self._hidden:
            raise Unknown(f"test {test_id}")
        return skeleton

    def _parts(self, skeleton: Skeleton) -> objects.TestParts:
        parts = self._parts_cache.get(skeleton.id)
        if parts is None:
            if skeleton.section_id is None:
                ids = self._acc.product_features[skeleton.product_id] or []
            else:
                ids = self._acc.section_features.get(skeleton.section_id, [])
            pool = [self._acc.features[f] for f in ids if f in self._acc.features]
            parts = objects.test_parts(self._seed, skeleton, pool, self._feature_json)
            self._parts_cache.put(skeleton.id, parts)
        return parts

    def _title(self, skeleton: Skeleton) -> str:
        patch = self._test_patch.get(skeleton.id)
        if patch and "title" in patch:
            return str(patch["title"])
        return self._parts(skeleton).title

    def _test(self, test_id: int) -> dict[str, Any]:
        """The test as the list serves it, as a fresh dict, changes applied."""
        skeleton = self._skeleton(test_id)
        head, body = objects.test_head(self._seed, skeleton, self._title(skeleton))
        obj = objects.test_dict(self._pools, head, body, self._parts(skeleton))
        patch = self._test_patch.get(test_id)
        if patch:
            obj.update(copy.deepcopy(patch))
        return obj

    def _test_body(self, skeleton: Skeleton) -> int:
        """Which pooled body a test has (its bugs carry that body's environment)."""
        return objects.test_head(self._seed, skeleton, "")[1]

    def _bugs(self, test_id: int) -> list[dict[str, Any]]:
        """The bugs of a test as fresh dicts, changes applied."""
        skeleton = self._skeleton(test_id)
        title = self._title(skeleton)
        heads = objects.bug_heads(
            self._seed, skeleton, self._parts(skeleton).features, anchor=self._anchor
        )
        body = self._test_body(skeleton)
        generated = objects.bug_dicts(self._pools, heads, test_id, title, body)
        if test_id not in self._bugs_changed:
            return generated
        bugs = []
        for bug in generated + copy.deepcopy(self._added_bugs.get(test_id, [])):
            if bug["id"] in self._deleted_bugs:
                continue
            bug["test"] = {"id": test_id, "title": title}
            bug["test_environment"] = self._pools.environment_of(body)
            patch = self._bug_patch.get(bug["id"])
            if patch:
                bug.update(copy.deepcopy(patch))
            bugs.append(bug)
        return bugs

    def _sorted(self, product_id: int) -> list[int]:
        order = self._order.get(product_id)
        if order is None:
            skeletons = self._acc.skeletons
            order = sorted(
                self._by_product[product_id],
                key=lambda t: (skeletons[t].sort_end, t),
                reverse=True,
            )
            self._order[product_id] = order
        return order

    def _test_fragment(self, test_id: int) -> bytes:
        fragment = self._test_json.get(test_id)
        if fragment is None:
            skeleton = self._skeleton(test_id)
            if test_id in self._test_patch:
                fragment = objects.encode(self._test(test_id))
            else:
                head, body = objects.test_head(self._seed, skeleton, self._title(skeleton))
                fragment = objects.test_fragment(self._pools, head, body, self._parts(skeleton))
            self._test_json.put(test_id, fragment)
        return fragment

    def _bug_fragment(self, test_id: int) -> bytes:
        fragment = self._bug_json.get(test_id)
        if fragment is None:
            if test_id in self._bugs_changed:
                fragment = b",".join(objects.encode(bug) for bug in self._bugs(test_id))
            else:
                skeleton = self._skeleton(test_id)
                heads = objects.bug_heads(
                    self._seed, skeleton, self._parts(skeleton).features, anchor=self._anchor
                )
                title = self._title(skeleton)
                body = self._test_body(skeleton)
                fragment = objects.bug_fragment(self._pools, heads, test_id, title, body)
            self._bug_json.put(test_id, fragment)
        return fragment

    def _product(self, product_id: int) -> dict[str, Any]:
        """A visible product; Unknown for unknown and deleted ones."""
        product = self._acc.products.get(product_id)
        if product is None or product_id in self._hidden:
            raise Unknown(f"product {product_id}")
        return product

    # -- serving ---------------------------------------------------------------------

    def products_json(self) -> bytes:
        """Body of ``GET products``."""
        with self._lock:
            self._tick()
            if self._products_json is None:
                visible = [p for i, p in self._acc.products.items() if i not in self._hidden]
                self._products_json = _envelope("products", [objects.encode(p) for p in visible])
            return self._products_json

    def product_json(self, product_id: int) -> bytes:
        """Body of ``GET products/{id}``."""
        with self._lock:
            self._tick()
            return objects.encode({"product": self._product(product_id)})

    def tests_page_json(
        self,
        product_id: int,
        page: int,
        per_page: int,
        poisoned: set[int],
        move: PlannedMove | None = None,
    ) -> bytes:
        """Body of one ``exploratory_tests`` page; Broken if its window holds a poisoned test.

        ``move``, if given, is applied to the product's list first, in the same hold of
        the lock, relative to this request's window.
        """
        with self._lock:
            self._tick()
            self._product(product_id)
            start = (page - 1) * per_page
            if move is not None:
                self._apply_move(product_id, start, move)
            window = self._sorted(product_id)[start : start + per_page]
            if poisoned and not poisoned.isdisjoint(window):
                raise Broken(f"product {product_id} page {page}")
            return _envelope("exploratory_tests", [self._test_fragment(t) for t in window])

    def test_json(self, test_id: int, poisoned: set[int]) -> bytes:
        """Body of ``GET exploratory_tests/{id}``: the list object plus ``product``."""
        with self._lock:
            self._tick()
            skeleton = self._skeleton(test_id)
            if test_id in poisoned:
                raise Broken(f"test {test_id}")
            obj = self._test(test_id)
            product = self._acc.products[skeleton.product_id]
            obj["product"] = {"id": product["id"], "name": product["name"]}
            return objects.encode({"exploratory_test": obj})

    def bugs_json(self, test_ids: list[int]) -> bytes:
        """Body of ``GET bugs``: all bugs of the known tests among ``test_ids``."""
        with self._lock:
            self._tick()
            parts = []
            skeletons = self._acc.skeletons
            for test_id in dict.fromkeys(test_ids):
                skeleton = skeletons.get(test_id)
                if skeleton is not None and skeleton.product_id not in self._hidden:
                    fragment = self._bug_fragment(test_id)
                    if fragment:
                        parts.append(fragment)
            return _envelope("bugs", parts)

    def features_json(self, product_id: int, section_id: int | None) -> bytes:
        """Body of a features endpoint; SectionRequired for a sectioned product without one."""
        with self._lock:
            self._tick()
            product = self._product(product_id)
            if section_id is None:
                ids = self._acc.product_features[product_id]
                if ids is None:
                    raise SectionRequired(f"product {product_id} has sections")
            else:
                if all(s["id"] != section_id for s in product["sections_with_default"]):
                    raise Unknown(f"section {section_id} of product {product_id}")
                ids = self._acc.section_features.get(section_id, [])
            known = self._acc.features
            items = [objects.encode(self._feature(f)) for f in ids if f in known]
            return _envelope("features", items)

    # -- upstream changes ------------------------------------------------------------

    def _forget_test(self, test_id: int, product_id: int) -> None:
        self._test_json.drop(test_id)
        self._bug_json.drop(test_id)
        self._order.pop(product_id, None)

    def add_tests(
        self,
        product_id: int,
        count: int,
        status: str | None,
        where: str = "head",
        at: float | None = None,
    ) -> list[int]:
        """Add tests created now; return their ids, oldest (lowest) first.

        ``where``: ``"head"`` ends them later than every existing test, ``"sorted"`` gives
        them a realistic duration from now, ``"unscheduled"`` no start or end (see
        :func:`data.new_skeletons`). ``status`` None means ``running``, or ``initialized``
        for unscheduled tests.
        """
        with self._lock:
            self._product(product_id)
            if status is None:
                status = "initialized" if where == "unscheduled" else "running"
            now = self.now() if at is None else at
            after = now
            if where == "head":
                # Later than every test of every product, and after "now" (running tests).
                latest = max((s.sort_end for s in self._acc.skeletons.values()), default=now)
                after = max(latest, now)
            made = data.new_skeletons(
                self._acc, product_id, count, status, where=where, now=now, after=after
            )
            for skeleton in made:
                self._acc.skeletons[skeleton.id] = skeleton
                self._by_product[product_id].add(skeleton.id)
                self._by_index[skeleton.index] = skeleton.id
            self._order.pop(product_id, None)
            return [s.id for s in made]

    # -- what the timeline asks (the caller holds the lock) -----------------------------

    def open_tests(self) -> list[tuple[int, str, int | None]]:
        """(id, status, end) of the tests a scheduled end still moves on, by id."""
        found = []
        for test_id in sorted(self._acc.skeletons):
            status = self.test_status(test_id)
            if status in ("running", "locked", "customer_finalized"):
                found.append((test_id, status, self._acc.skeletons[test_id].end))
        return found

    def bugs_of(self, test_id: int) -> list[tuple[int, str, int]]:
        """(id, status, reported at) of a test's bugs, by id."""
        return [
            (bug["id"], str(bug["status"]), int(data.parse_time(bug["created_at"])))
            for bug in self._bugs(test_id)
        ]

    def test_status(self, test_id: int) -> str | None:
        """A visible test's status now (None: deleted or hidden)."""
        try:
            skeleton = self._skeleton(test_id)
        except Unknown:
            return None
        return str(self._test_patch.get(test_id, {}).get("status", skeleton.status))

    def test_end(self, test_id: int) -> int | None:
        return self._acc.skeletons[test_id].end

    def bug_status(self, bug_id: int) -> str | None:
        """A live bug's status now (None: deleted)."""
        try:
            test_id = self._bug_test(bug_id)
        except Unknown:
            return None
        for bug in self._bugs(test_id):
            if bug["id"] == bug_id:
                return str(bug["status"])
        return None

    def product_sizes(self) -> list[tuple[int, int]]:
        """(id, tests) of the visible products."""
        return [(p, len(ids)) for p, ids in self._by_product.items() if p not in self._hidden]

    def rotate_credentials(self) -> None:
        """The customer changes every test environment's credentials (nothing else)."""
        with self._lock:
            self._pools.rotate_credentials()
            self._test_json.clear()
            self._bug_json.clear()

    def served_secrets(self) -> set[str]:
        """Every credential any environment held so far (all rotations): what must never
        reach a client's disk, logs or output."""
        with self._lock:
            return set(self._pools.served_secrets)

    def update_test(self, test_id: int, fields: dict[str, Any]) -> None:
        """Change fields of a test as the service serves it."""
        with self._lock:
            skeleton = self._skeleton(test_id)
            if "id" in fields or "product" in fields:
                raise ValueError("a test's id and product cannot change")
            if "end_at" in fields:
                end_at = fields["end_at"]
                # A test without end_at sorts last, like the oldest one.
                skeleton.sort_end = float("-inf") if end_at is None else data.parse_time(end_at)
            self._test_patch.setdefault(test_id, {}).update(copy.deepcopy(fields))
            self._forget_test(test_id, skeleton.product_id)

    def _bug_test(self, bug_id: int) -> int:
        """The test a live bug belongs to; generated bug ids encode it."""
        if bug_id in self._deleted_bugs:
            raise Unknown(f"bug {bug_id}")
        if bug_id in self._added_bug_test:
            return self._skeleton(self._added_bug_test[bug_id]).id
        index, slot = divmod(bug_id - data.BUG_BASE, data.BUG_SLOTS)
        test_id = self._by_index.get(index) if bug_id >= data.BUG_BASE else None
        if test_id is None or slot >= self._acc.skeletons[test_id].n_bugs:
            raise Unknown(f"bug {bug_id}")
        self._skeleton(test_id)  # a bug of a deleted product's test is unknown too
        return test_id

    def update_bug(self, bug_id: int, fields: dict[str, Any]) -> None:
        """Change fields of a bug as the service serves it."""
        with self._lock:
            if "id" in fields:
                raise ValueError("a bug's id cannot change")
            test_id = self._bug_test(bug_id)
            self._bug_patch.setdefault(bug_id, {}).update(copy.deepcopy(fields))
            self._bugs_changed.add(test_id)
            self._bug_json.drop(test_id)

    def add_bugs(self, test_id: int, count: int) -> list[int]:
        """Add generated bugs to a test; return their ids."""
        with self._lock:
            skeleton = self._skeleton(test_id)
            # Borrow the generator: the bugs of a test number no test has, renumbered.
            template = copy.copy(skeleton)
            features = self._parts(skeleton).features
            heads: list[tuple[dict[str, Any], int]] = []
            while len(heads) < count:
                template.n_bugs = min(count - len(heads), data.MAX_BUGS)
                borrowed = self._acc.rng.between(10**9, 2 * 10**9)
                heads += objects.bug_heads(
                    self._seed, template, features, index=borrowed, anchor=self._anchor
                )
            ids = []
            title, body = self._title(skeleton), self._test_body(skeleton)
            for bug in objects.bug_dicts(self._pools, heads, test_id, title, body):
                bug["id"] = self._next_bug_id
                self._next_bug_id += self._acc.rng.between(1, 5)
                self._added_bugs.setdefault(test_id, []).append(bug)
                self._added_bug_test[bug["id"]] = test_id
                ids.append(bug["id"])
            self._bugs_changed.add(test_id)
            self._bug_json.drop(test_id)
            return ids

    def delete_tests(self, test_ids: list[int]) -> None:
        """Delete tests and their bugs; unknown ids raise before anything changes."""
        with self._lock:
            skeletons = [self._skeleton(t) for t in test_ids]
            for skeleton in skeletons:
                self._drop_test(skeleton)

    def _drop_test(self, skeleton: Skeleton) -> None:
        test_id = skeleton.id
        del self._acc.skeletons[test_id]
        self._by_product[skeleton.product_id].discard(test_id)
        self._by_index.pop(skeleton.index, None)
        self._test_patch.pop(test_id, None)
        self._bugs_changed.discard(test_id)
        for bug in self._added_bugs.pop(test_id, []):
            self._added_bug_test.pop(bug["id"], None)
        self._forget_test(test_id, skeleton.product_id)

    def delete_bugs(self, bug_ids: list[int]) -> None:
        """Delete bugs; unknown ids raise before anything changes."""
        with self._lock:
            owners = [(b, self._bug_test(b)) for b in bug_ids]
            for bug_id, test_id in owners:
                self._deleted_bugs.add(bug_id)
                self._bug_patch.pop(bug_id, None)
                self._bugs_changed.add(test_id)
                self._bug_json.drop(test_id)

    def delete_product(self, product_id: int) -> None:
        """Delete a product from the account: it and its tests, bugs and features vanish.

        It is hidden, not destroyed, so that :meth:`restore_product` can bring it back.
        """
        with self._lock:
            self._product(product_id)
            self._hidden.add(product_id)
            self._products_json = None

    def restore_product(self, product_id: int) -> None:
        """Bring a deleted product back exactly as it was; Unknown if it is not deleted."""
        with self._lock:
            if product_id not in self._hidden:
                raise Unknown(f"no deleted product {product_id}")
            self._hidden.discard(product_id)
            self._products_json = None

    def update_product(self, product_id: int, fields: dict[str, Any]) -> None:
        """Change fields of a product (a rename shows in test details too)."""
        with self._lock:
            if "id" in fields:
                raise ValueError("a product's id cannot change")
            self._product(product_id).update(copy.deepcopy(fields))
            self._products_json = None

    def update_feature(self, feature_id: int, fields: dict[str, Any]) -> None:
        """Change fields of a product feature (``title="..."``) in the product's list.

        Tests keep the snapshot of the feature they were made with, as on the service (and
        the generator keeps drawing test and bug texts from the original), so only the
        features endpoints and ``truth().features`` show the change.
        """
        with self._lock:
            if "id" in fields:
                raise ValueError("a feature's id cannot change")
            if feature_id not in self._acc.features:
                raise Unknown(f"feature {feature_id}")
            self._feature_patch.setdefault(feature_id, {}).update(copy.deepcopy(fields))

    def _feature(self, feature_id: int) -> dict[str, Any]:
        """A product feature as its list serves it (with the changes made to it)."""
        feature = self._acc.features[feature_id]
        patch = self._feature_patch.get(feature_id)
        return copy.deepcopy(feature | patch) if patch else copy.deepcopy(feature)

    def test_ids(self, product_id: int) -> list[int]:
        """A product's test ids in list order (newest first)."""
        with self._lock:
            self._product(product_id)
            return list(self._sorted(product_id))

    def truth(self, product_ids: Iterable[int] | None = None) -> Truth:
        """A deep-copied snapshot of what the sandbox serves, of all or some products."""
        with self._lock:
            self._tick()
            visible = [p for p in self._acc.products if p not in self._hidden]
            wanted = list(visible if product_ids is None else product_ids)
            for product_id in wanted:
                self._product(product_id)
            tests: dict[int, dict[str, Any]] = {}
            bugs: dict[int, dict[str, Any]] = {}
            product_of_test: dict[int, int] = {}
            for product_id in wanted:
                # Decoding what the server sends makes the snapshot equal to it by
                # construction, fresh objects included, and is the fastest way there.
                order = self._sorted(product_id)
                items = json.loads(b"[" + b",".join(map(self._test_fragment, order)) + b"]")
                for test_id, item in zip(order, items, strict=True):
                    tests[test_id] = item
                    product_of_test[test_id] = product_id
                    fragment = self._bug_fragment(test_id)
                    if fragment:
                        for bug in json.loads(b"[" + fragment + b"]"):
                            bugs[bug["id"]] = bug
            acc = self._acc
            chosen = set(wanted)
            features = [f for f, p in acc.product_of_feature.items() if p in chosen]
            return Truth(
                products={p: copy.deepcopy(acc.products[p]) for p in visible if p in chosen},
                tests=tests,
                bugs=bugs,
                features={f: self._feature(f) for f in features},
                product_of_test=product_of_test,
                product_of_feature={f: acc.product_of_feature[f] for f in features},
                section_of_feature={f: acc.section_of_feature[f] for f in features},
            )

    # -- the list moving under a reader ----------------------------------------------

    def movements(self) -> list[Movement]:
        """Every movement applied so far, oldest first (a copy)."""
        with self._lock:
            return list(self._movements)

    def clear_movements(self) -> None:
        """Forget the recorded movements."""
        with self._lock:
            self._movements.clear()

    def _apply_move(self, product_id: int, start: int, move: PlannedMove) -> Movement | None:
        """Apply one movement to a product's list, relative to a window starting at ``start``.

        Choices draw from an RNG seeded by ``move.seed``. A movement that finds nothing to
        act on (no test to move or delete) changes nothing and is not recorded.
        """
        rng = random.Random(move.seed)
        test_id: int | None
        if move.kind in _INSERTS:
            test_id = self.add_tests(product_id, 1, None, _INSERTS[move.kind])[0]
        elif move.kind == "delete_above":
            order = self._sorted(product_id)
            # Above the window; on the first page (nothing above) any test of the list.
            pool = order[:start] or order
            test_id = rng.choice(pool) if pool else None
            if test_id is not None:
                self._drop_test(self._acc.skeletons[test_id])
        elif move.kind in ("move_up", "move_down"):
            test_id = self._move_test(product_id, start, move.kind == "move_up", rng)
        else:
            raise ValueError(f"unknown movement {move.kind!r}")
        if test_id is None:
            return None
        movement = Movement(move.kind, product_id, test_id, move.request_number)
        self._movements.append(movement)
        return movement

    def _move_test(self, product_id: int, start: int, up: bool, rng: random.Random) -> int | None:
        """Give one test a new end_at that moves it across ``start``; its id, or None.

        Up: a test at offset >= start goes to an offset < start; down: one at an offset
        < start to one >= start, never to an end before the test was created. On the first
        page, or when nothing lies at/after ``start``, any test moves up (down) by a random
        number of positions. Tests whose status is not final are preferred.
        """
        order = self._sorted(product_id)
        n = len(order)
        if n < 2:
            return None
        # (offsets of candidate tests, their target offsets in the list without them)
        choices: list[tuple[range, Callable[[int], range]]] = []
        if 0 < start < n:
            if up:
                choices.append((range(start, n), lambda i: range(0, start)))
            else:
                choices.append((range(0, start), lambda i: range(start, n)))
        if up:
            choices.append((range(1, n), lambda i: range(0, i)))
        else:
            choices.append((range(0, n - 1), lambda i: range(i + 1, n)))
        for candidates, targets_of in choices:
            for i in self._prefer_open(order, candidates, rng)[:_MOVE_ATTEMPTS]:
                targets = list(targets_of(i))
                rng.shuffle(targets)
                for t in targets:
                    end = self._end_between(order, i, t, rng)
                    # A test may end early, but never before it was created (as on the
                    # service; an incremental sync relies on it, see CLAUDE.md).
                    if end is not None and end >= self._acc.skeletons[order[i]].created:
                        test_id = order[i]
                        self._reschedule(test_id, end, rng)
                        return test_id
        return None

    def _prefer_open(self, order: list[int], offsets: range, rng: random.Random) -> list[int]:
        """The offsets shuffled, those of tests whose status can still change first."""
        open_: list[int] = []
        final: list[int] = []
        for i in offsets:
            patch = self._test_patch.get(order[i], {})
            status = patch.get("status", self._acc.skeletons[order[i]].status)
            (final if status in _FINAL else open_).append(i)
        rng.shuffle(open_)
        rng.shuffle(final)
        return open_ + final

    def _end_between(self, order: list[int], i: int, t: int, rng: random.Random) -> int | None:
        """An end (whole seconds) that sorts test ``order[i]`` at offset ``t``, or None.

        Its neighbours there are those of the list without it; the end lies strictly
        between theirs, so ids do not matter. An unscheduled test above leaves no room.
        """
        skeletons = self._acc.skeletons

        def rest(j: int) -> int:  # the list without order[i], without copying it
            return order[j] if j < i else order[j + 1]

        hi = skeletons[rest(t - 1)].sort_end if t > 0 else math.inf
        lo = skeletons[rest(t)].sort_end if t < len(order) - 1 else -math.inf
        if hi == -math.inf:
            return None
        if hi == math.inf and lo == -math.inf:
            return int(self.now()) + rng.randint(data.MIN_DURATION, data.MAX_DURATION)
        if hi == math.inf:
            return math.floor(lo) + rng.randint(HOUR, 3 * DAY)  # later than the first
        if lo == -math.inf:
            return math.ceil(hi) - rng.randint(HOUR, 30 * DAY)  # before the last scheduled
        low, high = math.floor(lo) + 1, math.ceil(hi) - 1
        return rng.randint(low, high) if low <= high else None

    def _reschedule(self, test_id: int, end: int, rng: random.Random) -> None:
        """Serve a new end_at (in a random offset), and a start_at before it if needed."""
        served = self._test(test_id)
        fields = {"end_at": data.format_time(end, rng.choice(data.OFFSETS))}
        start_at = served["start_at"]
        if start_at is None or data.parse_time(start_at) > end:
            start = end - rng.randint(2, 72) * HOUR
            fields["start_at"] = data.format_time(start, rng.choice(data.OFFSETS))
        self.update_test(test_id, fields)
