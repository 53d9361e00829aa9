"""The console's form starts a run: ``tipstream simulate`` as a child process.

A child process, not a task in the console's own loop: the run is exactly what the command
line runs (its checks, its SIGTERM handling that marks the run ``cancelled``), a crash or a
slow judge cannot stall the pages, and its failure is kept. The child gets the console's own
settings (``child_env``) and a run id chosen here (``--run-id``), so the page can follow it
before its ``sim_runs`` row exists. What the child prints on stderr is kept (the last
``STDERR_KEEP`` characters): a run that fails before it has a row (a bad persona file, the
broker down) still shows why, and a failed row shows the child's last words beside its
``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bandit.registry import KNOWN_TYPES_NAME, ORACLE_NAME, POLICY_NAMES
from judges.personas import PERSONA_SETS
from judges.registry import JUDGE_NAMES, judge_class
from streams.dev.worker_process import child_env
from streams.settings import Settings
from streams.sim.config import SimConfig, SimUsageError, new_run_id, resolve_personas

__all__ = [
    "FORM_JUDGES",
    "FORM_POLICIES",
    "MAX_ROUNDS",
    "MAX_USERS",
    "STDERR_KEEP",
    "VIAS",
    "Launch",
    "LaunchFormError",
    "LaunchRequest",
    "Launcher",
    "parse_launch_form",
    "simulate_argv",
]

# The form plays closed-loop runs: the external judge's two phases need a person in between.
# The served policies and the in-process references (the known-types ceiling, the oracle).
FORM_POLICIES: tuple[str, ...] = (
    *POLICY_NAMES,
    *(n for n in (KNOWN_TYPES_NAME, ORACLE_NAME) if n not in POLICY_NAMES),
)
FORM_JUDGES: tuple[str, ...] = tuple(n for n in JUDGE_NAMES if not judge_class(n).two_phase)
VIAS: tuple[str, ...] = ("auto", "inprocess", "worker")
MAX_USERS = 1000
MAX_ROUNDS = 100_000
STDERR_KEEP = 4000


class LaunchFormError(ValueError):
    """A form the console refuses (400): the message names the field and why."""


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """What the form asks for: one closed-loop ``tipstream simulate`` run."""

    policy: str
    personas: str
    users: int
    rounds: int
    seed: int
    judge: str
    via: str = "auto"  # auto: the simulator's own choice (the worker for the policy it serves)

    def as_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "personas": self.personas,
            "users": self.users,
            "rounds": self.rounds,
            "seed": self.seed,
            "judge": self.judge,
            "via": self.via,
        }


def _integer(form: Mapping[str, str], name: str, low: int, high: int, default: int) -> int:
    text = str(form.get(name, "")).strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise LaunchFormError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise LaunchFormError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _choice(form: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = str(form.get(name, "")).strip() or default
    if value not in choices:
        raise LaunchFormError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def parse_launch_form(form: Mapping[str, str], settings: Settings) -> LaunchRequest:
    """The form's fields checked (``LaunchFormError`` names the first bad one), then the
    simulator's own checks of the combination (``SimConfig.validate``).

    Persona sets are picked by name only: a page must not read paths on the console's host.
    """
    request = LaunchRequest(
        policy=_choice(form, "policy", FORM_POLICIES, settings.policy),
        personas=_choice(form, "personas", tuple(PERSONA_SETS), "standard"),
        users=_integer(form, "users", 1, MAX_USERS, 1),
        rounds=_integer(form, "rounds", 1, MAX_ROUNDS, 50),
        seed=_integer(form, "seed", 0, 2**31 - 1, 0),
        judge=_choice(form, "judge", FORM_JUDGES, "rule"),
        via=_choice(form, "via", VIAS, "auto"),
    )
    via = request.via
    if via == "auto":
        via = "worker" if request.policy == settings.policy else "inprocess"
    config = SimConfig(
        policy=request.policy,
        judge=request.judge,
        users=request.users,
        rounds=request.rounds,
        seed=request.seed,
        personas_path=request.personas,
        via="worker" if via == "worker" else "inprocess",
        epsilon=settings.epsilon,
    )
    try:
        config.validate()
        resolve_personas(request.personas)
    except SimUsageError as err:
        raise LaunchFormError(str(err)) from None
    return request


def simulate_argv(request: LaunchRequest, run_id: str) -> list[str]:
    """The child's command line: this interpreter's ``tipstream simulate``."""
    argv = [
        sys.executable,
        "-m",
        "streams.cli",
        "simulate",
        "--run-id",
        run_id,
        "--policy",
        request.policy,
        "--personas",
        request.personas,
        "--users",
        str(request.users),
        "--rounds",
        str(request.rounds),
        "--seed",
        str(request.seed),
        "--judge",
        request.judge,
        "--quiet",
    ]
    if request.via != "auto":
        argv += ["--via", request.via]
    return argv


LaunchState = Literal["running", "exited", "failed"]


@dataclass(slots=True)
class Launch:
    """One child the console started, and what became of it."""

    run_id: str
    request: LaunchRequest
    started_at: float = field(default_factory=time.time)
    state: LaunchState = "running"
    returncode: int | None = None
    stderr: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "request": self.request.as_json(),
            "state": self.state,
            "returncode": self.returncode,
            "stderr": self.stderr,
        }


class Launcher:
    """Starts ``tipstream simulate`` children and remembers them (newest last)."""

    def __init__(self, settings: Settings, *, keep: int = 100) -> None:
        self.settings = settings
        self.keep = keep
        self.launches: dict[str, Launch] = {}
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}

    async def start(self, request: LaunchRequest) -> Launch:
        """Start the child; a child that cannot even start (``OSError``) is a failed launch."""
        run_id = new_run_id()
        launch = Launch(run_id=run_id, request=request)
        self._remember(launch)
        try:
            child = await asyncio.create_subprocess_exec(
                *simulate_argv(request, run_id),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(self.settings),
            )
        except OSError as err:
            launch.state, launch.stderr = "failed", f"could not start tipstream simulate: {err}"
            return launch
        self._children[run_id] = child
        self._watchers[run_id] = asyncio.create_task(self._watch(launch, child))
        return launch

    def _remember(self, launch: Launch) -> None:
        self.launches[launch.run_id] = launch
        while len(self.launches) > self.keep:
            oldest = next(iter(self.launches))
            if self.launches[oldest].state == "running":
                break
            del self.launches[oldest]
            self._watchers.pop(oldest, None)

    async def _watch(self, launch: Launch, child: asyncio.subprocess.Process) -> None:
        assert child.stderr is not None
        kept = b""
        while chunk := await child.stderr.read(4096):
            kept = (kept + chunk)[-STDERR_KEEP:]
            launch.stderr = kept.decode(errors="replace")
        launch.returncode = await child.wait()
        launch.state = "exited" if launch.returncode == 0 else "failed"
        self._children.pop(launch.run_id, None)

    def get(self, run_id: str) -> Launch | None:
        return self.launches.get(run_id)

    async def wait(self, run_id: str) -> Launch | None:
        """Until the child of ``run_id`` has exited and its stderr is read."""
        watcher = self._watchers.get(run_id)
        if watcher is not None:
            await asyncio.shield(watcher)
        return self.get(run_id)

    async def close(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the children still running (each marks its run ``cancelled``) and wait."""
        for child in list(self._children.values()):
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
        for child in list(self._children.values()):
            try:
                await asyncio.wait_for(child.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        for watcher in list(self._watchers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(watcher, 5.0)
