"""Seconds per MNIST epoch of the backprop baselines in plain torch (no Lightning).

Models: the bridge's ``BackpropMLP`` networks with two hidden layers of the width whose weight
count matches the darnax paper model at H = 2000 (``matched_hidden_width(216800)`` = 215):
the sign MLP (clamp + sign with a straight-through gradient, no bias, Adam lr 0.003) and a ReLU
MLP (bias, Adam lr 0.001). Batch 16 and 128, cross-entropy, a fresh shuffle per epoch, with
``torch.set_num_threads(n)`` for each ``n`` in ``--threads``. The test accuracy after the timed
epochs is recorded to show that the baselines learn.

NOTE: with 2 threads on a 2-core machine that other processes also load, torch's thread pool
waits for busy cores, and a step can take ten times longer than with 1 thread. The 1-thread rows
show how much of an epoch is that contention.

Run: ``python -m bench.baseline_mlp [--quick]``.
"""

import time

import numpy as np

from bench import _common as common

NAME = "baseline_mlp"
DARNAX_H2000_WEIGHTS = int(0.1 * 784 * 2000 + 0.01 * 2000**2 + 10 * 2000)


def _epoch(net, optimizer, x, y, batch: int, generator) -> float:
    import torch
    from torch.nn import functional

    order = torch.randperm(x.shape[0], generator=generator)
    start = time.perf_counter()
    for first in range(0, x.shape[0], batch):
        rows = order[first : first + batch]
        optimizer.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(net(x[rows]), y[rows])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def run(args) -> dict:
    import torch

    from darnax_bridge._baselines import BackpropMLP, matched_hidden_width

    threads = [int(n) for n in args.threads.split(",")]
    epochs, fraction = (1, 0.1) if args.quick else (3, 1.0)
    record = common.new_record(NAME, args, with_jax=False)
    width = matched_hidden_width(DARNAX_H2000_WEIGHTS)
    record["settings"] = {"epochs": epochs, "epoch_fraction": fraction, "threads": threads, "hidden_width": width, "darnax_weights": DARNAX_H2000_WEIGHTS}
    x_np, y_np = common.load_mnist("train")
    xt_np, yt_np = common.load_mnist("test")
    count = int(x_np.shape[0] * fraction)
    x, y = torch.from_numpy(x_np[:count]), torch.from_numpy(y_np[:count].astype(np.int64))
    xt, yt = torch.from_numpy(xt_np), torch.from_numpy(yt_np.astype(np.int64))
    for n_threads, activation, batch in ((n, a, b) for n in threads for a in ("sign", "relu") for b in (16, 128)):
        torch.set_num_threads(n_threads)
        torch.manual_seed(0)
        module = BackpropMLP(hidden=width, depth=2, activation=activation, seed=0)
        net = module.net
        optimizer = torch.optim.Adam(net.parameters(), lr=module.hparams.lr)
        generator = torch.Generator().manual_seed(0)
        seconds = [_epoch(net, optimizer, x, y, batch, generator) / fraction for _ in range(epochs)]
        with torch.no_grad():
            accuracy = float((net(xt).argmax(dim=1) == yt).float().mean())
        stats = common.summarize(seconds)
        record["rows"].append({
            "model": f"{activation} MLP 784-{width}-{width}-10", "activation": activation, "batch": batch, "threads": n_threads,
            "parameters": sum(p.numel() for p in net.parameters()), "epoch_s": stats, "images_per_s": 60000 / stats["median"],
            "test_accuracy": accuracy, "epochs_trained": epochs * fraction,
        })
    # The fastest sign-MLP epoch at batch 16 over the thread counts is the figure a darnax epoch is compared with.
    sign16 = [r["epoch_s"]["median"] for r in record["rows"] if r["activation"] == "sign" and r["batch"] == 16]
    record["sign_mlp_b16_epoch_s"] = min(sign16)
    if fraction < 1:
        record["notes"].append(f"quick run: each epoch is {fraction:.0%} of MNIST, times are scaled to the full 60,000 images")
    return record


def table(record: dict, markdown: bool = False) -> str:
    headers = ["model", "batch", "threads", "weights", "epoch s (median)", "min / IQR s", "images/s", "test accuracy", "epochs trained"]
    rows = [[r["model"], r["batch"], r["threads"], r["parameters"], r["epoch_s"]["median"], common.spread(r["epoch_s"], 1.0), r["images_per_s"], r["test_accuracy"], r["epochs_trained"]] for r in record["rows"]]
    render = common.markdown_table if markdown else common.text_table
    return render(headers, rows)


def _add_arguments(parser) -> None:
    parser.add_argument("--threads", default="1,2", help="comma-separated torch intra-op thread counts to run (default 1,2)")


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv, add_arguments=_add_arguments)


if __name__ == "__main__":
    main()
