"""Argument validation shared by the fixed-point and dynamics utilities of the theory checks.

Each check raises ValueError or TypeError naming the argument, the value received and the
fix. On traced arrays (inside ``jax.jit``) the value checks run through ``eqx.error_if``
instead, and shape checks still run at trace time.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"`{name}` must be an int, got {value!r} of type {type(value).__name__}. "
            "Pass a Python int."
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
        raise TypeError(f"`{name}` must be real, got dtype {array.dtype}. Pass the real part.")
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.result_type(float))
    return array


def _check_finite(name: str, array: Array) -> Array:
    """Reject NaN or infinite entries: eagerly with ValueError, under jit with ``error_if``."""
    message = f"`{name}` contains NaN or infinite values. Pass finite values."
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
            f"`{name}` must have shape {expected}, got shape {array.shape}. "
            f"Add a leading batch axis with `{name}[None]` for a single state."
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
        raise ValueError(f"`key` is required {purpose}. Pass jax.random.key(seed).")
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
