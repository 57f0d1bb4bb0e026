"""Compare fixed-point counts with theory and measure how often sign dynamics reach them.

Prints three tables:

1. The mean number of fixed points over 300 random coupling matrices, found by exhaustive
   enumeration, against ``2^N * Phi(J_D / sigma)^N`` with ``sigma^2 = (N - 1) / N`` and
   against the large-N form with ``sigma = 1``.
2. The fraction of runs that reach a fixed point within 100 sweeps for one layer of 100
   units, against J_D, for synchronous and asynchronous updates from random starts.
3. The same for a two-layer chain with J_D = 0 and inter-layer coupling lambda, for
   synchronous and sequential (layer by layer) updates.

Usage::

    python examples/theory_fixed_points.py [--seed 0] [--plot curves.png]
"""

import argparse
import math
import time

import jax
import numpy as np

from darnax_core._theory import expected_fixed_points, mean_fixed_point_count
from darnax_core._theory_dynamics import accessibility, chain_accessibility

COUNT_SIZES = (10, 12, 14)
COUNT_SELF_COUPLINGS = (0.0, 0.5, 1.0)
COUNT_SAMPLES = 300

ACCESS_UNITS = 100
ACCESS_SELF_COUPLINGS = tuple(np.round(np.arange(0.0, 2.01, 0.2), 2))
ACCESS_LAMBDAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
SWEEPS = 100
STARTS = 16
SAMPLES = 16


def print_count_table(key: jax.Array) -> None:
    print(f"Mean fixed-point count over {COUNT_SAMPLES} random J (exhaustive enumeration)")
    print(f"{'N':>3} {'J_D':>5} {'measured':>10} {'s.e.':>8} {'finite-N':>10} "
          f"{'large-N':>10} {'z':>6}")
    for n in COUNT_SIZES:
        for j_d in COUNT_SELF_COUPLINGS:
            estimate = mean_fixed_point_count(jax.random.fold_in(key, n), n, j_d,
                                              samples=COUNT_SAMPLES)
            finite = expected_fixed_points(n, j_d)
            large = expected_fixed_points(n, j_d, finite_size=False)
            z = (estimate.mean - finite) / estimate.standard_error
            print(f"{n:>3} {j_d:>5.2f} {estimate.mean:>10.2f} {estimate.standard_error:>8.2f} "
                  f"{finite:>10.2f} {large:>10.2f} {z:>6.2f}")


def print_curves(title: str, parameter: str, values: tuple, curves: dict) -> None:
    print(title)
    names = list(curves)
    print(f"{parameter:>6} " + " ".join(f"{name:>22}" for name in names))
    for i, value in enumerate(values):
        cells = []
        for name in names:
            curve = curves[name]
            sweeps = float(curve.mean_first_fixed_sweep[i])
            sweeps_text = "-" if math.isnan(sweeps) else f"{sweeps:.1f}"
            cells.append(f"{float(curve.fraction[i]):>6.3f} ±{float(curve.standard_error[i]):.3f}"
                         f" ({sweeps_text:>5})")
        print(f"{value:>6.2f} " + " ".join(f"{cell:>22}" for cell in cells))


def plot_curves(path: str, single: dict, chain: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in single.items():
        left.errorbar(ACCESS_SELF_COUPLINGS, curve.fraction, yerr=curve.standard_error,
                      marker="o", label=name)
    left.set_xlabel("self-coupling J_D")
    left.set_title(f"one layer, N = {ACCESS_UNITS}")
    for name, curve in chain.items():
        right.errorbar(ACCESS_LAMBDAS, curve.fraction, yerr=curve.standard_error,
                       marker="o", label=name)
    right.set_xlabel("inter-layer coupling lambda")
    right.set_title(f"two-layer chain, J_D = 0, N = {ACCESS_UNITS}")
    for axis in (left, right):
        axis.set_ylabel(f"fraction at a fixed point within {SWEEPS} sweeps")
        axis.set_ylim(-0.05, 1.05)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--plot", metavar="PATH", help="save the accessibility curves as PNG")
    args = parser.parse_args()
    key = jax.random.key(args.seed)
    count_key, single_key, chain_key = jax.random.split(key, 3)
    start = time.perf_counter()

    print_count_table(count_key)
    print()

    single = {
        f"{schedule} random": accessibility(
            single_key, ACCESS_UNITS, ACCESS_SELF_COUPLINGS, schedule=schedule, sweeps=SWEEPS,
            starts=STARTS, samples=SAMPLES)
        for schedule in ("synchronous", "asynchronous")
    }
    single["synchronous zero"] = accessibility(
        single_key, ACCESS_UNITS, ACCESS_SELF_COUPLINGS, schedule="synchronous", sweeps=SWEEPS,
        starts=1, samples=SAMPLES * STARTS, init="zero")
    print_curves(f"Accessibility, one layer, N = {ACCESS_UNITS}, {SWEEPS} sweeps: "
                 "fraction ± s.e. (mean sweeps to the fixed point)", "J_D",
                 ACCESS_SELF_COUPLINGS, single)
    print()

    chain = {
        f"{schedule} random": chain_accessibility(
            chain_key, ACCESS_UNITS, ACCESS_LAMBDAS, schedule=schedule, sweeps=SWEEPS,
            starts=STARTS, samples=SAMPLES)
        for schedule in ("synchronous", "sequential")
    }
    print_curves(f"Accessibility, two-layer chain, J_D = 0, N = {ACCESS_UNITS} per layer",
                 "lambda", ACCESS_LAMBDAS, chain)

    if args.plot:
        plot_curves(args.plot, single, chain)
    print(f"\ntotal time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
