"""Training protocols as pure steps: ``train_step`` and ``eval_step``.

One training step on a batch:

- ``"paper"``: warmup (forward messages) -> clamped (all messages, the label field acts) -> free
  (no label) -> local update at the free state. This is the algorithm of Badalotti et al.,
  "Dynamical Learning in Deep Asymmetric Recurrent Neural Networks" (arXiv:2509.05041).
- ``"clamped_update"``: warmup -> free -> clamped -> local update at the clamped state.
- ``"contrastive"``: warmup -> free (increments A) -> clamped from the free state (increments B);
  the applied increment is ``B - A`` (``sign="clamped_minus_free"``, the textbook contrastive
  sign: learn what the label pushes towards, unlearn what the free network does) or ``A - B``
  (``sign="free_minus_clamped"``, the reference library's choice).

The local update always uses *forward* fields (senders ``j <= i``, no label) computed at the state
where the update is taken. Phases whose messages are ``"forward"`` or ``"all_but_label"`` never see
the output row, so the free phase receives no label field.
"""

import dataclasses
import functools
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from darnax_core import _dynamics as dyn
from darnax_core._checks import check_choice, check_nonnegative_int
from darnax_core._network import Messages, Network
from darnax_core._optim import combine, fill_like_params, partition
from darnax_core._state import check_inputs

logger = logging.getLogger(__name__)

PROTOCOLS = ("paper", "clamped_update", "contrastive")
CONTRASTIVE_SIGNS = ("clamped_minus_free", "free_minus_clamped")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Phase structure of training and evaluation (static, hashable).

    Attributes
    ----------
    kind
        ``"paper"``, ``"clamped_update"`` or ``"contrastive"`` (see the module docstring).
    warmup, clamped, free, eval_sweeps
        Sweeps per phase. Evaluation runs ``warmup`` then ``eval_sweeps`` sweeps without label.
    schedule
        ``"sequential"``, ``"parallel"`` or ``"asynchronous"``.
    free_messages
        Senders in the free and evaluation phases: ``"forward"`` (the reference) or
        ``"all_but_label"`` (higher layers also talk down). ``"all"`` is rejected: it is the label.
    until_converged
        Stop each phase early once a sweep changes no unit; the counts become maxima.
    contrastive_sign
        Sign of the contrastive update (see the module docstring).
    """

    kind: str = "paper"
    warmup: int = 1
    clamped: int = 5
    free: int = 5
    eval_sweeps: int = 5
    schedule: str = "sequential"
    free_messages: str = "forward"
    until_converged: bool = False
    contrastive_sign: str = "clamped_minus_free"

    def __post_init__(self):
        check_choice(self.kind, "kind", PROTOCOLS)
        for name in ("warmup", "clamped", "free", "eval_sweeps"):
            check_nonnegative_int(getattr(self, name), name)
        object.__setattr__(self, "schedule", dyn.Schedule.parse(self.schedule).value)
        free = Messages.parse(self.free_messages)
        if free is Messages.ALL:
            raise ValueError(
                "`free_messages='all'` would feed the label to the free phase; use 'forward' or 'all_but_label'."
            )
        object.__setattr__(self, "free_messages", free.value)
        check_choice(self.contrastive_sign, "contrastive_sign", CONTRASTIVE_SIGNS)
        if not isinstance(self.until_converged, bool):
            raise TypeError(f"`until_converged` must be a bool, got {self.until_converged!r}.")


class StepMetrics(NamedTuple):
    """Metrics of one training step (device arrays; nothing is synchronised)."""

    correct: Int[Array, ""]
    count: Int[Array, ""]
    unsat: Float[Array, " layers"]
    sweeps: Int[Array, " phases"]


class EvalMetrics(NamedTuple):
    """Metrics of one evaluation step."""

    logits: Float[Array, "batch c"]
    unsat: Float[Array, " layers"]
    sweeps: Int[Array, " phases"]


def encode_labels(y, num_classes: int) -> Float[Array, "batch c"]:
    """Return +-1 one-hot labels from class indices ``(batch,)``, or pass ``(batch, C)`` labels through."""
    y = jnp.asarray(y)
    if y.ndim == 1:
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise TypeError(f"1-D labels must be integer class indices, got dtype {y.dtype}.")
        return 2.0 * jax.nn.one_hot(y, num_classes, dtype=jnp.float32) - 1.0
    if y.ndim == 2 and y.shape[1] == num_classes:
        return y.astype(jnp.float32)
    raise ValueError(
        f"Labels must be class indices (batch,) or a (batch, {num_classes}) label matrix, got shape {y.shape}."
    )


def check_labels(y, num_classes: int, batch: int) -> None:
    """Raise if labels have the wrong batch size, width or values (host-side check)."""
    y_np = np.asarray(y)
    if y_np.shape[:1] != (batch,):
        raise ValueError(f"Labels have batch size {y_np.shape[:1]}, but the inputs have {batch} samples.")
    if y_np.ndim == 1 and y_np.size:
        low, high = int(y_np.min()), int(y_np.max())
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"Class indices must be in [0, {num_classes}), got values in [{low}, {high}]. Remap the labels to "
                f"0..{num_classes - 1}, or build the network with num_classes={high + 1} if there are more classes."
            )
    if y_np.ndim not in (1, 2) or (y_np.ndim == 2 and y_np.shape[1] != num_classes):
        raise ValueError(
            f"Labels must be class indices (batch,) or a (batch, {num_classes}) label matrix, got shape {y_np.shape}."
        )
    if y_np.ndim == 2:
        if not np.all(np.isfinite(y_np)):
            raise ValueError("The label matrix contains NaN or inf.")
        one_plus = np.all((y_np == 1) | (y_np == -1)) and np.all(np.sum(y_np == 1, axis=1) == 1)
        if not one_plus:
            raise ValueError(
                "A label matrix must have +-1 one-hot rows (one +1 per row, -1 elsewhere). Pass class "
                "indices instead, or convert other encodings (0/1 one-hot, rescaled) with argmax first."
            )


def _state_fields(net: Network, hidden, const_forward):
    """Forward fields of rows ``1..L+1`` at ``hidden`` (the fields the local rules use)."""
    return tuple(
        dyn.row_field(net, row, hidden, const_forward, Messages.FORWARD) for row in range(1, net.output_row + 1)
    )


def _unsat(net: Network, hidden, fields, gate) -> Float[Array, " layers"]:
    """Fraction of hidden units whose field's sign disagrees with their state (valid samples only)."""
    weight = gate if gate is not None else jnp.ones((hidden[0].shape[0], 1), hidden[0].dtype)
    values = []
    for row in range(1, net.num_hidden + 1):
        s, h = hidden[row - 1], fields[row - 1]
        wrong = ((h >= 0) != (s >= 0)).astype(s.dtype)
        values.append(jnp.sum(wrong * weight) / jnp.maximum(jnp.sum(weight) * s.shape[1], 1.0))
    return jnp.stack(values)


def _increments(net: Network, x, hidden, y, fields, gate, n) -> tuple:
    """Local increments of every trainable leaf, in the order of :func:`trainable_leaves`."""
    states = (x, *hidden, y)
    targets = (*hidden, y)
    out = []
    for row, layer in enumerate(net.layers, start=1):
        out.extend(layer.increments(states[row], targets[row - 1], fields[row - 1], gate, n))
    for (i, j), edge in zip(net.edge_index, net.edges):
        out.extend(edge.increments(states[j], targets[i - 1], fields[i - 1], gate, n))
    return tuple(out)


def _phase(net, hidden, const, messages, sweeps, protocol, key, index):
    phase_key = jax.random.fold_in(key, index)
    return dyn.run_phase(
        net,
        hidden,
        const,
        messages=messages,
        schedule=protocol.schedule,
        sweeps=sweeps,
        key=phase_key,
        until_converged=protocol.until_converged,
    )


def train_step_impl(net: Network, opt_state, x, y, key, sample_mask, *, protocol: Protocol, optimizer):
    """Pure training step on one batch; see :func:`make_train_step` for the public wrapper."""
    # Integer or boolean inputs would make the hidden state integer too; the state is float32.
    x = x.astype(jnp.float32)
    y = encode_labels(y, net.num_classes)
    gate = sample_mask.astype(x.dtype)[:, None]
    n = jnp.sum(sample_mask).astype(jnp.float32)

    inputs = dyn.input_messages(net, x)
    labels = dyn.label_messages(net, y)
    const_forward = dyn.constant_fields(net, inputs, labels, Messages.FORWARD)
    const_all = dyn.constant_fields(net, inputs, labels, Messages.ALL)
    const_free = dyn.constant_fields(net, inputs, labels, protocol.free_messages)
    hidden = dyn.zero_hidden(net, x.shape[0], x.dtype)

    hidden, warm = _phase(net, hidden, const_forward, Messages.FORWARD, protocol.warmup, protocol, key, 0)
    if protocol.kind == "paper":
        hidden, clamped = _phase(net, hidden, const_all, Messages.ALL, protocol.clamped, protocol, key, 1)
        hidden, free = _phase(net, hidden, const_free, protocol.free_messages, protocol.free, protocol, key, 2)
        free_hidden = hidden
        free_fields = _state_fields(net, hidden, const_forward)
        increments = _increments(net, x, hidden, y, free_fields, gate, n)
    else:
        hidden, free = _phase(net, hidden, const_free, protocol.free_messages, protocol.free, protocol, key, 1)
        free_hidden = hidden
        free_fields = _state_fields(net, hidden, const_forward)
        hidden, clamped = _phase(net, hidden, const_all, Messages.ALL, protocol.clamped, protocol, key, 2)
        clamped_fields = _state_fields(net, hidden, const_forward)
        increments = _increments(net, x, hidden, y, clamped_fields, gate, n)
        if protocol.kind == "contrastive":
            free_increments = _increments(net, x, free_hidden, y, free_fields, gate, n)
            if protocol.contrastive_sign == "clamped_minus_free":
                increments = tuple(b - a for a, b in zip(free_increments, increments))
            else:
                increments = tuple(a - b for a, b in zip(free_increments, increments))

    params, static = partition(net)
    grads = fill_like_params(params, tuple(-inc for inc in increments))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    net = combine(params, static).project()

    predictions = jnp.argmax(free_fields[-1], axis=-1)
    correct = jnp.sum((predictions == jnp.argmax(y, axis=-1)) & sample_mask)
    metrics = StepMetrics(
        correct=correct.astype(jnp.int32),
        count=jnp.sum(sample_mask).astype(jnp.int32),
        unsat=_unsat(net, free_hidden, free_fields, gate),
        sweeps=jnp.stack([warm.sweeps, clamped.sweeps, free.sweeps]),
    )
    return net, opt_state, metrics


def relax(net: Network, x, protocol: Protocol, key):
    """Run the evaluation dynamics (warmup, then ``eval_sweeps`` label-free sweeps).

    Returns the hidden state, its forward fields for rows ``1..L+1`` and the sweeps used per phase.
    """
    x = x.astype(jnp.float32)
    inputs = dyn.input_messages(net, x)
    no_labels = (None,) * net.output_row
    const_forward = dyn.constant_fields(net, inputs, no_labels, Messages.FORWARD)
    const_free = dyn.constant_fields(net, inputs, no_labels, protocol.free_messages)
    hidden = dyn.zero_hidden(net, x.shape[0], x.dtype)
    hidden, warm = _phase(net, hidden, const_forward, Messages.FORWARD, protocol.warmup, protocol, key, 0)
    hidden, settle = _phase(net, hidden, const_free, protocol.free_messages, protocol.eval_sweeps, protocol, key, 1)
    return hidden, _state_fields(net, hidden, const_forward), jnp.stack([warm.sweeps, settle.sweeps])


def eval_step_impl(net: Network, x, key, *, protocol: Protocol):
    """Pure evaluation: warmup and ``eval_sweeps`` label-free sweeps, then the readout field."""
    hidden, fields, sweeps = relax(net, x, protocol, key)
    logits = fields[-1]
    metrics = EvalMetrics(logits=logits, unsat=_unsat(net, hidden, fields, None), sweeps=sweeps)
    return jnp.argmax(logits, axis=-1), metrics


def make_train_step(protocol: Protocol, optimizer: optax.GradientTransformation, *, jit: bool = True, validate: bool = True):
    """Return ``train_step(net, opt_state, x, y, key, sample_mask=None) -> (net, opt_state, metrics)``.

    ``y`` is class indices ``(batch,)`` or a ``(batch, C)`` +-1 label matrix. ``sample_mask``
    ``(batch,)`` marks real samples in a padded batch. Padded samples get no update, and the rules
    normalise by the number of real samples. A padded batch therefore trains like the unpadded one,
    and the step compiles once per batch size. With ``validate=True`` shapes, label values and finiteness
    are checked on the host before the jitted call.
    """
    if not isinstance(protocol, Protocol):
        raise TypeError(f"`protocol` must be a Protocol, got {type(protocol).__name__}.")
    core = functools.partial(train_step_impl, protocol=protocol, optimizer=optimizer)
    compiled = jax.jit(lambda net, opt_state, x, y, key, mask: core(net, opt_state, x, y, key, mask)) if jit else core

    full_masks: dict[int, jax.Array] = {}

    def train_step(net: Network, opt_state, x, y, key, sample_mask=None):
        x = check_inputs(net, x)
        batch = x.shape[0]
        if validate:
            _check_finite(x)
            check_labels(y, net.num_classes, batch)
        if sample_mask is None:
            if batch not in full_masks:
                full_masks[batch] = jnp.ones((batch,), bool)
            sample_mask = full_masks[batch]
        elif np.shape(sample_mask) != (batch,):
            raise ValueError(f"`sample_mask` must have shape ({batch},), got {np.shape(sample_mask)}.")
        if not isinstance(y, jax.Array):
            y = jnp.asarray(y)
        if not isinstance(sample_mask, jax.Array) or sample_mask.dtype != jnp.bool_:
            sample_mask = jnp.asarray(sample_mask, bool)
        return compiled(net, opt_state, x, y, key, sample_mask)

    train_step.compiled = compiled
    return train_step


def make_eval_step(protocol: Protocol, *, jit: bool = True, validate: bool = True):
    """Return ``eval_step(net, x, key) -> (predictions, metrics)``; no label is ever used."""
    if not isinstance(protocol, Protocol):
        raise TypeError(f"`protocol` must be a Protocol, got {type(protocol).__name__}.")
    core = functools.partial(eval_step_impl, protocol=protocol)
    compiled = jax.jit(lambda net, x, key: core(net, x, key)) if jit else core

    def eval_step(net: Network, x, key):
        x = check_inputs(net, x)
        if validate:
            _check_finite(x)
        return compiled(net, x, key)

    eval_step.compiled = compiled
    return eval_step


def _check_finite(x) -> None:
    finite = np.isfinite(np.asarray(x))
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise ValueError(f"Inputs contain {bad} NaN or inf values; clean or impute them before training.")
