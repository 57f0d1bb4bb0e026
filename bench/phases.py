"""Where the time of a train step goes: protocols cut down phase by phase.

For the paper configuration (batch 16, ``kernel="auto"``) the compiled train step is timed with

- no sweep at all (input messages, the forward fields at the zero state, the rule increments,
  the optimizer update with decay, re-masking, metrics): the fixed cost;
- the warmup sweep only;
- warmup and the 5 clamped sweeps;
- the full protocol (1 + 5 + 5);

plus the evaluation step (1 + 5 sweeps) and a jitted function that takes the same arguments and
does almost nothing (the cost of passing the network's arrays through a jit call). Differences
between rows give the cost per sweep.

Run: ``python -m bench.phases [--quick]``.
"""

import jax
import jax.numpy as jnp

import darnax_core as dc
from bench import _common as common
from bench._setup import coupling_stats, device_batches, time_eval_steps, time_train_steps

NAME = "phases"
VARIANTS = (("no sweeps", 0, 0, 0), ("warmup 1", 1, 0, 0), ("warmup 1 + clamped 5", 1, 5, 0), ("full 1 + 5 + 5", 1, 5, 5))


def _time_dispatch(net, opt_state, batch, repeats: int) -> dict:
    """Time a jit call that receives the train step's arguments and only sums the inputs."""
    x, y, mask = batch
    key = jax.random.PRNGKey(0)
    floor = jax.jit(lambda net, opt_state, x, y, key, mask: jnp.sum(x))
    jax.block_until_ready(floor(net, opt_state, x, y, key, mask))
    return common.summarize(common.time_calls(lambda: floor(net, opt_state, x, y, key, mask), repeats=repeats, block=jax.block_until_ready))


def run(args) -> dict:
    from bench._setup import PaperSetup

    hiddens = (2000,) if args.quick else (2000, 4000)
    repeats = 20 if args.quick else 300
    record = common.new_record(NAME, args)
    record["settings"] = {"hidden": list(hiddens), "batch": 16, "repeats": repeats, "kernel": "auto"}
    x, y, data = common.mnist_or_random(1024)
    record["data"] = data
    for hidden in hiddens:
        config = dc.TUTORIAL_09.replace(hidden=hidden)
        net = dc.paper_model(jax.random.PRNGKey(0), config)
        optimizer = dc.paper_model_optimizer(net, config)
        batches = device_batches(x, y, config.batch_size, 32)
        record["settings"][f"couplings_h{hidden}"] = coupling_stats(net)
        results = {}
        for label, warmup, clamped, free in VARIANTS:
            protocol = dc.Protocol(warmup=warmup, clamped=clamped, free=free, eval_sweeps=config.eval_sweeps)
            setup = PaperSetup(config, net, optimizer, dc.init_optimizer(optimizer, net), protocol, dc.make_train_step(protocol, optimizer), dc.make_eval_step(protocol), 0.0)
            timing = time_train_steps(setup, batches, repeats=repeats, pipelined=50)
            results[label] = timing
            record["rows"].append({"hidden": hidden, "measurement": f"train step, {label}", "sweeps": warmup + clamped + free, "latency": timing["latency"], "pipelined": timing["pipelined"]})
        evaluation = time_eval_steps(setup, x, config.batch_size, repeats=repeats)
        record["rows"].append({"hidden": hidden, "measurement": "eval step, 1 + 5", "sweeps": 1 + config.eval_sweeps, "latency": evaluation["latency"], "pipelined": {}})
        dispatch = _time_dispatch(net, setup.opt_state, batches[0], repeats)
        record["rows"].append({"hidden": hidden, "measurement": "jit call with the same arguments, no work", "sweeps": 0, "latency": dispatch, "pipelined": {}})
        fixed = results["no sweeps"]["latency"]["median"]
        full = results["full 1 + 5 + 5"]["latency"]["median"]
        record.setdefault("per_sweep_ms", {})[hidden] = (full - fixed) / 11 * 1e3
        record.setdefault("fixed_ms", {})[hidden] = fixed * 1e3
    return record


def table(record: dict, markdown: bool = False) -> str:
    headers = ["H", "measurement", "sweeps", "ms (latency)", "min / IQR ms", "ms (back to back)"]
    rows = []
    for row in record["rows"]:
        pipelined = row["pipelined"].get("median") if row["pipelined"] else None
        rows.append([row["hidden"], row["measurement"], row["sweeps"], row["latency"]["median"] * 1e3, common.spread(row["latency"]), None if pipelined is None else pipelined * 1e3])
    render = common.markdown_table if markdown else common.text_table
    text = render(headers, rows)
    summary = [[h, record["fixed_ms"][h], record["per_sweep_ms"][h]] for h in record.get("per_sweep_ms", {})]
    return text + "\n\n" + render(["H", "fixed cost ms", "ms per sweep (from full - fixed) / 11"], summary)


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv)


if __name__ == "__main__":
    main()
