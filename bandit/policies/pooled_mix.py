"""The pooled-mixture family: a per-user ridge shrunk towards the closest of several pooled
models ("types"), or towards one learned population prior N(μ, Σ) (the gaussian prior,
pooledmix-v3's since 6 Dec). Presets by wire name: ``pooledmix-v1`` and ``pooledmix-v3``.

``pooled-v1`` shrinks every user towards one model pooled over everyone; when users differ
in kind (one persona likes high priority, another low) that single prior is wrong for some
of them, and 20 noisy rewards are too few to pull away from it. Here the shared state holds
M pooled ridge models, each started from its own prior mean (a small grid over the priority
and overdue coefficients, so the types can tell users apart from the start).

- A user's type: the one whose θ_m explains the user's rewards best, i.e. the smallest
  Σ (r − θ_m·x)² over the user's own data (``Ridge.sse``, O(d²) from sufficient statistics);
  ties go to the first. The user's model is θ_u = (Λ_u + A_u)⁻¹ (Λ_u θ_type + b_u).
- Learning (soft EM, as derived state): before each reward, the user's posterior over the
  types, softmax(−SSE_m / 2σ²), is computed from its earlier data against the types of
  the *other* users; the user keeps the mean of these posteriors. Each type's statistics
  are the sum over users of that mean (as k/256) × the user's own data statistics
  (``bandit.pool``). So the pool is an exact function of the users' states: the same in
  any order and across partitions, and rebuilt from the records after a restart, which
  makes it exactly-once. (Weighting every reward by the posterior of its moment, as
  before December 2026, needs per-user, per-type sums that are too big to store; moving a
  user's whole data by its *latest* posterior instead cost 0.08 of gap_closed at cold
  start, the mean posterior about 0.025, LEARNING.md.) O(M d²) per event.
- Exploration: ε-greedy with ε_t = max(ε_min, c / sqrt(t + 1)) per user, as pooled-v1;
  the greedy choice is deterministic given the state, so propensities are exact.

The gaussian prior (``prior="gaussian"``) replaces the types by one population prior
N(μ, Σ) over the users' θ, an empirical Bayes prior with a full covariance: a user's model
is its posterior mean, θ_u = (σ² Σ⁻¹ + G_u)⁻¹ (σ² Σ⁻¹ μ + b_u), with G_u = Σ x xᵀ and
b_u = Σ r x its own data. The types collapse into one pooled prior anyway (LEARNING.md),
and a pooled ridge learns a biased mean (users are shown what their model likes, so the
pooled design is confounded with their θ) and no covariance. Told the personas' true mean
and covariance, this prior closes 0.60 / 0.52 of the gap at cold start (standard /
alternate), against 0.557 / 0.494 with the diagonal only.

- Learning (online EM, as derived state): after each reward, the user's posterior N(m, V)
  given its whole data, under the prior learned from the *other* users (``gaussian_prior``,
  ``gaussian_posterior``), is stored in its record as ``MOMENTS`` float32 (m and the upper
  triangle of m mᵀ + V: 80 bytes, 40 fewer than the types' posterior). The pool is the sum
  over users of [m mᵀ + V, m, 1] in fixed point (``moment_stats``: a one-type ``PoolStats``
  of the same layout as the data statistics), a function of the records alone, hence
  exactly-once. From it μ = (κ μ₀ + Σ m) / (κ + n) and Σ = (κ Σ₀ + Σ_u [(m − μ)(m − μ)ᵀ +
  V]) / (κ + n): the M step, with κ = ``prior_users`` (30) pseudo-users at the hyperprior
  μ₀ = the prototypes' mean, Σ₀ = σ² Λ_u⁻¹ (the spread Λ_u stands for). Each user's
  posterior is shrunk towards the prior it was computed against, so μ and Σ move from the
  hyperprior at the pace of the users' evidence: measured, that slowness is worth more at
  cold start than the converged (one-shot, generalized least squares) estimates.
  O(d³) per event, d = 5.
- A record without moments (the ridge alone, or a types record of the same preset) gets
  its moments against the hyperprior alone, a deterministic choice.
- Scores (``ucb`` = α): m·x + α sqrt(xᵀ V x), the posterior's optimism, under the same
  ε-greedy (so the choice is still deterministic given the state, and propensities exact).
  With the posterior mean alone (α = 0) an atypical user can lock in on a wrong slope: one
  Gaussian couples every user's coefficients by the population's correlations, and once
  overdue tips look bad only the 2% exploration shows them again.
- pooledmix-v3's prior since 6 Dec, with α = 0.3. In memory (the simulator's schedule, 50
  users per persona × 20 rounds) it closes 0.576 / 0.518 of the gap on world seeds 0–4
  (standard / alternate) and 0.560 / 0.532 on held-out seeds 5–9, against 0.531 / 0.482
  and 0.533 / 0.497 for the types (α = 0: 0.557 / 0.510 and 0.561 / 0.506, but 0.947 on
  the alternate long run, last 200 of 1000 rounds, seeds 0–4; α = 0.3: 0.953). The
  measurements are in LEARNING.md.

The presets differ in features, types and priors:

- ``pooledmix-v1``: features_v2, six types (``default_prototypes``), λ_u = 4 on every
  feature, σ² = 0.45.
- ``pooledmix-v3`` (the serving default): features_v3, where priority and overdue are
  centred. Fitting each standard persona's expected reward with features_v2 shows why the
  uncentred map learns slowly: a user's intercept (the reward of a priority-1 task) and
  priority slope move together (low-priority-first: −0.32 and −0.46; deadline-driven: −0.95
  and +0.50), so one isotropic prior shrinks both the wrong way. Centred, the intercept is
  the level at an average task, which varies little between users (sd ≈ 0.07), while the
  priority slope varies a lot (sd ≈ 0.33). The user's prior precision is σ² / var(coefficient
  across users), roughly ``V3_USER_LAMBDA``: 30 on the level, 3 on the priority slope, 25 on
  overdue, 20 on each hour band, so a new user's rewards move its priority slope first. The
  types are a 5 × 3 grid in the centred coordinates (``centred_grid``); σ² = 0.3. Since
  6 Dec the prior is the gaussian one (above), ``ucb`` 0.3, its hyperprior the grid's
  centre and σ² Λ_u⁻¹; ``prior="types"`` gives the mixture it replaced. Exploration
  starts at c = 0.03 (pooledmix-v1: 0.1) and ends at ε_min = 0.005 (pooledmix-v1: 0.02):
  ε is 0.03 on a user's first choice, 0.01 on its ninth and 0.005 from its 36th. Uniform
  exploration costs a user with 20 rewards more than it teaches, and a settled user pays
  ε for ever: since 7 Dec the end is 0.005, not 0.02, which moved the long run (last 200
  of 1,000 rounds, world seeds 0–9) from 0.962 / 0.954 to 0.977 / 0.967 (standard /
  alternate) and cold start from 0.579 / 0.525 to 0.584 / 0.530. Off-policy coverage is
  the exploration floor's job (``ExplorationFloor``). The measurements behind these
  choices are in LEARNING.md.

``pooledmix-v2`` (features_v2, a 5 × 3 grid, λ 8 on the task coefficients) is retired in
favour of ``pooledmix-v3`` (see ``bandit.registry``).

>>> from bandit.base import Moment, Task
>>> tasks = [Task("a", 1, False, 2.0), Task("b", 4, False, 9.0)]
>>> pol = PooledMix("pooledmix-v1")
>>> shared, alice = pol.new_shared(), pol.new_user()
>>> for _ in range(6):  # alice likes low priority
...     pol.update(alice, shared, Moment(12, 2), tasks[0], 1.0)
...     pol.update(alice, shared, Moment(12, 2), tasks[1], -1.0)
>>> pol.probabilities(alice, shared, Moment(12, 2), tasks).round(3).tolist()
[0.986, 0.014]
>>> again = pol.decode_user(pol.encode_user(alice))
>>> again.weights.tolist() == alice.weights.tolist(), int(alice.weights.sum())
(True, 256)
>>> pol = PooledMix("pooledmix-v3", prior="types")  # the mixture before 6 Dec
>>> shared, bob = pol.new_shared(), pol.new_user()
>>> bob.ridge.lam.tolist()
[30.0, 3.0, 25.0, 20.0, 20.0]
>>> pol.probabilities(bob, shared, Moment(12, 2), tasks).round(3).tolist()  # type 0
[0.015, 0.985]
>>> for _ in range(3):  # bob likes low priority
...     pol.update(bob, shared, Moment(12, 2), tasks[0], -0.2)
...     pol.update(bob, shared, Moment(12, 2), tasks[1], -0.8)
>>> pol.probabilities(bob, shared, Moment(12, 2), tasks).round(3).tolist()  # ε 0.03/√7
[0.994, 0.006]
>>> shared.types, shared.users
(15, 1)

With the gaussian prior, carol's two rewards turn her model to low priority, and the
population prior (one type: N(μ, Σ)) moves a little towards her; her record is 591 bytes:

>>> pol = PooledMix("pooledmix-v3")  # the gaussian prior, ucb 0.3
>>> shared, carol = pol.new_shared(), pol.new_user()
>>> pol.update(carol, shared, Moment(12, 2), tasks[1], -0.9)  # carol dislikes priority 4
>>> pol.update(carol, shared, Moment(12, 2), tasks[0], -0.1)
>>> pol.probabilities(carol, shared, Moment(12, 2), tasks).round(3).tolist()
[0.991, 0.009]
>>> mu, cov = pol.population(shared)
>>> round(float(mu[1]), 3), shared.types, len(pol.encode_user(carol))  # μ's priority slope
(-0.004, 1, 591)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bandit.base import CandidateBlock, FloatArray, Moment, Task
from bandit.explore import EpsilonGreedyScores, decaying_epsilon, design, first_argmax
from bandit.features import (
    V2_DIM,
    BlockFeatures,
    features_v2,
    features_v2_many,
    features_v3,
    features_v3_many,
)
from bandit.linear import Ridge, RidgeRows, sse_each, update_each
from bandit.pool import (
    ONE_TYPE,
    Contribution,
    IntArray,
    Pool,
    PoolDelta,
    PoolStats,
    data_stats,
    quantize_weights,
    solve_types,
)
from bandit.population import (
    MOMENTS,
    Float32Array,
    gaussian_posterior,
    gaussian_prior,
    moment_stats,
    pack_moments,
)

__all__ = [
    "PRESETS",
    "PRIORS",
    "V3_USER_LAMBDA",
    "MixUser",
    "PooledMix",
    "PooledMixPreset",
    "centred_grid",
    "default_prototypes",
]

_RIDGE_BYTES = len(Ridge.new(V2_DIM).encode())

# Prior precision per features_v3 column (pooledmix-v3): level, priority, overdue, morning,
# evening.
V3_USER_LAMBDA = (30.0, 3.0, 25.0, 20.0, 20.0)


def default_prototypes() -> FloatArray:
    """pooledmix-v1's prior means over features_v2 [1, priority, overdue, morning, evening]:
    an overall level of −0.5, priority slope +0.6 / 0 / −0.6, overdue +0.3 / −0.3 (six types)."""
    rows = [[-0.5, p, o, 0.0, 0.0] for p in (0.6, 0.0, -0.6) for o in (0.3, -0.3)]
    return np.array(rows, dtype=np.float64)


def centred_grid() -> FloatArray:
    """pooledmix-v3's prior means over features_v3: level −0.65, priority slope +0.5 / +0.25 /
    0 / −0.25 / −0.5 × overdue slope +0.15 / 0 / −0.15 (15 types, the first the most common
    persona kind: important and overdue tasks first)."""
    rows = [
        [-0.65, p, o, 0.0, 0.0] for p in (0.5, 0.25, 0.0, -0.25, -0.5) for o in (0.15, 0.0, -0.15)
    ]
    return np.array(rows, dtype=np.float64)


@dataclass(slots=True)
class MixUser:
    """A user of the mixture: its own ridge, and its mean posterior over the types, whose
    quantized form (k/256) weighs what the user contributes to the types' statistics."""

    ridge: Ridge
    posterior: FloatArray  # the mean of its posteriors over the types, one per reward
    # What the user adds to the pool, kept between updates (a function of the state:
    # ``update`` resets it when it changes).
    contribution: Contribution | None = field(default=None, compare=False, repr=False)
    # The gaussian prior only: the user's posterior moments at its latest reward (``MOMENTS``
    # float32: m, then the upper triangle of m mᵀ + V); None before its first reward.
    moments: Float32Array | None = None

    @property
    def weights(self) -> IntArray:
        return quantize_weights(self.posterior)


@dataclass(frozen=True, slots=True)
class PooledMixPreset:
    """A named configuration of the family: its wire name and the parameters it fixes."""

    name: str
    fmap: Callable[[Moment, Task], FloatArray]
    fmap_many: BlockFeatures  # the same map over a CandidateBlock
    prototypes: Callable[[], FloatArray]
    lam_user: float | tuple[float, ...]
    sigma2: float
    c: float  # where exploration starts (``decaying_epsilon``)
    epsilon_min: float = 0.02  # where it ends
    prior: str = "types"  # or "gaussian": one learned N(μ, Σ) (``PRIORS``)
    ucb: float = 0.0  # the gaussian prior's optimism: α in m·x + α sqrt(xᵀ V x)


PRIORS = ("types", "gaussian")
# The gaussian prior's hyperprior weight: pseudo-users at N(mean of the prototypes, σ² Λ⁻¹).
PRIOR_USERS = 30.0

PRESETS: Mapping[str, PooledMixPreset] = {
    p.name: p
    for p in (
        PooledMixPreset(
            "pooledmix-v1", features_v2, features_v2_many, default_prototypes, 4.0, 0.45, 0.1
        ),
        PooledMixPreset(
            "pooledmix-v3",
            features_v3,
            features_v3_many,
            centred_grid,
            V3_USER_LAMBDA,
            0.3,
            0.03,
            epsilon_min=0.005,
            prior="gaussian",
            ucb=0.3,
        ),
    )
}


class PooledMix(EpsilonGreedyScores):
    """Per-user ridge shrunk towards the best-fitting of M pooled types; ε-greedy on top.

    ``preset`` is a wire name in ``PRESETS``; the keyword arguments override its parameters
    (None keeps the preset's).
    """

    __slots__ = (
        "c",
        "cov0",
        "epsilon_min",
        "fmap",
        "fmap_many",
        "lam_pool",
        "lam_user",
        "mean0",
        "name",
        "prior",
        "prior_users",
        "prototypes",
        "sigma2",
        "ucb",
    )

    def __init__(
        self,
        preset: str = "pooledmix-v1",
        *,
        prototypes: FloatArray | None = None,
        lam_user: float | FloatArray | None = None,
        lam_pool: float = 1.0,
        sigma2: float | None = None,
        c: float | None = None,
        epsilon_min: float | None = None,
        prior: str | None = None,
        prior_users: float = PRIOR_USERS,
        ucb: float | None = None,
    ) -> None:
        base = PRESETS.get(preset)
        if base is None:
            raise ValueError(f"unknown pooledmix preset {preset!r}; known: {', '.join(PRESETS)}")
        protos = base.prototypes() if prototypes is None else np.asarray(prototypes, float)
        lam = base.lam_user if lam_user is None else lam_user
        sigma2 = base.sigma2 if sigma2 is None else sigma2
        c = base.c if c is None else c
        epsilon_min = base.epsilon_min if epsilon_min is None else epsilon_min
        if protos.ndim != 2 or protos.shape[1] != V2_DIM or protos.shape[0] < 1:
            raise ValueError(f"prototypes must be an M × {V2_DIM} array")
        prior = base.prior if prior is None else prior
        if ucb is None:  # the preset's, when its prior is the one asked for
            ucb = base.ucb if prior == base.prior else 0.0
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, not {prior!r}")
        positive = bool(np.all(np.asarray(lam) > 0)) and lam_pool > 0 and sigma2 > 0
        if not (positive and prior_users > 0 and c >= 0 and 0 <= epsilon_min <= 1):
            raise ValueError(
                "need lam_user, lam_pool, sigma2, prior_users > 0, c ≥ 0, 0 ≤ epsilon_min ≤ 1"
            )
        if ucb < 0 or (ucb > 0 and prior != "gaussian"):
            raise ValueError("ucb is a width ≥ 0, and only the gaussian prior has one")
        self.name = base.name
        self.fmap = base.fmap
        self.fmap_many = base.fmap_many
        self.prototypes = protos
        self.lam_user = lam if isinstance(lam, float | int) else np.array(lam, dtype=np.float64)
        self.lam_pool = lam_pool
        self.sigma2 = sigma2
        self.c = c
        self.epsilon_min = epsilon_min
        self.prior = prior
        self.prior_users = prior_users
        self.ucb = ucb
        # The gaussian prior's hyperprior: the prototypes' mean, and σ² Λ_u⁻¹ (the spread
        # that Λ_u stands for, λ_j ≈ σ² / var θ_j).
        self.mean0 = np.asarray(protos.mean(axis=0), dtype=np.float64)
        lam_v = np.broadcast_to(np.asarray(lam, dtype=np.float64), (V2_DIM,))
        self.cov0 = np.diag(sigma2 / lam_v)

    @property
    def gaussian(self) -> bool:
        return self.prior == "gaussian"

    def _need(self, shared: Pool | None) -> Pool:
        if shared is None:
            raise ValueError(f"{self.name} needs its shared state (new_shared)")
        return shared

    def new_user(self) -> MixUser:
        return MixUser(Ridge.new(V2_DIM, self.lam_user), self._uniform())

    def _uniform(self) -> FloatArray:
        m = 1 if self.gaussian else len(self.prototypes)
        return np.full(m, 1.0 / m, dtype=np.float64)

    def new_shared(self) -> PoolStats:
        return PoolStats.new(1 if self.gaussian else len(self.prototypes), V2_DIM)

    def pool_contribution(self, user: MixUser) -> Contribution | None:
        if not user.ridge.pulls:
            return None
        if user.contribution is None:
            if self.gaussian:
                if user.moments is None:
                    user.moments = self._moments_at_hyperprior(user.ridge)
                stats = moment_stats(user.moments[None, :])[0]
                user.contribution = Contribution(ONE_TYPE, stats, user.ridge.pulls)
            else:
                user.contribution = Contribution.of(user.ridge, user.weights)
        return user.contribution

    def _moments_at_hyperprior(self, ridge: Ridge) -> Float32Array:
        """A user's moments against the hyperprior alone: for a record that has data but no
        stored moments (written before the gaussian prior), a deterministic choice."""
        rows = RidgeRows.of([ridge])
        m, v = gaussian_posterior(
            rows.gram(), rows.b, self.mean0[None, :], self.cov0[None, :, :], self.sigma2
        )
        return np.asarray(pack_moments(m, v)[0], dtype=np.float32)

    def _others(self, user: MixUser, shared: Pool | None) -> IntArray:
        """The pool's statistics without the user's own contribution (exact int64)."""
        stats = self._need(shared).whole.stats
        own = self.pool_contribution(user)
        if own is None:
            return stats
        return np.asarray(stats - own.weights[:, None] * own.stats[None, :], dtype=np.int64)

    def population(self, shared: Pool | None) -> tuple[FloatArray, FloatArray]:
        """The gaussian prior's N(μ, Σ) learned from every user of the pool (d and d × d)."""
        mu, cov = gaussian_prior(
            self._need(shared).whole.stats, self.mean0, self.cov0, self.prior_users
        )
        return mu[0], cov[0]

    def type_thetas(self, shared: Pool | None) -> FloatArray:
        """M × d: each type's ridge solution shrunk towards its prior mean."""
        if self.gaussian:
            raise ValueError(f"{self.name} with the gaussian prior has no types (population)")
        return self._need(shared).thetas(self.lam_pool, self.prototypes)

    def type_posterior(self, user: Ridge, thetas: FloatArray) -> FloatArray:
        """softmax(−SSE_m / 2σ²) over the types, from the user's own data."""
        ll = -user.sse_many(thetas) / (2.0 * self.sigma2)
        w = np.exp(ll - ll.max())
        return np.asarray(w / w.sum(), dtype=np.float64)

    def posterior(self, user: MixUser, shared: Pool | None) -> tuple[FloatArray, FloatArray]:
        """The gaussian prior's posterior N(m, V) of the user's θ under the prior N(μ, Σ) of
        the other users (d and d × d)."""
        mu, cov = gaussian_prior(
            self._others(user, shared), self.mean0, self.cov0, self.prior_users
        )
        rows = RidgeRows.of([user.ridge])
        m, v = gaussian_posterior(rows.gram(), rows.b, mu, cov, self.sigma2)
        return np.asarray(m[0], dtype=np.float64), np.asarray(v[0], dtype=np.float64)

    def theta(self, user: MixUser, shared: Pool | None) -> FloatArray:
        if self.gaussian:  # the posterior mean
            return self.posterior(user, shared)[0]
        thetas = self.type_thetas(shared)
        best = first_argmax(self.type_posterior(user.ridge, thetas))
        return user.ridge.theta(prior=thetas[best])

    def epsilon_for(self, user: MixUser) -> float:
        return decaying_epsilon(self.c, self.epsilon_min, user.ridge.pulls)

    def scores(
        self, user: MixUser, shared: Pool | None, moment: Moment, tasks: Sequence[Task]
    ) -> FloatArray:
        """θ·x; with the gaussian prior and ``ucb`` = α > 0, m·x + α sqrt(xᵀ V x)."""
        x = design(self.fmap, moment, tasks)
        if not (self.gaussian and self.ucb > 0.0):
            return x @ self.theta(user, shared)
        m, v = self.posterior(user, shared)
        width = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", x, v, x), 0.0))
        return np.asarray(x @ m + self.ucb * width, dtype=np.float64)

    def update(
        self, user: MixUser, shared: Pool | None, moment: Moment, task: Task, reward: float
    ) -> None:
        """Learn the user's ridge and move its contribution. Types: its data weighted by the
        mean of its posteriors, each computed before a reward from the user's earlier data
        against the other users' types (soft EM). Gaussian: its posterior moments given all
        its data under the other users' prior (online EM). Exactly-once either way: the pool
        is a function of the users' states."""
        x = self.fmap(moment, task)[None, :]
        self._learn([user], self._need(shared), x, np.array([reward], dtype=np.float64))

    def update_many(
        self,
        users: Sequence[MixUser],
        shared: Pool | None,
        block: CandidateBlock,
        chosen: IntArray,
        rewards: FloatArray,
    ) -> None:
        """``update`` for distinct users at once, each against the types as they stood at
        the call (without its own data): what the loop gives when there is one user. With
        several, a user does not see the others' rewards of the same call in the types it
        is weighed against; the pool after the call is the loop's, exactly.

        >>> from bandit.base import CandidateBlock
        >>> pol = PooledMix("pooledmix-v3")
        >>> tasks = [Task("a", 1, False, 2.0), Task("b", 4, True, 9.0)]
        >>> one, shared_one = pol.new_user(), pol.new_shared()
        >>> pol.update(one, shared_one, Moment(9, 2), tasks[1], -0.5)
        >>> many, shared_many = [pol.new_user()], pol.new_shared()
        >>> block = CandidateBlock.of([Moment(9, 2)], [tasks])
        >>> pol.update_many(many, shared_many, block, np.array([1]), np.array([-0.5]))
        >>> pol.encode_user(one) == pol.encode_user(many[0]), shared_one == shared_many
        (True, True)
        """
        if len({id(u) for u in users}) != len(users):
            raise ValueError("update_many needs distinct users (one reward each)")
        if not users:
            return
        xs = self.fmap_many(block)[np.arange(block.size), chosen]
        self._learn(users, self._need(shared), xs, np.asarray(rewards, dtype=np.float64))

    def _learn(
        self, users: Sequence[MixUser], pool: Pool, xs: FloatArray, rewards: FloatArray
    ) -> None:
        """One reward per user (rows of ``xs``, ``rewards``), all against the pool as it is."""
        whole = pool.whole
        n, m = len(users), whole.types
        old_w = np.zeros((n, m), dtype=np.int64)
        old_s = np.zeros((n, whole.stats.shape[1]), dtype=np.int64)
        olds = [self.pool_contribution(user) for user in users]
        for i, old in enumerate(olds):
            if old is not None:
                old_w[i], old_s[i] = old.weights, old.stats
        # Each user's pool: the pool without the user's own contribution (exact int64).
        others = whole.stats[None, :, :] - old_w[:, :, None] * old_s[:, None, :]
        ridges = [u.ridge for u in users]
        rows = RidgeRows.of(ridges)  # stacked once, for the steps below
        if self.gaussian:
            new_w, new_s = self._learn_gaussian(users, others[:, 0, :], rows, xs, rewards)
        else:
            new_w, new_s = self._learn_types(users, others, rows, xs, rewards)
        for i, user in enumerate(users):
            user.contribution = Contribution(new_w[i].copy(), new_s[i].copy(), user.ridge.pulls)
        pool.apply(PoolDelta.summed(olds, [u.contribution for u in users], whole))

    def _learn_types(
        self,
        users: Sequence[MixUser],
        others: IntArray,
        rows: RidgeRows,
        xs: FloatArray,
        rewards: FloatArray,
    ) -> tuple[IntArray, IntArray]:
        """Soft EM over types: the posterior before the reward joins the user's mean."""
        ridges = [u.ridge for u in users]
        thetas = solve_types(others, V2_DIM, self.lam_pool, self.prototypes)
        ll = -sse_each(rows, thetas) / (2.0 * self.sigma2)
        w = np.exp(ll - ll.max(axis=1, keepdims=True))
        post = w / w.sum(axis=1, keepdims=True)
        seen = np.array([r.pulls for r in ridges], dtype=np.float64)[:, None]
        update_each(ridges, xs, rewards, rows)
        posteriors = (np.stack([u.posterior for u in users]) * seen + post) / (seen + 1.0)
        for i, user in enumerate(users):
            user.posterior = posteriors[i].copy()
        return quantize_weights(posteriors), data_stats(rows)

    def _learn_gaussian(
        self,
        users: Sequence[MixUser],
        others: IntArray,
        rows: RidgeRows,
        xs: FloatArray,
        rewards: FloatArray,
    ) -> tuple[IntArray, IntArray]:
        """Online EM for N(μ, Σ): the E step for the user's whole data (the reward included)
        against the prior of the other users; its moments are stored and pooled."""
        mu, cov = gaussian_prior(others, self.mean0, self.cov0, self.prior_users)
        update_each([u.ridge for u in users], xs, rewards, rows)
        m, v = gaussian_posterior(rows.gram(), rows.b, mu, cov, self.sigma2)
        moments = pack_moments(m, v)
        for i, user in enumerate(users):
            user.moments = moments[i].copy()
        weights = np.broadcast_to(ONE_TYPE, (len(users), 1))
        return np.asarray(weights, dtype=np.int64), moment_stats(moments)

    def encode_user(self, user: MixUser) -> bytes:
        """The ridge, then the mean posterior over the types (M little-endian float64), or
        with the gaussian prior the ``MOMENTS`` little-endian float32 (none before the user's
        first reward)."""
        if self.gaussian:
            if user.moments is None:
                return user.ridge.encode()
            return user.ridge.encode() + np.asarray(user.moments, dtype="<f4").tobytes()
        return user.ridge.encode() + user.posterior.astype("<f8").tobytes()

    def decode_user(self, data: bytes) -> MixUser:
        """The ridge, then the M little-endian float64 of the mean posterior. A record
        written before the posterior was stored (the ridge alone) gets a uniform one: a
        deterministic choice, so a pool rebuilt from such records always has the same bits.
        With the gaussian prior, the ridge and its moments; a record without them (the ridge
        alone, or a types record of this preset from before) gets moments against the
        hyperprior alone, also deterministic."""
        m = len(self.prototypes)
        if self.gaussian:
            return self._decode_gaussian(data, m)
        if len(data) == _RIDGE_BYTES:
            return MixUser(Ridge.decode(data, dim=V2_DIM), self._uniform())
        if len(data) != _RIDGE_BYTES + 8 * m:
            raise ValueError(f"{self.name} user state of {len(data)} bytes")
        posterior = np.frombuffer(data, dtype="<f8", offset=_RIDGE_BYTES).astype(np.float64)
        if not (np.all(np.isfinite(posterior)) and np.all(posterior >= 0.0)):
            raise ValueError(f"{self.name} user state has a posterior that is not a distribution")
        if abs(float(posterior.sum()) - 1.0) > 1e-6:
            raise ValueError(f"{self.name} user state has a posterior that is not a distribution")
        return MixUser(Ridge.decode(data[:_RIDGE_BYTES], dim=V2_DIM), posterior)

    def _decode_gaussian(self, data: bytes, types: int) -> MixUser:
        if len(data) not in (_RIDGE_BYTES, _RIDGE_BYTES + 8 * types, _RIDGE_BYTES + 4 * MOMENTS):
            raise ValueError(f"{self.name} user state of {len(data)} bytes")
        user = MixUser(Ridge.decode(data[:_RIDGE_BYTES], dim=V2_DIM), self._uniform())
        if len(data) == _RIDGE_BYTES + 4 * MOMENTS:
            moments = np.frombuffer(data, dtype="<f4", offset=_RIDGE_BYTES).astype(np.float32)
            if not np.all(np.isfinite(moments)):
                raise ValueError(f"{self.name} user state has moments that are not finite")
            user.moments = moments
        elif user.ridge.pulls:
            user.moments = self._moments_at_hyperprior(user.ridge)
        return user
