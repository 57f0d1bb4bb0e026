"""``darnax compare``: train darnax and a backprop MLP on the same data and tabulate the results."""

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from ._baselines import BackpropMLP, count_parameters, matched_hidden_width
from ._module import DarnaxModule
from ._report import format_comparison_table, plot_learning_curves, read_metrics_csv
from .data import MNISTDataModule

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Train the darnax model (DarnaxModule, the paper's hyperparameters) and a backprop MLP baseline
on the same MNIST split, then print a table of test accuracy, trainable parameters, wall time
and training samples per second, and write learning curves (PNG), the table and the CSV logs
to --output-dir. The default baseline is the parameter-matched two-hidden-layer sign MLP;
its width is chosen so that its weight count is closest to darnax's trainable couplings.
Without --data.root the MNIST subset embedded in darnax (6,000 training and 1,000 test
images) is used.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``darnax compare``."""
    parser = argparse.ArgumentParser(prog="darnax compare", description=DESCRIPTION)
    parser.add_argument("--data.root", dest="data_root", default=None, help="directory with the four MNIST IDX files (raw or .gz); default: the embedded subset")
    parser.add_argument("--epochs", type=_positive_int, default=3, help="training epochs of the darnax model (default: 3)")
    parser.add_argument("--baseline-epochs", type=_positive_int, default=None, help="training epochs of the MLP (default: --epochs)")
    parser.add_argument("--hidden", type=_positive_int, default=2000, help="hidden units of the darnax model (default: 2000)")
    parser.add_argument("--baseline", choices=("sign", "relu"), default="sign", help="MLP activation: the authors' sign MLP or a ReLU MLP (default: sign)")
    parser.add_argument("--batch-size", type=_positive_int, default=16, help="training batch size of both models (default: 16)")
    parser.add_argument("--samples-per-class", type=_positive_int, default=None, help="keep this many training images per class (default: all)")
    parser.add_argument("--val-fraction", type=_fraction, default=0.1, help="fraction of the training split held out for validation curves (default: 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, the shuffling and both models' training (default: 0)")
    parser.add_argument("--output-dir", default="darnax_compare", help="directory for the table, the PNG and the logs (default: ./darnax_compare)")
    parser.add_argument(
        "--torch-threads",
        type=_positive_int,
        default=1,
        help="torch intra-op threads while the MLP trains (default: 1; its matrices are small, and extra "
        "threads mostly wait on each other: one epoch of the default MLP on the embedded subset took 24 s "
        "with torch's default threads and 2 s with one thread on a 2-core CPU)",
    )
    parser.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=True, help="show Lightning's progress bars")
    return parser


def _fit_and_test(model: L.LightningModule, datamodule: L.LightningDataModule, epochs: int, output_dir: Path, name: str, progress_bar: bool) -> dict[str, Any]:
    """Fit ``model``, test it, and return its table row values and the metrics file path."""
    csv_logger = CSVLogger(save_dir=output_dir, name=name)
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=csv_logger,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        log_every_n_steps=20,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - start
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    samples = epochs * len(datamodule.train_dataloader().dataset)
    return {
        "test_acc": float(results[0]["test_acc"]),
        "wall_time_s": seconds,
        "samples_per_s": samples / seconds,
        "metrics": Path(csv_logger.log_dir) / "metrics.csv",
    }


def run_compare(argv: list[str]) -> list[dict[str, Any]]:
    """Run ``darnax compare`` with command-line arguments ``argv``; return the table rows."""
    parser = build_parser()
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot create --output-dir {output_dir}: {error.strerror}; choose a writable directory.")
    baseline_epochs = args.baseline_epochs or args.epochs

    def datamodule() -> MNISTDataModule:
        return MNISTDataModule(
            root=args.data_root,
            batch_size=args.batch_size,
            samples_per_class=args.samples_per_class,
            val_fraction=args.val_fraction,
            seed=args.seed,
        )

    L.seed_everything(args.seed, workers=True)
    data = datamodule()
    darnax = DarnaxModule(hidden=args.hidden, input_dim=data.input_dim, num_classes=data.num_classes, seed=args.seed, batch_size=args.batch_size)
    darnax_run = _fit_and_test(darnax, data, args.epochs, output_dir, "darnax", args.progress_bar)
    darnax_params = darnax.trainable_parameters

    width = matched_hidden_width(darnax_params, input_dim=data.input_dim, num_classes=data.num_classes, depth=2)
    L.seed_everything(args.seed, workers=True)
    mlp = BackpropMLP(input_dim=data.input_dim, num_classes=data.num_classes, hidden=width, depth=2, activation=args.baseline, seed=args.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.torch_threads)
    try:
        mlp_run = _fit_and_test(mlp, datamodule(), baseline_epochs, output_dir, "mlp", args.progress_bar)
    finally:
        torch.set_num_threads(threads)

    names = {"darnax": f"darnax (H={args.hidden}, {args.epochs} ep)", "mlp": f"{args.baseline} MLP (2x{width}, {baseline_epochs} ep)"}
    rows = [
        {"model": names["darnax"], "params": darnax_params, **{k: v for k, v in darnax_run.items() if k != "metrics"}},
        {"model": names["mlp"], "params": count_parameters(mlp), **{k: v for k, v in mlp_run.items() if k != "metrics"}},
    ]
    table = format_comparison_table(rows)
    print(table)
    (output_dir / "comparison.txt").write_text(table + "\n")
    curves = {names[key]: read_metrics_csv(run["metrics"]) for key, run in (("darnax", darnax_run), ("mlp", mlp_run))}
    png = plot_learning_curves(curves, output_dir / "learning_curves.png", x_axis="samples", batch_size=args.batch_size)
    print(f"Wrote {output_dir / 'comparison.txt'} and {png}.")
    return rows
