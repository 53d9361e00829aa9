"""``tipstream compare``: the command line of the standard policy comparison
(``streams.analysis.compare``).

Exit codes: 0 ok, 2 bad usage, 1 a run failed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from bandit.registry import KNOWN_TYPES_NAME, ORACLE_NAME, POLICY_NAMES
from judges.personas import PersonaFileError, persona_file
from streams.analysis.compare import (
    STANDARD_POLICIES,
    CompareUsageError,
    compare,
    render_markdown,
)
from streams.cli.failures import failure_line, settings_or_exit
from streams.cli.sim import PERSONAS_HELP

__all__ = ["compare_command", "register"]


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CompareUsageError(
            f"--{name} must be a comma list of integers, not {text!r}"
        ) from None
    if not values or any(v < 0 for v in values):
        raise CompareUsageError(f"--{name} needs at least one integer ≥ 0")
    return values


def _persona_set(spec: str | None) -> Path | None:
    """The persona file of ``--personas`` (a shipped set's name or a path), checked now."""
    if spec is None:
        return None
    try:
        path = persona_file(spec)
    except PersonaFileError as err:
        raise CompareUsageError(f"--personas: {err}") from None
    if not path.is_file():
        raise CompareUsageError(f"--personas {spec}: no such file")
    return path


def compare_command(  # noqa: PLR0917 - typer options
    policies: Annotated[str, typer.Option(help="comma list")] = ",".join(STANDARD_POLICIES),
    seeds: Annotated[str, typer.Option(help="comma list of world seeds")] = "0",
    long_users: Annotated[int, typer.Option(help="long setting: users per persona")] = 10,
    long_rounds: Annotated[int, typer.Option(help="long setting: rounds (0: skip it)")] = 1000,
    checkpoints: Annotated[
        str, typer.Option(help="long setting: also report the first N rounds")
    ] = "20,200",
    last: Annotated[int, typer.Option(help="long setting: report the last N rounds")] = 200,
    cold_users: Annotated[int, typer.Option(help="cold start: users per persona")] = 50,
    cold_rounds: Annotated[int, typer.Option(help="cold start: rounds")] = 20,
    personas: Annotated[str | None, typer.Option(help=PERSONAS_HELP)] = None,
    jobs: Annotated[int, typer.Option(help="simulations at once")] = 2,
    markdown: Annotated[Path | None, typer.Option(help="also write the tables here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="last stdout line: the figures")] = False,
) -> None:
    """Run the standard comparison (rule judge, in-process policies, real simulator) and print
    mean expected reward, realized reward and gap_closed with 95% intervals per policy.

    Wall time is about (policies × seeds × judgments) / (700 per second × jobs) on a small
    machine: the defaults (7 policies, 1 seed) take about 10 minutes.

      tipstream compare --seeds 0,1 --personas alternate
    """
    settings = settings_or_exit()
    try:
        names = [p.strip() for p in policies.split(",") if p.strip()]
        if not names:
            raise CompareUsageError("--policies is empty")
        references = (ORACLE_NAME, KNOWN_TYPES_NAME)
        unknown = [n for n in names if n not in POLICY_NAMES and n not in references]
        if unknown:
            raise CompareUsageError(
                f"unknown policies {unknown}; known: {', '.join((*POLICY_NAMES, *references))}"
            )
        seed_list = _ints(seeds, "seeds")
        marks = _ints(checkpoints, "checkpoints") if checkpoints.strip() else []
        if min(long_users, cold_users, cold_rounds, jobs) < 1 or long_rounds < 0 or last < 0:
            raise CompareUsageError("users, rounds and jobs must be positive")
        persona_path = _persona_set(personas)
        result = compare(
            names, seed_list, long_users, long_rounds, cold_users, cold_rounds, marks, last,
            persona_path, jobs, settings.database_url, progress=not as_json,
        )  # fmt: skip
    except CompareUsageError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("error: cancelled", err=True)
        raise typer.Exit(1) from None
    except Exception as err:
        typer.echo(f"error: {failure_line(err, settings)}", err=True)
        raise typer.Exit(1) from None
    text = render_markdown(result)
    header = (
        f"personas: {result['personas']}; seeds {result['seeds']}; "
        f"{len(result['runs'])} runs in {result['wall_s']} s\n"
    )
    if markdown is not None:
        markdown.write_text(header + "\n" + text + "\n", encoding="utf-8")
    if as_json:
        sys.stdout.write(orjson.dumps(result).decode() + "\n")
    else:
        sys.stdout.write(header + "\n" + text + "\n")


def register(app: typer.Typer) -> None:
    """Mount ``tipstream compare``."""
    app.command("compare")(compare_command)
