"""What of a TestIO record is a customer's secret, and its removal before anything else.

Tests and bugs carry the customer's test environment, and that object holds the login
credentials of their staging or production site. The client calls :func:`redact` on every
payload it parses (``client.unwrap_envelope``), so nothing downstream (the listing, the
store's comparisons, the change feed, logs, frames, backups, exports) ever sees a value::

    >>> redact({"test_environment": {"id": 7, "title": "Staging", "password": "hunter2"}})
    {'test_environment': {'id': 7, 'title': 'Staging', 'password': '[redacted]'}}

The rule (one place; the README and CLAUDE.md point here):

- in a ``test_environment`` object, wherever it sits: ``username``, ``password`` and
  ``access`` (free-text login instructions, often a second password);
- anywhere in a record: a field whose name has a word that says secret: ``password``,
  ``passwd``, ``pwd``, ``secret``, ``token``, ``key``, ``apikey``, ``credential(s)``
  (words are split at ``_``, ``-`` and camelCase: ``api_key`` and ``accessToken`` are
  secrets, ``keyboard`` and ``access_type`` are not);
- the user and password part of a URL (``https://user:pw@host`` -> ``https://[redacted]@host``)
  in any string field named ``url`` or ending in ``_url``.

A value is replaced by ``MARKER`` when it is present and not empty (``None``, ``""``, ``[]``
and ``{}`` stay as they are, so a user can still tell an environment without a password from
one with; a true/false flag holds no secret and stays too). The marker is fixed, so
redaction is deterministic: a password rotated upstream gives the same stored JSON, which is
no change (no row rewritten, no change-feed row).
What a CSM uses stays: the environment's id, title, url (without userinfo), access type,
proxy, allow-orders and binary-app fields.

``RULE_VERSION`` names this rule; a mirror remembers the version it was scrubbed with
(``meta.credentials_redacted``), so a stricter rule later re-scrubs old mirrors.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

MARKER = "[redacted]"
RULE_VERSION = "1"

# Fields of a test_environment object that hold credentials, by exact name.
ENVIRONMENT_FIELDS = frozenset({"username", "password", "access"})
# Words that make any field a secret, wherever it sits.
SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "key", "apikey", "credential", "credentials"}
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def is_secret_name(name: str) -> bool:
    """``is_secret_name("api_key")`` -> True; ``"keyboard"``, ``"access_type"`` -> False."""
    words = {word.lower() for word in _WORD.findall(name)}
    return not words.isdisjoint(SECRET_WORDS)


def _is_url_name(name: str) -> bool:
    return name == "url" or name.endswith("_url")


# Names seen so far -> whether they say secret (a record has a few dozen distinct names).
_SECRET_NAMES: dict[str, bool] = {}
_EMPTY: tuple[Any, ...] = ("", [], {})


def _scrub(value: Any, in_environment: bool) -> bool:
    """Replace secrets inside ``value`` in place; True when anything was replaced.

    A value counts when it is present and not empty; a true/false flag holds no secret.
    """
    changed = False
    if isinstance(value, dict):
        for name, item in value.items():
            if item is None or item is True or item is False:
                continue
            secret = _SECRET_NAMES.get(name)
            if secret is None:
                secret = _SECRET_NAMES[name] = is_secret_name(name)
            if secret or (in_environment and name in ENVIRONMENT_FIELDS):
                if item != MARKER and item not in _EMPTY:
                    value[name] = MARKER
                    changed = True
            elif isinstance(item, dict | list):
                changed = _scrub(item, name == "test_environment") or changed
            elif isinstance(item, str) and "@" in item and _is_url_name(name):
                cleaned = _USERINFO.sub(rf"\1{MARKER}@", item)
                if cleaned != item:
                    value[name] = cleaned
                    changed = True
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                changed = _scrub(item, in_environment) or changed
    return changed


def redact(payload: Any) -> Any:
    """The payload (an object, a list of objects, anything JSON) without credentials,
    redacted in place (the client owns what it just parsed) and returned.

    >>> redact([{"id": 1, "binary_app": {"access_token": "abc"}}])
    [{'id': 1, 'binary_app': {'access_token': '[redacted]'}}]
    """
    _scrub(payload, False)
    return payload


def redact_json(text: str) -> str:
    """Stored JSON text without credentials, in the store's canonical form (sorted keys).

    Text that holds nothing to redact comes back unchanged, byte for byte, so the scrub of
    an existing mirror rewrites only the rows that held credentials.
    """
    value = orjson.loads(text)
    if not _scrub(value, False):
        return text
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
