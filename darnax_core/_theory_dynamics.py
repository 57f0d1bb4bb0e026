"""Sign dynamics and accessibility of fixed points, for one layer and for chains of layers.

A run starts from a state and applies ``s <- sign(h)`` sweep after sweep. Accessibility is
the fraction of runs that reach a state with no unstable unit (``sign(h) == s`` everywhere)
within a sweep budget, measured over random couplings from :mod:`darnax_core._theory`.
Single layers use the field ``h = s @ J + j_d * s``. Chains have no self-coupling by
default and one-to-one couplings ``lam`` between same-index units of neighbouring layers.
"""

import functools
import logging
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from darnax_core._ops import sign
from darnax_core._theory import _BATCH_FLOATS, _batch_size, _draw_flat, _field, _sample_couplings
from darnax_core._theory_checks import (
    _check_chain_couplings,
    _check_choice,
    _check_couplings,
    _check_density,
    _check_int,
    _check_key,
    _check_real_scalar,
    _check_self_coupling,
    _check_states,
    _check_values,
)

logger = logging.getLogger(__name__)

SCHEDULES = ("synchronous", "asynchronous")
CHAIN_SCHEDULES = ("synchronous", "sequential")
INITS = ("random", "zero")


class DynamicsResult(NamedTuple):
    """Outcome of a batch of sign-dynamics runs.

    Attributes
    ----------
    states : Float[Array, "batch ..."]
        Final states, shaped like the initial states.
    converged : Bool[Array, "batch"]
        True where the run reached a state with ``sign(h) == s`` for every unit.
    first_fixed_sweep : Int[Array, "batch"]
        Number of sweeps after which the run was first at such a state (0 when the initial
        state already was one), or -1 when it never was.
    """

    states: Float[Array, "batch ..."]
    converged: Bool[Array, " batch"]
    first_fixed_sweep: Int[Array, " batch"]


class AccessibilityCurve(NamedTuple):
    """Fraction of dynamics runs that reach a fixed point, for each parameter value.

    Attributes
    ----------
    values : Float[Array, "k"]
        The swept parameter (``j_d`` for :func:`accessibility`, ``lam`` for
        :func:`chain_accessibility`).
    fraction : Float[Array, "k"]
        Fraction of all ``samples * starts`` runs that converged within the sweep budget.
    standard_error : Float[Array, "k"]
        Standard error of ``fraction`` over the independent coupling samples (the per-sample
        fractions' standard deviation divided by sqrt(samples)), or NaN when samples == 1.
    mean_first_fixed_sweep : Float[Array, "k"]
        Mean number of sweeps to the first fixed point among converged runs, or NaN when
        none converged.
    """

    values: Float[Array, " k"]
    fraction: Float[Array, " k"]
    standard_error: Float[Array, " k"]
    mean_first_fixed_sweep: Float[Array, " k"]


def _sweep_orders(key: PRNGKeyArray, sweep: Int[Array, ""] | int, batch: int,
                  n: int) -> Int[Array, "batch n"]:
    """Unit visiting orders of one asynchronous sweep: one fresh permutation per run.

    Each row is the stable argsort of uniform random 32-bit integers, so it is always a
    permutation of range(n), and uniform up to the tie-breaking of equal draws.
    """
    bits = jax.random.bits(jax.random.fold_in(key, sweep), (batch, n), jnp.uint32)
    return jnp.argsort(bits, axis=-1, stable=True).astype(jnp.int32)


def _asynchronous_sweep(couplings: Array, j_d: Array, states: Array,
                        orders: Int[Array, "batch n"]) -> Array:
    rows = jnp.arange(states.shape[0])
    self_coupling = jnp.broadcast_to(j_d, states.shape[1:])

    def visit(position: Int[Array, ""], current: Array) -> Array:
        units = orders[:, position]
        field = jnp.einsum("bj,jb->b", current, couplings[:, units])
        field = field + self_coupling[units] * current[rows, units]
        return current.at[rows, units].set(sign(field))

    return jax.lax.fori_loop(0, states.shape[1], visit, states)


def _relax(update: Callable[[Array, Array], Array], is_fixed: Callable[[Array], Array],
           initial: Array, sweeps: int) -> DynamicsResult:
    """Apply ``update(states, sweep)`` until every run is fixed or ``sweeps`` sweeps ran.

    A state with ``sign(h) == s`` everywhere is unchanged by every schedule here, so
    stopping early leaves the same final states as running all sweeps.
    """
    first = jnp.where(is_fixed(initial), 0, -1).astype(jnp.int32)

    def keep_going(carry: tuple) -> Array:
        sweep, _, first_fixed = carry
        return (sweep < sweeps) & jnp.any(first_fixed < 0)

    def step(carry: tuple) -> tuple:
        sweep, states, first_fixed = carry
        states = update(states, sweep)
        newly_fixed = (first_fixed < 0) & is_fixed(states)
        return sweep + 1, states, jnp.where(newly_fixed, sweep + 1, first_fixed)

    _, states, first = jax.lax.while_loop(keep_going, step, (jnp.int32(0), initial, first))
    return DynamicsResult(states=states, converged=first >= 0, first_fixed_sweep=first)


def _single_layer_dynamics(couplings: Array, j_d: Array, initial: Array, key: PRNGKeyArray | None,
                           schedule: str, sweeps: int) -> DynamicsResult:
    def is_fixed(states: Array) -> Array:
        return jnp.all(sign(_field(couplings, j_d, states)) == states, axis=-1)

    def update(states: Array, sweep: Array) -> Array:
        if schedule == "synchronous":
            return sign(_field(couplings, j_d, states))
        orders = _sweep_orders(key, sweep, states.shape[0], states.shape[1])
        return _asynchronous_sweep(couplings, j_d, states, orders)

    return _relax(update, is_fixed, initial, sweeps)


_single_layer_dynamics_jit = jax.jit(_single_layer_dynamics, static_argnames=("schedule",))


def run_sign_dynamics(J: Float[ArrayLike, "n n"], j_d: Float[ArrayLike, "n"] | float,
                      s0: Float[ArrayLike, "batch n"], *, schedule: str, sweeps: int,
                      key: PRNGKeyArray | None = None) -> DynamicsResult:
    """Run sign dynamics ``s_i <- sign(h_i)`` on one layer, for a batch of initial states.

    - ``"synchronous"``: every unit is updated at once from the previous state.
    - ``"asynchronous"``: each sweep visits the units one at a time in a fresh random order
      (independent for every run), and each unit is updated from the current state, which
      includes the units already visited in this sweep. Needs ``key``.

    A run counts as converged once no unit is unstable, i.e. ``sign(h) == s`` everywhere.
    Such a state never changes, so the loop stops when every run has converged. Entries of
    ``s0`` equal to 0 are allowed, as in the zero start of the darnax hidden state. A zero
    state is never fixed, and a synchronous sweep from it gives ``sign(0) = +1`` for every
    unit.

    Parameters
    ----------
    J : Float[ArrayLike, "n n"]
        Couplings with zero diagonal.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling, a scalar or one value per unit.
    s0 : Float[ArrayLike, "batch n"]
        Initial states with entries in {-1, 0, +1}.
    schedule : str
        ``"synchronous"`` or ``"asynchronous"``.
    sweeps : int
        Maximum number of sweeps, at least 1.
    key : PRNGKeyArray, optional
        Random key for the asynchronous orders. The orders of sweep t are the argsort of
        ``jax.random.bits(jax.random.fold_in(key, t), (batch, n))`` along the units.

    Returns
    -------
    DynamicsResult
        Final states, convergence flags and the sweep of the first fixed point.
    """
    schedule = _check_choice("schedule", schedule, SCHEDULES)
    sweeps = _check_int("sweeps", sweeps, minimum=1)
    couplings = _check_couplings(J)
    n = couplings.shape[0]
    j_d = _check_self_coupling(j_d, n, couplings.dtype)
    initial = _check_states("s0", s0, (n,), couplings.dtype, allow_zero=True)
    if schedule == "asynchronous":
        key = _check_key(key, "for schedule='asynchronous'")
    return _single_layer_dynamics_jit(couplings, j_d, initial, key, schedule=schedule,
                                      sweeps=sweeps)


def _chain_field(couplings: Array, j_d: Array, lam: Array, states: Array) -> Array:
    """Fields of all layers, ``s_l @ J_l + j_d * s_l + lam * (s_{l-1} + s_{l+1})``."""
    own = jnp.einsum("bln,lnm->blm", states, couplings) + j_d * states
    edge = jnp.zeros_like(states[:, :1])
    below = jnp.concatenate([edge, states[:, :-1]], axis=1)
    above = jnp.concatenate([states[:, 1:], edge], axis=1)
    return own + lam * (below + above)


def _sequential_chain_sweep(couplings: Array, j_d: Array, lam: Array, states: Array) -> Array:
    layers = states.shape[1]
    for layer in range(layers):
        field = states[:, layer] @ couplings[layer] + j_d * states[:, layer]
        if layer > 0:
            field = field + lam * states[:, layer - 1]
        if layer < layers - 1:
            field = field + lam * states[:, layer + 1]
        states = states.at[:, layer].set(sign(field))
    return states


def _chain_dynamics(couplings: Array, j_d: Array, lam: Array, initial: Array, schedule: str,
                    sweeps: int) -> DynamicsResult:
    def is_fixed(states: Array) -> Array:
        stable = sign(_chain_field(couplings, j_d, lam, states)) == states
        return jnp.all(stable, axis=(-2, -1))

    def update(states: Array, sweep: Array) -> Array:
        del sweep
        if schedule == "synchronous":
            return sign(_chain_field(couplings, j_d, lam, states))
        return _sequential_chain_sweep(couplings, j_d, lam, states)

    return _relax(update, is_fixed, initial, sweeps)


_chain_dynamics_jit = jax.jit(_chain_dynamics, static_argnames=("schedule",))


def run_chain_dynamics(J: Float[ArrayLike, "layers n n"], lam: float,
                       s0: Float[ArrayLike, "batch layers n"], *, schedule: str, sweeps: int,
                       j_d: Float[ArrayLike, "n"] | float = 0.0) -> DynamicsResult:
    """Run sign dynamics on a chain of layers joined by one-to-one couplings ``lam``.

    The field of layer l is ``s_l @ J[l] + j_d * s_l + lam * (s_{l-1} + s_{l+1})``, where a
    missing neighbour (below the first or above the last layer) contributes 0.

    - ``"synchronous"``: every layer is updated at once from the previous state.
    - ``"sequential"``: layers are updated in index order, each layer all at once from the
      current state, so layer l uses the new state of layer l - 1 (the darnax sweep).

    Parameters
    ----------
    J : Float[ArrayLike, "layers n n"]
        One coupling matrix per layer, each with zero diagonal.
    lam : float
        Strength of the couplings between same-index units of neighbouring layers.
    s0 : Float[ArrayLike, "batch layers n"]
        Initial states with entries in {-1, 0, +1}.
    schedule : str
        ``"synchronous"`` or ``"sequential"``.
    sweeps : int
        Maximum number of sweeps, at least 1.
    j_d : float or Float[ArrayLike, "n"]
        Self-coupling shared by all layers.

    Returns
    -------
    DynamicsResult
        Final states, convergence flags (``sign(h) == s`` in every layer) and the sweep of
        the first fixed point.
    """
    schedule = _check_choice("schedule", schedule, CHAIN_SCHEDULES)
    sweeps = _check_int("sweeps", sweeps, minimum=1)
    couplings = _check_chain_couplings(J)
    layers, n = couplings.shape[:2]
    j_d = _check_self_coupling(j_d, n, couplings.dtype)
    lam = _check_real_scalar("lam", lam).astype(couplings.dtype)
    initial = _check_states("s0", s0, (layers, n), couplings.dtype, allow_zero=True)
    return _chain_dynamics_jit(couplings, j_d, lam, initial, schedule=schedule, sweeps=sweeps)


def _initial_states(key: PRNGKeyArray, init: str, shape: tuple[int, ...],
                    dtype: jnp.dtype) -> Array:
    if init == "zero":
        return jnp.zeros(shape, dtype)
    return _draw_flat(functools.partial(jax.random.rademacher, dtype=dtype), key, shape)


@functools.partial(jax.jit, static_argnames=("n", "schedule", "starts", "samples", "init",
                                             "density", "batch_size"))
def _single_layer_runs(key: PRNGKeyArray, j_d: Array, *, n: int, schedule: str, sweeps: int,
                       starts: int, samples: int, init: str, density: float,
                       batch_size: int) -> DynamicsResult:
    def run_sample(sample_key: PRNGKeyArray) -> DynamicsResult:
        couplings_key, start_key, order_key = jax.random.split(sample_key, 3)
        couplings = _sample_couplings(couplings_key, n, density, j_d.dtype)
        initial = _initial_states(start_key, init, (starts, n), j_d.dtype)
        return _single_layer_dynamics(couplings, j_d, initial, order_key, schedule, sweeps)

    return jax.lax.map(run_sample, jax.random.split(key, samples), batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("n", "layers", "schedule", "starts", "samples",
                                             "init", "density", "batch_size"))
def _chain_runs(key: PRNGKeyArray, lam: Array, *, n: int, layers: int, schedule: str,
                sweeps: int, starts: int, samples: int, init: str, density: float,
                batch_size: int) -> DynamicsResult:
    def run_sample(sample_key: PRNGKeyArray) -> DynamicsResult:
        couplings_key, start_key = jax.random.split(sample_key)
        couplings = _sample_couplings(couplings_key, n, density, lam.dtype, (layers,))
        initial = _initial_states(start_key, init, (starts, layers, n), lam.dtype)
        return _chain_dynamics(couplings, jnp.zeros((), lam.dtype), lam, initial, schedule,
                               sweeps)

    return jax.lax.map(run_sample, jax.random.split(key, samples), batch_size=batch_size)


def _summarise(results: list[DynamicsResult], values: Array) -> AccessibilityCurve:
    converged = jnp.stack([r.converged for r in results]).astype(values.dtype)
    first = jnp.stack([r.first_fixed_sweep for r in results]).astype(values.dtype)
    samples = converged.shape[1]
    per_sample = jnp.mean(converged, axis=2)
    fraction = jnp.mean(per_sample, axis=1)
    if samples > 1:
        standard_error = jnp.std(per_sample, axis=1, ddof=1) / math.sqrt(samples)
    else:
        standard_error = jnp.full_like(fraction, jnp.nan)
    converged_runs = jnp.sum(converged, axis=(1, 2))
    total_sweeps = jnp.sum(jnp.where(converged > 0, first, 0), axis=(1, 2))
    mean_first = jnp.where(converged_runs > 0, total_sweeps / jnp.maximum(converged_runs, 1),
                           jnp.nan)
    return AccessibilityCurve(values=values, fraction=fraction, standard_error=standard_error,
                              mean_first_fixed_sweep=mean_first)


def _check_run_counts(n: int, sweeps: int, starts: int, samples: int, init: str,
                      density: float) -> tuple:
    return (
        _check_int("n", n, minimum=2),
        _check_int("sweeps", sweeps, minimum=1),
        _check_int("starts", starts, minimum=1),
        _check_int("samples", samples, minimum=1),
        _check_choice("init", init, INITS),
        _check_density(density),
    )


def accessibility(key: PRNGKeyArray, n: int, j_d_values: Sequence[float] | Float[ArrayLike, "k"],
                  *, schedule: str, sweeps: int = 100, starts: int = 16, samples: int = 16,
                  init: str = "random", density: float = 1.0) -> AccessibilityCurve:
    """Measure the fraction of single-layer sign-dynamics runs that reach a fixed point.

    For each ``j_d`` it draws ``samples`` coupling matrices distributed like
    ``random_couplings(key, n, density=density)`` and runs the dynamics of
    :func:`run_sign_dynamics` from ``starts`` initial states on each. Every ``j_d`` reuses
    the same couplings, starts and asynchronous orders (common random numbers), so the
    differences between neighbouring values carry no resampling noise.

    With ``init="zero"`` every run starts from s = 0. A synchronous first sweep then sets
    every unit to ``sign(0) = +1``, so all starts of one coupling matrix give the same run
    and ``starts=1`` suffices. An asynchronous first sweep gives +1 to the first visited
    unit and then depends on the order.

    Parameters
    ----------
    key : PRNGKeyArray
        JAX random key.
    n : int
        Number of units, at least 2.
    j_d_values : Sequence[float]
        Self-coupling values to sweep.
    schedule : str
        ``"synchronous"`` or ``"asynchronous"``.
    sweeps : int
        Sweep budget per run.
    starts : int
        Initial states per coupling matrix.
    samples : int
        Coupling matrices per ``j_d``.
    init : str
        ``"random"`` (uniform in {-1, +1}^n) or ``"zero"``.
    density : float
        Fraction of non-zero couplings, in (0, 1].

    Returns
    -------
    AccessibilityCurve
        Converged fraction, its standard error and mean sweeps, for each ``j_d``.
    """
    key = _check_key(key, "to sample couplings and starts")
    schedule = _check_choice("schedule", schedule, SCHEDULES)
    n, sweeps, starts, samples, init, density = _check_run_counts(
        n, sweeps, starts, samples, init, density)
    values = _check_values("j_d_values", j_d_values)

    batch_size = _batch_size(samples, _BATCH_FLOATS // (n * (n + starts)))
    results = []
    for j_d in values:
        results.append(_single_layer_runs(
            key, j_d, n=n, schedule=schedule, sweeps=sweeps, starts=starts, samples=samples,
            init=init, density=density, batch_size=batch_size))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("accessibility n=%d j_d=%.4g schedule=%s: converged fraction %.4f",
                         n, float(j_d), schedule, float(jnp.mean(results[-1].converged)))
    return _summarise(results, values)


def chain_accessibility(key: PRNGKeyArray, n: int,
                        lambdas: Sequence[float] | Float[ArrayLike, "k"], *, layers: int = 2,
                        schedule: str, sweeps: int = 100, starts: int = 16, samples: int = 16,
                        init: str = "random", density: float = 1.0) -> AccessibilityCurve:
    """Measure the fraction of chain sign-dynamics runs that reach a fixed point.

    The chain has ``layers`` layers of ``n`` units, no self-coupling (``j_d = 0``), its own
    couplings per layer distributed like ``random_couplings``, and a one-to-one coupling
    ``lam`` between same-index units of neighbouring layers (see
    :func:`run_chain_dynamics`). Every ``lam`` reuses the same couplings and starts. With
    ``init="zero"`` the first sweep sets every unit of the first layer to ``sign(0) = +1``,
    and of every layer when synchronous.

    Parameters
    ----------
    key : PRNGKeyArray
        JAX random key.
    n : int
        Units per layer, at least 2.
    lambdas : Sequence[float]
        Inter-layer coupling values to sweep.
    layers : int
        Number of layers, at least 2.
    schedule : str
        ``"synchronous"`` or ``"sequential"``.
    sweeps, starts, samples, init, density
        As in :func:`accessibility`.

    Returns
    -------
    AccessibilityCurve
        Converged fraction, its standard error and mean sweeps, for each ``lam``.
    """
    key = _check_key(key, "to sample couplings and starts")
    schedule = _check_choice("schedule", schedule, CHAIN_SCHEDULES)
    layers = _check_int("layers", layers, minimum=2)
    n, sweeps, starts, samples, init, density = _check_run_counts(
        n, sweeps, starts, samples, init, density)
    values = _check_values("lambdas", lambdas)

    batch_size = _batch_size(samples, _BATCH_FLOATS // (layers * n * (n + starts)))
    results = []
    for lam in values:
        results.append(_chain_runs(
            key, lam, n=n, layers=layers, schedule=schedule, sweeps=sweeps, starts=starts,
            samples=samples, init=init, density=density, batch_size=batch_size))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("chain accessibility n=%d layers=%d lam=%.4g schedule=%s: "
                         "converged fraction %.4f", n, layers, float(lam), schedule,
                         float(jnp.mean(results[-1].converged)))
    return _summarise(results, values)
