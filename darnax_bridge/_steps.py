"""Jitted helpers around the core steps: epoch sums of the metrics and the label-free relaxation."""

import functools

import jax
import jax.numpy as jnp

import darnax_core as dc


Totals = dc.EpochTotals
zero_totals = dc.zero_totals


@jax.jit
def add_eval_metrics(totals: Totals, predictions, y, metrics: dc.EvalMetrics) -> Totals:
    labels = y if y.ndim == 1 else jnp.argmax(y, axis=1)
    count = jnp.int32(predictions.shape[0])
    return Totals(
        totals.correct + jnp.sum(predictions == labels).astype(jnp.int32),
        totals.count + count,
        totals.unsat + jnp.mean(metrics.unsat) * count,
        totals.sweeps + jnp.sum(metrics.sweeps),
        totals.steps + 1,
    )


@functools.partial(jax.jit, static_argnames="protocol")
def relax_without_labels(net: dc.Network, x, key, *, protocol: dc.Protocol):
    """Run the evaluation dynamics of ``protocol`` and return ``(logits, hidden)``.

    The phases and keys are those of ``dc.eval_step_impl``: a forward warmup from zero states,
    then ``eval_sweeps`` label-free sweeps; the logits are the readout's forward field.
    """
    hidden, fields, _ = dc.relax(net, x, protocol, key)
    logits = fields[-1]
    return logits, hidden
