"""How far a simulator run is, on stderr: a progress bar on a terminal, a line otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["Progress"]

log = logging.getLogger(__name__)


class Progress:
    """A rich progress bar on a terminal, a quiet line every few seconds otherwise (stderr).

    With ``run_id`` (``TIPSTREAM_LOG_FORMAT=json``) the lines are log records carrying the
    run's id instead, and there is no bar: stderr then holds JSON only.
    """

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        enabled: bool = True,
        every_s: float = 5.0,
        run_id: str | None = None,
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = enabled
        self.every_s = every_s
        self.run_id = run_id
        self._bar: Any = None
        self._task: Any = None
        self._last = time.monotonic()
        self._start = self._last

    def __enter__(self) -> Progress:
        if self.enabled and self.run_id is None and sys.stderr.isatty():
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
                if self.run_id is not None:
                    log.info(
                        "%s: %d%s after %.0f s",
                        self.label,
                        self.done,
                        of,
                        now - self._start,
                        extra={"run_id": self.run_id},
                    )
                    return
                print(
                    f"{self.label}: {self.done}{of} after {now - self._start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
