"""Tests of fixed-point counts, sign dynamics and accessibility (the theory checks)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from darnax_core._theory import (
    count_fixed_points,
    enumerate_fixed_points,
    expected_fixed_points,
    is_fixed_point,
    mean_fixed_point_count,
    random_couplings,
)
from darnax_core._theory_dynamics import (
    _sweep_orders,
    accessibility,
    chain_accessibility,
    run_chain_dynamics,
    run_sign_dynamics,
)

# Hand-made 3-unit network. J[j, i] couples unit j to unit i, so with j_d = 0.25:
#   h0 = 0.5 s1 - s2 + 0.25 s0,   h1 = s0 + 0.5 s2 + 0.25 s1,   h2 = -2 s0 + s1 + 0.25 s2.
J3 = np.array([[0.0, 1.0, -2.0],
               [0.5, 0.0, 1.0],
               [-1.0, 0.5, 0.0]], dtype=np.float32)
JD3 = 0.25

# Every state of J3 with its fields (h0, h1, h2), worked out by hand from the formulas above,
# and whether s_i * h_i > 0 for all i.
HAND_TABLE = [
    ((-1, -1, -1), (0.25, -1.75, 0.75), False),
    ((-1, -1, 1), (-1.75, -0.75, 1.25), True),
    ((-1, 1, -1), (1.25, -1.25, 2.75), False),
    ((-1, 1, 1), (-0.75, -0.25, 3.25), False),
    ((1, -1, -1), (0.75, 0.25, -3.25), False),
    ((1, -1, 1), (-1.25, 1.25, -2.75), False),
    ((1, 1, -1), (1.75, 0.75, -1.25), True),
    ((1, 1, 1), (-0.25, 1.75, -0.75), False),
]


# ------------------------------------------------------------------------- enumeration


def test_hand_table_fields():
    for state, fields, _ in HAND_TABLE:
        s = np.array(state, dtype=np.float32)
        np.testing.assert_allclose(s @ J3 + JD3 * s, fields)


def test_enumerate_hand_network():
    expected = [state for state, _, stable in HAND_TABLE if stable]
    found = enumerate_fixed_points(J3, JD3)
    assert found.dtype == jnp.int32
    assert found.tolist() == [list(s) for s in expected]
    assert int(count_fixed_points(J3, JD3)) == 2


def test_is_fixed_point_hand_table():
    states = np.array([state for state, _, _ in HAND_TABLE], dtype=np.float32)
    stable = [flag for _, _, flag in HAND_TABLE]
    assert is_fixed_point(J3, JD3, states).tolist() == stable


def test_enumerate_margin_strict():
    # Both fixed points have min_i s_i h_i = 0.75 (see HAND_TABLE).
    assert int(count_fixed_points(J3, JD3, margin=0.5)) == 2
    assert int(count_fixed_points(J3, JD3, margin=0.75)) == 0
    assert enumerate_fixed_points(J3, JD3, margin=0.75).shape == (0, 3)


def test_enumerate_per_unit_self_coupling():
    # j_d = (0.25, 1, 0.25) adds 0.75 s1 to h1, which also stabilises (-1,1,1) and (1,-1,-1).
    found = enumerate_fixed_points(J3, np.array([0.25, 1.0, 0.25]))
    assert found.tolist() == [[-1, -1, 1], [-1, 1, 1], [1, -1, -1], [1, 1, -1]]


def test_enumerate_zero_field_tie():
    # Zero couplings give h = 0: with margin 0 only the all +1 state is fixed (sign(0) = +1).
    zero = np.zeros((2, 2), dtype=np.float32)
    assert enumerate_fixed_points(zero, 0.0).tolist() == [[1, 1]]
    assert int(count_fixed_points(zero, 0.0, margin=0.1)) == 0
    assert int(count_fixed_points(zero, 0.0, margin=-0.1)) == 4


def test_enumerate_order_matches_product():
    # Self-coupling 1 with zero couplings makes every state a fixed point.
    found = enumerate_fixed_points(np.zeros((4, 4)), 1.0)
    assert found.tolist() == [list(s) for s in itertools.product((-1, 1), repeat=4)]


def test_count_matches_brute_force():
    couplings = np.asarray(random_couplings(jax.random.key(3), 9), dtype=np.float64)
    states = np.array(list(itertools.product((-1.0, 1.0), repeat=9)))
    fields = states @ couplings + 0.3 * states
    expected = int(np.sum(np.all(states * fields > 0, axis=1)))
    assert int(count_fixed_points(couplings, 0.3)) == expected


def test_count_chunked_n16():
    # n = 16 needs four chunks of 2^14 states. The reference is a NumPy count over all states.
    couplings = random_couplings(jax.random.key(5), 16)
    indices = np.arange(1 << 16)
    states = (2 * ((indices[:, None] >> np.arange(15, -1, -1)) & 1) - 1).astype(np.float32)
    fields = states @ np.asarray(couplings) + 0.4 * states
    expected = int(np.sum(np.all(states * fields > 0, axis=1)))
    assert int(count_fixed_points(couplings, 0.4)) == expected


def test_count_jit_vmap():
    keys = jax.random.split(jax.random.key(1), 4)
    stacked = jax.vmap(lambda k: random_couplings(k, 8))(keys)
    batched = jax.jit(jax.vmap(lambda c: count_fixed_points(c, 0.5)))(stacked)
    assert batched.tolist() == [int(count_fixed_points(c, 0.5)) for c in stacked]


# ------------------------------------------------------------------------------ theory


def test_expected_reference_values():
    assert expected_fixed_points(10, 0.5) == pytest.approx(29.3, abs=0.1)
    assert expected_fixed_points(10, 0.5, finite_size=False) == pytest.approx(25.6, abs=0.1)
    assert expected_fixed_points(10, 0.0, finite_size=False) == pytest.approx(1.0, rel=1e-12)
    assert expected_fixed_points(500, 0.0, finite_size=False) == pytest.approx(1.0, rel=1e-9)


def test_expected_small_cases():
    # n = 2: sigma^2 = 1/2, so j_d = 0 gives 4 * (1/2)^2 = 1.
    assert expected_fixed_points(2, 0.0) == pytest.approx(1.0)
    phi = 0.5 * math.erfc(-0.5 / math.sqrt(2.0))
    assert expected_fixed_points(3, 0.5, finite_size=False) == pytest.approx(8 * phi**3)


def test_expected_margin_and_per_unit():
    assert expected_fixed_points(12, 1.0, margin=0.4) == pytest.approx(
        expected_fixed_points(12, 0.6))
    assert expected_fixed_points(5, np.full(5, 0.7)) == pytest.approx(
        expected_fixed_points(5, 0.7))


def test_expected_overflow_is_inf():
    assert expected_fixed_points(5000, 3.0) == math.inf
    assert expected_fixed_points(100, -60.0) == 0.0


@pytest.mark.parametrize("n", [10, 12, 14])
@pytest.mark.parametrize("j_d", [0.0, 0.5, 1.0])
def test_mean_count_matches_theory(n, j_d):
    key = jax.random.fold_in(jax.random.key(2024), 100 * n + int(10 * j_d))
    estimate = mean_fixed_point_count(key, n, j_d, samples=300)
    predicted = 2**n * (0.5 * math.erfc(-j_d / math.sqrt((n - 1) / n) / math.sqrt(2))) ** n
    assert estimate.counts.shape == (300,)
    assert estimate.mean == pytest.approx(float(np.mean(np.asarray(estimate.counts))))
    assert abs(estimate.mean - predicted) < 3 * estimate.standard_error


def test_mean_count_sample_couplings():
    # Sample m is documented to use random_couplings(split(key, samples)[m], n).
    key = jax.random.key(9)
    estimate = mean_fixed_point_count(key, 8, 0.5, samples=5)
    keys = jax.random.split(key, 5)
    expected = [int(count_fixed_points(random_couplings(k, 8), 0.5)) for k in keys]
    assert estimate.counts.tolist() == expected
    assert estimate.mean == pytest.approx(np.mean(expected))
    assert estimate.standard_error == pytest.approx(np.std(expected, ddof=1) / math.sqrt(5))


def test_mean_count_with_margin():
    estimate = mean_fixed_point_count(jax.random.key(7), 12, 1.0, samples=300, margin=0.4)
    predicted = expected_fixed_points(12, 0.6)
    assert abs(estimate.mean - predicted) < 3 * estimate.standard_error
    # The margin removes most fixed points: the j_d = 1 count is about 598.
    assert estimate.mean < 0.5 * expected_fixed_points(12, 1.0)


def test_random_couplings_statistics():
    dense = np.asarray(random_couplings(jax.random.key(0), 400))
    off = dense[~np.eye(400, dtype=bool)]
    assert np.all(np.diag(dense) == 0)
    assert np.std(off) * math.sqrt(400) == pytest.approx(1.0, rel=0.02)

    sparse = np.asarray(random_couplings(jax.random.key(0), 400, density=0.1))
    nonzero = sparse[sparse != 0]
    assert np.all(np.diag(sparse) == 0)
    assert nonzero.size / (400 * 399) == pytest.approx(0.1, rel=0.05)
    assert np.std(nonzero) * math.sqrt(400 * 0.1) == pytest.approx(1.0, rel=0.05)


# ---------------------------------------------------------------------------- dynamics


def test_synchronous_one_sweep_hand():
    # Fields from HAND_TABLE: (-1,-1,-1) -> (1,-1,1), (1,-1,1) -> (-1,1,-1), and s = 0 gives
    # h = 0, so every unit becomes sign(0) = +1.
    s0 = np.array([[-1, -1, -1], [1, -1, 1], [0, 0, 0]], dtype=np.float32)
    result = run_sign_dynamics(J3, JD3, s0, schedule="synchronous", sweeps=1)
    assert result.states.tolist() == [[1, -1, 1], [-1, 1, -1], [1, 1, 1]]
    assert result.converged.tolist() == [False, False, False]
    assert result.first_fixed_sweep.tolist() == [-1, -1, -1]


def test_synchronous_two_cycle():
    # (1,-1,1) and (-1,1,-1) map onto each other, so after 10 sweeps from (-1,-1,-1)
    # (-> (1,-1,1) -> (-1,1,-1) -> ...) the state is (-1,1,-1) and never fixed.
    s0 = np.array([[-1, -1, -1]], dtype=np.float32)
    result = run_sign_dynamics(J3, JD3, s0, schedule="synchronous", sweeps=10)
    assert result.states.tolist() == [[-1, 1, -1]]
    assert not bool(result.converged[0])


def test_synchronous_reaches_fixed_point():
    # (-1,1,1) has h = (-0.75, -0.25, 3.25), so one sweep gives the fixed point (-1,-1,1).
    s0 = np.array([[-1, 1, 1]], dtype=np.float32)
    result = run_sign_dynamics(J3, JD3, s0, schedule="synchronous", sweeps=5)
    assert result.states.tolist() == [[-1, -1, 1]]
    assert result.converged.tolist() == [True]
    assert result.first_fixed_sweep.tolist() == [1]


@pytest.mark.parametrize("schedule", ["synchronous", "asynchronous"])
def test_fixed_point_stays_fixed(schedule):
    s0 = np.array([[-1, -1, 1], [1, 1, -1]], dtype=np.float32)
    result = run_sign_dynamics(J3, JD3, s0, schedule=schedule, sweeps=5,
                               key=jax.random.key(0))
    assert result.states.tolist() == s0.tolist()
    assert result.converged.tolist() == [True, True]
    assert result.first_fixed_sweep.tolist() == [0, 0]


def _asynchronous_reference(couplings, j_d, s0, key, sweeps):
    """Plain Python loop over units in the orders drawn by the library for each sweep."""
    couplings = np.asarray(couplings, dtype=np.float64)
    states = np.array(s0, dtype=np.float64)
    batch, n = states.shape
    first = np.full(batch, -1)
    for sweep in range(sweeps):
        orders = np.asarray(_sweep_orders(key, sweep, batch, n))
        for b in range(batch):
            for unit in orders[b]:
                field = states[b] @ couplings[:, unit] + j_d * states[b, unit]
                states[b, unit] = 1.0 if field >= 0 else -1.0
        fields = states @ couplings + j_d * states
        fixed = np.all(np.where(fields >= 0, 1.0, -1.0) == states, axis=1)
        first = np.where((first < 0) & fixed, sweep + 1, first)
    return states, first


def test_asynchronous_matches_python_loop():
    key = jax.random.key(11)
    couplings = random_couplings(jax.random.key(4), 12)
    s0 = np.array(jax.random.rademacher(jax.random.key(6), (5, 12), jnp.float32))
    s0[4] = 0.0
    result = run_sign_dynamics(couplings, 0.2, s0, schedule="asynchronous", sweeps=6, key=key)
    states, first = _asynchronous_reference(couplings, 0.2, s0, key, sweeps=6)
    assert result.states.tolist() == states.tolist()
    assert result.first_fixed_sweep.tolist() == first.tolist()


def test_sweep_orders_are_fresh_permutations():
    key = jax.random.key(0)
    first = np.asarray(_sweep_orders(key, 0, 3, 10))
    second = np.asarray(_sweep_orders(key, 1, 3, 10))
    for row in np.concatenate([first, second]):
        assert sorted(row.tolist()) == list(range(10))
    assert not np.array_equal(first, second)
    assert not np.array_equal(first[0], first[1])


def test_chain_one_sweep_hand():
    # Three layers of two units. J[0] couples unit 0 to unit 1 with 1, J[1] unit 1 to unit 0
    # with -1, and J[2] is zero.
    couplings = np.zeros((3, 2, 2), dtype=np.float32)
    couplings[0, 0, 1] = 1.0
    couplings[1, 1, 0] = -1.0
    s0 = np.array([[[1, 1], [-1, 1], [1, -1]]], dtype=np.float32)
    # Synchronous, lam = 0.5:
    #   layer 0: h = (0, 1) + 0.5 (-1, 1) = (-0.5, 1.5)
    #   layer 1: h = (-1, 0) + 0.5 ((1, 1) + (1, -1)) = (0, 0), so (+1, +1) by sign(0) = +1
    #   layer 2: h = 0.5 (-1, 1)
    synchronous = run_chain_dynamics(couplings, 0.5, s0, schedule="synchronous", sweeps=1)
    assert synchronous.states.tolist() == [[[-1, 1], [1, 1], [-1, 1]]]
    # Sequential, lam = 0.5:
    #   layer 0: as above, (-1, 1)
    #   layer 1: h = (-1, 0) + 0.5 ((-1, 1) + (1, -1)) = (-1, 0), using the new layer 0
    #   layer 2: h = 0.5 * (new layer 1) = 0.5 (-1, 1)
    sequential = run_chain_dynamics(couplings, 0.5, s0, schedule="sequential", sweeps=1)
    assert sequential.states.tolist() == [[[-1, 1], [-1, 1], [-1, 1]]]


def test_chain_swap_versus_sequential():
    # Zero couplings, lam = 1: synchronous layers copy each other and swap forever, while the
    # sequential sweep copies layer 1 into layer 0, then layer 0 into layer 1, and stops.
    couplings = np.zeros((2, 2, 2), dtype=np.float32)
    s0 = np.array([[[1, -1], [-1, 1]]], dtype=np.float32)
    synchronous = run_chain_dynamics(couplings, 1.0, s0, schedule="synchronous", sweeps=7)
    assert synchronous.states.tolist() == [[[-1, 1], [1, -1]]]
    assert synchronous.converged.tolist() == [False]
    sequential = run_chain_dynamics(couplings, 1.0, s0, schedule="sequential", sweeps=7)
    assert sequential.states.tolist() == [[[-1, 1], [-1, 1]]]
    assert sequential.first_fixed_sweep.tolist() == [1]


# ------------------------------------------------------------------------ accessibility


def test_accessibility_rises_with_self_coupling():
    # Measured at n = 100, 8 x 8 runs: synchronous 0.0 / 0.19 / 1.0 and asynchronous
    # 0.0 / 0.83 / 1.0 at j_d = 0 / 0.4 / 1.5 (16 x 16 runs gave 0.0 / 0.2 / 1.0 and 0 / 0.83 / 1).
    values = [0.0, 0.4, 1.5]
    sync = accessibility(jax.random.key(0), 100, values, schedule="synchronous", sweeps=100,
                         starts=8, samples=8)
    asyn = accessibility(jax.random.key(0), 100, values, schedule="asynchronous", sweeps=100,
                         starts=8, samples=8)
    assert sync.values.tolist() == pytest.approx(values)
    assert float(sync.fraction[0]) <= 0.1
    assert float(sync.fraction[2]) >= 0.9
    assert float(asyn.fraction[0]) <= 0.1
    assert float(asyn.fraction[2]) >= 0.9
    # The asynchronous threshold is lower: at j_d = 0.4 it converges far more often.
    assert float(asyn.fraction[1]) - float(sync.fraction[1]) >= 0.3
    assert math.isnan(float(sync.mean_first_fixed_sweep[0]))
    assert 1.0 <= float(sync.mean_first_fixed_sweep[2]) <= 100.0


def test_accessibility_zero_start():
    # From s = 0 the synchronous runs of one coupling matrix are identical, so each per-sample
    # fraction is 0 or 1.
    curve = accessibility(jax.random.key(1), 60, [0.0, 1.5], schedule="synchronous",
                          sweeps=100, starts=3, samples=6, init="zero")
    assert float(curve.fraction[0]) <= 0.2
    assert float(curve.fraction[1]) >= 0.8
    assert np.all(np.isfinite(np.asarray(curve.standard_error)))


def test_chain_accessibility_lambda_trend():
    # Measured at n = 100, 8 x 8 runs. Sequential: 0 at lam = 0, 1 at lam = 3.
    # Synchronous from random starts: 0 at lam = 5, because strong lam makes the two layers
    # copy each other every sweep, a two-cycle wherever they differ.
    sequential = chain_accessibility(jax.random.key(0), 100, [0.0, 3.0], schedule="sequential",
                                     sweeps=100, starts=8, samples=8)
    assert float(sequential.fraction[0]) <= 0.1
    assert float(sequential.fraction[1]) >= 0.9
    synchronous = chain_accessibility(jax.random.key(0), 100, [5.0], schedule="synchronous",
                                      sweeps=100, starts=8, samples=8)
    assert float(synchronous.fraction[0]) == 0.0


# -------------------------------------------------------------------------- bad input


def test_bad_couplings():
    with pytest.raises(ValueError, match="square matrix"):
        count_fixed_points(np.zeros((3, 4)), 0.0)
    with pytest.raises(ValueError, match="zero diagonal"):
        count_fixed_points(np.eye(3), 0.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        count_fixed_points(np.array([[0.0, np.nan], [1.0, 0.0]]), 0.0)
    with pytest.raises(TypeError, match="must be real"):
        count_fixed_points(np.zeros((2, 2), dtype=complex), 0.0)
    with pytest.raises(TypeError, match="real number or array"):
        count_fixed_points("J", 0.0)
    with pytest.raises(ValueError, match="at most 20"):
        count_fixed_points(np.zeros((21, 21)), 0.0)
    with pytest.raises(ValueError, match="at most 20"):
        enumerate_fixed_points(np.zeros((21, 21)), 0.0)


def test_bad_couplings_under_jit():
    with pytest.raises(RuntimeError, match="zero diagonal"):
        jax.jit(lambda c: count_fixed_points(c, 0.0))(jnp.eye(3))


def test_bad_self_coupling_and_margin():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        count_fixed_points(J3, np.ones(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        count_fixed_points(J3, np.inf)
    with pytest.raises(ValueError, match="`margin` must be a scalar"):
        count_fixed_points(J3, 0.0, margin=np.ones(2))
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        expected_fixed_points(5, np.ones(3))
    with pytest.raises(ValueError, match="`n` must be at least 2"):
        expected_fixed_points(1, 0.0)
    with pytest.raises(TypeError, match="`n` must be an int"):
        expected_fixed_points(10.0, 0.0)
    with pytest.raises(TypeError, match="`finite_size` must be a bool"):
        expected_fixed_points(10, 0.0, finite_size=1)


def test_bad_sampling_arguments():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`n` must be at most 20"):
        mean_fixed_point_count(key, 21, 0.0)
    with pytest.raises(ValueError, match="`samples` must be at least 1"):
        mean_fixed_point_count(key, 10, 0.0, samples=0)
    with pytest.raises(ValueError, match="`key` is required"):
        mean_fixed_point_count(None, 10, 0.0)
    with pytest.raises(TypeError, match="`key` must be a JAX PRNG key"):
        random_couplings(0, 10)
    with pytest.raises(ValueError, match=r"`density` must be in \(0, 1\]"):
        random_couplings(key, 10, density=0.0)
    with pytest.raises(TypeError, match="`density` must be a float"):
        random_couplings(key, 10, density="half")


def test_bad_dynamics_arguments():
    s0 = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="`schedule` must be one of"):
        run_sign_dynamics(J3, JD3, s0, schedule="random", sweeps=1)
    with pytest.raises(TypeError, match="`schedule` must be a str"):
        run_sign_dynamics(J3, JD3, s0, schedule=None, sweeps=1)
    with pytest.raises(ValueError, match="`key` is required for schedule='asynchronous'"):
        run_sign_dynamics(J3, JD3, s0, schedule="asynchronous", sweeps=1)
    with pytest.raises(ValueError, match="`sweeps` must be at least 1"):
        run_sign_dynamics(J3, JD3, s0, schedule="synchronous", sweeps=0)
    with pytest.raises(ValueError, match=r"`s0` must have shape \('batch', 3\)"):
        run_sign_dynamics(J3, JD3, np.ones(3), schedule="synchronous", sweeps=1)
    with pytest.raises(ValueError, match="entries must be in"):
        run_sign_dynamics(J3, JD3, 0.5 * s0, schedule="synchronous", sweeps=1)
    with pytest.raises(ValueError, match="entries must be in"):
        is_fixed_point(J3, JD3, 0.0 * s0)
    with pytest.raises(ValueError, match="`schedule` must be one of"):
        run_chain_dynamics(np.zeros((2, 3, 3)), 1.0, np.ones((1, 2, 3)),
                           schedule="asynchronous", sweeps=1)
    with pytest.raises(ValueError, match=r"shape \(layers, n, n\)"):
        run_chain_dynamics(np.zeros((3, 3)), 1.0, np.ones((1, 2, 3)), schedule="sequential",
                           sweeps=1)
    with pytest.raises(ValueError, match="`lam` contains NaN"):
        run_chain_dynamics(np.zeros((2, 3, 3)), np.nan, np.ones((1, 2, 3)),
                           schedule="sequential", sweeps=1)


def test_bad_accessibility_arguments():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`init` must be one of"):
        accessibility(key, 10, [0.0], schedule="synchronous", init="ones")
    with pytest.raises(ValueError, match="`j_d_values` must be a non-empty 1-D"):
        accessibility(key, 10, [], schedule="synchronous")
    with pytest.raises(ValueError, match="`starts` must be at least 1"):
        accessibility(key, 10, [0.0], schedule="synchronous", starts=0)
    with pytest.raises(ValueError, match="`schedule` must be one of"):
        chain_accessibility(key, 10, [0.0], schedule="asynchronous")
    with pytest.raises(ValueError, match="`layers` must be at least 2"):
        chain_accessibility(key, 10, [0.0], layers=1, schedule="sequential")
    with pytest.raises(ValueError, match="`lambdas` contains NaN"):
        chain_accessibility(key, 10, [0.0, np.nan], schedule="sequential")
