"""``tipstream evaluate``: what would another policy have earned on the logged traffic?

Off-policy evaluation (``bandit.ope``) over a simulation run (``sim_events``) or production
shows (``tip_shown`` joined to the applied ``tip_feedback`` row of the same user and tip),
read by ``streams.analysis.load`` and shown by ``streams.analysis.evaluate``.

Exit codes: 0 ok, 2 bad usage or bad input (no such run, no usable rows, unknown policy),
1 failure (database).
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import orjson
import typer

from bandit.ope.evaluation import evaluate_log
from bandit.ope.logged import EvaluationInputError
from bandit.registry import POLICY_NAMES
from streams.analysis.evaluate import evaluation_json, print_evaluation
from streams.analysis.load import load_production_log, load_run_log
from streams.analysis.summary import json_ready
from streams.cli.failures import failure_line, settings_or_exit

__all__ = ["evaluate_command", "parse_since", "register"]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 / ISO 8601 time (UTC if no offset) or a span back from now: 30m, 24h, 7d.

    >>> parse_since("2026-11-27T09:00:00Z").isoformat()
    '2026-11-27T09:00:00+00:00'
    >>> parse_since("2d", datetime(2026, 11, 27, tzinfo=UTC)).isoformat()
    '2026-11-25T00:00:00+00:00'
    """
    m = _RELATIVE.match(text.strip())
    if m:
        return (now or datetime.now(UTC)) - timedelta(
            seconds=float(m.group(1)) * _UNIT_S[m.group(2)]
        )
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise EvaluationInputError(
            f"--since {text!r}: expected an ISO time (2026-11-27T09:00:00Z) or a span (24h, 7d)"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def evaluate_command(  # noqa: PLR0917 - typer options
    run: Annotated[
        str | None, typer.Option("--run", help="a simulation run id: evaluate on its sim_events")
    ] = None,
    production: Annotated[
        bool,
        typer.Option(
            "--production", help="evaluate on production shows (tip_shown ⋈ applied tip_feedback)"
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="with --production: only shows from then on (ISO time, or 24h, 7d)"),
    ] = None,
    policies: Annotated[
        str | None,
        typer.Option(
            help="comma list of target policies (default: every registered one; 'oracle' on "
            "rule-judge runs)"
        ),
    ] = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap resamples per interval")] = 1000,
    seed: Annotated[int, typer.Option(help="bootstrap seed")] = 0,
    epsilon: Annotated[
        float | None,
        typer.Option(help="ε when replaying egreedy-v1 (default: the run's, or TIPSTREAM_EPSILON)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="last stdout line: the figures")] = False,
) -> None:
    """Estimate each policy's value from logged shows and rewards (IPS, SNIPS, doubly
    robust, bootstrap 95% intervals) and say which policy to promote and how sure.

    Every target is replayed over the log in time order, learning from the logged rewards as
    a shadow policy would. Examples:

      tipstream evaluate --run sim-20261127T101708-bc2ed7

      tipstream evaluate --production --since 7d --policies egreedy-v2,pooled-v1 --json
    """
    if (run is None) == (not production):
        raise _fail("give exactly one of --run RUN_ID or --production", 2)
    if since is not None and not production:
        raise _fail("--since goes with --production", 2)
    if n_boot < 2:
        raise _fail("--n-boot must be at least 2", 2)
    if epsilon is not None and not 0.0 <= epsilon <= 1.0:
        raise _fail("--epsilon must be in [0, 1]", 2)
    names = (
        [p.strip() for p in policies.split(",") if p.strip()] if policies else list(POLICY_NAMES)
    )
    if not names:
        raise _fail("--policies is empty", 2)
    settings = settings_or_exit()
    try:
        if run is not None:
            log = asyncio.run(load_run_log(settings.database_url, run))
            if epsilon is not None:
                log.epsilon = epsilon
        else:
            start = parse_since(since) if since else datetime(1970, 1, 1, tzinfo=UTC)
            log = asyncio.run(
                load_production_log(
                    settings.database_url, start, settings.epsilon if epsilon is None else epsilon
                )
            )
        evaluation = evaluate_log(log, names, n_boot=n_boot, seed=seed)
    except EvaluationInputError as err:
        raise _fail(str(err), 2) from None
    except KeyboardInterrupt:
        raise _fail("cancelled", 1) from None
    except Exception as err:
        raise _fail(failure_line(err, settings), 1) from None
    if as_json:
        document = evaluation_json(evaluation)
        sys.stdout.write(orjson.dumps(json_ready(document)).decode() + "\n")
    else:
        print_evaluation(evaluation)


def register(app: typer.Typer) -> None:
    """Mount ``tipstream evaluate``."""
    app.command("evaluate")(evaluate_command)
