"""Local learning rules on tiny arrays, checked against values worked out by hand."""

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import darnax_core as dc

# Shared perceptron case: batch 3, sender width d = 2, receiver width k = 2.
X3 = jnp.array([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
TARGET3 = jnp.array([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
FIELD3 = jnp.array([[0.5, -2.0], [0.5, 1.0], [0.0, 0.0]])
# target * field = [[0.5, 2.0], [-0.5, 1.0], [0.0, 0.0]].


def assert_close(actual, expected, tol=1e-6):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=np.float64), rtol=tol, atol=tol)


def test_perceptron_margin_ties_are_errors():
    # Batch 2 (the first two rows), margin 1. target * field = [[0.5, 2.0], [-0.5, 1.0]].
    # M = [t*f <= 1] = [[1, 0], [1, 1]]; the entry 1.0 == margin is a tie and counts as an error.
    # signal = M * target = [[1, 0], [-1, 1]].
    # x.T @ signal: row 0 (x[:, 0] = [1, 1]) -> [1 - 1, 0 + 1] = [0, 1];
    #               row 1 (x[:, 1] = [-1, 1]) -> [-1 - 1, 0 + 1] = [-2, 1].
    # Normalisation 1 / sqrt(n d) = 1 / sqrt(2 * 2) = 1/2.
    dw = dc.perceptron_rule(X3[:2], TARGET3[:2], FIELD3[:2], 1.0)
    assert dw.shape == (2, 2)
    assert_close(dw, [[0.0, 0.5], [-1.0, 0.5]])


def test_perceptron_margin_just_below_tie():
    # Margin 0.999: the entry t*f = 1.0 is now above the margin, so M = [[1, 0], [1, 0]] and
    # signal = [[1, 0], [-1, 0]]. x.T @ signal = [[0, 0], [-2, 0]], divided by 2.
    dw = dc.perceptron_rule(X3[:2], TARGET3[:2], FIELD3[:2], 0.999)
    assert_close(dw, [[0.0, 0.0], [-1.0, 0.0]])


def test_perceptron_per_unit_margin():
    # margin = [0, 2] per receiver unit. Column 0: t*f = [0.5, -0.5] <= 0 -> [0, 1].
    # Column 1: t*f = [2.0, 1.0] <= 2 -> [1, 1] (2.0 is a tie).
    # M = [[0, 1], [1, 1]], signal = M * target = [[0, -1], [-1, 1]].
    # x.T @ signal: row 0 ([1, 1]) -> [-1, 0]; row 1 ([-1, 1]) -> [-1, 2]. Divided by 2.
    dw = dc.perceptron_rule(X3[:2], TARGET3[:2], FIELD3[:2], jnp.array([0.0, 2.0]))
    assert_close(dw, [[-0.5, 0.0], [-0.5, 1.0]])


def test_perceptron_batch3_no_gate():
    # Margin 1. M = [[1, 0], [1, 1], [1, 1]] (row 2 has t*f = 0 <= 1), signal = [[1, 0], [-1, 1], [1, 1]].
    # x.T @ signal: row 0 (x[:, 0] = [1, 1, -1]) -> [1 - 1 - 1, 0 + 1 - 1] = [-1, 0];
    #               row 1 (x[:, 1] = [-1, 1, 1]) -> [-1 - 1 + 1, 0 + 1 + 1] = [-1, 2].
    # Normalisation 1 / sqrt(3 * 2) = 1 / sqrt(6).
    dw = dc.perceptron_rule(X3, TARGET3, FIELD3, 1.0)
    s6 = math.sqrt(6.0)
    assert_close(dw, [[-1 / s6, 0.0], [-1 / s6, 2 / s6]])


def test_perceptron_sample_gate():
    # gate (3, 1) = [1, 0, 1] drops sample 1. Gated signal = [[1, 0], [0, 0], [1, 1]].
    # x.T @ gated: row 0 ([1, 1, -1]) -> [1 + 0 - 1, 0 + 0 - 1] = [0, -1];
    #              row 1 ([-1, 1, 1]) -> [-1 + 0 + 1, 0 + 0 + 1] = [0, 1].
    # Two samples count: 1 / sqrt(2 * 2) = 1/2 (not 1 / sqrt(6)).
    gate = jnp.array([[1.0], [0.0], [1.0]])
    dw = dc.perceptron_rule(X3, TARGET3, FIELD3, 1.0, gate=gate)
    assert_close(dw, [[0.0, -0.5], [0.0, 0.5]])


def test_perceptron_unit_gate():
    # gate (3, 2) = [[1, 0], [0, 0], [0, 1]]: rows 0 and 2 have an open entry, so n = 2.
    # Gated signal = [[1, 0], [0, 0], [0, 1]].
    # x.T @ gated: row 0 ([1, 1, -1]) -> [1, -1]; row 1 ([-1, 1, 1]) -> [-1, 1]. Divided by 2.
    gate = jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    dw = dc.perceptron_rule(X3, TARGET3, FIELD3, 1.0, gate=gate)
    assert_close(dw, [[0.5, -0.5], [-0.5, 0.5]])


def test_perceptron_closed_gate_is_zero():
    # No sample counts: the increment is zero, not NaN (the count is clamped to 1).
    dw = dc.perceptron_rule(X3, TARGET3, FIELD3, 1.0, gate=jnp.zeros((3, 1)))
    assert np.all(np.isfinite(np.asarray(dw)))
    assert_close(dw, np.zeros((2, 2)))


def test_tanh_rule_values():
    # x = [[1, 2], [1, 0]], target = [[1, -1], [-1, -1]], field = [[0, atanh(0.5)], [0, 0]].
    # o = tanh(field) = [[0, 0.5], [0, 0]]; y - o = [[1, -1.5], [-1, -1]]; 1 - o^2 = [[1, 0.75], [1, 1]].
    # tolerance 0.5: every |y - o| >= 0.5, so signal = [[1, -1.125], [-1, -1]].
    # x.T @ signal: row 0 ([1, 1]) -> [0, -2.125]; row 1 ([2, 0]) -> [2, -2.25].
    # Normalisation 1 / sqrt(2 * 2) = 1/2.
    x = jnp.array([[1.0, 2.0], [1.0, 0.0]])
    target = jnp.array([[1.0, -1.0], [-1.0, -1.0]])
    field = jnp.array([[0.0, math.atanh(0.5)], [0.0, 0.0]])
    dw = dc.tanh_rule(x, target, field, 0.5)
    assert_close(dw, [[0.0, -1.0625], [1.0, -1.125]])


def test_tanh_rule_tolerance_tie():
    # tolerance 1.0: |y - o| = [[1, 1.5], [1, 1]] are all >= 1 (1.0 is a tie and stays active).
    # tolerance 1.2: only the 1.5 entry stays, signal = [[0, -1.125], [0, 0]], so
    # x.T @ signal = [[0, -1.125], [0, -2.25]] and the result is half of it.
    x = jnp.array([[1.0, 2.0], [1.0, 0.0]])
    target = jnp.array([[1.0, -1.0], [-1.0, -1.0]])
    field = jnp.array([[0.0, math.atanh(0.5)], [0.0, 0.0]])
    assert_close(dc.tanh_rule(x, target, field, 1.0), [[0.0, -1.0625], [1.0, -1.125]])
    assert_close(dc.tanh_rule(x, target, field, 1.2), [[0.0, -0.5625], [0.0, -1.125]])


def test_truncated_tanh_rule_values():
    # margin 0.5, tolerance 0.6. signal = [y h <= 0.5] [1 - |tanh h| < 0.6] y.
    # Sample 0: h = [0, atanh(0.5)], y = [1, -1]: y h = [0, -0.549] -> errors [1, 1];
    #   1 - |tanh h| = [1, 0.5] -> [0, 1]; signal = [0, -1].
    # Sample 1: h = [atanh(0.9), -3], y = [-1, -1]: y h = [-1.47, 3] -> errors [1, 0];
    #   1 - |tanh h| = [0.1, 0.005] -> [1, 1]; signal = [-1, 0].
    # x.T @ signal with x = [[1, 2], [1, 0]]: row 0 ([1, 1]) -> [-1, -1]; row 1 ([2, 0]) -> [0, -2].
    # Divided by sqrt(2 * 2) = 2.
    x = jnp.array([[1.0, 2.0], [1.0, 0.0]])
    target = jnp.array([[1.0, -1.0], [-1.0, -1.0]])
    field = jnp.array([[0.0, math.atanh(0.5)], [math.atanh(0.9), -3.0]])
    dw = dc.truncated_tanh_rule(x, target, field, 0.5, 0.6)
    assert_close(dw, [[-0.5, -0.5], [0.0, -1.0]])


def test_cross_entropy_rule_values():
    # target (+-1) = [[1, -1], [-1, 1]] -> one-hot (t + 1)/2 = [[1, 0], [0, 1]].
    # field = [[0, 0], [ln 3, 0]] -> softmax = [[1/2, 1/2], [3/4, 1/4]].
    # signal = one-hot - softmax = [[0.5, -0.5], [-0.75, 0.75]].
    # x.T @ signal with x = [[1, 2], [1, 0]]: row 0 ([1, 1]) -> [-0.25, 0.25]; row 1 ([2, 0]) -> [1, -1].
    # Normalisation 1 / (n sqrt(d)) = 1 / (2 sqrt(2)), where the perceptron rules use 1 / sqrt(n d) = 1/2.
    x = jnp.array([[1.0, 2.0], [1.0, 0.0]])
    target = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    field = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    dw = dc.cross_entropy_rule(x, target, field)
    norm = 2.0 * math.sqrt(2.0)
    assert_close(dw, [[-0.25 / norm, 0.25 / norm], [1.0 / norm, -1.0 / norm]])


def test_cross_entropy_sample_gate():
    # gate = [1, 0]: only sample 0 counts, n = 1. signal = [[0.5, -0.5], [0, 0]].
    # x.T @ signal: row 0 -> [0.5, -0.5]; row 1 -> [1, -1]. Divided by 1 * sqrt(2).
    x = jnp.array([[1.0, 2.0], [1.0, 0.0]])
    target = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    field = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    dw = dc.cross_entropy_rule(x, target, field, gate=jnp.array([[1.0], [0.0]]))
    r2 = math.sqrt(2.0)
    assert_close(dw, [[0.5 / r2, -0.5 / r2], [1.0 / r2, -1.0 / r2]])


def test_linear_edge_matches_rules(getkey):
    # A dense Linear edge returns the same increment as the rule functions, for both rules.
    x = jnp.array([[1.0, 2.0], [1.0, 0.0]])
    target = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    field = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    n = jnp.float32(2.0)
    perceptron = dc.Linear(2, 2, key=getkey(), margin=0.5, kernel="dense")
    (inc,) = perceptron.increments(x, target, field, None, n)
    assert_close(inc, dc.perceptron_rule(x, target, field, 0.5))
    cross_entropy = dc.Linear(2, 2, key=getkey(), kernel="dense", rule="cross_entropy")
    (inc,) = cross_entropy.increments(x, target, field, None, n)
    assert_close(inc, dc.cross_entropy_rule(x, target, field))


def test_frozen_edge_has_no_increment(getkey):
    x = jnp.ones((2, 3))
    edge = dc.Linear(3, 2, key=getkey(), trainable=False)
    assert edge.increments(x, jnp.ones((2, 2)), jnp.zeros((2, 2)), None, jnp.float32(2)) == ()
    assert edge.trainable_leaves() == ()


def test_ell_edge_matches_dense_rule(getkey):
    # A sparse edge's increment, scattered back to (d, k), equals the dense rule restricted to the mask.
    key = getkey()
    edge = dc.Linear(6, 4, key=key, margin=0.3, density=0.5, kernel="ell")
    x = dc.sign(jnp.sin(jnp.arange(18.0).reshape(3, 6)))
    target = dc.sign(jnp.cos(jnp.arange(12.0).reshape(3, 4)))
    field = edge(x)
    (inc,) = edge.increments(x, target, field, None, jnp.float32(3))
    scattered = eqx.tree_at(lambda c: c.values, edge.coupling, inc).to_dense()
    mask = np.asarray(edge.coupling.to_dense() != 0)
    expected = np.where(mask, np.asarray(dc.perceptron_rule(x, target, field, 0.3)), 0.0)
    assert_close(scattered, expected)


def test_rule_shape_mismatch():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"`target` and `field` must have the same shape, got \(2, 2\) and \(2, 3\)"):
        dc.perceptron_rule(x, jnp.ones((2, 2)), jnp.ones((2, 3)), 0.0)
    with pytest.raises(ValueError, match=r"`x` and `target` must have the same batch size, got 2 and 3"):
        dc.perceptron_rule(x, jnp.ones((3, 2)), jnp.ones((3, 2)), 0.0)
    with pytest.raises(ValueError, match="same shape"):
        dc.tanh_rule(x, jnp.ones((2, 2)), jnp.ones((2, 1)), 0.1)
    with pytest.raises(ValueError, match="same shape"):
        dc.truncated_tanh_rule(x, jnp.ones((2, 2)), jnp.ones((1, 2)), 0.0, 0.1)
    with pytest.raises(ValueError, match="same batch size"):
        dc.cross_entropy_rule(x, jnp.ones((4, 2)), jnp.ones((4, 2)))


def test_rule_gate_wrong_rank():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"`gate` must have shape \(batch, 1\) or \(batch, units\) with batch=2, got \(2,\)"):
        dc.perceptron_rule(x, jnp.ones((2, 2)), jnp.ones((2, 2)), 0.0, gate=jnp.ones((2,)))


def test_rule_gate_wrong_batch():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"`gate` must have shape \(batch, 1\) or \(batch, units\) with batch=2, got \(3, 1\)"):
        dc.perceptron_rule(x, jnp.ones((2, 2)), jnp.ones((2, 2)), 0.0, gate=jnp.ones((3, 1)))


def test_sign_zero_is_plus_one():
    h = jnp.array([-2.0, -0.0, 0.0, 1e-30, -1e-30])
    assert np.asarray(dc.sign(h)).tolist() == [-1.0, 1.0, 1.0, 1.0, -1.0]
    assert dc.sign(h).dtype == h.dtype
