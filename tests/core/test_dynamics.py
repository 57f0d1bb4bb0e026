"""Sign dynamics on a hand-built toy network, with every state worked out by hand.

Toy network (batch 1, kernel "dense", couplings set with ``eqx.tree_at``)::

    input x (2)  ->  hidden1 s1 (2)  <->  hidden2 s2 (3)  ->  readout (2)
                                            ^---- label feedback

    x      = [1, -1]
    W_in   = [[1, 0.5], [0.5, 1]]               so x @ W_in = [0.5, -0.5]
    J1     = [[0, 1], [-1, 0]],   j_d1 = 0.5
    J2     = [[0, 0.5, 0], [0, 0, 0.5], [0.5, 0, 0]],   j_d2 = 0.25
    W12    = [[1, -1, 0], [1, 1, 0]]            hidden1 -> hidden2 (forward)
    W21    = [[0, 2], [0, 1], [-1, 0]]          hidden2 -> hidden1 (feedback, a higher layer)
    W_back = [[0, 0, 2], [0, 1, 2]]             label -> hidden2
    W_out  = [[1, 0], [0, 1], [1, 1]]           hidden2 -> readout

With C = 2 the label rescaling is a = 0.75, b = -0.25, so y = [+1, -1] becomes [0.5, -1] and
ỹ @ W_back = [0, -1, 1 - 2] = [0, -1, -1].

Fields (J[j, i] couples unit j to unit i):
    h1 = x @ W_in + s1 @ J1 + 0.5 s1            (+ s2 @ W21 with "all"/"all_but_label")
    h2 = s2 @ J2 + 0.25 s2 + s1 @ W12           (+ ỹ @ W_back with "all")
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import darnax_core as dc

X = jnp.array([[1.0, -1.0]])
Y = jnp.array([[1.0, -1.0]])
W_IN = [[1.0, 0.5], [0.5, 1.0]]
J1 = [[0.0, 1.0], [-1.0, 0.0]]
J2 = [[0.0, 0.5, 0.0], [0.0, 0.0, 0.5], [0.5, 0.0, 0.0]]
W12 = [[1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]
W21 = [[0.0, 2.0], [0.0, 1.0], [-1.0, 0.0]]
W_BACK = [[0.0, 0.0, 2.0], [0.0, 1.0, 2.0]]
W_OUT = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]

# Start state used by most tests: s1 = [-1, -1], s2 = [1, 1, -1].
START = (jnp.array([[-1.0, -1.0]]), jnp.array([[1.0, 1.0, -1.0]]))


def edge(net: dc.Network, key: tuple[int, int]):
    return net.edges[net.edge_index.index(key)]


def toy_net() -> dc.Network:
    keys = jax.random.split(jax.random.PRNGKey(0), 7)
    layers = [
        dc.BinaryLayer(2, j_d=0.5, key=keys[0], kernel="dense"),
        dc.BinaryLayer(3, j_d=0.25, key=keys[1], kernel="dense"),
        dc.Readout(2),
    ]
    edges = {
        (1, 0): dc.Linear(2, 2, key=keys[2], kernel="dense"),
        (2, 1): dc.Linear(2, 3, key=keys[3], kernel="dense"),
        (1, 2): dc.Linear(3, 2, key=keys[4], kernel="dense"),
        (3, 2): dc.Linear(3, 2, key=keys[5], kernel="dense"),
        (2, 3): dc.LabelFeedback(2, 3, key=keys[6]),
    }
    net = dc.Network(2, layers, edges)
    return eqx.tree_at(
        lambda n: (
            n.layers[0].coupling.weight,
            n.layers[1].coupling.weight,
            edge(n, (1, 0)).coupling.weight,
            edge(n, (2, 1)).coupling.weight,
            edge(n, (1, 2)).coupling.weight,
            edge(n, (3, 2)).coupling.weight,
            edge(n, (2, 3)).weight,
        ),
        net,
        tuple(jnp.array(w) for w in (J1, J2, W_IN, W12, W21, W_OUT, W_BACK)),
    )


def constants(net, messages, y=Y):
    return dc.constant_fields(net, dc.input_messages(net, X), dc.label_messages(net, y), messages)


def states(hidden) -> list[list[float]]:
    return [np.asarray(h)[0].tolist() for h in hidden]


def test_label_rescaling_c2():
    # r = 1: +1 -> r/2 = 0.5 and -1 -> -1/r = -1, so a = 0.75 and b = -0.25.
    assert dc.label_rescaling(2) == (0.75, -0.25)


def test_constant_fields_by_subset():
    net = toy_net()
    inputs = dc.input_messages(net, X)
    labels = dc.label_messages(net, Y)
    # x @ W_in = [0.5, -0.5]; only row 1 receives from the input.
    assert np.asarray(inputs[0]).tolist() == [[0.5, -0.5]]
    assert inputs[1] is None
    assert inputs[2] is None
    # ỹ @ W_back = [0, -1, -1] reaches row 2 only.
    assert labels[0] is None
    assert labels[2] is None
    assert np.asarray(labels[1]).tolist() == [[0.0, -1.0, -1.0]]
    forward = dc.constant_fields(net, inputs, labels, "forward")
    assert forward[1] is None
    every = dc.constant_fields(net, inputs, labels, "all")
    assert np.asarray(every[1]).tolist() == [[0.0, -1.0, -1.0]]
    all_but_label = dc.constant_fields(net, inputs, labels, "all_but_label")
    assert all_but_label[1] is None
    assert dc.label_messages(net, None) == (None, None, None)


def test_warmup_from_zero_sign_zero():
    # From s1 = 0, s2 = 0 with "forward": h1 = [0.5, -0.5] -> s1 = [1, -1];
    # h2 = s1 @ W12 = [1 - 1, -1 - 1, 0] = [0, -2, 0] -> s2 = [1, -1, 1] because sign(0) = +1.
    net = toy_net()
    zero = (jnp.zeros((1, 2)), jnp.zeros((1, 3)))
    hidden = dc.sweep(net, zero, constants(net, "forward"), "forward", "sequential")
    assert states(hidden) == [[1.0, -1.0], [1.0, -1.0, 1.0]]


def test_sequential_forward():
    # s1 @ J1 with s1 = [-1, -1]: [(-1)(-1), (-1)(1)] = [1, -1]; 0.5 s1 = [-0.5, -0.5].
    # h1 = [0.5, -0.5] + [1, -1] + [-0.5, -0.5] = [1, -2] -> s1 = [1, -1].
    # s2 @ J2 with s2 = [1, 1, -1]: [0.5 s2[2], 0.5 s2[0], 0.5 s2[1]] = [-0.5, 0.5, 0.5];
    # 0.25 s2 = [0.25, 0.25, -0.25]; s1_new @ W12 = [1 - 1, -1 - 1, 0] = [0, -2, 0].
    # h2 = [-0.25, -1.25, 0.25] -> s2 = [-1, -1, 1].
    net = toy_net()
    hidden = dc.sweep(net, START, constants(net, "forward"), "forward", "sequential")
    assert states(hidden) == [[1.0, -1.0], [-1.0, -1.0, 1.0]]


def test_sequential_all():
    # h1 adds s2 @ W21 = [(-1)(-1), 2 + 1] = [1, 3]: h1 = [1, -2] + [1, 3] = [2, 1] -> s1 = [1, 1].
    # h2 = [-0.25, 0.75, 0.25] (self) + s1_new @ W12 = [2, 0, 0] + label [0, -1, -1]
    #    = [1.75, -0.25, -0.75] -> s2 = [1, -1, -1].
    net = toy_net()
    hidden = dc.sweep(net, START, constants(net, "all"), "all", "sequential")
    assert states(hidden) == [[1.0, 1.0], [1.0, -1.0, -1.0]]


def test_sequential_all_but_label():
    # As with "all" but without the label: h1 = [2, 1] -> s1 = [1, 1];
    # h2 = [-0.25, 0.75, 0.25] + [2, 0, 0] = [1.75, 0.75, 0.25] -> s2 = [1, 1, 1].
    net = toy_net()
    hidden = dc.sweep(net, START, constants(net, "all_but_label"), "all_but_label", "sequential")
    assert states(hidden) == [[1.0, 1.0], [1.0, 1.0, 1.0]]


def test_forward_ignores_label_and_higher_layer():
    # With "forward" neither the label nor hidden2 -> hidden1 may act: changing both leaves the sweep unchanged.
    net = toy_net()
    other_label = jnp.array([[-1.0, 1.0]])
    muted = eqx.tree_at(lambda n: edge(n, (1, 2)).coupling.weight, net, jnp.zeros((3, 2)))
    a = dc.sweep(net, START, constants(net, "forward"), "forward", "sequential")
    b = dc.sweep(muted, START, constants(muted, "forward", other_label), "forward", "sequential")
    assert states(a) == states(b)


def test_parallel_forward():
    # Layer 1 as in the sequential sweep: s1 = [1, -1]. Layer 2 reads the OLD s1 = [-1, -1]:
    # s1 @ W12 = [-2, 0, 0]; h2 = [-0.25, 0.75, 0.25] + [-2, 0, 0] = [-2.25, 0.75, 0.25] -> [-1, 1, 1].
    net = toy_net()
    hidden = dc.sweep(net, START, constants(net, "forward"), "forward", "parallel")
    assert states(hidden) == [[1.0, -1.0], [-1.0, 1.0, 1.0]]


def test_parallel_all():
    # s1 = [1, 1] (h1 = [2, 1]); h2 = [-0.25, 0.75, 0.25] + [-2, 0, 0] + [0, -1, -1]
    #    = [-2.25, -0.25, -0.75] -> s2 = [-1, -1, -1].
    net = toy_net()
    hidden = dc.sweep(net, START, constants(net, "all"), "all", "parallel")
    assert states(hidden) == [[1.0, 1.0], [-1.0, -1.0, -1.0]]


def key_with_order(order: list[int]) -> jax.Array:
    """Find a key whose permutation of the 5 hidden units is ``order`` (120 orders, so a few hundred tries)."""
    keys = jax.random.split(jax.random.PRNGKey(123), 4000)
    orders = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, 5))(keys))
    hits = np.flatnonzero((orders == np.asarray(order)).all(axis=1))
    assert hits.size > 0, f"no key in the search range permutes the units as {order}"
    return keys[hits[0]]


def test_asynchronous_fixed_order():
    # Flat unit ids: 0, 1 are s1[0], s1[1]; 2, 3, 4 are s2[0], s2[1], s2[2]. Order 2, 0, 4, 1, 3,
    # forward messages, from s1 = [-1, -1], s2 = [1, 1, -1]; each unit reads the current state:
    #   unit 2: h2[0] = 0.5 s2[2] + 0.25 s2[0] + (s1[0] + s1[1]) = -0.5 + 0.25 - 2 = -2.25 -> s2 = [-1, 1, -1]
    #   unit 0: h1[0] = 0.5 + (-1) s1[1] + 0.5 s1[0] = 0.5 + 1 - 0.5 = 1          -> s1 = [1, -1]
    #   unit 4: h2[2] = 0.5 s2[1] + 0.25 s2[2] + 0 = 0.5 - 0.25 = 0.25            -> s2 = [-1, 1, 1]
    #   unit 1: h1[1] = -0.5 + s1[0] + 0.5 s1[1] = -0.5 + 1 - 0.5 = 0             -> s1 = [1, 1] (sign(0) = +1)
    #   unit 3: h2[1] = 0.5 s2[0] + 0.25 s2[1] + (-s1[0] + s1[1]) = -0.5 + 0.25 + 0 = -0.25 -> s2 = [-1, -1, 1]
    # The result differs from the sequential ([1, -1], [-1, -1, 1]) and parallel sweeps.
    order = [2, 0, 4, 1, 3]
    key = key_with_order(order)
    assert np.asarray(jax.random.permutation(key, 5)).tolist() == order
    net = toy_net()
    hidden = dc.sweep(net, START, constants(net, "forward"), "forward", "asynchronous", key=key)
    assert states(hidden) == [[1.0, 1.0], [-1.0, -1.0, 1.0]]


def reference_async(order, messages):
    """Unit-by-unit numpy sweep of the toy network in ``order``."""
    s1, s2 = [np.asarray(h, np.float64)[0].copy() for h in START]
    x, y_rescaled = np.asarray(X, np.float64)[0], np.array([0.5, -1.0])
    feedback = messages != "forward"
    label = messages == "all"
    for unit in order:
        if unit < 2:
            h = x @ np.array(W_IN) + s1 @ np.array(J1) + 0.5 * s1 + (s2 @ np.array(W21) if feedback else 0.0)
            s1[unit] = 1.0 if h[unit] >= 0 else -1.0
        else:
            h = s2 @ np.array(J2) + 0.25 * s2 + s1 @ np.array(W12) + (y_rescaled @ np.array(W_BACK) if label else 0.0)
            s2[unit - 2] = 1.0 if h[unit - 2] >= 0 else -1.0
    return [s1.tolist(), s2.tolist()]


@pytest.mark.parametrize("messages", ["forward", "all", "all_but_label"])
def test_asynchronous_matches_reference(messages):
    net = toy_net()
    for seed in range(4):
        key = jax.random.PRNGKey(seed)
        order = np.asarray(jax.random.permutation(key, 5)).tolist()
        hidden = dc.sweep(net, START, constants(net, messages), messages, "asynchronous", key=key)
        assert states(hidden) == reference_async(order, messages), f"order {order}"


def test_asynchronous_needs_key():
    net = toy_net()
    with pytest.raises(ValueError, match="asynchronous schedule draws a random unit order; pass a PRNG `key`"):
        dc.sweep(net, START, constants(net, "forward"), "forward", "asynchronous")
    with pytest.raises(ValueError, match="pass a PRNG `key`"):
        dc.run_phase(net, START, constants(net, "forward"), messages="forward", schedule="asynchronous", sweeps=2)


def test_row_field_readout():
    # The readout field is s2 @ W_out: s2 = [1, 1, -1] -> [1 + 0 - 1, 0 + 1 - 1] = [0, 0]; with
    # s2 = [1, -1, 1] -> [2, 0]. The output row is never part of the swept hidden state.
    net = toy_net()
    const = constants(net, "forward")
    assert np.asarray(dc.row_field(net, 3, START, const, "forward")).tolist() == [[0.0, 0.0]]
    other = (START[0], jnp.array([[1.0, -1.0, 1.0]]))
    assert np.asarray(dc.row_field(net, 3, other, const, "forward")).tolist() == [[2.0, 0.0]]


def cycle_net() -> dc.Network:
    """One hidden layer of 2 units with J = [[0, 1], [-1, 0]], j_d = 0 and no input field."""
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    net = dc.Network(
        2,
        [dc.BinaryLayer(2, key=keys[0], kernel="dense"), dc.Readout(2)],
        {(1, 0): dc.Linear(2, 2, key=keys[1], kernel="dense"), (2, 1): dc.Linear(2, 2, key=keys[2], kernel="dense")},
    )
    return eqx.tree_at(
        lambda n: (n.layers[0].coupling.weight, edge(n, (1, 0)).coupling.weight),
        net,
        (jnp.array([[0.0, 1.0], [-1.0, 0.0]]), jnp.zeros((2, 2))),
    )


def cycle_const(net):
    return dc.constant_fields(net, dc.input_messages(net, jnp.ones((1, 2))), (None, None), "forward")


def test_record_cycle_trajectory():
    # h = s @ J = [-s1, s0]. From [1, 1]: [-1, 1] -> [-1, -1] -> [1, -1] -> [1, 1] -> [-1, 1] (period 4).
    net = cycle_net()
    hidden, info = dc.run_phase(
        net, (jnp.array([[1.0, 1.0]]),), cycle_const(net), messages="forward", schedule="sequential", sweeps=5, record=True
    )
    assert len(info.trajectory) == 1
    assert info.trajectory[0].shape == (5, 1, 2)
    expected = [[-1, 1], [-1, -1], [1, -1], [1, 1], [-1, 1]]
    assert np.asarray(info.trajectory[0])[:, 0].tolist() == expected
    assert states(hidden) == [[-1.0, 1.0]]
    assert int(info.sweeps) == 5
    # The last sweep, [1, 1] -> [-1, 1], changed one unit.
    assert int(info.changed) == 1


def test_until_converged_cycle_never_stops():
    net = cycle_net()
    _, info = dc.run_phase(
        net, (jnp.array([[1.0, 1.0]]),), cycle_const(net), messages="forward", schedule="sequential", sweeps=7,
        until_converged=True,
    )
    assert int(info.sweeps) == 7
    assert int(info.changed) > 0


def test_until_converged_stops():
    # Toy network, forward, from zero: sweep 1 gives s1 = [1, -1], s2 = [1, -1, 1] (see the warmup test).
    # Sweep 2: h1 = [0.5, -0.5] + s1 @ J1 [1, 1] + 0.5 s1 [0.5, -0.5] = [2, 0] -> s1 = [1, 1];
    #   h2 = s2 @ J2 [0.5, 0.5, -0.5] + 0.25 s2 + s1 @ W12 [2, 0, 0] = [2.75, 0.25, -0.25] -> s2 = [1, 1, -1].
    # Sweep 3: h1 = [0.5, -0.5] + s1 @ J1 [-1, 1] + [0.5, 0.5] = [0, 1] -> s1 = [1, 1];
    #   h2 = s2 @ J2 [-0.5, 0.5, 0.5] + [0.25, 0.25, -0.25] + [2, 0, 0] = [1.75, 0.75, 0.25] -> s2 = [1, 1, 1].
    # Sweep 4: h1 = [0, 1] -> s1 = [1, 1]; h2 = s2 @ J2 [0.5, 0.5, 0.5] + [0.25] * 3 + [2, 0, 0]
    #   = [2.75, 0.75, 0.75] -> s2 = [1, 1, 1]: no change, so the phase stops after 4 sweeps.
    net = toy_net()
    zero = (jnp.zeros((1, 2)), jnp.zeros((1, 3)))
    const = constants(net, "forward")
    hidden, info = dc.run_phase(
        net, zero, const, messages="forward", schedule="sequential", sweeps=10, until_converged=True, record=True
    )
    assert states(hidden) == [[1.0, 1.0], [1.0, 1.0, 1.0]]
    assert int(info.sweeps) == 4
    assert int(info.changed) == 0
    # After convergence the recorded state repeats.
    trajectory = np.asarray(info.trajectory[1])[:, 0]
    assert trajectory.shape == (10, 3)
    assert trajectory[:3].tolist() == [[1, -1, 1], [1, 1, -1], [1, 1, 1]]
    assert np.all(trajectory[3:] == 1.0)

    _, fixed = dc.run_phase(net, zero, const, messages="forward", schedule="sequential", sweeps=10)
    assert int(fixed.sweeps) == 10
    assert fixed.trajectory is None


def test_zero_sweeps():
    net = toy_net()
    hidden, info = dc.run_phase(net, START, constants(net, "all"), messages="all", schedule="parallel", sweeps=0, record=True)
    assert states(hidden) == states(START)
    assert int(info.sweeps) == 0
    assert info.trajectory[0].shape == (0, 1, 2)
    assert info.trajectory[1].shape == (0, 1, 3)


def test_run_phase_under_jit():
    # The phase is one scan: jitting it gives the same states as the eager call.
    net = toy_net()
    const = constants(net, "all")

    def phase(n, h, c):
        return dc.run_phase(n, h, c, messages="all", schedule="sequential", sweeps=3)[0]

    assert states(jax.jit(phase)(net, START, const)) == states(phase(net, START, const))
