"""The worker process's logging: a quiet level keeps the loggers quiet, not only the output."""

from __future__ import annotations

import logging

import pytest

from streams.cli.logs import configure_logging
from streams.settings import Settings
from streams.worker.app import BoundedStopWorker, Worker


@pytest.mark.parametrize("level", [logging.WARNING, logging.ERROR, logging.INFO])
def test_the_root_logger_stays_at_the_chosen_level(level: int) -> None:
    # faust's terminal spinner once set the root logger to DEBUG at WARN and above, so
    # every debug call on the hot path built a record that no handler printed.
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    settings = Settings()
    try:
        configure_logging(settings, level)
        process = BoundedStopWorker(
            Worker(settings).app,
            loglevel=level,
            quiet=True,
            stop_timeout_s=5.0,
            redirect_stdouts=False,  # the test's own stdout stays pytest's
        )
        process._setup_logging()
        assert root.level == level
        assert not logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
