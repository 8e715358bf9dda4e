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
    "environment",
    "test_dict",
    "test_fragment",
    "test_head",
    "test_parts",
    "without_credentials",
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


def _test_body(rng: Dice) -> tuple[dict[str, Any], int | None]:
    """A test's generated body, and which of the account's environments it uses (None:
    the test has none). The environment is spliced in when served: its credentials rotate."""
    env = rng.between(0, len(text.ENVIRONMENTS) - 1)
    body = {
        "goal_text": text.paragraph(rng, rng.between(1, 2)),
        "instructions_text": text.paragraph(rng, rng.between(2, 4)),
        "out_of_scope_text": text.out_of_scope(rng),
        "enable_low": rng.random() < 0.7,
        "enable_high": True,
        "enable_critical": True,
        "created_by": rng.pick(text.USERS),
    }
    chosen = None if rng.random() < 0.02 else env
    body["requirements"] = [_requirement(rng) for _ in range(rng.between(1, 3))]
    return body, chosen


# What a customer's environment needs to be entered: a site behind a login, basic auth,
# a VPN, or a build to install. (access type, login needed, extra access text)
_ACCESS = (
    ("public", False, False),
    ("login", True, False),
    ("basic_auth", True, True),
    ("login", True, True),
    ("vpn", True, True),
    ("login", True, False),
    ("basic_auth", True, True),
    ("login", True, False),
)
_PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#$%&*+-=?"


def _password(rng: Dice, length: int = 16) -> str:
    return "".join(rng.pick(_PASSWORD_ALPHABET) for _ in range(length))


def environment(seed: int, index: int, generation: int) -> tuple[dict[str, Any], list[str]]:
    """Environment ``index`` of the account as served (credentials of ``generation``: they
    change when the customer rotates them), and every secret string in it.

    The secrets are the needles tests look for in everything the toolkit writes; the
    fields that hold them are the ones ``Truth.without_credentials`` masks.
    """
    title = text.ENVIRONMENTS[index]
    access_type, login, extra = _ACCESS[index % len(_ACCESS)]
    rng = Dice(f"testio-sandbox/environment/{seed}/{index}/{generation}")
    host = f"{title.split()[0].lower().encode('ascii', 'ignore').decode() or 'env'}{index}"
    secrets: list[str] = []
    url = f"https://{host}.customer-qa.example/"
    if access_type == "basic_auth":  # credentials in the URL, as customers paste them
        url_password = _password(rng, 12)
        url = f"https://preview:{url_password}@{host}.customer-qa.example/"
        secrets.append(url_password)
    env: dict[str, Any] = {
        "id": 7000 + index,
        "title": title,
        "url": url,
        "username": "",
        "password": "",
        "access": "",
        "proxy": index % 3 == 1,
        "allow_orders": index % 2 == 0,
        "access_type": access_type,
        "binary_app": None,
    }
    if login:
        env["username"] = f"qa-{host}-{rng.between(1000, 9999)}@customer-qa.example"
        env["password"] = _password(rng)
        secrets += [env["username"], env["password"]]
    if extra:
        second = _password(rng, 10)
        env["access"] = (
            f"Log in with the account above, then unlock the staging gate with {second}. "
            f"Ask for a new code if it expired."
        )
        secrets.append(second)
    if title.startswith(("TestFlight", "Play Store")):
        token = "".join(rng.pick("0123456789abcdef") for _ in range(32))
        env["binary_app"] = {
            "id": 400 + index,
            "title": f"{title} build",
            "install_url": f"https://builds.customer-qa.example/{index}",
            "install_token": token,
        }
        secrets.append(token)
    return env, secrets


def without_credentials(env: dict[str, Any] | None, marker: str) -> dict[str, Any] | None:
    """An environment as a client that stores no credentials keeps it: every field that
    :func:`environment` filled with a secret (and left non-empty) holds ``marker``."""
    if env is None:
        return None
    masked = dict(env)
    for name in ("username", "password", "access"):
        if masked.get(name):
            masked[name] = marker
    url = masked.get("url") or ""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        masked["url"] = f"{scheme}://{marker}@{rest.split('@', 1)[1]}"
    if masked.get("binary_app"):
        masked["binary_app"] = dict(masked["binary_app"], install_token=marker)
    return masked


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
    """Generated test and bug bodies, each kept as encoded members as well, and the
    account's test environments (with the credentials of the current generation)."""

    SIZE = 1024

    def __init__(self, seed: int) -> None:
        rng = Dice(f"testio-sandbox/bodies/{seed}")
        drawn = [_test_body(rng) for _ in range(self.SIZE)]
        self.test_bodies = [body for body, _ in drawn]
        self.test_env = [env for _, env in drawn]
        self.test_encoded = [_members(b) for b in self.test_bodies]
        self.bug_bodies = [_bug_body(rng) for _ in range(self.SIZE)]
        self.bug_encoded = [_members(b) for b in self.bug_bodies]
        self.seed = seed
        self.generation = 0
        self.served_secrets: set[str] = set()
        self._set_environments()

    def _set_environments(self) -> None:
        made = [environment(self.seed, i, self.generation) for i in range(len(text.ENVIRONMENTS))]
        self.environments = [env for env, _ in made]
        self.env_encoded = [encode(env) for env in self.environments]
        for _, secrets in made:
            self.served_secrets.update(secrets)

    def rotate_credentials(self) -> None:
        """Every environment gets new credentials (callers drop their encoded caches)."""
        self.generation += 1
        self._set_environments()

    def environment_of(self, body: int) -> dict[str, Any] | None:
        """A fresh copy of the environment of test body ``body`` (None: it has none)."""
        env = self.test_env[body]
        return None if env is None else self.copy(self.environments[env])

    def environment_json(self, body: int) -> bytes:
        env = self.test_env[body]
        return b"null" if env is None else self.env_encoded[env]

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
    environment = {"test_environment": pools.environment_of(body)}
    return head | pools.copy(pools.test_bodies[body]) | environment | {"features": features}


def test_fragment(pools: Pools, head: dict[str, Any], body: int, parts: TestParts) -> bytes:
    """The encoded form of :func:`test_dict`."""
    return (
        encode(head)[:-1]
        + b","
        + pools.test_encoded[body]
        + b',"test_environment":'
        + pools.environment_json(body)
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
    pools: Pools,
    heads: list[tuple[dict[str, Any], int]],
    test_id: int,
    title: str,
    test_body: int,
) -> list[dict[str, Any]]:
    """The bugs as ``GET bugs`` serves them; ``test_body``: the test's body (a bug carries
    its test's environment)."""
    return [
        head
        | {"test": {"id": test_id, "title": title}}
        | pools.copy(pools.bug_bodies[body])
        | {"test_environment": pools.environment_of(test_body)}
        for head, body in heads
    ]


def bug_fragment(
    pools: Pools,
    heads: list[tuple[dict[str, Any], int]],
    test_id: int,
    title: str,
    test_body: int,
) -> bytes:
    """The encoded form of :func:`bug_dicts`, items joined by commas, without brackets."""
    if not heads:
        return b""
    # One encoder call for all heads, split at the item boundaries: `},{"id":` cannot
    # occur inside a JSON string, where every quote is escaped.
    parts = encode([h for h, _ in heads])[2:-2].split(b'},{"id":')
    test = (
        b',"test":'
        + encode({"id": test_id, "title": title})
        + b',"test_environment":'
        + pools.environment_json(test_body)
        + b","
    )
    bodies = pools.bug_encoded
    items = []
    for k, (part, (_, body)) in enumerate(zip(parts, heads, strict=True)):
        opening = b"{" if k == 0 else b'{"id":'
        items.append(opening + part + test + bodies[body] + b"}")
    return b",".join(items)
