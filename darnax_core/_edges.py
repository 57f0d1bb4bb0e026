"""Edges: the off-diagonal modules that carry messages from a sender layer to a receiver layer."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from darnax_core import _rules
from darnax_core._checks import check_choice, check_finite_number, check_positive_int, per_unit_param
from darnax_core._couplings import Coupling, check_density, draw_coupling, make_coupling

EDGE_RULES = ("perceptron", "cross_entropy")


class Linear(eqx.Module):
    """A fully connected edge ``x @ W``, dense or sparse, learned or frozen.

    ``W`` starts as ``N(0, 1) * strength / sqrt(d * density)`` on a Bernoulli(``density``) mask
    (``d`` is the sender width); ``strength`` only scales the initialisation. The edge learns by the
    perceptron rule with ``margin`` (scalar or per receiver unit), or by the local cross-entropy rule
    with ``rule="cross_entropy"``. ``trainable=False`` gives a frozen adapter.
    """

    coupling: Coupling
    margin: Float[Array, "*k"]
    rule: str = eqx.field(static=True)
    trainable: bool = eqx.field(static=True)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        key: jax.Array,
        strength: float = 1.0,
        margin=0.0,
        density: float = 1.0,
        kernel: str = "auto",
        rule: str = "perceptron",
        trainable: bool = True,
    ):
        in_features = check_positive_int(in_features, "in_features")
        out_features = check_positive_int(out_features, "out_features")
        density = check_density(density)
        strength = check_finite_number(strength, "strength")
        self.rule = check_choice(rule, "rule", EDGE_RULES)
        self.margin = per_unit_param(margin, out_features, "margin")
        scale = strength / (in_features * density) ** 0.5
        weight, mask = draw_coupling(key, (in_features, out_features), density, scale, zero_diagonal=False)
        self.coupling = make_coupling(weight, mask if density < 1.0 else None, kernel=kernel, density=density)
        self.trainable = bool(trainable)

    @property
    def in_features(self) -> int:
        return self.coupling.in_features

    @property
    def out_features(self) -> int:
        return self.coupling.out_features

    def __call__(self, x: Float[Array, "batch d"]) -> Float[Array, "batch k"]:
        return self.coupling(x)

    def trainable_leaves(self) -> tuple:
        return (self.coupling.trainable_leaf(),) if self.trainable else ()

    def project(self):
        return eqx.tree_at(lambda edge: edge.coupling, self, self.coupling.project())

    def increments(self, x, target, field, gate, n) -> tuple:
        """Return the rule's increment for ``W``, aligned with :meth:`trainable_leaves`."""
        if not self.trainable:
            return ()
        if self.rule == "cross_entropy":
            signal = _rules.cross_entropy_signal(target, field, gate)
            # The cross-entropy rule divides by n * sqrt(d), not sqrt(n * d).
            return (self.coupling.outer(x, signal, n) / jnp.sqrt(jnp.maximum(n, 1.0)),)
        signal = _rules.perceptron_signal(target, field, self.margin, gate)
        return (self.coupling.outer(x, signal, n),)


class _FrozenEdge(eqx.Module):
    """Base of edges with nothing to learn: no trainable leaves, no increments, no masks."""

    def trainable_leaves(self) -> tuple:
        return ()

    def increments(self, x, target, field, gate, n) -> tuple:
        return ()

    def project(self):
        return self


def label_rescaling(num_classes: int) -> tuple[float, float]:
    """Return ``(a, b)`` of the label rescaling ``a * y + b`` that maps +1 to r/2 and -1 to -1/r.

    ``r = sqrt(C - 1)``, so for C = 10 the +-1 label becomes 1.5 / -1/3.
    """
    r = float(num_classes - 1) ** 0.5
    return (r / 2 + 1 / r) / 2, (r / 2 - 1 / r) / 2


class LabelFeedback(_FrozenEdge):
    """The frozen label-feedback edge ``(a * y + b) @ W_back`` from the output to a hidden layer.

    ``W_back ~ N(0, 1) * strength / sqrt(C)``; ``(a, b)`` is :func:`label_rescaling`. Nothing here
    is learned.
    """

    weight: Float[Array, "c k"]
    scale: float = eqx.field(static=True)
    shift: float = eqx.field(static=True)

    def __init__(self, num_classes: int, out_features: int, *, key: jax.Array, strength: float = 1.0):
        num_classes = check_positive_int(num_classes, "num_classes")
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be at least 2 for label feedback, got {num_classes}.")
        out_features = check_positive_int(out_features, "out_features")
        strength = check_finite_number(strength, "strength")
        self.weight = jax.random.normal(key, (num_classes, out_features), jnp.float32) * strength / jnp.sqrt(num_classes)
        self.scale, self.shift = label_rescaling(num_classes)

    @property
    def in_features(self) -> int:
        return self.weight.shape[0]

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]

    def __call__(self, y: Float[Array, "batch c"]) -> Float[Array, "batch k"]:
        return (self.scale * y + self.shift) @ self.weight


class Ferromagnetic(_FrozenEdge):
    """The one-to-one coupling ``lambda * x`` between same-index units of two layers (frozen)."""

    strength: Float[Array, "*k"]
    features: int = eqx.field(static=True)

    def __init__(self, features: int, *, strength=1.0):
        self.features = check_positive_int(features, "features")
        self.strength = per_unit_param(strength, self.features, "strength")

    @property
    def in_features(self) -> int:
        return self.features

    @property
    def out_features(self) -> int:
        return self.features

    def __call__(self, x: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        return x * self.strength


def cross_entropy_readout(in_features: int, num_classes: int, *, key: jax.Array, strength: float = 1.0, kernel="dense") -> Linear:
    """Build a readout edge that learns by the local cross-entropy rule."""
    return Linear(in_features, num_classes, key=key, strength=strength, kernel=kernel, rule="cross_entropy")


Edge = Linear | LabelFeedback | Ferromagnetic
