"""``python -m bench.liveness``: a long closed loop through one worker, watching for rebalances.

A lone worker must keep its group however busy it is: its consumer heartbeats from faust's
own thread, and the session timeout is Kafka's default (45 s). This runs the simulator
through a real worker (fresh topics, the served policy, ``--users`` per persona, blocks of
``--concurrency``) for ``--minutes``, back to back, as fast as the worker learns, beside
load-mode traffic if asked (``--load-rate`` messages/s: the worker is busy, not waiting). Every
second it asks ``/healthz``; any answer other than ``ok`` is an outage (``starting`` is a
rebalance), and reads the worker's resident memory (``VmRSS``) to show whether it grows. At the
end it counts the worker log's lines about lost sessions and rebalances.

    uv run python -m bench.liveness --minutes 10 --load-rate 1200 --load-users 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import time
from pathlib import Path

import aiohttp

from bench.worker_throughput import create_topics
from streams.dev.devstack import ensure_up
from streams.dev.worker_process import WorkerProcess
from streams.settings import get_settings
from streams.sim.closed_loop import run_closed_loop
from streams.sim.config import SimConfig, SimFailedError
from streams.sim.load import run_load

_TROUBLE = re.compile(r"session expired|Heartbeat failed|rebalanc", re.IGNORECASE)


def _rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


async def _watch(
    url: str,
    pid: int,
    outages: list[tuple[float, str]],
    rss: list[tuple[float, float]],
    stop: asyncio.Event,
) -> int:
    samples = 0
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while not stop.is_set():
            try:
                async with http.get(url + "/healthz") as response:
                    body = await response.json(content_type=None)
                    status = str(body.get("status"))
            except (aiohttp.ClientError, TimeoutError) as err:
                status = f"no answer ({type(err).__name__})"
            samples += 1
            if status != "ok":
                outages.append((time.monotonic(), status))
            mib = _rss_mib(pid)
            if mib is not None:
                rss.append((time.monotonic() - started, mib))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    return samples


async def run(args: argparse.Namespace) -> int:
    base = get_settings()
    settings = await create_topics(base)
    # Kafka's default session timeout, not the 6 s the test workers use.
    worker = WorkerProcess(settings, loglevel="info", session_timeout_s=base.session_timeout_s)
    async with worker:
        stop, outages, rss = asyncio.Event(), [], []
        assert worker.process is not None
        watcher = asyncio.create_task(_watch(worker.url, worker.process.pid, outages, rss, stop))
        load = None
        if args.load_rate:
            # Open-loop traffic beside the closed loop, so the worker is busy, not waiting.
            background = SimConfig(
                policy="random",
                users=args.load_users,
                rate=args.load_rate,
                duration=args.minutes * 60,
            )
            load = asyncio.create_task(run_load(settings, background, quiet=True, record=False))
        started = time.monotonic()
        judgments = runs = 0
        failure = ""
        while time.monotonic() - started < args.minutes * 60:
            config = SimConfig(
                policy=base.policy,
                via="worker",
                users=args.users,
                rounds=args.rounds,
                seed=runs,
                concurrency=args.concurrency,
                epsilon=base.epsilon,
            )
            try:
                summary = await run_closed_loop(worker.settings, config, quiet=True)
            except SimFailedError as err:  # still report what was measured until then
                failure = f"the closed loop failed after {time.monotonic() - started:.0f} s: {err}"
                break
            judgments += int(summary["events"])
            runs += 1
            elapsed = time.monotonic() - started
            print(
                f"liveness: {elapsed:5.0f} s, {runs} runs, {judgments} judgments "
                f"({judgments / elapsed:.0f}/s), outages so far {len(outages)}",
                flush=True,
            )
        elapsed = time.monotonic() - started
        loaded = ""
        if load is not None and failure:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError, SimFailedError):
                await load
        elif load is not None:
            result = await load
            loaded = (
                f"; beside it, load mode sent {result.messages} messages at {args.load_rate:.0f}/s"
            )
        stop.set()
        samples = await watcher
    trouble = [line for line in worker.log_path.read_text(errors="replace").splitlines()
               if _TROUBLE.search(line)]  # fmt: skip
    print(
        f"liveness: {elapsed:.0f} s through one worker, {judgments} judgments "
        f"({judgments / elapsed:.0f}/s, {2 * judgments / elapsed:.0f} events/s), session "
        f"timeout {base.session_timeout_s:.0f} s; /healthz not ok in {len(outages)} of "
        f"{samples} samples; log lines about sessions or rebalances after start: "
        f"{len(trouble)}{loaded}"
    )
    if rss:
        # The peak resident memory of each minute: flat means no growth.
        by_minute: dict[int, float] = {}
        for at, mib in rss:
            by_minute[int(at // 60)] = max(by_minute.get(int(at // 60), 0.0), mib)
        print(
            "liveness: worker RSS, peak MiB per minute: "
            + ", ".join(f"{mib:.0f}" for _, mib in sorted(by_minute.items()))
        )
    for line in trouble[:20]:
        print("  " + line[:200])
    if failure:
        print(f"liveness: FAILED: {failure}")
    return 0 if not outages and not failure else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=8, help="users per persona")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument(
        "--load-rate", type=float, default=0.0, help="also send load-mode messages/s beside it"
    )
    parser.add_argument(
        "--load-users",
        type=int,
        default=2000,
        help="load-mode users per persona: many, so each user's record stays the size of a "
        "week of tips (a few users at a high rate grow records of hundreds of guards)",
    )
    args = parser.parse_args()
    ensure_up()
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
