"""Comparison tables and learning-curve plots for darnax and baseline runs.

Plain functions: they read Lightning ``CSVLogger`` files and write text or PNG, and
need neither a Trainer nor a display.
"""

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

Series = list[tuple[int, float]]

# (row key, column header, kind) in display order.
_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model", "model", "text"),
    ("test_acc", "test acc (%)", "percent"),
    ("params", "trainable params", "count"),
    ("wall_time_s", "wall time (s)", "seconds"),
    ("samples_per_s", "samples/s", "rate"),
)
_MISSING = "-"


def _format_cell(key: str, kind: str, value: Any, row_index: int) -> str:
    if value is None:
        return _MISSING
    if kind == "text":
        if not isinstance(value, str) or not value:
            raise ValueError(f"Row {row_index}: `model` must be a non-empty string, got {value!r}.")
        return value

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"Row {row_index}: `{key}` must be a number or None, got {value!r} "
            f"of type {type(value).__name__}."
        )
    if not math.isfinite(value):
        raise ValueError(
            f"Row {row_index}: `{key}` is {value}. Pass None to show a missing value as '-'."
        )
    if value < 0:
        raise ValueError(f"Row {row_index}: `{key}` must be non-negative, got {value}.")

    if kind == "percent":
        if value > 1:
            raise ValueError(
                f"Row {row_index}: `test_acc` must be a fraction in [0, 1], got {value}. "
                "Divide a percentage by 100."
            )
        return f"{100 * value:.2f}"
    if kind == "count":
        if value != int(value):
            raise ValueError(f"Row {row_index}: `params` must be a whole number, got {value}.")
        return f"{int(value):,}"
    if kind == "seconds":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def format_comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Format run results as a fixed-width text table.

    Parameters
    ----------
    rows
        One mapping per run with the keys ``model`` (str, required), ``test_acc``
        (fraction in [0, 1], shown as a percentage with two decimals), ``params``
        (int, shown with thousands separators), ``wall_time_s`` (float, one decimal)
        and ``samples_per_s`` (float, no decimals). A missing key or ``None`` is shown
        as ``-``.

    Returns
    -------
    str
        A header line, a dashed rule and one line per row, joined by newlines with no
        trailing newline. The model column is left-aligned and the number columns
        right-aligned.
    """
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise TypeError(f"`rows` must be a list of dicts, got {type(rows).__name__}.")
    if len(rows) == 0:
        raise ValueError("`rows` is empty. Pass at least one run to tabulate.")

    known_keys = {key for key, _, _ in _TABLE_COLUMNS}
    cells: list[list[str]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"Row {index} must be a dict, got {type(row).__name__}.")
        unknown = sorted(set(row) - known_keys)
        if unknown:
            raise ValueError(
                f"Row {index} has unknown keys {unknown}. Expected keys are "
                f"{sorted(known_keys)}."
            )
        if row.get("model") is None:
            raise ValueError(f"Row {index} has no `model` name, but every row needs one.")
        cells.append(
            [_format_cell(key, kind, row.get(key), index) for key, _, kind in _TABLE_COLUMNS]
        )

    headers = [header for _, header, _ in _TABLE_COLUMNS]
    widths = [
        max(len(headers[column]), *(len(line[column]) for line in cells))
        for column in range(len(headers))
    ]

    def join(values: list[str]) -> str:
        parts = [values[0].ljust(widths[0])]
        parts += [value.rjust(width) for value, width in zip(values[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    lines = [join(headers), "  ".join("-" * width for width in widths)]
    lines += [join(line) for line in cells]
    return "\n".join(lines)


def _parse_step(text: str, path: Path, line_number: int) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise ValueError(f"{path}, line {line_number}: `step` must be an integer, got {text!r}.")
    return int(value)


def read_metrics_csv(path: str | Path) -> dict[str, Series]:
    """Read a Lightning ``CSVLogger`` ``metrics.csv`` into per-metric series.

    The file has a ``step`` column, usually an ``epoch`` column, and one column per
    logged metric that is empty on rows that did not log it. Returns
    ``{metric: [(step, value), ...]}`` in file order for every metric column other
    than ``step`` and ``epoch``, skipping empty cells. A metric that is empty on every
    row maps to an empty list.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the header has no ``step`` column, or a step or value is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Metrics file {path} not found. Pass the metrics.csv inside a CSVLogger "
            "version folder, e.g. logs/lightning_logs/version_0/metrics.csv."
        )

    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fieldnames = reader.fieldnames or []
        if "step" not in fieldnames:
            raise ValueError(
                f"{path} has no `step` column (header: {fieldnames}), so it is not a "
                "Lightning CSVLogger metrics.csv."
            )
        metric_names = [name for name in fieldnames if name not in ("step", "epoch")]
        series: dict[str, Series] = {name: [] for name in metric_names}

        # Line 1 is the header, so data rows start at line 2.
        for line_number, record in enumerate(reader, start=2):
            step_text = (record.get("step") or "").strip()
            if not step_text:
                raise ValueError(f"{path}, line {line_number}: the `step` cell is empty.")
            step = _parse_step(step_text, path, line_number)
            for name in metric_names:
                text = (record.get(name) or "").strip()
                if not text:
                    continue
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(
                        f"{path}, line {line_number}: `{name}` is not a number: {text!r}."
                    ) from None
                series[name].append((step, value))

    return series


def _collect_curves(
    series_by_model: Mapping[str, Mapping[str, Series]],
    metrics: Sequence[str],
    x_axis: str,
    batch_size: int | None,
) -> list[tuple[str, list[float], list[float]]]:
    """Return ``(label, xs, ys)`` for every model and metric that has points."""
    lines: list[tuple[str, list[float], list[float]]] = []
    for model_name, series in series_by_model.items():
        if not isinstance(series, Mapping):
            raise TypeError(
                f"`series_by_model[{model_name!r}]` must be a dict of metric name to "
                f"(step, value) points, got {type(series).__name__}."
            )
        for metric in metrics:
            points = series.get(metric, [])
            if not points:
                logger.info(
                    "Model %r has no %r points, so that curve is skipped.", model_name, metric
                )
                continue
            steps = [step for step, _ in points]
            if x_axis == "samples":
                xs = [float((step + 1) * batch_size) for step in steps]
            else:
                xs = [float(step) for step in steps]
            ys = [float(value) for _, value in points]
            lines.append((f"{model_name} {metric}", xs, ys))

    return lines


def plot_learning_curves(
    series_by_model: Mapping[str, Mapping[str, Series]],
    path: str | Path,
    metrics: Sequence[str] = ("val_acc", "train_acc"),
    x_axis: Literal["step", "samples"] = "step",
    batch_size: int | None = None,
) -> Path:
    """Plot accuracy curves, one line per model and metric, and save them as a PNG.

    Parameters
    ----------
    series_by_model
        ``{model name: {metric: [(step, value), ...]}}``, e.g. one
        :func:`read_metrics_csv` result per model.
    path
        Output PNG file. Missing parent folders are created.
    metrics
        Metric names to draw. A model without one of them is skipped for that metric.
    x_axis
        ``"step"`` plots the logged step. ``"samples"`` plots ``(step + 1) * batch_size``,
        the samples seen after the batch at that step, because Lightning logs the
        0-based index of the last batch.
    batch_size
        Training batch size, required when ``x_axis="samples"``.
        NOTE: the samples count assumes every batch is full, so it overestimates by
        the missing samples of short last batches when ``drop_last`` is off.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ValueError
        If no requested metric has any point in any model, or an argument is invalid.
    """
    if x_axis not in ("step", "samples"):
        raise ValueError(f"`x_axis` must be 'step' or 'samples', got {x_axis!r}.")
    if x_axis == "samples":
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(
                f"`batch_size` must be a positive int when x_axis='samples', got {batch_size!r}."
            )
    if isinstance(metrics, str):
        raise TypeError(
            f"`metrics` must be a sequence of names, got the string {metrics!r}. "
            f"Write ({metrics!r},) for a single metric."
        )
    if not isinstance(series_by_model, Mapping):
        raise TypeError(
            f"`series_by_model` must be a dict of model name to metric series, "
            f"got {type(series_by_model).__name__}."
        )

    lines = _collect_curves(series_by_model, metrics, x_axis, batch_size)
    if not lines:
        raise ValueError(
            f"Nothing to plot: no model in {sorted(series_by_model)} has points for the "
            f"metrics {list(metrics)}. Check the metric names in the logs."
        )

    figure = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, xs, ys in lines:
        axes.plot(xs, ys, marker="o", markersize=3, label=label)
    axes.set_xlabel("samples seen" if x_axis == "samples" else "step")
    axes.set_ylabel("accuracy")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    logger.info("Wrote %d learning curves to %s", len(lines), path)
    return path
