"""Option checking and DataLoader construction shared by all darnax DataModules."""

import logging
import math
import multiprocessing
import multiprocessing.context

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ._preprocess import LABEL_ENCODINGS
from ._sampler import EpochSampler, next_training_position

logger = logging.getLogger(__name__)

__all__ = ["BaseDataModule", "NORMALIZE_MODES"]

#: Accepted values of ``normalize``.
NORMALIZE_MODES = ("unit", "standard", "none")

_START_METHODS = ("spawn", "forkserver", "fork")


def check_int(name: str, value: object, minimum: int, hint: str = "") -> int:
    """Return `value` if it is an int (not a bool) of at least `minimum`, else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} of type {type(value).__name__}.{hint}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}.{hint}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return `value` if it is a bool, else raise TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}.")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return `value` if it is one of `choices`, else raise ValueError."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


class BaseDataModule(L.LightningDataModule):
    """Common options and loaders of the darnax DataModules.

    Every batch is ``(x, y)``: ``x`` float32 ``(B, *feature_shape)`` and ``y`` int64 class
    indices ``(B,)``, or float32 ``(B, num_classes)`` for the label encodings
    ``"onehot"``, ``"pm1"`` and ``"c-rescale"``. Subclasses fill ``_train``, ``_val``,
    ``_test`` and ``_predict`` in ``setup``.

    Parameters
    ----------
    batch_size
        Samples per batch, for every split.
    normalize
        ``"unit"`` scales pixels to [0, 1], ``"standard"`` subtracts the per-channel mean and
        divides by the per-channel standard deviation of the training samples, ``"none"``
        keeps the stored values (as float32). Subclasses may accept fewer modes.
    flatten
        Whether each sample is flattened to one feature vector.
    label_encoding
        One of ``"index"``, ``"onehot"``, ``"pm1"``, ``"c-rescale"``; see `encode_labels`.
    projection_dim
        If set, each normalised, flattened sample ``x`` of length D becomes ``sign(P x)``
        with 0 mapped to -1, where ``P`` ``(projection_dim, D)`` has N(0, 1/D) entries drawn
        from `seed` and is the same for every split. Requires ``flatten=True``. MNIST with
        ``projection_dim=100`` gives the binary input called Entangled-MNIST in darnax.
    samples_per_class
        If set, the training split keeps this many random samples of each class (seeded),
        drawn after the validation hold-out.
    val_fraction
        Fraction in [0, 1) of the training split held out for validation, stratified: each
        class gives ``round(val_fraction * n_class)`` random samples (seeded). With 0 there is
        no validation split and `val_dataloader` returns an empty list, so Lightning skips
        validation instead of silently evaluating on the test split.
    seed
        Seed of every random choice: projection, validation hold-out, subsampling and the
        shuffling order. The training order of epoch ``e`` depends only on ``seed`` and
        ``e`` (see `EpochSampler`), so a run resumed from a checkpoint continues it exactly,
        also from a checkpoint written in the middle of an epoch.
    num_workers
        DataLoader worker processes. 0 (the default) loads in the main process. Workers
        start with `multiprocessing_context`, because forking a process in which JAX runs
        can deadlock.
    shuffle
        Whether the training loader reshuffles every epoch. Other loaders never shuffle.
    drop_last
        Whether the training loader drops a last incomplete batch. Other loaders keep it.
    multiprocessing_context
        Start method for workers when ``num_workers > 0``: ``"spawn"`` (the default when
        None), ``"forkserver"``, ``"fork"`` or a ``multiprocessing`` context object.

    Notes
    -----
    Resuming in the middle of an epoch works when the DataModule is passed to
    ``Trainer.fit(datamodule=...)``: `train_dataloader` then reads the restored position of
    the Trainer's fit loop and skips the batches already trained in the interrupted epoch.
    Lightning 2.6 still warns that the dataloader "is not resumable", because it recognises
    only dataloaders with their own ``state_dict``.
    """

    #: Values of ``normalize`` this class accepts.
    normalize_modes: tuple[str, ...] = NORMALIZE_MODES

    def __init__(
        self,
        *,
        batch_size: int = 16,
        normalize: str = "unit",
        flatten: bool = True,
        label_encoding: str = "index",
        projection_dim: int | None = None,
        samples_per_class: int | None = None,
        val_fraction: float = 0.0,
        seed: int = 0,
        num_workers: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        multiprocessing_context: str | multiprocessing.context.BaseContext | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.normalize = check_choice("normalize", normalize, self.normalize_modes)
        self.flatten = check_bool("flatten", flatten)
        self.label_encoding = check_choice("label_encoding", label_encoding, LABEL_ENCODINGS)
        if projection_dim is not None:
            check_int("projection_dim", projection_dim, 1, " Use None to disable the projection.")
            if not flatten:
                raise ValueError(
                    f"projection_dim={projection_dim} requires flatten=True, because the "
                    "projection acts on flattened samples; set flatten=True or projection_dim=None."
                )
        self.projection_dim = projection_dim
        if samples_per_class is not None:
            check_int("samples_per_class", samples_per_class, 1, " Use None to keep every sample.")
        self.samples_per_class = samples_per_class
        self.val_fraction = self._check_fraction("val_fraction", val_fraction)
        self.seed = check_int("seed", seed, 0)
        if self.seed >= 2**63:
            raise ValueError(f"seed must be below 2**63, got {seed}.")
        self.num_workers = check_int("num_workers", num_workers, 0)
        self.shuffle = check_bool("shuffle", shuffle)
        self.drop_last = check_bool("drop_last", drop_last)
        self.multiprocessing_context = self._check_context(multiprocessing_context)

        self._train_sampler: EpochSampler | None = None
        self._restored_state: dict | None = None
        self.projection_matrix: torch.Tensor | None = None
        self._train: Dataset | None = None
        self._val: Dataset | None = None
        self._test: Dataset | None = None
        self._predict: Dataset | None = None

    @staticmethod
    def _check_fraction(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float in [0, 1), got {value!r} of type {type(value).__name__}.")
        if not (0.0 <= value < 1.0):
            raise ValueError(f"{name} must be a float in [0, 1), got {value}; use 0.0 for no hold-out.")
        return float(value)

    @staticmethod
    def _check_context(context: object) -> str | multiprocessing.context.BaseContext | None:
        if context is None or isinstance(context, multiprocessing.context.BaseContext):
            return context
        if context not in _START_METHODS:
            raise ValueError(
                f"multiprocessing_context must be None, one of {_START_METHODS} or a "
                f"multiprocessing context object, got {context!r}."
            )
        if context == "fork":
            logger.warning(
                "multiprocessing_context='fork' can deadlock DataLoader workers once JAX has "
                "started threads in this process; 'spawn' avoids that."
            )
        return context

    # Shape and class information --------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        raise NotImplementedError

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample ``x`` in a batch, without the batch axis."""
        raise NotImplementedError

    @property
    def input_dim(self) -> int:
        """Number of features of one flattened sample."""
        return math.prod(self.feature_shape)

    def _output_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return the batch feature shape for samples of `sample_shape` under the options."""
        if self.projection_dim is not None:
            return (self.projection_dim,)
        if self.flatten:
            return (math.prod(sample_shape),)
        return tuple(sample_shape)

    # Loaders ----------------------------------------------------------------------------

    def _loader(self, dataset: Dataset | None, split: str, sampler: EpochSampler | None = None) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                f"the {split} split is not loaded; call setup() before {split}_dataloader() "
                "(Lightning's Trainer calls it for you)."
            )
        options = {"batch_size": self.batch_size, "num_workers": self.num_workers}
        if sampler is not None:
            # The generator only seeds the worker processes; drawing their seeds from it leaves
            # torch's global RNG untouched.
            options.update(sampler=sampler, drop_last=self.drop_last, generator=torch.Generator().manual_seed(self.seed))
        if self.num_workers > 0:
            options["multiprocessing_context"] = self.multiprocessing_context or "spawn"
            # Persistent workers avoid starting new processes at every epoch.
            options["persistent_workers"] = True
        return DataLoader(dataset, **options)

    def train_dataloader(self) -> DataLoader:
        """Return the training loader, which starts at the next training batch of the run.

        The order of each epoch comes from `EpochSampler` (shuffled from ``seed`` if
        ``shuffle``). Inside a Trainer's fit the loader starts at the fit loop's position, so a
        run resumed in the middle of an epoch skips the batches trained before the interruption.
        Without a Trainer it starts at the position restored by `load_state_dict`, or else at the
        epoch after the one that the previous training loader of this DataModule started.
        """
        if self._train is None:
            return self._loader(None, "train")
        epoch, batches_done = self._next_position()
        self._train_sampler = EpochSampler(
            len(self._train), self.seed, self.shuffle, epoch=epoch, start=batches_done * self.batch_size
        )
        return self._loader(self._train, "train", sampler=self._train_sampler)

    def _next_position(self) -> tuple[int, int]:
        """Return the epoch and the number of its batches trained before the next training batch."""
        restored, self._restored_state = self._restored_state, None
        if self.trainer is not None:
            position = next_training_position(self.trainer)
        elif restored is not None:
            position = restored["epoch"], restored["batches_done"]
        elif self._train_sampler is not None:
            position = self._train_sampler.epoch, 0
        else:
            position = 0, 0
        if restored is not None:
            self._check_restored_order(restored, *position)
        return position

    def val_dataloader(self) -> DataLoader | list:
        """Return the validation loader, or an empty list (no validation) when ``val_fraction`` is 0."""
        if self._val is None:
            if self._train is None:
                return self._loader(None, "val")
            return []
        return self._loader(self._val, "val")

    def test_dataloader(self) -> DataLoader:
        """Return the test loader."""
        return self._loader(self._test, "test")

    def predict_dataloader(self) -> DataLoader:
        """Return the prediction loader."""
        return self._loader(self._predict, "predict")

    # Checkpointed state -----------------------------------------------------------------

    def _order_settings(self) -> dict[str, int | bool | None]:
        """Return the options that fix the sample order of an epoch and its batch boundaries."""
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "train_size": None if self._train is None else len(self._train),
        }

    def state_dict(self) -> dict[str, int | bool | None]:
        """Return the position of the next training batch and the options that fix the order.

        ``epoch`` and ``batches_done`` (batches of that epoch already trained) come from the
        attached Trainer's fit loop, or without a Trainer from the last training loader: its
        next epoch, with no batch done. ``seed``, ``shuffle``, ``batch_size`` and
        ``train_size`` (None before `setup`) let `load_state_dict` detect a DataModule that
        would produce another order.
        """
        if self.trainer is not None:
            epoch, batches_done = next_training_position(self.trainer)
        elif self._train_sampler is not None:
            epoch, batches_done = self._train_sampler.epoch, 0
        else:
            epoch, batches_done = 0, 0
        return {**self._order_settings(), "epoch": epoch, "batches_done": batches_done}

    def load_state_dict(self, state_dict: dict[str, int | bool | None]) -> None:
        """Restore a state written by `state_dict`; the next `train_dataloader` call uses it.

        Raises
        ------
        KeyError
            If an entry of `state_dict` is missing.
        TypeError, ValueError
            If ``epoch`` or ``batches_done`` is not an int >= 0.
        """
        missing = [key for key in (*self._order_settings(), "epoch", "batches_done") if key not in state_dict]
        if missing:
            raise KeyError(
                f"state_dict lacks {', '.join(repr(key) for key in missing)} (keys: {sorted(state_dict)}); "
                "it was not produced by the state_dict of a darnax DataModule."
            )
        check_int("state_dict['epoch']", state_dict["epoch"], 0)
        check_int("state_dict['batches_done']", state_dict["batches_done"], 0)
        self._restored_state = dict(state_dict)

    def _check_restored_order(self, restored: dict, epoch: int, batches_done: int) -> None:
        """Reject a mid-epoch resume whose order options differ from the saved ones; warn at epoch start."""
        current = self._order_settings()
        changed = [name for name in current if restored[name] is not None and restored[name] != current[name]]
        if not changed:
            return
        saved = ", ".join(f"{name}={restored[name]!r}" for name in changed)
        now = ", ".join(f"{name}={current[name]!r}" for name in changed)
        if batches_done:
            raise ValueError(
                f"{type(self).__name__} resumes after batch {batches_done} of epoch {epoch}, but the "
                f"checkpoint was written with {saved} and this DataModule has {now}, so the batches "
                "left in that epoch would differ from those of the interrupted run. Resume with the "
                "DataModule options of the interrupted run (train_size follows from the dataset, "
                "samples_per_class and val_fraction), or from a checkpoint written at the end of an epoch."
            )
        logger.warning(
            "%s resumes with %s instead of %s as saved in the checkpoint, so its training batches "
            "differ from those of the interrupted run.",
            type(self).__name__,
            now,
            saved,
        )
