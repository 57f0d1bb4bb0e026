"""Local learning rules as pure functions.

Every rule returns the *increment* ``dW`` of shape ``(d, k)`` (sender width ``d``, receiver width
``k``) that a plain step ``W <- W + lr * dW`` applies. The optimizer wrappers pass ``-dW`` to Optax
as a pseudo-gradient, so ``optax.sgd(lr)`` adds ``lr * dW``.

Each rule is split in two: an *error signal* of shape ``(batch, k)`` computed from the receiver's
target and field, and the product ``x.T @ signal``. Sparse couplings compute that product only at
their non-zero entries, so the signal functions are what they share with the dense rules here.

The normalisation is ``1 / sqrt(n * d)``, where ``n`` is the number of samples that count (the batch
size, or the number of unmasked samples when a gate masks padding) and ``d`` the sender width.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Gate = Float[Array, "..."] | None


def _apply_gate(signal: Float[Array, "batch k"], gate: Gate) -> Float[Array, "batch k"]:
    if gate is None:
        return signal
    return signal * gate


def perceptron_signal(
    target: Float[Array, "batch k"],
    field: Float[Array, "batch k"],
    margin: Float[Array, "..."] | float,
    gate: Gate = None,
) -> Float[Array, "batch k"]:
    """Return the perceptron error signal ``[target * field <= margin] * target``.

    Ties (``target * field == margin``) count as errors. ``margin`` is a scalar or one value per
    receiver unit. ``gate`` broadcasts against ``(batch, k)``: ``(batch, 1)`` gates samples and
    ``(batch, k)`` gates single units.
    """
    errors = (target * field <= margin).astype(field.dtype)
    return _apply_gate(errors * target, gate)


def tanh_signal(
    target: Float[Array, "batch k"],
    field: Float[Array, "batch k"],
    tolerance: float,
    gate: Gate = None,
) -> Float[Array, "batch k"]:
    """Return the tanh delta-rule signal ``(y - o)(1 - o^2) [|y - o| >= tolerance]``, ``o = tanh(field)``."""
    out = jnp.tanh(field)
    diff = target - out
    active = (jnp.abs(diff) >= tolerance).astype(field.dtype)
    return _apply_gate(diff * (1.0 - out**2) * active, gate)


def truncated_tanh_signal(
    target: Float[Array, "batch k"],
    field: Float[Array, "batch k"],
    margin: Float[Array, "..."] | float,
    tolerance: float,
    gate: Gate = None,
) -> Float[Array, "batch k"]:
    """Return the truncated tanh signal ``[y h <= margin] [1 - |tanh h| < tolerance] y``."""
    errors = (target * field <= margin).astype(field.dtype)
    unsaturated = (1.0 - jnp.abs(jnp.tanh(field)) < tolerance).astype(field.dtype)
    return _apply_gate(errors * unsaturated * target, gate)


def cross_entropy_signal(
    target: Float[Array, "batch k"],
    field: Float[Array, "batch k"],
    gate: Gate = None,
) -> Float[Array, "batch k"]:
    """Return the local cross-entropy signal ``(target + 1) / 2 - softmax(field)``.

    ``target`` is a +-1 one-hot label, so ``(target + 1) / 2`` is the 0/1 one-hot.
    """
    return _apply_gate((target + 1.0) / 2.0 - jax.nn.softmax(field, axis=-1), gate)


def sample_count(batch: int, gate: Gate) -> Float[Array, ""]:
    """Return the number of samples that count: the batch size, or the rows the gate keeps open.

    ``gate`` must be ``None``, ``(batch, 1)`` (per sample) or ``(batch, k)`` (per unit). A row
    counts when at least one of its entries is non-zero.
    """
    if gate is None:
        return jnp.asarray(batch, jnp.float32)
    gate = jnp.asarray(gate)
    if gate.ndim != 2 or gate.shape[0] != batch:
        raise ValueError(
            f"`gate` must have shape (batch, 1) or (batch, units) with batch={batch}, got {gate.shape}."
        )
    return jnp.sum(jnp.any(gate != 0, axis=1)).astype(jnp.float32)


def _outer(x: Float[Array, "batch d"], signal: Float[Array, "batch k"], n: Float[Array, ""]) -> Float[Array, "d k"]:
    d = x.shape[-1]
    return x.T @ signal / jnp.sqrt(jnp.maximum(n, 1.0) * d)


def perceptron_rule(x, target, field, margin, gate: Gate = None) -> Float[Array, "d k"]:
    """Return the perceptron-with-margin increment ``x.T (M * target) / sqrt(n d)``.

    ``M = [target * field <= margin]``. Shapes: ``x (batch, d)``, ``target`` and ``field``
    ``(batch, k)``.
    """
    x, target, field = _check_rule_inputs(x, target, field)
    n = sample_count(x.shape[0], gate)
    signal = perceptron_signal(target, field, margin, gate)
    return _outer(x, signal, n)


def tanh_rule(x, target, field, tolerance: float, gate: Gate = None) -> Float[Array, "d k"]:
    """Return the tanh delta-rule increment ``x.T [(y - o)(1 - o^2)[|y - o| >= tol]] / sqrt(n d)``."""
    x, target, field = _check_rule_inputs(x, target, field)
    n = sample_count(x.shape[0], gate)
    signal = tanh_signal(target, field, tolerance, gate)
    return _outer(x, signal, n)


def truncated_tanh_rule(x, target, field, margin, tolerance: float, gate: Gate = None) -> Float[Array, "d k"]:
    """Return the truncated tanh increment ``x.T (M [1 - |tanh h| < tol] y) / sqrt(n d)``."""
    x, target, field = _check_rule_inputs(x, target, field)
    n = sample_count(x.shape[0], gate)
    signal = truncated_tanh_signal(target, field, margin, tolerance, gate)
    return _outer(x, signal, n)


def cross_entropy_rule(x, target, field, gate: Gate = None) -> Float[Array, "d k"]:
    """Return the local cross-entropy increment ``x.T ((y + 1)/2 - softmax(h)) / (n sqrt(d))``.

    Unlike the perceptron rules it divides by the sample count ``n``, as a mean over the batch.
    """
    x, target, field = _check_rule_inputs(x, target, field)
    n = jnp.maximum(sample_count(x.shape[0], gate), 1.0)
    signal = cross_entropy_signal(target, field, gate)
    return x.T @ signal / (n * jnp.sqrt(x.shape[-1]))


def _check_rule_inputs(x, target, field):
    x, target, field = jnp.atleast_2d(x), jnp.atleast_2d(target), jnp.atleast_2d(field)
    if target.shape != field.shape:
        raise ValueError(
            f"`target` and `field` must have the same shape, got {target.shape} and {field.shape}."
        )
    if x.shape[0] != target.shape[0]:
        raise ValueError(
            f"`x` and `target` must have the same batch size, got {x.shape[0]} and {target.shape[0]}."
        )
    return x, target, field
