"""Tests for DarnaxModule checkpoints: safe loading, exact resume, and reloading for inference."""

import jax
import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Sampler

from darnax_bridge._checkpoint import state_to_tree, tree_to_state
from darnax_bridge._module import CHECKPOINT_KEY, DarnaxModule
from darnax_bridge.data import DigitsDataModule, MNISTDataModule

HIDDEN = 64
EPOCHS = 3


def small_model(**overrides) -> DarnaxModule:
    options = dict(hidden=HIDDEN, input_dim=64, num_classes=10, seed=3)
    options.update(overrides)
    return DarnaxModule(**options)


def digits(**options) -> DigitsDataModule:
    """100 real digits images, shuffled from the DataModule's seed: batches of 16 (7 per epoch)."""
    return DigitsDataModule(batch_size=16, samples_per_class=10, seed=0, **options)


def trainer(**overrides) -> L.Trainer:
    options = dict(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    options.update(overrides)
    return L.Trainer(**options)


def leaves_equal(a, b) -> bool:
    left, right = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(left) == len(right) and all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(left, right))


class EpochSeededSampler(Sampler):
    """Shuffles with ``randperm`` seeded by ``(seed, epoch)`` and can skip the start of one epoch."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch, self.skip = size, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        skip, self.skip = self.skip, 0
        return iter(order[skip:])


class ResumableDigits(L.LightningDataModule):
    """Digits whose training order survives a mid-epoch resume.

    Lightning restarts a plain DataLoader from its first batch after a mid-epoch restore, so this
    loader skips the batches that the restored loop counts as trained in the current epoch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inner = digits()
        self.input_dim, self.num_classes, self.batch_size = 64, 10, 16

    def setup(self, stage: str) -> None:
        self.inner.setup(stage)
        self.dataset = self.inner.train_dataloader().dataset

    def train_dataloader(self) -> DataLoader:
        sampler = EpochSeededSampler(len(self.dataset), seed=5)
        batches = -(-len(self.dataset) // self.batch_size)
        # `processed` counts the batch whose end hook wrote a step checkpoint; `completed` does not yet.
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed % batches
        sampler.skip = self.batch_size * done
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler)


def test_checkpoints_load_weights_only(tmp_path):
    model = small_model()
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4, save_top_k=-1, save_last=True)
    trainer(max_epochs=2, enable_checkpointing=True, callbacks=[callback]).fit(model, digits())
    paths = sorted(tmp_path.glob("*.ckpt"))
    assert len(paths) == 4  # steps 4, 8 and 12, and last.ckpt
    for path in paths:
        checkpoint = torch.load(path, weights_only=True)
        state = checkpoint[CHECKPOINT_KEY]
        assert all(isinstance(leaf, torch.Tensor) for leaf in state["network"]["leaves"])
        assert len(state["network"]["leaves"]) == len(jax.tree_util.tree_leaves(model.net))
        assert state["keys"].shape == (3, 2)
        assert state["pad_size"] == 16
        assert checkpoint["hyper_parameters"]["input_dim"] == 64


@pytest.mark.parametrize("steps", [7, 14])
def test_resume_after_max_steps(tmp_path, steps):
    # The real DigitsDataModule: its order of each epoch depends only on its seed and the epoch.
    reference = small_model()
    trainer().fit(reference, digits())

    interrupted = small_model()
    first = trainer(max_steps=steps)
    first.fit(interrupted, digits())
    first.save_checkpoint(tmp_path / "interrupted.ckpt")

    resumed = small_model()
    second = trainer()
    second.fit(resumed, digits(), ckpt_path=tmp_path / "interrupted.ckpt")
    assert second.global_step == 7 * EPOCHS
    assert leaves_equal(resumed.net, reference.net)
    assert leaves_equal(resumed.opt_state, reference.opt_state)
    assert second.callback_metrics["train_acc"] == reference.trainer.callback_metrics["train_acc"]


def test_resume_mid_epoch(tmp_path):
    # A run killed after step 10 (epoch 2, batch 3 of 7) resumes from its last step checkpoint.
    # NOTE: a checkpoint written by `trainer.save_checkpoint` after a mid-epoch `max_steps` stop is
    # not used here: Lightning 2.6 then marks the epoch as completed and resumes at the next epoch.
    reference = small_model()
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=10, save_top_k=-1, filename="{step}")
    trainer(enable_checkpointing=True, callbacks=[callback]).fit(reference, ResumableDigits())

    resumed = small_model()
    second = trainer()
    second.fit(resumed, ResumableDigits(), ckpt_path=tmp_path / "step=10.ckpt")
    assert second.global_step == 7 * EPOCHS
    assert leaves_equal(resumed.net, reference.net)
    assert leaves_equal(resumed.opt_state, reference.opt_state)
    # The epoch sums were saved mid-epoch, so the resumed epoch's accuracy covers all its batches.
    assert second.callback_metrics["train_acc"] == reference.trainer.callback_metrics["train_acc"]


def interrupt_and_resume(tmp_path, make_model, make_data, steps, every, epochs, **resumed_data):
    """Return (reference, resumed, interrupted checkpoint): a run of `epochs` and one stopped after `steps`, then resumed."""
    reference = make_model()
    trainer(max_epochs=epochs).fit(reference, make_data())

    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=every, save_top_k=-1, filename="{step}")
    first = trainer(max_epochs=epochs, max_steps=steps, enable_checkpointing=True, callbacks=[callback])
    first.fit(make_model(), make_data())
    path = tmp_path / f"step={steps}.ckpt"

    resumed = make_model()
    second = trainer(max_epochs=epochs)
    second.fit(resumed, make_data(**resumed_data), ckpt_path=path)
    assert second.global_step == reference.trainer.global_step
    return reference, resumed, torch.load(path, weights_only=True)


@pytest.mark.parametrize(("steps", "every", "epoch", "batches_done"), [(3, 3, 0, 3), (10, 5, 1, 3), (7, 7, 1, 0)])
def test_resume_mid_epoch_digits(tmp_path, steps, every, epoch, batches_done):
    # The real, shuffled DigitsDataModule, 7 batches per epoch, interrupted inside the first or the
    # second epoch, or after the last batch of the first (which resumes at the start of the second).
    reference, resumed, checkpoint = interrupt_and_resume(tmp_path, small_model, digits, steps, every, epochs=2)
    position = checkpoint["DigitsDataModule"]
    assert (position["epoch"], position["batches_done"]) == (epoch, batches_done)
    assert leaves_equal(resumed.net, reference.net)
    assert leaves_equal(resumed.opt_state, reference.opt_state)


@pytest.mark.parametrize("steps", [3, 10])
def test_resume_mid_epoch_train_acc(tmp_path, steps):
    # The epoch sums were saved mid-epoch, so the resumed epoch's accuracy covers all its batches.
    reference, resumed, _ = interrupt_and_resume(tmp_path, small_model, digits, steps, steps, epochs=2)
    assert resumed.trainer.callback_metrics["train_acc"] == reference.trainer.callback_metrics["train_acc"]


def test_resume_after_last_batch_train_acc(tmp_path):
    reference, resumed, _ = interrupt_and_resume(tmp_path, small_model, digits, 7, 7, epochs=2)
    assert resumed.trainer.callback_metrics["train_acc"] == reference.trainer.callback_metrics["train_acc"]


def test_resume_mid_epoch_mnist(tmp_path):
    # 300 images of the embedded MNIST subset in batches of 50: step 8 is batch 2 of the second epoch.
    def mnist(**options):
        return MNISTDataModule(batch_size=50, samples_per_class=30, seed=4, **options)

    def model():
        return small_model(input_dim=784)

    reference, resumed, checkpoint = interrupt_and_resume(tmp_path, model, mnist, steps=8, every=4, epochs=2)
    assert checkpoint["MNISTDataModule"]["batches_done"] == 2
    assert leaves_equal(resumed.net, reference.net)
    assert leaves_equal(resumed.opt_state, reference.opt_state)


def test_resume_mid_epoch_spawn_workers(tmp_path):
    # A loader with workers requests its first indices before the Trainer calls set_epoch. So the
    # DataModule itself must start the resumed loader at the restored epoch.
    reference, resumed, _ = interrupt_and_resume(tmp_path, small_model, digits, 10, 10, epochs=2, num_workers=1)
    assert leaves_equal(resumed.net, reference.net)


def test_resume_mid_epoch_other_seed(tmp_path):
    callback = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, filename="{step}")
    trainer(max_steps=3, enable_checkpointing=True, callbacks=[callback]).fit(small_model(), digits())
    other = DigitsDataModule(batch_size=16, samples_per_class=10, seed=1)
    with pytest.raises(ValueError, match="resumes after batch 3 of epoch 0, but the checkpoint was written with seed=0"):
        trainer().fit(small_model(), other, ckpt_path=tmp_path / "step=3.ckpt")


def test_saved_after_max_steps_resumes_next_epoch(tmp_path):
    # Lightning 2.6 marks the epoch as finished when `max_steps` ends a fit mid-epoch, so a checkpoint
    # saved afterwards resumes at the next epoch. The DataModule's position follows the fit loop.
    run = trainer(max_steps=3)
    run.fit(small_model(), digits())
    run.save_checkpoint(tmp_path / "stopped.ckpt")
    position = torch.load(tmp_path / "stopped.ckpt", weights_only=True)["DigitsDataModule"]
    assert (position["epoch"], position["batches_done"]) == (1, 0)
    second = trainer(max_epochs=2)
    second.fit(small_model(), digits(), ckpt_path=tmp_path / "stopped.ckpt")
    assert second.global_step == 3 + 7


def test_load_from_checkpoint_reproduces_model(tmp_path):
    model = small_model()
    run = trainer(max_epochs=1)
    data = digits()
    run.fit(model, data)
    run.save_checkpoint(tmp_path / "model.ckpt")

    loaded = DarnaxModule.load_from_checkpoint(tmp_path / "model.ckpt")
    assert leaves_equal(loaded.net, model.net)
    assert leaves_equal(loaded.opt_state, model.opt_state)
    x, _ = next(iter(data.test_dataloader()))
    assert torch.equal(loaded(x), model(x))
    assert trainer().test(loaded, data, verbose=False) == run.test(model, data, verbose=False)


def test_drawn_model_seed_is_stored(tmp_path):
    # density_j=0.03 puts J in the ELL layout, whose padded width depends on the random mask.
    L.seed_everything(123)
    model = DarnaxModule(hidden=HIDDEN, input_dim=64, num_classes=10, model_seed=None, density_j=0.03)
    assert isinstance(model.hparams.model_seed, int)
    run = trainer(max_steps=3)
    run.fit(model, digits())
    run.save_checkpoint(tmp_path / "drawn.ckpt")

    L.seed_everything(999)  # a different torch state must not matter when loading
    loaded = DarnaxModule.load_from_checkpoint(tmp_path / "drawn.ckpt")
    assert loaded.hparams.model_seed == model.hparams.model_seed
    assert leaves_equal(loaded.net, model.net)


def test_checkpoint_of_other_size_rejected(tmp_path):
    model = small_model()
    run = trainer(max_steps=1)
    run.fit(model, digits())
    run.save_checkpoint(tmp_path / "h64.ckpt")
    with pytest.raises(ValueError, match=r"`network` array \d+ has shape .*64.*expects shape .*32"):
        DarnaxModule.load_from_checkpoint(tmp_path / "h64.ckpt", hidden=32)


def test_checkpoint_without_darnax_state():
    with pytest.raises(KeyError, match="no 'darnax' entry"):
        small_model().on_load_checkpoint({"state_dict": {}})


def test_state_round_trip_keeps_dtypes():
    model = small_model()
    state = tree_to_state(model.net)
    dtypes = {tensor.dtype for tensor in state["leaves"]}
    assert {torch.float32, torch.bool, torch.int32} <= dtypes  # weights, masks and ELL indices
    restored = state_to_tree(model.net, state, name="network", device=jax.devices()[0])
    assert leaves_equal(restored, model.net)


def test_state_of_other_format_rejected():
    with pytest.raises(ValueError, match="not a darnax pytree state of format 1"):
        state_to_tree(small_model().net, {"leaves": []}, name="network", device=jax.devices()[0])
