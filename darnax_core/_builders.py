"""Builders for the common architectures and the hyperparameters of the MNIST runs of
Badalotti et al., arXiv:2509.05041, as configured in the reference library darnax 0.4."""

import dataclasses

import jax
import optax

from darnax_core._checks import check_choice, check_finite_number, check_nonnegative_int, check_positive_int
from darnax_core._couplings import KERNELS, check_density
from darnax_core._edges import Ferromagnetic, LabelFeedback, Linear
from darnax_core._layers import BinaryLayer, Readout
from darnax_core._network import Network
from darnax_core._optim import paper_optimizer
from darnax_core._protocols import Protocol


@dataclasses.dataclass(frozen=True)
class PaperConfig:
    """Every hyperparameter of the one-hidden-layer MNIST model, its optimizer and protocol.

    Densities are the fractions of couplings that exist (the reference's sparsity is
    ``1 - density``). The defaults are the values of the reference library's tutorial 09.
    """

    input_dim: int = 784
    hidden: int = 2000
    num_classes: int = 10
    j_d: float = 0.95
    density_in: float = 0.1
    density_j: float = 0.01
    margin_in: float = 1.78
    margin_j: float = 1.78
    margin_out: float = 7.0
    strength_in: float = 5.0
    strength_back: float = 1.3
    strength_out: float = 1.0
    lr_in: float = 0.159
    lr_j: float = 0.058
    lr_out: float = 0.17
    wd_in: float = 0.01
    wd_j: float = 6e-5
    wd_out: float = 0.02
    warmup: int = 1
    clamped: int = 5
    free: int = 5
    eval_sweeps: int = 5
    batch_size: int = 16
    epochs: int = 20
    kernel: str = "auto"

    def __post_init__(self):
        for name in ("input_dim", "hidden", "num_classes", "batch_size", "epochs"):
            check_positive_int(getattr(self, name), name)
        if self.num_classes < 2:
            raise ValueError(f"`num_classes` must be at least 2, got {self.num_classes}.")
        for name in ("warmup", "clamped", "free", "eval_sweeps"):
            check_nonnegative_int(getattr(self, name), name)
        for name in ("density_in", "density_j"):
            check_density(getattr(self, name), name)
        for name in ("j_d", "margin_in", "margin_j", "margin_out", "strength_in", "strength_back", "strength_out"):
            check_finite_number(getattr(self, name), name)
        for name in ("lr_in", "lr_j", "lr_out", "wd_in", "wd_j", "wd_out"):
            if check_finite_number(getattr(self, name), name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        check_choice(self.kernel, "kernel", KERNELS)

    def replace(self, **changes) -> "PaperConfig":
        return dataclasses.replace(self, **changes)


TUTORIAL_09 = PaperConfig()
"""The reference library's best MNIST configuration (784 -> 2000 -> 10, tutorial 09)."""


def paper_model(key: jax.Array, config: PaperConfig = TUTORIAL_09) -> Network:
    """Build the one-hidden-layer model of the paper's MNIST runs.

    Rows: input (``input_dim``), one sparse binary hidden layer with self-coupling ``j_d``, and the
    readout. Edges: sparse ``W_in``, ``W_out``, and frozen label feedback ``W_back``. The key is
    split into four: recurrent ``J``, ``W_in``, ``W_out``, ``W_back``.
    """
    if not isinstance(config, PaperConfig):
        raise TypeError(f"`config` must be a PaperConfig, got {type(config).__name__}.")
    k_j, k_in, k_out, k_back = jax.random.split(key, 4)
    hidden = BinaryLayer(
        config.hidden,
        j_d=config.j_d,
        margin=config.margin_j,
        key=k_j,
        density=config.density_j,
        kernel=config.kernel,
    )
    edges = {
        (1, 0): Linear(
            config.input_dim,
            config.hidden,
            key=k_in,
            strength=config.strength_in,
            margin=config.margin_in,
            density=config.density_in,
            kernel=config.kernel,
        ),
        (2, 1): Linear(config.hidden, config.num_classes, key=k_out, strength=config.strength_out, margin=config.margin_out, kernel="dense"),
        (1, 2): LabelFeedback(config.num_classes, config.hidden, key=k_back, strength=config.strength_back),
    }
    return Network(config.input_dim, [hidden, Readout(config.num_classes)], edges)


def paper_protocol(config: PaperConfig = TUTORIAL_09, **overrides) -> Protocol:
    """Return the training protocol of ``config`` (warmup -> clamped -> free -> update)."""
    values = dict(kind="paper", warmup=config.warmup, clamped=config.clamped, free=config.free, eval_sweeps=config.eval_sweeps)
    values.update(overrides)
    return Protocol(**values)


def paper_model_optimizer(net: Network, config: PaperConfig = TUTORIAL_09) -> optax.GradientTransformation:
    """Return the SGD optimizer with multiplicative decay of ``config`` for ``net``."""
    return paper_optimizer(
        net,
        lr_in=config.lr_in,
        lr_j=config.lr_j,
        lr_out=config.lr_out,
        wd_in=config.wd_in,
        wd_j=config.wd_j,
        wd_out=config.wd_out,
        density_in=config.density_in,
        density_j=config.density_j,
    )


def chain_model(
    key: jax.Array,
    *,
    input_dim: int,
    hidden: int,
    depth: int,
    num_classes: int,
    j_d: float = 0.0,
    lam: float = 1.0,
    density_j: float = 1.0,
    density_in: float = 1.0,
    margin: float = 1.0,
    margin_out: float = 1.0,
    strength_in: float = 1.0,
    strength_back: float = 1.0,
    kernel: str = "auto",
) -> Network:
    """Build an L-layer chain of binary layers with one-to-one couplings ``lam`` between neighbours.

    ``W_in`` feeds layer 1, the readout reads layer ``depth``, and the label feeds back into layer
    ``depth``. Neighbouring hidden layers are joined both ways by :class:`Ferromagnetic` edges.
    """
    hidden = check_positive_int(hidden, "hidden")
    depth = check_positive_int(depth, "depth")
    lam = check_finite_number(lam, "lam")
    keys = jax.random.split(key, depth + 3)
    layers = [
        BinaryLayer(hidden, j_d=j_d, margin=margin, key=keys[k], density=density_j, kernel=kernel) for k in range(depth)
    ]
    layers.append(Readout(num_classes))
    output = depth + 1
    edges = {
        (1, 0): Linear(input_dim, hidden, key=keys[depth], strength=strength_in, margin=margin, density=density_in, kernel=kernel),
        (output, depth): Linear(hidden, num_classes, key=keys[depth + 1], margin=margin_out, kernel="dense"),
        (depth, output): LabelFeedback(num_classes, hidden, key=keys[depth + 2], strength=strength_back),
    }
    for row in range(1, depth):
        edges[(row + 1, row)] = Ferromagnetic(hidden, strength=lam)
        edges[(row, row + 1)] = Ferromagnetic(hidden, strength=lam)
    return Network(input_dim, layers, edges)
