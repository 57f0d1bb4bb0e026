"""Checks and padding of torch batches before they reach the JAX core.

Every check runs on the torch side, where the messages can name the stage and batch index, and
costs one pass over the batch on the CPU.
"""

import logging
import math
import warnings
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

logger = logging.getLogger(__name__)


def unpack_batch(batch: Any, where: str, *, labels_required: bool) -> tuple[Tensor, Tensor | None]:
    """Return ``(x, y)`` from a ``(x, y)`` pair, or ``(x, None)`` from a bare tensor when labels are optional."""
    if isinstance(batch, Tensor):
        if labels_required:
            raise TypeError(f"{where} is a bare tensor; training and evaluation need a pair (x, y).")
        return batch, None
    if not isinstance(batch, (tuple, list)) or len(batch) not in (1, 2):
        length = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        raise TypeError(f"{where} must be a pair (x, y) of tensors, got {type(batch).__name__}{length}.")
    if len(batch) == 1:
        if labels_required:
            raise TypeError(f"{where} has inputs only; training and evaluation need a pair (x, y).")
        return batch[0], None
    return batch[0], batch[1]


_warned_unscaled = False


def _warn_unscaled_once(where: str, largest: int) -> None:
    global _warned_unscaled
    if not _warned_unscaled:
        _warned_unscaled = True
        warnings.warn(
            f"{where}: inputs `x` are integers up to {largest}; they are cast to float32 but not rescaled, "
            "while the paper's models expect pixels in [0, 1]. Divide raw 0..255 images by 255 "
            "(for example with torchvision's ToTensor) before training.",
            stacklevel=3,
        )


def flatten_inputs(x: Any, input_dim: int, where: str) -> Float[Tensor, "batch input_dim"]:
    """Return ``x`` as ``(B, input_dim)`` after checking its type, size and values.

    Integer and boolean inputs are cast to float32 (with a one-time warning when integers exceed
    1, which usually means unscaled pixels).

    Raises
    ------
    TypeError
        If ``x`` is not a real-valued tensor.
    ValueError
        If the batch is empty, a sample does not have ``input_dim`` values, or ``x`` contains
        NaN or infinite values.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: inputs `x` must be a torch.Tensor, got {type(x).__name__}.")
    if x.is_complex():
        raise TypeError(f"{where}: inputs `x` must be real, got dtype {x.dtype}.")
    if x.ndim == 0:
        raise ValueError(f"{where}: inputs `x` must have shape (batch, ...), got a 0-d tensor.")
    if x.shape[0] == 0:
        raise ValueError(
            f"{where} is empty (0 samples); the DataLoader or its sampler produced an empty batch. "
            "Remove empty batches from the sampler or check the dataset length."
        )
    flat = x.detach().reshape(x.shape[0], -1)
    if flat.shape[1] != input_dim:
        raise ValueError(
            f"{where}: inputs `x` of shape {tuple(x.shape)} have {flat.shape[1]} values per sample, but "
            f"the network's input_dim is {input_dim}; build the model with input_dim={flat.shape[1]} or "
            "fix the DataModule's preprocessing."
        )
    if not flat.is_floating_point():
        # The JAX core computes in float32; integer pixels are cast, never rescaled.
        if flat.dtype != torch.bool and flat.numel() and int(flat.max()) > 1:
            _warn_unscaled_once(where, int(flat.max()))
        flat = flat.to(torch.float32)
    # A sum is finite exactly when every value is (up to overflow, which the count below settles),
    # and it is cheaper than an elementwise check on every batch.
    if flat.is_floating_point() and not math.isfinite(float(flat.sum(dtype=torch.float64))):
        bad = flat.numel() - int(torch.isfinite(flat).sum())
        if bad:
            raise ValueError(
                f"{where}: inputs `x` contain {bad} NaN or infinite values; clean or impute the data "
                "before training."
            )
    return flat


def check_labels(y: Any, batch_size: int, num_classes: int, where: str) -> None:
    """Raise unless ``y`` contains ``batch_size`` class indices in ``[0, C)`` or +-1 one-hot rows ``(B, C)``.

    Label matrices must contain only -1 and +1, with one +1 per row, because the core uses them as
    perceptron targets: one-hot (0/1) or rescaled matrices would train silently towards the wrong
    targets.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"{where}: labels `y` must be a torch.Tensor, got {type(y).__name__}.")
    if y.ndim == 0 or y.shape[0] != batch_size:
        raise ValueError(
            f"{where}: labels `y` have shape {tuple(y.shape)}, but the inputs have {batch_size} samples; "
            "pass one label per sample."
        )
    if y.ndim == 1:
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(
                f"{where}: 1-D labels `y` must be integer class indices, got dtype {y.dtype}; cast them "
                "with `y.long()` or use label_encoding='pm1' for a (batch, num_classes) matrix."
            )
        low, high = (int(value) for value in torch.aminmax(y))
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{where}: class indices must be in [0, {num_classes}), got values in [{low}, {high}]; "
                "check num_classes or the dataset's labels."
            )
        return
    if y.ndim != 2 or y.shape[1] != num_classes:
        raise ValueError(
            f"{where}: labels `y` must be class indices (batch,) or a (batch, {num_classes}) +-1 matrix, "
            f"got shape {tuple(y.shape)}."
        )
    if not y.is_floating_point():
        raise TypeError(f"{where}: a label matrix `y` must be float, got dtype {y.dtype}.")
    if not bool(((y == 1) | (y == -1)).all()):
        found = torch.unique(y).tolist()[:6]
        raise ValueError(
            f"{where}: a label matrix `y` must contain only -1 and +1 (the perceptron targets), got values "
            f"such as {found}; use label_encoding='pm1' or 'index' (one-hot and rescaled matrices are "
            "not valid targets)."
        )
    positives = (y == 1).sum(dim=1)
    if not bool((positives == 1).all()):
        row = int(torch.nonzero(positives != 1)[0])
        raise ValueError(
            f"{where}: each row of a label matrix `y` must have exactly one +1 (its class), but row {row} "
            f"has {int(positives[row])}; pass class indices for other label sets."
        )


def pad_rows(x: Tensor, y: Tensor, size: int) -> tuple[Tensor, Tensor, Bool[Tensor, " size"]]:
    """Pad ``x`` and ``y`` to ``size`` rows by repeating row 0; return them and the real-row mask.

    The jitted training step compiles once per batch shape, so a short last batch padded to the
    training batch size reuses the compiled step. Padded rows get no update: the core gates
    them out with the mask and normalises by the number of real rows.
    """
    count = x.shape[0]
    mask = torch.arange(size) < count
    if count == size:
        return x, y, mask
    fill = size - count
    x = torch.cat([x, x[:1].expand(fill, *x.shape[1:])])
    y = torch.cat([y, y[:1].expand(fill, *y.shape[1:])])
    return x, y, mask
