"""Coverage of ``tipstream evaluate``'s doubly robust 95% interval on simulation runs.

For each seed: one real simulation run (``tipstream simulate --judge rule --via inprocess``,
Kafka + sim_events) logged by ``--logging`` (default egreedy-v1, the former production
policy), then ``bandit.ope.evaluation`` on that run for each target. The rule judge knows the
target's true value on the same contexts: Σ_k π_k E[r_k] with π the replayed target's
probabilities. Counts, per target, the seeds whose DR interval contains it (issue 4's target:
≥ 18 of 20). A statistical property, hence a benchmark and not a pass/fail test.

    uv run python -m bench.ope_coverage --seeds 20 --users 2 --rounds 100
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import orjson

from bandit.ope.evaluation import evaluate_log
from streams.analysis.load import load_run_log
from streams.settings import get_settings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--users", type=int, default=2, help="per persona")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--logging", default="egreedy-v1")
    ap.add_argument(
        "--floor", type=float, default=0.0, help="the logger's exploration floor (uniform slice)"
    )
    ap.add_argument("--targets", default="egreedy-v2,pooled-v1,random,oracle")
    ap.add_argument("--personas", default=None)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    url = get_settings().database_url
    covered = dict.fromkeys(targets, 0)
    started = time.monotonic()
    for i in range(args.seeds):
        seed = args.first_seed + i
        cmd = [
            sys.executable, "-m", "streams.cli", "simulate", "--policy", args.logging,
            "--judge", "rule", "--via", "inprocess", "--users", str(args.users),
            "--rounds", str(args.rounds), "--seed", str(seed), "--json", "--quiet",
        ]  # fmt: skip
        if args.personas:
            cmd += ["--personas", args.personas]
        if args.floor:
            cmd += ["--exploration-floor", str(args.floor)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        run_id = orjson.loads(done.stdout.strip().splitlines()[-1])["run_id"]
        ev = evaluate_log(
            asyncio.run(load_run_log(url, run_id)), targets, n_boot=args.n_boot, seed=i
        )
        cells = []
        for p in ev.policies:
            assert p.true_value is not None
            hit = p.dr.contains(p.true_value)
            covered[p.policy] += hit
            cells.append(
                f"{p.policy} true {p.true_value:.3f} DR {p.dr.value:.3f} "
                f"[{p.dr.low:.3f}, {p.dr.high:.3f}] {'ok' if hit else 'MISS'}"
            )
        print(f"seed {seed} {run_id} ({ev.rows} rows): " + "; ".join(cells), flush=True)
    floor = f" with exploration floor {args.floor}" if args.floor else ""
    print(f"\nlogging {args.logging}{floor}, {args.users} users/persona × {args.rounds} rounds, "
          f"{args.seeds} seeds, {time.monotonic() - started:.0f} s")  # fmt: skip
    for name, count in covered.items():
        print(f"DR 95% interval contains the true value: {name}: {count}/{args.seeds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
