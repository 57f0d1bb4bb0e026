"""``dc.fit`` compiles its train and evaluation steps once per batch shape, ragged batches included.

Two counters: ``compiled._cache_size()`` of the jitted steps (one cache entry per distinct input
signature), read through spies on the step factories that ``dc.fit`` calls, and the
``jax.monitoring`` backend-compile events, which count every XLA compilation in the process
(eager operations included).
"""

import jax
import numpy as np
import optax
import pytest

import darnax_core as dc
from darnax_core import _loop

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
TRAIN_SAMPLES, TEST_SAMPLES, BATCH, INPUT_DIM, CLASSES = 103, 37, 16, 20, 4


@pytest.fixture
def compile_events():
    """Collect the names of the functions XLA compiles while the test runs."""
    names: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE:
            names.append(str(kwargs.get("fun_name", "")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield names
    jax.monitoring.unregister_event_duration_listener(listener)


def spy_steps(monkeypatch) -> dict:
    """Record the steps ``dc.fit`` builds and the shapes of every call to them."""
    recorded = {"train_shapes": [], "train_real_rows": [], "eval_shapes": []}
    make_train, make_eval = _loop.make_epoch_step, _loop.make_eval_step

    def make_train_spy(*args, **kwargs):
        step = make_train(*args, **kwargs)

        def train_step(net, opt_state, totals, x, y, sample_mask, key, index):
            recorded["train_shapes"].append(np.shape(x))
            recorded["train_real_rows"].append(int(np.sum(sample_mask)))
            return step(net, opt_state, totals, x, y, sample_mask, key, index)

        recorded["train"] = step
        return train_step

    def make_eval_spy(*args, **kwargs):
        step = make_eval(*args, **kwargs)

        def eval_step(net, x, key):
            recorded["eval_shapes"].append(np.shape(x))
            return step(net, x, key)

        recorded["eval"] = step
        return eval_step

    monkeypatch.setattr(_loop, "make_epoch_step", make_train_spy)
    monkeypatch.setattr(_loop, "make_eval_step", make_eval_spy)
    return recorded


def test_fit_ragged_epoch_compiles_once(monkeypatch, compile_events):
    rng = np.random.default_rng(0)
    x = rng.random((TRAIN_SAMPLES + TEST_SAMPLES, INPUT_DIM), dtype=np.float32)
    y = rng.integers(0, CLASSES, TRAIN_SAMPLES + TEST_SAMPLES).astype(np.int32)
    train, test = (x[:TRAIN_SAMPLES], y[:TRAIN_SAMPLES]), (x[TRAIN_SAMPLES:], y[TRAIN_SAMPLES:])
    net = dc.chain_model(jax.random.PRNGKey(0), input_dim=INPUT_DIM, hidden=24, depth=1, num_classes=CLASSES, j_d=0.5, density_j=0.2)
    recorded = spy_steps(monkeypatch)
    per_epoch = []

    def on_epoch_end(epoch, record):
        per_epoch.append({
            "train_cache": recorded["train"]._cache_size(),
            "eval_cache": recorded["eval"].compiled._cache_size(),
            "compiles_so_far": len(compile_events),
        })

    dc.fit(
        net, optax.sgd(0.05), dc.Protocol(warmup=1, clamped=2, free=2, eval_sweeps=2), train, key=jax.random.PRNGKey(1),
        epochs=2, batch_size=BATCH, test=test, eval_batch_size=BATCH, progress=False, on_epoch_end=on_epoch_end,
    )

    # 103 samples at batch 16: six full batches and one of 7 real rows, padded to 16.
    steps = -(-TRAIN_SAMPLES // BATCH)
    assert recorded["train_shapes"] == [(BATCH, INPUT_DIM)] * (2 * steps)
    assert recorded["train_real_rows"][:steps] == [BATCH] * (steps - 1) + [TRAIN_SAMPLES % BATCH]
    # 37 test samples at batch 16: three padded batches per evaluation.
    assert recorded["eval_shapes"] == [(BATCH, INPUT_DIM)] * (2 * -(-TEST_SAMPLES // BATCH))

    first, second = per_epoch
    assert first["train_cache"] == 1
    assert first["eval_cache"] == 1
    assert second["train_cache"] == 1
    assert second["eval_cache"] == 1
    # The first epoch compiled the two steps (and small eager operations); the second compiled nothing.
    assert first["compiles_so_far"] >= 2
    assert second["compiles_so_far"] == first["compiles_so_far"]


def test_new_batch_size_compiles_again():
    # One cache entry per batch shape: a second batch size adds exactly one entry.
    net = dc.chain_model(jax.random.PRNGKey(2), input_dim=INPUT_DIM, hidden=24, depth=1, num_classes=CLASSES, j_d=0.5, density_j=0.2)
    optimizer = optax.sgd(0.05)
    step = dc.make_train_step(dc.Protocol(warmup=1, clamped=1, free=1), optimizer)
    opt_state = dc.init_optimizer(optimizer, net)
    rng = np.random.default_rng(1)
    sizes = (BATCH, BATCH, 5, 5, BATCH)
    for count, size in enumerate(sizes):
        x = rng.random((size, INPUT_DIM), dtype=np.float32)
        y = rng.integers(0, CLASSES, size).astype(np.int32)
        net, opt_state, _ = step(net, opt_state, x, y, jax.random.PRNGKey(count))
    assert step.compiled._cache_size() == 2
