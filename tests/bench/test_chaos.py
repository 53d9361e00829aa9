"""The short version of the fault matrix (``python -m bench.chaos --quick``) inside the
suite: a kill -9 thrice with backfilled payload times, and the whole input re-delivered
from offset 0. Nothing may be lost or doubled, and the model must equal the replay's."""

from __future__ import annotations

import pytest

from bench.chaos import run_scenario
from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario", ["kill9-backfill", "redeliver-from-0"])
async def test_fault_scenario_is_exact(database: str, settings: Settings, scenario: str) -> None:
    outcome = await run_scenario(settings, scenario, users=40, pairs=1_000)
    assert (outcome.lost, outcome.doubled, outcome.wrong_rows, outcome.model_mismatches) == (
        0,
        0,
        0,
        0,
    ), outcome
    assert outcome.recovery_s < 60, outcome
