"""Peak resident memory of training, per hidden width and coupling layout.

Each configuration runs in a fresh process: import darnax_core, build the paper model at hidden
``H`` with ``kernel="auto"`` or ``"dense"``, and run a few train steps at batch 16 on random
pixels. The record keeps
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the imports and at the end, the bytes of all
arrays in the network and optimizer state, and on a GPU the device's peak bytes in use.

Run: ``python -m bench.memory [--quick]``.
"""

import argparse
import resource
import sys

from bench import _common as common

NAME = "memory"
STEPS = 5


def _max_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def worker(args) -> None:
    import jax
    import numpy as np

    import darnax_core  # noqa: F401 - counted in the baseline
    from bench._setup import coupling_stats, device_batches, paper_setup

    baseline = _max_rss_mib()
    setup = paper_setup(hidden=args.hidden, kernel=args.kernel)
    after_build = _max_rss_mib()
    leaves = jax.tree_util.tree_leaves((setup.net, setup.opt_state))
    state_bytes = int(sum(leaf.nbytes for leaf in leaves if hasattr(leaf, "nbytes")))
    # Random pixels: loading MNIST would add its own few hundred MiB to the peak.
    rng = np.random.default_rng(0)
    x, y = rng.random((STEPS * 16, 784), dtype=np.float32), rng.integers(0, 10, STEPS * 16).astype(np.int32)
    net, opt_state = setup.net, setup.opt_state
    key = jax.random.PRNGKey(0)
    for step, (xb, yb, mask) in enumerate(device_batches(x, y, 16, STEPS)):
        net, opt_state, metrics = setup.train_step.compiled(net, opt_state, xb, yb, jax.random.fold_in(key, step), mask)
    jax.block_until_ready((net, metrics))
    device_peak = None
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if stats:
        device_peak = stats.get("peak_bytes_in_use")
    answer = {
        "hidden": args.hidden, "kernel": args.kernel, "couplings": coupling_stats(setup.net), "rss_after_imports_mib": baseline,
        "rss_after_build_mib": after_build, "peak_rss_mib": _max_rss_mib(), "state_mib": state_bytes / 2**20,
        "device_peak_mib": None if device_peak is None else device_peak / 2**20,
    }
    common.write_worker_answer(args.worker_out, answer)


def run(args) -> dict:
    hiddens = (2000, 4000) if args.quick else (2000, 4000, 8000)
    record = common.new_record(NAME, args)
    record["settings"] = {"hidden": list(hiddens), "kernels": ["auto", "dense"], "batch": 16, "train_steps": STEPS}
    for hidden in hiddens:
        for kernel in ("auto", "dense"):
            answer = common.run_worker(NAME, ["--hidden", str(hidden), "--kernel", kernel], timeout=1800)
            if answer["ok"]:
                row = answer["result"]
                record["rows"].append(row)
            else:
                record["rows"].append({"hidden": hidden, "kernel": kernel, "failed": answer["error"]})
                record["notes"].append(f"H={hidden} {kernel} failed: {answer['error']}")
    return record


def table(record: dict, markdown: bool = False) -> str:
    headers = ["H", "kernel", "J layout", "peak RSS MiB", "after imports", "after build", "peak - imports", "net + optimizer arrays MiB", "device peak MiB"]
    rows = []
    for r in record["rows"]:
        if "failed" in r:
            rows.append([r["hidden"], r["kernel"], "failed", "-", "-", "-", "-", "-", "-"])
            continue
        rows.append([
            r["hidden"], r["kernel"], r["couplings"]["J"]["layout"], r["peak_rss_mib"], r["rss_after_imports_mib"],
            r["rss_after_build_mib"], r["peak_rss_mib"] - r["rss_after_imports_mib"], r["state_mib"], r["device_peak_mib"],
        ])
    render = common.markdown_table if markdown else common.text_table
    return render(headers, rows)


def _worker_arguments(parser) -> None:
    parser.add_argument("--hidden", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kernel", choices=("auto", "dense", "ell"), help=argparse.SUPPRESS)


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv, worker=worker, add_arguments=_worker_arguments)


if __name__ == "__main__":
    main()
