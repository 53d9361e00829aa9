"""Ridge state: incremental equals batch, Sherman–Morrison equals the true inverse, codec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.linear import RESYNC_EVERY, Ridge


def batch_theta(xs: np.ndarray, rs: np.ndarray, lam: float) -> np.ndarray:
    d = xs.shape[1]
    return np.linalg.solve(lam * np.eye(d) + xs.T @ xs, xs.T @ rs)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    d=st.integers(1, 12),
    n=st.integers(0, 3 * RESYNC_EVERY),
    lam=st.sampled_from([0.1, 1.0, 5.0]),
)
def test_incremental_equals_batch_ridge(seed: int, d: int, n: int, lam: float) -> None:
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, d))
    rs = rng.normal(size=n)
    r = Ridge.new(d, lam)
    for x, y in zip(xs, rs, strict=True):
        r.update(x, float(y))
    np.testing.assert_allclose(r.a, lam * np.eye(d) + xs.T @ xs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.theta(), batch_theta(xs, rs, lam), rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(r.a_inv, np.linalg.inv(r.a), rtol=1e-8, atol=1e-10)
    assert r.pulls == n
    assert r.reward_sum == pytest.approx(float(rs.sum()))


def test_sherman_morrison_without_resync_matches_inverse() -> None:
    rng = np.random.default_rng(7)
    r = Ridge.new(6)
    for _ in range(RESYNC_EVERY - 1):  # stays on the Sherman–Morrison path throughout
        r.update(rng.uniform(-1, 1, 6), float(rng.normal()))
    assert r.since_sync == RESYNC_EVERY - 1
    np.testing.assert_allclose(r.a_inv, np.linalg.inv(r.a), rtol=1e-10, atol=1e-12)
    r.update(rng.uniform(-1, 1, 6), 0.5)
    assert r.since_sync == 0  # the re-sync happened


def test_weighted_update_and_prior_shrinkage() -> None:
    rng = np.random.default_rng(3)
    lam = np.array([0.5, 2.0, 8.0])
    prior = np.array([1.0, -1.0, 0.25])
    xs, rs, ws = rng.normal(size=(40, 3)), rng.normal(size=40), rng.uniform(0, 2, 40)
    r = Ridge.new(3, lam)
    for x, y, w in zip(xs, rs, ws, strict=True):
        r.update(x, float(y), weight=float(w))
    a = np.diag(lam) + (xs * ws[:, None]).T @ xs
    expected = np.linalg.solve(a, lam * prior + (xs * ws[:, None]).T @ rs)
    np.testing.assert_allclose(r.theta(prior=prior), expected, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(r.a_inv, np.linalg.inv(a), rtol=1e-9, atol=1e-11)


def test_sse_from_sufficient_statistics() -> None:
    rng = np.random.default_rng(5)
    xs, rs = rng.normal(size=(30, 4)), rng.normal(size=30)
    r = Ridge.new(4, 2.0)
    for x, y in zip(xs, rs, strict=True):
        r.update(x, float(y))
    theta = rng.normal(size=4)
    assert r.sse(theta) == pytest.approx(float(((rs - xs @ theta) ** 2).sum()), rel=1e-9)


def test_widths_match_quadratic_form() -> None:
    rng = np.random.default_rng(2)
    r = Ridge.new(3)
    for _ in range(10):
        r.update(rng.normal(size=3), 1.0)
    xs = rng.normal(size=(5, 3))
    expected = np.sqrt([x @ np.linalg.inv(r.a) @ x for x in xs])
    np.testing.assert_allclose(r.widths(xs), expected, rtol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 20), n=st.integers(0, 100))
def test_codec_round_trip_is_exact(seed: int, d: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    r = Ridge.new(d, rng.uniform(0.1, 3.0, d))
    for _ in range(n):
        r.update(rng.normal(size=d), float(rng.normal()))
    back = Ridge.decode(r.encode(), dim=d)
    for field in ("lam", "a", "a_inv", "b"):
        assert np.array_equal(getattr(back, field), getattr(r, field)), field
    assert (back.pulls, back.reward_sum, back.reward_sq_sum, back.since_sync) == (
        r.pulls,
        r.reward_sum,
        r.reward_sq_sum,
        r.since_sync,
    )
    assert back.encode() == r.encode()


def test_codec_rejects_corrupt_bytes() -> None:
    data = Ridge.new(3).encode()
    with pytest.raises(ValueError, match="version"):
        Ridge.decode(b"\x09" + data[1:])
    with pytest.raises(ValueError, match="bytes"):
        Ridge.decode(data[:-1])
    with pytest.raises(ValueError, match="bytes"):
        Ridge.decode(data + b"\x00")
    with pytest.raises(ValueError, match="too short"):
        Ridge.decode(b"\x01")
    with pytest.raises(ValueError, match="dimension 3, expected 5"):
        Ridge.decode(data, dim=5)
    nan = bytearray(data)
    nan[-8:] = np.array([np.nan]).tobytes()
    with pytest.raises(ValueError, match="non-finite"):
        Ridge.decode(bytes(nan))


def test_new_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="dim"):
        Ridge.new(0)
    with pytest.raises(ValueError, match="λ"):
        Ridge.new(3, 0.0)


def test_new_ridges_share_no_arrays_and_decoded_ones_learn_alike() -> None:
    """``new`` copies a cached blank and ``decode`` gives views of one buffer: a ridge's
    learning must reach neither another ridge nor the blank."""
    first, second = Ridge.new(3, 2.0), Ridge.new(3, 2.0)
    for _ in range(RESYNC_EVERY + 1):  # past a re-sync, which replaces A⁻¹
        first.update(np.array([1.0, 0.5, -1.0]), 1.0)
    assert second.encode() == Ridge.new(3, 2.0).encode()
    assert np.array_equal(Ridge.new(3, 2.0).a, 2.0 * np.eye(3))
    decoded = Ridge.decode(second.encode())
    for r in (decoded, second):
        r.update(np.array([0.0, 1.0, 1.0]), -0.5)
    assert decoded.encode() == second.encode()
    lam = np.array([1.0, 2.0, 3.0])
    per_feature = Ridge.new(3, lam)
    lam[0] = 9.0  # the caller's array, changed after: no effect on later ridges
    assert np.array_equal(Ridge.new(3, np.array([1.0, 2.0, 3.0])).lam, per_feature.lam)
