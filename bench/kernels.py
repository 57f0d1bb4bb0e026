"""Microbenchmark of the two sparse-coupling operations in every storage format.

Operations, for a coupling ``W`` of shape ``(d, k)`` with boolean mask ``M`` and a batch ``x``:

- product: the field ``x @ W``, shape ``(batch, k)``;
- rule increment: ``x.T @ signal`` at the entries that exist (the perceptron rule's outer product).

Couplings: the paper's recurrent ``J`` (2000 x 2000, density 0.01, empty diagonal) and input
``W_in`` (784 x 2000, density 0.1), at batch 16, 128 and 1024. Formats: masked dense;
``jax.experimental.sparse`` BCOO (``bcoo_dot_general``, ``bcoo_dot_general_sampled``); COO and
CSR-ordered lists through ``jax.ops.segment_sum``; ELL through XLA gathers; ELL through the native
kernels (CPU only). Each result is checked against the dense computation.

Run: ``python -m bench.kernels [--quick]``.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse

import darnax_core as dc
from bench import _common as common
from darnax_core import _native
from darnax_core._couplings import _xla_ell_matmul, _xla_ell_outer

NAME = "kernels"
COUPLINGS = {"J 2000x2000 1%": (2000, 2000, 0.01, True), "W_in 784x2000 10%": (784, 2000, 0.1, False)}
FORMATS = ("dense_masked", "bcoo", "coo_segment_sum", "csr_segment_sum", "ell_xla", "ell_native")


def _coupling(d: int, k: int, density: float, recurrent: bool, key):
    if recurrent:
        layer = dc.BinaryLayer(k, key=key, density=density, kernel="dense")
        coupling = layer.coupling
    else:
        coupling = dc.Linear(d, k, key=key, density=density, kernel="dense").coupling
    return np.asarray(coupling.to_dense()), np.asarray(coupling.mask)


def _formats(weight: np.ndarray, mask: np.ndarray) -> dict:
    """Return ``{format: (product(x), increment(x, signal), to_dense(increment))}`` jitted callables."""
    d, k = weight.shape
    w = jnp.asarray(weight)
    m = jnp.asarray(mask)
    senders, receivers = np.nonzero(mask)  # sender-major order (COO as stored row by row)
    values = weight[senders, receivers]
    by_receiver = np.lexsort((senders, receivers))  # receiver-major order (CSR of W.T)
    ell = dc.ell_from_dense(w, m)

    def pairs_to_dense(rows, cols):
        return lambda inc: np.asarray(jnp.zeros((d, k)).at[rows, cols].set(inc))

    out = {}
    out["dense_masked"] = (
        jax.jit(lambda x: x @ w),
        jax.jit(lambda x, s: jnp.where(m, x.T @ s, 0.0)),
        np.asarray,
    )

    indices = jnp.asarray(np.stack([senders, receivers], axis=1), jnp.int32)
    matrix = sparse.BCOO((jnp.asarray(values), indices), shape=(d, k))
    numbers = (([1], [0]), ([], []))
    out["bcoo"] = (
        jax.jit(lambda x: sparse.bcoo_dot_general(x, matrix, dimension_numbers=numbers)),
        jax.jit(lambda x, s: sparse.bcoo_dot_general_sampled(x.T, s, indices, dimension_numbers=numbers)),
        pairs_to_dense(senders, receivers),
    )

    for name, order, is_sorted in (("coo_segment_sum", np.arange(senders.size), False), ("csr_segment_sum", by_receiver, True)):
        rows = jnp.asarray(senders[order], jnp.int32)
        cols = jnp.asarray(receivers[order], jnp.int32)
        vals = jnp.asarray(values[order])

        def product(x, rows=rows, cols=cols, vals=vals, is_sorted=is_sorted):
            terms = x.T[rows] * vals[:, None]
            return jax.ops.segment_sum(terms, cols, num_segments=k, indices_are_sorted=is_sorted).T

        def increment(x, s, rows=rows, cols=cols):
            return jnp.sum(x.T[rows] * s.T[cols], axis=1)

        out[name] = (jax.jit(product), jax.jit(increment), pairs_to_dense(senders[order], receivers[order]))

    def ell_to_dense(inc):
        return np.asarray(dc.EllCoupling(inc, ell.index, ell.valid, d).to_dense())

    out["ell_xla"] = (
        jax.jit(lambda x: _xla_ell_matmul(x, ell.index, ell.values, ell.fan_in)),
        jax.jit(lambda x, s: _xla_ell_outer(x, ell.index, s, ell.fan_in)),
        ell_to_dense,
    )
    if _native.available() and jax.default_backend() == "cpu":
        out["ell_native"] = (
            jax.jit(lambda x: _native.ell_matmul(x, ell.index, ell.values, ell.fan_in)),
            jax.jit(lambda x, s: _native.ell_outer(x, ell.index, s, ell.fan_in)),
            ell_to_dense,
        )
    return out


def _time(call, budget_s: float, high: int) -> dict:
    jax.block_until_ready(call())
    once = common.time_calls(call, repeats=3, block=jax.block_until_ready)
    repeats = common.repeats_within(float(np.median(once)), budget_s, low=5, high=high)
    return common.summarize(once + common.time_calls(call, repeats=repeats, block=jax.block_until_ready))


def run(args) -> dict:
    budget_s, high = (0.2, 50) if args.quick else (2.0, 2000)
    batches = (16, 128) if args.quick else (16, 128, 1024)
    record = common.new_record(NAME, args)
    record["settings"] = {"batches": list(batches), "budget_s_per_measurement": budget_s, "max_repeats": high, "couplings": {k: list(v) for k, v in COUPLINGS.items()}}
    rng = np.random.default_rng(0)
    for number, (label, (d, k, density, recurrent)) in enumerate(COUPLINGS.items()):
        weight, mask = _coupling(d, k, density, recurrent, jax.random.PRNGKey(number))
        formats = _formats(weight, mask)
        for batch in batches:
            x_np = np.where(rng.random((batch, d)) < 0.5, -1.0, 1.0).astype(np.float32) if recurrent else rng.random((batch, d), dtype=np.float32)
            s_np = (np.where(rng.random((batch, k)) < 0.5, -1.0, 1.0) * (rng.random((batch, k)) < 0.3)).astype(np.float32)
            x, s = jnp.asarray(x_np), jnp.asarray(s_np)
            expected_product = x_np.astype(np.float64) @ weight
            expected_increment = np.where(mask, x_np.T.astype(np.float64) @ s_np, 0.0)
            for name in FORMATS:
                row = {"coupling": label, "nnz": int(mask.sum()), "batch": batch, "format": name}
                if name not in formats:
                    row["skipped"] = "native kernels unavailable on this backend"
                    record["rows"].append(row)
                    continue
                product, increment, to_dense = formats[name]
                row["product"] = _time(lambda: product(x), budget_s, high)
                row["increment"] = _time(lambda: increment(x, s), budget_s, high)
                row["product_error"] = float(np.max(np.abs(np.asarray(product(x)) - expected_product)))
                row["increment_error"] = float(np.max(np.abs(to_dense(increment(x, s)) - expected_increment)))
                record["rows"].append(row)
    worst = max((max(r["product_error"], r["increment_error"]) for r in record["rows"] if "product" in r), default=None)
    record["max_abs_error"] = worst
    if worst is not None and worst > 1e-3:
        record["notes"].append(f"largest deviation from the float64 dense result is {worst:.2e}")
    return record


def table(record: dict, markdown: bool = False) -> str:
    headers = ["coupling", "batch", "format", "product us", "min / IQR us", "increment us", "min / IQR us", "max abs error"]
    rows = []
    for row in record["rows"]:
        if "skipped" in row:
            rows.append([row["coupling"], row["batch"], row["format"], "skipped", "-", "-", "-", "-"])
            continue
        p, i = row["product"], row["increment"]
        rows.append([
            row["coupling"], row["batch"], row["format"], p["median"] * 1e6, common.spread(p, 1e6),
            i["median"] * 1e6, common.spread(i, 1e6), max(row["product_error"], row["increment_error"]),
        ])
    render = common.markdown_table if markdown else common.text_table
    return render(headers, rows)


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv)


if __name__ == "__main__":
    main()
