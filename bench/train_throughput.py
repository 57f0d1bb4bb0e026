"""Training and evaluation throughput of the paper configuration (784 -> 2000 -> 10, batch 16).

Measured, each against the reference library's figures on the same machine:

- the compiled train step on device inputs (latency per step, and time per step when steps run
  back to back without a host sync);
- the public ``train_step`` wrapper on NumPy inputs (input checks and host-to-device copies);
- ``dc.fit`` over a slice of MNIST (the second of two epochs, so compilation is excluded);
- the compiled evaluation step at batch 16 and 1000, and ``dc.evaluate`` over the MNIST test set.

Run: ``python -m bench.train_throughput [--quick]``.
"""

import time

import jax
import numpy as np

import darnax_core as dc
from bench import _common as common
from bench._setup import coupling_stats, device_batches, paper_setup, time_eval_steps, time_train_steps

NAME = "train_throughput"


def _settings(quick: bool) -> dict:
    if quick:
        return {"latency_repeats": 20, "pipelined": 20, "fit_steps": 100, "fit_runs": 1, "eval_repeats": {16: 20, 1000: 3}, "test_images": 2000}
    return {"latency_repeats": 300, "pipelined": 100, "fit_steps": 2000, "fit_runs": 2, "eval_repeats": {16: 300, 1000: 20}, "test_images": 10000}


def _time_wrapper(setup, x, y, batch: int, repeats: int) -> dict:
    """Time ``train_step`` on NumPy batches, as ``dc.fit`` calls it (latency per step)."""
    key = jax.random.PRNGKey(3)
    state = {"net": setup.net, "opt": setup.opt_state, "k": 0}
    mask = np.ones(batch, bool)

    def one_step():
        rows = np.arange(state["k"] * batch, (state["k"] + 1) * batch) % x.shape[0]
        state["net"], state["opt"], metrics = setup.train_step(
            state["net"], state["opt"], x[rows], y[rows], jax.random.fold_in(key, state["k"]), mask
        )
        state["k"] += 1
        return state["net"], metrics

    jax.block_until_ready(one_step())
    samples = common.time_calls(one_step, repeats=repeats, block=jax.block_until_ready)
    return common.summarize(samples)


def _time_fit(config, x, y, steps: int, runs: int) -> dict:
    """Run ``dc.fit`` for two epochs over ``steps`` batches; return per-run epoch seconds."""
    batch = config.batch_size
    data = (x[: steps * batch], y[: steps * batch])
    first, second, accuracy = [], [], []
    for run in range(runs):
        net = dc.paper_model(jax.random.PRNGKey(run), config)
        optimizer = dc.paper_model_optimizer(net, config)
        result = dc.fit(
            net, optimizer, dc.paper_protocol(config), data, key=jax.random.PRNGKey(10 + run), epochs=2, batch_size=batch, progress=False
        )
        first.append(result.history[0]["seconds"])
        second.append(result.history[1]["seconds"])
        accuracy.append(result.history[1]["train_accuracy"])
    return {"epoch1_s": common.summarize(first), "epoch2_s": common.summarize(second), "train_accuracy_epoch2": accuracy}


def _time_evaluate(setup, x, y) -> dict:
    """Time ``dc.evaluate`` over ``(x, y)`` at batch 1000 (after one warm-up call)."""
    eval_step = setup.eval_step
    key = jax.random.PRNGKey(4)
    dc.evaluate(setup.net, setup.protocol, (x[:1000], y[:1000]), key=key, batch_size=1000, eval_step=eval_step)
    samples, accuracy = [], None
    for _ in range(3):
        start = time.perf_counter()
        accuracy = dc.evaluate(setup.net, setup.protocol, (x, y), key=key, batch_size=1000, eval_step=eval_step)["accuracy"]
        samples.append(time.perf_counter() - start)
    return {"seconds": common.summarize(samples), "images": int(x.shape[0]), "accuracy": accuracy}


def run(args) -> dict:
    settings = _settings(args.quick)
    record = common.new_record(NAME, args)
    record["settings"] = settings
    config = dc.TUTORIAL_09
    batch = config.batch_size
    x, y = common.load_mnist("train")
    xt, yt = common.load_mnist("test")
    xt, yt = xt[: settings["test_images"]], yt[: settings["test_images"]]

    setup = paper_setup(config)
    record["settings"]["couplings"] = coupling_stats(setup.net)
    record["settings"]["config"] = {"hidden": config.hidden, "batch": batch, "sweeps": [config.warmup, config.clamped, config.free], "eval_sweeps": config.eval_sweeps, "kernel": config.kernel}

    batches = device_batches(x, y, batch, 64)
    compiled = time_train_steps(setup, batches, repeats=settings["latency_repeats"], pipelined=settings["pipelined"])
    wrapper = _time_wrapper(setup, x, y, batch, settings["latency_repeats"])
    fit = _time_fit(config, x, y, settings["fit_steps"], settings["fit_runs"])
    evals = {b: time_eval_steps(setup, xt, b, repeats=settings["eval_repeats"][b]) for b in (16, 1000)}
    evaluate = _time_evaluate(setup, xt, yt)

    reference_ms = common.REFERENCE["train_step_ms"]
    rows = record["rows"]

    def train_row(measurement, stats, per_step=None):
        step_s = per_step if per_step is not None else stats["median"]
        rows.append({
            "measurement": measurement, "batch": batch, "ms_per_step": step_s * 1e3, "min_ms": stats["min"] * 1e3 if stats.get("n") else None,
            "iqr_ms": stats["iqr"] * 1e3 if stats.get("n") else None, "images_per_s": batch / step_s,
            "reference_ms": reference_ms, "speedup": reference_ms / (step_s * 1e3),
        })

    train_row("compiled step, latency (device inputs)", compiled["latency"])
    if compiled["pipelined"].get("n"):
        train_row(f"compiled step, {settings['pipelined']} steps back to back", compiled["pipelined"])
    train_row("train_step wrapper (NumPy inputs, checks)", wrapper)
    epoch2 = fit["epoch2_s"]
    fit_stats = {k: (v / settings["fit_steps"] if k in ("median", "min", "max", "mean", "q1", "q3", "iqr") else v) for k, v in epoch2.items()}
    train_row(f"dc.fit, epoch of {settings['fit_steps']} steps (2nd epoch)", fit_stats)

    for b, result in evals.items():
        stats = result["latency"]
        low_high = common.REFERENCE["eval_images_per_s"][b]
        reference_rate = low_high[1] if isinstance(low_high, tuple) else low_high
        rows.append({
            "measurement": "compiled eval step (device inputs)", "batch": b, "ms_per_step": stats["median"] * 1e3, "min_ms": stats["min"] * 1e3,
            "iqr_ms": stats["iqr"] * 1e3, "images_per_s": b / stats["median"], "reference_images_per_s": reference_rate,
            "speedup": b / stats["median"] / reference_rate,
        })
    ev = evaluate["seconds"]
    rows.append({
        "measurement": f"dc.evaluate over {evaluate['images']} test images", "batch": 1000, "ms_per_step": ev["median"] * 1e3 / (evaluate["images"] / 1000),
        "min_ms": None, "iqr_ms": None, "images_per_s": evaluate["images"] / ev["median"], "reference_images_per_s": 6800.0,
        "speedup": evaluate["images"] / ev["median"] / 6800.0,
    })

    record["first_call_s"] = {"train": compiled["first_call_s"], "eval16": evals[16]["first_call_s"], "eval1000": evals[1000]["first_call_s"]}
    record["fit"] = fit
    record["evaluate_accuracy"] = evaluate["accuracy"]
    fit_rate = batch / fit_stats["median"]
    epoch_s = 60000 / fit_rate
    record["projected_mnist_epoch_s"] = epoch_s

    goal = common.TARGETS["train_speedup_h2000"] * common.REFERENCE["train_images_per_s"]
    add = common.add_target
    add(record, "training throughput, H=2000 (dc.fit)", goal=f">= {goal:,.0f} images/s (5x reference)", measured=fit_rate, unit="images/s", met=fit_rate >= goal,
        note=f"projected MNIST epoch {epoch_s:.1f} s (reference 60-74 s)")
    eval_rate = 16 / evals[16]["latency"]["median"]
    eval_goal = common.TARGETS["eval_speedup_b16"] * common.REFERENCE["eval_images_per_s"][16][1]
    add(record, "evaluation throughput, batch 16", goal=f">= {eval_goal:,.0f} images/s (5x the reference's 3.4k)", measured=eval_rate, unit="images/s", met=eval_rate >= eval_goal)
    return record


def table(record: dict, markdown: bool = False) -> str:
    headers = ["measurement", "batch", "ms/step", "min / IQR ms", "images/s", "reference", "speedup"]
    rows = []
    for row in record["rows"]:
        reference = f"{row['reference_ms']} ms" if "reference_ms" in row else f"{row['reference_images_per_s']:,.0f} img/s"
        spread = "-" if row["min_ms"] is None else common.spread({"n": 1, "min": row["min_ms"], "iqr": row["iqr_ms"]}, 1.0)
        rows.append([row["measurement"], row["batch"], row["ms_per_step"], spread, row["images_per_s"], reference, f"{row['speedup']:.2f}x"])
    render = common.markdown_table if markdown else common.text_table
    return render(headers, rows)


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv)


if __name__ == "__main__":
    main()
