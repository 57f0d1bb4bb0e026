"""Throughput of ``darnax_bridge.DarnaxModule`` under ``lightning.Trainer`` against ``dc.fit``.

Both train the paper configuration for two epochs over the same in-memory MNIST slice at batch
16; the second epoch is timed (so compilation is excluded), and the ratio of the two throughputs
is the bridge's share. Lightning runs with a ``DataLoader`` over torch tensors (``num_workers=0``,
no shuffling), no logger, no progress bar, no checkpointing and no validation. The core runs
``dc.fit`` with shuffling, its default. The two loops run alternately, 5 times each (once with
``--quick``). The per-batch host operations of the bridge's training step are also timed alone.

Run: ``python -m bench.lightning_overhead [--quick]``.
"""

import time

import jax
import numpy as np

import darnax_core as dc
from bench import _common as common

NAME = "lightning_overhead"


def _import_module():
    """Return ``DarnaxModule`` from the bridge, or raise ImportError with the reason."""
    import darnax_bridge

    module = getattr(darnax_bridge, "DarnaxModule", None)
    if module is None:
        from darnax_bridge._module import DarnaxModule as module
    return module


def _empty_module_cls():
    """Return a LightningModule whose training step only takes the placeholder optimizer step.

    It has the bridge's structure (manual optimisation, one zero-rate SGD over a placeholder
    parameter) and no JAX work, so its epoch time is Lightning's own per-batch cost.
    """
    import lightning as L
    import torch

    class EmptyStep(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.anchor = torch.nn.Parameter(torch.zeros(()))
            self.net = None

        def configure_optimizers(self):
            return torch.optim.SGD([self.anchor], lr=0.0)

        def training_step(self, batch, batch_idx):
            self.optimizers().step()
            return torch.zeros(())

    return EmptyStep


def _lightning_epoch_seconds(make_model, x, y, batch: int) -> list[float]:
    """Train ``make_model()`` for two epochs under a Trainer; return the seconds of each epoch."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class EpochTimer(L.Callback):
        def __init__(self):
            self.seconds = []
            self.start = None

        def on_train_epoch_start(self, trainer, pl_module):
            if pl_module.net is not None:
                jax.block_until_ready(pl_module.net)
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if pl_module.net is not None:
                jax.block_until_ready(pl_module.net)
            self.seconds.append(time.perf_counter() - self.start)

    loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))), batch_size=batch, shuffle=False, num_workers=0)
    model = make_model()
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer],
    )
    trainer.fit(model, train_dataloaders=loader)
    return timer.seconds


def _host_work(x, y, batch: int, repeats: int) -> list[dict]:
    """Time the per-batch host operations of the bridge's training step, one by one.

    Covers the torch-to-JAX conversions that ``DarnaxModule.training_step`` performs for a full
    and for a padded short batch, and the default import with a copy, which it does not use. The key folding and metric sums are not timed here, because
    they run inside the compiled step.
    """
    import torch

    from darnax_bridge._batches import pad_rows
    from darnax_bridge._dlpack import to_jax

    device = jax.devices()[0]
    xb, yb = torch.from_numpy(x[:batch]), torch.from_numpy(y[:batch].astype(np.int64))
    short_x, short_y = xb[: batch - 3], yb[: batch - 3]
    mask = torch.ones(batch, dtype=torch.bool)
    cases = {
        "to_jax((x, y, mask), copy=False), full batch (the bridge's import)": lambda: to_jax((xb, yb, mask), device=device, copy=False),
        "pad_rows + to_jax((x, y, mask), copy=False), short batch": lambda: to_jax(pad_rows(short_x, short_y, batch), device=device, copy=False),
        "to_jax((x, y, mask)) with the default copy": lambda: to_jax((xb, yb, mask), device=device),
    }
    rows = []
    for measurement, call in cases.items():
        jax.block_until_ready(call())
        samples = common.time_calls(call, repeats=repeats, number=50, block=jax.block_until_ready)
        rows.append({"measurement": measurement, "seconds": common.summarize(samples)})
    return rows


def _core_epoch_seconds(x, y, batch: int) -> list[float]:
    config = dc.TUTORIAL_09
    net = dc.paper_model(jax.random.PRNGKey(0), config)
    result = dc.fit(net, dc.paper_model_optimizer(net, config), dc.paper_protocol(config), (x, y), key=jax.random.PRNGKey(1), epochs=2, batch_size=batch, progress=False)
    return [h["seconds"] for h in result.history]


def run(args) -> dict:
    steps, runs = (40, 1) if args.quick else (1000, 5)
    batch = dc.TUTORIAL_09.batch_size
    record = common.new_record(NAME, args)
    record["settings"] = {"steps_per_epoch": steps, "batch": batch, "runs": runs, "timed": "second of two epochs"}
    x_all, y_all = common.load_mnist("train")
    x, y = x_all[: steps * batch], y_all[: steps * batch]
    try:
        module_cls = _import_module()
    except Exception as error:  # noqa: BLE001 - any import failure means the bridge cannot be measured
        record["notes"].append(f"could not be run: importing darnax_bridge.DarnaxModule failed with {type(error).__name__}: {error}")
        common.add_target(record, "Lightning throughput / plain loop", goal=f">= {common.TARGETS['lightning_fraction']:.0%}", measured=None, met=None, note="not measured")
        return record
    empty_cls = _empty_module_cls()

    def make_bridge():
        return module_cls(input_dim=x.shape[1], num_classes=10, batch_size=batch, model_seed=0, seed=0)

    lightning, core, empty = [], [], []
    for _ in range(runs):
        lightning.append(_lightning_epoch_seconds(make_bridge, x, y, batch)[-1])
        core.append(_core_epoch_seconds(x, y, batch)[-1])
        empty.append(_lightning_epoch_seconds(empty_cls, x, y, batch)[-1])
    images = steps * batch
    loops = (
        ("DarnaxModule + lightning.Trainer", lightning),
        ("dc.fit (plain JAX loop)", core),
        ("lightning.Trainer, empty training step (no JAX work)", empty),
    )
    for measurement, seconds in loops:
        stats = common.summarize(seconds)
        record["rows"].append({"measurement": measurement, "epoch_s": stats, "images_per_s": images / stats["median"], "ms_per_step": stats["median"] / steps * 1e3})
    record["host_work"] = _host_work(x, y, batch, repeats=10 if args.quick else 50)
    fraction = record["rows"][0]["images_per_s"] / record["rows"][1]["images_per_s"]
    record["fraction"] = fraction
    common.add_target(
        record, "Lightning throughput / plain loop", goal=f">= {common.TARGETS['lightning_fraction']:.0%}", measured=fraction, unit="ratio",
        met=fraction >= common.TARGETS["lightning_fraction"],
    )
    return record


def table(record: dict, markdown: bool = False) -> str:
    headers = ["loop", "epoch s (median)", "min / IQR s", "ms/step", "images/s"]
    rows = [[r["measurement"], r["epoch_s"]["median"], common.spread(r["epoch_s"], 1.0), r["ms_per_step"], r["images_per_s"]] for r in record["rows"]]
    render = common.markdown_table if markdown else common.text_table
    text = render(headers, rows) if rows else "not measured: " + "; ".join(record["notes"])
    if "fraction" in record:
        text += f"\n\nLightning / plain loop throughput: {record['fraction']:.3f}"
    if record.get("host_work"):
        host = [[r["measurement"], r["seconds"]["median"] * 1e6, common.spread(r["seconds"], 1e6)] for r in record["host_work"]]
        text += "\n\nHost work per training batch in the bridge:\n\n" + render(["operation", "us (median)", "min / IQR us"], host)
    return text


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv)


if __name__ == "__main__":
    main()
