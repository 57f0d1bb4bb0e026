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
This module enumerates fixed points exhaustively (N <= 20), samples the mean count, and
measures how often sign dynamics reach a fixed point (accessibility), for one layer with
``j_d`` and for a chain of layers joined by one-to-one ferromagnetic couplings ``lam``.
"""

import functools
import logging
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from darnax_core._ops import sign

logger = logging.getLogger(__name__)

MAX_ENUMERATION_UNITS = 20
"""Largest N accepted by the exhaustive enumeration (2^20 states)."""

SCHEDULES = ("synchronous", "asynchronous")
CHAIN_SCHEDULES = ("synchronous", "sequential")
INITS = ("random", "zero")

# States are enumerated in chunks of 2^14 so that memory stays bounded for N = 20.
_CHUNK_LOG2 = 14
# Bound on the floats held at once when batching over random couplings (2^22 floats, 16 MiB).
_BATCH_FLOATS = 1 << 22


class FixedPointCount(NamedTuple):
    """Sample mean of the fixed-point count over random couplings.

    Attributes
    ----------
    mean : float
        Mean count over the samples.
    standard_error : float
        Sample standard deviation divided by sqrt(samples); NaN when samples == 1.
    counts : Int[Array, "samples"]
        The count of each sampled coupling matrix.
    """

    mean: float
    standard_error: float
    counts: Int[Array, " samples"]


class DynamicsResult(NamedTuple):
    """Outcome of a batch of sign-dynamics runs.

    Attributes
    ----------
    states : Float[Array, "batch ..."]
        Final states, shaped like the initial states.
    converged : Bool[Array, "batch"]
        True where the run reached a state with ``sign(h) == s`` for every unit.
    first_fixed_sweep : Int[Array, "batch"]
        Number of sweeps after which the run was first at such a state (0 when the initial
        state already was one), or -1 when it never was.
    """

    states: Float[Array, "batch ..."]
    converged: Bool[Array, " batch"]
    first_fixed_sweep: Int[Array, " batch"]


class AccessibilityCurve(NamedTuple):
    """Fraction of dynamics runs that reach a fixed point, for each parameter value.

    Attributes
    ----------
    values : Float[Array, "k"]
        The swept parameter (``j_d`` for :func:`accessibility`, ``lam`` for
        :func:`chain_accessibility`).
    fraction : Float[Array, "k"]
        Fraction of all ``samples * starts`` runs that converged within the sweep budget.
    standard_error : Float[Array, "k"]
        Standard error of ``fraction`` over the independent coupling samples (the per-sample
        fractions' standard deviation divided by sqrt(samples)); NaN when samples == 1.
    mean_first_fixed_sweep : Float[Array, "k"]
        Mean number of sweeps to the first fixed point among converged runs; NaN when none
        converged.
    """

    values: Float[Array, " k"]
    fraction: Float[Array, " k"]
    standard_error: Float[Array, " k"]
    mean_first_fixed_sweep: Float[Array, " k"]


def _batch_size(items: int, bound: int) -> int:
    """Batch size for ``lax.map``: at most ``bound``, a divisor of ``items`` when one is close.

    A batch that divides ``items`` avoids compiling a second body for the remainder.
    """
    bound = max(1, min(items, bound))
    divisor = max(d for d in range(1, bound + 1) if items % d == 0)
    return divisor if 2 * divisor >= bound else bound


# ----------------------------------------------------------------------------- validation


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be an int, got {value!r} of type {type(value).__name__}; "
            "pass a Python int."
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be at most {maximum}, got {value}.")
    return int(value)


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a str, one of {allowed}, got {value!r}.")
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")
    return value


def _as_real_array(name: str, value: object) -> Array:
    """Convert ``value`` to a floating JAX array, rejecting complex and non-numeric input."""
    try:
        array = jnp.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a real number or array, got {type(value).__name__}."
        ) from error
    if jnp.issubdtype(array.dtype, jnp.complexfloating):
        raise TypeError(f"`{name}` must be real, got dtype {array.dtype}; pass the real part.")
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.result_type(float))
    return array


def _check_finite(name: str, array: Array) -> Array:
    """Reject NaN or infinite entries: eagerly with ValueError, under jit with ``error_if``."""
    message = f"`{name}` contains NaN or infinite values; pass finite values."
    if isinstance(array, jax.core.Tracer):
        return eqx.error_if(array, ~jnp.all(jnp.isfinite(array)), message)
    if not np.all(np.isfinite(np.asarray(array))):
        raise ValueError(message)
    return array


def _check_real_scalar(name: str, value: object) -> Array:
    array = _as_real_array(name, value)
    if array.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar, got shape {array.shape}.")
    return _check_finite(name, array)


def _check_zero_diagonal(name: str, couplings: Array) -> Array:
    diagonal = jnp.diagonal(couplings, axis1=-2, axis2=-1)
    message = (
        f"`{name}` must have a zero diagonal: the self-coupling is passed separately as "
        f"`j_d`. Use `{name} - jnp.diag(jnp.diag({name}))` and pass the diagonal as `j_d`."
    )
    if isinstance(couplings, jax.core.Tracer):
        return eqx.error_if(couplings, jnp.any(diagonal != 0), message)
    diagonal = np.asarray(diagonal)
    if np.any(diagonal != 0):
        largest = float(np.max(np.abs(diagonal)))
        raise ValueError(f"{message} Got a diagonal entry of magnitude {largest:.4g}.")
    return couplings


def _check_couplings(couplings: object) -> Array:
    """Validate a single-layer coupling matrix ``J`` of shape (n, n)."""
    array = _as_real_array("J", couplings)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"`J` must be a square matrix of shape (n, n), got shape {array.shape}.")
    return _check_zero_diagonal("J", _check_finite("J", array))


def _check_chain_couplings(couplings: object) -> Array:
    """Validate chain couplings of shape (layers, n, n)."""
    array = _as_real_array("J", couplings)
    if array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise ValueError(
            "`J` must stack one square matrix per layer, shape (layers, n, n), "
            f"got shape {array.shape}."
        )
    return _check_zero_diagonal("J", _check_finite("J", array))


def _check_self_coupling(j_d: object, n: int, dtype: jnp.dtype) -> Array:
    array = _as_real_array("j_d", j_d)
    if array.shape not in ((), (n,)):
        raise ValueError(
            f"`j_d` must be a scalar or have shape ({n},), one value per unit, "
            f"got shape {array.shape}."
        )
    return _check_finite("j_d", array).astype(dtype)


def _check_states(name: str, states: object, shape_tail: tuple[int, ...], dtype: jnp.dtype,
                  allow_zero: bool) -> Array:
    array = _as_real_array(name, states)
    expected = ("batch", *shape_tail)
    if array.ndim != len(expected) or array.shape[1:] != shape_tail:
        raise ValueError(
            f"`{name}` must have shape {expected}, got shape {array.shape}; "
            f"add a leading batch axis with `{name}[None]` for a single state."
        )
    allowed = (-1.0, 0.0, 1.0) if allow_zero else (-1.0, 1.0)
    if not isinstance(array, jax.core.Tracer):
        values = np.asarray(array)
        valid = np.isin(values, allowed)
        if not np.all(valid):
            bad = float(values[~valid][0])
            raise ValueError(f"`{name}` entries must be in {allowed}, got the value {bad}.")
    return array.astype(dtype)


def _check_key(key: object, purpose: str) -> PRNGKeyArray:
    if key is None:
        raise ValueError(f"`key` is required {purpose}; pass jax.random.key(seed).")
    dtype = getattr(key, "dtype", None)
    is_typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    is_raw = dtype == jnp.uint32 and getattr(key, "ndim", None) == 1
    if not (is_typed or is_raw):
        raise TypeError(
            f"`key` must be a JAX PRNG key from jax.random.key(seed), got {key!r}."
        )
    return key


def _check_density(density: object) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float, np.floating)):
        raise TypeError(f"`density` must be a float in (0, 1], got {density!r}.")
    if not 0.0 < density <= 1.0:
        raise ValueError(
            f"`density` must be in (0, 1], the fraction of non-zero couplings, got {density}."
        )
    return float(density)


def _check_values(name: str, values: object) -> Array:
    array = _as_real_array(name, values)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D sequence, got shape {array.shape}.")
    return _check_finite(name, array)


# -------------------------------------------------------------------------- fixed points


def _draw_flat(sample: Callable[[PRNGKeyArray, tuple[int, ...]], Array], key: PRNGKeyArray,
               shape: tuple[int, ...]) -> Array:
    """Draw ``prod(shape)`` values as a 1-D array and reshape them.

    With jax 0.10 on CPU, compiling a threefry draw of rank 4 (for example rank 3 under one
    vmap) took about 5 s against under 1 s for the same values drawn flat.
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


@jax.jit
def _count_fixed_points(couplings: Array, j_d: Array, margin: Array) -> Int[Array, ""]:
    return jnp.sum(_fixed_point_mask(couplings, j_d, margin), dtype=jnp.int32)


def _check_enumeration_inputs(couplings: object, j_d: object, margin: object) -> tuple:
    couplings = _check_couplings(couplings)
    n = couplings.shape[0]
    if n > MAX_ENUMERATION_UNITS:
        raise ValueError(
            f"`J` has n = {n} units, too many for exhaustive enumeration of 2^n states; "
            f"n must be at most {MAX_ENUMERATION_UNITS}. Use the dynamics for larger networks."
        )
    j_d = _check_self_coupling(j_d, n, couplings.dtype)
    margin = _check_real_scalar("margin", margin).astype(couplings.dtype)
    return couplings, j_d, margin


def is_fixed_point(J: Float[ArrayLike, "n n"], j_d: Float[ArrayLike, "n"] | float,
                   s: Float[ArrayLike, "batch n"], *, margin: float = 0.0) -> Bool[Array, " batch"]:
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
    shape, so this function cannot run under ``jax.jit``; use :func:`count_fixed_points`
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
    mask = jax.jit(_fixed_point_mask)(couplings, j_d, margin)
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
        Expected count; ``inf`` when it overflows a double.
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

    Each sample draws ``J = random_couplings(key_m, n)`` and counts its fixed points
    exhaustively. Samples are processed in vmapped batches that hold at most about 2^22
    floats at once.

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


# ------------------------------------------------------------------------------ dynamics


def _sweep_orders(key: PRNGKeyArray, sweep: Int[Array, ""] | int, batch: int,
                  n: int) -> Int[Array, "batch n"]:
    """Unit visiting orders of one asynchronous sweep: one fresh permutation per run.

    Each row is the stable argsort of uniform random 32-bit integers, so it is always a
    permutation of range(n), and uniform up to the tie-breaking of equal draws.
    """
    bits = jax.random.bits(jax.random.fold_in(key, sweep), (batch, n), jnp.uint32)
    return jnp.argsort(bits, axis=-1, stable=True).astype(jnp.int32)


def _asynchronous_sweep(couplings: Array, j_d: Array, states: Array,
                        orders: Int[Array, "batch n"]) -> Array:
    rows = jnp.arange(states.shape[0])
    self_coupling = jnp.broadcast_to(j_d, states.shape[1:])

    def visit(position: Int[Array, ""], current: Array) -> Array:
        units = orders[:, position]
        field = jnp.einsum("bj,jb->b", current, couplings[:, units])
        field = field + self_coupling[units] * current[rows, units]
        return current.at[rows, units].set(sign(field))

    return jax.lax.fori_loop(0, states.shape[1], visit, states)


def _relax(update: Callable[[Array, Array], Array], is_fixed: Callable[[Array], Array],
           initial: Array, sweeps: int) -> DynamicsResult:
    """Apply ``update(states, sweep)`` until every run is fixed or ``sweeps`` sweeps ran.

    A state with ``sign(h) == s`` everywhere is unchanged by every schedule here, so
    stopping early leaves the same final states as running all sweeps.
    """
    first = jnp.where(is_fixed(initial), 0, -1).astype(jnp.int32)

    def keep_going(carry: tuple) -> Array:
        sweep, _, first_fixed = carry
        return (sweep < sweeps) & jnp.any(first_fixed < 0)

    def step(carry: tuple) -> tuple:
        sweep, states, first_fixed = carry
        states = update(states, sweep)
        newly_fixed = (first_fixed < 0) & is_fixed(states)
        return sweep + 1, states, jnp.where(newly_fixed, sweep + 1, first_fixed)

    _, states, first = jax.lax.while_loop(keep_going, step, (jnp.int32(0), initial, first))
    return DynamicsResult(states=states, converged=first >= 0, first_fixed_sweep=first)


def _single_layer_dynamics(couplings: Array, j_d: Array, initial: Array, key: PRNGKeyArray | None,
                           schedule: str, sweeps: int) -> DynamicsResult:
    def is_fixed(states: Array) -> Array:
        return jnp.all(sign(_field(couplings, j_d, states)) == states, axis=-1)

    def update(states: Array, sweep: Array) -> Array:
        if schedule == "synchronous":
            return sign(_field(couplings, j_d, states))
        orders = _sweep_orders(key, sweep, states.shape[0], states.shape[1])
        return _asynchronous_sweep(couplings, j_d, states, orders)

    return _relax(update, is_fixed, initial, sweeps)


_single_layer_dynamics_jit = jax.jit(_single_layer_dynamics, static_argnames=("schedule",))


def run_sign_dynamics(J: Float[ArrayLike, "n n"], j_d: Float[ArrayLike, "n"] | float,
                      s0: Float[ArrayLike, "batch n"], *, schedule: str, sweeps: int,
                      key: PRNGKeyArray | None = None) -> DynamicsResult:
    """Run sign dynamics ``s_i <- sign(h_i)`` on one layer, for a batch of initial states.

    - ``"synchronous"``: every unit is updated at once from the previous state.
    - ``"asynchronous"``: each sweep visits the units one at a time in a fresh random order
      (independent for every run), and each unit sees the current state. Needs ``key``.

    A run counts as converged once no unit is unstable, i.e. ``sign(h) == s`` everywhere.
    Such a state never changes, so the loop stops when every run has converged. Entries of
    ``s0`` equal to 0 are allowed as the zero start of the reference dynamics: a zero state
    is never fixed, and a synchronous sweep from it gives ``sign(0) = +1`` for every unit.

    Parameters
    ----------
    J : Float[ArrayLike, "n n"]
        Couplings with zero diagonal.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling, a scalar or one value per unit.
    s0 : Float[ArrayLike, "batch n"]
        Initial states with entries in {-1, 0, +1}.
    schedule : str
        ``"synchronous"`` or ``"asynchronous"``.
    sweeps : int
        Maximum number of sweeps, at least 1.
    key : PRNGKeyArray, optional
        Random key for the asynchronous orders. The orders of sweep t are the argsort of
        ``jax.random.bits(jax.random.fold_in(key, t), (batch, n))`` along the units.

    Returns
    -------
    DynamicsResult
        Final states, convergence flags and the sweep of the first fixed point.
    """
    schedule = _check_choice("schedule", schedule, SCHEDULES)
    sweeps = _check_int("sweeps", sweeps, minimum=1)
    couplings = _check_couplings(J)
    n = couplings.shape[0]
    j_d = _check_self_coupling(j_d, n, couplings.dtype)
    initial = _check_states("s0", s0, (n,), couplings.dtype, allow_zero=True)
    if schedule == "asynchronous":
        key = _check_key(key, "for schedule='asynchronous'")
    return _single_layer_dynamics_jit(couplings, j_d, initial, key, schedule=schedule,
                                      sweeps=sweeps)


def _chain_field(couplings: Array, j_d: Array, lam: Array, states: Array) -> Array:
    """Fields of all layers, ``s_l @ J_l + j_d * s_l + lam * (s_{l-1} + s_{l+1})``."""
    own = jnp.einsum("bln,lnm->blm", states, couplings) + j_d * states
    edge = jnp.zeros_like(states[:, :1])
    below = jnp.concatenate([edge, states[:, :-1]], axis=1)
    above = jnp.concatenate([states[:, 1:], edge], axis=1)
    return own + lam * (below + above)


def _sequential_chain_sweep(couplings: Array, j_d: Array, lam: Array, states: Array) -> Array:
    layers = states.shape[1]
    for layer in range(layers):
        field = states[:, layer] @ couplings[layer] + j_d * states[:, layer]
        if layer > 0:
            field = field + lam * states[:, layer - 1]
        if layer < layers - 1:
            field = field + lam * states[:, layer + 1]
        states = states.at[:, layer].set(sign(field))
    return states


def _chain_dynamics(couplings: Array, j_d: Array, lam: Array, initial: Array, schedule: str,
                    sweeps: int) -> DynamicsResult:
    def is_fixed(states: Array) -> Array:
        stable = sign(_chain_field(couplings, j_d, lam, states)) == states
        return jnp.all(stable, axis=(-2, -1))

    def update(states: Array, sweep: Array) -> Array:
        del sweep
        if schedule == "synchronous":
            return sign(_chain_field(couplings, j_d, lam, states))
        return _sequential_chain_sweep(couplings, j_d, lam, states)

    return _relax(update, is_fixed, initial, sweeps)


_chain_dynamics_jit = jax.jit(_chain_dynamics, static_argnames=("schedule",))


def run_chain_dynamics(J: Float[ArrayLike, "layers n n"], lam: float,
                       s0: Float[ArrayLike, "batch layers n"], *, schedule: str, sweeps: int,
                       j_d: Float[ArrayLike, "n"] | float = 0.0) -> DynamicsResult:
    """Run sign dynamics on a chain of layers joined by one-to-one couplings ``lam``.

    The field of layer l is ``s_l @ J[l] + j_d * s_l + lam * (s_{l-1} + s_{l+1})``, where a
    missing neighbour (below the first or above the last layer) contributes 0.

    - ``"synchronous"``: every layer is updated at once from the previous state.
    - ``"sequential"``: layers are updated in index order, each layer all at once from the
      current state, so layer l sees the new layer l - 1 (the darnax sweep).

    Parameters
    ----------
    J : Float[ArrayLike, "layers n n"]
        One coupling matrix per layer, each with zero diagonal.
    lam : float
        Strength of the couplings between same-index units of neighbouring layers.
    s0 : Float[ArrayLike, "batch layers n"]
        Initial states with entries in {-1, 0, +1}.
    schedule : str
        ``"synchronous"`` or ``"sequential"``.
    sweeps : int
        Maximum number of sweeps, at least 1.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling shared by all layers.

    Returns
    -------
    DynamicsResult
        Final states, convergence flags (``sign(h) == s`` in every layer) and the sweep of
        the first fixed point.
    """
    schedule = _check_choice("schedule", schedule, CHAIN_SCHEDULES)
    sweeps = _check_int("sweeps", sweeps, minimum=1)
    couplings = _check_chain_couplings(J)
    layers, n = couplings.shape[:2]
    j_d = _check_self_coupling(j_d, n, couplings.dtype)
    lam = _check_real_scalar("lam", lam).astype(couplings.dtype)
    initial = _check_states("s0", s0, (layers, n), couplings.dtype, allow_zero=True)
    return _chain_dynamics_jit(couplings, j_d, lam, initial, schedule=schedule, sweeps=sweeps)


# ------------------------------------------------------------------------- accessibility


def _initial_states(key: PRNGKeyArray, init: str, shape: tuple[int, ...],
                    dtype: jnp.dtype) -> Array:
    if init == "zero":
        return jnp.zeros(shape, dtype)
    return _draw_flat(functools.partial(jax.random.rademacher, dtype=dtype), key, shape)


@functools.partial(jax.jit, static_argnames=("n", "schedule", "starts", "samples", "init",
                                             "density", "batch_size"))
def _single_layer_runs(key: PRNGKeyArray, j_d: Array, *, n: int, schedule: str, sweeps: int,
                       starts: int, samples: int, init: str, density: float,
                       batch_size: int) -> DynamicsResult:
    def run_sample(sample_key: PRNGKeyArray) -> DynamicsResult:
        couplings_key, start_key, order_key = jax.random.split(sample_key, 3)
        couplings = _sample_couplings(couplings_key, n, density, j_d.dtype)
        initial = _initial_states(start_key, init, (starts, n), j_d.dtype)
        return _single_layer_dynamics(couplings, j_d, initial, order_key, schedule, sweeps)

    return jax.lax.map(run_sample, jax.random.split(key, samples), batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("n", "layers", "schedule", "starts", "samples",
                                             "init", "density", "batch_size"))
def _chain_runs(key: PRNGKeyArray, lam: Array, *, n: int, layers: int, schedule: str,
                sweeps: int, starts: int, samples: int, init: str, density: float,
                batch_size: int) -> DynamicsResult:
    def run_sample(sample_key: PRNGKeyArray) -> DynamicsResult:
        couplings_key, start_key = jax.random.split(sample_key)
        couplings = _sample_couplings(couplings_key, n, density, lam.dtype, (layers,))
        initial = _initial_states(start_key, init, (starts, layers, n), lam.dtype)
        return _chain_dynamics(couplings, jnp.zeros((), lam.dtype), lam, initial, schedule,
                               sweeps)

    return jax.lax.map(run_sample, jax.random.split(key, samples), batch_size=batch_size)


def _summarise(results: list[DynamicsResult], values: Array) -> AccessibilityCurve:
    converged = jnp.stack([r.converged for r in results]).astype(values.dtype)
    first = jnp.stack([r.first_fixed_sweep for r in results]).astype(values.dtype)
    samples = converged.shape[1]
    per_sample = jnp.mean(converged, axis=2)
    fraction = jnp.mean(per_sample, axis=1)
    if samples > 1:
        standard_error = jnp.std(per_sample, axis=1, ddof=1) / math.sqrt(samples)
    else:
        standard_error = jnp.full_like(fraction, jnp.nan)
    converged_runs = jnp.sum(converged, axis=(1, 2))
    total_sweeps = jnp.sum(jnp.where(converged > 0, first, 0), axis=(1, 2))
    mean_first = jnp.where(converged_runs > 0, total_sweeps / jnp.maximum(converged_runs, 1),
                           jnp.nan)
    return AccessibilityCurve(values=values, fraction=fraction, standard_error=standard_error,
                              mean_first_fixed_sweep=mean_first)


def _check_run_counts(n: int, sweeps: int, starts: int, samples: int, init: str,
                      density: float) -> tuple:
    return (
        _check_int("n", n, minimum=2),
        _check_int("sweeps", sweeps, minimum=1),
        _check_int("starts", starts, minimum=1),
        _check_int("samples", samples, minimum=1),
        _check_choice("init", init, INITS),
        _check_density(density),
    )


def accessibility(key: PRNGKeyArray, n: int, j_d_values: Sequence[float] | Float[ArrayLike, "k"],
                  *, schedule: str, sweeps: int = 100, starts: int = 16, samples: int = 16,
                  init: str = "random", density: float = 1.0) -> AccessibilityCurve:
    """Measure the fraction of single-layer sign-dynamics runs that reach a fixed point.

    For each ``j_d`` it draws ``samples`` coupling matrices ``random_couplings(., n,
    density=density)`` and runs :func:`run_sign_dynamics` from ``starts`` initial states on
    each. The same couplings, starts and asynchronous orders are reused for every ``j_d``,
    so the curve is not noisier between neighbouring values than the samples require.

    With ``init="zero"`` every run starts from s = 0. A synchronous first sweep then sets
    every unit to ``sign(0) = +1``, so all starts of one coupling matrix give the same run
    and ``starts=1`` suffices. An asynchronous first sweep gives +1 to the first visited
    unit and then depends on the order.

    Parameters
    ----------
    key : PRNGKeyArray
        JAX random key.
    n : int
        Number of units, at least 2.
    j_d_values : Sequence[float]
        Self-coupling values to sweep.
    schedule : str
        ``"synchronous"`` or ``"asynchronous"``.
    sweeps : int
        Sweep budget per run.
    starts : int
        Initial states per coupling matrix.
    samples : int
        Coupling matrices per ``j_d``.
    init : str
        ``"random"`` (uniform in {-1, +1}^n) or ``"zero"``.
    density : float
        Fraction of non-zero couplings, in (0, 1].

    Returns
    -------
    AccessibilityCurve
        Converged fraction, its standard error and mean sweeps, for each ``j_d``.
    """
    key = _check_key(key, "to sample couplings and starts")
    schedule = _check_choice("schedule", schedule, SCHEDULES)
    n, sweeps, starts, samples, init, density = _check_run_counts(
        n, sweeps, starts, samples, init, density)
    values = _check_values("j_d_values", j_d_values)

    batch_size = _batch_size(samples, _BATCH_FLOATS // (n * (n + starts)))
    results = []
    for j_d in values:
        results.append(_single_layer_runs(
            key, j_d, n=n, schedule=schedule, sweeps=sweeps, starts=starts, samples=samples,
            init=init, density=density, batch_size=batch_size))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("accessibility n=%d j_d=%.4g schedule=%s: converged fraction %.4f",
                         n, float(j_d), schedule, float(jnp.mean(results[-1].converged)))
    return _summarise(results, values)


def chain_accessibility(key: PRNGKeyArray, n: int, lambdas: Sequence[float] | Float[ArrayLike, "k"],
                        *, layers: int = 2, schedule: str, sweeps: int = 100, starts: int = 16,
                        samples: int = 16, init: str = "random",
                        density: float = 1.0) -> AccessibilityCurve:
    """Measure the fraction of chain sign-dynamics runs that reach a fixed point.

    The chain has ``layers`` layers of ``n`` units, no self-coupling (``j_d = 0``), its own
    ``random_couplings`` per layer and a one-to-one coupling ``lam`` between same-index
    units of neighbouring layers (see :func:`run_chain_dynamics`). The same couplings and
    starts are reused for every ``lam``. With ``init="zero"`` the first sweep sets every
    unit of the first layer to ``sign(0) = +1``, and of every layer when synchronous.

    Parameters
    ----------
    key : PRNGKeyArray
        JAX random key.
    n : int
        Units per layer, at least 2.
    lambdas : Sequence[float]
        Inter-layer coupling values to sweep.
    layers : int
        Number of layers, at least 2.
    schedule : str
        ``"synchronous"`` or ``"sequential"``.
    sweeps, starts, samples, init, density
        As in :func:`accessibility`.

    Returns
    -------
    AccessibilityCurve
        Converged fraction, its standard error and mean sweeps, for each ``lam``.
    """
    key = _check_key(key, "to sample couplings and starts")
    schedule = _check_choice("schedule", schedule, CHAIN_SCHEDULES)
    layers = _check_int("layers", layers, minimum=2)
    n, sweeps, starts, samples, init, density = _check_run_counts(
        n, sweeps, starts, samples, init, density)
    values = _check_values("lambdas", lambdas)

    batch_size = _batch_size(samples, _BATCH_FLOATS // (layers * n * (n + starts)))
    results = []
    for lam in values:
        results.append(_chain_runs(
            key, lam, n=n, layers=layers, schedule=schedule, sweeps=sweeps, starts=starts,
            samples=samples, init=init, density=density, batch_size=batch_size))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("chain accessibility n=%d layers=%d lam=%.4g schedule=%s: "
                         "converged fraction %.4f", n, layers, float(lam), schedule,
                         float(jnp.mean(results[-1].converged)))
    return _summarise(results, values)
