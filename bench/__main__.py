"""``python -m bench [worker|sim|all] [--profile DIR] [--repeat N]``: measured rates and their
ratios, one run, local stack.

Each figure is compared with a baseline measured in the same run (machines here are
noisy); results are printed and appended as a JSON line to ``var/bench-results.jsonl``.
``--profile DIR`` samples each tipstream worker with py-spy (``uv sync --group bench``) into
``DIR/worker-<policy>.txt`` (py-spy's raw format: one stack and its sample count per line).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.report import print_figures
from bench.sim_load import run_load_bench
from bench.worker_throughput import run_worker_bench
from streams.dev.devstack import ensure_up
from streams.settings import get_settings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", default="all", choices=("worker", "sim", "all"))
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run quixstreams exactly-once and the default worker N times by turns and print "
        "the median of their ratios (worker only)",
    )
    args = parser.parse_args()
    which = args.which
    ensure_up()
    settings = get_settings()
    results: dict[str, dict[str, float]] = {}
    if which in ("worker", "all"):
        bench = run_worker_bench(settings, profile_dir=args.profile, repeat=args.repeat)
        results["worker"] = asyncio.run(bench)
        title = "worker throughput (events/s; ratios against the same run)"
        print_figures(title, results["worker"])
    if which in ("sim", "all"):
        results["sim"] = asyncio.run(run_load_bench(settings))
        print_figures("simulator load mode (messages/s)", results["sim"])
    out = Path("var/bench-results.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("ab") as f:
        f.write(orjson.dumps({"at": datetime.now(UTC).isoformat(), **results}) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
