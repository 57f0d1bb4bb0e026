"""Training sampler whose order is a function of (seed, epoch), so that a resumed run rebuilds it."""

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Sampler

if TYPE_CHECKING:
    import lightning as L

logger = logging.getLogger(__name__)

__all__ = ["EpochSampler", "epoch_order", "next_training_position"]

#: numpy.random.SeedSequence stream of the shuffling order; the other seeded steps use 1 to 4.
SHUFFLE_STREAM = 5


def epoch_order(size: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Return the int64 sample indices ``(size,)`` of one training epoch.

    With `shuffle` the order is a permutation drawn from ``SeedSequence([seed, SHUFFLE_STREAM,
    epoch])`` and depends on nothing else. Without it the order is ``0 .. size - 1``.
    """
    if not shuffle:
        return np.arange(size, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, SHUFFLE_STREAM, epoch]))
    return rng.permutation(size).astype(np.int64)


class EpochSampler(Sampler[int]):
    """Sample indices of a training split in the order `epoch_order` gives for each epoch.

    Each iteration yields the order of the sampler's current `epoch` and then moves `epoch` on
    by one, so a loader used in a plain loop gets a new order every epoch. `set_epoch` selects
    the epoch of the next iteration; Lightning calls it at the start of every training epoch.

    Parameters
    ----------
    size
        Number of samples in the split.
    seed
        Seed of the shuffling orders.
    shuffle
        Whether each epoch is a seeded permutation; otherwise the order is ``0 .. size - 1``.
    epoch
        Epoch of the first iteration.
    start
        Position in the order of `epoch` at which the first iteration starts: the number of
        samples that an interrupted run already trained on in that epoch. Later iterations, and
        a first iteration of another epoch (after `set_epoch`), start at 0.
    """

    def __init__(self, size: int, seed: int, shuffle: bool, epoch: int = 0, start: int = 0) -> None:
        if not 0 <= start <= size:
            raise ValueError(
                f"start must be in [0, size={size}], got {start}; it counts the samples of the first "
                "epoch that were already trained."
            )
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = epoch
        self._start_epoch = epoch
        self._start = start

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        # The full epoch, also when the first iteration resumes inside it: Lightning counts the
        # batches of an epoch from len(loader), including those trained before the interruption.
        return self.size

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        start = self._start if epoch == self._start_epoch else 0
        if start:
            logger.info("Resuming the training order of epoch %d at sample %d of %d.", epoch, start, self.size)
        self._start = 0
        self.epoch = epoch + 1
        return iter(epoch_order(self.size, self.seed, epoch, self.shuffle)[start:].tolist())


def next_training_position(trainer: "L.Trainer") -> tuple[int, int]:
    """Return the epoch of the next training batch of `trainer` and how many of its batches are done.

    The result comes from the progress counters of the fit loop, which a Trainer restores from a
    checkpoint before it requests the training loader. It matches where Lightning 2.6 continues
    a restored run. A checkpoint written between two batches of an epoch resumes inside that
    epoch. One written after its last batch, or after ``max_steps`` ended the fit, resumes at the
    start of the next epoch.
    """
    epochs = trainer.fit_loop.epoch_progress.current
    batches = trainer.fit_loop.epoch_loop.batch_progress
    # An epoch is running (or was interrupted) while it is started but not processed.
    if epochs.started <= epochs.processed:
        return epochs.processed, 0
    if batches.is_last_batch:
        return epochs.processed + 1, 0
    return epochs.processed, batches.current.processed
