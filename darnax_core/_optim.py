"""Optimizer plumbing: only trainable leaves ever reach Optax.

:func:`partition` splits a network into the trainable weights and everything else (masks, ELL
indices, ``j_d``, margins, frozen edges). Optax receives only the first part, so no optimizer state is
allocated for frozen values and no transform (Adam, weight decay) can change them.
"""

import logging
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from darnax_core._network import Network

logger = logging.getLogger(__name__)


def trainable_leaves(net: Network) -> tuple:
    """Return every trainable array of ``net``, module by module (usable as an ``eqx.tree_at`` selector)."""
    return tuple(leaf for module in net.modules() for leaf in module.trainable_leaves())


def _leaf_owners(net: Network) -> list[str]:
    return [name for name, module in zip(net.module_names(), net.modules()) for _ in module.trainable_leaves()]


def trainable_spec(net: Network):
    """Return a pytree of bools shaped like ``net``: True exactly at the trainable leaves."""
    spec = jax.tree_util.tree_map(lambda _: False, net)
    leaves = trainable_leaves(net)
    if not leaves:
        return spec
    return eqx.tree_at(trainable_leaves, spec, replace=(True,) * len(leaves))


def partition(net: Network):
    """Split ``net`` into ``(params, static)``: trainable weights, and everything else."""
    return eqx.partition(net, trainable_spec(net))


def combine(params, static) -> Network:
    """Inverse of :func:`partition`."""
    return eqx.combine(params, static)


def init_optimizer(optimizer: optax.GradientTransformation, net: Network):
    """Initialise ``optimizer`` on the trainable weights of ``net`` only."""
    params, _ = partition(net)
    return optimizer.init(params)


def fill_like_params(params, values: tuple):
    """Return a tree shaped like ``params`` whose trainable leaves are ``values`` (same order)."""
    return eqx.tree_at(trainable_leaves, params, replace=values, is_leaf=lambda x: x is None)


def module_labels(net: Network):
    """Return a tree shaped like ``partition(net)[0]`` with each leaf's module name as its label."""
    params, _ = partition(net)
    owners = _leaf_owners(net)
    if not owners:
        return params
    return eqx.tree_at(trainable_leaves, params, replace=tuple(owners), is_leaf=lambda x: x is None)


def per_module(
    net: Network,
    transforms: Mapping[str, optax.GradientTransformation],
    default: optax.GradientTransformation | None = None,
) -> optax.GradientTransformation:
    """Build an optimizer with one Optax transform per module (e.g. per-module learning rates).

    Module names are those of :meth:`Network.module_names`, such as ``"input->hidden"``,
    ``"hidden"`` (its recurrent ``J``) and ``"hidden->output"``. Modules without an entry use
    ``default``.
    """
    owners = set(_leaf_owners(net))
    names = set(net.module_names())
    unknown = sorted(set(transforms) - names)
    if unknown:
        raise ValueError(f"Unknown module names {unknown}; the network's modules are {sorted(names)}.")
    frozen = sorted(set(transforms) - owners)
    if frozen:
        raise ValueError(f"Modules {frozen} have no trainable weights; remove them from `transforms`.")
    missing = sorted(owners - set(transforms))
    if missing and default is None:
        raise ValueError(f"No transform for trainable modules {missing}; add them or pass `default`.")
    mapping = dict(transforms)
    for name in missing:
        mapping[name] = default
    labels = module_labels(net)
    return optax.multi_transform(mapping, lambda _: labels)


class DecayState(optax.EmptyState):
    """Multiplicative decay keeps no state."""


def multiplicative_decay(rate: float) -> optax.GradientTransformation:
    """Shrink the weights after the update: ``W_new = (W + u) * (1 - rate)``.

    Chain it after the step's transform. It returns ``u - rate * (W + u)``, which Optax adds to
    ``W``. Entries that are zero stay zero, so masks need no special case.
    """
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"`rate` must be in [0, 1), got {rate}.")

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("multiplicative_decay needs `params` in `update`.")
        if rate == 0.0:
            return updates, state
        new = jax.tree_util.tree_map(lambda u, p: u - rate * (p + u), updates, params)
        return new, state

    return optax.GradientTransformation(init_fn, update_fn)


def paper_optimizer(
    net: Network,
    *,
    lr_in: float,
    lr_j: float,
    lr_out: float,
    wd_in: float = 0.0,
    wd_j: float = 0.0,
    wd_out: float = 0.0,
    density_in: float = 1.0,
    density_j: float = 1.0,
    input_edge: str = "input->hidden",
    recurrent: str = "hidden",
    output_edge: str = "hidden->output",
) -> optax.GradientTransformation:
    """Build the SGD optimizer and multiplicative decay of the one-hidden-layer MNIST model.

    Learning rates are rescaled by ``1 / sqrt(density)`` for the sparse couplings. After each step
    the weights decay by the factors of the reference library darnax 0.4 (its tutorial 09), which use the *config* rates::

        W_in  *= 1 - wd_in  * lr_in  * sqrt(0.1) / sqrt(density_in) / sqrt(D)
        J     *= 1 - wd_j   * lr_j   * sqrt(0.1) / sqrt(density_j)  / sqrt(N)
        W_out *= 1 - wd_out * lr_out / sqrt(N)

    ``J_D`` is not part of ``J`` here, so it never decays. The decay runs inside the jitted step.
    """
    D = net.sizes[0]
    N = net.sizes[1]
    decay_in = wd_in * lr_in * jnp.sqrt(0.1) / jnp.sqrt(density_in) / jnp.sqrt(D)
    decay_j = wd_j * lr_j * jnp.sqrt(0.1) / jnp.sqrt(density_j) / jnp.sqrt(N)
    decay_out = wd_out * lr_out / jnp.sqrt(N)
    transforms = {
        input_edge: optax.chain(optax.sgd(lr_in / float(jnp.sqrt(density_in))), multiplicative_decay(float(decay_in))),
        recurrent: optax.chain(optax.sgd(lr_j / float(jnp.sqrt(density_j))), multiplicative_decay(float(decay_j))),
        output_edge: optax.chain(optax.sgd(lr_out), multiplicative_decay(float(decay_out))),
    }
    return per_module(net, transforms)
