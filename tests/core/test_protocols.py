"""Training protocols: label isolation of the free phase, jit parity, contrastive signs, padding, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import darnax_core as dc
import darnax_core._dynamics as dynamics_module

# A small one-hidden-layer model whose label feedback (strength 8) is strong enough to change the
# hidden state, so a label that leaks into a phase shows up in that phase's state.
SMALL = dc.TUTORIAL_09.replace(
    input_dim=8, hidden=24, num_classes=4, density_j=0.3, density_in=0.5, strength_back=8.0, kernel="dense"
)
Y1 = np.array([0, 1, 2, 3, 0, 1], np.int32)
Y2 = np.array([1, 2, 3, 0, 3, 2], np.int32)


def batch(seed: int = 0, size: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).random((size, SMALL.input_dim)).astype(np.float32)


def small_net(seed: int = 0, kernel: str = "dense") -> dc.Network:
    return dc.paper_model(jax.random.PRNGKey(seed), SMALL.replace(kernel=kernel))


def run_impl(net, protocol, optimizer, x, y, key=None, mask=None):
    """Run the pure step eagerly (no jit), so the recorded phase states are concrete arrays."""
    key = jax.random.PRNGKey(7) if key is None else key
    mask = jnp.ones((x.shape[0],), bool) if mask is None else mask
    opt_state = dc.init_optimizer(optimizer, net)
    return dc.train_step_impl(net, opt_state, jnp.asarray(x), jnp.asarray(y), key, mask, protocol=protocol, optimizer=optimizer)


@pytest.fixture
def phase_log(monkeypatch):
    """Record every phase of a train step: messages, start state, constant fields and end state."""
    calls = []
    original = dynamics_module.run_phase

    def recording(net, hidden, const, **kwargs):
        end, info = original(net, hidden, const, **kwargs)
        calls.append(
            {
                "messages": dc.Messages.parse(kwargs["messages"]).value,
                "sweeps": kwargs["sweeps"],
                "start": hidden,
                "end": end,
                "kwargs": kwargs,
            }
        )
        return end, info

    monkeypatch.setattr(dynamics_module, "run_phase", recording)
    return calls


def same_state(a, b) -> bool:
    return all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(a, b))


def leaf(net, name):
    """Return the trainable array of module ``name``."""
    names = net.module_names()
    module = net.modules()[names.index(name)]
    return np.asarray(module.trainable_leaves()[0])


def free_and_clamped(calls, kind):
    """Return the (free, clamped) phase records of one step, in the order the protocol runs them."""
    assert calls[0]["messages"] == "forward"  # warmup
    if kind == "paper":
        return calls[2], calls[1]
    return calls[1], calls[2]


def replay_with_label(net, record, x, y, schedule):
    """Rerun a recorded phase with messages "all" and label ``y``: what a label-leaking free phase would do."""
    labels = dc.label_messages(net, dc.encode_labels(jnp.asarray(y), net.num_classes))
    const = dc.constant_fields(net, dc.input_messages(net, jnp.asarray(x)), labels, "all")
    end, _ = dc.run_phase(net, record["start"], const, messages="all", schedule=schedule, sweeps=record["sweeps"])
    return end


@pytest.mark.parametrize("free_messages", ["forward", "all_but_label"])
def test_paper_free_phase_label_blind(phase_log, free_messages):
    net = small_net()
    x = batch()
    optimizer = optax.sgd(0.1)
    # clamped=0: the label can only reach the free state through the free phase itself.
    protocol = dc.Protocol(kind="paper", warmup=1, clamped=0, free=3, free_messages=free_messages)
    net1, _, m1 = run_impl(net, protocol, optimizer, x, Y1)
    net2, _, m2 = run_impl(net, protocol, optimizer, x, Y2)
    free1, _ = free_and_clamped(phase_log[:3], "paper")
    free2, _ = free_and_clamped(phase_log[3:], "paper")
    assert free1["messages"] == free_messages
    assert same_state(free1["end"], free2["end"])
    # The hidden weights learn from the free state alone, so their update ignores the label ...
    np.testing.assert_array_equal(leaf(net1, "input->hidden"), leaf(net2, "input->hidden"))
    np.testing.assert_array_equal(leaf(net1, "hidden"), leaf(net2, "hidden"))
    np.testing.assert_array_equal(np.asarray(m1.unsat), np.asarray(m2.unsat))
    # ... while the readout's target is the label.
    assert not np.array_equal(leaf(net1, "hidden->output"), leaf(net2, "hidden->output"))
    # Control: had the free phase used "all", the two labels would give different free states.
    leaked1 = replay_with_label(net, free1, x, Y1, protocol.schedule)
    leaked2 = replay_with_label(net, free2, x, Y2, protocol.schedule)
    assert not same_state(leaked1, leaked2)


def test_paper_clamped_phase_sees_label(phase_log):
    net = small_net()
    x = batch()
    protocol = dc.Protocol(kind="paper", warmup=1, clamped=3, free=3)
    run_impl(net, protocol, optimizer := optax.sgd(0.1), x, Y1)
    run_impl(net, protocol, optimizer, x, Y2)
    _, clamped1 = free_and_clamped(phase_log[:3], "paper")
    _, clamped2 = free_and_clamped(phase_log[3:], "paper")
    assert clamped1["messages"] == "all"
    assert same_state(clamped1["start"], clamped2["start"])
    assert not same_state(clamped1["end"], clamped2["end"])


@pytest.mark.parametrize("kind", ["clamped_update", "contrastive"])
def test_free_state_label_blind(phase_log, kind):
    net = small_net()
    x = batch()
    protocol = dc.Protocol(kind=kind, warmup=1, clamped=3, free=3)
    run_impl(net, protocol, optax.sgd(0.1), x, Y1)
    run_impl(net, protocol, optax.sgd(0.1), x, Y2)
    free1, clamped1 = free_and_clamped(phase_log[:3], kind)
    free2, clamped2 = free_and_clamped(phase_log[3:], kind)
    assert free1["messages"] == "forward"
    assert clamped1["messages"] == "all"
    assert same_state(free1["end"], free2["end"])
    assert not same_state(clamped1["end"], clamped2["end"])
    leaked1 = replay_with_label(net, free1, x, Y1, protocol.schedule)
    leaked2 = replay_with_label(net, free2, x, Y2, protocol.schedule)
    assert not same_state(leaked1, leaked2)


def test_free_messages_all_rejected():
    with pytest.raises(ValueError, match="`free_messages='all'` would feed the label to the free phase"):
        dc.Protocol(free_messages="all")
    with pytest.raises(ValueError, match="`free_messages='all'`"):
        dc.Protocol(free_messages=dc.Messages.ALL)


@pytest.mark.parametrize("kernel", ["dense", "ell"])
def test_jit_matches_eager(kernel):
    # Compared: metrics exactly, weights within 1e-6, because XLA may fuse the products differently
    # under jit (on a 2-core x86 CPU with jax 0.10.2 they were bit-identical).
    net = small_net(kernel=kernel)
    optimizer = dc.paper_model_optimizer(net, SMALL)
    protocol = dc.paper_protocol(SMALL)
    steps = {jit: dc.make_train_step(protocol, optimizer, jit=jit) for jit in (True, False)}
    results = {}
    for jit, step in steps.items():
        current, opt_state = net, dc.init_optimizer(optimizer, net)
        history = []
        for i in range(3):
            y = Y1 if i % 2 == 0 else Y2
            current, opt_state, metrics = step(current, opt_state, batch(i), y, jax.random.PRNGKey(i))
            history.append(metrics)
        results[jit] = (current, history)
    jitted, eager = results[True], results[False]
    for a, b in zip(jitted[1], eager[1]):
        assert int(a.correct) == int(b.correct)
        assert int(a.count) == int(b.count)
        np.testing.assert_array_equal(np.asarray(a.sweeps), np.asarray(b.sweeps))
        np.testing.assert_allclose(np.asarray(a.unsat), np.asarray(b.unsat), atol=1e-6)
    for a, b in zip(dc.trainable_leaves(jitted[0]), dc.trainable_leaves(eager[0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)
    assert not np.array_equal(np.asarray(dc.trainable_leaves(jitted[0])[0]), np.asarray(dc.trainable_leaves(net)[0]))


def test_eval_jit_matches_eager():
    net = small_net()
    protocol = dc.paper_protocol(SMALL)
    key = jax.random.PRNGKey(3)
    pred_jit, m_jit = dc.make_eval_step(protocol)(net, batch(), key)
    pred_eager, m_eager = dc.make_eval_step(protocol, jit=False)(net, batch(), key)
    np.testing.assert_array_equal(np.asarray(pred_jit), np.asarray(pred_eager))
    np.testing.assert_allclose(np.asarray(m_jit.logits), np.asarray(m_eager.logits), atol=1e-5)
    assert pred_jit.shape == (6,)
    assert m_jit.logits.shape == (6, 4)
    assert np.asarray(m_jit.sweeps).tolist() == [1, 5]


def hidden_field(net, x, s):
    """Forward field of the hidden row: x @ W_in + s @ J + j_d s."""
    layer = net.layers[0]
    w_in = net.edges[net.edge_index.index((1, 0))]
    return w_in(x) + layer.self_message(s)


def perceptron_increments(net, x, s, y_pm1):
    """Return the increments of J, W_in and W_out of the one-hidden-layer model at hidden state ``s``, from the rule functions."""
    layer = net.layers[0]
    w_in = net.edges[net.edge_index.index((1, 0))]
    w_out = net.edges[net.edge_index.index((2, 1))]
    h = hidden_field(net, x, s)
    j_mask = np.asarray(layer.coupling.mask)
    in_mask = np.asarray(w_in.coupling.mask)
    d_j = np.where(j_mask, np.asarray(dc.perceptron_rule(s, s, h, layer.margin)), 0.0)
    d_in = np.where(in_mask, np.asarray(dc.perceptron_rule(x, s, h, w_in.margin)), 0.0)
    d_out = np.asarray(dc.perceptron_rule(s, y_pm1, w_out(s), w_out.margin))
    return {"hidden": d_j, "input->hidden": d_in, "hidden->output": d_out}


@pytest.mark.parametrize("sign", ["clamped_minus_free", "free_minus_clamped"])
def test_contrastive_sign(phase_log, sign):
    # With plain SGD at lr = 1 the applied change is exactly the increment: B - A or A - B, where A
    # is the perceptron increment at the free state and B at the clamped state.
    net = small_net()
    x = jnp.asarray(batch())
    y_pm1 = dc.encode_labels(jnp.asarray(Y1), 4)
    protocol = dc.Protocol(kind="contrastive", warmup=1, clamped=3, free=3, contrastive_sign=sign)
    new, _, _ = run_impl(net, protocol, optax.sgd(1.0), x, Y1)
    free, clamped = free_and_clamped(phase_log, "contrastive")
    assert not same_state(free["end"], clamped["end"]), "the clamped phase must move the state"
    a = perceptron_increments(net, x, free["end"][0], y_pm1)
    b = perceptron_increments(net, x, clamped["end"][0], y_pm1)
    for name in ("hidden", "input->hidden", "hidden->output"):
        applied = leaf(new, name).astype(np.float64) - leaf(net, name)
        expected = b[name] - a[name] if sign == "clamped_minus_free" else a[name] - b[name]
        assert np.abs(expected).max() > 1e-3, f"{name}: B - A vanishes, the test would prove nothing"
        np.testing.assert_allclose(applied, expected, atol=2e-6, err_msg=name)


def test_paper_update_at_free_state(phase_log):
    # The "paper" update is the perceptron increment at the end of the free phase (lr = 1).
    net = small_net()
    x = jnp.asarray(batch())
    new, _, _ = run_impl(net, dc.Protocol(kind="paper", warmup=1, clamped=3, free=3), optax.sgd(1.0), x, Y1)
    free, _ = free_and_clamped(phase_log, "paper")
    expected = perceptron_increments(net, x, free["end"][0], dc.encode_labels(jnp.asarray(Y1), 4))
    for name, increment in expected.items():
        applied = leaf(new, name).astype(np.float64) - leaf(net, name)
        np.testing.assert_allclose(applied, increment, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("schedule", ["sequential", "asynchronous"])
def test_padded_batch_matches_unpadded(schedule):
    net = small_net()
    optimizer = dc.paper_model_optimizer(net, SMALL)
    protocol = dc.paper_protocol(SMALL, schedule=schedule)
    step = dc.make_train_step(protocol, optimizer)
    key = jax.random.PRNGKey(11)
    x, y = batch(5, size=5), Y1[:5]
    # Padding rows hold unrelated data and labels: the mask must remove their effect completely.
    x_pad = np.concatenate([x, batch(99, size=3)])
    y_pad = np.concatenate([y, np.array([3, 3, 3], np.int32)])
    mask = np.array([True] * 5 + [False] * 3)
    opt_state = dc.init_optimizer(optimizer, net)
    small, _, m_small = step(net, opt_state, x, y, key)
    padded, _, m_pad = step(net, opt_state, x_pad, y_pad, key, sample_mask=mask)
    assert int(m_pad.count) == 5
    assert int(m_pad.correct) == int(m_small.correct)
    np.testing.assert_allclose(np.asarray(m_pad.unsat), np.asarray(m_small.unsat), atol=1e-6)
    for a, b in zip(dc.trainable_leaves(padded), dc.trainable_leaves(small)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)


def test_pad_batch_helper():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = np.array([1, 2, 0])
    xp, yp, mask = dc.pad_batch(x, y, 5)
    assert xp.tolist() == [[0, 1], [2, 3], [4, 5], [0, 1], [0, 1]]
    assert yp.tolist() == [1, 2, 0, 1, 1]
    assert mask.tolist() == [True, True, True, False, False]


def test_all_masked_batch_no_update():
    net = small_net()
    optimizer = optax.sgd(1.0)
    step = dc.make_train_step(dc.paper_protocol(SMALL), optimizer)
    new, _, metrics = step(net, dc.init_optimizer(optimizer, net), batch(), Y1, jax.random.PRNGKey(0), np.zeros(6, bool))
    assert int(metrics.count) == 0
    assert int(metrics.correct) == 0
    for a, b in zip(dc.trainable_leaves(new), dc.trainable_leaves(net)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def checked_step():
    net = small_net()
    optimizer = optax.sgd(0.1)
    step = dc.make_train_step(dc.paper_protocol(SMALL), optimizer)
    return net, dc.init_optimizer(optimizer, net), step


KEY = jax.random.PRNGKey(0)


def test_bad_input_width(checked_step):
    net, opt_state, step = checked_step
    with pytest.raises(ValueError, match=r"Inputs must have shape \(batch, 8\), got \(6, 7\)"):
        step(net, opt_state, np.zeros((6, 7), np.float32), Y1, KEY)
    with pytest.raises(ValueError, match=r"Inputs must have shape \(batch, 8\), got \(6, 2, 4\). Flatten images"):
        step(net, opt_state, np.zeros((6, 2, 4), np.float32), Y1, KEY)
    with pytest.raises(TypeError, match="Inputs must be a real array, got dtype <U1"):
        step(net, opt_state, np.full((6, 8), "a"), Y1, KEY)


def test_bad_input_empty(checked_step):
    net, opt_state, step = checked_step
    with pytest.raises(ValueError, match=r"The batch is empty \(batch size 0\)"):
        step(net, opt_state, np.zeros((0, 8), np.float32), np.zeros(0, np.int32), KEY)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bad_input_nonfinite(checked_step, bad):
    net, opt_state, step = checked_step
    x = batch()
    x[2, 3] = bad
    with pytest.raises(ValueError, match="Inputs contain 1 NaN or inf values"):
        step(net, opt_state, x, Y1, KEY)
    with pytest.raises(ValueError, match="Inputs contain 1 NaN or inf values"):
        dc.make_eval_step(dc.paper_protocol(SMALL))(net, x, KEY)


@pytest.mark.parametrize("labels, values", [([0, 1, 2, 4, 0, 1], r"\[0, 4\]"), ([0, -1, 2, 3, 0, 1], r"\[-1, 3\]")])
def test_bad_labels_out_of_range(checked_step, labels, values):
    net, opt_state, step = checked_step
    with pytest.raises(ValueError, match=rf"Class indices must be in \[0, 4\), got values in {values}"):
        step(net, opt_state, batch(), np.array(labels), KEY)


def test_bad_label_width(checked_step):
    net, opt_state, step = checked_step
    with pytest.raises(ValueError, match=r"a \(batch, 4\) label matrix, got shape \(6, 3\)"):
        step(net, opt_state, batch(), -np.ones((6, 3), np.float32), KEY)


def test_bad_label_batch(checked_step):
    net, opt_state, step = checked_step
    with pytest.raises(ValueError, match=r"Labels have batch size \(5,\), but the inputs have 6 samples"):
        step(net, opt_state, batch(), Y1[:5], KEY)


def test_bad_label_dtype(checked_step):
    net, opt_state, step = checked_step
    with pytest.raises(TypeError, match="1-D labels must be integer class indices, got dtype float32"):
        step(net, opt_state, batch(), Y1.astype(np.float32), KEY)


def test_bad_label_matrix_nan(checked_step):
    net, opt_state, step = checked_step
    y = np.asarray(dc.encode_labels(jnp.asarray(Y1), 4)).copy()
    y[0, 0] = np.nan
    with pytest.raises(ValueError, match="The label matrix contains NaN or inf"):
        step(net, opt_state, batch(), y, KEY)


def test_bad_label_matrix_values(checked_step):
    net, opt_state, step = checked_step
    one_hot = np.eye(4, dtype=np.float32)[Y1]
    with pytest.raises(ValueError, match="label matrix"):
        step(net, opt_state, batch(), one_hot, KEY)


def test_bad_mask_shape(checked_step):
    net, opt_state, step = checked_step
    with pytest.raises(ValueError, match=r"`sample_mask` must have shape \(6,\), got \(5,\)"):
        step(net, opt_state, batch(), Y1, KEY, sample_mask=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"`sample_mask` must have shape \(6,\), got \(6, 1\)"):
        step(net, opt_state, batch(), Y1, KEY, sample_mask=np.ones((6, 1), bool))


def test_label_matrix_equals_indices(checked_step):
    net, opt_state, step = checked_step
    by_index = step(net, opt_state, batch(), Y1, KEY)[0]
    by_matrix = step(net, opt_state, batch(), np.asarray(dc.encode_labels(jnp.asarray(Y1), 4)), KEY)[0]
    assert bool(eqx.tree_equal(by_index, by_matrix))


def test_bad_protocol_values():
    with pytest.raises(TypeError, match="`protocol` must be a Protocol, got str"):
        dc.make_train_step("paper", optax.sgd(0.1))
    with pytest.raises(TypeError, match="`protocol` must be a Protocol, got str"):
        dc.make_eval_step("paper")
    with pytest.raises(ValueError, match=r"`kind` must be one of \('paper', 'clamped_update', 'contrastive'\), got 'hebbian'"):
        dc.Protocol(kind="hebbian")
    with pytest.raises(ValueError, match="`warmup` must be an int >= 0, got -1"):
        dc.Protocol(warmup=-1)
    with pytest.raises(TypeError, match="`clamped` must be an int >= 0, got 1.5"):
        dc.Protocol(clamped=1.5)
    with pytest.raises(ValueError, match="`contrastive_sign` must be one of"):
        dc.Protocol(contrastive_sign="plus")
    with pytest.raises(TypeError, match="`until_converged` must be a bool, got 1"):
        dc.Protocol(until_converged=1)


def test_step_metrics_shapes(checked_step):
    net, opt_state, step = checked_step
    _, _, metrics = step(net, opt_state, batch(), Y1, KEY)
    assert isinstance(metrics, dc.StepMetrics)
    assert metrics.unsat.shape == (1,)
    assert int(metrics.count) == 6
    assert 0 <= int(metrics.correct) <= 6
    assert np.asarray(metrics.sweeps).tolist() == [1, 5, 5]


def test_fit_rejects_mismatched_data():
    net = small_net()
    with pytest.raises(ValueError, match="`train` has 6 inputs but 5 labels"):
        dc.fit(net, optax.sgd(0.1), dc.paper_protocol(SMALL), (batch(), Y1[:5]), key=KEY, progress=False)
    with pytest.raises(ValueError, match="`train` inputs have 7 features, but the network expects 8"):
        dc.fit(net, optax.sgd(0.1), dc.paper_protocol(SMALL), (batch()[:, :7], Y1), key=KEY, progress=False)
    with pytest.raises(TypeError, match=r"`train` must be a tuple \(x, y\) of arrays"):
        dc.fit(net, optax.sgd(0.1), dc.paper_protocol(SMALL), [batch(), Y1], key=KEY, progress=False)


def test_evaluate_empty_data():
    net = small_net()
    with pytest.raises(ValueError, match="`data` is empty"):
        dc.evaluate(net, dc.paper_protocol(SMALL), (batch()[:0], Y1[:0]), key=KEY)


def test_evaluate_labels_out_of_range():
    net = small_net()
    with pytest.raises(ValueError, match=r"Class indices must be in \[0, 4\)"):
        dc.evaluate(net, dc.paper_protocol(SMALL), (batch(), Y1 + 4), key=KEY)


def test_evaluate_zero_batch_size():
    net = small_net()
    with pytest.raises(ValueError, match="`batch_size` must be a positive int"):
        dc.evaluate(net, dc.paper_protocol(SMALL), (batch(), Y1), key=KEY, batch_size=0)


def test_pad_batch_too_many_rows():
    with pytest.raises(ValueError, match="batch_size"):
        dc.pad_batch(batch(), Y1, 4)


def test_fit_keeps_the_callers_arrays():
    """`fit` donates its own copies to each step, so the network and state passed in stay usable."""
    net = small_net()
    optimizer = optax.sgd(0.1)
    opt_state = dc.init_optimizer(optimizer, net)
    first = dc.fit(net, optimizer, dc.paper_protocol(SMALL), (batch(), Y1), key=KEY, epochs=2, batch_size=4, opt_state=opt_state, progress=False)
    second = dc.fit(net, optimizer, dc.paper_protocol(SMALL), (batch(), Y1), key=KEY, epochs=2, batch_size=4, opt_state=opt_state, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(first.net), jax.tree_util.tree_leaves(second.net)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves((net, opt_state)))


def test_donating_epoch_step_consumes_inputs():
    net = small_net()
    optimizer = optax.sgd(0.1)
    protocol = dc.paper_protocol(SMALL)
    x, y, mask = jnp.asarray(batch()), jnp.asarray(Y1), jnp.ones(Y1.shape[0], bool)
    args = (x, y, mask, KEY, 3)
    plain = dc.make_epoch_step(protocol, optimizer)(net, dc.init_optimizer(optimizer, net), dc.zero_totals(), *args)
    copies = jax.device_put((net, dc.init_optimizer(optimizer, net), dc.zero_totals()), jax.devices()[0], may_alias=False)
    donated = dc.make_epoch_step(protocol, optimizer, donate=True)(*copies, *args)
    for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(donated)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert all(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(copies[0].edges))


class _Output:
    """A fake step output that records when the loop waits for it."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def block_until_ready(self):
        self.log.append(self.name)
        return self


def test_dispatch_window_waits_for_oldest():
    log = []
    window = dc.DispatchWindow(depth=1)
    window.push(_Output("a", log))
    assert log == []
    window.push(_Output("b", log))
    assert log == ["a"]
    window.push(_Output("c", log))
    assert log == ["a", "b"]


@pytest.mark.parametrize("depth", [0, -1, 1.5, True])
def test_dispatch_window_rejects_bad_depth(depth):
    with pytest.raises((ValueError, TypeError), match="depth"):
        dc.DispatchWindow(depth=depth)


def test_fit_checks_test_set_before_training():
    net = small_net()
    with pytest.raises(ValueError, match="`test` inputs have 7 features"):
        dc.fit(net, optax.sgd(0.1), dc.paper_protocol(SMALL), (batch(), Y1), key=KEY, test=(batch()[:, :7], Y1), progress=False)


def test_fit_names_the_label_fix():
    net = small_net()
    with pytest.raises(ValueError, match=r"Remap the labels to 0\.\.3, or build the network with num_classes=5"):
        dc.fit(net, optax.sgd(0.1), dc.paper_protocol(SMALL), (batch(), Y1 + 1), key=KEY, progress=False)
