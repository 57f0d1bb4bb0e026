"""Sign dynamics: sweeps over the hidden layers under three schedules.

A sweep updates every hidden layer once; the output row is never updated. Schedules:

- ``SEQUENTIAL``: layers in order, each updated at once from the current state, so a layer reads
  the new values of the layers before it (the schedule of darnax 0.4).
- ``PARALLEL``: every layer from the previous sweep's state.
- ``ASYNCHRONOUS``: one unit at a time in a fresh random order each sweep, each seeing the
  current state. Every unit update recomputes its layer's field, so a sweep costs
  ``units x layer cost``: meant for small networks in theory experiments.

Messages from the input and from the output row are constant during a phase, so they are computed
once per batch (:func:`input_messages`, :func:`label_messages`) and added to every sweep.
"""

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from darnax_core import _native
from darnax_core._checks import parse_enum
from darnax_core._couplings import EllCoupling
from darnax_core._layers import BinaryLayer
from darnax_core._network import Messages, Network


class Schedule(str, enum.Enum):
    """Order in which a sweep updates the hidden units."""

    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"
    ASYNCHRONOUS = "asynchronous"

    @classmethod
    def parse(cls, value) -> "Schedule":
        return parse_enum(cls, value, "schedule")


Hidden = tuple[Float[Array, "batch _"], ...]
RowFields = tuple[Float[Array, "batch _"] | None, ...]


class PhaseInfo(NamedTuple):
    """Diagnostics of one phase: sweeps run, units changed in the last sweep, optional trajectory."""

    sweeps: Int[Array, ""]
    changed: Int[Array, ""]
    trajectory: Hidden | None


def _sum_messages(parts: list) -> Float[Array, "batch _"] | None:
    total = None
    for part in parts:
        total = part if total is None else total + part
    return total


def zero_hidden(net: Network, batch: int, dtype=jnp.float32) -> Hidden:
    """Return the initial hidden state: one ``(batch, n_l)`` buffer of zeros per hidden layer."""
    return tuple(jnp.zeros((batch, size), dtype) for size in net.sizes[1:-1])


def input_messages(net: Network, x: Float[Array, "batch d"]) -> RowFields:
    """Return, for rows ``1..L+1``, the summed messages from the input (``None`` where none)."""
    return tuple(
        _sum_messages([edge(x) for j, edge in net.senders(row, Messages.ALL) if j == 0])
        for row in range(1, net.output_row + 1)
    )


def label_messages(net: Network, y: Float[Array, "batch c"] | None) -> RowFields:
    """Return, for rows ``1..L+1``, the summed messages from the output row (``None`` where none)."""
    if y is None:
        return (None,) * net.output_row
    return tuple(
        _sum_messages([edge(y) for j, edge in net.senders(row, Messages.ALL) if j == net.output_row])
        for row in range(1, net.output_row + 1)
    )


def constant_fields(net: Network, inputs: RowFields, labels: RowFields, messages: Messages) -> RowFields:
    """Combine the cached input and label messages that ``messages`` keeps, per row."""
    messages = Messages.parse(messages)
    rows = []
    for row in range(1, net.output_row + 1):
        parts = [inputs[row - 1]]
        # Only ALL keeps the output row as a sender: FORWARD drops senders above the receiver, and
        # the output row is above every hidden row.
        if messages is Messages.ALL:
            parts.append(labels[row - 1])
        rows.append(_sum_messages([p for p in parts if p is not None]))
    return tuple(rows)


def row_field(net: Network, row: int, hidden: Hidden, const: RowFields, messages: Messages) -> Float[Array, "batch _"]:
    """Return the field of ``row`` from the hidden state, plus its cached constant part."""
    parts = []
    if row <= net.num_hidden:
        parts.append(net.layer(row).self_message(hidden[row - 1]))
    for j, edge in net.senders(row, messages):
        if 1 <= j <= net.num_hidden:
            parts.append(edge(hidden[j - 1]))
    if const[row - 1] is not None:
        parts.append(const[row - 1])
    total = _sum_messages(parts)
    if total is None:
        batch = hidden[0].shape[0]
        total = jnp.zeros((batch, net.sizes[row]), hidden[0].dtype)
    return total


def _sequential(net, hidden, const, messages):
    hidden = list(hidden)
    for row in range(1, net.num_hidden + 1):
        hidden[row - 1] = net.layer(row).activation(row_field(net, row, tuple(hidden), const, messages))
    return tuple(hidden)


def _parallel(net, hidden, const, messages):
    return tuple(
        net.layer(row).activation(row_field(net, row, hidden, const, messages)) for row in range(1, net.num_hidden + 1)
    )


def _asynchronous(net, hidden, const, messages, key):
    sizes = net.sizes[1:-1]
    offsets = jnp.cumsum(jnp.asarray((0,) + sizes[:-1]))
    order = jax.random.permutation(key, sum(sizes))

    def update_unit(row_index, state, unit):
        row = row_index + 1
        field = row_field(net, row, state, const, messages)
        new_value = net.layer(row).activation(jax.lax.dynamic_slice_in_dim(field, unit, 1, axis=1))
        layer_state = jax.lax.dynamic_update_slice_in_dim(state[row_index], new_value, unit, axis=1)
        return tuple(layer_state if k == row_index else s for k, s in enumerate(state))

    branches = [lambda state, unit, r=r: update_unit(r, state, unit) for r in range(len(sizes))]

    def body(t, state):
        flat = order[t]
        row_index = jnp.sum(flat >= offsets) - 1
        unit = flat - offsets[row_index]
        return jax.lax.switch(row_index, branches, state, unit)

    return jax.lax.fori_loop(0, order.shape[0], body, tuple(hidden))


def sweep(net: Network, hidden: Hidden, const: RowFields, messages, schedule, key=None) -> Hidden:
    """Run one sweep of ``schedule`` with the senders kept by ``messages``."""
    schedule = Schedule.parse(schedule)
    messages = Messages.parse(messages)
    if schedule is Schedule.SEQUENTIAL:
        return _sequential(net, hidden, const, messages)
    if schedule is Schedule.PARALLEL:
        return _parallel(net, hidden, const, messages)
    if key is None:
        raise ValueError("The asynchronous schedule draws a random unit order; pass a PRNG `key`.")
    return _asynchronous(net, hidden, const, messages, key)


def _count_changes(old: Hidden, new: Hidden) -> Int[Array, ""]:
    return sum(jnp.sum(a != b) for a, b in zip(old, new)).astype(jnp.int32)


def run_phase(
    net: Network,
    hidden: Hidden,
    const: RowFields,
    *,
    messages,
    schedule,
    sweeps: int,
    key=None,
    until_converged: bool = False,
    record: bool = False,
) -> tuple[Hidden, PhaseInfo]:
    """Run up to ``sweeps`` sweeps as one ``lax.scan``.

    With ``until_converged=True`` the phase stops early (remaining iterations skip their work) once a
    sweep changes no unit in the whole batch. With ``record=True`` the info carries every layer's
    state after each sweep, stacked on a leading axis of length ``sweeps`` (after convergence the
    converged state repeats).
    """
    messages = Messages.parse(messages)
    schedule = Schedule.parse(schedule)
    if schedule is Schedule.ASYNCHRONOUS and key is None:
        raise ValueError("The asynchronous schedule draws a random unit order; pass a PRNG `key`.")
    if sweeps == 0:
        info = PhaseInfo(jnp.int32(0), jnp.int32(0), tuple(h[None][:0] for h in hidden) if record else None)
        return hidden, info

    layer = _fused_layer(net, messages, schedule, record)
    if layer is None:
        start, finish = tuple(hidden), tuple

        def update(state, index):
            sweep_key = None if key is None else jax.random.fold_in(key, index)
            return sweep(net, state, const, messages, schedule, sweep_key)

    else:
        # One hidden layer with a sparse J: every sweep is one native call in the kernels'
        # (units, batch) layout, and the state is transposed once per phase instead of twice a sweep.
        constant = const[0] if const[0] is not None else jnp.zeros_like(hidden[0])
        const_t = constant.T
        self_coupling = jnp.broadcast_to(layer.j_d, (layer.features,))
        start = (hidden[0].T,)

        def finish(state):
            return (state[0].T,)

        def update(state, index):
            del index
            return (layer.coupling.sign_sweep_t(state[0], self_coupling, const_t),)

    def one_sweep(state, index):
        new = update(state, index)
        return new, _count_changes(state, new)

    def body(carry, index):
        state, done, used, changed = carry
        if until_converged:
            new, changes = jax.lax.cond(
                done, lambda s, i: (s, jnp.int32(0)), one_sweep, state, index
            )
            used = used + jnp.where(done, 0, 1)
            done = done | (changes == 0)
        else:
            new, changes = one_sweep(state, index)
            used = used + 1
        return (new, done, used, changes), (new if record else None)

    init = (start, jnp.bool_(False), jnp.int32(0), jnp.int32(0))
    (state, _, used, changed), trajectory = jax.lax.scan(body, init, jnp.arange(sweeps))
    return finish(state), PhaseInfo(used, changed, trajectory)


def _fused_layer(net: Network, messages: Messages, schedule: Schedule, record: bool) -> BinaryLayer | None:
    """Return the network's only hidden layer when its sweeps can run as fused native calls, else None.

    That needs one binary hidden layer whose ``J`` is an ELL coupling, no other hidden sender
    under ``messages``, a sequential or parallel schedule (the same for one layer), native kernels,
    and no recorded trajectory.
    """
    if record or schedule is Schedule.ASYNCHRONOUS or net.num_hidden != 1 or not _native.available():
        return None
    layer = net.layer(1)
    if not isinstance(layer, BinaryLayer) or not isinstance(layer.coupling, EllCoupling):
        return None
    if any(1 <= j <= net.num_hidden for j, _ in net.senders(1, messages)):
        return None
    return layer
