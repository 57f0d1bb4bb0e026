"""Tests for the ``darnax`` command: fit from a YAML config, compare, and argument errors."""

import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import darnax_core as dc
from darnax_bridge._compare import run_compare
from darnax_bridge.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "examples" / "configs"


def darnax(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the command in a fresh interpreter, as the console script would."""
    command = [sys.executable, "-m", "darnax_bridge.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_fit_quick_config(tmp_path):
    result = darnax(
        "fit",
        "--config",
        str(CONFIGS / "quick.yaml"),
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=20",
        "--trainer.limit_val_batches=5",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "lightning_logs" / "version_0"
    checkpoints = list((run_dir / "checkpoints").glob("*.ckpt"))
    assert [path.name for path in checkpoints] == ["epoch=0-step=20.ckpt"]
    checkpoint = torch.load(checkpoints[0], weights_only=True)
    assert checkpoint["global_step"] == 20
    assert checkpoint["hyper_parameters"]["hidden"] == 500
    rows = read_csv(run_dir / "metrics.csv")
    assert any(row["train_acc_step"] for row in rows)
    assert any(row["train_acc"] for row in rows)
    assert any(row["val_acc"] for row in rows)
    assert (run_dir / "config.yaml").is_file()
    assert "input->hidden" in result.stdout + result.stderr  # the JAX model summary

    # The checkpoint reloads for the other subcommands, run in this process.
    common = [
        "--config",
        str(CONFIGS / "quick.yaml"),
        f"--ckpt_path={checkpoints[0]}",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    main(["test", *common])
    test_rows = read_csv(tmp_path / "lightning_logs" / "version_1" / "metrics.csv")
    accuracy = float(test_rows[-1]["test_acc"])
    assert 0.3 < accuracy <= 1.0
    main(["validate", *common, "--trainer.limit_val_batches=5"])
    validation_rows = read_csv(tmp_path / "lightning_logs" / "version_2" / "metrics.csv")
    assert 0.0 <= float(validation_rows[-1]["val_acc"]) <= 1.0
    main(["predict", *common, "--trainer.limit_predict_batches=2", "--model.return_hidden=true"])


def test_compare_prints_table(tmp_path):
    output = tmp_path / "compare"
    result = darnax(
        "compare",
        "--epochs=1",
        "--hidden=100",
        "--samples-per-class=20",
        f"--output-dir={output}",
        "--no-progress-bar",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("model"))
    assert "test acc (%)" in lines[header]
    assert "trainable params" in lines[header]
    assert "samples/s" in lines[header]
    assert lines[header + 2].startswith("darnax (H=100, 1 ep)")
    assert lines[header + 3].startswith("sign MLP (2x")
    assert (output / "comparison.txt").read_text().splitlines() == lines[header : header + 4]
    assert (output / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_relu_baseline(tmp_path, capsys):
    rows = run_compare(
        ["--epochs=1", "--hidden=50", "--samples-per-class=10", "--baseline=relu", f"--output-dir={tmp_path}", "--no-progress-bar"]
    )
    assert [row["model"].split(" ")[0] for row in rows] == ["darnax", "relu"]
    assert rows[0]["params"] > 0
    assert rows[1]["params"] > 0
    assert 0.0 <= rows[1]["test_acc"] <= 1.0
    assert "relu MLP" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--model.hidden=abc"], 'Parser key "model.hidden"'),
        (["fit", "--model.optimizer=rmsprop"], "model.optimizer"),
        (["fit", "--model.lr=0.1"], "invalid configuration: `lr=0.1` applies to optimizer='sgd' or 'adam'"),
        (["fit", "--model.model_seed=-3"], "invalid configuration: `model_seed` must be None or an int"),
        (["fit", "--data.batch_size=0"], "batch_size must be an int >= 1, got 0"),
        (["fit", "--data=NoSuchDataModule"], "NoSuchDataModule"),
        (["train"], "train"),
        (["compare", "--epochs=0"], "expected a positive integer, got 0"),
        (["compare", "--baseline=tanh"], "invalid choice: 'tanh'"),
        (["compare", "--val-fraction=1.5"], "expected a number in [0, 1), got 1.5"),
        ([], "a subcommand is required"),
    ],
)
def test_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_tutorial09_config_matches_core():
    config = yaml.safe_load((CONFIGS / "tutorial09.yaml").read_text())
    model = config["model"]
    for field in dataclasses.fields(dc.PaperConfig):
        if field.name != "epochs":
            assert model[field.name] == getattr(dc.TUTORIAL_09, field.name), field.name
    assert config["data"]["init_args"]["root"] == "../shared/datasets/mnist"
    assert config["trainer"]["max_epochs"] == 1


def test_missing_data_folder_usage_error(tmp_path, capsys):
    args = ["fit", "--data=darnax_bridge.data.MNISTDataModule", f"--data.root={tmp_path / 'empty'}", "--trainer.max_steps=1", f"--trainer.default_root_dir={tmp_path}"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "darnax: error:" in err
    assert "empty" in err
    assert "Traceback" not in err
