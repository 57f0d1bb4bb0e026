"""Model setup and step timing shared by the JAX benchmarks."""

import contextlib
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

import darnax_core as dc
from bench._common import repeats_within, summarize, time_calls


@dataclasses.dataclass
class PaperSetup:
    """A paper-configuration network with its optimizer, protocol and compiled steps."""

    config: dc.PaperConfig
    net: dc.Network
    optimizer: object
    opt_state: object
    protocol: dc.Protocol
    train_step: object
    eval_step: object
    build_s: float


def paper_setup(config: dc.PaperConfig = dc.TUTORIAL_09, *, seed: int = 0, **changes) -> PaperSetup:
    """Build the paper model of ``config`` (with ``changes``), its optimizer and its steps."""
    config = config.replace(**changes) if changes else config
    start = time.perf_counter()
    net = dc.paper_model(jax.random.PRNGKey(seed), config)
    optimizer = dc.paper_model_optimizer(net, config)
    opt_state = dc.init_optimizer(optimizer, net)
    jax.block_until_ready((net, opt_state))
    build_s = time.perf_counter() - start
    protocol = dc.paper_protocol(config)
    return PaperSetup(
        config, net, optimizer, opt_state, protocol, dc.make_train_step(protocol, optimizer), dc.make_eval_step(protocol), build_s
    )


def coupling_stats(net: dc.Network) -> dict:
    """Return layouts, non-zero counts and stored sizes of ``J`` and ``W_in`` of a paper network."""
    recurrent = net.layers[0].coupling
    input_edge = dict(zip(net.edge_index, net.edges))[(1, 0)].coupling

    def describe(coupling) -> dict:
        leaf = coupling.trainable_leaf()
        return {"layout": type(coupling).__name__, "nnz": coupling.nnz, "stored": int(leaf.size), "shape": list(leaf.shape)}

    return {"J": describe(recurrent), "W_in": describe(input_edge)}


def device_batches(x: np.ndarray, y: np.ndarray, batch: int, count: int) -> list[tuple]:
    """Return ``count`` consecutive ``(x, y, mask)`` device batches of size ``batch`` (wrapping around)."""
    batches = []
    mask = jnp.ones((batch,), bool)
    for k in range(count):
        rows = np.arange(k * batch, (k + 1) * batch) % x.shape[0]
        batches.append((jnp.asarray(x[rows]), jnp.asarray(y[rows]), mask))
    return batches


def time_train_steps(
    setup: PaperSetup, batches: list[tuple], *, repeats: int, pipelined: int, budget_s: float | None = None
) -> dict:
    """Time the compiled train step: first call, per-step latency, pipelined time per step.

    The first call includes tracing and compilation. Latency samples block after every step;
    pipelined samples run ``pipelined`` steps and block once, as a training loop does. With
    ``budget_s`` the sample counts shrink (to at least 3 latency samples) so that the timed steps
    take about ``budget_s`` seconds, judged from one warm step.
    """
    state = {"net": setup.net, "opt": setup.opt_state, "k": 0}
    key = jax.random.PRNGKey(1)
    step = setup.train_step.compiled

    def one_step():
        x, y, mask = batches[state["k"] % len(batches)]
        state["net"], state["opt"], metrics = step(state["net"], state["opt"], x, y, jax.random.fold_in(key, state["k"]), mask)
        state["k"] += 1
        return state["net"], metrics

    start = time.perf_counter()
    jax.block_until_ready(one_step())
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(one_step())
    warm = time.perf_counter() - start
    blocks = 3
    if budget_s is not None:
        repeats = repeats_within(warm, 0.6 * budget_s, low=3, high=repeats)
        pipelined = repeats_within(warm * blocks, 0.4 * budget_s, low=1, high=pipelined)
    latency = time_calls(one_step, repeats=repeats, block=jax.block_until_ready)
    through = time_calls(one_step, repeats=blocks, number=pipelined, block=jax.block_until_ready) if pipelined > 1 else []
    setup.net, setup.opt_state = state["net"], state["opt"]
    return {
        "first_call_s": first,
        "warm_step_s": warm,
        "latency": summarize(latency),
        "pipelined": summarize(through),
        "pipelined_steps": pipelined,
    }


def time_eval_steps(setup: PaperSetup, x: np.ndarray, batch: int, *, repeats: int) -> dict:
    """Time the compiled evaluation step at ``batch`` on device inputs (first call and latency)."""
    xb = jnp.asarray(x[np.arange(batch) % x.shape[0]])
    key = jax.random.PRNGKey(2)
    step = setup.eval_step.compiled
    start = time.perf_counter()
    jax.block_until_ready(step(setup.net, xb, key))
    first = time.perf_counter() - start
    latency = time_calls(lambda: step(setup.net, xb, key), repeats=repeats, block=jax.block_until_ready)
    return {"first_call_s": first, "latency": summarize(latency)}


class CompileEvents:
    """Collect JAX's compile-time events (tracing, lowering, XLA compilation) while active.

    Uses ``jax.monitoring`` duration events: ``/jax/core/compile/jaxpr_trace_duration``,
    ``.../jaxpr_to_mlir_module_duration`` and ``.../backend_compile_duration``. Each XLA
    compilation of any function (jitted steps and the small eager operations alike) records one
    backend event.
    """

    EVENTS = {
        "/jax/core/compile/jaxpr_trace_duration": "trace",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
        "/jax/core/compile/backend_compile_duration": "compile",
    }

    def __init__(self):
        self.records: list[tuple[str, str, float]] = []

    def _listener(self, event: str, duration: float, **kwargs) -> None:
        kind = self.EVENTS.get(event)
        if kind is not None:
            self.records.append((kind, str(kwargs.get("fun_name", "")), float(duration)))

    @contextlib.contextmanager
    def active(self):
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        try:
            yield self
        finally:
            jax.monitoring.unregister_event_duration_listener(self._listener)

    def count(self, kind: str = "compile") -> int:
        return sum(1 for k, _, _ in self.records if k == kind)

    def seconds(self, kind: str) -> float:
        return sum(d for k, _, d in self.records if k == kind)

    def largest(self, kind: str = "compile", top: int = 3) -> list[tuple[str, float]]:
        found = sorted(((name, d) for k, name, d in self.records if k == kind), key=lambda item: -item[1])
        return [(name, round(d, 4)) for name, d in found[:top]]
