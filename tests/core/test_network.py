"""Network construction: validation errors, structure, message subsets and the label rescaling."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import darnax_core as dc


def two_hidden_net(getkey, *, names=None) -> dc.Network:
    """Input 4 -> hidden 3 -> hidden 5 -> readout 2, with feedback 2->1 and label feedback 3->2."""
    layers = [dc.BinaryLayer(3, key=getkey()), dc.BinaryLayer(5, key=getkey()), dc.Readout(2)]
    edges = {
        (1, 0): dc.Linear(4, 3, key=getkey()),
        (2, 1): dc.Linear(3, 5, key=getkey()),
        (1, 2): dc.Linear(5, 3, key=getkey()),
        (3, 2): dc.Linear(5, 2, key=getkey()),
        (2, 3): dc.LabelFeedback(2, 5, key=getkey()),
    }
    return dc.Network(4, layers, edges, names)


def test_network_structure(getkey):
    net = two_hidden_net(getkey)
    assert net.sizes == (4, 3, 5, 2)
    assert net.num_hidden == 2
    assert net.output_row == 3
    assert net.input_dim == 4
    assert net.num_classes == 2
    assert net.names == ("input", "hidden1", "hidden2", "output")
    assert net.edge_index == ((1, 0), (1, 2), (2, 1), (2, 3), (3, 2))
    assert net.module_names() == (
        "hidden1",
        "hidden2",
        "output",
        "input->hidden1",
        "hidden2->hidden1",
        "hidden1->hidden2",
        "output->hidden2",
        "hidden2->output",
    )


def test_paper_model_names(getkey):
    cfg = dc.TUTORIAL_09.replace(input_dim=6, hidden=8)
    net = dc.paper_model(getkey(), cfg)
    assert net.sizes == (6, 8, 10)
    assert net.module_names() == ("hidden", "output", "input->hidden", "output->hidden", "hidden->output")


def test_custom_names(getkey):
    net = two_hidden_net(getkey, names=("pixels", "a", "b", "labels"))
    assert net.module_names()[3] == "pixels->a"


def test_senders_by_subset(getkey):
    net = two_hidden_net(getkey)

    def rows(receiver, messages):
        return [j for j, _ in net.senders(receiver, messages)]

    # Forward keeps senders j <= i: the input for row 1, row 1 for row 2.
    assert rows(1, "forward") == [0]
    assert rows(2, "forward") == [1]
    # All keeps the higher layer (2 -> 1) and the label (3 -> 2).
    assert rows(1, "all") == [0, 2]
    assert rows(2, "all") == [1, 3]
    # All-but-label keeps the higher layer and drops only the output row.
    assert rows(1, dc.Messages.ALL_BUT_LABEL) == [0, 2]
    assert rows(2, dc.Messages.ALL_BUT_LABEL) == [1]
    assert rows(3, "forward") == [2]


def test_from_layer_map_equals_constructor(getkey):
    key_h, key_in, key_out = getkey(), getkey(), getkey()
    hidden = dc.BinaryLayer(3, key=key_h)
    w_in = dc.Linear(4, 3, key=key_in)
    w_out = dc.Linear(3, 2, key=key_out)
    from_map = dc.Network.from_layer_map(4, {(1, 1): hidden, (2, 2): dc.Readout(2), (1, 0): w_in, (2, 1): w_out})
    direct = dc.Network(4, [hidden, dc.Readout(2)], {(1, 0): w_in, (2, 1): w_out})
    assert bool(eqx.tree_equal(from_map, direct))


def test_edge_in_features_mismatch(getkey):
    layers = [dc.BinaryLayer(3, key=getkey()), dc.Readout(2)]
    with pytest.raises(ValueError, match=r"Edge \(1, 0\) maps 5 -> 3 features, but row 0 has 4 units and row 1 has 3"):
        dc.Network(4, layers, {(1, 0): dc.Linear(5, 3, key=getkey())})


def test_edge_out_features_mismatch(getkey):
    layers = [dc.BinaryLayer(3, key=getkey()), dc.Readout(2)]
    with pytest.raises(ValueError, match=r"Edge \(2, 1\) maps 3 -> 4 features, but row 1 has 3 units and row 2 has 2"):
        dc.Network(4, layers, {(2, 1): dc.Linear(3, 4, key=getkey())})


def test_row0_cannot_receive(getkey):
    layers = [dc.BinaryLayer(3, key=getkey()), dc.Readout(2)]
    with pytest.raises(ValueError, match=r"Edge \(0, 1\): row 0 is the input and cannot receive messages"):
        dc.Network(4, layers, {(0, 1): dc.Linear(3, 4, key=getkey())})
    modules = {(1, 1): layers[0], (2, 2): layers[1], (0, 1): dc.Linear(3, 4, key=getkey())}
    with pytest.raises(ValueError, match=r"Row 0 is the input and cannot receive messages; remove the keys \(0, j\)"):
        dc.Network.from_layer_map(4, modules)


def test_from_layer_map_missing_diagonal(getkey):
    modules = {
        (1, 1): dc.BinaryLayer(3, key=getkey()),
        (1, 0): dc.Linear(4, 3, key=getkey()),
        (2, 1): dc.Linear(3, 2, key=getkey()),
    }
    with pytest.raises(ValueError, match=r"Rows \[2\] have no layer on the diagonal"):
        dc.Network.from_layer_map(4, modules)


def test_from_layer_map_row_gap(getkey):
    modules = {(1, 1): dc.BinaryLayer(3, key=getkey()), (3, 3): dc.Readout(2)}
    with pytest.raises(ValueError, match=r"Rows must be numbered 1..L\+1 without gaps, got \[1, 3\]"):
        dc.Network.from_layer_map(4, modules)


def test_last_layer_not_readout(getkey):
    layers = [dc.BinaryLayer(3, key=getkey()), dc.BinaryLayer(2, key=getkey())]
    with pytest.raises(TypeError, match="The last layer must be a Readout"):
        dc.Network(4, layers, {})


def test_readout_before_last_row(getkey):
    with pytest.raises(TypeError, match="Row 1 must be a BinaryLayer or TanhLayer, got Readout"):
        dc.Network(4, [dc.Readout(3), dc.Readout(2)], {})


def test_too_few_layers():
    with pytest.raises(ValueError, match=r"`layers` needs at least one hidden layer and a Readout, got 1"):
        dc.Network(4, [dc.Readout(2)], {})


def test_diagonal_edge(getkey):
    layers = [dc.BinaryLayer(3, key=getkey()), dc.Readout(2)]
    with pytest.raises(ValueError, match=r"Edge \(1, 1\) is on the diagonal"):
        dc.Network(4, layers, {(1, 1): dc.Linear(3, 3, key=getkey())})


def test_edge_row_outside(getkey):
    layers = [dc.BinaryLayer(3, key=getkey()), dc.Readout(2)]
    with pytest.raises(ValueError, match=r"Edge \(3, 1\) refers to a row outside 0..2"):
        dc.Network(4, layers, {(3, 1): dc.Linear(3, 2, key=getkey())})


def test_edge_wrong_type(getkey):
    layers = [dc.BinaryLayer(3, key=getkey()), dc.Readout(2)]
    with pytest.raises(TypeError, match=r"Edge \(2, 1\) must be Linear, LabelFeedback or Ferromagnetic, got BinaryLayer"):
        dc.Network(4, layers, {(2, 1): dc.BinaryLayer(3, key=getkey())})
    with pytest.raises(TypeError, match=r"`edges` must be a mapping"):
        dc.Network(4, layers, [dc.Linear(4, 3, key=getkey())])


def test_label_feedback_not_from_output(getkey):
    # LabelFeedback(3, 3) chains between rows 2 and 1 (3 units each), but row 2 is not the output row.
    layers = [dc.BinaryLayer(3, key=getkey()), dc.BinaryLayer(3, key=getkey()), dc.Readout(3)]
    edges = {(1, 2): dc.LabelFeedback(3, 3, key=getkey())}
    with pytest.raises(ValueError, match=r"Edge \(1, 2\): LabelFeedback must be sent by the output row 3"):
        dc.Network(4, layers, edges)


def test_unknown_message_subset(getkey):
    net = two_hidden_net(getkey)
    with pytest.raises(ValueError, match=r"Unknown message subset 'left'; expected one of 'forward', 'all', 'all_but_label'"):
        net.senders(1, "left")
    with pytest.raises(ValueError, match="Unknown message subset 'backward'"):
        dc.Messages.parse("backward")
    with pytest.raises(ValueError, match="Unknown message subset 'left'"):
        dc.Protocol(free_messages="left")


def test_unknown_schedule(getkey):
    net = two_hidden_net(getkey)
    hidden = (jnp.zeros((1, 3)), jnp.zeros((1, 5)))
    const = dc.constant_fields(net, dc.input_messages(net, jnp.ones((1, 4))), (None,) * 3, "forward")
    with pytest.raises(ValueError, match=r"Unknown schedule 'random'; expected one of 'sequential', 'parallel', 'asynchronous'"):
        dc.sweep(net, hidden, const, "forward", "random")
    with pytest.raises(ValueError, match="Unknown schedule 'gauss-seidel'"):
        dc.Protocol(schedule="gauss-seidel")


def test_names_wrong_length(getkey):
    with pytest.raises(ValueError, match=r"`names` must be 4 non-empty strings \(one per row\)"):
        two_hidden_net(getkey, names=("input", "hidden", "output"))


def test_names_empty_or_duplicate(getkey):
    with pytest.raises(ValueError, match="`names` must be 4 non-empty strings"):
        two_hidden_net(getkey, names=("input", "", "b", "output"))
    with pytest.raises(ValueError, match=r"`names` must be unique, got \('input', 'a', 'a', 'output'\)"):
        two_hidden_net(getkey, names=("input", "a", "a", "output"))


@pytest.mark.parametrize("name", ["j_d", "margin"])
def test_layer_param_bad_shape(getkey, name):
    with pytest.raises(ValueError, match=rf"`{name}` must be a scalar or have shape \(3,\) \(one value per unit\), got shape \(2,\)"):
        dc.BinaryLayer(3, key=getkey(), **{name: [0.1, 0.2]})
    with pytest.raises(ValueError, match=rf"`{name}` must be a scalar or have shape \(3,\).*got shape \(3, 1\)"):
        dc.BinaryLayer(3, key=getkey(), **{name: np.ones((3, 1))})
    with pytest.raises(ValueError, match=rf"`{name}` must be finite"):
        dc.BinaryLayer(3, key=getkey(), **{name: [0.1, float("nan"), 0.2]})


def test_layer_param_per_unit(getkey):
    layer = dc.BinaryLayer(3, key=getkey(), j_d=[0.1, 0.2, 0.3], margin=2.0)
    np.testing.assert_array_equal(np.asarray(layer.j_d), np.float32([0.1, 0.2, 0.3]))
    assert layer.margin.shape == ()
    # A length-1 value is a scalar.
    assert dc.BinaryLayer(3, key=getkey(), j_d=[0.5]).j_d.shape == ()


def test_edge_margin_bad_shape(getkey):
    with pytest.raises(ValueError, match=r"`margin` must be a scalar or have shape \(4,\)"):
        dc.Linear(3, 4, key=getkey(), margin=np.ones(3))


def test_layer_param_string(getkey):
    with pytest.raises(TypeError, match="`j_d` must be a number"):
        dc.BinaryLayer(3, key=getkey(), j_d="large")


@pytest.mark.parametrize("value", [0, -3])
def test_nonpositive_features(getkey, value):
    with pytest.raises(ValueError, match=rf"`features` must be a positive int, got {value}"):
        dc.BinaryLayer(value, key=getkey())
    with pytest.raises(ValueError, match=rf"`features` must be a positive int, got {value}"):
        dc.Readout(value)
    with pytest.raises(ValueError, match=rf"`in_features` must be a positive int, got {value}"):
        dc.Linear(value, 3, key=getkey())
    with pytest.raises(ValueError, match=rf"`out_features` must be a positive int, got {value}"):
        dc.Linear(3, value, key=getkey())
    with pytest.raises(ValueError, match=rf"`input_dim` must be a positive int, got {value}"):
        dc.Network(value, [dc.BinaryLayer(3, key=getkey()), dc.Readout(2)], {})


def test_noninteger_features(getkey):
    with pytest.raises(TypeError, match=r"`features` must be a positive int, got 2.5 of type float"):
        dc.BinaryLayer(2.5, key=getkey())
    with pytest.raises(TypeError, match=r"`features` must be a positive int, got True of type bool"):
        dc.Readout(True)


def test_label_feedback_one_class(getkey):
    with pytest.raises(ValueError, match="`num_classes` must be at least 2 for label feedback, got 1"):
        dc.LabelFeedback(1, 4, key=getkey())


def test_label_rescaling_c10(getkey):
    # r = sqrt(C - 1) = 3: +1 -> r/2 = 1.5 and -1 -> -1/r = -1/3.
    a, b = dc.label_rescaling(10)
    assert a + b == pytest.approx(1.5, abs=1e-12)
    assert -a + b == pytest.approx(-1.0 / 3.0, abs=1e-12)

    feedback = dc.LabelFeedback(10, 3, key=getkey())
    # W_back column 0 reads class 0, column 1 reads class 1, column 2 sums all classes.
    weight = np.zeros((10, 3), np.float32)
    weight[0, 0] = 1.0
    weight[1, 1] = 1.0
    weight[:, 2] = 1.0
    feedback = eqx.tree_at(lambda f: f.weight, feedback, jnp.asarray(weight))
    y = dc.encode_labels(jnp.array([0, 1]), 10)
    message = np.asarray(feedback(y))
    # Sample 0 (class 0): [1.5, -1/3, 1.5 + 9 * (-1/3) = -1.5]; sample 1 (class 1): [-1/3, 1.5, -1.5].
    np.testing.assert_allclose(message, [[1.5, -1 / 3, -1.5], [-1 / 3, 1.5, -1.5]], rtol=1e-6, atol=1e-6)


def test_label_rescaling_c5(getkey):
    # r = sqrt(4) = 2: +1 -> 1 and -1 -> -0.5, so a = 0.75 and b = 0.25, exact in float32.
    assert dc.label_rescaling(5) == (0.75, 0.25)
    feedback = dc.LabelFeedback(5, 5, key=getkey())
    feedback = eqx.tree_at(lambda f: f.weight, feedback, jnp.eye(5))
    message = np.asarray(feedback(dc.encode_labels(jnp.array([3]), 5)))
    assert message.tolist() == [[-0.5, -0.5, -0.5, 1.0, -0.5]]


def test_encode_labels():
    y = dc.encode_labels(jnp.array([2, 0]), 3)
    assert np.asarray(y).tolist() == [[-1.0, -1.0, 1.0], [1.0, -1.0, -1.0]]
    assert y.dtype == jnp.float32
    with pytest.raises(TypeError, match="1-D labels must be integer class indices"):
        dc.encode_labels(jnp.array([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match=r"Labels must be class indices \(batch,\) or a \(batch, 3\) label matrix, got shape \(2, 4\)"):
        dc.encode_labels(jnp.ones((2, 4)), 3)
