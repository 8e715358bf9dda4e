"""The sandbox object: a simulated TestIO account served on 127.0.0.1.

Usage::

    >>> from testio_toolkit.sandbox import Sandbox
    >>> with Sandbox(preset="small", seed=0) as sb:
    ...     sb.url
    'http://127.0.0.1:54321/customer/v2'

It ties the generated account (:mod:`.state`), the fault switches (:mod:`.faults`) and
the HTTP server (:mod:`.server`) together, and offers the upstream changes a test needs
to simulate an account that moves between two syncs, and the sandbox clock
(:meth:`Sandbox.now`, :meth:`Sandbox.advance`) that new tests and ``Date`` headers use.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from .faults import FaultPlanner, Faults, Movement
from .presets import PRESETS, Preset
from .server import PREFIX, SandboxServer, Stats
from .state import Truth, World
from .timeline import Event

__all__ = ["ANCHOR_VARIABLE", "Sandbox", "resolve_anchor"]

# Pins the sandbox clock for every Sandbox made without an anchor (tests, notebooks).
ANCHOR_VARIABLE = "TESTIO_SANDBOX_NOW"


def resolve_anchor(anchor: float | str | datetime | None = None) -> int:
    """Epoch seconds of the sandbox's "now", floored to the hour.

    ``None`` reads ``TESTIO_SANDBOX_NOW`` (ISO 8601 or epoch seconds), else takes the
    current time; ``"now"`` is always the current time.
    """
    if anchor is None:
        anchor = os.environ.get(ANCHOR_VARIABLE) or "now"
    if isinstance(anchor, str):
        text = anchor.strip()
        if text == "now":
            value = time.time()
        else:
            try:
                value = float(text)
            except ValueError:
                try:
                    parsed = datetime.fromisoformat(text)
                except ValueError:
                    raise ValueError(
                        f"the sandbox anchor {anchor!r} is not ISO 8601, epoch seconds or 'now'"
                        f" (from {ANCHOR_VARIABLE} or Sandbox(anchor=...))"
                    ) from None
                value = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    elif isinstance(anchor, datetime):
        value = (anchor if anchor.tzinfo else anchor.replace(tzinfo=UTC)).timestamp()
    else:
        value = float(anchor)
    whole = int(value)
    return whole - whole % 3600


class Sandbox:
    """A faithful simulator of the TestIO Customer API over real HTTP.

    :param preset: ``"small"``, ``"medium"``, ``"large"`` (see ``PRESETS``) or a Preset.
    :param seed: the same preset and seed always give the same data.
    :param port: 0 picks a free port.
    :param latency_ms: added to every request (sets ``faults.latency_ms``).
    :param faults: initial fault switches; the object is used as given, not copied.
    :param token: the only token accepted (``Authorization: Token <token>``).
    :param anchor: the "now" the data ends at (epoch seconds, a datetime or ISO 8601 text;
        floored to the hour). Default: ``TESTIO_SANDBOX_NOW`` if set, else the current
        time, so ``since="30d"`` finds data. Pin it for output that never changes:
        ``Sandbox(anchor="2025-06-02T12:00:00Z")`` (``data.ANCHOR``, what tests use). The
        same preset, seed and anchor always give the same data.
    :param evolve: let time change the account after the anchor (tests added and moving on,
        bugs reported and decided, hour by hour: ``timeline.py``; ``sb.timeline()`` lists
        what changed). Off by default: a pinned sandbox never changes by itself.
    """

    def __init__(
        self,
        preset: str | Preset = "small",
        seed: int = 0,
        port: int = 0,
        latency_ms: float = 0.0,
        faults: Faults | None = None,
        token: str = "sandbox-token",
        anchor: float | str | datetime | None = None,
        evolve: bool = False,
    ) -> None:
        if isinstance(preset, str):
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
            self.preset_name = preset
            preset = PRESETS[preset]
        else:
            self.preset_name = "custom"
        self.preset = preset
        self.seed = seed
        self.token = token
        self._port = port
        self._latency_ms = latency_ms
        faults = faults if faults is not None else Faults()
        if latency_ms:
            faults.latency_ms = latency_ms
        self.anchor = resolve_anchor(anchor)
        self.evolve = evolve
        self._world = World(preset, seed, self.anchor, evolve=evolve)
        self._planner = FaultPlanner(faults, clock=self._world.now)
        self._stats = Stats()
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.url if self._server else "stopped"
        return f"<Sandbox {self.preset_name} seed={self.seed} {where}>"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Start serving on a daemon thread; returns self."""
        if self._server is None:
            server = SandboxServer(
                ("127.0.0.1", self._port), self._world, self._planner, self.token, self._stats
            )
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"testio-sandbox:{server.server_address[1]}",
                daemon=True,
            )
            self._server = server
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; requests that sleep are woken."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_all()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Serve until KeyboardInterrupt (for a command line)."""
        self.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on (known once started, or when given)."""
        if self._server is not None:
            return int(self._server.server_address[1])
        if self._port:
            return self._port
        raise RuntimeError("the sandbox is not started")

    @property
    def url(self) -> str:
        """Base URL with the API's path prefix; endpoints are relative to it."""
        return f"http://127.0.0.1:{self.port}{PREFIX.rstrip('/')}"

    # -- faults ----------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The live fault switches; edits apply from the next request."""
        return self._planner.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._planner.faults = faults

    def set_faults(self, **switches: Any) -> None:
        """Set several fault switches at once: ``sb.set_faults(error_rate=0.1)``."""
        names = Faults.switch_names()
        unknown = sorted(set(switches) - set(names))
        if unknown:
            raise TypeError(f"unknown fault switches: {unknown}")
        for name, value in switches.items():
            setattr(self.faults, name, value)

    def clear_faults(self) -> None:
        """Turn every fault off; latency returns to the constructor's ``latency_ms``."""
        defaults = Faults()
        defaults.latency_ms = self._latency_ms
        for name in Faults.switch_names():
            setattr(self.faults, name, getattr(defaults, name))  # each set reseeds the planner

    # -- observation -----------------------------------------------------------------

    @property
    def counters(self) -> Counter[str]:
        """Requests per endpoint kind since the last reset (a copy), faulted ones too."""
        return self._stats.snapshot()

    @property
    def requests_total(self) -> int:
        """Every request since the last reset, unknown paths and faulted ones included."""
        return self._stats.total

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at the same time since the last reset."""
        return self._stats.max_in_flight

    @property
    def statuses(self) -> Counter[int | None]:
        """Answers per HTTP status since the last reset (a copy; ``None``: dropped):
        ``sb.statuses[429]``."""
        return self._stats.status_snapshot()

    def per_second(self) -> list[dict[str, int]]:
        """The answers second by second since the last reset, as the load model's tests
        read them: ``[{"second": 0, "requests": 21, "ok": 20, "429": 1,
        "peak_in_flight": 12}, ...]`` (absent keys: 0)."""
        return self._stats.series()

    @property
    def connections_total(self) -> int:
        """TCP connections accepted since the last reset (keep-alive keeps this low)."""
        return self._stats.connections

    def reset_counters(self) -> None:
        """Zero the counters, the total, the connection count, ``max_in_flight``, the
        statuses and the per-second series (its second 0 starts now).

        ``movements`` stay: :meth:`clear_movements` forgets them.
        """
        self._stats.reset()

    @property
    def movements(self) -> list[Movement]:
        """The list movements applied so far (``Faults.list_moves_every``), oldest first.

        A copy: ``sb.movements[-1].kind == "move_up"``. A movement that found nothing to
        act on (an empty product) is not recorded.
        """
        return self._world.movements()

    def clear_movements(self) -> None:
        """Forget the recorded movements."""
        self._world.clear_movements()

    # -- the clock -------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox clock in epoch seconds (a float), as the ``Date`` header tells it.

        It starts at the sandbox's anchor (``sb.anchor``: the current hour, or the one
        pinned with ``anchor=`` / ``TESTIO_SANDBOX_NOW``), runs with real time and jumps
        with :meth:`advance`. New tests are created at it:
        ``datetime.fromtimestamp(sb.now(), UTC)``.
        """
        return self._world.now()

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward: ``sb.advance(3600)`` (an hour later)."""
        self._world.advance(seconds)

    def truth(self, product_ids: Iterable[int] | None = None) -> Truth:
        """A deep-copied snapshot of everything served right now.

        ``product_ids`` limits it to some products: a full snapshot of ``large`` takes
        tens of seconds and over a gigabyte of memory.
        """
        return self._world.truth(product_ids)

    def timeline(self) -> list[Event]:
        """What an evolving sandbox (``evolve=True``) changed by itself as its clock passed
        whole hours, oldest first: tests added and moving on (locked, customer_finalized,
        archived), bugs reported and decided (see ``timeline.py``). Empty otherwise."""
        return self._world.timeline()

    def served_secrets(self) -> set[str]:
        """Every credential the sandbox's test environments held (all rotations so far):
        usernames, passwords, the code inside ``access``, the URL's password, an install
        token. A client must never write one of them anywhere::

            data = Path("mirror.db").read_bytes()
            assert not any(secret.encode() in data for secret in sb.served_secrets())
        """
        return self._world.served_secrets()

    # -- upstream changes ------------------------------------------------------------

    def rotate_credentials(self) -> None:
        """The customer changes every test environment's credentials, nothing else (a
        client that stores none sees no change)."""
        self._world.rotate_credentials()

    def add_tests(
        self,
        product_id: int,
        count: int = 30,
        status: str | None = None,
        *,
        where: Literal["head", "sorted", "unscheduled"] = "head",
    ) -> list[int]:
        """Add tests created now (the sandbox clock), each with 0-5 bugs (initialized: 0).

        ``where`` decides where they sort: ``"head"`` ends them later than every existing
        test, so they come first; ``"sorted"`` starts them now and ends them 2 hours to
        30 days later, where that end sorts them (often behind longer tests already
        scheduled); ``"unscheduled"`` gives them null ``start_at``/``end_at``, so they
        sort last. ``status`` defaults to ``"running"``, or ``"initialized"`` for
        unscheduled tests. Ids keep growing; they are returned oldest first::

            sb.add_tests(pid, count=3, where="sorted")
        """
        return self._world.add_tests(product_id, count, status, where)

    def update_test(self, test_id: int, **fields: Any) -> None:
        """Change any fields of a test (``status="archived"``; ``end_at`` reorders)."""
        self._world.update_test(test_id, fields)

    def update_bug(self, bug_id: int, **fields: Any) -> None:
        """Change any fields of a bug (``status="accepted"``)."""
        self._world.update_bug(bug_id, fields)

    def update_product(self, product_id: int, **fields: Any) -> None:
        """Change fields of a product (``name="..."``)."""
        self._world.update_product(product_id, fields)

    def update_feature(self, feature_id: int, **fields: Any) -> None:
        """Change fields of a product feature (``title="..."``) in its product's list;
        tests keep the snapshot they were made with, as on the service."""
        self._world.update_feature(feature_id, fields)

    def add_bugs(self, test_id: int, count: int = 4) -> list[int]:
        """Add generated bugs to a test; returns their ids."""
        return self._world.add_bugs(test_id, count)

    def delete_tests(self, test_ids: list[int]) -> None:
        """Delete tests with their bugs."""
        self._world.delete_tests(list(test_ids))

    def delete_bugs(self, bug_ids: list[int]) -> None:
        """Delete bugs."""
        self._world.delete_bugs(list(bug_ids))

    def delete_product(self, product_id: int) -> None:
        """Delete a product from the account, with its tests, bugs and features.

        It leaves ``products``; its endpoints and its tests' details answer 404, ``bugs``
        returns nothing for its tests and ``truth()`` omits it. :meth:`restore_product`
        brings it back.
        """
        self._world.delete_product(product_id)

    def restore_product(self, product_id: int) -> None:
        """Bring a deleted product back exactly as it was: ``sb.restore_product(pid)``."""
        self._world.restore_product(product_id)

    def test_ids(self, product_id: int) -> list[int]:
        """A product's test ids in list order, newest first (cheap, even on ``large``)."""
        return self._world.test_ids(product_id)
