"""Elementwise operations shared by every part of the core."""

import jax.numpy as jnp
from jaxtyping import Array, Float


def sign(h: Float[Array, "..."]) -> Float[Array, "..."]:
    """Return +1 where ``h >= 0`` and -1 elsewhere, so that ``sign(0) = +1``.

    The result has the dtype of ``h``. This is the activation of every binary unit.
    """
    return jnp.where(h >= 0, jnp.ones_like(h), -jnp.ones_like(h))
