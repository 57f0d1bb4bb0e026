"""The fast coupling layouts compute the same model as the dense reference layout.

Networks are built twice from one key, with ``kernel="dense"`` (masked dense matrices) and
``kernel="ell"`` (ELL layout, native kernels on CPU when they compile). The layout must not change
the drawn couplings, the phase states, the train-step increments or the metrics. The native ELL
kernels are also checked against the XLA gathers they replace.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import darnax_core as dc
from darnax_core import _native
from darnax_core._couplings import _xla_ell_matmul, _xla_ell_outer, _xla_sign_sweep_t

INPUT_DIM = 64
CLASSES = 4
BATCH = 8
SIZES = (30, 120, 300)
DENSITIES = (0.02, 0.1, 0.5, 1.0)
# Summation order differs between layouts, so a unit whose field is this close to zero may
# legitimately take the other sign.
TIE = 1e-4
# (hidden, density, schedule, depth): every size, density and schedule appears at least once, and
# the asynchronous schedule runs on a padded (sparse) layout as well as a full one. With one hidden
# layer the sequential and parallel sweeps of the ELL layout run as fused native calls.
CASES = [
    (30, 1.0, "asynchronous", 2),
    (120, 0.02, "asynchronous", 2),
    (120, 0.5, "sequential", 2),
    (300, 0.02, "parallel", 2),
    (300, 0.1, "sequential", 2),
    (120, 0.02, "sequential", 1),
    (300, 0.1, "parallel", 1),
    (30, 0.5, "asynchronous", 1),
]
PROTOCOL_SWEEPS = dict(warmup=1, clamped=4, free=4, eval_sweeps=4)


@functools.cache
def build(hidden: int, density: float, kernel: str, depth: int = 2) -> dc.Network:
    """Binary layers (two by default) joined ferromagnetically, sparse input and recurrent couplings.

    Cached: networks are immutable, and building one compiles eager operations for new shapes.
    """
    return dc.chain_model(
        jax.random.PRNGKey(hidden + int(density * 1000)),
        input_dim=INPUT_DIM,
        hidden=hidden,
        depth=depth,
        num_classes=CLASSES,
        j_d=0.5,
        lam=0.3,
        density_j=density,
        density_in=density,
        margin=0.5,
        margin_out=1.0,
        kernel=kernel,
    )


def couplings(net: dc.Network) -> list:
    return [module.coupling for module in net.modules() if hasattr(module, "coupling")]


def batch(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random((BATCH, INPUT_DIM), dtype=np.float32)
    y = rng.integers(0, CLASSES, BATCH).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def phases_and_step(net, opt_state, x, y, key, mask, *, protocol, optimizer):
    """Run the paper protocol's three phases as ``train_step_impl`` does, then the step itself.

    Returns the hidden states after each phase, each hidden row's field at those states (with
    the phase's senders), and the outputs of ``train_step_impl``.
    """
    labels = dc.encode_labels(y, net.num_classes)
    inputs = dc.input_messages(net, x)
    label_fields = dc.label_messages(net, labels)
    hidden = tuple(jnp.zeros((x.shape[0], size), x.dtype) for size in net.sizes[1:-1])
    plan = (("forward", protocol.warmup), ("all", protocol.clamped), (protocol.free_messages, protocol.free))
    states, fields = [], []
    for index, (messages, sweeps) in enumerate(plan):
        const = dc.constant_fields(net, inputs, label_fields, messages)
        hidden, _ = dc.run_phase(
            net, hidden, const, messages=messages, schedule=protocol.schedule, sweeps=sweeps, key=jax.random.fold_in(key, index)
        )
        states.append(hidden)
        fields.append(tuple(dc.row_field(net, row, hidden, const, messages) for row in range(1, net.num_hidden + 1)))
    new_net, _, metrics = dc.train_step_impl(net, opt_state, x, y, key, mask, protocol=protocol, optimizer=optimizer)
    return states, fields, new_net, metrics


@pytest.mark.parametrize("hidden", SIZES)
@pytest.mark.parametrize("density", DENSITIES)
def test_layout_same_couplings(hidden, density):
    dense, ell = build(hidden, density, "dense"), build(hidden, density, "ell")
    dense_couplings, ell_couplings = couplings(dense), couplings(ell)
    # Two recurrent J, W_in and W_out; W_out is always dense.
    assert [type(c).__name__ for c in ell_couplings] == ["EllCoupling", "EllCoupling", "EllCoupling", "DenseCoupling"]
    assert all(isinstance(c, dc.DenseCoupling) for c in dense_couplings)
    for reference, other in zip(dense_couplings, ell_couplings):
        assert other.nnz == reference.nnz
        np.testing.assert_array_equal(np.asarray(other.to_dense()), np.asarray(reference.to_dense()))


@pytest.mark.parametrize("hidden, density, schedule, depth", CASES)
def test_layout_same_phases_and_step(hidden, density, schedule, depth):
    protocol = dc.Protocol(schedule=schedule, **PROTOCOL_SWEEPS)
    optimizer = optax.sgd(1.0)  # the applied update is the rule increment itself
    run = jax.jit(functools.partial(phases_and_step, protocol=protocol, optimizer=optimizer))
    x, y = batch(hidden)
    key = jax.random.PRNGKey(7)
    mask = jnp.ones((BATCH,), bool)

    results = {}
    for kernel in ("dense", "ell"):
        net = build(hidden, density, kernel, depth)
        results[kernel] = (net, *run(net, dc.init_optimizer(optimizer, net), x, y, key, mask))
    dense_net, dense_states, dense_fields, dense_new, dense_metrics = results["dense"]
    ell_net, ell_states, ell_fields, ell_new, ell_metrics = results["ell"]

    flips = 0
    for phase in range(3):
        for layer in range(depth):
            reference = np.asarray(dense_states[phase][layer])
            other = np.asarray(ell_states[phase][layer])
            field = np.asarray(dense_fields[phase][layer])
            differ = reference != other
            # A unit may differ only where the dense field is a near-tie.
            assert np.all(np.abs(field[differ]) < TIE), f"phase {phase}, layer {layer}: sign differs away from a tie"
            flips += int(differ.sum())
            np.testing.assert_allclose(np.asarray(ell_fields[phase][layer]), field, rtol=1e-5, atol=1e-4)
    # No near-tie flip occurs for these seeds: the layouts give identical states.
    assert flips == 0

    for before_d, after_d, before_e, after_e in zip(couplings(dense_net), couplings(dense_new), couplings(ell_net), couplings(ell_new)):
        increment_d = np.asarray(after_d.to_dense()) - np.asarray(before_d.to_dense())
        increment_e = np.asarray(after_e.to_dense()) - np.asarray(before_e.to_dense())
        np.testing.assert_allclose(increment_e, increment_d, rtol=0, atol=1e-5)
        np.testing.assert_allclose(np.asarray(after_e.to_dense()), np.asarray(after_d.to_dense()), rtol=0, atol=1e-5)
    # The step learned something, so the comparison above is not between two zero increments.
    largest = max(float(np.abs(np.asarray(a.to_dense()) - np.asarray(b.to_dense())).max()) for a, b in zip(couplings(dense_new), couplings(dense_net)))
    assert largest > 1e-3

    assert int(ell_metrics.correct) == int(dense_metrics.correct)
    assert int(ell_metrics.count) == BATCH
    np.testing.assert_allclose(np.asarray(ell_metrics.unsat), np.asarray(dense_metrics.unsat), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ell_metrics.sweeps), np.asarray(dense_metrics.sweeps))


# (senders d, receivers k, density, batch): batches that are below, equal to and not a multiple
# of the native outer kernel's 16-sample chunk.
KERNEL_CASES = [(64, 30, 0.1, 5), (300, 300, 0.02, 16), (784, 200, 0.1, 37), (50, 40, 1.0, 1), (40, 60, 0.02, 33)]


def ell_case(d: int, k: int, density: float, batch_size: int, seed: int):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((d, k)).astype(np.float32)
    mask = rng.random((d, k)) < density
    ell = dc.ell_from_dense(jnp.asarray(weight), jnp.asarray(mask))
    x = rng.standard_normal((batch_size, d)).astype(np.float32)
    signal = rng.standard_normal((batch_size, k)).astype(np.float32)
    return np.where(mask, weight, 0.0).astype(np.float64), mask, ell, x, signal


def reference_outer(ell, x, signal) -> np.ndarray:
    """Return ``sum_b x[b, index[i, f]] signal[b, i]`` in float64, zero in padding slots."""
    index = np.asarray(ell.index)
    products = np.einsum("bkf,bk->kf", x.astype(np.float64)[:, index], signal.astype(np.float64))
    return np.where(np.asarray(ell.valid), products, 0.0)


@pytest.mark.parametrize("d, k, density, batch_size", KERNEL_CASES)
def test_xla_ell_against_float64(d, k, density, batch_size):
    masked, _, ell, x, signal = ell_case(d, k, density, batch_size, seed=d + k)
    field = np.asarray(_xla_ell_matmul(jnp.asarray(x), ell.index, ell.values, ell.fan_in))
    np.testing.assert_allclose(field, x.astype(np.float64) @ masked, rtol=1e-5, atol=1e-4)
    outer = np.asarray(_xla_ell_outer(jnp.asarray(x), ell.index, jnp.asarray(signal), ell.fan_in))
    np.testing.assert_allclose(outer, reference_outer(ell, x, signal), rtol=1e-5, atol=1e-4)


needs_native = pytest.mark.skipif(not _native.available(), reason="native ELL kernels unavailable (no C++ compiler or DARNAX_NATIVE=0)")


@needs_native
@pytest.mark.parametrize("d, k, density, batch_size", KERNEL_CASES)
def test_native_ell_matches_xla(d, k, density, batch_size):
    _, _, ell, x, signal = ell_case(d, k, density, batch_size, seed=d * k)
    x, signal = jnp.asarray(x), jnp.asarray(signal)
    native_field = np.asarray(_native.ell_matmul(x, ell.index, ell.values, ell.fan_in))
    xla_field = np.asarray(_xla_ell_matmul(x, ell.index, ell.values, ell.fan_in))
    assert native_field.shape == (batch_size, k)
    np.testing.assert_allclose(native_field, xla_field, rtol=1e-5, atol=1e-5)

    native_outer = np.asarray(_native.ell_outer(x, ell.index, signal, ell.fan_in))
    xla_outer = np.asarray(_xla_ell_outer(x, ell.index, signal, ell.fan_in))
    assert native_outer.shape == ell.values.shape
    np.testing.assert_allclose(native_outer, xla_outer, rtol=1e-5, atol=1e-5)
    # Padding slots are written as exact zeros, never left uninitialised.
    assert np.all(native_outer[~np.asarray(ell.valid)] == 0.0)


@needs_native
@pytest.mark.parametrize("variant, flags", [("", ()), ("_avx2", ("-mno-avx512f",)), ("_plain", ("-mno-avx2",))])
@pytest.mark.parametrize("d, k, density, batch_size", [(300, 300, 0.02, 16), (784, 200, 0.1, 37), (40, 60, 0.5, 33)])
def test_native_paths_zero_signal_rows(variant, flags, d, k, density, batch_size):
    """Every instruction-set path matches XLA, and receivers with an all-zero signal get zero increments."""
    if variant:
        _native.load_variant(flags, variant)
    _, _, ell, x, signal = ell_case(d, k, density, batch_size, seed=d + 7 * k)
    quiet = np.arange(k) % 3 == 0
    signal[:, quiet] = 0.0
    signal[::2, ~quiet] = 0.0  # other receivers keep a partly zero signal
    x, signal = jnp.asarray(x), jnp.asarray(signal)
    field = np.asarray(_native.ell_matmul(x, ell.index, ell.values, ell.fan_in, variant=variant))
    np.testing.assert_allclose(field, np.asarray(_xla_ell_matmul(x, ell.index, ell.values, ell.fan_in)), rtol=1e-5, atol=1e-5)
    outer = np.asarray(_native.ell_outer(x, ell.index, signal, ell.fan_in, variant=variant))
    np.testing.assert_allclose(outer, np.asarray(_xla_ell_outer(x, ell.index, signal, ell.fan_in)), rtol=1e-5, atol=1e-5)
    assert np.all(outer[quiet] == 0.0)
    assert np.abs(outer[~quiet]).max() > 0.0


def test_load_variant_rejects_empty_suffix():
    with pytest.raises(ValueError, match="non-empty"):
        _native.load_variant(("-mno-avx2",), "")


@needs_native
def test_native_ell_under_jit():
    _, _, ell, x, signal = ell_case(120, 90, 0.1, 16, seed=3)
    x, signal = jnp.asarray(x), jnp.asarray(signal)
    field = jax.jit(_native.ell_matmul)(x, ell.index, ell.values, ell.fan_in)
    np.testing.assert_allclose(np.asarray(field), np.asarray(_xla_ell_matmul(x, ell.index, ell.values, ell.fan_in)), rtol=1e-5, atol=1e-5)
    outer = jax.jit(_native.ell_outer)(x, ell.index, signal, ell.fan_in)
    np.testing.assert_allclose(np.asarray(outer), np.asarray(_xla_ell_outer(x, ell.index, signal, ell.fan_in)), rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the native kernels serve the CPU backend only")
def test_ell_coupling_calls_native_kernels():
    _, _, ell, x, signal = ell_case(50, 40, 0.1, 4, seed=5)
    product_ir = jax.jit(lambda c, v: c(v)).lower(ell, jnp.asarray(x)).as_text()
    outer_ir = jax.jit(lambda c, v, s: c.outer(v, s, jnp.float32(4))).lower(ell, jnp.asarray(x), jnp.asarray(signal)).as_text()
    assert "darnax_ell_matmul" in product_ir
    assert "darnax_ell_outer" in outer_ir


def square_ell_case(n: int, density: float, batch_size: int, seed: int):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((n, n)).astype(np.float32)
    mask = (rng.random((n, n)) < density) & ~np.eye(n, dtype=bool)
    ell = dc.ell_from_dense(jnp.asarray(weight), jnp.asarray(mask))
    state = np.where(rng.random((batch_size, n)) < 0.5, -1.0, 1.0).astype(np.float32)
    const = rng.standard_normal((batch_size, n)).astype(np.float32)
    self_coupling = rng.uniform(0.0, 1.0, n).astype(np.float32)
    return np.where(mask, weight, 0.0).astype(np.float64), ell, state, const, self_coupling


@needs_native
@pytest.mark.parametrize("variant, flags", [("", ()), ("_avx2", ("-mno-avx512f",)), ("_plain", ("-mno-avx2",))])
@pytest.mark.parametrize("n, density, batch_size", [(200, 0.02, 16), (64, 0.3, 5), (150, 0.1, 37)])
def test_native_sign_sweep_against_float64(variant, flags, n, density, batch_size):
    if variant:
        _native.load_variant(flags, variant)
    masked, ell, state, const, self_coupling = square_ell_case(n, density, batch_size, seed=n + batch_size)
    field = state.astype(np.float64) @ masked + self_coupling * state + const
    new_t = np.asarray(_native.ell_sweep_t(jnp.asarray(state.T), ell.index, ell.values, ell.fan_in, jnp.asarray(const.T), jnp.asarray(self_coupling), variant=variant))
    clear = np.abs(field) > 1e-4
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(new_t.T[clear], np.where(field >= 0, 1.0, -1.0)[clear])
    assert set(np.unique(new_t)) <= {-1.0, 1.0}
    # The XLA expression that replaces the native call off CPU gives the same states.
    xla_t = np.asarray(_xla_sign_sweep_t(jnp.asarray(state.T), ell.index, ell.values, ell.fan_in, jnp.asarray(const.T), jnp.asarray(self_coupling)))
    np.testing.assert_array_equal(xla_t.T[clear], new_t.T[clear])


@needs_native
def test_native_sign_sweep_ties_go_up():
    """A field of exactly zero gives +1, as ``dc.sign`` does, and any negative field gives -1."""
    _, ell, state, _, _ = square_ell_case(40, 0.1, 16, seed=1)
    zero_ell = dc.EllCoupling(jnp.zeros_like(ell.values), ell.index, ell.valid, 40)
    const = np.zeros((16, 40), np.float32)
    const[:, ::2] = -1e-30
    new_t = np.asarray(zero_ell.sign_sweep_t(jnp.asarray(state.T), jnp.zeros(40), jnp.asarray(const.T)))
    assert np.all(new_t[1::2] == 1.0)
    assert np.all(new_t[::2] == -1.0)


def test_sign_sweep_rejects_rectangular_coupling():
    _, _, ell, _, _ = ell_case(30, 20, 0.2, 4, seed=2)
    with pytest.raises(ValueError, match="square coupling"):
        ell.sign_sweep_t(jnp.ones((20, 4)), jnp.zeros(20), jnp.zeros((20, 4)))


def phase_ir(net, *, record: bool = False, schedule: str = "sequential") -> str:
    x, _ = batch(0)
    const = dc.constant_fields(net, dc.input_messages(net, x), (None,) * net.output_row, "forward")
    hidden = tuple(jnp.zeros((BATCH, size)) for size in net.sizes[1:-1])

    def phase(net, hidden, const):
        return dc.run_phase(net, hidden, const, messages="forward", schedule=schedule, sweeps=3, record=record, key=jax.random.PRNGKey(0))

    return jax.jit(phase).lower(net, hidden, const).as_text()


@needs_native
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the native kernels serve the CPU backend only")
def test_fused_sweep_only_where_it_applies():
    one_layer = build(120, 0.02, "ell", 1)
    assert "darnax_ell_sweep" in phase_ir(one_layer)
    assert "darnax_ell_sweep" in phase_ir(one_layer, schedule="parallel")
    assert "darnax_ell_sweep" not in phase_ir(one_layer, record=True)
    assert "darnax_ell_sweep" not in phase_ir(one_layer, schedule="asynchronous")
    assert "darnax_ell_sweep" not in phase_ir(build(120, 0.02, "ell", 2))
    assert "darnax_ell_sweep" not in phase_ir(build(120, 0.02, "dense", 1))


@pytest.mark.parametrize("until_converged", [False, True])
def test_fused_phase_matches_general_phase(until_converged):
    """The fused path (record=False) and the general one (record=True) give the same states and counts."""
    net = build(300, 0.1, "ell", 1)
    x, y = batch(5)
    inputs = dc.input_messages(net, x)
    labels = dc.label_messages(net, dc.encode_labels(y, CLASSES))
    const = dc.constant_fields(net, inputs, labels, "all")
    hidden = tuple(jnp.zeros((BATCH, size)) for size in net.sizes[1:-1])
    fused, fused_info = dc.run_phase(net, hidden, const, messages="all", schedule="sequential", sweeps=6, until_converged=until_converged)
    general, general_info = dc.run_phase(net, hidden, const, messages="all", schedule="sequential", sweeps=6, until_converged=until_converged, record=True)
    np.testing.assert_array_equal(np.asarray(fused[0]), np.asarray(general[0]))
    np.testing.assert_array_equal(np.asarray(general_info.trajectory[0][-1]), np.asarray(general[0]))
    assert int(fused_info.sweeps) == int(general_info.sweeps)
    assert int(fused_info.changed) == int(general_info.changed)
    assert int(general_info.sweeps) >= 2
