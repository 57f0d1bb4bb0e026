"""Layers: the diagonal modules of a network, which own a state, a self-coupling and an activation.

A layer's *self message* is its contribution to its own field. For recurrent layers this is
``s @ J + j_d * s``: ``J`` has an empty diagonal and is learned, ``j_d`` is the fixed self-coupling
``J_D`` (a scalar or one value per unit) and is never learned. Keeping ``j_d`` out of ``J`` means no
optimizer or decay can ever touch it.
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from darnax_core import _rules
from darnax_core._checks import check_choice, check_finite_number, check_positive_int, per_unit_param
from darnax_core._couplings import Coupling, check_density, draw_coupling, make_coupling
from darnax_core._ops import sign


def _recurrent_coupling(key, features: int, strength: float, density: float, kernel: str) -> Coupling:
    """Draw ``J ~ N(0, 1) * strength / sqrt(N * density)`` on a Bernoulli mask with empty diagonal."""
    scale = strength / (features * density) ** 0.5
    weight, mask = draw_coupling(key, (features, features), density, scale, zero_diagonal=True)
    return make_coupling(weight, mask, kernel=kernel, density=density)


class _RecurrentLayer(eqx.Module):
    """Shared state of the recurrent layers: ``J`` (learned off-diagonal), ``j_d`` and the margin (fixed)."""

    coupling: Coupling
    j_d: Float[Array, "*units"]
    margin: Float[Array, "*units"]
    trainable: bool = eqx.field(static=True)

    def _init_recurrent(self, features, j_d, margin, key, density, strength, kernel, trainable) -> None:
        """Validate the shared arguments and draw ``J`` (called from the subclasses' ``__init__``)."""
        features = check_positive_int(features, "features")
        density = check_density(density)
        strength = check_finite_number(strength, "strength")
        self.j_d = per_unit_param(j_d, features, "j_d")
        self.margin = per_unit_param(margin, features, "margin")
        self.coupling = _recurrent_coupling(key, features, strength, density, kernel)
        self.trainable = bool(trainable)

    @property
    def features(self) -> int:
        return self.coupling.out_features

    def self_message(self, s: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        return self.coupling(s) + self.j_d * s

    def trainable_leaves(self) -> tuple:
        return (self.coupling.trainable_leaf(),) if self.trainable else ()

    def project(self):
        return eqx.tree_at(lambda layer: layer.coupling, self, self.coupling.project())

    def signal(self, target, field, gate):
        raise NotImplementedError

    def increments(self, s, target, field, gate, n) -> tuple:
        """Return the rule's increments for ``J``, aligned with :meth:`trainable_leaves`."""
        if not self.trainable:
            return ()
        return (self.coupling.outer(s, self.signal(target, field, gate), n),)


class BinaryLayer(_RecurrentLayer):
    """A layer of +-1 units with asymmetric couplings ``J``, self-coupling ``j_d`` and a margin.

    ``J`` starts as ``N(0, 1) * strength / sqrt(N * density)`` on a Bernoulli(``density``) mask with
    an empty diagonal. It learns by the perceptron rule with margin ``margin`` (scalar or per unit).
    """

    is_binary: ClassVar[bool] = True

    def __init__(
        self,
        features: int,
        *,
        j_d=0.0,
        margin=0.0,
        key: jax.Array,
        density: float = 1.0,
        strength: float = 1.0,
        kernel: str = "auto",
        trainable: bool = True,
    ):
        self._init_recurrent(features, j_d, margin, key, density, strength, kernel, trainable)

    @staticmethod
    def activation(h: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        return sign(h)

    def signal(self, target, field, gate):
        return _rules.perceptron_signal(target, field, self.margin, gate)


class TanhLayer(_RecurrentLayer):
    """A layer of continuous units ``tanh(h)`` with couplings ``J`` and self-coupling ``j_d``.

    ``rule="tanh"`` learns by the tanh delta rule with ``tolerance``; ``rule="truncated"`` by the
    truncated rule, which also needs ``margin``.
    """

    tolerance: float = eqx.field(static=True)
    rule: str = eqx.field(static=True)
    is_binary: ClassVar[bool] = False

    def __init__(
        self,
        features: int,
        *,
        j_d=0.0,
        tolerance: float = 0.0,
        margin=0.0,
        key: jax.Array,
        rule: str = "tanh",
        density: float = 1.0,
        strength: float = 1.0,
        kernel: str = "auto",
        trainable: bool = True,
    ):
        self.rule = check_choice(rule, "rule", ("tanh", "truncated"))
        self.tolerance = check_finite_number(tolerance, "tolerance")
        self._init_recurrent(features, j_d, margin, key, density, strength, kernel, trainable)

    @staticmethod
    def activation(h: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        return jnp.tanh(h)

    def signal(self, target, field, gate):
        if self.rule == "tanh":
            return _rules.tanh_signal(target, field, self.tolerance, gate)
        return _rules.truncated_tanh_signal(target, field, self.margin, self.tolerance, gate)


class Readout(eqx.Module):
    """The output layer: identity activation, no self-coupling, nothing to learn.

    During training its state contains the label. Its field is the sum of the messages it receives
    (for the one-hidden-layer model, ``s @ W_out``), and the prediction is the argmax of that field.
    """

    features: int = eqx.field(static=True)
    is_binary: ClassVar[bool] = False

    def __init__(self, features: int):
        self.features = check_positive_int(features, "features")

    def self_message(self, s: Float[Array, "batch c"]) -> Float[Array, "batch c"]:
        return jnp.zeros_like(s)

    @staticmethod
    def activation(h: Float[Array, "batch c"]) -> Float[Array, "batch c"]:
        return h

    def trainable_leaves(self) -> tuple:
        return ()

    def increments(self, s, target, field, gate, n) -> tuple:
        return ()

    def project(self):
        return self


Layer = BinaryLayer | TanhLayer | Readout
