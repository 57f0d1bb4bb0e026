"""Tests for the backprop MLP baselines and parameter matching."""

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from darnax_bridge._baselines import (
    BackpropMLP,
    SignSTE,
    count_parameters,
    matched_hidden_width,
    mlp_parameter_count,
    sign_ste,
)


def _trainer(max_epochs: int = 1) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@pytest.fixture
def single_thread():
    """Run torch on one thread: these matmuls are tiny, and on a busy machine the
    synchronisation of several intra-op threads slows training by over ten times."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits() -> tuple[TensorDataset, TensorDataset]:
    """Real scikit-learn digits, 8x8 pixels scaled to [0, 1], split 1500 / 297."""
    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    x = torch.tensor(data.data[order] / 16.0, dtype=torch.float32).reshape(-1, 8, 8)
    y = torch.tensor(data.target[order], dtype=torch.int64)
    return TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])


# --- SignSTE -------------------------------------------------------------------------


def test_sign_ste_forward_values():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    expected = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    assert torch.equal(sign_ste(x), expected)
    assert torch.equal(SignSTE.apply(x), expected)


def test_sign_ste_gradient_mask():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    sign_ste(x).backward(upstream)
    # Gradient passes where -1 <= x <= 1 and is zero at -2 and 1.5.
    expected = torch.tensor([0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0])
    assert torch.equal(x.grad, expected)


# --- parameter counts ----------------------------------------------------------------


def test_count_sign_mlp_small():
    model = BackpropMLP(input_dim=4, num_classes=2, hidden=3, depth=2, activation="sign")
    assert count_parameters(model) == 4 * 3 + 3 * 3 + 3 * 2
    assert count_parameters(model) == 27
    assert mlp_parameter_count(3, input_dim=4, num_classes=2, depth=2) == 27


def test_count_relu_mlp_with_bias():
    model = BackpropMLP(input_dim=4, num_classes=2, hidden=3, depth=2, activation="relu")
    assert model.hparams.bias is True
    assert count_parameters(model) == 27 + 3 + 3 + 2


def test_count_depth_one():
    model = BackpropMLP(input_dim=4, num_classes=2, hidden=3, depth=1, activation="sign")
    assert count_parameters(model) == 4 * 3 + 3 * 2
    assert mlp_parameter_count(3, input_dim=4, num_classes=2, depth=1) == 18


def test_count_skips_frozen():
    model = BackpropMLP(input_dim=4, num_classes=2, hidden=3, depth=2, activation="sign")
    model.net[0].weight.requires_grad_(False)
    assert count_parameters(model) == 27 - 12


def test_count_rejects_non_module():
    with pytest.raises(TypeError, match="`module` must be a torch.nn.Module, got dict"):
        count_parameters({"w": torch.zeros(3)})


def test_matched_width_paper_h2000():
    paper_count = round(0.1 * 784 * 2000 + 0.01 * 2000**2 + 10 * 2000)
    assert paper_count == 216_800

    def hand_count(h: int) -> int:
        return 784 * h + h * h + 10 * h

    best = min(range(1, 2000), key=lambda h: abs(hand_count(h) - paper_count))
    width = matched_hidden_width(paper_count)
    assert width == best
    assert width == 215
    assert hand_count(215) == 216_935


def test_matched_width_exact_counts():
    # The authors' largest MLP, h = 600, has 784*600 + 600**2 + 10*600 weights.
    assert matched_hidden_width(836_400) == 600
    assert matched_hidden_width(794 * 7, depth=1) == 7
    assert matched_hidden_width(27, input_dim=4, num_classes=2, depth=2) == 3


def test_matched_width_tie_and_minimum():
    # Widths 1 and 2 give 10 and 20 weights, equally far from 15: the smaller wins.
    assert matched_hidden_width(15, input_dim=8, num_classes=2, depth=1) == 1
    assert matched_hidden_width(1) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_params": 0}, "`num_params` must be a positive int, got 0"),
        ({"num_params": 100, "depth": -1}, "`depth` must be a positive int, got -1"),
        ({"num_params": 100, "input_dim": 0}, "`input_dim` must be a positive int, got 0"),
    ],
)
def test_matched_width_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        matched_hidden_width(**kwargs)


def test_matched_width_rejects_float():
    with pytest.raises(TypeError, match="`num_params` must be an int, got 216800.0"):
        matched_hidden_width(216800.0)


# --- forward and labels --------------------------------------------------------------


def test_sign_mlp_forward_by_hand():
    model = BackpropMLP(input_dim=2, num_classes=2, hidden=2, depth=1, activation="sign")
    with torch.no_grad():
        model.net[0].weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 0.5]]))
        model.net[2].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    # Pre-activations [-0.4, 0.4] -> signs [-1, +1] -> logits [-1 + 2, -3 - 1].
    logits = model(torch.tensor([[0.2, 0.6]]))
    assert torch.allclose(logits, torch.tensor([[1.0, -4.0]]))


def test_forward_flattens_images():
    model = BackpropMLP(input_dim=64, num_classes=10, hidden=8, seed=0)
    images = torch.rand(5, 1, 8, 8)
    assert torch.equal(model(images), model(images.reshape(5, 64)))
    assert model(images).shape == (5, 10)


def test_seed_reproducible_and_isolated():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first = BackpropMLP(input_dim=4, num_classes=2, hidden=3, seed=7)
    after = torch.rand(3)
    second = BackpropMLP(input_dim=4, num_classes=2, hidden=3, seed=7)
    other = BackpropMLP(input_dim=4, num_classes=2, hidden=3, seed=8)
    assert torch.equal(before, after)
    assert torch.equal(first.net[0].weight, second.net[0].weight)
    assert not torch.equal(first.net[0].weight, other.net[0].weight)


def test_label_matrices_match_indices(digits, single_thread):
    _, test_set = digits
    x, y = test_set.tensors
    onehot = torch.nn.functional.one_hot(y, 10).float()
    encodings = {
        "index": y,
        "onehot": onehot,
        "pm1": 2 * onehot - 1,
        "rescaled": onehot * (10**0.5 / 2) - 0.5,
    }
    model = BackpropMLP(input_dim=64, hidden=16, activation="relu", seed=0)
    results = {}
    for name, labels in encodings.items():
        loader = DataLoader(TensorDataset(x, labels), batch_size=100)
        results[name] = _trainer().validate(model, loader, verbose=False)[0]
    for name in ("onehot", "pm1", "rescaled"):
        assert results[name]["val_loss"] == pytest.approx(results["index"]["val_loss"])
        assert results[name]["val_acc"] == pytest.approx(results["index"]["val_acc"])


def test_predict_returns_logits(digits):
    _, test_set = digits
    x, _ = test_set.tensors
    model = BackpropMLP(input_dim=64, hidden=16, activation="relu", seed=0)
    batches = _trainer().predict(model, DataLoader(test_set, batch_size=100))
    logits = torch.cat(batches)
    assert logits.shape == (297, 10)
    with torch.no_grad():
        assert torch.allclose(logits, model(x))


# --- learning on real data -----------------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "threshold"),
    # Measured with these settings (10 epochs, batch 32, hidden 64) over model seeds
    # 0-2: ReLU 0.943-0.976, sign 0.963-0.980 test accuracy, against 0.1 for chance.
    [("relu", 0.90), ("sign", 0.90)],
)
def test_mlp_learns_digits(digits, single_thread, activation, threshold):
    train_set, test_set = digits
    model = BackpropMLP(input_dim=64, num_classes=10, hidden=64, activation=activation, seed=0)
    train_loader = DataLoader(
        train_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    test_loader = DataLoader(test_set, batch_size=297)
    trainer = _trainer(max_epochs=10)

    untrained = trainer.test(model, test_loader, verbose=False)[0]["test_acc"]
    trainer.fit(model, train_loader)
    train_acc = trainer.callback_metrics["train_acc"].item()
    trained = trainer.test(model, test_loader, verbose=False)[0]["test_acc"]

    assert untrained < 0.4
    assert trained >= threshold
    assert train_acc >= threshold


# --- bad input -----------------------------------------------------------------------


def test_wrong_flattened_size():
    model = BackpropMLP(input_dim=64, hidden=8)
    with pytest.raises(ValueError, match="flatten to 49 features, but the model has input_dim=64"):
        model(torch.zeros(2, 7, 7))


def test_wrong_size_in_step():
    model = BackpropMLP(input_dim=64, hidden=8)
    batch = (torch.zeros(2, 10), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="flatten to 10 features, but the model has input_dim=64"):
        model.training_step(batch, 0)


def test_integer_inputs_rejected():
    model = BackpropMLP(input_dim=4, num_classes=2, hidden=3)
    with pytest.raises(TypeError, match="must be a float tensor, got dtype torch.uint8"):
        model(torch.zeros(2, 4, dtype=torch.uint8))


def test_labels_out_of_range():
    model = BackpropMLP(input_dim=4, num_classes=3, hidden=3)
    batch = (torch.zeros(4, 4), torch.tensor([0, 3, -1, 2]))
    with pytest.raises(ValueError, match=r"lie in \[0, 3\), got out-of-range values \[-1, 3\]"):
        model.validation_step(batch, 0)


def test_label_matrix_wrong_columns():
    model = BackpropMLP(input_dim=4, num_classes=3, hidden=3)
    batch = (torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="has 5 columns, but the model has num_classes=3"):
        model.validation_step(batch, 0)


def test_label_batch_mismatch():
    model = BackpropMLP(input_dim=4, num_classes=3, hidden=3)
    batch = (torch.zeros(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"shape \(3,\) do not match the batch size 2"):
        model.validation_step(batch, 0)


def test_float_index_labels_rejected():
    model = BackpropMLP(input_dim=4, num_classes=3, hidden=3)
    batch = (torch.zeros(2, 4), torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="1-D labels `y` must be int class indices"):
        model.validation_step(batch, 0)


def test_nan_label_matrix_rejected():
    model = BackpropMLP(input_dim=4, num_classes=2, hidden=3)
    batch = (torch.zeros(1, 4), torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="contains NaN or infinite values"):
        model.validation_step(batch, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"activation": "gelu"},
            ValueError,
            r"`activation` must be one of \['sign', 'relu', 'tanh'\], got 'gelu'",
        ),
        (
            {"optimizer": "rmsprop"},
            ValueError,
            r"`optimizer` must be one of \['adam', 'sgd'\], got 'rmsprop'",
        ),
        ({"hidden": 0}, ValueError, "`hidden` must be a positive int, got 0"),
        ({"depth": 0}, ValueError, "`depth` must be a positive int, got 0"),
        ({"input_dim": -5}, ValueError, "`input_dim` must be a positive int, got -5"),
        ({"num_classes": 1}, ValueError, "`num_classes` must be at least 2, got 1"),
        ({"hidden": 2.5}, TypeError, "`hidden` must be an int, got 2.5"),
        ({"lr": 0.0}, ValueError, "`lr` must be a positive finite float, got 0.0"),
        ({"lr": "fast"}, TypeError, "`lr` must be a float or None, got 'fast'"),
        ({"bias": 1}, TypeError, "`bias` must be True, False or None, got 1"),
        ({"seed": -1}, ValueError, "`seed` must be a non-negative int or None, got -1"),
    ],
)
def test_constructor_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        BackpropMLP(**kwargs)


# --- defaults and optimizers ---------------------------------------------------------


def test_defaults_by_activation():
    sign = BackpropMLP()
    relu = BackpropMLP(activation="relu")
    assert sign.hparams.lr == pytest.approx(0.003)
    assert sign.hparams.bias is False
    assert relu.hparams.lr == pytest.approx(1e-3)
    assert relu.hparams.bias is True
    assert count_parameters(sign) == 784 * 200 + 200 * 200 + 200 * 10


def test_optimizer_choice():
    adam = BackpropMLP(input_dim=4, num_classes=2, hidden=3).configure_optimizers()
    sgd = BackpropMLP(input_dim=4, num_classes=2, hidden=3, optimizer="sgd", lr=0.05)
    sgd_optimizer = sgd.configure_optimizers()
    assert isinstance(adam, torch.optim.Adam)
    assert adam.param_groups[0]["lr"] == pytest.approx(0.003)
    assert isinstance(sgd_optimizer, torch.optim.SGD)
    assert sgd_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
