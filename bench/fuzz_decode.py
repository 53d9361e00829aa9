"""Fuzz the event decoder with atheris (libFuzzer): Kafka record bytes in, event or code out.

The worker's first step on every record is ``decode_shown`` / ``decode_feedback``
(schemas/events.py). For any input this checks that decoding never raises, that a failure
carries one of the decoder's dead-letter codes, and that an accepted event survives what
the worker and the sink do with it next: its epoch milliseconds back to a datetime, and
``encode`` decoding to the same event. Open-ended and coverage-guided, so a benchmark-style
tool and not a test (the property tests are tests/schemas and tests/worker). atheris is in
the ``bench`` dependency group, not a dependency:

    uv sync --group bench
    uv run --group bench python -m bench.fuzz_decode -runs=100000
    uv run --group bench python -m bench.fuzz_decode -max_total_time=300 some/corpus/dir

The first byte picks the topic (``S``: shown, anything else: feedback), the rest is the
value. Without a corpus directory it uses ``var/fuzz-decode-corpus``, seeded with valid
events, and adds what it finds there (libFuzzer's corpus), so later runs start further on.
libFuzzer options (``-runs``, ``-max_len``, ``-seed``) pass through; a crash writes the
input to ``crash-*`` in the current directory and exits non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from schemas import events

__all__ = ["check_one_input", "main"]


DEFAULT_CORPUS = Path("var/fuzz-decode-corpus")  # kept between runs; var/ is not in git
SEEDS = {
    "shown": b"S"
    + b'{"type":"TipShown","schemaVersion":1,"eventId":"e1","tipId":"t1","userId":"u1",'
    b'"servedAt":"2026-11-27T09:10:00.123Z","policy":"egreedy-v1","propensity":0.9,'
    b'"features":{"hourOfDay":9,"dayOfWeek":4,"priority":2,"isOverdue":false,'
    b'"taskAgeDays":3},"candidateCount":1,"candidates":[{"tipId":"t1","priority":2,'
    b'"isOverdue":false,"taskAgeDays":3}],"source":"sim","runId":"r1"}',
    "feedback": b"F"
    + b'{"type":"TipFeedback","schemaVersion":1,"eventId":"e2","tipId":"t1","userId":"u1",'
    b'"action":"done","dwellMs":30000,"occurredAt":"2026-11-27T09:11:00+01:00"}',
    "legacy": b"F"
    + b'{"type":"TipFeedback","schemaVersion":1,"eventId":"e3","tipId":"t1","userId":"u1",'
    b'"action":"helpful","occurredAt":"0001-01-01T00:00:00-01:00","extra":[1,{"a":null}]}',
}


def check_one_input(data: bytes) -> None:
    is_show = data[:1] == b"S"
    value = data[1:]
    decoded = events.decode_shown(value) if is_show else events.decode_feedback(value)
    if isinstance(decoded, events.DecodeError):
        if decoded.code not in events.DECODE_CODES:
            raise AssertionError(f"unknown code {decoded!r}")
        return
    if isinstance(decoded, events.TipShown):
        events.from_epoch_ms(decoded.served_at_ms)  # what joins and the sink compute from it
        again: events.TipShown | events.TipFeedback | events.DecodeError = events.decode_shown(
            events.encode(decoded), 1 << 30
        )
        stable = isinstance(again, events.TipShown) and again.served_at_ms == decoded.served_at_ms
    else:
        events.from_epoch_ms(decoded.occurred_at_ms)
        again = events.decode_feedback(events.encode(decoded), 1 << 30)
        stable = (
            isinstance(again, events.TipFeedback) and again.occurred_at_ms == decoded.occurred_at_ms
        )
    if (
        not stable
        or isinstance(again, events.DecodeError)
        or events.encode(again) != events.encode(decoded)
    ):
        raise AssertionError(f"encode does not round-trip: {decoded!r} -> {again!r}")


def main() -> int:
    args = list(sys.argv)
    if not any(Path(arg).is_dir() for arg in args[1:] if not arg.startswith("-")):
        DEFAULT_CORPUS.mkdir(parents=True, exist_ok=True)
        for name, content in SEEDS.items():
            (DEFAULT_CORPUS / f"seed-{name}").write_bytes(content)
        args.append(str(DEFAULT_CORPUS))
    atheris.Setup(args, check_one_input)
    atheris.Fuzz()  # libFuzzer exits the process itself
    return 0


if __name__ == "__main__":
    sys.exit(main())
