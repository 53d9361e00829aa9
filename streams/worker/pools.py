"""The worker's pooled priors: one per policy and run, summed over the partitions it owns.

A pooled policy's shared state is derived from its users' states (``bandit.pool``): the
exact sum of each user's contribution. So the worker never stores it. It keeps, per
(policy, run, partition), the sum over that partition's users, and per (policy, run) the
sum of those parts, which is what the policy learns against and ``/score`` serves. A part
is rebuilt from the table when the worker takes a partition (start, restart, rebalance) and
dropped when it loses one, so the pool always equals what the exactly-once user records say.
The same class counts each run's applied feedback (Σ pulls) for the simulator's read-your-
writes barrier (``min_run_updates`` on ``/score``).

>>> from bandit.registry import make_policy
>>> from bandit.base import Moment, Task
>>> policy = make_policy("pooled-v1")
>>> pools = Pools([policy])
>>> alice = policy.new_user()
>>> view = pools.view(policy, "run-1", 3)
>>> policy.update(alice, view, Moment(9, 1), Task("t", 2, False, 1.0), 1.0)
>>> pools.total(policy, "run-1").pulls.tolist(), pools.parts_of(3)
([1], 1)
>>> pools.drop_partition(3)
>>> pools.total(policy, "run-1").pulls.tolist()
[0]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from bandit.base import FloatArray, Policy
from bandit.pool import Contribution, PoolDelta, PoolStats

__all__ = ["PoolView", "Pools"]

_Slot = tuple[str, str | None]  # (policy, run id or None for production)


class PoolView:
    """One partition's part of a (policy, run) pool, as the policy sees it: it learns
    against the whole pool, and a user's change goes into both the part and the whole."""

    __slots__ = ("part", "total")

    def __init__(self, total: PoolStats, part: PoolStats) -> None:
        self.total = total
        self.part = part

    def replace(self, old: Contribution | None, new: Contribution | None) -> None:
        delta = PoolDelta.between(old, new)  # computed once for both sums
        if delta is not None:
            self.apply(delta)

    def apply(self, delta: PoolDelta) -> None:
        self.part.apply(delta)
        self.total.apply(delta)

    @property
    def whole(self) -> PoolStats:
        return self.total

    def thetas(self, lam: float, priors: FloatArray) -> FloatArray:
        return self.total.thetas(lam, priors)


def _new_pool(policy: Policy) -> PoolStats:
    pool = policy.new_shared()
    if not isinstance(pool, PoolStats):
        raise TypeError(f"{policy.name} pools a {type(pool).__name__}, not PoolStats")
    return pool


class Pools:
    """Pooled priors per (policy, run), as the sum of per-partition parts."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.pooled = [p for p in policies if p.new_shared() is not None]
        self._totals: dict[_Slot, PoolStats] = {}
        self._parts: dict[int, dict[_Slot, PoolStats]] = defaultdict(dict)
        self._applied: dict[int, dict[str, int]] = defaultdict(dict)  # partition -> run -> n

    def total(self, policy: Policy, run_id: str | None) -> PoolStats:
        """The (policy, run) pool over every partition this worker owns (empty if none)."""
        slot = (policy.name, run_id)
        total = self._totals.get(slot)
        if total is None:
            total = self._totals[slot] = _new_pool(policy)
        return total

    def view(self, policy: Policy, run_id: str | None, partition: int) -> PoolView:
        slot = (policy.name, run_id)
        parts = self._parts[partition]
        part = parts.get(slot)
        if part is None:
            part = parts[slot] = _new_pool(policy)
        return PoolView(self.total(policy, run_id), part)

    def views(self, run_id: str | None, partition: int) -> dict[str, Any]:
        """Every pooled policy's view, by policy name (what the joiner learns against)."""
        return {p.name: self.view(p, run_id, partition) for p in self.pooled}

    def learn_across(
        self,
        policy: Policy,
        run_id: str | None,
        members: Sequence[tuple[int, Any]],
        learn: Callable[[PoolStats], None],
    ) -> None:
        """``learn`` (one call for users of one or several partitions, ``members`` being each
        user's partition and state) against the whole (policy, run) pool, which it updates;
        then each partition's part gets its own users' change, so the whole stays the exact
        sum of its parts. If ``learn`` raises, the whole goes back to that sum (the parts
        are untouched) and the caller rebuilds the users' partitions from their records."""
        total = self.total(policy, run_id)
        olds = [policy.pool_contribution(state) for _, state in members]
        try:
            learn(total)
        except BaseException:
            self._resum((policy.name, run_id))
            raise
        by_partition: dict[int, list[int]] = {}
        for i, (partition, _) in enumerate(members):
            by_partition.setdefault(partition, []).append(i)
        for partition, rows in by_partition.items():
            part = self.view(policy, run_id, partition).part
            news = [policy.pool_contribution(members[i][1]) for i in rows]
            part.apply(PoolDelta.summed([olds[i] for i in rows], news, part))

    def _resum(self, slot: _Slot) -> None:
        """The whole set back to the sum of its parts, in place (views hold it)."""
        total = self._totals[slot]
        total.stats[...], total.pulls[...], total.users = 0, 0, 0
        for parts in self._parts.values():
            if slot in parts:
                total.merge(parts[slot])

    def add_user(self, run_id: str | None, partition: int, states: dict[str, Any]) -> None:
        """Add one stored user's contributions (while rebuilding a partition)."""
        for policy in self.pooled:
            state = states.get(policy.name)
            if state is not None:
                self.view(policy, run_id, partition).replace(None, policy.pool_contribution(state))

    def drop_partition(self, partition: int) -> None:
        """Forget a partition's parts (lost, or about to be rebuilt): exact subtraction."""
        for slot, part in self._parts.pop(partition, {}).items():
            self._totals[slot].merge(part, sign=-1)
        self._applied.pop(partition, None)

    def runs(self) -> set[str]:
        """The simulated runs with state here (a pool, or feedback learned from)."""
        pooled = {run for _, run in self._totals if run is not None}
        return pooled.union(*(runs.keys() for runs in self._applied.values()))

    def drop_run(self, run_id: str) -> None:
        """Forget a simulated run's pools and counts (its users' records are gone)."""
        for slot in [slot for slot in self._totals if slot[1] == run_id]:
            del self._totals[slot]
            for parts in self._parts.values():
                parts.pop(slot, None)
        for runs in self._applied.values():
            runs.pop(run_id, None)

    def parts_of(self, partition: int) -> int:
        return len(self._parts.get(partition, {}))

    # -- the read-your-writes barrier --------------------------------------------------

    def count_applied(self, run_id: str, partition: int, delta: int) -> None:
        runs = self._applied[partition]
        runs[run_id] = runs.get(run_id, 0) + delta

    def applied(self, run_id: str) -> int:
        """Feedbacks of the run learned from, over the partitions this worker owns."""
        return sum(runs.get(run_id, 0) for runs in self._applied.values())
