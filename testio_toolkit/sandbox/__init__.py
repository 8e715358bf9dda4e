"""A faithful simulator of the TestIO Customer API, served over HTTP on 127.0.0.1.

Tests, notebooks and the demo run against it instead of a real account::

    >>> from testio_toolkit.sandbox import Sandbox
    >>> with Sandbox(preset="small", seed=0) as sb:
    ...     sb.set_faults(rate_limit_next=1)      # the next request answers 429
    ...     truth = sb.truth()                    # what a full read must produce

Data is generated deterministically per preset and seed (``PRESETS``), faults are
switched at run time (``Faults``), and ``truth()`` returns what the sandbox serves as a
``Truth`` snapshot. Only this package imports the server stack.

What a client meets here, as on the real service:

- Every endpoint is relative to ``sb.url`` (``.../customer/v2``); errors are small JSON
  objects without an envelope, except 502, 504 and 524, which are HTML pages.
- ``products/{id}/features`` of a sectioned product answers 422: read each section of
  ``sections_with_default`` instead (the real service does the same). The default
  section of a sectioned product holds no features; that of an unsectioned product
  serves the product's features too.
- Times are ISO 8601 with varying offsets. The data ends around the sandbox's anchor: the
  current hour by default, or one pinned with ``Sandbox(anchor=...)`` or
  ``TESTIO_SANDBOX_NOW`` (tests and notebooks pin 2025-06-02T12:00:00Z, ``data.ANCHOR``,
  for output that never changes); the sandbox clock starts there and runs (``sb.now()``,
  ``sb.advance(seconds)``), and every response's ``Date`` header tells it, not the wall
  clock. Retry-After is whole seconds, rounded up, or an HTTP date on that clock.
- ``exploratory_tests`` is ordered by ``end_at`` newest first, ties by id descending,
  and unscheduled tests (null ``start_at`` and ``end_at``: those still initialized or
  waiting) last. New tests sort where their ``end_at`` puts them
  (``add_tests(..., where="head" | "sorted" | "unscheduled")``).
- The list can move while it is read: with ``list_moves_every`` set, a test is added,
  moved or deleted before some page requests are answered (``sb.movements`` lists them).
- A deleted product (``delete_product``) answers 404 everywhere and can come back
  (``restore_product``).
- ``test_environment`` is ``{id, title, url, username, password, access, proxy,
  allow_orders, access_type, binary_app}`` with the customer's login, as on the service:
  tests (list and detail) and bugs carry it; some environments need no login (empty
  strings), basic-auth ones put a password in the url, app builds an install token.
  ``sb.served_secrets()`` lists every credential served, ``sb.rotate_credentials()``
  changes them all, ``Truth.without_credentials()`` is the truth as a client that stores
  none keeps it. It is null for a few tests, and ``submitted_by`` for initialized
  ones; a bug's ``auto_accepted`` is sometimes absent and its ``steps`` sometimes null.
"""

from __future__ import annotations

from .customers import CUSTOMERS, Customer, SandboxCustomers
from .faults import Faults, Movement
from .presets import PRESETS, Preset
from .sandbox import Sandbox
from .state import Truth

__all__ = [
    "CUSTOMERS",
    "PRESETS",
    "Customer",
    "Faults",
    "Movement",
    "Preset",
    "Sandbox",
    "SandboxCustomers",
    "Truth",
]
