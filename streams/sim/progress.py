"""How far a simulator run is, on stderr: a progress bar on a terminal, a line otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A rich progress bar on a terminal, a quiet line every few seconds otherwise (stderr)."""

    def __init__(
        self, total: int | None, label: str, *, enabled: bool = True, every_s: float = 5.0
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = enabled
        self.every_s = every_s
        self._bar: Any = None
        self._task: Any = None
        self._last = time.monotonic()
        self._start = self._last

    def __enter__(self) -> Progress:
        if self.enabled and sys.stderr.isatty():
            # rich's progress machinery only when a terminal will show it.
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress  # noqa: PLC0415

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
        elif self.enabled:
            now = time.monotonic()
            if now - self._last >= self.every_s:
                self._last = now
                of = f"/{self.total}" if self.total else ""
                print(
                    f"{self.label}: {self.done}{of} after {now - self._start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
