"""Label encodings, random sign projection and seeded index selection shared by the DataModules."""

import logging
import math

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "LABEL_ENCODINGS",
    "encode_labels",
    "project_sign",
    "random_projection_matrix",
    "stratified_holdout",
    "subsample_per_class",
]

#: Accepted values of ``label_encoding``.
LABEL_ENCODINGS = ("index", "onehot", "pm1", "c-rescale")

# Offsets into numpy.random.SeedSequence so that each seeded step draws from its own stream.
PROJECTION_STREAM = 1
VALIDATION_STREAM = 2
SUBSAMPLE_STREAM = 3
TEST_SPLIT_STREAM = 4


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
    """Return a NumPy generator for one seeded step; distinct streams are independent."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def encode_labels(labels: torch.Tensor, num_classes: int, encoding: str) -> torch.Tensor:
    """Encode class indices as the training target.

    Parameters
    ----------
    labels
        int64 class indices of shape ``(N,)``, each in ``[0, num_classes)``.
    num_classes
        Number of classes ``C``.
    encoding
        ``"index"`` returns the int64 indices unchanged. The others return float32 ``(N, C)``:
        ``"onehot"`` is 1 at the class and 0 elsewhere, ``"pm1"`` is ``2 * onehot - 1``
        (+1 / -1), and ``"c-rescale"`` is ``onehot * sqrt(C) / 2 - 0.5``
        (about 1.0811 / -0.5 for C = 10).
    """
    if encoding not in LABEL_ENCODINGS:
        raise ValueError(f"label_encoding must be one of {LABEL_ENCODINGS}, got {encoding!r}.")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if encoding == "index":
        return labels
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(torch.float32)
    if encoding == "onehot":
        return onehot
    if encoding == "pm1":
        return 2.0 * onehot - 1.0
    return onehot * (math.sqrt(num_classes) / 2.0) - 0.5


def random_projection_matrix(input_dim: int, output_dim: int, seed: int) -> torch.Tensor:
    """Draw the float32 projection matrix ``(output_dim, input_dim)`` with entries N(0, 1/input_dim).

    The same `seed` always gives the same matrix.
    """
    rng = seeded_rng(seed, PROJECTION_STREAM)
    matrix = rng.standard_normal((output_dim, input_dim)) / math.sqrt(input_dim)
    return torch.from_numpy(matrix.astype(np.float32))


def project_sign(features: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Project flat features ``(N, D)`` with `matrix` ``(k, D)`` and take the sign, mapping 0 to -1.

    Returns float32 ``(N, k)`` with values in {-1, +1}.
    """
    projected = features @ matrix.T
    return torch.where(projected > 0, 1.0, -1.0).to(torch.float32)


def _class_indices(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int, stream: int = VALIDATION_STREAM
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into a remaining part and a held-out part, class by class.

    Each class ``c`` with ``n_c`` samples contributes ``round(fraction * n_c)`` randomly chosen
    samples to the held-out part (Python rounding, halves to even). Both index arrays are
    sorted, so the original sample order is preserved. `seed` and `stream` select the
    random generator.

    Returns
    -------
    tuple of numpy.ndarray
        ``(remaining, held_out)`` int64 indices into `labels`.
    """
    rng = seeded_rng(seed, stream)
    held_out = []
    for _, indices in sorted(_class_indices(labels).items()):
        count = round(fraction * len(indices))
        held_out.append(rng.choice(indices, size=count, replace=False))
    held_out = np.sort(np.concatenate(held_out)).astype(np.int64) if held_out else np.zeros(0, np.int64)
    remaining = np.setdiff1d(np.arange(len(labels)), held_out).astype(np.int64)
    return remaining, held_out


def subsample_per_class(
    labels: np.ndarray, samples_per_class: int, num_classes: int, seed: int
) -> np.ndarray:
    """Return sorted indices of `samples_per_class` random samples of every class present.

    Classes in ``[0, num_classes)`` with no sample at all are skipped with a warning, so a
    dataset restricted to some classes can still be subsampled.

    Raises
    ------
    ValueError
        If a class that is present has fewer samples than requested.
    """
    rng = seeded_rng(seed, SUBSAMPLE_STREAM)
    by_class = _class_indices(labels)
    absent = [label for label in range(num_classes) if label not in by_class]
    if absent:
        logger.warning("samples_per_class: classes %s have no training samples and are skipped.", absent)
    chosen = [np.zeros(0, np.int64)]
    for label in range(num_classes):
        indices = by_class.get(label)
        if indices is None:
            continue
        if len(indices) < samples_per_class:
            counts = {c: len(by_class.get(c, ())) for c in range(num_classes)}
            raise ValueError(
                f"samples_per_class={samples_per_class} exceeds the {len(indices)} training "
                f"samples of class {label} (per-class counts after the validation hold-out: "
                f"{counts}); lower samples_per_class or val_fraction."
            )
        chosen.append(rng.choice(indices, size=samples_per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)
