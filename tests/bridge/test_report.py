"""Tests for the comparison table, CSVLogger reader and learning-curve plot."""

import math

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from matplotlib.image import imread
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from darnax_bridge._baselines import BackpropMLP
from darnax_bridge._report import (
    _collect_curves,
    format_comparison_table,
    plot_learning_curves,
    read_metrics_csv,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The layout Lightning 2.6 CSVLogger writes: epoch, step, then the metric names in
# sorted order, with empty cells on rows that did not log a metric.
CSV_TEXT = """\
epoch,step,train_acc,train_loss,val_acc
0,49,,0.71,
0,93,,0.52,
0,93,,,0.875
0,93,0.8125,,
1,143,,0.31,
1,187,,,0.9
1,187,0.9375,,
"""


# --- format_comparison_table ---------------------------------------------------------


def test_table_lines():
    rows = [
        {
            "model": "darnax H=2000",
            "test_acc": 0.9812,
            "params": 216_800,
            "wall_time_s": 512.34,
            "samples_per_s": 1953.4,
        },
        {
            "model": "sign MLP h=215",
            "test_acc": 0.9731,
            "params": 216_935,
            "samples_per_s": 41234.56,
        },
        {"model": "relu MLP", "wall_time_s": None},
    ]
    lines = format_comparison_table(rows).split("\n")
    assert len(lines) == 5
    assert lines[0] == "model           test acc (%)  trainable params  wall time (s)  samples/s"
    assert lines[1] == "--------------  ------------  ----------------  -------------  ---------"
    assert lines[2] == "darnax H=2000          98.12           216,800          512.3      1,953"
    assert lines[3] == "sign MLP h=215         97.31           216,935              -     41,235"
    assert lines[4] == "relu MLP                   -                 -              -          -"


def test_table_zero_values():
    lines = format_comparison_table(
        [{"model": "m", "test_acc": 0.0, "params": 0, "wall_time_s": 0.0, "samples_per_s": 0}]
    ).split("\n")
    assert lines[0] == "model  test acc (%)  trainable params  wall time (s)  samples/s"
    assert lines[2] == "m              0.00                 0            0.0          0"


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        ([], ValueError, "`rows` is empty"),
        ({"model": "m"}, TypeError, "`rows` must be a list of dicts, got dict"),
        ([{"model": "m", "accuracy": 0.9}], ValueError, r"Row 0 has unknown keys \['accuracy'\]"),
        ([{"test_acc": 0.9}], ValueError, "Row 0 has no `model` name"),
        ([{"model": ""}], ValueError, "Row 0: `model` must be a non-empty string"),
        ([{"model": "m", "test_acc": 97.3}], ValueError, r"must be a fraction in \[0, 1\], got 97.3"),
        ([{"model": "m", "wall_time_s": math.nan}], ValueError, "`wall_time_s` is nan"),
        ([{"model": "m", "params": 10.5}], ValueError, "`params` must be a whole number, got 10.5"),
        ([{"model": "m", "params": "many"}], TypeError, "`params` must be a number or None"),
        ([{"model": "m", "samples_per_s": -1.0}], ValueError, "must be non-negative, got -1.0"),
        ([{"model": "a"}, "b"], TypeError, "Row 1 must be a dict, got str"),
    ],
)
def test_table_bad_rows(rows, error, message):
    with pytest.raises(error, match=message):
        format_comparison_table(rows)


# --- read_metrics_csv ----------------------------------------------------------------


def test_read_csv_series(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(CSV_TEXT)
    series = read_metrics_csv(path)
    assert sorted(series) == ["train_acc", "train_loss", "val_acc"]
    assert series["train_loss"] == [(49, 0.71), (93, 0.52), (143, 0.31)]
    assert series["val_acc"] == [(93, 0.875), (187, 0.9)]
    assert series["train_acc"] == [(93, 0.8125), (187, 0.9375)]


def test_read_csv_empty_metric(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,test_acc,val_acc\n0,9,,0.5\n")
    assert read_metrics_csv(str(path)) == {"test_acc": [], "val_acc": [(9, 0.5)]}


def test_read_csv_float_step(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,val_acc\n12.0,0.5\n")
    assert read_metrics_csv(path) == {"val_acc": [(12, 0.5)]}


def test_read_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv not found"):
        read_metrics_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch,val_acc\n0,0.5\n", r"has no `step` column \(header: \['epoch', 'val_acc'\]\)"),
        ("epoch,step,val_acc\n0,,0.5\n", "line 2: the `step` cell is empty"),
        ("epoch,step,val_acc\n0,3.5,0.5\n", "line 2: `step` must be an integer, got '3.5'"),
        ("epoch,step,val_acc\n0,3,0.5\n0,4,high\n", "line 3: `val_acc` is not a number: 'high'"),
        ("", "has no `step` column"),
    ],
)
def test_read_csv_bad_content(tmp_path, text, message):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_metrics_csv(path)


# --- plot_learning_curves ------------------------------------------------------------


def test_plot_writes_png(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(CSV_TEXT)
    series = read_metrics_csv(path)
    output = plot_learning_curves(
        {"sign MLP": series, "relu MLP": {"val_acc": [(93, 0.9), (187, 0.95)]}},
        tmp_path / "plots" / "curves.png",
    )
    assert output == tmp_path / "plots" / "curves.png"
    data = output.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000
    # figsize 7 x 4.5 inches at 100 dpi.
    assert imread(output).shape[:2] == (450, 700)


def test_plot_samples_axis():
    series = {"m": {"val_acc": [(93, 0.875), (187, 0.9)], "train_acc": [(93, 0.8)]}}
    curves = _collect_curves(series, ("val_acc", "train_acc", "test_acc"), "samples", 16)
    assert curves == [
        ("m val_acc", [94.0 * 16, 188.0 * 16], [0.875, 0.9]),
        ("m train_acc", [94.0 * 16], [0.8]),
    ]
    steps = _collect_curves(series, ("val_acc",), "step", None)
    assert steps == [("m val_acc", [93.0, 187.0], [0.875, 0.9])]


@pytest.mark.parametrize(
    ("series", "kwargs", "error", "message"),
    [
        ({}, {}, ValueError, "Nothing to plot"),
        (
            {"m": {"train_loss": [(1, 0.5)]}},
            {},
            ValueError,
            r"Nothing to plot.*\['val_acc', 'train_acc'\]",
        ),
        ({"m": {"val_acc": []}}, {}, ValueError, "Nothing to plot"),
        (
            {"m": {"val_acc": [(1, 0.5)]}},
            {"x_axis": "samples"},
            ValueError,
            "`batch_size` must be a positive int",
        ),
        (
            {"m": {"val_acc": [(1, 0.5)]}},
            {"x_axis": "epoch"},
            ValueError,
            "`x_axis` must be 'step' or 'samples'",
        ),
        (
            {"m": {"val_acc": [(1, 0.5)]}},
            {"metrics": "val_acc"},
            TypeError,
            "got the string 'val_acc'",
        ),
        ({"m": [(1, 0.5)]}, {}, TypeError, r"`series_by_model\['m'\]` must be a dict"),
    ],
)
def test_plot_bad_input(tmp_path, series, kwargs, error, message):
    output = tmp_path / "curves.png"
    with pytest.raises(error, match=message):
        plot_learning_curves(series, output, **kwargs)
    assert not output.exists()


# --- with a real CSVLogger -----------------------------------------------------------


def test_csv_logger_round_trip(tmp_path):
    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    x = torch.tensor(data.data[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target[order], dtype=torch.int64)
    train = DataLoader(TensorDataset(x[:1500], y[:1500]), batch_size=50)
    val = DataLoader(TensorDataset(x[1500:], y[1500:]), batch_size=297)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logger = CSVLogger(tmp_path, name="relu")
        trainer = L.Trainer(
            max_epochs=2,
            accelerator="cpu",
            logger=logger,
            log_every_n_steps=10,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        model = BackpropMLP(input_dim=64, hidden=32, activation="relu", seed=0)
        trainer.fit(model, train, val)
    finally:
        torch.set_num_threads(previous_threads)

    series = read_metrics_csv(tmp_path / "relu" / "version_0" / "metrics.csv")
    assert {"train_loss", "train_acc", "val_acc", "val_loss"} <= set(series)
    # 1500 / 50 = 30 batches per epoch, and epoch metrics carry the last batch's 0-based step.
    assert [step for step, _ in series["val_acc"]] == [29, 59]
    assert [step for step, _ in series["train_acc"]] == [29, 59]
    assert [step for step, _ in series["train_loss"]] == [9, 19, 29, 39, 49, 59]
    assert series["val_acc"][-1][1] == pytest.approx(trainer.callback_metrics["val_acc"].item())

    output = plot_learning_curves(
        {"relu": series}, tmp_path / "curves.png", x_axis="samples", batch_size=50
    )
    assert output.read_bytes()[:8] == PNG_SIGNATURE
