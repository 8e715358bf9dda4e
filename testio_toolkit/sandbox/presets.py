"""Sizes of the generated sandbox accounts.

A preset fixes how much data the generator makes; the seed fixes which. ``small`` is for
unit tests and notebooks, ``medium`` for integration tests that need paging over a
thousand-test product, ``large`` for benchmarks::

    >>> PRESETS["medium"].tests
    6000
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRESETS", "Preset"]


@dataclass(frozen=True)
class Preset:
    """How big one generated account is.

    :param products: number of products, including ``empty`` ones.
    :param tests: exploratory tests over all products.
    :param bugs_per_test: mean number of bugs of a test that has started.
    :param largest: tests of the biggest product (it comes first in the products list).
    :param sectioned: products whose features are listed per section.
    :param empty: products without a single test (a new customer product).
    :param sizes: exact tests per product, overriding the random split (small preset).
    :param history_days: how far back the oldest test was created.
    """

    products: int
    tests: int
    bugs_per_test: float
    largest: int
    sectioned: int
    empty: int = 0
    sizes: tuple[int, ...] | None = None
    history_days: int = 3 * 365


PRESETS: dict[str, Preset] = {
    # 75 tests in the first product: an exact multiple of 25, so reading it costs the
    # extra empty page the real service makes clients pay for.
    "small": Preset(
        products=3, tests=150, bugs_per_test=4.5, largest=75, sectioned=2, sizes=(75, 52, 23)
    ),
    "medium": Preset(
        products=25, tests=6000, bugs_per_test=6.7, largest=1350, sectioned=4, empty=1
    ),
    "large": Preset(
        products=80,
        tests=40000,
        bugs_per_test=6.25,
        largest=4200,
        sectioned=9,
        empty=2,
        history_days=4 * 365,
    ),
}
