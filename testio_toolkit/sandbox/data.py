"""Deterministic generation of a sandbox account.

Products, sections and features are made eagerly: a few thousand small objects at most.
Tests are made eagerly only as skeletons (the fields that ordering, status and bug counts
depend on); the full test object and its bugs are built on demand by :mod:`.objects`, each from its
own RNG seeded by ``(seed, test index)``, so that ``large`` starts in about a second
without holding 250,000 bugs in memory.

Times are relative to :data:`ANCHOR`, the sandbox's fixed "now" (2025-06-02 12:00 UTC),
not to the wall clock: the same preset and seed give the same data on any day. Tests that
are still ``initialized`` or ``waiting`` at ANCHOR are *unscheduled*: no ``start_at`` or
``end_at`` yet (their creation time is kept), so they sort last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from . import text
from .presets import Preset
from .text import Dice

__all__ = [
    "ANCHOR",
    "MAX_DURATION",
    "MIN_DURATION",
    "UNSCHEDULED_STATUSES",
    "Account",
    "Skeleton",
    "format_time",
    "generate_account",
    "new_skeletons",
    "parse_time",
    "shift_account",
]

ANCHOR = 1748865600  # 2025-06-02T12:00:00Z
HOUR = 3600
DAY = 86400

# Bug ids are derived, not stored: test number ``index`` owns the block
# BUG_BASE + index * BUG_SLOTS ... + BUG_SLOTS - 1, so a bug id names its test.
BUG_BASE = 1_000_000
BUG_SLOTS = 64
MAX_BUGS = BUG_SLOTS - 1
TEST_FEATURE_BASE = 5_000_000
TEST_FEATURE_SLOTS = 8

STATUSES = (
    "initialized",
    "waiting",
    "running",
    "locked",
    "customer_finalized",
    "archived",
    "cancelled",
)
# The newest tests of each product take these statuses in turn, so that even the small
# preset shows every status, with the mutable ones among the most recent tests.
_RECENT_CYCLE = (
    "running",
    "waiting",
    "locked",
    "customer_finalized",
    "initialized",
    "running",
    "archived",
    "cancelled",
    "running",
    "customer_finalized",
    "locked",
    "archived",
)
# Generated tests in these statuses have no schedule yet (null start_at and end_at).
UNSCHEDULED_STATUSES = frozenset({"initialized", "waiting"})
# A test added "sorted" (created now) runs this long: 2 hours to 30 days.
MIN_DURATION = 2 * HOUR
MAX_DURATION = 30 * DAY
_TESTING_TYPES: tuple[str | None, ...] = ("coverage", "focused", "rapid", "external", None)
_TESTING_TYPE_WEIGHTS = (45, 20, 15, 5, 15)
_DURATION_HOURS: dict[str | None, tuple[int, int]] = {
    "rapid": (2, 4),
    "focused": (24, 48),
    "coverage": (24, 72),
    "external": (48, 168),
    None: (24, 72),
}
# UTC offsets in minutes; None is written as "Z", 0 as "+00:00".
OFFSETS: tuple[int | None, ...] = (None, None, 0, 60, 120, -300, -240, 330, 540, -420, 345)
_SUFFIXES = {
    o: "Z" if o is None else f"{'+' if o >= 0 else '-'}{abs(o) // 60:02d}:{abs(o) % 60:02d}"
    for o in OFFSETS
}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DATES: dict[int, str] = {}


@dataclass(slots=True)
class Skeleton:
    """What a test's ordering, status and bugs depend on; the rest is built on demand.

    ``sort_end`` is the instant the list is ordered by (epoch seconds): the generated
    ``end`` until an update sets ``end_at``, and ``-inf`` for an unscheduled test (``start``
    and ``end`` None), which sorts last. ``status`` stays the generated one so that a
    status update does not change which bugs the test has.
    """

    id: int
    index: int
    product_id: int
    section_id: int | None
    status: str
    testing_type: str | None
    created: int
    start: int | None
    end: int | None
    n_bugs: int
    sort_end: float = 0.0

    def __post_init__(self) -> None:
        self.sort_end = float("-inf") if self.end is None else float(self.end)


@dataclass
class Account:
    """One generated customer account: everything eager, tests as skeletons."""

    seed: int
    products: dict[int, dict[str, Any]]
    features: dict[int, dict[str, Any]]
    product_of_feature: dict[int, int]
    section_of_feature: dict[int, int | None]
    # Feature ids served by products/{pid}/sections/{sid}/features (every section id of
    # sections_with_default, the default section of an unsectioned product included).
    section_features: dict[int, list[int]]
    # Feature ids served by products/{pid}/features; None for a sectioned product.
    product_features: dict[int, list[int] | None]
    skeletons: dict[int, Skeleton]
    next_index: int
    next_test_id: int
    rng: Dice = field(repr=False)


def format_time(ts: float, offset: int | None) -> str:
    """ISO 8601 text of an instant (whole seconds) in a UTC offset in minutes (None: "Z").

    Hand-rolled: datetime.isoformat() was a tenth of the cost of serving a bug.
    """
    day, seconds = divmod(int(ts) + (offset or 0) * 60, DAY)
    date_text = _DATES.get(day)
    if date_text is None:
        date_text = _DATES[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    hours, rest = divmod(seconds, HOUR)
    return f"{date_text}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}{_SUFFIXES[offset]}"


def parse_time(value: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp that carries a UTC offset."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without UTC offset: {value!r}")
    return parsed.timestamp()


def _sections(
    rng: Dice, kind: str, next_id: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, list[int], int]:
    """sections, sections_with_default, default_section_id, feature-holding ids, next id."""
    default: dict[str, Any] = {"id": next_id, "name": "default-section"}
    next_id += rng.between(1, 40)
    if kind in ("unsectioned", "single"):
        count = 0 if kind == "unsectioned" else 1
    else:
        count = rng.between(2, 3) if kind == "swd_only" else rng.between(2, 4)
    names = rng.sample(text.SECTION_NAMES, count)
    real: list[dict[str, Any]] = []
    for name in names:
        real.append({"id": next_id, "name": name})
        next_id += rng.between(1, 40)
    if kind == "unsectioned":
        return [], [default], default["id"], [default["id"]], next_id
    if kind == "swd_only":
        # Sectioned although `sections` is empty: only sections_with_default says so.
        return [], real, real[0]["id"], [s["id"] for s in real], next_id
    return real, [default, *real], default["id"], [s["id"] for s in real], next_id


def _feature(rng: Dice, feature_id: int) -> dict[str, Any]:
    name = rng.pick(text.FEATURE_NAMES)
    return {
        "id": feature_id,
        "title": name,
        "description": None if rng.random() < 0.1 else text.paragraph(rng, 1),
        "howtofind": None if rng.random() < 0.1 else f"Menu → {name}",
        "user_stories": [text.user_story(rng) for _ in range(rng.between(0, 3))],
    }


def _sizes(rng: Dice, preset: Preset) -> list[int]:
    if preset.sizes is not None:
        return list(preset.sizes)
    filled = preset.products - preset.empty - 1
    rest = preset.tests - preset.largest
    if filled < 1 or not filled <= rest <= filled * (preset.largest - 1):
        raise ValueError(f"cannot split {preset.tests} tests as {preset}")
    weights = [rng.lognormvariate(0, 0.9) for _ in range(filled)]
    total = sum(weights)
    sizes = [max(1, min(preset.largest - 1, int(w / total * rest))) for w in weights]
    i = 0
    while sum(sizes) != rest:  # spread the rounding error, one test at a time
        step = 1 if sum(sizes) < rest else -1
        if 1 <= sizes[i % filled] + step < preset.largest:
            sizes[i % filled] += step
        i += 1
    return [preset.largest, *sizes, *([0] * preset.empty)]


@dataclass(slots=True)
class _Draft:
    product_id: int
    section_id: int | None
    status: str
    testing_type: str | None
    created: int
    start: int
    end: int
    order: int


def _floor_hour(ts: int) -> int:
    return ts - ts % HOUR


def _times(rng: Dice, status: str, ttype: str | None, history_days: int) -> tuple[int, int, int]:
    """created, start, end (epoch seconds) consistent with the status at ANCHOR."""
    low, high = _DURATION_HOURS[ttype]
    duration = rng.between(low, high) * HOUR
    if status == "running":
        start = _floor_hour(ANCHOR - rng.between(1, 48) * HOUR)
        end = max(start + duration, _floor_hour(ANCHOR) + rng.between(2, 72) * HOUR)
    elif status in ("waiting", "initialized"):
        lead = rng.between(2, 240) if status == "waiting" else rng.between(72, 480)
        start = _floor_hour(ANCHOR + lead * HOUR)
        end = start + duration
    else:
        created = ANCHOR - rng.between(30 * DAY, history_days * DAY)
        start = _floor_hour(created + rng.between(HOUR, 7 * DAY))
        return created, start, start + duration
    created = min(start - HOUR, ANCHOR - rng.between(HOUR, 5 * DAY))
    return created, start, end


def _recent_end(rng: Dice, status: str) -> int:
    days = {"locked": (0, 3), "customer_finalized": (1, 10), "archived": (3, 25)}
    low, high = days.get(status, (0, 20))
    return _floor_hour(ANCHOR - rng.between(low * 24 + 1, high * 24 + 1) * HOUR)


def _old_status(rng: Dice) -> str:
    roll = rng.random()
    if roll < 0.92:
        return "archived"
    if roll < 0.98:
        return "cancelled"
    return "customer_finalized" if roll < 0.995 else "locked"


def _drafts(
    rng: Dice,
    product_id: int,
    sections: list[int | None],
    size: int,
    cycle_start: int,
    history_days: int,
) -> list[_Draft]:
    recent = _recent(size)
    drafts: list[_Draft] = []
    for j in range(size):
        ttype = rng.choices(_TESTING_TYPES, _TESTING_TYPE_WEIGHTS)[0]
        section = rng.pick(sections)
        if j < size - recent:
            status = _old_status(rng)
            previous = drafts[-1] if drafts else None
            if previous is not None and rng.random() < 0.05:
                # A sister cycle (same run on another platform): same start and end,
                # which gives the list its ties on end_at.
                created = previous.created + rng.between(60, HOUR)
                start, end = previous.start, previous.end
            else:
                created, start, end = _times(rng, "old", ttype, history_days)
        else:
            status = _RECENT_CYCLE[(cycle_start + j - (size - recent)) % len(_RECENT_CYCLE)]
            if status in ("running", "waiting", "initialized"):
                created, start, end = _times(rng, status, ttype, history_days)
            else:
                low, high = _DURATION_HOURS[ttype]
                end = _recent_end(rng, status)
                start = end - rng.between(low, high) * HOUR
                created = start - rng.between(HOUR, 5 * DAY)
        drafts.append(_Draft(product_id, section, status, ttype, created, start, end, j))
    return drafts


def _bug_count(rng: Dice, status: str, mean: float) -> int:
    if status in ("initialized", "waiting"):
        return 0
    scale = 0.6 if status in ("running", "cancelled") else 1.0
    return min(MAX_BUGS, int(rng.expovariate(1.0 / (mean * scale + 0.5))))


def _recent(size: int) -> int:
    """How many of a product's tests are recent: they take statuses from _RECENT_CYCLE."""
    return min(size, max(3, round(size * 0.04)))


def generate_account(preset: Preset, seed: int) -> Account:
    """Generate the whole account for a preset and seed (tests as skeletons)."""
    rng = Dice(f"testio-sandbox/{preset}/{seed}")
    sizes = _sizes(rng, preset)
    # The first product is the biggest and sectioned (big customers use sections); the
    # second never is, so even the small preset has both kinds.
    sectioned = {0, *rng.sample(range(2, preset.products), preset.sectioned - 1)}
    kinds = ("sections", "swd_only", "single")
    products: dict[int, dict[str, Any]] = {}
    features: dict[int, dict[str, Any]] = {}
    product_of_feature: dict[int, int] = {}
    section_of_feature: dict[int, int | None] = {}
    section_features: dict[int, list[int]] = {}
    product_features: dict[int, list[int] | None] = {}
    test_sections: dict[int, list[int | None]] = {}
    product_id = 18000 + rng.between(0, 999)
    section_id = 21000 + rng.between(0, 999)
    feature_id = 40000 + rng.between(0, 999)
    for i in range(preset.products):
        kind = "unsectioned"
        if i in sectioned:
            kind = kinds[sorted(sectioned).index(i) % len(kinds)]
        sections, with_default, default_id, holders, section_id = _sections(rng, kind, section_id)
        products[product_id] = {
            "id": product_id,
            "name": text.product_name(rng, i),
            "type": rng.pick(text.PRODUCT_TYPES),
            "description": text.paragraph(rng, rng.between(1, 2)),
            "default_section_id": default_id,
            "sections": sections,
            "sections_with_default": with_default,
        }
        for s in with_default:
            section_features[s["id"]] = []
        all_ids: list[int] = []
        per_holder = (6, 24) if kind == "unsectioned" else (3, 12)
        for holder in holders:
            for _ in range(rng.between(*per_holder) + (8 if i == 0 else 0)):
                features[feature_id] = _feature(rng, feature_id)
                product_of_feature[feature_id] = product_id
                section_of_feature[feature_id] = None if kind == "unsectioned" else holder
                section_features[holder].append(feature_id)
                all_ids.append(feature_id)
                feature_id += rng.between(1, 12)
        product_features[product_id] = all_ids if kind == "unsectioned" else None
        test_sections[product_id] = [None] if kind == "unsectioned" else list(holders)
        product_id += rng.between(1, 700)

    drafts: list[_Draft] = []
    cycle = 0
    for pid, size in zip(products, sizes, strict=True):
        drafts.extend(_drafts(rng, pid, test_sections[pid], size, cycle, preset.history_days))
        cycle += _recent(size)
    # Test ids are global across customers: they grow with creation time, with gaps.
    drafts.sort(key=lambda d: (d.created, d.product_id, d.order))
    skeletons: dict[int, Skeleton] = {}
    test_id = 100_000 + rng.between(0, 20_000)
    for index, d in enumerate(drafts):
        test_id += rng.between(1, 9)
        n_bugs = _bug_count(rng, d.status, preset.bugs_per_test)
        # Drafted with times (so the RNG sequence, and every id, stays as it was), then
        # unscheduled: no start or end yet.
        unscheduled = d.status in UNSCHEDULED_STATUSES
        start, end = (None, None) if unscheduled else (d.start, d.end)
        skeletons[test_id] = Skeleton(
            test_id, index, d.product_id, d.section_id, d.status, d.testing_type,
            d.created, start, end, n_bugs,
        )  # fmt: skip
    return Account(
        seed=seed,
        products=products,
        features=features,
        product_of_feature=product_of_feature,
        section_of_feature=section_of_feature,
        section_features=section_features,
        product_features=product_features,
        skeletons=skeletons,
        next_index=len(drafts),
        next_test_id=test_id + rng.between(1, 9),
        rng=rng,
    )


def shift_account(account: Account, seconds: int) -> None:
    """Move every generated test time by ``seconds`` (the sandbox's anchor - ANCHOR)."""
    if not seconds:
        return
    for skeleton in account.skeletons.values():
        skeleton.created += seconds
        if skeleton.start is not None:
            skeleton.start += seconds
        if skeleton.end is not None:
            skeleton.end += seconds
        skeleton.__post_init__()


def new_skeletons(
    account: Account,
    product_id: int,
    count: int,
    status: str,
    *,
    where: str,
    now: float,
    after: float = 0.0,
) -> list[Skeleton]:
    """Skeletons of ``count`` new tests of a product, created at ``now``, oldest first.

    ``where`` says how they are scheduled: ``"head"`` ends them after ``after`` (an hour
    apart, so they sort first), ``"sorted"`` starts them at ``now`` and ends them
    :data:`MIN_DURATION` to :data:`MAX_DURATION` later, ``"unscheduled"`` leaves start and
    end None. Each gets 0-5 bugs, an ``initialized`` one none. The caller adds them to the
    account.
    """
    if where not in ("head", "sorted", "unscheduled"):
        raise ValueError(f"where must be 'head', 'sorted' or 'unscheduled', not {where!r}")
    rng = account.rng
    holders = account.section_features
    product = account.products[product_id]
    if account.product_features[product_id] is None:
        sections: list[int | None] = [s["id"] for s in product["sections_with_default"]]
        sections = [s for s in sections if s is not None and holders[s]] or [None]
    else:
        sections = [None]
    created = int(now)
    base = int(after) - int(after) % HOUR + HOUR
    made = []
    for k in range(count):
        ttype = rng.choices(_TESTING_TYPES, _TESTING_TYPE_WEIGHTS)[0]
        start: int | None
        end: int | None
        if where == "head":
            end = base + k * HOUR
            start = min(end, max(created, end - rng.between(*_DURATION_HOURS[ttype]) * HOUR))
        elif where == "sorted":
            start = created
            end = created + rng.between(MIN_DURATION, MAX_DURATION)
        else:
            start = end = None
        skeleton = Skeleton(
            account.next_test_id, account.next_index, product_id, rng.pick(sections),
            status, ttype, created, start, end, 0 if status == "initialized" else rng.between(0, 5),
        )  # fmt: skip
        account.next_index += 1
        account.next_test_id += rng.between(1, 9)
        made.append(skeleton)
    return made
