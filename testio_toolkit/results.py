"""What a run reports: progress events while it works, a result object when it ends.

Usage::

    result = tt.refresh()
    result                      # <SyncResult refresh success · tests +7 ~5 -2 · bugs +4 ~3 ...>
    result.status               # 'success' | 'partial' | 'failed' | 'cancelled'
    result.tests.added          # totals over all products
    result.to_frame()           # one row per product

The same rows feed the CLI table, the notebook HTML table and ``to_frame()``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .feed import Tally, summary_line
from .limiter import LimiterFigures
from .vocabulary import RunStatus

if TYPE_CHECKING:
    import pandas as pd

ENTITIES = ("tests", "bugs", "features")
COUNT_NAMES = ("added", "updated", "unchanged", "marked_gone", "unmarked")


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a run: ``phase`` is 'products', 'tests', 'bugs' or 'features'.

    ``advance`` items were done; ``total`` more items became known to be due (bars add it to
    their total). ``message`` is a short line for humans.
    """

    phase: str
    advance: int = 0
    total: int = 0
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class Counts:
    """Rows of one kind a run added, updated, left unchanged, marked gone, or unmarked."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    marked_gone: int = 0
    unmarked: int = 0

    def add(self, other: Counts) -> None:
        for name in COUNT_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def short(self) -> str:
        """'+7 ~5 -2' (added, updated, marked gone); '=' when nothing changed."""
        parts = []
        if self.added:
            parts.append(f"+{self.added}")
        if self.updated:
            parts.append(f"~{self.updated}")
        if self.marked_gone:
            parts.append(f"-{self.marked_gone}")
        if self.unmarked:
            parts.append(f"^{self.unmarked}")
        return " ".join(parts) or "="


@dataclass
class ProductReport:
    """What a run did for one product, and whether it read everything."""

    product_id: int
    name: str
    status: str = RunStatus.SUCCESS
    tests: Counts = field(default_factory=Counts)
    bugs: Counts = field(default_factory=Counts)
    features: Counts = field(default_factory=Counts)
    unreadable: int = 0
    requests: int = 0
    seconds: float = 0.0
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """A flat dict: product, status, tests_added, ..., bugs_unchanged, ..., error."""
        flat: dict[str, Any] = {
            "product_id": self.product_id,
            "product": self.name,
            "status": self.status,
        }
        for entity in ENTITIES:
            counts = getattr(self, entity)
            for name in COUNT_NAMES:
                flat[f"{entity}_{name}"] = getattr(counts, name)
        flat.update(
            unreadable=self.unreadable,
            requests=self.requests,
            seconds=round(self.seconds, 2),
            error=self.error,
        )
        return flat


@dataclass
class SyncResult:
    """The outcome of ``sync()``, ``refresh()`` or ``nuke()``.

    ``status`` is 'success' only when every selected product was read completely;
    'partial' when some records were unreadable or some products failed; 'failed' when
    nothing could be read; 'cancelled' when interrupted.
    """

    mode: str
    status: str
    db_path: str
    source: str
    dry_run: bool = False
    products: list[ProductReport] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    started_at: str | None = None
    error: str | None = None
    backup_path: str | None = None
    # Something the user should know about how the run ended (a nuke interrupted after
    # its swap: it completed).
    note: str | None = None
    # What the run recorded in the change feed (a dry run: what it would record).
    changes: Tally = field(default_factory=Tally)
    # What the client's limit of requests in flight did: start, peak, end, cuts, 429s, pause.
    limiter: LimiterFigures | None = None

    @property
    def change_line(self) -> str:
        """The changes in a line a person reads: '12 new bugs, 3 of them critical; ...'."""
        line = summary_line(self.changes)
        return f"would record: {line}" if self.dry_run else line

    @property
    def ok(self) -> bool:
        """True when the run read everything it was asked to."""
        return self.status == RunStatus.SUCCESS

    def _total(self, entity: str) -> Counts:
        total = Counts()
        for report in self.products:
            total.add(getattr(report, entity))
        return total

    @property
    def tests(self) -> Counts:
        """Test counts summed over all products."""
        return self._total("tests")

    @property
    def bugs(self) -> Counts:
        """Bug counts summed over all products."""
        return self._total("bugs")

    @property
    def features(self) -> Counts:
        """Feature counts summed over all products."""
        return self._total("features")

    @property
    def unreadable(self) -> int:
        """Records the service could not serve in this run (logged for a later retry)."""
        return sum(report.unreadable for report in self.products)

    @property
    def failed_products(self) -> list[ProductReport]:
        """Products that failed, with their ``error``."""
        return [report for report in self.products if report.status == RunStatus.FAILED]

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per product (see ``ProductReport.row``)."""
        return [report.row() for report in self.products]

    def counts_json(self) -> dict[str, Any]:
        """Totals for the run history: ``{'tests': {...}, 'bugs': {...}, ...}``."""
        totals: dict[str, Any] = {entity: asdict(self._total(entity)) for entity in ENTITIES}
        totals["unreadable"] = self.unreadable
        totals["products"] = {str(r.product_id): r.status for r in self.products}
        totals["changes"] = self.changes.as_json()
        if self.limiter is not None:
            totals["limiter"] = asdict(self.limiter)
        return totals

    def to_frame(self) -> pd.DataFrame:
        """One row per product: status, counts per entity, unreadable, requests, error."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def headline(self) -> str:
        """'refresh success · tests +7 ~5 -2 · bugs +4 ~3 · 3 products · 812 requests ·
        limit 8→24→17 (1 cut) · 4.2s'."""
        dry = " (dry run: nothing written)" if self.dry_run else ""
        parts = [
            f"{self.mode} {self.status}{dry}",
            f"tests {self.tests.short()}",
            f"bugs {self.bugs.short()}",
            f"{len(self.products)} products",
            f"{self.requests} requests",
            *([self.limiter.short()] if self.limiter is not None else []),
            f"{self.seconds:.1f}s",
        ]
        if self.unreadable:
            parts.append(f"{self.unreadable} unreadable")
        if self.failed_products:
            parts.append(f"failed: {', '.join(str(r.product_id) for r in self.failed_products)}")
        if self.source == "sandbox":
            parts.append("SANDBOX DATA")
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)

    def advice(self, *, cli: bool = False) -> str | None:
        """What to do next after a run that did not read everything, or None.

        >>> result.advice()          # 'Some records could not be read ... tt.retry_unreadable()'
        >>> result.advice(cli=True)  # the same, naming `testio-toolkit problematic retry`
        """
        if self.ok or self.dry_run:
            return None
        steps = []
        if self.unreadable:
            retry = "testio-toolkit problematic retry" if cli else "tt.retry_unreadable()"
            listing = "testio-toolkit problematic list" if cli else "tt.unreadable()"
            steps.append(
                f"{self.unreadable} records could not be read and are logged; read them "
                f"again later with `{retry}` (see them with `{listing}`)"
            )
        if self.failed_products:
            again = "testio-toolkit sync" if cli else "tt.sync()"
            steps.append(f"products failed (reasons above); run `{again}` again later")
        return "; ".join(steps) or None

    def __repr__(self) -> str:
        advice = self.advice()
        return (
            f"<SyncResult {self.headline()} | {self.change_line}{f' | {advice}' if advice else ''}>"
        )

    def table(self) -> list[list[str]]:
        """The summary as text rows (header first), for the CLI."""
        header = ["product", "status", "tests +/~/-/=", "bugs +/~/-/=", "features +/~", "unread."]
        body = [header]
        for r in self.products:
            body.append(
                [
                    f"{r.product_id} {r.name}"[:40],
                    r.status,
                    _slashed(r.tests),
                    _slashed(r.bugs),
                    f"{r.features.added}/{r.features.updated}",
                    str(r.unreadable),
                ]
            )
        body.append(
            [
                "TOTAL",
                self.status,
                _slashed(self.tests),
                _slashed(self.bugs),
                f"{self.features.added}/{self.features.updated}",
                str(self.unreadable),
            ]
        )
        return body

    def _repr_html_(self) -> str:
        rows = self.table()
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in rows[1:]
        )
        errors = "".join(
            f"<li><b>{r.product_id}</b>: {html.escape(r.error or '')}</li>"
            for r in self.products
            if r.error
        )
        if self.error:
            errors += f"<li>{html.escape(self.error)}</li>"
        if advice := self.advice():
            errors += f"<li>{html.escape(advice)}</li>"
        return (
            f"<div><p><b>{html.escape(self.headline())}</b><br>"
            f"<span class='testio-change-line'>{html.escape(self.change_line)}</span><br><code>"
            f"{html.escape(self.db_path)}</code></p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{'<ul>' + errors + '</ul>' if errors else ''}</div>"
        )


def _slashed(counts: Counts) -> str:
    return f"{counts.added}/{counts.updated}/{counts.marked_gone}/{counts.unchanged}"


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned text columns, for terminals."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
