"""Inspection helpers: each layer's activity after every sweep, and the relaxed hidden state."""

import jax
from jaxtyping import Array, Float

from darnax_core import _dynamics as dyn
from darnax_core._network import Messages, Network
from darnax_core._protocols import Protocol, encode_labels, relax
from darnax_core._state import check_inputs


def _phase_plan(protocol: Protocol, with_label: bool) -> list[tuple[str, Messages, int]]:
    warmup = ("warmup", Messages.FORWARD, protocol.warmup)
    free_messages = Messages.parse(protocol.free_messages)
    if not with_label:
        return [warmup, ("eval", free_messages, protocol.eval_sweeps)]
    clamped = ("clamped", Messages.ALL, protocol.clamped)
    free = ("free", free_messages, protocol.free)
    return [warmup, clamped, free] if protocol.kind == "paper" else [warmup, free, clamped]


def trajectory(net: Network, x, protocol: Protocol, key: jax.Array, y=None) -> dict[str, tuple[Float[Array, "sweeps batch _"], ...]]:
    """Return every hidden layer's state after each sweep, per phase.

    With labels ``y`` the phases are those of a training step (``warmup``, ``clamped``, ``free``
    in the protocol's order); without labels those of evaluation (``warmup``, ``eval``). Each
    value is a tuple with one ``(sweeps, batch, units)`` array per hidden layer. Phases run for
    their full sweep counts, so ``until_converged`` repeats the converged state.
    """
    x = check_inputs(net, x)
    labels = None if y is None else encode_labels(y, net.num_classes)
    inputs = dyn.input_messages(net, x)
    label_fields = dyn.label_messages(net, labels)
    hidden = dyn.zero_hidden(net, x.shape[0], x.dtype)
    phases = {}
    for index, (name, messages, sweeps) in enumerate(_phase_plan(protocol, labels is not None)):
        const = dyn.constant_fields(net, inputs, label_fields, messages)
        hidden, info = dyn.run_phase(
            net,
            hidden,
            const,
            messages=messages,
            schedule=protocol.schedule,
            sweeps=sweeps,
            key=jax.random.fold_in(key, index),
            until_converged=protocol.until_converged,
            record=True,
        )
        phases[name] = info.trajectory
    return phases


def relaxed_state(net: Network, x, protocol: Protocol, key: jax.Array) -> tuple[Float[Array, "batch _"], ...]:
    """Return the hidden state that evaluation reaches (warmup and ``eval_sweeps`` label-free sweeps)."""
    return relax(net, check_inputs(net, x), protocol, key)[0]
