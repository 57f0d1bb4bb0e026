"""Storage of JAX pytrees in Lightning checkpoints as plain torch tensors.

A Lightning checkpoint must load with ``torch.load(path, weights_only=True)``, which accepts
tensors, numbers, strings, lists and dicts but no NumPy or JAX arrays. Each pytree is therefore
saved as its list of leaves, converted to CPU tensors with the same dtype and shape. The tree
structure is not stored: the loader rebuilds a template tree from the model's hyperparameters and
fills its leaves, after checking that every shape and dtype agrees.
"""

import logging
from typing import Any

import jax
import numpy as np
import torch

logger = logging.getLogger(__name__)

#: Version of the layout written by :func:`tree_to_state`.
STATE_FORMAT = 1


def leaf_to_tensor(leaf: Any) -> torch.Tensor:
    """Copy one array leaf to a CPU torch tensor with the same dtype and shape."""
    return torch.from_numpy(np.array(leaf))


def tree_to_state(tree: Any) -> dict[str, Any]:
    """Return ``{"format", "leaves"}`` with every array leaf of ``tree`` as a torch tensor."""
    leaves = jax.tree_util.tree_leaves(tree)
    return {"format": STATE_FORMAT, "leaves": [leaf_to_tensor(leaf) for leaf in leaves]}


def state_to_tree(template: Any, state: dict[str, Any], *, name: str, device: jax.Device) -> Any:
    """Return ``template`` with its leaves replaced by the tensors of ``state``, on ``device``.

    Raises
    ------
    ValueError
        If ``state`` was not written by :func:`tree_to_state`, or if the number, shape or dtype
        of the stored leaves differs from ``template`` (the checkpoint belongs to another
        configuration).
    """
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or "leaves" not in state:
        raise ValueError(
            f"The checkpoint's `{name}` entry is not a darnax pytree state of format {STATE_FORMAT}; "
            "it was written by another program or version."
        )
    template_leaves, treedef = jax.tree_util.tree_flatten(template)
    stored = state["leaves"]
    if len(stored) != len(template_leaves):
        raise ValueError(
            f"The checkpoint's `{name}` has {len(stored)} arrays, but the model built from the "
            f"hyperparameters has {len(template_leaves)}; load it with the configuration it was saved with."
        )
    leaves = []
    for index, (tensor, reference) in enumerate(zip(stored, template_leaves)):
        # A copy, so that later writes to the checkpoint tensors cannot reach the JAX arrays.
        array = np.array(tensor.detach().cpu().numpy())
        expected_dtype = np.dtype(reference.dtype)
        if array.shape != tuple(reference.shape) or array.dtype != expected_dtype:
            raise ValueError(
                f"The checkpoint's `{name}` array {index} has shape {array.shape} and dtype {array.dtype}, "
                f"but the model built from the hyperparameters expects shape {tuple(reference.shape)} "
                f"and dtype {expected_dtype}; load it with the configuration it was saved with."
            )
        leaves.append(jax.device_put(array, device))
    return jax.tree_util.tree_unflatten(treedef, leaves)
