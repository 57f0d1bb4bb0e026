"""Numerical checks of the fixed-point theory of binary sign networks.

A single layer of N units with couplings ``J`` and self-coupling ``j_d`` has the field
``h = s @ J + j_d * s``. ``J[j, i]`` is the coupling from unit j to unit i and its diagonal
is zero, and ``j_d`` is a scalar or one value per unit. A configuration ``s`` in {-1, +1}^N
is a fixed point with margin ``kappa`` when ``s_i * h_i > kappa`` for every unit i.

With ``kappa = 0`` a unit with ``h_i = 0`` and ``s_i = +1`` also counts as stable, because
``sign(0) = +1`` leaves it unchanged. That tie has probability zero for Gaussian couplings.

For ``J`` with i.i.d. N(0, 1/N) off-diagonal entries the N stability conditions of a fixed
``s`` use disjoint columns of ``J``, so they are independent, and
``E[#fixed points] = 2^N * Phi((j_d - kappa) / sigma)^N`` with ``sigma^2 = (N - 1) / N``.
This module samples such couplings, enumerates fixed points exhaustively (N <= 20),
evaluates the formula and estimates the mean count. :mod:`darnax_core._theory_dynamics`
measures how often sign dynamics reach a fixed point.
"""

import functools
import logging
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from darnax_core._theory_checks import (
    _check_couplings,
    _check_density,
    _check_int,
    _check_key,
    _check_real_scalar,
    _check_self_coupling,
    _check_states,
)

logger = logging.getLogger(__name__)

MAX_ENUMERATION_UNITS = 20
"""Largest N accepted by the exhaustive enumeration (2^20 states)."""

# States are enumerated in chunks of 2^14 so that memory stays bounded for N = 20.
_CHUNK_LOG2 = 14
# Approximate bound on the floats held at once when batching over random couplings
# (2^22 float32 values, 16 MiB).
_BATCH_FLOATS = 1 << 22


class FixedPointCount(NamedTuple):
    """Sample mean of the fixed-point count over random couplings.

    Attributes
    ----------
    mean : float
        Mean count over the samples.
    standard_error : float
        Sample standard deviation divided by sqrt(samples), or NaN when samples == 1.
    counts : Int[Array, "samples"]
        The count of each sampled coupling matrix.
    """

    mean: float
    standard_error: float
    counts: Int[Array, " samples"]


def _batch_size(items: int, bound: int) -> int:
    """Batch size for ``lax.map``: at most ``bound``, a divisor of ``items`` when one is close.

    A batch that divides ``items`` avoids compiling a second body for the remainder.
    """
    bound = max(1, min(items, bound))
    divisor = max(d for d in range(1, bound + 1) if items % d == 0)
    return divisor if 2 * divisor >= bound else bound


def _draw_flat(sample: Callable[[PRNGKeyArray, tuple[int, ...]], Array], key: PRNGKeyArray,
               shape: tuple[int, ...]) -> Array:
    """Draw ``prod(shape)`` values as a 1-D array and reshape them.

    With jax 0.10.2 on a 2-core CPU machine, compiling a threefry normal draw of rank 4 (for
    example rank 3 under one vmap) took about 5 s, and under 1 s for the same values drawn
    flat.
    """
    return sample(key, (math.prod(shape),)).reshape(shape)


def _sample_couplings(key: PRNGKeyArray, n: int, density: float, dtype: jnp.dtype,
                      layers: tuple[int, ...] = ()) -> Float[Array, "*layers n n"]:
    gauss_key, mask_key = jax.random.split(key)
    shape = (*layers, n, n)
    gauss = _draw_flat(functools.partial(jax.random.normal, dtype=dtype), gauss_key, shape)
    mask = ~jnp.eye(n, dtype=bool)
    if density < 1.0:
        mask = mask & _draw_flat(lambda k, s: jax.random.bernoulli(k, density, s), mask_key, shape)
    return jnp.where(mask, gauss / math.sqrt(n * density), jnp.zeros((), dtype))


def random_couplings(key: PRNGKeyArray, n: int, *, density: float = 1.0) -> Float[Array, "n n"]:
    """Sample a random coupling matrix with zero diagonal.

    Off-diagonal entries are N(0, 1) / sqrt(n). For ``density < 1`` each off-diagonal entry
    is kept with probability ``density`` and the kept entries are N(0, 1) / sqrt(n * density),
    so each column keeps an expected squared norm of about 1.

    Parameters
    ----------
    key : PRNGKeyArray
        JAX random key.
    n : int
        Number of units, at least 2.
    density : float
        Fraction of non-zero off-diagonal couplings, in (0, 1].

    Returns
    -------
    Float[Array, "n n"]
        Couplings in the default float dtype, ``J[j, i]`` from unit j to unit i.
    """
    key = _check_key(key, "to sample couplings")
    n = _check_int("n", n, minimum=2)
    density = _check_density(density)
    return _sample_couplings(key, n, density, jnp.result_type(float))


def _field(couplings: Array, j_d: Array, states: Array) -> Array:
    return states @ couplings + j_d * states


def _stable_with_margin(couplings: Array, j_d: Array, states: Array,
                        margin: Array) -> Bool[Array, "..."]:
    field = _field(couplings, j_d, states)
    stable = states * field > margin
    # sign(0) = +1, so with a zero margin a +1 unit with zero field is left unchanged.
    tie = (margin == 0) & (field == 0) & (states > 0)
    return jnp.all(stable | tie, axis=-1)


def _states_for_indices(indices: Int[Array, " k"], n: int, dtype: jnp.dtype) -> Array:
    """Map index k to the state whose unit 0 is the most significant bit (0 -> -1, 1 -> +1)."""
    shifts = jnp.arange(n - 1, -1, -1, dtype=indices.dtype)
    bits = (indices[:, None] >> shifts) & 1
    return (2 * bits - 1).astype(dtype)


def _fixed_point_mask(couplings: Array, j_d: Array, margin: Array) -> Bool[Array, " states"]:
    """Stability of all 2^n states in enumeration order, evaluated chunk by chunk."""
    n = couplings.shape[0]
    chunk_log2 = min(n, _CHUNK_LOG2)
    offsets = jnp.arange(1 << chunk_log2, dtype=jnp.int32)

    def chunk_mask(chunk: Array) -> Array:
        states = _states_for_indices((chunk << chunk_log2) + offsets, n, couplings.dtype)
        return _stable_with_margin(couplings, j_d, states, margin)

    chunks = jnp.arange(1 << (n - chunk_log2), dtype=jnp.int32)
    return jax.lax.map(chunk_mask, chunks).reshape(-1)


_fixed_point_mask_jit = jax.jit(_fixed_point_mask)


@jax.jit
def _count_fixed_points(couplings: Array, j_d: Array, margin: Array) -> Int[Array, ""]:
    return jnp.sum(_fixed_point_mask(couplings, j_d, margin), dtype=jnp.int32)


def _check_enumeration_inputs(couplings: object, j_d: object, margin: object) -> tuple:
    couplings = _check_couplings(couplings)
    n = couplings.shape[0]
    if n > MAX_ENUMERATION_UNITS:
        raise ValueError(
            f"`J` has n = {n} units, too many for exhaustive enumeration of 2^n states: "
            f"n must be at most {MAX_ENUMERATION_UNITS}. For larger networks use "
            "expected_fixed_points for the mean count, or run_sign_dynamics."
        )
    j_d = _check_self_coupling(j_d, n, couplings.dtype)
    margin = _check_real_scalar("margin", margin).astype(couplings.dtype)
    return couplings, j_d, margin


def is_fixed_point(J: Float[ArrayLike, "n n"], j_d: Float[ArrayLike, "n"] | float,
                   s: Float[ArrayLike, "batch n"], *,
                   margin: float = 0.0) -> Bool[Array, " batch"]:
    """Test whether each state satisfies ``s_i * h_i > margin`` for every unit.

    With ``margin = 0`` a unit with ``h_i = 0`` and ``s_i = +1`` counts as stable, because
    ``sign(0) = +1``. Works under ``jax.jit`` (value checks then use ``eqx.error_if``).

    Parameters
    ----------
    J : Float[ArrayLike, "n n"]
        Couplings with zero diagonal.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling, a scalar or one value per unit.
    s : Float[ArrayLike, "batch n"]
        States with entries in {-1, +1}.
    margin : float
        Stability margin kappa.

    Returns
    -------
    Bool[Array, "batch"]
        True for states that are fixed points with the given margin.
    """
    couplings = _check_couplings(J)
    n = couplings.shape[0]
    j_d = _check_self_coupling(j_d, n, couplings.dtype)
    margin = _check_real_scalar("margin", margin).astype(couplings.dtype)
    states = _check_states("s", s, (n,), couplings.dtype, allow_zero=False)
    return _stable_with_margin(couplings, j_d, states, margin)


def count_fixed_points(J: Float[ArrayLike, "n n"], j_d: Float[ArrayLike, "n"] | float, *,
                       margin: float = 0.0) -> Int[Array, ""]:
    """Count the fixed points with margin ``margin`` by checking all 2^n states.

    The states are visited in chunks of at most 2^14, so memory stays bounded up to n = 20.
    Works under ``jax.jit`` and ``jax.vmap`` over ``J`` (value checks then use
    ``eqx.error_if``).

    Parameters
    ----------
    J : Float[ArrayLike, "n n"]
        Couplings with zero diagonal, n <= 20.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling, a scalar or one value per unit.
    margin : float
        Stability margin kappa.

    Returns
    -------
    Int[Array, ""]
        Number of states ``s`` with ``s_i * h_i > margin`` for all i.
    """
    couplings, j_d, margin = _check_enumeration_inputs(J, j_d, margin)
    return _count_fixed_points(couplings, j_d, margin)


def enumerate_fixed_points(J: Float[ArrayLike, "n n"], j_d: Float[ArrayLike, "n"] | float, *,
                           margin: float = 0.0) -> Int[Array, "count n"]:
    """List the fixed points with margin ``margin`` by checking all 2^n states.

    The rows come in the order of ``itertools.product((-1, 1), repeat=n)``: state k has
    ``s_i = +1`` where bit ``n - 1 - i`` of k is set. The result has a data-dependent
    shape, so this function cannot run under ``jax.jit``. Use :func:`count_fixed_points`
    there.

    Parameters
    ----------
    J : Float[ArrayLike, "n n"]
        Couplings with zero diagonal, n <= 20.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling, a scalar or one value per unit.
    margin : float
        Stability margin kappa.

    Returns
    -------
    Int[Array, "count n"]
        The fixed points as int32 rows of -1 and +1.
    """
    couplings, j_d, margin = _check_enumeration_inputs(J, j_d, margin)
    mask = _fixed_point_mask_jit(couplings, j_d, margin)
    (indices,) = jnp.nonzero(mask)
    return _states_for_indices(indices.astype(jnp.int32), couplings.shape[0], jnp.int32)


def _log_normal_cdf(x: float) -> float:
    probability = 0.5 * math.erfc(-x / math.sqrt(2.0))
    return math.log(probability) if probability > 0.0 else -math.inf


def expected_fixed_points(n: int, j_d: Float[ArrayLike, "n"] | float, *, margin: float = 0.0,
                          finite_size: bool = True) -> float:
    """Return the mean number of fixed points over couplings with i.i.d. N(0, 1/n) entries.

    The value is ``2^n * prod_i Phi((j_d_i - margin) / sigma)``, with ``sigma^2 = (n-1)/n``
    when ``finite_size`` (exact for every n, because each unit sums n - 1 couplings) and
    ``sigma = 1`` otherwise (the large-n form). The entropy density is ``log(value) / n``.

    Parameters
    ----------
    n : int
        Number of units, at least 2.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling, a scalar or one value per unit.
    margin : float
        Stability margin kappa.
    finite_size : bool
        Use ``sigma^2 = (n - 1) / n`` instead of 1.

    Returns
    -------
    float
        Expected count, or ``inf`` when it overflows a double.
    """
    n = _check_int("n", n, minimum=2)
    if not isinstance(finite_size, bool):
        raise TypeError(f"`finite_size` must be a bool, got {finite_size!r}.")
    _check_self_coupling(j_d, n, jnp.result_type(float))
    _check_real_scalar("margin", margin)
    # Evaluate in double precision from the caller's values, not the float32 copies.
    per_unit = np.broadcast_to(np.asarray(j_d, dtype=np.float64), (n,))
    margin = float(np.asarray(margin, dtype=np.float64))
    sigma = math.sqrt((n - 1) / n) if finite_size else 1.0
    log_count = n * math.log(2.0) + sum(_log_normal_cdf((float(v) - margin) / sigma)
                                        for v in per_unit)
    try:
        return math.exp(log_count)
    except OverflowError:
        return math.inf


@functools.partial(jax.jit, static_argnames=("n", "samples", "batch_size"))
def _sample_fixed_point_counts(key: PRNGKeyArray, j_d: Array, margin: Array, *, n: int,
                               samples: int, batch_size: int) -> Int[Array, " samples"]:
    def count_one(sample_key: PRNGKeyArray) -> Array:
        couplings = _sample_couplings(sample_key, n, 1.0, j_d.dtype)
        return jnp.sum(_fixed_point_mask(couplings, j_d, margin), dtype=jnp.int32)

    return jax.lax.map(count_one, jax.random.split(key, samples), batch_size=batch_size)


def mean_fixed_point_count(key: PRNGKeyArray, n: int, j_d: Float[ArrayLike, "n"] | float, *,
                           samples: int = 300, margin: float = 0.0) -> FixedPointCount:
    """Estimate the mean fixed-point count over dense random couplings by enumeration.

    Sample m uses ``random_couplings(jax.random.split(key, samples)[m], n)`` and counts its
    fixed points exhaustively. Samples are processed in vmapped batches that hold about
    2^22 floats at most.

    Parameters
    ----------
    key : PRNGKeyArray
        JAX random key, split into one key per sample.
    n : int
        Number of units, 2 <= n <= 20.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling, a scalar or one value per unit.
    samples : int
        Number of coupling matrices.
    margin : float
        Stability margin kappa.

    Returns
    -------
    FixedPointCount
        Mean, standard error and the individual counts.
    """
    key = _check_key(key, "to sample couplings")
    n = _check_int("n", n, minimum=2, maximum=MAX_ENUMERATION_UNITS)
    samples = _check_int("samples", samples, minimum=1)
    dtype = jnp.result_type(float)
    j_d = _check_self_coupling(j_d, n, dtype)
    margin = _check_real_scalar("margin", margin).astype(dtype)

    states_per_chunk = 1 << min(n, _CHUNK_LOG2)
    batch_size = _batch_size(samples, _BATCH_FLOATS // (states_per_chunk * n))
    counts = _sample_fixed_point_counts(key, j_d, margin, n=n, samples=samples,
                                        batch_size=batch_size)
    host_counts = np.asarray(counts, dtype=np.float64)
    mean = float(host_counts.mean())
    if samples > 1:
        standard_error = float(host_counts.std(ddof=1) / math.sqrt(samples))
    else:
        standard_error = math.nan
    return FixedPointCount(mean=mean, standard_error=standard_error, counts=counts)
