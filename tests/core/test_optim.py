"""Optimizer plumbing: frozen values stay bit-identical through training, and Optax receives only weights."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

import darnax_core as dc

# density_j = 0.05 selects the ELL layout for J (padded slots), density_in = 0.5 a masked dense W_in.
CFG = dc.TUTORIAL_09.replace(input_dim=64, hidden=200, density_j=0.05, density_in=0.5)
STEPS = 200


@functools.lru_cache(maxsize=1)
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int32)


def build_net():
    return dc.paper_model(jax.random.PRNGKey(44), CFG)


def frozen_arrays(net: dc.Network) -> dict[str, np.ndarray]:
    """Every array that training must leave bit-identical, by name."""
    hidden = net.layers[0]
    w_in = net.edges[net.edge_index.index((1, 0))]
    w_back = net.edges[net.edge_index.index((1, 2))]
    w_out = net.edges[net.edge_index.index((2, 1))]
    assert isinstance(hidden.coupling, dc.EllCoupling)
    assert isinstance(w_in.coupling, dc.DenseCoupling) and w_in.coupling.mask is not None
    assert isinstance(w_back, dc.LabelFeedback)
    valid = np.asarray(hidden.coupling.valid)
    in_mask = np.asarray(w_in.coupling.mask)
    return {
        "j_d": np.asarray(hidden.j_d),
        "margin_j": np.asarray(hidden.margin),
        "margin_in": np.asarray(w_in.margin),
        "margin_out": np.asarray(w_out.margin),
        "ell_index": np.asarray(hidden.coupling.index),
        "ell_valid": valid,
        "ell_padding": np.asarray(hidden.coupling.values)[~valid],
        "in_mask": in_mask,
        "in_masked_out": np.asarray(w_in.coupling.weight)[~in_mask],
        "w_back": np.asarray(w_back.weight),
    }


def train(net, optimizer, steps=STEPS):
    x, y = digits()
    step = dc.make_train_step(dc.paper_protocol(CFG), optimizer)
    opt_state = dc.init_optimizer(optimizer, net)
    rng = np.random.default_rng(0)
    for i in range(steps):
        rows = rng.choice(x.shape[0], 16, replace=False)
        net, opt_state, _ = step(net, opt_state, x[rows], y[rows], jax.random.PRNGKey(i))
    return net, opt_state


def optimizers(net):
    adamw = optax.adamw(1e-3, weight_decay=1e-2)
    return {
        "paper": dc.paper_model_optimizer(net, CFG),
        "adamw": adamw,
        "adamw_per_module": dc.per_module(net, {"hidden": optax.adamw(1e-3, weight_decay=1e-2)}, default=adamw),
    }


@pytest.mark.parametrize("name", ["paper", "adamw", "adamw_per_module"])
def test_frozen_values_bit_identical(name):
    net = build_net()
    before = frozen_arrays(net)
    assert before["ell_padding"].size > 0
    assert np.all(before["ell_padding"] == 0.0)
    assert before["in_masked_out"].size > 0
    assert np.all(before["in_masked_out"] == 0.0)
    trained, _ = train(net, optimizers(net)[name])
    after = frozen_arrays(trained)
    for key, value in before.items():
        assert after[key].dtype == value.dtype, key
        np.testing.assert_array_equal(after[key], value, err_msg=f"{key} changed under {name}")
    # The trainable weights did move (valid J slots, unmasked W_in entries, W_out).
    hidden_before, hidden_after = net.layers[0].coupling, trained.layers[0].coupling
    valid = np.asarray(hidden_before.valid)
    assert np.mean(np.asarray(hidden_after.values)[valid] != np.asarray(hidden_before.values)[valid]) > 0.1
    w_in_before = net.edges[net.edge_index.index((1, 0))].coupling
    w_in_after = trained.edges[trained.edge_index.index((1, 0))].coupling
    in_mask = np.asarray(w_in_before.mask)
    assert np.mean(np.asarray(w_in_after.weight)[in_mask] != np.asarray(w_in_before.weight)[in_mask]) > 0.1
    out_before = net.edges[net.edge_index.index((2, 1))].coupling.weight
    out_after = trained.edges[trained.edge_index.index((2, 1))].coupling.weight
    assert np.mean(np.asarray(out_after) != np.asarray(out_before)) > 0.5


def test_partition_combine_round_trip():
    net = build_net()
    params, static = dc.partition(net)
    assert bool(eqx.tree_equal(dc.combine(params, static), net))
    # params contains exactly the trainable leaves (the same objects), and static contains none of them.
    param_leaves = jax.tree_util.tree_leaves(params)
    trainable = dc.trainable_leaves(net)
    assert len(param_leaves) == len(trainable) == 3
    assert all(a is b for a, b in zip(param_leaves, trainable))
    static_ids = {id(leaf) for leaf in jax.tree_util.tree_leaves(static)}
    assert not any(id(leaf) in static_ids for leaf in trainable)


def test_trainable_leaves_shapes():
    net = build_net()
    shapes = [leaf.shape for leaf in dc.trainable_leaves(net)]
    fan_in = net.layers[0].coupling.values.shape[1]
    # Module order: hidden (J in ELL layout), then the edges in key order (1, 0), (1, 2), (2, 1).
    assert shapes == [(200, fan_in), (64, 200), (200, 10)]
    assert fan_in < 200


def array_elements(tree) -> list[int]:
    """Sizes of every non-scalar array leaf of ``tree``."""
    return sorted(int(leaf.size) for leaf in jax.tree_util.tree_leaves(tree) if hasattr(leaf, "ndim") and leaf.ndim > 0)


def test_adam_state_only_for_weights():
    net = build_net()
    trainable_sizes = sorted(int(leaf.size) for leaf in dc.trainable_leaves(net))
    state = dc.init_optimizer(optax.adamw(1e-3, weight_decay=1e-2), net)
    # Adam keeps two moments per trainable array and nothing for masks, indices, j_d, margins or W_back.
    assert array_elements(state) == sorted(trainable_sizes * 2)
    per_module = dc.per_module(net, {}, default=optax.adam(1e-3))
    assert array_elements(dc.init_optimizer(per_module, net)) == sorted(trainable_sizes * 2)


def test_paper_optimizer_state_empty():
    net = build_net()
    state = dc.init_optimizer(dc.paper_model_optimizer(net, CFG), net)
    # Plain SGD and the multiplicative decay keep no array state at all.
    assert array_elements(state) == []


def test_paper_optimizer_values():
    # Zero weights and a pseudo-gradient of -1 everywhere: the update is lr_eff * (1 - decay), where
    #   W_in:  lr_eff = 0.159 / sqrt(0.5) = 0.224860; decay = 0.01 * 0.159 * sqrt(0.1) / sqrt(0.5) / sqrt(64)
    #          = 0.00159 * 0.316228 / 0.707107 / 8 = 8.8883e-5
    #   J:     lr_eff = 0.058 / sqrt(0.05) = 0.259384; decay = 6e-5 * 0.058 * sqrt(0.1) / sqrt(0.05) / sqrt(200)
    #          = 3.48e-6 * 1.414214 / 14.142136 = 3.48e-7
    #   W_out: lr_eff = 0.17; decay = 0.02 * 0.17 / sqrt(200) = 0.0034 / 14.142136 = 2.40416e-4
    net = build_net()
    optimizer = dc.paper_model_optimizer(net, CFG)
    params, _ = dc.partition(net)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    grads = jax.tree_util.tree_map(lambda p: -jnp.ones_like(p), params)
    updates, _ = optimizer.update(grads, optimizer.init(zeros), zeros)
    j_update, in_update, out_update = jax.tree_util.tree_leaves(updates)
    expected = {
        "J": (0.058 / math.sqrt(0.05), 3.48e-7, j_update),
        "W_in": (0.159 / math.sqrt(0.5), 8.8883e-5, in_update),
        "W_out": (0.17, 2.40416e-4, out_update),
    }
    for name, (lr, decay, update) in expected.items():
        np.testing.assert_allclose(np.asarray(update), lr * (1 - decay), rtol=1e-6, err_msg=name)
    # With zero pseudo-gradient the update is pure decay: -decay * W.
    w = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 2.0), params)
    updates, _ = optimizer.update(zeros, optimizer.init(w), w)
    out_update = jax.tree_util.tree_leaves(updates)[2]
    np.testing.assert_allclose(np.asarray(out_update), -2.0 * 2.40416e-4, rtol=1e-5)


def test_multiplicative_decay_by_hand():
    # W = [2, -4], u = [1, 1], rate 0.1: W_new = (W + u)(1 - 0.1) = [3, -3] * 0.9 = [2.7, -2.7],
    # so the returned update is W_new - W = [0.7, 1.3].
    decay = dc.multiplicative_decay(0.1)
    params = jnp.array([2.0, -4.0])
    updates, _ = decay.update(jnp.array([1.0, 1.0]), decay.init(params), params)
    np.testing.assert_allclose(np.asarray(updates), [0.7, 1.3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(optax.apply_updates(params, updates)), [2.7, -2.7], rtol=1e-6)
    # Zero entries stay zero.
    zero = jnp.zeros(3)
    updates, _ = decay.update(jnp.zeros(3), decay.init(zero), zero)
    np.testing.assert_array_equal(np.asarray(updates), np.zeros(3))


def test_multiplicative_decay_rate_zero():
    decay = dc.multiplicative_decay(0.0)
    params = jnp.array([2.0, -4.0])
    updates, _ = decay.update(jnp.array([1.0, 3.0]), decay.init(params), params)
    np.testing.assert_array_equal(np.asarray(updates), [1.0, 3.0])


@pytest.mark.parametrize("rate", [1.0, -0.1, 2.0])
def test_multiplicative_decay_bad_rate(rate):
    with pytest.raises(ValueError, match=rf"`rate` must be in \[0, 1\), got {rate}"):
        dc.multiplicative_decay(rate)


def test_multiplicative_decay_needs_params():
    decay = dc.multiplicative_decay(0.1)
    with pytest.raises(ValueError, match="multiplicative_decay needs `params` in `update`"):
        decay.update(jnp.ones(2), decay.init(jnp.ones(2)))


def test_per_module_unknown_name():
    net = build_net()
    with pytest.raises(ValueError, match=r"Unknown module names \['hiden'\]; the network's modules are"):
        dc.per_module(net, {"hiden": optax.sgd(0.1)}, default=optax.sgd(0.1))


@pytest.mark.parametrize("name", ["output->hidden", "output"])
def test_per_module_frozen_module(name):
    net = build_net()
    with pytest.raises(ValueError, match=rf"Modules \['{name}'\] have no trainable weights; remove them"):
        dc.per_module(net, {name: optax.sgd(0.1)}, default=optax.sgd(0.1))


def test_per_module_missing_without_default():
    net = build_net()
    with pytest.raises(ValueError, match=r"No transform for trainable modules \['hidden->output', 'input->hidden'\]"):
        dc.per_module(net, {"hidden": optax.sgd(0.1)})


def test_per_module_learning_rates():
    # Each module gets its own rate: with pseudo-gradient -1 the update equals the rate.
    net = build_net()
    optimizer = dc.per_module(
        net, {"hidden": optax.sgd(0.5), "input->hidden": optax.sgd(0.25)}, default=optax.sgd(0.125)
    )
    params, _ = dc.partition(net)
    grads = jax.tree_util.tree_map(lambda p: -jnp.ones_like(p), params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    values = [set(np.unique(np.asarray(u)).tolist()) for u in jax.tree_util.tree_leaves(updates)]
    assert values == [{0.5}, {0.25}, {0.125}]


def test_module_labels():
    net = build_net()
    labels = jax.tree_util.tree_leaves(dc.module_labels(net))
    assert labels == ["hidden", "input->hidden", "hidden->output"]
