"""Tests for DarnaxModule: steps, logging, callbacks, batch checks, prediction and agreement with the core."""

import logging
import math
import warnings

import jax
import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

import darnax_core as dc
from darnax_bridge._module import DarnaxModule, relax_without_labels
from darnax_bridge._summary import DarnaxModelSummary, module_counts
from darnax_bridge.data import DigitsDataModule

HIDDEN = 64


def small_model(**overrides) -> DarnaxModule:
    options = dict(hidden=HIDDEN, input_dim=64, num_classes=10, seed=3)
    options.update(overrides)
    return DarnaxModule(**options)


def digits(samples_per_class: int = 10, **overrides) -> DigitsDataModule:
    """Real scikit-learn digits: 100 training images by default (6 full batches of 16 and one of 4)."""
    options = dict(batch_size=16, samples_per_class=samples_per_class, seed=0)
    options.update(overrides)
    return DigitsDataModule(**options)


def trainer(**overrides) -> L.Trainer:
    options = dict(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    options.update(overrides)
    return L.Trainer(**options)


class BatchList(Dataset):
    """A dataset whose items are whole batches; use it with ``DataLoader(batch_size=None)``."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def loader_of(*batches) -> DataLoader:
    return DataLoader(BatchList(list(batches)), batch_size=None)


def digit_batch(count: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    data = digits()
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    return x[:count], y[:count]


def leaves_equal(a, b) -> bool:
    left, right = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(left) == len(right) and all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(left, right))


# --- steps, callbacks and logging -------------------------------------------------------------


def test_global_step_counts_batches():
    model = small_model()
    run = trainer(max_epochs=2)
    run.fit(model, digits())
    assert run.num_training_batches == 7
    assert run.global_step == 14
    assert run.callback_metrics["train_sweeps"] == pytest.approx(1 + 5 + 5)


def test_training_changes_weights_and_learns():
    model = small_model()
    before = [np.asarray(leaf) for leaf in dc.trainable_leaves(model.net)]
    run = trainer(max_epochs=3)
    data = digits(samples_per_class=30)
    run.fit(model, data)
    after = [np.asarray(leaf) for leaf in dc.trainable_leaves(model.net)]
    assert all(not np.array_equal(b, a) for b, a in zip(before, after))
    test_accuracy = run.test(model, data, verbose=False)[0]["test_acc"]
    assert test_accuracy > 0.5  # chance is 0.1


def test_max_steps_stops_midway():
    model = small_model()
    run = trainer(max_epochs=5, max_steps=4)
    run.fit(model, digits())
    assert run.global_step == 4
    assert int(model._train_totals.count) == 4 * 16


def test_checkpoint_every_n_steps(tmp_path):
    model = small_model()
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1, filename="{step}")
    run = trainer(max_epochs=2, enable_checkpointing=True, callbacks=[callback])
    run.fit(model, digits())
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["step=12.ckpt", "step=3.ckpt", "step=6.ckpt", "step=9.ckpt"]


def test_val_check_interval_in_steps():
    class CountValidations(L.Callback):
        def __init__(self):
            self.steps = []

        def on_validation_end(self, trainer, pl_module):
            self.steps.append(trainer.global_step)

    counter = CountValidations()
    run = trainer(val_check_interval=3, callbacks=[counter])
    run.fit(small_model(), digits(val_fraction=0.1))
    assert counter.steps == [3, 6]


def test_early_stopping_stops_run():
    # No change of val_acc can exceed min_delta=2, so the second validation is no improvement.
    model = small_model()
    stopper = EarlyStopping(monitor="val_acc", mode="max", patience=1, min_delta=2.0)
    run = trainer(max_epochs=6, callbacks=[stopper])
    run.fit(model, digits(val_fraction=0.1))
    assert run.current_epoch == 2
    assert stopper.stopped_epoch == 1
    assert run.global_step == 2 * run.num_training_batches


def test_val_acc_matches_core_evaluate():
    model = small_model()
    data = digits(val_fraction=0.2)
    run = trainer()
    run.fit(model, data)
    metrics = run.validate(model, data, verbose=False)[0]
    x, y = data.val_dataloader().dataset.tensors
    # One batch for the core, so that no padded row enters its unsat average.
    reference = dc.evaluate(model.net, model.protocol, (x.numpy(), y.numpy()), key=model._keys[2], batch_size=len(x))
    assert metrics["val_acc"] == pytest.approx(reference["accuracy"], abs=1e-6)
    assert metrics["val_unsat"] == pytest.approx(reference["unsat"], abs=1e-6)


def test_precision_rejected():
    with pytest.raises(ValueError, match="precision='bf16-mixed'.*float32"):
        trainer(precision="bf16-mixed").fit(small_model(), digits())


def test_sizes_from_datamodule():
    model = DarnaxModule(hidden=HIDDEN, seed=1)
    assert model.net is None
    trainer(max_steps=1).fit(model, digits())
    assert model.net.sizes == (64, HIDDEN, 10)
    assert model.hparams.input_dim == 64


def test_size_mismatch_with_datamodule():
    model = small_model(input_dim=784)
    with pytest.raises(ValueError, match="input_dim=784, but the DataModule provides input_dim=64"):
        trainer().fit(model, digits())


def test_summary_counts_jax_parameters(caplog):
    model = small_model(kernel="dense")
    modules = dict(zip(model.net.module_names(), model.net.modules()))
    expected_in = int(np.count_nonzero(np.asarray(modules["input->hidden"].coupling.mask)))
    expected_j = int(np.count_nonzero(np.asarray(modules["hidden"].coupling.mask)))
    expected = expected_in + expected_j + HIDDEN * 10
    assert model.trainable_parameters == expected
    rows = {row.name: row for row in module_counts(model.net)}
    assert rows["input->hidden"].stored == 64 * HIDDEN
    assert rows["output->hidden"].frozen == 10 * HIDDEN
    assert f"{expected:,} trainable JAX parameters" in repr(model)
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.callbacks.model_summary"):
        run = trainer(max_steps=1, enable_model_summary=True)
        run.fit(model, digits())
    assert any(isinstance(callback, DarnaxModelSummary) for callback in run.callbacks)
    assert "input->hidden" in caplog.text
    assert "Trainable params" in caplog.text


def test_seed_everything_fixes_jax_keys():
    keys, weights = [], []
    for torch_seed in (7, 7, 8):
        L.seed_everything(torch_seed)
        model = DarnaxModule(hidden=HIDDEN, input_dim=64, num_classes=10, model_seed=None)
        trainer(max_steps=2).fit(model, digits())
        keys.append(np.asarray(model._keys))
        weights.append(model.net)
    assert np.array_equal(keys[0], keys[1])
    assert leaves_equal(weights[0], weights[1])
    assert not np.array_equal(keys[0], keys[2])
    assert not leaves_equal(weights[0], weights[2])


def test_fixed_seed_ignores_torch_rng():
    keys = []
    for torch_seed in (1, 2):
        L.seed_everything(torch_seed)
        model = small_model(seed=9)
        trainer(max_steps=1).fit(model, digits())
        keys.append(np.asarray(model._keys))
    assert np.array_equal(keys[0], keys[1])
    assert np.array_equal(keys[0], np.asarray(jax.random.split(jax.random.PRNGKey(9), 3)))


# --- constructor checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(optimizer="adam"), "optimizer='adam' needs a positive finite `lr`"),
        (dict(optimizer="sgd", lr=-1.0), "positive finite `lr`"),
        (dict(lr=0.1), "the 'paper' optimizer uses lr_in"),
        (dict(model_seed=2**32), "model_seed"),
        (dict(seed=-1), "`seed` must be None or an int"),
        (dict(batch_size=0), "`batch_size` must be None or a positive int"),
        (dict(hidden=0), "`hidden` must be a positive int, got 0"),
        (dict(num_classes=2.5), "`num_classes` must be None or a positive int, got 2.5"),
        (dict(schedule="random"), "schedule"),
        (dict(optimizer="rmsprop"), "`optimizer` must be"),
    ],
)
def test_constructor_rejects(options, message):
    with pytest.raises(ValueError, match=message):
        small_model(**options)


def test_forward_without_sizes():
    with pytest.raises(RuntimeError, match="network is not built"):
        DarnaxModule(hidden=HIDDEN)(torch.zeros(2, 64))


def test_adam_optimizer_trains():
    model = small_model(optimizer="adam", lr=1e-3)
    before = np.asarray(dc.trainable_leaves(model.net)[0])
    trainer(max_steps=2).fit(model, digits())
    assert not np.array_equal(before, np.asarray(dc.trainable_leaves(model.net)[0]))


def test_from_config_copies_fields():
    config = dc.TUTORIAL_09.replace(hidden=HIDDEN, input_dim=64, j_d=0.5, batch_size=8)
    model = DarnaxModule.from_config(config, seed=2)
    assert model.paper_config == config.replace(epochs=dc.TUTORIAL_09.epochs)
    assert model.hparams.batch_size == 8
    assert float(model.net.layers[0].j_d) == pytest.approx(0.5)


# --- bad input at the bridge ------------------------------------------------------------------


def test_forward_wrong_image_size():
    with pytest.raises(ValueError, match=r"have 784 values per sample, but the network's input_dim is 64"):
        small_model()(torch.zeros(2, 28, 28))


def test_forward_nan_pixels():
    x, _ = digit_batch()
    x[0, 3] = float("nan")
    x[1, 5] = float("inf")
    with pytest.raises(ValueError, match="contain 2 NaN or infinite values"):
        small_model()(x)


def test_forward_empty_batch():
    with pytest.raises(ValueError, match=r"is empty \(0 samples\)"):
        small_model()(torch.zeros(0, 64))


def test_forward_complex_input():
    with pytest.raises(TypeError, match="must be real"):
        small_model()(torch.zeros(2, 64, dtype=torch.complex64))


def test_float64_batch_cast_and_recorded(caplog):
    model = small_model()
    x, _ = digit_batch()
    expected = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # to_jax warns about the cast once per process
        with caplog.at_level(logging.INFO, logger="darnax_bridge._module"):
            logits = model(x.double())
            model(x.double())
    assert logits.dtype == torch.float32
    assert torch.equal(logits, expected)
    assert model.float64_batches == 2
    assert caplog.text.count("has float64 inputs; to_jax casts them to float32") == 1


def test_labels_out_of_range():
    x, y = digit_batch()
    y[2] = 10
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 10\), got values in \[\d, 10\]"):
        trainer().fit(small_model(), train_dataloaders=loader_of((x, y)))


def test_negative_labels_in_validation():
    x, y = digit_batch()
    y[0] = -1
    with pytest.raises(ValueError, match=r"validation batch 0: class indices must be in \[0, 10\)"):
        trainer().validate(small_model(), dataloaders=loader_of((x, y)), verbose=False)


@pytest.mark.parametrize(
    ("make_labels", "error", "message"),
    [
        (lambda y: y.float(), TypeError, "must be integer class indices, got dtype torch.float32"),
        (lambda y: y[:-1], ValueError, r"labels `y` have shape \(7,\), but the inputs have 8 samples"),
        (lambda y: torch.nn.functional.one_hot(y, 10).float(), ValueError, "must contain only -1 and \\+1"),
        (lambda y: torch.zeros(8, 3), ValueError, r"\(batch, 10\) \+-1 matrix, got shape \(8, 3\)"),
        (lambda y: torch.ones(8, 10, dtype=torch.long), TypeError, "label matrix `y` must be float"),
        (lambda y: torch.ones(8, 10), ValueError, "must have exactly one \\+1 \\(its class\\), but row 0 has 10"),
    ],
)
def test_bad_labels(make_labels, error, message):
    x, y = digit_batch()
    with pytest.raises(error, match=message):
        trainer().fit(small_model(), train_dataloaders=loader_of((x, make_labels(y))))


def test_empty_training_batch():
    x, y = digit_batch()
    with pytest.raises(ValueError, match=r"training batch 1 is empty \(0 samples\)"):
        trainer().fit(small_model(), train_dataloaders=loader_of((x, y), (x[:0], y[:0])))


def test_batch_without_labels():
    x, _ = digit_batch()
    with pytest.raises(TypeError, match="training batch 0 is a bare tensor"):
        trainer().fit(small_model(), train_dataloaders=loader_of(x))


def test_batch_larger_than_padding():
    x, y = digit_batch()
    model = small_model(batch_size=4)
    with pytest.raises(ValueError, match="has 8 samples, more than the training batch size 4"):
        trainer().fit(model, train_dataloaders=loader_of((x, y)))


def test_pm1_label_matrix_trains_like_indices():
    x, y = digit_batch()
    pm1 = 2.0 * torch.nn.functional.one_hot(y, 10).float() - 1.0
    by_index, by_matrix = small_model(), small_model()
    trainer(max_steps=1).fit(by_index, train_dataloaders=loader_of((x, y)))
    trainer(max_steps=1).fit(by_matrix, train_dataloaders=loader_of((x, pm1)))
    assert leaves_equal(by_index.net, by_matrix.net)


# --- padding and compilation ------------------------------------------------------------------


def test_ragged_batch_compiles_once():
    model = small_model()
    data = digits()  # 100 images: six batches of 16, then one of 4
    run = trainer(max_epochs=2)
    run.fit(model, data)
    assert len(data.train_dataloader().dataset) % 16 == 4
    assert model.epoch_step_fn._cache_size() == 1


def test_padded_batch_matches_unpadded():
    x, y = digit_batch(5)
    padded, plain = small_model(batch_size=16), small_model(batch_size=5)
    trainer(max_steps=1).fit(padded, train_dataloaders=loader_of((x, y)))
    trainer(max_steps=1).fit(plain, train_dataloaders=loader_of((x, y)))
    for a, b in zip(dc.trainable_leaves(padded.net), dc.trainable_leaves(plain.net)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


# --- prediction -------------------------------------------------------------------------------


def test_predict_returns_logits():
    model = small_model()
    data = digits()
    predictions = trainer().predict(model, data)
    sizes = [batch.shape for batch in predictions]
    test_count = len(data.predict_dataloader().dataset)
    assert all(size[1] == 10 for size in sizes)
    assert sum(size[0] for size in sizes) == test_count
    assert all(batch.dtype == torch.float32 for batch in predictions)


def test_predict_returns_hidden_states():
    plain, with_hidden = small_model(), small_model(return_hidden=True)
    data = digits()
    logits = trainer().predict(plain, data)
    outputs = trainer().predict(with_hidden, data)
    first = outputs[0]
    assert set(first) == {"logits", "hidden"}
    assert first["logits"].shape == (16, 10)
    assert first["hidden"].shape == (16, HIDDEN)
    assert set(torch.unique(first["hidden"]).tolist()) <= {-1.0, 1.0}
    for expected, output in zip(logits, outputs):
        assert torch.equal(output["logits"], expected)


def test_relaxation_matches_core_eval_asynchronous():
    model = small_model(schedule="asynchronous")
    x, _ = digit_batch()
    key = jax.random.PRNGKey(5)
    logits, _ = relax_without_labels(model.net, jax.numpy.asarray(x.numpy()), key, protocol=model.protocol)
    _, metrics = model.eval_step_fn(model.net, jax.numpy.asarray(x.numpy()), key)
    assert np.array_equal(np.asarray(logits), np.asarray(metrics.logits))


def test_forward_matches_predict():
    model = small_model()
    x, _ = digit_batch()
    prediction = trainer().predict(model, dataloaders=loader_of((x,)))[0]
    assert torch.equal(model(x), prediction)


# --- agreement with the core loop ---------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["sequential", "asynchronous"])
def test_fit_matches_core_fit(schedule):
    seed, model_seed = 11, 44
    data = digits(samples_per_class=5, shuffle=False)  # 50 images: batches of 16, 16, 16, 2
    model = small_model(seed=seed, model_seed=model_seed, schedule=schedule)
    trainer(max_epochs=2).fit(model, data)

    x, y = data.train_dataloader().dataset.tensors
    config = model.paper_config
    net = dc.paper_model(jax.random.PRNGKey(model_seed), config)
    optimizer = dc.paper_model_optimizer(net, config)
    protocol = dc.paper_protocol(config, schedule=schedule)
    result = dc.fit(net, optimizer, protocol, (x.numpy(), y.numpy()), key=jax.random.PRNGKey(seed), epochs=2, batch_size=16, shuffle=False, progress=False)

    assert leaves_equal(model.net, result.net)
    assert leaves_equal(model.opt_state, result.opt_state)
    expected_accuracy = result.history[-1]["train_accuracy"]
    assert math.isclose(model.trainer.callback_metrics["train_acc"].item(), expected_accuracy, abs_tol=1e-6)


def test_training_updates_network_in_place():
    """The step donates the network: an old reference is deleted, a copy made before fit survives."""
    model = small_model()
    data = digits()
    trainer(max_steps=1).fit(model, datamodule=data)
    before = model.net
    snapshot = jax.tree_util.tree_map(lambda a: a.copy(), model.net)
    trainer(max_steps=3).fit(model, datamodule=data)
    assert all(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(before.layers))
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(model.net))
    changed = [not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree_util.tree_leaves(snapshot), jax.tree_util.tree_leaves(model.net))]
    assert any(changed)
