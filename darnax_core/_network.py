"""The static graph of a network: layers on the diagonal, edges off it, validated when built.

Rows are numbered like the state buffers: row 0 is the input (it never receives messages), rows
``1..L`` are the hidden layers and row ``L + 1`` is the output. Edge ``(i, j)`` carries the message
from sender ``j`` to receiver ``i``. ``j < i`` is a forward edge and ``j > i`` a feedback edge (the
label feedback is ``(L, L + 1)``). The integer structure is static; the modules are the leaves.
"""

import enum
from collections.abc import Mapping, Sequence

import equinox as eqx

from darnax_core._checks import check_positive_int, parse_enum
from darnax_core._edges import Edge, Ferromagnetic, LabelFeedback, Linear
from darnax_core._layers import BinaryLayer, Layer, Readout, TanhLayer


class Messages(str, enum.Enum):
    """Subset of senders whose messages enter a receiver's field.

    - ``FORWARD``: senders ``j <= i`` (the input, lower layers and the layer itself). It drops the
      label feedback and every higher hidden layer.
    - ``ALL``: every sender, label feedback included.
    - ``ALL_BUT_LABEL``: every sender except the output row, so higher hidden layers still talk
      down but no label field reaches the network.
    """

    FORWARD = "forward"
    ALL = "all"
    ALL_BUT_LABEL = "all_but_label"

    @classmethod
    def parse(cls, value) -> "Messages":
        return parse_enum(cls, value, "message subset")


class Network(eqx.Module):
    """A network of layers and edges.

    Parameters
    ----------
    input_dim
        Width of the input row 0.
    layers
        The modules of rows ``1..L+1``: hidden layers (:class:`BinaryLayer` or :class:`TanhLayer`)
        followed by one :class:`Readout`.
    edges
        ``{(receiver, sender): edge}`` for every off-diagonal edge.
    names
        Optional names of rows ``0..L+1``; default ``input, hidden1..hiddenL, output`` (``hidden``
        when there is one hidden layer).
    """

    layers: tuple[Layer, ...]
    edges: tuple[Edge, ...]
    edge_index: tuple[tuple[int, int], ...] = eqx.field(static=True)
    sizes: tuple[int, ...] = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        input_dim: int,
        layers: Sequence[Layer],
        edges: Mapping[tuple[int, int], Edge],
        names: Sequence[str] | None = None,
    ):
        input_dim = check_positive_int(input_dim, "input_dim")
        layers = tuple(layers)
        _check_layers(layers)
        sizes = (input_dim, *(layer.features for layer in layers))
        if not isinstance(edges, Mapping):
            raise TypeError(f"`edges` must be a mapping {{(receiver, sender): edge}}, got {type(edges).__name__}.")
        index = tuple(sorted(edges))
        for receiver, sender in index:
            _check_edge(receiver, sender, edges[(receiver, sender)], sizes)
        self.layers = layers
        self.edges = tuple(edges[key] for key in index)
        self.edge_index = index
        self.sizes = sizes
        self.names = _check_names(names, len(sizes))

    @classmethod
    def from_layer_map(cls, input_dim: int, modules: Mapping[tuple[int, int], Layer | Edge], names=None) -> "Network":
        """Build a network from one ``{(receiver, sender): module}`` map with layers on the diagonal.

        Every row ``1..L+1`` must have its layer at ``(i, i)``; row 0 (the input) receives nothing.
        """
        rows = sorted({receiver for receiver, _ in modules} | {sender for _, sender in modules} - {0})
        if any(receiver == 0 for receiver, _ in modules):
            raise ValueError("Row 0 is the input and cannot receive messages; remove the keys (0, j).")
        missing = [row for row in rows if (row, row) not in modules]
        if missing:
            raise ValueError(f"Rows {missing} have no layer on the diagonal; add a layer at (i, i) for each.")
        if rows != list(range(1, len(rows) + 1)):
            raise ValueError(f"Rows must be numbered 1..L+1 without gaps, got {rows}.")
        layers = [modules[(row, row)] for row in rows]
        edges = {key: module for key, module in modules.items() if key[0] != key[1]}
        return cls(input_dim, layers, edges, names)

    @property
    def num_hidden(self) -> int:
        return len(self.layers) - 1

    @property
    def output_row(self) -> int:
        return len(self.layers)

    @property
    def input_dim(self) -> int:
        return self.sizes[0]

    @property
    def num_classes(self) -> int:
        return self.sizes[-1]

    def layer(self, row: int) -> Layer:
        return self.layers[row - 1]

    def senders(self, receiver: int, messages: Messages) -> tuple[tuple[int, Edge], ...]:
        """Return the ``(sender, edge)`` pairs of ``receiver`` kept by ``messages``."""
        messages = Messages.parse(messages)
        kept = []
        for (i, j), edge in zip(self.edge_index, self.edges):
            if i != receiver:
                continue
            if messages is Messages.FORWARD and j > i:
                continue
            if messages is Messages.ALL_BUT_LABEL and j == self.output_row:
                continue
            kept.append((j, edge))
        return tuple(kept)

    def module_names(self) -> tuple[str, ...]:
        """Return one name per layer (``"hidden"``) and per edge (``"input->hidden"``)."""
        layer_names = self.names[1:]
        edge_names = tuple(f"{self.names[j]}->{self.names[i]}" for i, j in self.edge_index)
        return layer_names + edge_names

    def modules(self) -> tuple:
        """Return the layers and then the edges, in the order of :meth:`module_names`."""
        return self.layers + self.edges

    def project(self) -> "Network":
        """Return the network with every masked or padded coupling entry set back to zero."""
        return eqx.tree_at(
            lambda net: (net.layers, net.edges),
            self,
            (tuple(layer.project() for layer in self.layers), tuple(edge.project() for edge in self.edges)),
        )


def _check_layers(layers: tuple) -> None:
    if len(layers) < 2:
        raise ValueError(f"`layers` needs at least one hidden layer and a Readout, got {len(layers)} layer(s).")
    for position, layer in enumerate(layers[:-1], start=1):
        if not isinstance(layer, (BinaryLayer, TanhLayer)):
            raise TypeError(
                f"Row {position} must be a BinaryLayer or TanhLayer, got {type(layer).__name__}; "
                "only the last row is a Readout."
            )
    if not isinstance(layers[-1], Readout):
        raise TypeError(f"The last layer must be a Readout (the output row), got {type(layers[-1]).__name__}.")


def _check_edge(receiver, sender, edge, sizes) -> None:
    rows = len(sizes)
    if not (isinstance(receiver, int) and isinstance(sender, int)):
        raise TypeError(f"Edge keys must be (receiver, sender) ints, got {(receiver, sender)!r}.")
    if receiver == 0:
        raise ValueError(f"Edge {(receiver, sender)}: row 0 is the input and cannot receive messages.")
    if not (1 <= receiver < rows and 0 <= sender < rows):
        raise ValueError(f"Edge {(receiver, sender)} refers to a row outside 0..{rows - 1}.")
    if receiver == sender:
        raise ValueError(f"Edge {(receiver, sender)} is on the diagonal; a row's self-coupling is its layer.")
    if not isinstance(edge, (Linear, LabelFeedback, Ferromagnetic)):
        raise TypeError(f"Edge {(receiver, sender)} must be Linear, LabelFeedback or Ferromagnetic, got {type(edge).__name__}.")
    if edge.in_features != sizes[sender] or edge.out_features != sizes[receiver]:
        raise ValueError(
            f"Edge {(receiver, sender)} maps {edge.in_features} -> {edge.out_features} features, "
            f"but row {sender} has {sizes[sender]} units and row {receiver} has {sizes[receiver]}."
        )
    if isinstance(edge, LabelFeedback) and sender != rows - 1:
        raise ValueError(f"Edge {(receiver, sender)}: LabelFeedback must be sent by the output row {rows - 1}.")


def _check_names(names, rows: int) -> tuple[str, ...]:
    if names is None:
        hidden = ["hidden"] if rows == 3 else [f"hidden{k}" for k in range(1, rows - 1)]
        return ("input", *hidden, "output")
    names = tuple(names)
    if len(names) != rows or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"`names` must be {rows} non-empty strings (one per row), got {names!r}.")
    if len(set(names)) != rows:
        raise ValueError(f"`names` must be unique, got {names!r}.")
    return names
