"""Run the whole benchmark suite, one fresh process per benchmark, then write the report.

Run: ``python -m bench.run_all --out bench/results`` (add ``--quick`` for a smoke test of a few
minutes). Each benchmark's output goes to ``<out>/logs/<name>.log`` and its record to
``<out>/<name>.json``; ``<out>/run_all.json`` lists exit codes and durations. A failing benchmark
is reported and the suite goes on. Works unchanged on a CUDA machine: JAX then runs on the GPU
(the ELL products use XLA gathers there) and the torch baselines stay on the CPU.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._common import DEFAULT_OUT, PYTHON, REPO_ROOT, load_average

BENCHMARKS = (
    "train_throughput",
    "phases",
    "kernels",
    "compile_time",
    "scaling",
    "lightning_overhead",
    "dlpack",
    "memory",
    "baseline_mlp",
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON records and logs (default bench/results)")
    parser.add_argument("--quick", action="store_true", help="short settings for every benchmark")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed per benchmark (default 4 h)")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate docs/benchmarks.md afterwards")
    args = parser.parse_args(argv)

    chosen = [name for name in args.only.split(",") if name] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    out = args.out.resolve()
    # Benchmarks run from the repository root; a relative path keeps the recorded commands portable.
    relative = os.path.relpath(out, REPO_ROOT)
    out_arg = out if relative.startswith("..") else Path(relative)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # torch and JAX may share one GPU; without this JAX reserves most of its memory at start.
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    status = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "load_average_start": load_average(),
        "benchmarks": {},
    }
    failed = []
    for name in chosen:
        command = [PYTHON, "-m", f"bench.{name}", "--out", str(out_arg)] + (["--quick"] if args.quick else [])
        print(f"[run_all] {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        with open(logs / f"{name}.log", "w") as log:
            try:
                code = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        seconds = time.perf_counter() - start
        status["benchmarks"][name] = {"exit_code": code, "seconds": round(seconds, 1), "log": str((logs / f"{name}.log").relative_to(out))}
        print(f"[run_all] {name}: exit {code} after {seconds:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    status["load_average_end"] = load_average()
    (out / "run_all.json").write_text(json.dumps(status, indent=1) + "\n")

    if not args.no_report:
        code = subprocess.run([PYTHON, "-m", "bench.report", "--results", str(out_arg)], cwd=REPO_ROOT, env=env).returncode
        if code != 0:
            failed.append("report")
    if failed:
        print(f"[run_all] failed: {', '.join(failed)} (see {logs})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
