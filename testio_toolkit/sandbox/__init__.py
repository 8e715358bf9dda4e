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
- Times are ISO 8601 with varying offsets, relative to a fixed "now" of
  2025-06-02T12:00:00Z, not the wall clock. Retry-After is whole seconds, rounded up.
- ``test_environment`` is null for a few tests and ``submitted_by`` for initialized
  ones; a bug's ``auto_accepted`` is sometimes absent and its ``steps`` sometimes null.
"""

from __future__ import annotations

from .faults import Faults
from .presets import PRESETS, Preset
from .sandbox import Sandbox
from .state import Truth

__all__ = ["PRESETS", "Faults", "Preset", "Sandbox", "Truth"]
