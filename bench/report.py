"""Build ``docs/benchmarks.md`` and ``docs/step_time_vs_hidden.png`` from the JSON records.

Run: ``python -m bench.report`` (reads ``bench/results``; pass ``--results DIR`` once per folder,
for example a second folder with the records of a GPU machine). Records whose JAX backend is
``gpu`` go to the GPU section. The method text below is written by hand; tables, figures and the
target verdicts come from the records.
"""

import argparse
import importlib
import json
import sys
from pathlib import Path

from bench import _common as common

DOCS = common.REPO_ROOT / "docs"
PLOT_NAME = "step_time_vs_hidden.png"
ORDER = ("train_throughput", "phases", "scaling", "kernels", "compile_time", "lightning_overhead", "dlpack", "memory", "baseline_mlp")
TITLES = {
    "train_throughput": "Training and evaluation throughput (H = 2000)",
    "phases": "Where the time of a train step goes",
    "scaling": "Step time against hidden width, batch and layout",
    "kernels": "Sparse-coupling kernels",
    "compile_time": "Compilation",
    "lightning_overhead": "Lightning bridge overhead",
    "dlpack": "DLPack exchange",
    "memory": "Peak memory",
    "baseline_mlp": "Backprop baselines in torch",
}

METHOD = """\
- **Timings.** Every figure is a summary of several samples: the median, the minimum and the
  interquartile range (IQR). A *latency* sample times one call and waits for its result
  (`jax.block_until_ready`); a *back-to-back* sample times many steps and waits once, as a
  training loop does, so JAX's asynchronous dispatch overlaps the Python work of one step with the
  computation of the previous one. Compilation is never inside a timed sample: the first call is
  reported separately.
- **Contention.** The development machine has 2 cores that other processes share. A step that is
  preempted takes several times longer, which moves the median and the IQR but hardly the
  minimum. When the load average exceeds the core count, read the minimum as the estimate of an
  idle machine and the median as what a loaded machine gives.
- **Reference figures.** Those of the reference library (darnax 0.4) were measured on the same
  2-core machine with the same paper configuration (784 -> 2000 -> 10, input density 0.1,
  recurrent density 0.01, batch 16, 1 warmup + 5 clamped + 5 free sweeps, weight decay every
  step): train step 15.5 ms (11.3 ms jitted step + 3.9 ms eager decay), first step 0.38 s,
  hidden 500 / 4000 at 3.1 / 135 ms, evaluation 2.3-3.4k images/s at batch 16 and 6.8k at
  batch 1000, 60-74 s per MNIST epoch. Speed-ups are reference time / measured median.
- **Data.** MNIST from the IDX files (pixels / 255), read with NumPy. Step times do not depend
  on the pixel values (every sweep runs to its fixed count), so benchmarks that only time steps
  fall back to random pixels when MNIST is missing, and their record notes it.
- **Processes.** Each benchmark runs in its own process. Layout comparisons that need
  `DARNAX_NATIVE=0`, first-call timings and peak-memory measurements start a fresh subprocess
  per configuration, because the native-kernel flag, the jit caches and `ru_maxrss` are
  per process.
- **Compile counts.** `compiled._cache_size()` of a jitted function is the number of entries in
  its in-memory cache, one per distinct input signature; `jax.monitoring` backend-compile events
  count every XLA compilation in the process, eager operations included.
"""


def load_records(folders: list[Path]) -> tuple[dict, dict]:
    """Return ``(cpu_records, gpu_records)``: ``{benchmark: record}`` from every JSON file found."""
    cpu, gpu = {}, {}
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            if path.name == "run_all.json":
                continue
            record = json.loads(path.read_text())
            if "benchmark" not in record:
                continue
            record["_path"] = str(path)
            target = gpu if record.get("machine", {}).get("backend") == "gpu" else cpu
            target[record["benchmark"]] = record
    return cpu, gpu


def _table(record: dict) -> str:
    module = importlib.import_module(f"bench.{record['benchmark']}")
    return module.table(record, markdown=True)


def _status(target: dict) -> str:
    if target["met"] is None:
        return "not measured"
    return "met" if target["met"] else "**shortfall**"


def _measured(target: dict) -> str:
    value = target["measured"]
    if value is None:
        return "-"
    text = common._cell(float(value))
    return f"{text} {target['unit']}".strip()


def _max_load(records: dict) -> float:
    loads = []
    for record in records.values():
        machine = record.get("machine", {})
        for key in ("load_average_start", "load_average_end"):
            if machine.get(key):
                loads.append(machine[key][0])
    return max(loads, default=0.0)


def _machine_section(records: dict) -> list[str]:
    first = next((r for r in records.values() if "backend" in r["machine"]), next(iter(records.values())))
    machine, versions = first["machine"], first["versions"]
    native = next((r["native"] for r in records.values() if "native" in r), {})
    lines = ["## Machine and versions", ""]
    rows = [
        ["CPU", machine.get("cpu_model")],
        ["logical / usable CPUs", f"{machine.get('logical_cpus')} / {machine.get('usable_cpus')}"],
        ["memory", f"{machine.get('memory_gib')} GiB"],
        ["platform", machine.get("platform")],
        ["JAX backend, devices", f"{machine.get('backend', '-')}, {', '.join(machine.get('devices', []))}"],
        ["native ELL kernels", f"available: {native.get('available')}, used: {native.get('used')}, DARNAX_NATIVE={native.get('DARNAX_NATIVE')}"],
    ]
    rows += [[name, version] for name, version in versions.items()]
    lines.append(common.markdown_table(["item", "value"], rows))
    lines += ["", "Per benchmark (load average = 1, 5, 15 minute averages at start and end):", ""]
    rows = []
    for name in ORDER:
        if name in records:
            r = records[name]
            m = r["machine"]
            rows.append([name, "quick" if r["quick"] else "full", r.get("started"), f"{m.get('load_average_start')} -> {m.get('load_average_end')}", r.get("wall_s")])
    lines.append(common.markdown_table(["benchmark", "settings", "started (UTC)", "load average", "wall s"], rows))
    differing = sorted({json.dumps(r["versions"], sort_keys=True) for r in records.values()})
    if len(differing) > 1:
        lines += ["", "NOTE: the records were made with different package versions; see each JSON file."]
    return lines


def _summary_section(records: dict) -> list[str]:
    rows = []
    for name in ORDER:
        for target in records.get(name, {}).get("targets", []):
            rows.append([target["name"], target["goal"], _measured(target), _status(target), target.get("note", "")])
    ambition = _ambition(records)
    if ambition:
        rows.append(ambition)
    lines = ["## Targets", ""]
    lines.append(common.markdown_table(["target", "goal", "measured (median)", "status", "note"], rows) if rows else "No targets were measured.")
    return lines


def _ambition(records: dict):
    train, mlp = records.get("train_throughput"), records.get("baseline_mlp")
    if not train or not mlp or "sign_mlp_b16_epoch_s" not in mlp:
        return None
    darnax, torch_epoch = train["projected_mnist_epoch_s"], mlp["sign_mlp_b16_epoch_s"]
    return [
        "ambition: darnax MNIST epoch as fast as the torch sign-MLP epoch (batch 16)", f"<= {torch_epoch:.1f} s (fastest torch thread count)",
        f"{darnax:.1f} s", "met" if darnax <= torch_epoch else "**shortfall**", f"darnax / torch = {darnax / torch_epoch:.1f}x",
    ]


def _phase_explanation(records: dict) -> list[str]:
    """Explain the H = 2000 step time from the phases, kernels and throughput records."""
    phases, kernels, train = records.get("phases"), records.get("kernels"), records.get("train_throughput")
    lines = []
    if phases and "2000" in {str(k) for k in phases.get("per_sweep_ms", {})}:
        per_sweep = {str(k): v for k, v in phases["per_sweep_ms"].items()}["2000"]
        fixed = {str(k): v for k, v in phases["fixed_ms"].items()}["2000"]
        full = next(r for r in phases["rows"] if r["hidden"] == 2000 and r["measurement"].endswith("1 + 5 + 5"))
        dispatch = next((r for r in phases["rows"] if r["hidden"] == 2000 and r["measurement"].startswith("jit call")), None)
        total = full["latency"]["median"] * 1e3
        lines.append(
            f"- At H = 2000, batch 16, the train step takes {total:.2f} ms (median latency, minimum "
            f"{full['latency']['min'] * 1e3:.2f} ms). Without any sweep it takes {fixed:.2f} ms: computing the input "
            f"messages through `W_in`, the forward fields, the rule increments of `W_in`, `J` and `W_out`, the "
            f"optimizer update with decay and the re-masking. The 11 sweeps add {per_sweep:.3f} ms each."
        )
        if dispatch:
            lines.append(f"- Passing the network and optimizer state through a jit call that does no work costs {dispatch['latency']['median'] * 1e3:.3f} ms.")
    if kernels:
        def find(coupling, fmt, batch):
            return next((r for r in kernels["rows"] if r["coupling"].startswith(coupling) and r["format"] == fmt and r["batch"] == batch and "product" in r), None)

        w_native, j_native = find("W_in", "ell_native", 16), find("J", "ell_native", 16)
        if w_native and j_native:
            times = [w_native["product"], w_native["increment"], j_native["product"], j_native["increment"]]
            total_us = sum(t["median"] for t in times) * 1e6
            lines.append(
                f"- Native kernel times at batch 16 (medians): `W_in` product {times[0]['median'] * 1e6:.0f} us and increment "
                f"{times[1]['median'] * 1e6:.0f} us; `J` product {times[2]['median'] * 1e6:.0f} us and increment "
                f"{times[3]['median'] * 1e6:.0f} us. The part of a step without sweeps calls each of the four once, "
                f"{total_us:.0f} us together; a sweep calls the `J` product once."
            )
        w_big = find("W_in", "ell_native", 1024)
        d_big = find("W_in", "dense_masked", 1024)
        if w_big and d_big:
            lines.append(
                f"- At batch 1024 the native `W_in` product takes {w_big['product']['median'] * 1e3:.2f} ms against "
                f"{d_big['product']['median'] * 1e3:.2f} ms for the masked dense product. The native kernels run on one "
                "thread (one XLA custom call), while XLA's dense dot uses every core, which is why large evaluation "
                "batches gain less than batch 16."
            )
    if train:
        rows = {r["measurement"]: r for r in train["rows"]}
        fit = next((r for w, r in rows.items() if w.startswith("dc.fit")), None)
        back = next((r for w, r in rows.items() if "back to back" in w), None)
        if fit and back:
            lines.append(
                f"- `dc.fit` spends {fit['ms_per_step']:.2f} ms per step, compiled steps run back to back on 32 device "
                f"batches {back['ms_per_step']:.2f} ms. The loop's host work per batch (shuffled NumPy indexing, padding, "
                "one host-to-device copy) runs while the previous step computes; the key folding and metric sums run "
                "inside the step. The two rows come from different runs, so load on the machine moves them apart."
            )
    return lines


def _shortfall_notes(records: dict) -> list[str]:
    lines = []
    compile_record = records.get("compile_time")
    if compile_record and compile_record.get("summary", {}).get("first_train_xla_compile_s"):
        summary = compile_record["summary"]
        lines.append(
            f"- First step: of {summary['first_train_s']['median']:.2f} s, XLA compilation takes "
            f"{summary['first_train_xla_compile_s']['median']:.2f} s, tracing {summary['first_train_trace_s']['median']:.2f} s and lowering "
            f"{summary['first_train_lower_s']['median']:.2f} s (median over fresh processes). The step is one XLA program with three "
            "`lax.scan` phases, two native custom calls per coupling and the per-module optimizer."
        )
    lightning = records.get("lightning_overhead")
    if lightning and len(lightning.get("rows", [])) == 3 and lightning.get("host_work"):
        bridge, core, empty = lightning["rows"]
        extra = bridge["ms_per_step"] - core["ms_per_step"]
        host = "; ".join(f"{r['measurement']} {r['seconds']['median'] * 1e6:.0f} us" for r in lightning["host_work"])
        lines.append(
            f"- Lightning: {bridge['ms_per_step']:.2f} ms per step against {core['ms_per_step']:.2f} ms for `dc.fit`, "
            f"{extra:.2f} ms more. Lightning's loop alone, with a training step that only takes the placeholder "
            f"optimizer step, costs {empty['ms_per_step']:.2f} ms per batch. Host work of the bridge's training step, "
            f"in Python before each dispatch: {host}. Dispatch is asynchronous, so this Python work runs "
            "while the previous step computes; on 2 cores it shares them with XLA's threads and the native kernels, "
            "so it is not entirely hidden. Both loops let at most one step wait behind the running one "
            "(`dc.DispatchWindow`). Without that bound Lightning's Python ran far ahead of the device, and the "
            "Trainer loop took 0.94 instead of 0.84 ms per step (interleaved epochs of one run)."
        )
    train, phases, mlp = records.get("train_throughput"), records.get("phases"), records.get("baseline_mlp")
    if train and mlp and phases and "sign_mlp_b16_epoch_s" in mlp:
        steps = 60000 / 16
        needed_ms = mlp["sign_mlp_b16_epoch_s"] / steps * 1e3
        fixed = {str(k): v for k, v in phases.get("fixed_ms", {}).items()}.get("2000")
        fit_ms = train["projected_mnist_epoch_s"] / steps * 1e3
        if fixed is not None:
            lines.append(
                f"- Epoch against torch: an MNIST epoch is {steps:.0f} steps at batch 16. Matching the torch sign-MLP epoch "
                f"({mlp['sign_mlp_b16_epoch_s']:.1f} s) needs {needed_ms:.2f} ms per step including the loop; `dc.fit` "
                f"takes {fit_ms:.2f} ms, and the part of the compiled step without any sweep alone takes {fixed:.2f} ms."
            )
        kernels = records.get("kernels")
        j_row = next((r for r in (kernels or {}).get("rows", []) if r["coupling"].startswith("J") and r["format"] == "ell_native" and r["batch"] == 16 and "product" in r), None)
        per_sweep = {str(k): v for k, v in phases.get("per_sweep_ms", {}).items()}.get("2000")
        if j_row and per_sweep:
            product_ms = j_row["product"]["median"] * 1e3
            lines.append(
                f"- A sweep costs {per_sweep:.3f} ms, of which the `J` product alone takes {product_ms:.3f} ms. With one "
                "sparse binary hidden layer a sweep is one native call (product, self-coupling, constant field, sign) "
                "on a state kept in the kernels' (units, batch) layout for the whole phase, plus XLA's count of "
                "changed units. Before this fusion a sweep cost 0.063 ms, mostly XLA's transposes around the product "
                "and the sign update."
            )
    if mlp:
        by_threads = {}
        for row in mlp["rows"]:
            if row["activation"] == "sign" and row["batch"] == 16:
                by_threads[row["threads"]] = row["epoch_s"]["median"]
        if len(by_threads) > 1:
            text = ", ".join(f"{n} thread(s): {s:.1f} s" for n, s in sorted(by_threads.items()))
            note = ""
            if max(by_threads.values()) > 2 * min(by_threads.values()):
                note = " The spread comes from contention: torch's thread pool waits for cores that other processes hold."
            lines.append(f"- torch sign-MLP epoch at batch 16 by thread count: {text}.{note}")
    return lines


def _plot(records: dict, path: Path) -> bool:
    scaling = records.get("scaling")
    if not scaling or not any("latency" in r for r in scaling["rows"]):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"auto": "tab:blue", "ell_xla": "tab:orange", "dense": "tab:green"}
    styles = {16: "-", 128: "--", 1024: ":"}
    figure, axes = plt.subplots(figsize=(7.5, 5.0))
    series = {}
    for row in scaling["rows"]:
        if "latency" in row:
            series.setdefault((row["layout"], row["batch"]), []).append((row["hidden"], row["latency"]["median"] * 1e3))
    for (layout, batch), points in sorted(series.items()):
        points.sort()
        xs, ys = zip(*points)
        axes.plot(xs, ys, styles.get(batch, "-"), marker="o", color=colors.get(layout, "gray"), label=f"{layout}, batch {batch}")
    reference = sorted(common.REFERENCE["hidden_step_ms"].items())
    axes.plot([h for h, _ in reference], [t for _, t in reference], "kx", markersize=9, label="reference library, batch 16")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("hidden units H (input density 0.1, recurrent density 0.01)")
    axes.set_ylabel("train step, median ms")
    quick = " (quick settings)" if scaling.get("quick") else ""
    axes.set_title(f"Train step time against H{quick}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def _benchmark_section(number: int, record: dict) -> list[str]:
    module = importlib.import_module(f"bench.{record['benchmark']}")
    intro = (module.__doc__ or "").strip().split("\n\n")
    lines = [f"## {number}. {TITLES.get(record['benchmark'], record['benchmark'])}", ""]
    body = [part for part in intro[1:] if not part.startswith("Run:")]
    lines += [intro[0], ""] + sum(([part, ""] for part in body), [])
    lines += [f"Command: `{record['command']}` ({'quick' if record['quick'] else 'full'} settings, {record.get('wall_s')} s).", ""]
    lines += [_table(record), ""]
    for note in record.get("notes", []):
        lines.append(f"- {note}")
    if record.get("notes"):
        lines.append("")
    return lines


def _extra(record: dict) -> list[str]:
    name = record["benchmark"]
    lines = []
    if name == "train_throughput":
        first = record["first_call_s"]
        lines.append(
            f"Projected MNIST epoch (60,000 images at the `dc.fit` rate): {record['projected_mnist_epoch_s']:.1f} s "
            f"(reference 60-74 s). First calls in this process: train {first['train']:.2f} s, evaluation batch 16 "
            f"{first['eval16']:.2f} s, batch 1000 {first['eval1000']:.2f} s."
        )
    if name == "scaling" and record.get("slopes"):
        slopes = {k: (f"{v:.2f}" if v is not None else "-") for k, v in record["slopes"].items()}
        lines.append(
            f"Log-log slopes for H >= 1000 at batch 16: auto against nnz {slopes['auto_b16_vs_nnz']}, auto against H "
            f"{slopes['auto_b16_vs_hidden']}, dense against H {slopes['dense_b16_vs_hidden']}. The non-zeros grow as "
            "0.01 H^2 in `J` plus 78.4 H in `W_in`, and the dense layout's work as H^2. A slope below 1 against the "
            "non-zeros means that per-step costs which do not grow with the couplings still weigh at these sizes."
        )
        lines.append("")
        lines.append(f"![train step time against H]({PLOT_NAME})")
    return lines + ([""] if lines else [])


def _gpu_section(gpu: dict) -> list[str]:
    lines = ["## GPU", ""]
    if not gpu:
        lines.append(
            "GPU figures are not measured yet: no GPU machine was available. `python -m bench.run_all --out "
            "bench/results_gpu` runs unchanged on a CUDA machine (JAX on the GPU uses the XLA ELL path, the torch "
            "baselines stay on the CPU); `python -m bench.report --results bench/results --results bench/results_gpu` "
            "then fills this section."
        )
        return lines
    first = next(iter(gpu.values()))
    lines.append(f"Devices: {', '.join(first['machine'].get('devices', []))}; CPU {first['machine'].get('cpu_model')}.")
    lines.append("")
    for name in ORDER:
        if name in gpu:
            record = gpu[name]
            lines += [f"### {TITLES.get(name, name)} (GPU)", "", f"Command: `{record['command']}`.", "", _table(record), ""]
            for target in record.get("targets", []):
                lines.append(f"- {target['name']}: {_measured(target)} ({_status(target)}; goal {target['goal']})")
            lines.append("")
    return lines


def build(records: dict, gpu: dict) -> str:
    """Return the Markdown page for the CPU ``records`` and the ``gpu`` records."""
    lines = [
        "# Benchmarks",
        "",
        "This page is generated by `python -m bench.report` from the JSON records in `bench/results/`; the method "
        "text is in `bench/report.py`. `python -m bench.run_all --out bench/results` reruns the whole suite "
        "(about 12 minutes with full settings on a 2-core machine) and regenerates this page; "
        "`python -m bench.<name>` runs one benchmark.",
        "",
    ]

    if any(r.get("quick") for r in records.values()):
        lines += [
            "NOTE: some records below come from `--quick` runs (short settings, few samples). Rerun the suite with "
            "full settings on an idle machine before quoting them.",
            "",
        ]
    cores = next(iter(records.values()))["machine"].get("usable_cpus") or 1
    load = _max_load(records)
    if load > cores:
        lines += [
            f"NOTE: the 1-minute load average reached {load:.1f} on {cores} cores during these runs, so steps were often "
            "preempted. Medians and IQRs are inflated; the minimums are closer to an idle machine.",
            "",
        ]

    lines += _summary_section(records) + [""]
    explanation = _phase_explanation(records) + _shortfall_notes(records)
    if explanation:
        lines += ["### Where the time goes", ""] + explanation + [""]
    lines += _machine_section(records) + [""]
    lines += ["## Method", "", METHOD]

    for number, name in enumerate((n for n in ORDER if n in records), start=1):
        lines += _benchmark_section(number, records[name]) + _extra(records[name])
    missing = [name for name in ORDER if name not in records]
    if missing:
        lines += ["## Not measured", "", f"No records for: {', '.join(missing)}.", ""]
    lines += _gpu_section(gpu)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, action="append", help="folder of JSON records (repeatable; default bench/results, plus bench/results_gpu if present)")
    parser.add_argument("--docs", type=Path, default=DOCS, help="output folder (default docs)")
    args = parser.parse_args(argv)
    folders = args.results or [common.DEFAULT_OUT] + ([common.REPO_ROOT / "bench" / "results_gpu"] if (common.REPO_ROOT / "bench" / "results_gpu").exists() else [])
    records, gpu = load_records(folders)
    if not records:
        print(f"No benchmark records found in {', '.join(map(str, folders))}; run python -m bench.run_all first.", file=sys.stderr)
        return 1
    args.docs.mkdir(parents=True, exist_ok=True)
    plotted = _plot(records, args.docs / PLOT_NAME)
    text = build(records, gpu)
    if not plotted:
        text = text.replace(f"![train step time against H]({PLOT_NAME})", "(no scaling record: plot not drawn)")
    (args.docs / "benchmarks.md").write_text(text)
    print(f"wrote {args.docs / 'benchmarks.md'}" + (f" and {args.docs / PLOT_NAME}" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
