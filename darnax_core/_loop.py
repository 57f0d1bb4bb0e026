"""A plain JAX training loop over in-memory arrays, for users of the core alone."""

import dataclasses
import logging
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from darnax_core._checks import check_positive_int
from darnax_core._network import Network
from darnax_core._optim import init_optimizer
from darnax_core._protocols import Protocol, check_labels, make_eval_step, make_train_step

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FitResult:
    """The trained network, its optimizer state and one metrics dict per epoch."""

    net: Network
    opt_state: optax.OptState
    history: list[dict]


def pad_batch(x: np.ndarray, y: np.ndarray, batch_size: int):
    """Pad a short batch to ``batch_size`` rows by repeating row 0; return ``(x, y, mask)``.

    The mask marks the real rows. A padded batch keeps the compiled step's shapes, so the last
    partial batch of an epoch needs no new compilation.
    """
    count = x.shape[0]
    if count > batch_size or count == 0:
        raise ValueError(f"`pad_batch` needs 1 to batch_size={batch_size} rows, got {count}.")
    mask = np.zeros(batch_size, bool)
    mask[:count] = True
    if count == batch_size:
        return x, y, mask
    fill = batch_size - count
    x = np.concatenate([x, np.repeat(x[:1], fill, axis=0)])
    y = np.concatenate([y, np.repeat(y[:1], fill, axis=0)])
    return x, y, mask


def _as_numpy_split(data, name: str, net: Network):
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError(f"`{name}` must be a tuple (x, y) of arrays, got {type(data).__name__}.")
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"`{name}` is empty; pass at least one sample.")
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] != net.input_dim:
        raise ValueError(f"`{name}` inputs have {x.shape[1]} features, but the network expects {net.input_dim}.")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"`{name}` has {x.shape[0]} inputs but {y.shape[0]} labels.")
    check_labels(y, net.num_classes, x.shape[0])
    return x, y


def evaluate(net: Network, protocol: Protocol, data, *, key: jax.Array, batch_size: int = 1000, eval_step=None) -> dict:
    """Return ``{"accuracy", "unsat"}`` of ``net`` on ``data = (x, y)`` (labels as class indices)."""
    batch_size = check_positive_int(batch_size, "batch_size")
    x, y = _as_numpy_split(data, "data", net)
    labels = y if y.ndim == 1 else y.argmax(axis=1)
    eval_step = eval_step or make_eval_step(protocol)
    correct, unsat, seen = 0, 0.0, 0
    for start in range(0, x.shape[0], batch_size):
        xb, yb, mask = pad_batch(x[start : start + batch_size], labels[start : start + batch_size], batch_size)
        predictions, metrics = eval_step(net, jnp.asarray(xb), key)
        real = int(mask.sum())
        correct += int(np.sum(np.asarray(predictions)[:real] == yb[:real]))
        unsat += float(np.mean(np.asarray(metrics.unsat))) * real
        seen += real
    return {"accuracy": correct / seen, "unsat": unsat / seen}


def fit(
    net: Network,
    optimizer: optax.GradientTransformation,
    protocol: Protocol,
    train,
    *,
    key: jax.Array,
    epochs: int = 1,
    batch_size: int = 16,
    test=None,
    eval_batch_size: int = 1000,
    opt_state=None,
    shuffle: bool = True,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """Train ``net`` on ``train = (x, y)`` for ``epochs`` epochs, evaluating on ``test`` after each.

    Batches are reshuffled every epoch from ``key``; the last partial batch is padded and masked.
    Returns the trained network, the optimizer state and a list of per-epoch metrics
    (``train_accuracy``, ``seconds``, and ``test_accuracy``/``test_unsat`` when ``test`` is given).
    ``train_accuracy`` is read during training from the free state of each step. Under the paper's
    protocol that state starts from the clamped one, which the label shaped, so it overstates the
    accuracy of label-free evaluation.
    """
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    x, y = _as_numpy_split(train, "train", net)
    opt_state = init_optimizer(optimizer, net) if opt_state is None else opt_state
    train_step = make_train_step(protocol, optimizer)
    eval_step = make_eval_step(protocol)
    shuffle_key, step_key, eval_key = jax.random.split(key, 3)
    history = []
    step = 0
    for epoch in range(epochs):
        start_time = time.perf_counter()
        order = (
            np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), x.shape[0]))
            if shuffle
            else np.arange(x.shape[0])
        )
        correct = jnp.int32(0)
        count = jnp.int32(0)
        batches = range(0, x.shape[0], batch_size)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for start in bar:
            rows = order[start : start + batch_size]
            xb, yb, mask = pad_batch(x[rows], y[rows], batch_size)
            net, opt_state, metrics = train_step(net, opt_state, xb, yb, jax.random.fold_in(step_key, step), mask)
            correct, count = correct + metrics.correct, count + metrics.count
            step += 1
        record = {"epoch": epoch + 1, "train_accuracy": float(correct) / max(int(count), 1)}
        record["seconds"] = time.perf_counter() - start_time
        if test is not None:
            record.update({f"test_{k}": v for k, v in evaluate(net, protocol, test, key=eval_key, batch_size=eval_batch_size, eval_step=eval_step).items()})
        logger.info("epoch %d: %s", epoch + 1, record)
        history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    return FitResult(net, opt_state, history)
