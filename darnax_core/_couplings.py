"""Coupling matrices: dense (optionally masked) and sparse fixed-fan-in (ELL) storage.

A coupling maps a sender state ``x`` of shape ``(batch, d)`` to the field ``x @ W`` of shape
``(batch, k)``. ``W[j, i]`` is the coupling from sender unit ``j`` to receiver unit ``i``. Both
storages expose the same four operations, so layers and edges never look at the storage:

- ``coupling(x)``: the field ``x @ W``;
- ``coupling.outer(x, signal, n)``: the rule increment ``x.T @ signal / sqrt(n * d)``, restricted to
  the entries that exist (masked-out entries get no increment);
- ``coupling.project()``: the coupling with entries that must be zero set to zero again;
- ``coupling.to_dense()``: the ``(d, k)`` matrix.

``EllCoupling`` stores, for every receiver, the list of its senders padded to the largest fan-in
(the ELLPACK layout). Its cost follows the number of non-zeros instead of ``d * k``, and its
trainable leaf holds only those non-zeros (plus padding), so optimizer state stays small.
"""

import functools
import logging
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from darnax_core import _native
from darnax_core._ops import sign

logger = logging.getLogger(__name__)

Kernel = Literal["auto", "dense", "ell"]
KERNELS = ("auto", "dense", "ell")

# Densities at or below these use the ELL layout when ``kernel="auto"``: the first with the native
# kernels, the second with XLA gathers only. Measured on a 2-core x86 CPU at batch 16 (see
# docs/benchmarks.md). With native kernels a 10%-dense 784x2000 coupling trains faster in ELL,
# because its update and optimizer step touch 7x fewer values. With XLA gathers only the 1%-dense
# recurrent coupling gains.
ELL_MAX_DENSITY_NATIVE = 0.25
ELL_MAX_DENSITY_XLA = 0.05


def _normaliser(n: Float[Array, ""], d: int) -> Float[Array, ""]:
    return jnp.sqrt(jnp.maximum(n, 1.0) * d)


class DenseCoupling(eqx.Module):
    """A dense ``(d, k)`` coupling with an optional boolean mask of the entries that exist."""

    weight: Float[Array, "d k"]
    mask: Bool[Array, "d k"] | None = None

    @property
    def in_features(self) -> int:
        return self.weight.shape[0]

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]

    @property
    def nnz(self) -> int:
        return int(self.weight.size if self.mask is None else np.count_nonzero(np.asarray(self.mask)))

    def trainable_leaf(self) -> Float[Array, "d k"]:
        return self.weight

    def __call__(self, x: Float[Array, "batch d"]) -> Float[Array, "batch k"]:
        return x @ self.weight

    def outer(self, x: Float[Array, "batch d"], signal: Float[Array, "batch k"], n) -> Float[Array, "d k"]:
        increment = x.T @ signal / _normaliser(n, self.in_features)
        if self.mask is not None:
            increment = jnp.where(self.mask, increment, 0.0)
        return increment

    def project(self) -> "DenseCoupling":
        if self.mask is None:
            return self
        return eqx.tree_at(lambda c: c.weight, self, jnp.where(self.mask, self.weight, 0.0))

    def to_dense(self) -> Float[Array, "d k"]:
        return self.weight if self.mask is None else jnp.where(self.mask, self.weight, 0.0)


def _gather_rows(x: Float[Array, "batch d"], index: Int[Array, "k fan_in"]) -> Float[Array, "k fan_in batch"]:
    # Rows of x.T are the batch values of one sender, contiguous in memory, so the gather moves
    # whole rows instead of single floats.
    return x.T.at[index].get(mode="promise_in_bounds")


def _xla_ell_matmul(x, index, values, fan_in):
    """XLA version of :func:`darnax_core._native.ell_matmul` (padding slots contain zeros)."""
    return jnp.einsum("kfb,kf->bk", _gather_rows(x, index), values)


def _xla_ell_outer(x, index, signal, fan_in):
    """XLA version of :func:`darnax_core._native.ell_outer` (zero in the padding slots)."""
    slots = jnp.arange(index.shape[1])[None, :] < fan_in[:, None]
    return jnp.where(slots, jnp.einsum("kfb,bk->kf", _gather_rows(x, index), signal), 0.0)


def _xla_sign_sweep_t(s_t, index, values, fan_in, const_t, self_coupling):
    field_t = _xla_ell_matmul(s_t.T, index, values, fan_in).T
    return sign((field_t + self_coupling[:, None] * s_t) + const_t)


class EllCoupling(eqx.Module):
    """A sparse coupling in ELL layout: receiver ``i`` reads senders ``index[i, :fan_in[i]]``.

    Slots are filled valid-first: slots at and beyond ``fan_in[i]`` are padding, point at sender 0
    and hold zero. On CPU the products run in native kernels (:mod:`darnax_core._native`) when they
    are available, and through XLA gathers otherwise. Both give the same values up to float
    summation order.
    """

    values: Float[Array, "k fan_in"]
    index: Int[Array, "k fan_in"]
    valid: Bool[Array, "k fan_in"]
    fan_in: Int[Array, " k"]
    in_features: int = eqx.field(static=True)

    def __init__(self, values, index, valid, in_features: int, fan_in=None):
        self.values = jnp.asarray(values, jnp.float32)
        self.index = jnp.asarray(index, jnp.int32)
        self.valid = jnp.asarray(valid, bool)
        self.in_features = int(in_features)
        if self.values.shape != self.index.shape or self.values.shape != self.valid.shape or self.values.ndim != 2:
            raise ValueError(
                f"`values`, `index` and `valid` must share one 2-D shape, got {self.values.shape}, "
                f"{self.index.shape} and {self.valid.shape}."
            )
        valid_np = np.asarray(self.valid)
        counts = valid_np.sum(axis=1)
        slots = np.arange(valid_np.shape[1])
        if not np.array_equal(valid_np, slots[None, :] < counts[:, None]):
            raise ValueError("`valid` must list each receiver's existing senders first, then padding.")
        index_np = np.asarray(self.index)
        if index_np.size and (index_np.min() < 0 or index_np.max() >= self.in_features):
            raise ValueError(
                f"`index` values must be in [0, {self.in_features}), got [{index_np.min()}, {index_np.max()}]."
            )
        self.fan_in = jnp.asarray(counts if fan_in is None else fan_in, jnp.int32)

    @property
    def out_features(self) -> int:
        return self.values.shape[0]

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(np.asarray(self.valid)))

    def trainable_leaf(self) -> Float[Array, "k fan_in"]:
        return self.values

    def __call__(self, x: Float[Array, "batch d"]) -> Float[Array, "batch k"]:
        x = x.astype(jnp.float32)
        if not _native.available():
            return _xla_ell_matmul(x, self.index, self.values, self.fan_in)
        return jax.lax.platform_dependent(
            x, self.index, self.values, self.fan_in, cpu=_native.ell_matmul, default=_xla_ell_matmul
        )

    def outer(self, x: Float[Array, "batch d"], signal: Float[Array, "batch k"], n) -> Float[Array, "k fan_in"]:
        x, signal = x.astype(jnp.float32), signal.astype(jnp.float32)
        if _native.available():
            increment = jax.lax.platform_dependent(
                x, self.index, signal, self.fan_in, cpu=_native.ell_outer, default=_xla_ell_outer
            )
        else:
            increment = _xla_ell_outer(x, self.index, signal, self.fan_in)
        return increment / _normaliser(n, self.in_features)

    def sign_sweep_t(self, s_t: Float[Array, "n batch"], self_coupling: Float[Array, " n"], const_t: Float[Array, "n batch"]) -> Float[Array, "n batch"]:
        """Return ``sign(J s + self_coupling * s + const)`` in the transposed (units, batch) layout.

        The coupling must be square: its receivers are its own senders. On CPU one native call
        computes the product, the additions and the sign. Elsewhere XLA computes the same expression.
        """
        if self.in_features != self.out_features:
            raise ValueError(
                f"`sign_sweep_t` needs a square coupling, got {self.in_features} -> {self.out_features}; "
                "use it only for a layer's recurrent J."
            )
        args = (s_t.astype(jnp.float32), self.index, self.values, self.fan_in, const_t.astype(jnp.float32), self_coupling.astype(jnp.float32))
        if not _native.available():
            return _xla_sign_sweep_t(*args)
        return jax.lax.platform_dependent(*args, cpu=_native.ell_sweep_t, default=_xla_sign_sweep_t)

    def project(self) -> "EllCoupling":
        return eqx.tree_at(lambda c: c.values, self, jnp.where(self.valid, self.values, 0.0))

    def to_dense(self) -> Float[Array, "d k"]:
        receivers = jnp.broadcast_to(jnp.arange(self.out_features)[:, None], self.index.shape)
        dense = jnp.zeros((self.in_features, self.out_features), self.values.dtype)
        return dense.at[self.index, receivers].add(jnp.where(self.valid, self.values, 0.0))


Coupling = DenseCoupling | EllCoupling


def ell_from_dense(weight: Float[Array, "d k"], mask: Bool[Array, "d k"]) -> EllCoupling:
    """Convert a masked dense coupling to ELL layout (host-side, at construction time)."""
    mask_np = np.asarray(mask, dtype=bool)
    weight_np = np.asarray(weight)
    fan_in = max(int(mask_np.sum(axis=0).max(initial=0)), 1)
    # A stable argsort of ~mask lists each column's existing senders first, in increasing order.
    order = np.argsort(~mask_np, axis=0, kind="stable")[:fan_in]  # (fan_in, k)
    valid = np.take_along_axis(mask_np, order, axis=0)
    values = np.where(valid, np.take_along_axis(weight_np, order, axis=0), 0.0)
    index = np.where(valid, order, 0)
    return EllCoupling(values.T, index.T, valid.T, int(weight_np.shape[0]))


def resolve_kernel(kernel: str, density: float) -> str:
    """Pick the storage for a coupling: ``"ell"`` for sparse ones under ``"auto"``."""
    if kernel not in KERNELS:
        raise ValueError(f"`kernel` must be one of {KERNELS}, got {kernel!r}.")
    if kernel == "auto":
        limit = ELL_MAX_DENSITY_NATIVE if _native.available() else ELL_MAX_DENSITY_XLA
        return "ell" if density <= limit else "dense"
    return kernel


def make_coupling(
    weight: Float[Array, "d k"], mask: Bool[Array, "d k"] | None, *, kernel: str = "auto", density: float = 1.0
) -> Coupling:
    """Store ``weight`` (zero outside ``mask``) in the layout that ``kernel`` selects."""
    kind = resolve_kernel(kernel, density)
    if kind == "ell":
        if mask is None:
            mask = jnp.ones(weight.shape, bool)
        return ell_from_dense(weight, mask)
    if mask is not None:
        weight = jnp.where(mask, weight, 0.0)
    return DenseCoupling(weight=weight, mask=mask)


def check_density(density: float, name: str = "density") -> float:
    """Validate a density in (0, 1] and return it as a float."""
    if isinstance(density, bool) or not isinstance(density, (int, float)):
        raise TypeError(f"`{name}` must be a number in (0, 1], got {density!r}.")
    if not 0.0 < float(density) <= 1.0:
        raise ValueError(f"`{name}` must be in (0, 1], got {density}. Use 1.0 for a dense coupling.")
    return float(density)


def random_mask(key: jax.Array, shape: tuple[int, int], density: float, *, zero_diagonal: bool) -> Bool[Array, "d k"]:
    """Draw a Bernoulli(``density``) mask, optionally with an empty diagonal."""
    mask = jax.random.bernoulli(key, density, shape)
    if zero_diagonal:
        mask = mask & ~jnp.eye(*shape, dtype=bool)
    return mask


@functools.partial(jax.jit, static_argnames=("shape", "density", "zero_diagonal"))
def draw_coupling(key: jax.Array, shape: tuple[int, int], density: float, scale, *, zero_diagonal: bool):
    """Draw ``N(0, 1) * scale`` weights on a Bernoulli(``density``) mask, as one compiled call.

    Returns ``(weight, mask)``. The mask is all True for ``density = 1``, except for an empty
    diagonal when ``zero_diagonal``. Compiling the draw as one function keeps model construction
    to one compilation per shape instead of one per array operation.
    """
    # NOTE: the draw is dense, so building an ELL coupling briefly needs O(d * k) memory (about
    # 0.6 GiB peak at H=4000) although the stored coupling holds only its non-zeros.
    mask_key, weight_key = jax.random.split(key)
    if density < 1.0:
        mask = random_mask(mask_key, shape, density, zero_diagonal=zero_diagonal)
    else:
        mask = ~jnp.eye(*shape, dtype=bool) if zero_diagonal else jnp.ones(shape, bool)
    weight = jax.random.normal(weight_key, shape, jnp.float32) * scale
    return jnp.where(mask, weight, 0.0), mask
