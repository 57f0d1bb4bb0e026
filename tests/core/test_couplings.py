"""Dense and ELL couplings: products, rule increments, projection and layout conversion."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import darnax_core as dc
import darnax_core._couplings as couplings_module
import darnax_core._native as native_module

SIZES = [(5, 7), (50, 40), (300, 300)]
DENSITIES = [0.01, 0.1, 0.5, 1.0]
BATCH = 4


def random_case(d: int, k: int, density: float, seed: int):
    """Return a float32 weight, a Bernoulli mask, a +-1 input and a signal, all from numpy."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((d, k)).astype(np.float32)
    mask = rng.random((d, k)) < density
    x = np.where(rng.random((BATCH, d)) < 0.5, -1.0, 1.0).astype(np.float32)
    signal = rng.standard_normal((BATCH, k)).astype(np.float32)
    return weight, mask, x, signal


def assert_relative(actual, expected, tol=1e-5):
    """Check each entry within ``tol`` relative to the largest reference entry (or 1e-30 when all are 0)."""
    actual = np.asarray(actual, np.float64)
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("d, k", SIZES)
@pytest.mark.parametrize("density", DENSITIES)
def test_ell_product_and_outer(d, k, density):
    weight, mask, x, signal = random_case(d, k, density, seed=d * 1000 + int(density * 100))
    masked = np.where(mask, weight, 0.0).astype(np.float64)
    ell = dc.ell_from_dense(jnp.asarray(weight), jnp.asarray(mask))
    assert ell.in_features == d
    assert ell.out_features == k
    assert ell.nnz == int(mask.sum())

    # Field x @ (W * mask), reference in float64.
    assert_relative(ell(jnp.asarray(x)), x.astype(np.float64) @ masked)

    # Rule increment x.T @ signal / sqrt(n d), restricted to the mask.
    n = 3.0
    increment = ell.outer(jnp.asarray(x), jnp.asarray(signal), jnp.float32(n))
    assert increment.shape == ell.values.shape
    scattered = eqx.tree_at(lambda c: c.values, ell, increment).to_dense()
    expected = np.where(mask, x.T.astype(np.float64) @ signal / np.sqrt(n * d), 0.0)
    assert_relative(scattered, expected)


@pytest.mark.parametrize("d, k", SIZES)
@pytest.mark.parametrize("density", [0.1, 1.0])
def test_dense_product_and_outer(d, k, density):
    weight, mask, x, signal = random_case(d, k, density, seed=d + 7)
    coupling = dc.DenseCoupling(jnp.asarray(np.where(mask, weight, 0.0)), jnp.asarray(mask))
    masked = np.where(mask, weight, 0.0).astype(np.float64)
    assert_relative(coupling(jnp.asarray(x)), x.astype(np.float64) @ masked)
    increment = coupling.outer(jnp.asarray(x), jnp.asarray(signal), jnp.float32(BATCH))
    expected = np.where(mask, x.T.astype(np.float64) @ signal / np.sqrt(BATCH * d), 0.0)
    assert_relative(increment, expected)
    assert coupling.nnz == int(mask.sum())


@pytest.mark.parametrize("d, k", SIZES)
@pytest.mark.parametrize("density", DENSITIES)
def test_ell_to_dense_round_trip(d, k, density):
    weight, mask, _, _ = random_case(d, k, density, seed=d + 11)
    ell = dc.ell_from_dense(jnp.asarray(weight), jnp.asarray(mask))
    dense = np.asarray(ell.to_dense())
    np.testing.assert_array_equal(dense, np.where(mask, weight, 0.0))
    again = dc.ell_from_dense(jnp.asarray(dense), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(again.values), np.asarray(ell.values))
    np.testing.assert_array_equal(np.asarray(again.index), np.asarray(ell.index))
    np.testing.assert_array_equal(np.asarray(again.valid), np.asarray(ell.valid))


def test_ell_layout_by_hand():
    # Column 0 has senders {1, 2}, column 1 has {0}, column 2 has none. Fan-in is 2, so receiver 1
    # gets one padded slot and receiver 2 two; padded slots point at sender 0 and hold 0.
    weight = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    mask = jnp.array([[False, True, False], [True, False, False], [True, False, False]])
    ell = dc.ell_from_dense(weight, mask)
    assert np.asarray(ell.values).tolist() == [[4.0, 7.0], [2.0, 0.0], [0.0, 0.0]]
    assert np.asarray(ell.index).tolist() == [[1, 2], [0, 0], [0, 0]]
    assert np.asarray(ell.valid).tolist() == [[True, True], [True, False], [False, False]]
    # x = [1, 10, 100]: field = [10*4 + 100*7, 1*2, 0] = [740, 2, 0].
    assert np.asarray(ell(jnp.array([[1.0, 10.0, 100.0]]))).tolist() == [[740.0, 2.0, 0.0]]


def test_ell_empty_mask():
    # Density 0.01 on a 5x7 matrix usually draws no entry at all; the layout keeps one padded slot.
    mask = jnp.zeros((5, 7), bool)
    ell = dc.ell_from_dense(jnp.ones((5, 7)), mask)
    assert ell.values.shape == (7, 1)
    assert ell.nnz == 0
    np.testing.assert_array_equal(np.asarray(ell(jnp.ones((2, 5)))), np.zeros((2, 7)))
    np.testing.assert_array_equal(np.asarray(ell.to_dense()), np.zeros((5, 7)))


@pytest.mark.parametrize("density", [0.1, 0.5])
def test_ell_project_zeroes_padding(density):
    _, mask, _, _ = random_case(50, 40, density, seed=3)
    ell = dc.ell_from_dense(jnp.ones((50, 40)), jnp.asarray(mask))
    assert not np.all(np.asarray(ell.valid)), "the case needs padded slots"
    filled = eqx.tree_at(lambda c: c.values, ell, jnp.full(ell.values.shape, 2.5))
    projected = filled.project()
    valid = np.asarray(ell.valid)
    np.testing.assert_array_equal(np.asarray(projected.values), np.where(valid, 2.5, 0.0))
    np.testing.assert_array_equal(np.asarray(projected.index), np.asarray(ell.index))


@pytest.mark.parametrize("density", [0.1, 0.5])
def test_dense_project_zeroes_masked(density):
    _, mask, _, _ = random_case(50, 40, density, seed=4)
    weight = np.random.default_rng(5).standard_normal((50, 40)).astype(np.float32)
    coupling = dc.DenseCoupling(jnp.asarray(weight), jnp.asarray(mask))
    projected = np.asarray(coupling.project().weight)
    np.testing.assert_array_equal(projected, np.where(mask, weight, 0.0))
    unmasked = dc.DenseCoupling(jnp.asarray(weight))
    assert unmasked.project() is unmasked
    np.testing.assert_array_equal(np.asarray(unmasked.to_dense()), weight)


def test_layer_kernel_choice(getkey):
    # "auto" stores couplings with density <= 0.05 as ELL and those above 0.25 as dense, with or
    # without the native kernels; "dense" and "ell" force the layout.
    assert isinstance(dc.BinaryLayer(20, key=getkey(), density=0.05).coupling, dc.EllCoupling)
    assert isinstance(dc.BinaryLayer(20, key=getkey(), density=0.3).coupling, dc.DenseCoupling)
    assert isinstance(dc.BinaryLayer(20, key=getkey(), density=0.5, kernel="ell").coupling, dc.EllCoupling)
    assert isinstance(dc.Linear(4, 20, key=getkey(), density=0.01, kernel="dense").coupling, dc.DenseCoupling)
    assert isinstance(dc.Linear(4, 20, key=getkey(), kernel="ell").coupling, dc.EllCoupling)


@pytest.mark.parametrize("d, k", SIZES)
@pytest.mark.parametrize("density", [0.1, 1.0])
def test_ell_xla_path_matches(d, k, density):
    # The pure-XLA ELL products (used when the native kernels are unavailable) against float64.
    weight, mask, _, signal = random_case(d, k, density, seed=d + 23)
    x = np.random.default_rng(d).standard_normal((BATCH, d)).astype(np.float32)
    ell = dc.ell_from_dense(jnp.asarray(weight), jnp.asarray(mask))
    field = couplings_module._xla_ell_matmul(jnp.asarray(x), ell.index, ell.values, ell.fan_in)
    assert_relative(field, x.astype(np.float64) @ np.where(mask, weight, 0.0))
    assert_relative(ell(jnp.asarray(x)), x.astype(np.float64) @ np.where(mask, weight, 0.0))
    products = couplings_module._xla_ell_outer(jnp.asarray(x), ell.index, jnp.asarray(signal), ell.fan_in)
    scattered = eqx.tree_at(lambda c: c.values, ell, products).to_dense()
    assert_relative(scattered, np.where(mask, x.T.astype(np.float64) @ signal, 0.0))


def test_ell_products_under_jit():
    weight, mask, x, signal = random_case(50, 40, 0.1, seed=8)
    ell = dc.ell_from_dense(jnp.asarray(weight), jnp.asarray(mask))
    field = jax.jit(lambda c, v: c(v))(ell, jnp.asarray(x))
    assert_relative(field, x.astype(np.float64) @ np.where(mask, weight, 0.0))
    increment = jax.jit(lambda c, v, s: c.outer(v, s, jnp.float32(BATCH)))(ell, jnp.asarray(x), jnp.asarray(signal))
    scattered = eqx.tree_at(lambda c: c.values, ell, increment).to_dense()
    assert_relative(scattered, np.where(mask, x.T.astype(np.float64) @ signal / np.sqrt(BATCH * 50), 0.0))


def test_ell_constructor_checks():
    values = jnp.ones((2, 2))
    with pytest.raises(ValueError, match=r"`values`, `index` and `valid` must share one 2-D shape, got \(2, 2\), \(2, 3\)"):
        dc.EllCoupling(values, jnp.zeros((2, 3), jnp.int32), jnp.ones((2, 2), bool), 3)
    with pytest.raises(ValueError, match="`valid` must list each receiver's existing senders first, then padding"):
        dc.EllCoupling(values, jnp.zeros((2, 2), jnp.int32), jnp.array([[False, True], [True, True]]), 3)
    with pytest.raises(ValueError, match=r"`index` values must be in \[0, 3\), got \[0, 3\]"):
        dc.EllCoupling(values, jnp.array([[0, 3], [1, 2]]), jnp.ones((2, 2), bool), 3)
    with pytest.raises(ValueError, match=r"`index` values must be in \[0, 3\), got \[-1, 2\]"):
        dc.EllCoupling(values, jnp.array([[0, -1], [1, 2]]), jnp.ones((2, 2), bool), 3)


@pytest.mark.parametrize("kernel", ["dense", "ell"])
def test_recurrent_diagonal_empty(getkey, kernel):
    for density in (0.3, 1.0):
        layer = dc.BinaryLayer(12, key=getkey(), density=density, kernel=kernel)
        dense = np.asarray(layer.coupling.to_dense())
        assert np.all(np.diag(dense) == 0.0)
        assert np.count_nonzero(dense) > 0


@pytest.mark.parametrize("kernel", ["dense", "ell"])
def test_kernels_agree_for_same_key(getkey, kernel):
    # The storage changes the layout, never the drawn couplings.
    key = getkey()
    reference = dc.Linear(30, 20, key=key, density=0.2, kernel="dense").coupling.to_dense()
    other = dc.Linear(30, 20, key=key, density=0.2, kernel=kernel).coupling.to_dense()
    np.testing.assert_array_equal(np.asarray(other), np.asarray(reference))


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_density_out_of_range(getkey, density):
    with pytest.raises(ValueError, match=r"`density` must be in \(0, 1\]"):
        dc.BinaryLayer(4, key=getkey(), density=density)
    with pytest.raises(ValueError, match=r"`density` must be in \(0, 1\]"):
        dc.Linear(3, 4, key=getkey(), density=density)


def test_density_wrong_type(getkey):
    with pytest.raises(TypeError, match="`density` must be a number"):
        dc.BinaryLayer(4, key=getkey(), density="0.5")
    with pytest.raises(TypeError, match="`density` must be a number"):
        dc.Linear(3, 4, key=getkey(), density=True)


def test_unknown_kernel(getkey):
    with pytest.raises(ValueError, match=r"`kernel` must be one of \('auto', 'dense', 'ell'\), got 'csr'"):
        dc.BinaryLayer(4, key=getkey(), kernel="csr")
    with pytest.raises(ValueError, match="`kernel` must be one of"):
        dc.Linear(3, 4, key=getkey(), kernel="sparse")
    with pytest.raises(ValueError, match="`kernel` must be one of"):
        dc.TanhLayer(4, key=getkey(), kernel="")


@pytest.mark.parametrize("batch", [1, 15, 16, 17, 33])
def test_ell_batch_sizes(batch):
    # The native kernels process the batch in blocks of 16 and finish the remainder in a plain loop.
    weight, mask, _, _ = random_case(30, 20, 0.2, seed=batch)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 30)).astype(np.float32)
    signal = rng.standard_normal((batch, 20)).astype(np.float32)
    ell = dc.ell_from_dense(jnp.asarray(weight), jnp.asarray(mask))
    assert_relative(ell(jnp.asarray(x)), x.astype(np.float64) @ np.where(mask, weight, 0.0))
    increment = ell.outer(jnp.asarray(x), jnp.asarray(signal), jnp.float32(batch))
    scattered = eqx.tree_at(lambda c: c.values, ell, increment).to_dense()
    assert_relative(scattered, np.where(mask, x.T.astype(np.float64) @ signal / np.sqrt(batch * 30), 0.0))


def test_ell_vmap():
    weight, mask, _, _ = random_case(30, 20, 0.2, seed=2)
    ell = dc.ell_from_dense(jnp.asarray(weight), jnp.asarray(mask))
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((3, 4, 30)).astype(np.float32))
    stacked = jax.vmap(ell)(xs)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(stacked[i]), np.asarray(ell(xs[i])), rtol=1e-6, atol=1e-6)
