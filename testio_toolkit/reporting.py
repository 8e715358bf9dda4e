"""A period's report to hand over: its measures, the trend inside it, the change from the
period before, and the features with the most bugs, as HTML and Markdown.

Usage::

    tt.report(product=12, period="2026-Q3")                 # shown in a notebook
    tt.report(product=12, period="2026-07", path="july.md")  # saved (.md, .html) too
    report.markdown(); report.html(); report.save("q3.html")

The measures are ``metrics.health`` over the period's bugs (by ``created_at``) and tests
(by ``end_at``); the trend has a row per month of a quarter (per week of a month).
"""

from __future__ import annotations

import html as html_text
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError
from .metrics import COLOURS, THRESHOLDS, HealthFrame

TOP_FEATURES = 5
# The measures a report lists, in its words.
MEASURES = {
    "tests_run": "Tests run",
    "bugs": "Bugs reported",
    "bugs_per_test": "Bugs per test",
    "accepted": "Accepted",
    "auto_accepted": "Auto-accepted",
    "rejected": "Rejected",
    "rejection_rate": "Rejection rate",
    "auto_acceptance_rate": "Auto-acceptance rate",
    "review_rate": "Review rate",
    "review_hours_median": "Median time to review (h, upper bound)",
}


def parse_period(text: str) -> pd.Period:
    """``"2026-Q3"`` (or ``2026Q3``) -> a quarter, ``"2026-07"`` -> a month; else ConfigError."""
    value = str(text).strip().upper()
    try:
        if "Q" in value:
            return pd.Period(value.replace("-Q", "Q"), freq="Q")
        if len(value) == 7 and value[4] == "-":
            return pd.Period(value, freq="M")
    except ValueError:
        pass
    raise ConfigError(f"period {text!r}: give a quarter (2026-Q3) or a month (2026-07)")


def bounds(period: pd.Period) -> tuple[str, str]:
    """The period's first day and the next period's, as ``since``/``until`` dates."""
    return str(period.start_time.date()), str((period + 1).start_time.date())


def label(period: pd.Period) -> str:
    return f"{period.year}-Q{period.quarter}" if period.freqstr.startswith("Q") else str(period)


@dataclass(frozen=True)
class Report:
    """One period's report; ``_repr_html_`` shows it in a notebook."""

    title: str
    period: str
    previous_period: str
    measures: HealthFrame  # one row: this period
    previous: HealthFrame  # one row: the period before
    trend: HealthFrame  # a row per month (quarter) or week (month)
    features: pd.DataFrame  # the top features by bugs

    def _value(self, frame: pd.DataFrame, name: str) -> Any:
        if frame.empty or name not in frame.columns:
            return None
        value = frame[name].iloc[0]
        return None if pd.isna(value) else value

    def _rows(self) -> list[tuple[str, str, str, str | None]]:
        """(measure, this period, the period before, grade) for each listed measure."""
        rows = []
        for name, words in MEASURES.items():
            now, before = self._value(self.measures, name), self._value(self.previous, name)
            grade = THRESHOLDS[name].grade(now) if name in THRESHOLDS else None
            rows.append((words, _shown(name, now), _shown(name, before), grade))
        return rows

    def markdown(self) -> str:
        """The report as Markdown (GitHub tables)."""
        lines = [f"# {self.title}", "", f"## Measures, {self.period}", ""]
        lines += [f"| Measure | {self.period} | {self.previous_period} | Grade |"]
        lines += ["|---|---:|---:|---|"]
        lines += [f"| {m} | {a} | {b} | {g or ''} |" for m, a, b, g in self._rows()]
        lines += ["", f"## Trend inside {self.period}", ""]
        lines += [_markdown_table(_trend_view(self.trend)), "", "## Top features by bugs", ""]
        lines += [_markdown_table(self.features) if len(self.features) else "No bugs reported."]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """The report as an HTML fragment, the grades coloured as ``tt.health()`` colours them."""
        rows = "".join(
            f"<tr><th>{html_text.escape(m)}</th><td>{a}</td><td>{b}</td>"
            f"<td style='background-color: {COLOURS.get(g or '', '')}'>{g or ''}</td></tr>"
            for m, a, b, g in self._rows()
        )
        features = (
            self.features.to_html(index=False, na_rep="-")
            if len(self.features)
            else "<p>No bugs reported.</p>"
        )
        return (
            f"<div class='testio-report'><h2>{html_text.escape(self.title)}</h2>"
            f"<h3>Measures, {self.period}</h3><table><thead><tr><th>Measure</th>"
            f"<th>{self.period}</th><th>{self.previous_period}</th><th>Grade</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            f"<h3>Trend inside {self.period}</h3>{_trend_view(self.trend).to_html(index=False)}"
            f"<h3>Top features by bugs</h3>{features}</div>"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return f"<Report {self.title!r}: .markdown(), .html(), .save(path)>"

    def save(self, path: str | Path) -> Path:
        """Write the report: ``.html`` as a page, anything else as Markdown."""
        target = Path(path)
        if target.suffix.lower() in (".html", ".htm"):
            page = f"<!doctype html><meta charset='utf-8'><title>{self.title}</title>"
            target.write_text(page + self.html(), encoding="utf-8")
        else:
            target.write_text(self.markdown(), encoding="utf-8")
        return target


def _shown(name: str, value: Any) -> str:
    if value is None or pd.isna(value):
        return "-"
    if name.endswith("_rate"):
        return f"{float(value):.0%}"
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:.1f}"
    return str(int(value)) if isinstance(value, int | float) else str(value)


def _trend_view(trend: pd.DataFrame) -> pd.DataFrame:
    view = pd.DataFrame(trend)[
        [c for c in ("period", "tests_run", "bugs", *THRESHOLDS) if c in trend.columns]
    ].copy()
    for rate in THRESHOLDS:
        if rate in view.columns:
            view[rate] = [_shown(rate, v) for v in view[rate]]
    return view


def _markdown_table(frame: pd.DataFrame) -> str:
    return str(frame.to_markdown(index=False))


def top_features(measures: HealthFrame, n: int = TOP_FEATURES) -> pd.DataFrame:
    """The ``n`` features with the most bugs, with their rejection rate."""
    frame = pd.DataFrame(measures)
    frame = frame[frame["bugs"] > 0].sort_values(["bugs", "feature"], ascending=[False, True])
    keys = [c for c in ("account", "product", "feature") if c in frame.columns]
    shown = frame[[*keys, "bugs", "accepted", "rejected", "rejection_rate"]].head(n).copy()
    shown["rejection_rate"] = [_shown("rejection_rate", v) for v in shown["rejection_rate"]]
    return shown.reset_index(drop=True)
