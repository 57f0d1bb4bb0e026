"""Compilation cost: first train and evaluation steps in a fresh process, and compiles per epoch.

Part 1 starts 5 fresh processes (2 with ``--quick``). Each imports darnax_core, builds the paper model and
times its first ``train_step`` call on a NumPy batch (tracing, lowering, XLA compilation and the
run itself), its second call, and the first evaluation step at batch 16 and 1000. ``jax.monitoring``
duration events split the first call into tracing, lowering to MLIR and XLA compilation.

Part 2 runs ``dc.fit`` for two epochs on data whose size is not a multiple of the batch (a padded
last batch) with a test set that is not a multiple of the evaluation batch. Two counters are read:

- ``compiled._cache_size()`` of the jitted train and evaluation functions: the number of entries
  in jit's in-memory cache, one per distinct input signature (shapes, dtypes, static arguments);
- the ``/jax/core/compile/backend_compile_duration`` events during each epoch: every XLA
  compilation in the process, including small eager operations such as PRNG key folding.

Run: ``python -m bench.compile_time [--quick]``.
"""

import argparse
import time


from bench import _common as common

NAME = "compile_time"


def _first_steps(args) -> dict:
    start = time.perf_counter()
    import jax

    import darnax_core  # noqa: F401 - the import time is part of the measurement
    from darnax_core import _native

    import_s = time.perf_counter() - start
    cached = _native._library_path().exists()
    start = time.perf_counter()
    native = _native.available()
    native_s = time.perf_counter() - start

    from bench._setup import CompileEvents, paper_setup

    setup = paper_setup()
    x, y, data = common.mnist_or_random(1000)
    batch = setup.config.batch_size
    key = jax.random.PRNGKey(0)
    timings = {}
    events = CompileEvents()
    with events.active():
        start = time.perf_counter()
        net, opt_state, metrics = setup.train_step(setup.net, setup.opt_state, x[:batch], y[:batch], key)
        jax.block_until_ready((net, metrics))
        timings["first_train_s"] = time.perf_counter() - start
        first_train_events = {kind: events.seconds(kind) for kind in ("trace", "lower", "compile")}
        first_train_events["compiles"] = events.count()
        first_train_events["largest"] = events.largest()
        start = time.perf_counter()
        jax.block_until_ready(setup.train_step(net, opt_state, x[batch : 2 * batch], y[batch : 2 * batch], key))
        timings["second_train_s"] = time.perf_counter() - start
        for eval_batch in (16, 1000):
            before = len(events.records)
            start = time.perf_counter()
            jax.block_until_ready(setup.eval_step(net, x[:eval_batch], key))
            timings[f"first_eval{eval_batch}_s"] = time.perf_counter() - start
            timings[f"first_eval{eval_batch}_compile_s"] = sum(d for kind, _, d in events.records[before:] if kind == "compile")
            start = time.perf_counter()
            jax.block_until_ready(setup.eval_step(net, x[:eval_batch], key))
            timings[f"second_eval{eval_batch}_s"] = time.perf_counter() - start
    return {
        "import_s": import_s, "native_available": native, "native_library_cached_before": cached, "native_setup_s": native_s,
        "build_s": setup.build_s, "data": data, "first_train_breakdown": first_train_events, **timings,
    }


def _epoch_counts(args) -> dict:
    import jax

    import darnax_core as dc
    from darnax_core import _loop
    from bench._setup import CompileEvents

    train_count, test_count, batch, eval_batch = (103, 37, 16, 16) if args.quick else (10007, 1003, 16, 1000)
    x, y, data = common.mnist_or_random(train_count + test_count)
    train = (x[:train_count], y[:train_count])
    test = (x[train_count:], y[train_count:])
    config = dc.TUTORIAL_09
    net = dc.paper_model(jax.random.PRNGKey(0), config)
    optimizer = dc.paper_model_optimizer(net, config)

    built_steps = {}
    original_train, original_eval = _loop.make_epoch_step, _loop.make_eval_step

    def spy_train(*a, **k):
        built_steps["train"] = original_train(*a, **k)
        return built_steps["train"]

    def spy_eval(*a, **k):
        built_steps["eval"] = original_eval(*a, **k)
        return built_steps["eval"]

    _loop.make_epoch_step, _loop.make_eval_step = spy_train, spy_eval
    events = CompileEvents()
    per_epoch = []
    marks = [0]

    def on_epoch_end(epoch, record):
        per_epoch.append({
            "epoch": epoch + 1,
            "train_cache_size": built_steps["train"]._cache_size(),
            "eval_cache_size": built_steps["eval"].compiled._cache_size(),
            "backend_compiles": sum(1 for kind, _, _ in events.records[marks[-1] :] if kind == "compile"),
            "seconds": record["seconds"],
        })
        marks.append(len(events.records))

    try:
        with events.active():
            dc.fit(
                net, optimizer, dc.paper_protocol(config), train, key=jax.random.PRNGKey(1), epochs=2, batch_size=batch,
                test=test, eval_batch_size=eval_batch, progress=False, on_epoch_end=on_epoch_end,
            )
    finally:
        _loop.make_epoch_step, _loop.make_eval_step = original_train, original_eval
    return {
        "train_samples": train_count, "test_samples": test_count, "batch": batch, "eval_batch": eval_batch,
        "steps_per_epoch": -(-train_count // batch), "last_batch": train_count % batch, "data": data, "epochs": per_epoch,
    }


def worker(args) -> None:
    answer = _first_steps(args) if args.part == "first" else _epoch_counts(args)
    common.write_worker_answer(args.worker_out, answer)


def run(args) -> dict:
    runs = 2 if args.quick else 5
    record = common.new_record(NAME, args)
    record["settings"] = {"fresh_processes": runs, "counter": "jit _cache_size() and jax.monitoring backend_compile_duration events"}
    firsts = []
    for _ in range(runs):
        answer = common.run_worker(NAME, ["--part", "first"] + (["--quick"] if args.quick else []), timeout=900)
        if answer["ok"]:
            firsts.append(answer["result"])
        else:
            record["notes"].append(f"fresh-process run failed: {answer['error']}")
    record["fresh_runs"] = firsts
    summary_keys = ("import_s", "build_s", "first_train_s", "second_train_s", "first_eval16_s", "first_eval1000_s", "second_eval16_s", "second_eval1000_s")
    record["summary"] = {key: common.summarize([r[key] for r in firsts]) for key in summary_keys if firsts}
    if firsts:
        record["summary"]["first_train_xla_compile_s"] = common.summarize([r["first_train_breakdown"]["compile"] for r in firsts])
        record["summary"]["first_train_trace_s"] = common.summarize([r["first_train_breakdown"]["trace"] for r in firsts])
        record["summary"]["first_train_lower_s"] = common.summarize([r["first_train_breakdown"]["lower"] for r in firsts])
    for key, stats in record["summary"].items():
        record["rows"].append({"measurement": key, **stats})

    answer = common.run_worker(NAME, ["--part", "epoch"] + (["--quick"] if args.quick else []), timeout=1800)
    if answer["ok"]:
        record["epoch_counts"] = answer["result"]
    else:
        record["notes"].append(f"epoch compile count failed: {answer['error']}")

    first = record["summary"].get("first_train_s")
    measured = None if not first else first["median"]
    common.add_target(
        record, "first train step incl. compilation (fresh process)", goal=f"<= {common.TARGETS['first_step_s']:.1f} s (reference 0.38 s)",
        measured=measured, unit="s", met=None if measured is None else measured <= common.TARGETS["first_step_s"],
    )
    counts = record.get("epoch_counts")
    if counts:
        first_epoch, second_epoch = counts["epochs"][0], counts["epochs"][-1]
        ok = first_epoch["train_cache_size"] == 1 and first_epoch["eval_cache_size"] == 1 and second_epoch["train_cache_size"] == 1 and second_epoch["eval_cache_size"] == 1
        common.add_target(
            record, "one compilation per batch shape and phase (ragged last batch)", goal="train cache 1, eval cache 1, no new compile in epoch 2",
            measured=second_epoch["backend_compiles"], unit="compiles in epoch 2", met=ok and second_epoch["backend_compiles"] == 0,
            note=f"{counts['train_samples']} samples at batch {counts['batch']} (last batch {counts['last_batch']}); epoch 1 compiled {first_epoch['backend_compiles']} XLA programs in all",
        )
    return record


def table(record: dict, markdown: bool = False) -> str:
    headers = ["measurement", "median s", "min s", "IQR s", "runs"]
    rows = [[r["measurement"], r.get("median"), r.get("min"), r.get("iqr"), r.get("n")] for r in record["rows"]]
    render = common.markdown_table if markdown else common.text_table
    text = render(headers, rows)
    counts = record.get("epoch_counts")
    if counts:
        epoch_rows = [[e["epoch"], e["train_cache_size"], e["eval_cache_size"], e["backend_compiles"], e["seconds"]] for e in counts["epochs"]]
        text += "\n\n" + render(["epoch", "train cache size", "eval cache size", "XLA compiles in epoch", "epoch s"], epoch_rows)
    return text


def _worker_arguments(parser) -> None:
    parser.add_argument("--part", choices=("first", "epoch"), help=argparse.SUPPRESS)


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv, worker=worker, add_arguments=_worker_arguments)


if __name__ == "__main__":
    main()
