"""From TestIO JSON objects to store rows: pure functions, no I/O.

Usage::

    row = test_row(api_test, product_id=12, now=utc_now())
    row["end_at"]     # '2025-03-02T10:00:00Z', whatever offset the service used
    row["raw"]        # the full object as canonical JSON (fields added upstream are kept)
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import orjson

from .errors import ConfigError
from .vocabulary import FINAL_STATUSES

Obj = dict[str, Any]


def is_final(status: str | None) -> bool:
    """True when a test with this status can no longer change; anything else (including
    values we do not know yet) is re-read by every incremental sync."""
    return status in FINAL_STATUSES


def canonical_json(obj: Obj) -> str:
    """The JSON text we store and compare: sorted keys, so equal content gives equal text."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


def utc_text(moment: datetime) -> str:
    """A datetime as the UTC ISO text every timestamp in the store uses; naive means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_utc(value: Any) -> str | None:
    """``'2025-03-02T11:00:00+01:00'`` -> ``'2025-03-02T10:00:00Z'``; None and junk -> None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if len(value) == 20 and value[10] == "T" and value[19] == "Z" and value[13] == value[16] == ":":
        return value  # already our form (most are): skip formatting, which costs CPU
    return utc_text(parsed)


def parse_since(value: str | date | datetime | None) -> str | None:
    """A ``since`` argument -> UTC ISO text at midnight, or None.

    Accepts ``"2025-03-01"``, a full ISO timestamp, a ``date``/``datetime``, or a relative
    ``"30d"`` / ``"2w"`` / ``"12h"``. Anything else is a ConfigError.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    text = str(value).strip()
    units = {"d": 86400, "w": 7 * 86400, "h": 3600}
    if len(text) >= 2 and text[-1].lower() in units and text[:-1].isdigit():
        seconds = datetime.now(UTC).timestamp() - int(text[:-1]) * units[text[-1].lower()]
        return utc_text(datetime.fromtimestamp(seconds, UTC))
    try:
        if len(text) == 10:
            return f"{date.fromisoformat(text).isoformat()}T00:00:00Z"
        normalised = to_utc(text)
    except ValueError:
        normalised = None
    if normalised is None:
        raise ConfigError(
            f"since {text!r} is not a date: use YYYY-MM-DD, an ISO timestamp, or 30d / 2w / 12h"
        )
    return normalised


def product_row(obj: Obj, now: str) -> Obj:
    return {
        "id": int(obj["id"]),
        "name": obj.get("name"),
        "type": obj.get("type"),
        "description": obj.get("description"),
        "sectioned": int(is_sectioned(obj)),
        "raw": canonical_json(obj),
        "synced_at": now,
    }


def is_sectioned(product: Obj) -> bool:
    """A product lists its features per section when it has sections (see testio-api.md)."""
    return bool(product.get("sections")) or len(product.get("sections_with_default") or []) > 1


def section_ids(product: Obj) -> list[int]:
    """The sections whose features to read, for a sectioned product."""
    listed = product.get("sections") or product.get("sections_with_default") or []
    return [int(section["id"]) for section in listed]


def test_row(obj: Obj, product_id: int, now: str) -> Obj:
    # The detail endpoint adds `product`; drop it so list and detail store identical JSON.
    body = {key: value for key, value in obj.items() if key != "product"}
    return {
        "id": int(body["id"]),
        "product_id": product_id,
        "title": body.get("title"),
        "status": body.get("status"),
        "testing_type": body.get("testing_type"),
        "start_at": to_utc(body.get("start_at")),
        "end_at": to_utc(body.get("end_at")),
        "created_at": to_utc(body.get("created_at")),
        "raw": canonical_json(body),
        "synced_at": now,
    }


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def bug_row(obj: Obj, product_id: int, now: str) -> Obj:
    test = obj.get("test") or {}
    author = obj.get("author") or {}
    return {
        "id": int(obj["id"]),
        "test_id": int(test["id"]),
        "product_id": product_id,
        "title": obj.get("title"),
        "severity": obj.get("severity"),
        "status": obj.get("status"),
        "known": _flag(obj.get("known")),
        "auto_accepted": _flag(obj.get("auto_accepted")),
        "created_at": to_utc(obj.get("created_at")),
        "author": author.get("name") if isinstance(author, dict) else None,
        "raw": canonical_json(obj),
        "synced_at": now,
    }


def feature_row(obj: Obj, product_id: int, section_id: int | None, now: str) -> Obj:
    stories = obj.get("user_stories")
    return {
        "id": int(obj["id"]),
        "product_id": product_id,
        "section_id": section_id,
        "title": obj.get("title"),
        "description": obj.get("description"),
        "howtofind": obj.get("howtofind"),
        "user_stories": None if stories is None else json.dumps(stories, ensure_ascii=False),
        "raw": canonical_json(obj),
        "synced_at": now,
    }
