"""Train-step time against hidden width and batch size for the three coupling layouts.

Paper configuration (input density 0.1, recurrent density 0.01, 1 + 5 + 5 sweeps) at hidden
``H`` in {500, 1000, 2000, 4000, 8000} and batch in {16, 128, 1024}, for:

- ``auto``: ``kernel="auto"``, which picks ELL for both sparse couplings; on CPU its products run
  in the native kernels;
- ``ell_xla``: ``kernel="ell"`` with ``DARNAX_NATIVE=0``, the pure-XLA gathers (the flag is read
  once per process, so each layout runs in its own subprocess);
- ``dense``: ``kernel="dense"``, masked dense matrices (the reference library's layout).

A configuration is skipped, with the reason in the record, when the step time predicted from the same
layout and batch at ``H / 2`` (times 4, as the dense cost and the recurrent non-zeros grow with
``H**2``) exceeds ``--max-step-s``.

Run: ``python -m bench.scaling [--quick]``.
"""

import argparse
import sys
import time

import numpy as np

from bench import _common as common

NAME = "scaling"
LAYOUTS = {
    "auto": {"kernel": "auto", "env": {}},
    "ell_xla": {"kernel": "ell", "env": {"DARNAX_NATIVE": "0"}},
    "dense": {"kernel": "dense", "env": {}},
}
FULL = {"hidden": [500, 1000, 2000, 4000, 8000], "batch": [16, 128, 1024], "budget_s": 8.0, "max_step_s": 20.0, "repeats": 100}
QUICK = {"hidden": [500, 1000, 2000, 4000], "batch": [16, 128], "budget_s": 1.5, "max_step_s": 3.0, "repeats": 20}


def _measure(layout: str, hidden: int, batch: int, settings: dict, x, y) -> dict:
    import jax

    from bench._setup import coupling_stats, device_batches, paper_setup, time_train_steps

    setup = paper_setup(hidden=hidden, batch_size=batch, kernel=LAYOUTS[layout]["kernel"])
    couplings = coupling_stats(setup.net)
    batches = device_batches(x, y, batch, 4)
    timing = time_train_steps(setup, batches, repeats=settings["repeats"], pipelined=50, budget_s=settings["budget_s"])
    build_s = setup.build_s
    del setup, batches
    jax.clear_caches()
    return {"build_s": build_s, "couplings": couplings, **timing}


def worker(args) -> None:
    """Measure one layout over the whole grid (in a subprocess) and write the rows to ``--worker-out``."""
    from bench._common import native_info

    settings = QUICK if args.quick else FULL
    x, y, data = common.mnist_or_random(4 * max(settings["batch"]))
    answer = {"layout": args.layout, "native": native_info(), "data": data, "rows": []}
    for batch in settings["batch"]:
        previous, previous_hidden = None, None
        for hidden in settings["hidden"]:
            row = {"layout": args.layout, "hidden": hidden, "batch": batch}
            predicted = None if previous is None else previous * (hidden / previous_hidden) ** 2
            if predicted is not None and predicted > settings["max_step_s"]:
                row["skipped"] = f"predicted {predicted:.1f} s per step (from H={previous_hidden}) exceeds the {settings['max_step_s']:.0f} s limit"
                answer["rows"].append(row)
                print(f"{args.layout} H={hidden} B={batch}: skipped", file=sys.stderr, flush=True)
                continue
            start = time.perf_counter()
            try:
                row.update(_measure(args.layout, hidden, batch, settings, x, y))
            except MemoryError as error:
                row["skipped"] = f"out of memory: {error}"
                answer["rows"].append(row)
                continue
            row["wall_s"] = time.perf_counter() - start
            answer["rows"].append(row)
            previous, previous_hidden = row["latency"]["median"], hidden
            print(f"{args.layout} H={hidden} B={batch}: {row['latency']['median'] * 1e3:.2f} ms", file=sys.stderr, flush=True)
    common.write_worker_answer(args.worker_out, answer)


def _slope(xs, ys) -> float | None:
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def run(args) -> dict:
    settings = QUICK if args.quick else FULL
    record = common.new_record(NAME, args)
    record["settings"] = {**settings, "layouts": {k: {"kernel": v["kernel"], "env": v["env"]} for k, v in LAYOUTS.items()}}
    record["layout_native"] = {}
    for layout, spec in LAYOUTS.items():
        worker_args = ["--layout", layout] + (["--quick"] if args.quick else [])
        answer = common.run_worker(NAME, worker_args, env=spec["env"], timeout=4 * 3600)
        if not answer["ok"]:
            record["notes"].append(f"layout {layout} failed: {answer['error']}")
            continue
        record["layout_native"][layout] = answer["result"]["native"]
        record["data"] = answer["result"]["data"]
        for row in answer["result"]["rows"]:
            if "latency" in row:
                nnz = row["couplings"]["J"]["nnz"] + row["couplings"]["W_in"]["nnz"]
                step = row["latency"]["median"]
                row["nnz_total"] = nnz
                row["ns_per_nnz"] = step / nnz * 1e9
                row["ns_per_nnz_sample"] = step / (nnz * row["batch"]) * 1e9
                row["images_per_s"] = row["batch"] / step
            record["rows"].append(row)
        skipped = [r for r in answer["result"]["rows"] if "skipped" in r]
        for row in skipped:
            record["notes"].append(f"{layout} H={row['hidden']} batch={row['batch']} skipped: {row['skipped']}")
    _targets(record)
    return record


def _find(record, layout, hidden, batch):
    for row in record["rows"]:
        if row["layout"] == layout and row["hidden"] == hidden and row["batch"] == batch and "latency" in row:
            return row
    return None


def _targets(record: dict) -> None:
    references = common.REFERENCE["hidden_step_ms"]
    for hidden, factor in ((2000, common.TARGETS["train_speedup_h2000"]), (4000, common.TARGETS["train_speedup_h4000"])):
        row = _find(record, "auto", hidden, 16)
        goal_ms = references[hidden] / factor
        measured = None if row is None else row["latency"]["median"] * 1e3
        common.add_target(
            record, f"train step H={hidden}, batch 16 (auto)", goal=f"<= {goal_ms:.2f} ms ({factor:.0f}x the reference's {references[hidden]} ms)",
            measured=measured, unit="ms", met=None if measured is None else measured <= goal_ms,
        )
    rows = sorted((r for r in record["rows"] if r["layout"] == "auto" and r["batch"] == 16 and "latency" in r), key=lambda r: r["hidden"])
    large = [r for r in rows if r["hidden"] >= 1000]
    slope_nnz = _slope([r["nnz_total"] for r in large], [r["latency"]["median"] for r in large])
    slope_h = _slope([r["hidden"] for r in large], [r["latency"]["median"] for r in large])
    record["slopes"] = {"auto_b16_vs_nnz": slope_nnz, "auto_b16_vs_hidden": slope_h}
    dense = sorted((r for r in record["rows"] if r["layout"] == "dense" and r["batch"] == 16 and "latency" in r), key=lambda r: r["hidden"])
    dense_large = [r for r in dense if r["hidden"] >= 1000]
    record["slopes"]["dense_b16_vs_hidden"] = _slope([r["hidden"] for r in dense_large], [r["latency"]["median"] for r in dense_large])
    common.add_target(
        record, "step time follows nnz, not H^2 (auto, batch 16, H >= 1000)", goal="log-log slope vs nnz <= 1.15",
        measured=slope_nnz, unit="slope", met=None if slope_nnz is None else slope_nnz <= 1.15,
        note="" if slope_h is None else f"slope vs H {slope_h:.2f} (H^2 would be 2)",
    )


def table(record: dict, markdown: bool = False) -> str:
    headers = ["layout", "H", "batch", "nnz J", "nnz W_in", "ms/step", "min / IQR ms", "images/s", "ns/nnz", "first step s"]
    rows = []
    for row in record["rows"]:
        if "skipped" in row:
            rows.append([row["layout"], row["hidden"], row["batch"], "-", "-", "skipped", "-", "-", "-", "-"])
            continue
        stats = row["latency"]
        rows.append([
            row["layout"], row["hidden"], row["batch"], row["couplings"]["J"]["nnz"], row["couplings"]["W_in"]["nnz"],
            stats["median"] * 1e3, common.spread(stats), row["images_per_s"], row["ns_per_nnz"], row["first_call_s"],
        ])
    render = common.markdown_table if markdown else common.text_table
    return render(headers, rows)


def _worker_arguments(parser) -> None:
    parser.add_argument("--layout", choices=sorted(LAYOUTS), help=argparse.SUPPRESS)


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv, worker=worker, add_arguments=_worker_arguments)


if __name__ == "__main__":
    main()
