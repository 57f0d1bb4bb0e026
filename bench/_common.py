"""Shared helpers of the benchmarks: machine facts, timing statistics, MNIST, records, subprocesses.

Every benchmark writes one JSON record::

    {"benchmark": name, "quick": bool, "command": "python -m bench.<name> ...",
     "machine": {...}, "versions": {...}, "native": {...}, "settings": {...},
     "rows": [...], "targets": [...], "notes": [...], "wall_s": float}

Timings are lists of seconds summarised by :func:`summarize` (median, min, quartiles, IQR).
"""

import argparse
import contextlib
import datetime
import gzip
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results"
PYTHON = sys.executable

# Figures of the reference library (darnax 0.4) on the 2-core AMD EPYC development machine, paper
# configuration: 784 -> 2000 -> 10, input density 0.1, recurrent density 0.01, batch 16,
# 1 warmup + 5 clamped + 5 free sweeps, weight decay every step.
REFERENCE = {
    "train_step_ms": 15.5,  # jitted step plus the eager decay call, median
    "train_jitted_ms": 11.3,
    "train_decay_ms": 3.9,
    "train_images_per_s": 1000.0,
    "epoch_s": (60.0, 74.0),
    "first_step_s": 0.38,
    "hidden_step_ms": {500: 3.1, 2000: 15.5, 4000: 135.0},
    "eval_images_per_s": {16: (2300.0, 3400.0), 1000: 6800.0},
}

# Targets of the fast core, as ratios to the reference or absolute limits.
TARGETS = {
    "train_speedup_h2000": 5.0,
    "train_speedup_h4000": 15.0,
    "eval_speedup_b16": 5.0,
    "first_step_s": 1.0,
    "lightning_fraction": 0.95,
    "torch_epoch_s": (2.0, 4.0),
}

VERSIONED_PACKAGES = ("jax", "jaxlib", "equinox", "optax", "torch", "lightning", "numpy")

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


# ----------------------------------------------------------------------------------------------
# Machine, versions, native kernels


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or :func:`platform.processor`)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def machine_info(*, with_jax: bool = True) -> dict:
    """Describe the machine: CPU, cores, memory, load average, and JAX's backend and devices."""
    info = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "memory_gib": _memory_gib(),
        "load_average_start": load_average(),
    }
    if with_jax:
        import jax

        devices = jax.devices()
        info["backend"] = jax.default_backend()
        info["devices"] = [f"{device.platform}:{getattr(device, 'device_kind', '')}" for device in devices]
    return info


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    return None


def versions() -> dict:
    """Return the Python version and the installed versions of the packages that matter here."""
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def native_info() -> dict:
    """Return whether the native ELL kernels are compiled, loaded and used on this backend."""
    import jax

    from darnax_core import _native

    available = _native.available()
    backend = jax.default_backend()
    return {
        "available": available,
        "used": bool(available and backend == "cpu"),
        "backend": backend,
        "DARNAX_NATIVE": os.environ.get("DARNAX_NATIVE"),
        "library": str(_native._library_path()) if available else None,
    }


# ----------------------------------------------------------------------------------------------
# Statistics and timing


def summarize(samples: Sequence[float]) -> dict:
    """Summarise timings: median, min, max, mean, first and third quartile, IQR and count."""
    values = np.asarray(list(samples), dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {
        "median": float(median),
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "q1": float(q1),
        "q3": float(q3),
        "iqr": float(q3 - q1),
        "n": int(values.size),
    }


def time_calls(call: Callable[[], object], *, repeats: int, number: int = 1, block: Callable | None = None) -> list[float]:
    """Return ``repeats`` samples of the seconds per call of ``call``, each timed over ``number`` calls.

    ``block`` (for example ``jax.block_until_ready``) receives the last call's result before the
    clock stops, so asynchronous work is counted. With ``number=1`` each sample is one call's
    latency; with larger ``number`` calls may overlap, which measures throughput.
    """
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = None
        for _ in range(number):
            result = call()
        if block is not None:
            block(result)
        samples.append((time.perf_counter() - start) / number)
    return samples


def repeats_within(seconds_per_sample: float, budget_s: float, *, low: int, high: int) -> int:
    """Return how many samples of ``seconds_per_sample`` fit ``budget_s``, clipped to ``[low, high]``."""
    if seconds_per_sample <= 0 or not math.isfinite(seconds_per_sample):
        return high
    return int(min(high, max(low, budget_s // seconds_per_sample)))


# ----------------------------------------------------------------------------------------------
# Data


def mnist_dir() -> Path | None:
    """Return the folder with the MNIST IDX files, or None when none is found.

    Searched in order: ``$DARNAX_MNIST_DIR``, ``<repo>/../shared/datasets/mnist``,
    ``<repo>/shared/datasets/mnist``, ``/work/shared/datasets/mnist``.
    """
    candidates = []
    if os.environ.get("DARNAX_MNIST_DIR"):
        candidates.append(Path(os.environ["DARNAX_MNIST_DIR"]))
    candidates += [
        REPO_ROOT.parent / "shared" / "datasets" / "mnist",
        REPO_ROOT / "shared" / "datasets" / "mnist",
        Path("/work/shared/datasets/mnist"),
    ]
    for folder in candidates:
        if all((folder / name).exists() for pair in MNIST_FILES.values() for name in pair):
            return folder
    return None


def _read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {raw[:4].hex()}).")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Return MNIST ``split`` as float32 pixels / 255 of shape ``(n, 784)`` and int32 labels.

    Raises FileNotFoundError naming the searched folders when the files are missing.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    folder = mnist_dir()
    if folder is None:
        raise FileNotFoundError(
            "MNIST IDX files not found; set DARNAX_MNIST_DIR to a folder with "
            f"{', '.join(MNIST_FILES['train'] + MNIST_FILES['test'])}."
        )
    images_name, labels_name = MNIST_FILES[split]
    images = _read_idx(folder / images_name)
    labels = _read_idx(folder / labels_name)
    x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
    return x, labels.astype(np.int32)


def mnist_or_random(count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Return ``count`` MNIST training samples, or uniform random pixels when MNIST is missing.

    The third value is ``"mnist"`` or ``"random"``. Step times of the dynamics do not depend on
    the pixel values, so the random fallback suits the timing-only benchmarks.
    """
    try:
        x, y = load_mnist("train")
    except FileNotFoundError:
        rng = np.random.default_rng(seed)
        return rng.random((count, 784), dtype=np.float32), rng.integers(0, 10, count).astype(np.int32), "random"
    reps = -(-count // x.shape[0])
    return np.tile(x, (reps, 1))[:count], np.tile(y, reps)[:count], "mnist"


# ----------------------------------------------------------------------------------------------
# Records, tables, command line


def base_parser(name: str, description: str) -> argparse.ArgumentParser:
    """Return the parser shared by the benchmarks: ``--quick`` and ``--out``."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help="short settings for a smoke test (seconds, not minutes)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON record (default bench/results)")
    parser.add_argument("--no-write", action="store_true", help="print only, write no JSON file")
    return parser


def benchmark_main(
    name: str,
    description: str,
    run: Callable[[argparse.Namespace], dict],
    table: Callable[[dict], str],
    argv: Sequence[str] | None = None,
    *,
    worker: Callable[[argparse.Namespace], None] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Parse the command line of benchmark ``name`` and run it, or its subprocess ``worker``.

    With a ``worker``, the hidden ``--worker`` and ``--worker-out`` options run one measurement in
    the current process (see :func:`run_worker`). ``add_arguments`` adds the benchmark's own options.
    """
    parser = base_parser(name, description)
    if worker is not None:
        parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if worker is not None and args.worker:
        worker(args)
        return
    record = run(args)
    finish_record(record, args, table(record))


def new_record(name: str, args: argparse.Namespace, *, with_jax: bool = True, argv: Sequence[str] | None = None) -> dict:
    """Start the JSON record of benchmark ``name``: command, machine, versions, start time."""
    argv = sys.argv[1:] if argv is None else list(argv)
    record = {
        "benchmark": name,
        "quick": bool(getattr(args, "quick", False)),
        "command": " ".join(["python", "-m", f"bench.{name}", *map(shlex.quote, argv)]),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(with_jax=with_jax),
        "versions": versions(),
        "settings": {},
        "rows": [],
        "targets": [],
        "notes": [],
        "_t0": time.perf_counter(),
    }
    if with_jax:
        record["native"] = native_info()
    return record


def add_target(record: dict, name: str, *, goal: str, measured: float | None, met: bool | None, unit: str = "", note: str = "") -> None:
    """Append a target check (``met`` is None when it could not be measured)."""
    record["targets"].append({"name": name, "goal": goal, "measured": measured, "unit": unit, "met": met, "note": note})


def finish_record(record: dict, args: argparse.Namespace, table: str) -> dict:
    """Close the record (load average, wall time), print the table and the JSON, and write the file."""
    record["machine"]["load_average_end"] = load_average()
    record["wall_s"] = round(time.perf_counter() - record.pop("_t0"), 2)
    text = json.dumps(record, indent=1, default=_json_default)
    print(table)
    print(text)
    if not getattr(args, "no_write", False):
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{record['benchmark']}.json"
        path.write_text(text + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return record


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def text_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Return a plain-text table with right-aligned columns."""
    cells = [[str(h) for h in headers]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(headers))]
    lines = ["  ".join(value.rjust(widths[k]) for k, value in enumerate(row)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Return a GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 0.01:
            return f"{value:.3g}"
        return f"{value:.2e}"
    return str(value)


def spread(stats: dict, scale: float = 1e3) -> str:
    """Return ``"min / IQR"`` of a timing summary times ``scale`` (1e3: milliseconds), for tables."""
    if not stats or stats.get("n", 0) == 0:
        return "-"
    return f"{_cell(stats['min'] * scale)} / {_cell(stats['iqr'] * scale)}"


# ----------------------------------------------------------------------------------------------
# Subprocess workers


def run_worker(module: str, worker_args: Sequence[str], *, env: dict | None = None, timeout: float = 1800.0) -> dict:
    """Run ``python -m bench.<module> --worker ...`` in a fresh process and return its JSON result.

    The worker writes its result to the file named by ``--worker-out``. Returns
    ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": ...}`` with the tail of stderr;
    a timeout or a crash is reported, not raised.
    """
    with tempfile.TemporaryDirectory() as folder:
        answer = Path(folder) / "answer.json"
        command = [PYTHON, "-m", f"bench.{module}", "--worker", *worker_args, "--worker-out", str(answer)]
        merged = dict(os.environ)
        merged.update(env or {})
        try:
            done = subprocess.run(command, cwd=REPO_ROOT, env=merged, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout:.0f} s", "command": " ".join(worker_args)}
        if done.returncode != 0 or not answer.exists():
            tail = (done.stderr or "")[-1500:]
            return {"ok": False, "error": f"exit code {done.returncode}: {tail}", "command": " ".join(worker_args)}
        return {"ok": True, "result": json.loads(answer.read_text())}


def write_worker_answer(path: Path, answer: dict) -> None:
    """Write a worker's JSON result to ``path``, where the parent process reads it back."""
    Path(path).write_text(json.dumps(answer, default=_json_default))
