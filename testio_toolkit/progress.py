"""Progress bars fed by the engine's progress events (tqdm's ``auto`` bars).

Usage::

    with ProgressBars() as bars:
        await run_plan(..., on_progress=bars)

In a notebook ``tqdm.auto`` draws widget bars, in a terminal text bars. The engine only emits
``ProgressEvent``s; the panel listens to the same events with its own widgets.
"""

from __future__ import annotations

import threading
from typing import Any

from tqdm.auto import tqdm

from .results import ProgressCallback, ProgressEvent
from .vocabulary import PHASE_LABELS


class ProgressBars:
    """One bar per phase, created on the first event of that phase."""

    def __init__(
        self,
        *,
        disable: bool = False,
        leave: bool = True,
        forward: ProgressCallback | None = None,
    ) -> None:
        self.disable = disable
        self.leave = leave
        self.forward = forward  # another listener (the panel) that gets every event too
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        if self.forward is not None:
            self.forward(event)
        if self.disable or event.phase not in PHASE_LABELS:
            return
        with self._lock:
            bar = self._bars.get(event.phase)
            if bar is None:
                bar = tqdm(
                    total=None,
                    desc=PHASE_LABELS[event.phase],
                    unit="",
                    leave=self.leave,
                    dynamic_ncols=True,
                )
                self._bars[event.phase] = bar
            if event.total:
                bar.total = (bar.total or 0) + event.total
                bar.refresh()
            if event.advance:
                bar.update(event.advance)

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
