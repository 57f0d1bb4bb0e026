"""Parameter counts and Lightning model summary of a darnax_core network.

Lightning's :class:`~lightning.pytorch.callbacks.ModelSummary` counts torch parameters, and a
:class:`DarnaxModule` has a single placeholder torch parameter, so the stock summary would
report one parameter. :class:`DarnaxModelSummary` prints one row per darnax module instead.
"""

import logging
from typing import Any, NamedTuple

import jax
import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count

import darnax_core as dc

logger = logging.getLogger(__name__)


class ModuleCount(NamedTuple):
    """Parameter counts of one darnax module (a layer or an edge).

    ``trainable`` counts the couplings that exist: the entries of a sparse coupling's mask, or its
    valid ELL slots. ``stored`` counts the elements of the trainable arrays, masked zeros and ELL
    padding included. ``frozen`` counts the float values that never learn (``j_d``, margins,
    label feedback).
    """

    name: str
    kind: str
    trainable: int
    stored: int
    frozen: int


def _float_size(tree: Any) -> int:
    return sum(int(np.size(leaf)) for leaf in _float_leaves(tree))


def _float_leaves(tree: Any) -> list:
    return [leaf for leaf in jax.tree_util.tree_leaves(tree) if np.issubdtype(leaf.dtype, np.floating)]


def module_counts(net: dc.Network) -> list[ModuleCount]:
    """Return the parameter counts of every module of ``net``, in ``net.module_names()`` order."""
    rows = []
    for name, module in zip(net.module_names(), net.modules()):
        leaves = module.trainable_leaves()
        stored = sum(int(np.size(leaf)) for leaf in leaves)
        coupling = getattr(module, "coupling", None)
        trainable = coupling.nnz if leaves and coupling is not None else stored
        rows.append(ModuleCount(name, type(module).__name__, trainable, stored, _float_size(module) - stored))
    return rows


def trainable_parameter_count(net: dc.Network) -> int:
    """Return the number of couplings of ``net`` that learn (see :class:`ModuleCount`)."""
    return sum(row.trainable for row in module_counts(net))


class _NetworkSummary:
    """The attributes that :meth:`ModelSummary.on_fit_start` reads, computed for a JAX network."""

    def __init__(self, net: dc.Network) -> None:
        self.rows = module_counts(net)
        self.trainable_parameters = sum(row.trainable for row in self.rows)
        self.total_parameters = self.trainable_parameters + sum(row.frozen for row in self.rows)
        # Bytes of every array of the network (masks and ELL indices included), in MB as Lightning reports.
        self.model_size = sum(int(np.asarray(leaf).nbytes) for leaf in jax.tree_util.tree_leaves(net)) / 1e6
        trainable_modules = sum(1 for row in self.rows if row.stored)
        self.total_training_modes = {"train": trainable_modules, "eval": len(self.rows) - trainable_modules}
        self.total_flops = 0

    def _get_summary_data(self) -> list[tuple[str, list[str]]]:
        return [
            (" ", [str(index) for index in range(len(self.rows))]),
            ("Name", [row.name for row in self.rows]),
            ("Type", [row.kind for row in self.rows]),
            ("Params", [get_human_readable_count(row.trainable) for row in self.rows]),
            ("Stored", [get_human_readable_count(row.stored) for row in self.rows]),
            ("Frozen", [get_human_readable_count(row.frozen) for row in self.rows]),
        ]


class DarnaxModelSummary(ModelSummary):
    """Model summary that lists the modules of a :class:`DarnaxModule`'s JAX network.

    Columns: ``Params`` (couplings that learn), ``Stored`` (elements of the trainable arrays)
    and ``Frozen`` (float values that never learn). The footer's "Modules in train mode" and
    "eval mode" count the darnax modules with and without trainable weights. Other
    LightningModules get Lightning's usual summary.
    """

    def _summary(self, trainer: "L.Trainer", pl_module: "L.LightningModule") -> Any:
        net = getattr(pl_module, "net", None)
        if isinstance(net, dc.Network):
            return _NetworkSummary(net)
        return super()._summary(trainer, pl_module)
