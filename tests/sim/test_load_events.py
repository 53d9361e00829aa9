"""Load mode's generation in memory (no Kafka): its fast event bytes are the models' bytes,
a show always comes with its feedback, and every policy plays."""

from __future__ import annotations

import itertools

import jsonschema
import numpy as np
import orjson
import pytest

from bandit.base import Moment, Task
from judges.base import ACTIONS, Judgment
from judges.registry import make_judge
from judges.rule import RuleJudge
from judges.world import World, WorldConfig
from schemas.events import TipFeedback, TipShown, decode_feedback, decode_shown, encode
from schemas.jsonschema_export import OUT_DIR
from streams.settings import Settings
from streams.sim.choosers import InProcessChooser, Picked
from streams.sim.config import SimConfig, SimUsageError, SimUser, make_users, resolve_personas
from streams.sim.events import RunEvents
from streams.sim.load import _load_events

SETTINGS = Settings()


def _schema(name: str) -> dict:
    return orjson.loads((OUT_DIR / f"{name}.v1.schema.json").read_bytes())


def test_fast_values_are_the_bytes_of_the_models() -> None:
    events = RunEvents.of(SETTINGS, "run-1")
    rng = np.random.default_rng(0)
    personas = resolve_personas(None)
    ages = [0.0, 1e-7, 0.1, 1 / 3, 19.999999999, 1e-320, 123456.789]
    far = [0, 1, -1, 999, 253402298000999, -62135596800000, 1795770600123]
    for n in range(400):
        user = SimUser(personas[n % len(personas)], n, f"sim-user-{n}")
        k = int(rng.integers(1, 9))
        tasks = [
            Task(f"tip-{n}-{j}", int(rng.integers(1, 5)), bool(rng.random() < 0.3),
                 float(ages[n % len(ages)] if j == 0 else rng.random() * 20.0))
            for j in range(k)
        ]  # fmt: skip
        chosen = int(rng.integers(k))
        propensity = float(rng.choice([1.0, 0.0125, rng.random() or 0.5]))
        served_at = far[n % len(far)] if n < len(far) else int(rng.integers(0, 2**42))
        action = ACTIONS[n % 3]
        dwell = int(rng.integers(0, 1_800_001))
        moment = Moment(int(rng.integers(24)), int(rng.integers(7)))
        picked = Picked(chosen, propensity, False, 0.0, None)
        shown = events.shown(user, n, "egreedy-v1", moment, tasks, picked, served_at)
        feedback = events.feedback(
            user, n, tasks[chosen], Judgment(action, dwell, 0.0, None), served_at
        )
        fast_shown = events.shown_value(
            user_id=user.user_id, round_=n, policy="egreedy-v1", hour=moment.hour_of_day,
            day=moment.day_of_week, tip_ids=[t.tip_id for t in tasks],
            priorities=[t.priority for t in tasks], overdue=[t.is_overdue for t in tasks],
            ages=[t.task_age_days for t in tasks], chosen=chosen, propensity=propensity,
            served_at_ms=served_at,
        )  # fmt: skip
        fast_feedback = events.feedback_value(
            user_id=user.user_id, round_=n, tip_id=tasks[chosen].tip_id, action=action,
            dwell_ms=dwell, served_at_ms=served_at,
        )  # fmt: skip
        assert fast_shown == encode(shown)
        assert fast_feedback == encode(feedback)
        if n % 20 == 0:
            jsonschema.validate(orjson.loads(fast_shown), _schema("TipShown"))
            jsonschema.validate(orjson.loads(fast_feedback), _schema("TipFeedback"))


def _play(policy: str, users: int, judgments: int, candidates: int = 8) -> tuple[list, list]:
    config = SimConfig(policy=policy, users=users, seed=3)
    personas = resolve_personas(config.personas_path)
    chooser = InProcessChooser.for_run(config, personas)
    world = World(config.seed, WorldConfig(candidates=candidates))
    sim_users = make_users(world, personas, users)
    for user in sim_users:
        user.state = chooser.new_user_state(user.persona)
    judge = make_judge("rule", llm_model=SETTINGS.llm_model)
    assert isinstance(judge, RuleJudge)
    tally = [0.0, 0.0]
    events = RunEvents.of(SETTINGS, "run-load")
    stream = _load_events(events, world, sim_users, chooser, judge, tally)
    pairs = list(itertools.islice(stream, judgments))
    assert tally[0] == judgments
    return pairs, tally


@pytest.mark.parametrize(
    ("policy", "candidates"),
    [("egreedy-v1", 8), ("egreedy-v2", 8), ("random", 1), ("oracle", 3), ("pooledmix-v3", 4)],
)
def test_every_judgment_is_a_valid_show_and_its_feedback(policy: str, candidates: int) -> None:
    users = 2
    per_round = users * len(resolve_personas(None))
    pairs, tally = _play(policy, users, 3 * per_round + 1, candidates)
    for n, pair in enumerate(pairs):
        assert [topic for topic, _, _ in pair] == [SETTINGS.topic_shown, SETTINGS.topic_feedback]
        (_, key, shown_bytes), (_, feedback_key, feedback_bytes) = pair
        shown, feedback = decode_shown(shown_bytes), decode_feedback(feedback_bytes)
        assert isinstance(shown, TipShown)
        assert isinstance(feedback, TipFeedback)
        assert encode(shown) == shown_bytes  # what the models write, byte for byte
        assert encode(feedback) == feedback_bytes
        assert key == feedback_key == shown.user_id.encode()
        assert shown.event_id == f"run-load/{shown.user_id}/{n // per_round}/s"
        assert feedback.tip_id == shown.tip_id
        assert shown.candidate_count == candidates
        assert shown.policy == policy
        assert feedback.occurred_at_ms == shown.served_at_ms + (feedback.dwell_ms or 0)
    assert len({p[0][1] for p in pairs[:per_round]}) == per_round  # each user once a round
    assert tally[1] != 0.0


def test_a_policy_name_the_worker_would_refuse_stops_the_run() -> None:
    config = SimConfig(policy="random", users=1, seed=3)
    personas = resolve_personas(config.personas_path)
    chooser = InProcessChooser.for_run(config, personas)
    chooser.name = "bad\x00name"
    world = config.make_world(personas)
    users = make_users(world, personas, 1)
    for user in users:
        user.state = chooser.new_user_state(user.persona)
    judge = make_judge("rule", llm_model=SETTINGS.llm_model)
    assert isinstance(judge, RuleJudge)
    stream = _load_events(RunEvents.of(SETTINGS, "run-x"), world, users, chooser, judge)
    with pytest.raises(SimUsageError, match="invalid"):
        next(stream)
