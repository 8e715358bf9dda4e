"""Full test and bug objects, built on demand from skeletons.

Each object is rebuilt identically from its own RNG, seeded by ``(seed, test index)``.
To serve fast, an object is split in a per-object *head* (ids, titles, status, times:
what varies from object to object) and a *body* drawn from a pool of generated bodies
(texts, requirements, devices: what only needs to look varied). Bodies are encoded once,
so serving a test or a bug list encodes only the small heads; a full read of ``medium``
costs a third of what encoding whole objects would. The same parts give the dict form
(for details, ``truth()`` and changed objects), so both forms always agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import text
from .data import (
    ANCHOR,
    BUG_BASE,
    BUG_SLOTS,
    HOUR,
    OFFSETS,
    TEST_FEATURE_BASE,
    TEST_FEATURE_SLOTS,
    Skeleton,
    format_time,
)
from .text import Dice

__all__ = [
    "Pools",
    "TestParts",
    "bug_dicts",
    "bug_fragment",
    "bug_heads",
    "encode",
    "test_dict",
    "test_fragment",
    "test_head",
    "test_parts",
]

# Weighted choices as bags: rng.pick from these is several times cheaper than choices().
_SEVERITY_BAG: tuple[str, ...] = (
    sum(((s,) * n for s, n in (("low", 30), ("high", 25), ("critical", 8), ("visual", 20))), ())
    + ("content",) * 15
    + ("custom",) * 2
)

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_FLAGS = {
    (content, visual): b'"enable_default":true,"enable_content":%s,"enable_visual":%s'
    % (b"true" if content else b"false", b"true" if visual else b"false")
    for content in (False, True)
    for visual in (False, True)
}


def encode(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as the service sends it."""
    return _ENCODER.encode(obj).encode()


def _rng(seed: int, index: int, salt: int) -> Dice:
    return Dice((seed * 1_000_003 + index) * 8 + salt)


def _members(obj: dict[str, Any]) -> bytes:
    """The encoded members of an object, without braces, to splice into another."""
    return encode(obj)[1:-1]


def _requirement(rng: Dice) -> dict[str, Any]:
    os_index = rng.between(0, len(text.OPERATING_SYSTEMS) - 1)
    os_name, versions = text.OPERATING_SYSTEMS[os_index]
    low = rng.between(0, len(versions) - 1)
    browsers = rng.sample(text.BROWSERS, rng.between(0, 3))
    category = rng.between(0, len(text.CATEGORIES) - 1)
    return {
        "operating_system": {"id": os_index + 1, "name": os_name},
        "category": {"id": category + 1, "name": text.CATEGORIES[category]},
        "browsers": [{"id": text.BROWSERS.index(b) + 1, "name": b} for b in browsers],
        "min_operating_system_version": {"id": 100 + low, "name": versions[low]},
        "max_operating_system_version": None,
    }


def _test_body(rng: Dice) -> dict[str, Any]:
    env = rng.between(0, len(text.ENVIRONMENTS) - 1)
    return {
        "goal_text": text.paragraph(rng, rng.between(1, 2)),
        "instructions_text": text.paragraph(rng, rng.between(2, 4)),
        "out_of_scope_text": text.out_of_scope(rng),
        "enable_low": rng.random() < 0.7,
        "enable_high": True,
        "enable_critical": True,
        "created_by": rng.pick(text.USERS),
        "test_environment": None
        if rng.random() < 0.02
        else {"id": 7000 + env, "title": text.ENVIRONMENTS[env]},
        "requirements": [_requirement(rng) for _ in range(rng.between(1, 3))],
    }


def _bug_body(rng: Dice) -> dict[str, Any]:
    devices = []
    for _ in range(rng.between(1, 2)):
        os_name, versions = rng.pick(text.OPERATING_SYSTEMS)
        devices.append(
            {
                "id": 9000 + rng.between(0, len(text.DEVICES) - 1),
                "name": rng.pick(text.DEVICES),
                "operating_system": {"name": os_name, "version": rng.pick(versions)},
                "browser": None if rng.random() < 0.5 else {"name": rng.pick(text.BROWSERS)},
            }
        )
    return {
        "actual_result": text.paragraph(rng, 1),
        "expected_result": text.paragraph(rng, 1),
        "steps": None if rng.random() < 0.15 else text.steps(rng),
        "author": {"name": rng.pick(text.USERS)},
        "devices": devices,
        "comments": [{"body": text.comment(rng)} for _ in range(rng.between(0, 3))],
    }


class Pools:
    """Generated test and bug bodies, each kept as encoded members as well."""

    SIZE = 1024

    def __init__(self, seed: int) -> None:
        rng = Dice(f"testio-sandbox/bodies/{seed}")
        self.test_bodies = [_test_body(rng) for _ in range(self.SIZE)]
        self.test_encoded = [_members(b) for b in self.test_bodies]
        self.bug_bodies = [_bug_body(rng) for _ in range(self.SIZE)]
        self.bug_encoded = [_members(b) for b in self.bug_bodies]

    @staticmethod
    def copy(body: dict[str, Any]) -> dict[str, Any]:
        """A deep copy of a body (JSON round trip: faster than copy.deepcopy)."""
        result: dict[str, Any] = json.loads(_ENCODER.encode(body))
        return result


# -- tests ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TestParts:
    """What both a test and its bugs need: its generated title and its features.

    ``features`` is shared with a cache: callers that hand it out copy it first.
    """

    title: str
    features: list[dict[str, Any]]
    features_json: bytes


def test_parts(
    seed: int, skeleton: Skeleton, pool: list[dict[str, Any]], encoded: dict[int, bytes]
) -> TestParts:
    """Title and ``features`` (snapshots of product features, with their own ids).

    ``encoded`` caches, per product feature, its encoded snapshot members.
    """
    rng = _rng(seed, skeleton.index, 1)
    title = text.test_title(rng)
    chosen = rng.sample(pool, min(len(pool), rng.between(1, 4))) if pool else []
    features = []
    items = []
    for k, f in enumerate(chosen):
        snapshot = {
            "feature_id": f["id"],
            "title": f["title"],
            "description": f["description"],
            "howtofind": f["howtofind"],
            "user_stories": list(f["user_stories"]),
        }
        members = encoded.get(f["id"])
        if members is None:
            members = encoded[f["id"]] = _members(snapshot)
        content, visual = rng.random() < 0.5, rng.random() < 0.7
        flags = {"enable_default": True, "enable_content": content, "enable_visual": visual}
        test_feature_id = TEST_FEATURE_BASE + skeleton.index * TEST_FEATURE_SLOTS + k
        features.append({"id": test_feature_id} | snapshot | flags)
        items.append(b'{"id":%d,%s,%s}' % (test_feature_id, members, _FLAGS[content, visual]))
    return TestParts(title, features, b"[" + b",".join(items) + b"]")


def test_head(seed: int, skeleton: Skeleton, title: str) -> tuple[dict[str, Any], int]:
    """The per-test fields and the index of the test's body in the pool."""
    rng = _rng(seed, skeleton.index, 3)
    # Offsets are drawn for null times too, so the other fields stay what they were.
    start_offset, end_offset = rng.pick(OFFSETS), rng.pick(OFFSETS)
    head = {
        "id": skeleton.id,
        "title": title,
        "status": skeleton.status,
        "testing_type": skeleton.testing_type,
        "start_at": None if skeleton.start is None else format_time(skeleton.start, start_offset),
        "end_at": None if skeleton.end is None else format_time(skeleton.end, end_offset),
        "created_at": format_time(skeleton.created, rng.pick(OFFSETS)),
        "submitted_by": None if skeleton.status == "initialized" else rng.pick(text.USERS),
    }
    return head, rng.between(0, Pools.SIZE - 1)


def test_dict(pools: Pools, head: dict[str, Any], body: int, parts: TestParts) -> dict[str, Any]:
    """The test as the exploratory_tests list serves it (no ``product``), all fresh."""
    features = json.loads(parts.features_json)
    return head | pools.copy(pools.test_bodies[body]) | {"features": features}


def test_fragment(pools: Pools, head: dict[str, Any], body: int, parts: TestParts) -> bytes:
    """The encoded form of :func:`test_dict`."""
    return (
        encode(head)[:-1]
        + b","
        + pools.test_encoded[body]
        + b',"features":'
        + parts.features_json
        + b"}"
    )


# -- bugs -----------------------------------------------------------------------------


def _bug_status(rng: Dice, test_status: str) -> str:
    roll = rng.random()
    if test_status in ("running", "locked"):
        return "forwarded" if roll < 0.7 else ("accepted" if roll < 0.9 else "rejected")
    return "accepted" if roll < 0.6 else ("rejected" if roll < 0.9 else "forwarded")


def bug_heads(
    seed: int,
    skeleton: Skeleton,
    features: list[dict[str, Any]],
    index: int | None = None,
    anchor: int = ANCHOR,
) -> list[tuple[dict[str, Any], int]]:
    """The generated bugs of a test as (head, body index), by id ascending.

    ``index`` draws from another test number's RNG (and ids), to make extra bugs;
    ``anchor`` is the "now" the account's times were shifted to (no bug after it).
    """
    index = skeleton.index if index is None else index
    rng = _rng(seed, index, 4)
    # An unscheduled test's bugs (only added ones) date from its creation.
    first = skeleton.created if skeleton.start is None else skeleton.start
    last = max(first + HOUR, min(anchor if skeleton.end is None else skeleton.end, anchor))
    heads = []
    for k in range(skeleton.n_bugs):
        feature = rng.pick(features) if features else None
        feature_title = feature["title"] if feature else "App"
        status = _bug_status(rng, skeleton.status)
        head: dict[str, Any] = {
            "id": BUG_BASE + index * BUG_SLOTS + k,
            "title": text.bug_title(rng, feature_title),
            "severity": rng.pick(_SEVERITY_BAG),
            "status": status,
        }
        if rng.random() < 0.7:  # older bugs lack the field altogether
            head["auto_accepted"] = status == "accepted" and rng.random() < 0.3
        head["known"] = rng.random() < 0.08
        head["created_at"] = format_time(rng.between(first, last), rng.pick(OFFSETS))
        head["test_feature"] = {"id": feature["id"], "title": feature_title} if feature else None
        heads.append((head, rng.between(0, Pools.SIZE - 1)))
    return heads


def bug_dicts(
    pools: Pools, heads: list[tuple[dict[str, Any], int]], test_id: int, title: str
) -> list[dict[str, Any]]:
    """The bugs as ``GET bugs`` serves them."""
    return [
        head | {"test": {"id": test_id, "title": title}} | pools.copy(pools.bug_bodies[body])
        for head, body in heads
    ]


def bug_fragment(
    pools: Pools, heads: list[tuple[dict[str, Any], int]], test_id: int, title: str
) -> bytes:
    """The encoded form of :func:`bug_dicts`, items joined by commas, without brackets."""
    if not heads:
        return b""
    # One encoder call for all heads, split at the item boundaries: `},{"id":` cannot
    # occur inside a JSON string, where every quote is escaped.
    parts = encode([h for h, _ in heads])[2:-2].split(b'},{"id":')
    test = b',"test":' + encode({"id": test_id, "title": title}) + b","
    bodies = pools.bug_encoded
    items = []
    for k, (part, (_, body)) in enumerate(zip(parts, heads, strict=True)):
        opening = b"{" if k == 0 else b'{"id":'
        items.append(opening + part + test + bodies[body] + b"}")
    return b",".join(items)
