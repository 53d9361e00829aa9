"""``tipstream demo``: the whole loop on one machine, in a few minutes.

1. the dev stack (``tipstream dev up``: Kafka + PostgreSQL on loopback);
2. the worker (``tipstream worker``) as a child process, ready when ``/healthz`` answers;
3. the five standard personas against ``egreedy-v1`` through the worker (rule judge);
4. the same world (same seed) against ``random`` in-process;
5. the report of both and their paired comparison (tables, PNG, HTML); the worker is stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from streams.settings import Settings, get_settings


def _free_port(preferred: int, host: str) -> int:
    with socket.socket() as sock:
        try:
            sock.bind((host, preferred))
            return preferred
        except OSError:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])


class DemoWorker:
    """``tipstream worker`` in a child process with ``settings``; logs to a file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIPSTREAM_")}
        for name, value in self.settings.model_dump().items():
            if value is None:
                continue
            secret = getattr(value, "get_secret_value", None)
            env[f"TIPSTREAM_{name.upper()}"] = str(secret() if secret else value)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warn"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"worker exited with {self.process.returncode}; see {self.log_path}"
                    )
                try:
                    async with http.get(self.url + "/healthz") as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"worker not ready after {timeout_s:.0f} s; see {self.log_path}"
                    )
                await asyncio.sleep(0.25)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


async def _demo(settings: Settings, *, users: int, rounds: int, seed: int, out: Path) -> None:
    from streams import simulate as sim  # noqa: PLC0415
    from streams.sim_cli import _print_summary, render_report  # noqa: PLC0415

    common = {"judge": "rule", "users": users, "rounds": rounds, "seed": seed}
    print(f"demo: egreedy-v1 through the worker, {users} users x 5 personas x {rounds} rounds")
    learned = await sim.run_closed_loop(
        settings,
        sim.SimConfig(policy="egreedy-v1", via="worker", epsilon=settings.epsilon, **common),  # type: ignore[arg-type]
    )
    _print_summary(learned)
    print("demo: random in-process, same seed (the same users, moments and candidates)")
    baseline = await sim.run_closed_loop(
        settings,
        sim.SimConfig(policy="random", via="inprocess", **common),  # type: ignore[arg-type]
    )
    _print_summary(baseline)
    print("demo: report, A = random, B = egreedy-v1")
    document = await render_report(
        settings.database_url, baseline["run_id"], learned["run_id"], out
    )
    print(f"\ndemo: the picture is {document['comparison_png']}")
    print(f"demo: the page is {document['comparison_html']}")


def run_demo(
    *, users: int = 2, rounds: int = 200, seed: int = 7, out: Path = Path("reports")
) -> int:
    from streams import devstack  # noqa: PLC0415

    base = get_settings()
    try:
        for line in devstack.ensure_up(quiet=True):
            print(f"demo: {line}")
    except devstack.DevStackError as err:
        print(f"error: the dev stack did not start: {err}", file=sys.stderr)
        return 1
    settings = base.model_copy(
        update={
            "web_port": _free_port(base.web_port, base.web_host),
            "data_dir": tempfile.mkdtemp(prefix="tipstream-demo-worker-"),
            "policy": "egreedy-v1",
        }
    )
    worker = DemoWorker(settings, Path(settings.data_dir) / "worker.log")
    print(f"demo: starting the worker on {worker.url} (log {worker.log_path})")
    worker.start()
    try:
        asyncio.run(
            _wait_then_demo(worker, settings, users=users, rounds=rounds, seed=seed, out=out)
        )
    except Exception as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        code = worker.stop()
        print(f"demo: worker stopped (exit {code})")
    return 0


async def _wait_then_demo(
    worker: DemoWorker, settings: Settings, *, users: int, rounds: int, seed: int, out: Path
) -> None:
    await worker.wait_ready()
    print("demo: worker ready")
    await _demo(settings, users=users, rounds=rounds, seed=seed, out=out)
