"""Simulator load mode against raw aiokafka: how much of the broker's rate does the sim keep?

1. ``tipstream simulate --rate`` at an unreachable target (as fast as it can) for a few
   seconds: the policy in-process (a round of all users at once), the rule judge, events
   encoded straight to bytes, bounded in-flight sends.
2. The same run again (same seed: the same users, candidates and choices, so messages of the
   same sizes and keys, in the same order), this time keeping every message it produced, and
   those bytes produced with a bare ``AIOKafkaProducer`` of the same configuration (same
   in-flight bound), twice: one ``send`` per message (raw aiokafka, the issue's baseline),
   and as record batches per partition, the way load mode itself sends
   (``streams.record_batches``): the client's ceiling on this machine. The timed run keeps
   nothing: holding every message cost the simulator a quarter of its rate (its garbage
   collections walk them all), which a user's run never pays.
3. The ratios sim / raw and sim / raw batched, and the sim at a fixed, reachable target to
   show it keeps the pace.

Numbers are messages per second (a show and its feedback are two messages).
"""

from __future__ import annotations

import asyncio
import sys
import time

from streams.settings import Settings, get_settings
from streams.sim.config import SimConfig
from streams.sim.load import run_load
from streams.sim.publisher import Message, Publisher, make_producer

SIM_SECONDS = 5.0
PACED_RATE = 2000.0
PACED_SECONDS = 3.0
MAX_IN_FLIGHT = 1000
BURST = 512  # load mode's (streams.sim.load.produce_at_rate)


async def raw_produce(settings: Settings, messages: list[Message], *, batched: bool) -> float:
    """Messages per second of pre-encoded messages: plain aiokafka sends, one per message, or
    (``batched``) record batches per partition in bursts of 512, as load mode sends."""
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    try:
        publisher = Publisher(producer, MAX_IN_FLIGHT)
        start = time.perf_counter()
        if batched:
            for first in range(0, len(messages), BURST):
                await publisher.send_many(messages[first : first + BURST])
        else:
            for topic, key, value in messages:
                await publisher.send(topic, key, value)
        await publisher.drain()
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
    return len(messages) / elapsed


def _config(seed: int, rate: float, duration: float) -> SimConfig:
    return SimConfig(
        policy="egreedy-v1",
        users=20,
        seed=seed,
        rate=rate,
        duration=duration,
        max_in_flight=MAX_IN_FLIGHT,
    )


async def run_load_bench(settings: Settings) -> dict[str, float]:
    """Measure the simulator's load mode against raw production; returns the figures."""
    flat_out = await run_load(settings, _config(1, 1e9, SIM_SECONDS), quiet=True, record=False)
    captured: list[Message] = []
    await run_load(
        settings, _config(1, 1e9, SIM_SECONDS), quiet=True, record=False, capture=captured
    )
    raw_rate = await raw_produce(settings, captured, batched=False)
    raw_batched_rate = await raw_produce(settings, captured, batched=True)
    paced = await run_load(
        settings, _config(2, PACED_RATE, PACED_SECONDS), quiet=True, record=False
    )
    return {
        "sim_rate_msgs_per_s": flat_out.achieved_rate,
        "raw_rate_msgs_per_s": raw_rate,
        "sim_over_raw": flat_out.achieved_rate / raw_rate if raw_rate else 0.0,
        "raw_batched_rate_msgs_per_s": raw_batched_rate,
        "sim_over_raw_batched": flat_out.achieved_rate / raw_batched_rate,
        "messages": float(flat_out.messages),
        "sim_peak_in_flight": float(flat_out.peak_in_flight),
        "paced_target_msgs_per_s": PACED_RATE,
        "paced_achieved_msgs_per_s": paced.achieved_rate,
    }


def main() -> int:
    figures = asyncio.run(run_load_bench(get_settings()))
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:,.2f}")
    print(f"sim load mode keeps {figures['sim_over_raw']:.0%} of raw aiokafka's rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
