"""The toolkit's words, defined once: statuses, modes, phases, what a person types.

Usage::

    >>> from testio_toolkit.vocabulary import FINAL_STATUSES, Mode, RunStatus, TestStatus
    >>> TestStatus.ARCHIVED in FINAL_STATUSES, Mode.REFRESH == "refresh"
    (True, True)

Each is a ``StrEnum``: a member is the string itself (it compares equal to it, is stored
as it in SQLite and JSON, and reprs as it), so a status read back from the database or
typed by a user needs no conversion. The sandbox keeps its own copy of the service's
words: it stands alone (see ``sandbox/__init__.py``). A value the service sends that is
not listed here is kept as it comes: the frames add it to their categoricals' categories
after the known ones, and filters accept any value the mirror holds.
"""

from __future__ import annotations

from enum import StrEnum


class _Word(StrEnum):
    def __repr__(self) -> str:
        return repr(self.value)  # 'success', as the plain string would show


class TestStatus(_Word):
    """A test's status on the service, in the order a test goes through them."""

    __test__ = False  # the name starts with "Test": keep pytest from collecting it

    INITIALIZED = "initialized"
    WAITING = "waiting"
    RUNNING = "running"
    LOCKED = "locked"
    CUSTOMER_FINALIZED = "customer_finalized"
    ARCHIVED = "archived"
    CANCELLED = "cancelled"


# Statuses a test never leaves: an incremental sync does not re-read such tests.
FINAL_STATUSES = frozenset({TestStatus.ARCHIVED, TestStatus.CANCELLED})


class BugStatus(_Word):
    """A bug's status on the service: open (submitted, manager_approved, forwarded,
    question) or decided (accepted, rejected)."""

    # The first three in the order the mirror always listed them (frames' categories).
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FORWARDED = "forwarded"
    SUBMITTED = "submitted"
    MANAGER_APPROVED = "manager_approved"
    QUESTION = "question"


# Statuses of a decided bug (the health measures count these, ``metrics.py``).
DECIDED_BUG_STATUSES = frozenset({BugStatus.ACCEPTED, BugStatus.REJECTED})


class Severity(_Word):
    """A bug's severity on the service."""

    # The first five in the order the mirror always listed them (frames' categories).
    LOW = "low"
    HIGH = "high"
    CRITICAL = "critical"
    VISUAL = "visual"
    CONTENT = "content"
    SUGGESTION = "suggestion"
    TEST_CASE = "test_case"
    SPELLING = "spelling"


class TestingType(_Word):
    """A test's testing type on the service (``custom`` is deprecated, older records say
    ``external``, test-case runs have none)."""

    __test__ = False

    # The first four in the order the mirror always listed them (frames' categories).
    COVERAGE = "coverage"
    FOCUSED = "focused"
    RAPID = "rapid"
    EXTERNAL = "external"
    USABILITY = "usability"
    CUSTOM = "custom"


class Mode(_Word):
    """The three sync modes (``tt.sync``, ``tt.refresh``, ``tt.nuke``)."""

    SYNC = "sync"
    REFRESH = "refresh"
    NUKE = "nuke"


# A run-history entry that is not a sync mode: the one-time scrub of stored credentials.
SCRUB = "scrub"


class RunStatus(_Word):
    """How a run (``sync_runs.status``, ``SyncResult.status``) or one product of it ended."""

    RUNNING = "running"
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Entity(_Word):
    """What a change (``changes.entity``) is about: one record of a mirror table."""

    PRODUCT = "product"
    TEST = "test"
    FEATURE = "feature"
    BUG = "bug"


class ChangeKind(_Word):
    """What happened to a record (``changes.kind``): new to the mirror, a tracked field
    changed, gone upstream (marked ``deleted_upstream_at``), or back after being gone."""

    ADDED = "added"
    CHANGED = "changed"
    GONE = "gone"
    RETURNED = "returned"


class Phase(_Word):
    """What a progress event counts."""

    PRODUCTS = "products"
    TESTS = "tests"
    BUGS = "bugs"
    FEATURES = "features"


# How each phase is labelled on a progress bar.
PHASE_LABELS: dict[str, str] = {
    Phase.PRODUCTS: "products",
    Phase.TESTS: "tests read",
    Phase.BUGS: "bug lists",
    Phase.FEATURES: "features",
}

# What a person types to confirm a nuke, in the terminal and in the panel.
CONFIRM_WORD = "nuke"
