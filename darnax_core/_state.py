"""The batched network state: the input, one buffer per hidden layer, and the output buffer."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from darnax_core._dynamics import zero_hidden
from darnax_core._network import Network


class State(NamedTuple):
    """Network state for a batch.

    ``input`` is clamped and never changes. ``hidden`` contains one ``(batch, n_l)`` buffer per
    hidden layer. ``output`` contains the +-1 label during training and is ``None`` at evaluation, so no
    label can leak into the dynamics.
    """

    input: Float[Array, "batch d"]
    hidden: tuple[Float[Array, "batch _"], ...]
    output: Float[Array, "batch c"] | None


def init_state(net: Network, x, y=None) -> State:
    """Return the initial state: ``x`` as input, zero hidden buffers, ``y`` as output.

    Shapes are checked here, before any tracing: ``x`` must be ``(batch, input_dim)`` and ``y`` (when
    given) ``(batch, num_classes)``.
    """
    x = check_inputs(net, x)
    batch = x.shape[0]
    hidden = zero_hidden(net, batch, x.dtype)
    if y is not None:
        y = jnp.asarray(y)
        if y.shape != (batch, net.num_classes):
            raise ValueError(
                f"Labels must have shape (batch, num_classes) = {(batch, net.num_classes)}, got {y.shape}. "
                "Pass +-1 one-hot rows, or class indices to the train step."
            )
        y = y.astype(x.dtype)
    return State(x, hidden, y)


def check_inputs(net: Network, x) -> Float[Array, "batch d"]:
    """Return ``x`` as a float32 ``(batch, input_dim)`` array, or raise naming the problem.

    A float32 JAX array of the right shape is returned as it is, so the check costs no device work.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    dtype = np.dtype(x.dtype)
    if dtype.kind not in "fiub":
        raise TypeError(f"Inputs must be a real array, got dtype {dtype}.")
    if len(x.shape) != 2 or x.shape[1] != net.input_dim:
        raise ValueError(
            f"Inputs must have shape (batch, {net.input_dim}), got {tuple(x.shape)}. Flatten images to vectors first."
        )
    if x.shape[0] == 0:
        raise ValueError("The batch is empty (batch size 0); pass at least one sample.")
    if isinstance(x, jax.Array) and dtype == np.float32:
        return x
    return jnp.asarray(x, dtype=jnp.float32)
