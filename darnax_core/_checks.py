"""Argument checks shared by the constructors: each raises a message that names the argument."""

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int after checking that it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be a positive int, got {value!r} of type {type(value).__name__}.")
    if value <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value}.")
    return int(value)


def check_nonnegative_int(value, name: str) -> int:
    """Return ``value`` as an int after checking that it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int >= 0, got {value!r} of type {type(value).__name__}.")
    if value < 0:
        raise ValueError(f"`{name}` must be an int >= 0, got {value}.")
    return int(value)


def check_finite_number(value, name: str) -> float:
    """Return ``value`` as a float after checking that it is a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a finite number, got {value!r}.")
    if not math.isfinite(float(value)):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    return float(value)


def per_unit_param(value, features: int, name: str) -> Float[Array, "..."]:
    """Return a scalar or per-unit ``(features,)`` float32 parameter, rejecting other shapes."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be a number or an array of numbers, got {value!r}.") from error
    if array.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must be a number or an array of numbers, got {value!r} (dtype {array.dtype}).")
    if array.ndim == 1 and array.shape[0] == 1:
        array = array.reshape(())
    if array.shape not in ((), (features,)):
        raise ValueError(
            f"`{name}` must be a scalar or have shape ({features},) (one value per unit), got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got {array}.")
    return jnp.asarray(array, dtype=jnp.float32)


def parse_enum(cls, value, what: str):
    """Return the member of the string enum ``cls`` named by ``value``, or raise listing the choices."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(repr(member.value) for member in cls)
        raise ValueError(f"Unknown {what} {value!r}; expected one of {allowed}.") from None


def check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` after checking that it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
    return value
