"""``tipstream simulate``, ``tipstream report`` and ``tipstream demo``.

Exit codes: 0 ok, 2 bad usage or bad input (a bad setting, a bad persona set, a bad
judgments line, two runs that do not face the same world, the LLM judge without an API key),
1 failure (broker, database, worker, the Anthropic API) or cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer

from judges.delay import DELAY_KINDS
from judges.drift import DRIFT_MAPPINGS
from judges.personas import PERSONA_SETS
from judges.registry import DEFAULT_JUDGE, JUDGE_NAMES_TEXT, UnknownJudgeError, judge_class
from streams.cli.failures import aiokafka_silenced, fail, failure_line, settings_or_exit
from streams.cli.logs import configure_logging
from streams.dev.demo import run_demo
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import FALLBACKS, SimConfig, SimUsageError, Via
from streams.sim.external import run_external_judgments, run_external_requests
from streams.sim.load import run_load
from streams.sim.reports import print_summary, render_report

__all__ = ["demo_command", "register", "report_command", "simulate_command"]

T = TypeVar("T")
_fail = fail
PERSONAS_HELP = (
    f"a shipped persona set ({', '.join(PERSONA_SETS)}) or a JSON file (default: standard)"
)


# After Ctrl-C or SIGTERM the run is cancelled and cleans up (its row marked cancelled, the
# producer flushed). A full test suite saw that cleanup hang twice (never reproduced alone):
# past this many seconds the process prints every thread's stack and exits with status 1.
CANCEL_EXIT_S = 20.0


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; Ctrl-C or SIGTERM cancels it (the run is then marked cancelled), and
    the process exits at most ``CANCEL_EXIT_S`` later, or at once on a second signal."""
    watchdog: list[threading.Timer] = []

    async def main() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def cancel() -> None:
            if watchdog:  # a second signal: do not wait for the cleanup
                _exit_now("cancelled twice; exiting without the run's cleanup")
            assert task is not None
            task.cancel()
            timer = threading.Timer(CANCEL_EXIT_S, _cleanup_overdue)
            timer.daemon = True
            timer.start()
            watchdog.append(timer)

        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGTERM, cancel)
                loop.add_signal_handler(signal.SIGINT, cancel)
        return await coro

    try:
        return asyncio.run(main())
    finally:
        for timer in watchdog:
            timer.cancel()


def _cleanup_overdue() -> None:
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    _exit_now(f"cancelled, but the run's cleanup did not end within {CANCEL_EXIT_S:.0f} s")


def _exit_now(message: str) -> NoReturn:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def _emit_json(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    sys.stdout.flush()


def simulate_command(  # noqa: PLR0917 - typer options
    policy: Annotated[
        str | None,
        typer.Option(
            help="random, oracle, egreedy-v1, pooledmix-v3, ... (default: TIPSTREAM_POLICY, "
            "the policy the worker serves)"
        ),
    ] = None,
    judge: Annotated[str, typer.Option(help=JUDGE_NAMES_TEXT)] = DEFAULT_JUDGE,
    fallback: Annotated[
        str,
        typer.Option(
            help="with --judge llm: none (a judgment the LLM cannot give fails the run; no "
            "API key is exit 2) or rule (the rule judge gives it; counted in the summary)"
        ),
    ] = "none",
    users: Annotated[int, typer.Option(help="users per persona")] = 1,
    rounds: Annotated[int, typer.Option(help="rounds per user")] = 50,
    seed: Annotated[int, typer.Option(help="fixes users, moments, candidates, judge draws")] = 0,
    personas: Annotated[str | None, typer.Option(help=PERSONAS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="last stdout line: the summary")] = False,
    via: Annotated[
        str | None,
        typer.Option(help="worker or inprocess (default: the worker for the policy it serves)"),
    ] = None,
    epsilon: Annotated[float | None, typer.Option(help="exploration (in-process)")] = None,
    exploration_floor: Annotated[
        float | None,
        typer.Option(
            help="share of choices made uniformly at random (in-process; default "
            "TIPSTREAM_EXPLORATION_FLOOR)"
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="users played at once")] = 32,
    rate: Annotated[
        float | None,
        typer.Option(help="load mode: Kafka messages per second (show + feedback = 2)"),
    ] = None,
    duration: Annotated[float | None, typer.Option(help="load mode: seconds")] = None,
    max_in_flight: Annotated[int, typer.Option(help="unacknowledged sends at most")] = 1000,
    requests_out: Annotated[
        Path | None, typer.Option(help="external judge phase 1: write requests (JSONL) here")
    ] = None,
    judgments_in: Annotated[
        Path | None,
        typer.Option(help="external judge phase 2: read judgments (JSONL); needs --run-id"),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="run id (phase 2: the run to complete)")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress output")] = False,
    drift_at: Annotated[
        int | None,
        typer.Option(help="from this round on, every persona judges with --drift's preferences"),
    ] = None,
    drift: Annotated[
        str,
        typer.Option(
            help=f"{' or '.join(DRIFT_MAPPINGS)}: take on the next persona's preferences, or "
            "turn one's own around (rule judge)"
        ),
    ] = DRIFT_MAPPINGS[0],
    delay: Annotated[
        str,
        typer.Option(
            help=f"feedback delay in stream seconds ({', '.join(DELAY_KINDS)}): none, "
            "fixed:S, uniform:LOW-HIGH or exp:MEAN; through the worker, on topics of its own"
        ),
    ] = "none",
    delay_lost: Annotated[
        float, typer.Option(help="share of the feedback that never arrives (its show expires)")
    ] = 0.0,
    round_s: Annotated[float, typer.Option(help="stream seconds between two rounds")] = 3600.0,
    reward_wait_s: Annotated[
        float | None,
        typer.Option(
            help="a show expires after this long without feedback "
            "(default: TIPSTREAM_REWARD_WAIT_S)"
        ),
    ] = None,
    default_reward: Annotated[
        float | None,
        typer.Option(
            help="learned from an expired show (default: TIPSTREAM_DEFAULT_REWARD; "
            "unset: not learned from)"
        ),
    ] = None,
) -> None:
    """Play synthetic personas onto the tip topics; record every judgment in sim_events."""
    settings = settings_or_exit()
    configure_logging(settings)
    policy = policy or settings.policy
    if fallback not in FALLBACKS:
        raise _fail(f"--fallback must be none or rule, not {fallback!r}", 2)
    try:
        two_phase = judge_class(judge).two_phase
    except UnknownJudgeError:
        raise _fail(f"--judge must be {JUDGE_NAMES_TEXT}, not {judge!r}", 2) from None
    if via is not None and via not in ("worker", "inprocess"):
        raise _fail(f"--via must be worker or inprocess, not {via!r}", 2)
    load = rate is not None or duration is not None
    if judgments_in is not None:
        if run_id is None:
            raise _fail("--judgments-in needs --run-id (the run phase 1 printed)", 2)
    elif two_phase and requests_out is None:
        raise _fail("--judge external needs --requests-out FILE (phase 1)", 2)
    if requests_out is not None and not two_phase:
        raise _fail("--requests-out goes with --judge external", 2)
    chosen_via: Via
    if via is not None:
        chosen_via = "worker" if via == "worker" else "inprocess"
    else:
        serves_it = not load and not two_phase and policy == settings.policy
        chosen_via = "worker" if serves_it else "inprocess"
    if exploration_floor is not None and chosen_via == "worker":
        raise _fail(
            "--exploration-floor is for an in-process policy; through the worker, set "
            "TIPSTREAM_EXPLORATION_FLOOR on the worker",
            2,
        )
    config = SimConfig(
        policy=policy,
        judge=judge,
        users=users,
        rounds=rounds,
        seed=seed,
        personas_path=personas,
        via=chosen_via,
        epsilon=settings.epsilon if epsilon is None else epsilon,
        exploration_floor=(
            settings.exploration_floor if exploration_floor is None else exploration_floor
        ),
        concurrency=concurrency,
        rate=rate,
        duration=duration,
        max_in_flight=max_in_flight,
        fallback=fallback,
        drift_at=drift_at,
        drift=drift,
        delay=delay,
        delay_lost=delay_lost,
        round_s=round_s,
        reward_wait_s=settings.reward_wait_s if reward_wait_s is None else reward_wait_s,
        default_reward=settings.default_reward if default_reward is None else default_reward,
    )
    try:
        # aiokafka logs each failed bootstrap itself; a failure ends in one line below.
        with aiokafka_silenced():
            result: dict[str, Any]
            if judgments_in is not None:
                assert run_id is not None
                result = run_async(
                    run_external_judgments(settings, str(judgments_in), run_id, quiet=quiet)
                )
                pending = result["pending"]
                for message in result["missing"]:
                    typer.echo(f"missing: {message}", err=True)
                typer.echo(
                    f"run {run_id}: {result['accepted']} judgments published, {pending} pending"
                    + ("" if pending else ": finished"),
                    err=True,
                )
                if "events" in result and not as_json:
                    print_summary(result)
            elif requests_out is not None:
                result = run_async(
                    run_external_requests(
                        settings, config, str(requests_out), run_id=run_id, quiet=quiet
                    )
                )
                typer.echo(
                    f"run {result['run_id']}: {result['requests']} requests written to "
                    f"{requests_out}; "
                    "it stays running until phase 2:\n"
                    f"  tipstream simulate --judgments-in FILE --run-id {result['run_id']}",
                    err=True,
                )
            elif load:
                load_result = run_async(run_load(settings, config, run_id=run_id, quiet=quiet))
                result = load_result.as_json()
                typer.echo(
                    f"run {result['run_id']}: {result['messages']} messages in "
                    f"{result['duration_s']:.1f} s = {result['achieved_rate']:.0f}/s "
                    f"(target {result['target_rate']:.0f}/s, peak in flight "
                    f"{result['peak_in_flight']}/{result['max_in_flight']}, "
                    f"behind {result['behind_messages']})",
                    err=not as_json,
                )
            else:
                result = run_async(run_closed_loop(settings, config, run_id=run_id, quiet=quiet))
                if not as_json:
                    print_summary(result)
    except SimUsageError as err:
        raise _fail(str(err), 2) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise _fail("cancelled; the run is marked cancelled", 1) from None
    except Exception as err:  # one line that names the broker, database or API, and why
        raise _fail(failure_line(err, settings), 1) from None
    if as_json:
        _emit_json(result)


def report_command(
    run_id: Annotated[str, typer.Argument(help="the run to report on (A)")],
    run_b: Annotated[
        str | None, typer.Argument(help="a second run: paired comparison B − A")
    ] = None,
    out: Annotated[Path, typer.Option(help="reports are written under OUT/<run_id>/")] = Path(
        "reports"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="last stdout line: the figures")] = False,
) -> None:
    """Tables with 95% intervals and the reward curve (PNG + HTML) for a run, or two compared."""
    settings = settings_or_exit()
    try:
        document = run_async(
            render_report(settings.database_url, run_id, run_b, out, quiet=as_json)
        )
    except (LookupError, ValueError) as err:
        raise _fail(str(err), 2) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise _fail("cancelled", 1) from None
    except Exception as err:
        raise _fail(failure_line(err, settings), 1) from None
    if as_json:
        _emit_json(document)


def demo_command(
    users: Annotated[int, typer.Option(help="users per persona")] = 2,
    rounds: Annotated[int, typer.Option(help="rounds per user")] = 200,
    seed: Annotated[int, typer.Option(help="the world both runs face")] = 7,
) -> None:
    """Start the stack and the worker, play the five personas against the serving policy
    (TIPSTREAM_POLICY) through the worker and against random in-process (same seed), and
    report the comparison."""
    settings_or_exit()
    try:
        code = run_demo(users=users, rounds=rounds, seed=seed)
    except KeyboardInterrupt:
        raise _fail("cancelled", 1) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
    app.command("report")(report_command)
    app.command("demo")(demo_command)
