"""Several sandbox customers at once: a CSM's portfolio without a single real token.

Each customer is its own :class:`Sandbox` (its own server on 127.0.0.1, its own token, its
own generated data: another seed, so other products), so one can be stopped (a service that
is down) while the others serve::

    >>> from testio_toolkit.sandbox import SandboxCustomers
    >>> with SandboxCustomers() as customers:          # acme (small), globex, initech
    ...     for name, sb in customers.sandboxes.items():
    ...         name, sb.url, sb.token                 # what `account add` needs
    ...     customers["globex"].stop()                  # globex's service is down

``SandboxCustomers.numbered(30)`` makes thirty small customers (``customer-01`` ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from .presets import PRESETS, Preset
from .sandbox import Sandbox

__all__ = ["CUSTOMERS", "Customer", "SandboxCustomers"]

# The token of customer NAME: the sandbox's own prefix, so clients label the data as sandbox data.
TOKEN_PREFIX = "sandbox-token-"


@dataclass(frozen=True)
class Customer:
    """One sandbox customer: a name, the size of its account and the seed of its data."""

    name: str
    preset: Preset
    seed: int

    @property
    def token(self) -> str:
        """The only token its sandbox accepts (not a secret)."""
        return TOKEN_PREFIX + self.name


TINY = Preset(products=2, tests=40, bugs_per_test=3.0, largest=30, sectioned=1, sizes=(30, 10))
MID = Preset(products=5, tests=320, bugs_per_test=4.0, largest=120, sectioned=2)

# Three customers of different sizes, each with products of its own.
CUSTOMERS: tuple[Customer, ...] = (
    Customer("acme", PRESETS["small"], 11),
    Customer("globex", TINY, 12),
    Customer("initech", MID, 13),
)


class SandboxCustomers:
    """Several sandbox customers, each served by its own :class:`Sandbox`.

    :param customers: who (default ``CUSTOMERS``: acme, globex, initech).
    :param latency_ms: added to every request of every customer.
    :param anchor: the sandboxes' "now" (see :class:`Sandbox`).
    """

    def __init__(
        self,
        customers: Sequence[Customer] = CUSTOMERS,
        *,
        latency_ms: float = 0.0,
        anchor: float | str | datetime | None = None,
    ) -> None:
        self.customers = tuple(customers)
        self.sandboxes: dict[str, Sandbox] = {
            c.name: Sandbox(
                preset=c.preset, seed=c.seed, token=c.token, latency_ms=latency_ms, anchor=anchor
            )
            for c in self.customers
        }

    @classmethod
    def numbered(
        cls, count: int, preset: str | Preset = "small", **options: float | str | None
    ) -> SandboxCustomers:
        """``count`` customers of one size: ``customer-01``, ``customer-02`` ..."""
        size = PRESETS[preset] if isinstance(preset, str) else preset
        customers = [Customer(f"customer-{i:02d}", size, 100 + i) for i in range(1, count + 1)]
        return cls(customers, **options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<SandboxCustomers {', '.join(self.sandboxes)}>"

    def __iter__(self) -> Iterator[Sandbox]:
        return iter(self.sandboxes.values())

    def __len__(self) -> int:
        return len(self.sandboxes)

    def __getitem__(self, name: str) -> Sandbox:
        return self.sandboxes[name]

    def names(self) -> list[str]:
        """The customers' names, in order."""
        return list(self.sandboxes)

    def start(self) -> SandboxCustomers:
        """Start every customer's server; returns self."""
        for sb in self:
            sb.start()
        return self

    def stop(self) -> None:
        """Stop every server."""
        for sb in self:
            sb.stop()

    def __enter__(self) -> SandboxCustomers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
