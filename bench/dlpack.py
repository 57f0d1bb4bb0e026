"""Cost per batch of the bridge's tensor exchange (``to_jax``, ``to_torch``) against plain copies.

For float32 batches of shape (16, 784), (128, 784) and (1024, 784):

- torch -> JAX: ``darnax_bridge.to_jax(t, device=...)``, raw ``jnp.from_dlpack(t)``,
  ``jax.device_put(t.numpy())`` (on CPU it shares the buffer of an aligned array, no copy) and the
  copy ``jnp.array(t.numpy())``;
- JAX -> torch: ``darnax_bridge.to_torch(a)``, raw ``torch.from_dlpack(a)``, and the copy
  ``torch.from_numpy(np.array(a))``.

Each sample times ``--number`` calls (the result is made ready before the clock stops).

Run: ``python -m bench.dlpack [--quick]``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from bench import _common as common

NAME = "dlpack"
SHAPES = ((16, 784), (128, 784), (1024, 784))


def _bridge():
    import darnax_bridge

    to_jax = getattr(darnax_bridge, "to_jax", None)
    to_torch = getattr(darnax_bridge, "to_torch", None)
    if to_jax is None or to_torch is None:
        from darnax_bridge._dlpack import to_jax, to_torch
    return to_jax, to_torch


def _ready(value):
    if isinstance(value, jax.Array):
        value.block_until_ready()
    return value


def run(args) -> dict:
    import torch

    repeats, number = (10, 20) if args.quick else (50, 200)
    record = common.new_record(NAME, args)
    record["settings"] = {"shapes": [list(s) for s in SHAPES], "repeats": repeats, "calls_per_sample": number, "dtype": "float32"}
    device = jax.devices()[0]
    try:
        to_jax, to_torch = _bridge()
    except Exception as error:  # noqa: BLE001 - any import failure means the bridge cannot be measured
        to_jax = to_torch = None
        record["notes"].append(f"bridge functions not measured: importing darnax_bridge.to_jax/to_torch failed with {type(error).__name__}: {error}")
    for shape in SHAPES:
        tensor = torch.rand(shape, dtype=torch.float32)
        array = jax.device_put(jnp.asarray(np.random.default_rng(0).random(shape, dtype=np.float32)), device)
        cases = {
            "torch->JAX": {
                "jnp.from_dlpack": lambda: jnp.from_dlpack(tensor),
                "jax.device_put(t.numpy())": lambda: jax.device_put(tensor.numpy(), device),
                "copy: jnp.array(t.numpy())": lambda: jnp.array(tensor.numpy()),
            },
            "JAX->torch": {
                "torch.from_dlpack": lambda: torch.from_dlpack(array),
                "copy: torch.from_numpy(np.array(a))": lambda: torch.from_numpy(np.array(array)),
            },
        }
        if to_jax is not None:
            cases["torch->JAX"] = {"darnax_bridge.to_jax": lambda: to_jax(tensor, device=device), **cases["torch->JAX"]}
            cases["JAX->torch"] = {"darnax_bridge.to_torch": lambda: to_torch(array), **cases["JAX->torch"]}
        for direction, calls in cases.items():
            for measurement, call in calls.items():
                _ready(call())
                samples = common.time_calls(call, repeats=repeats, number=number, block=_ready)
                record["rows"].append({"shape": list(shape), "direction": direction, "measurement": measurement, "seconds": common.summarize(samples)})
    return record


def table(record: dict, markdown: bool = False) -> str:
    headers = ["shape", "direction", "call", "us per call", "min / IQR us"]
    rows = [["x".join(map(str, r["shape"])), r["direction"], r["measurement"], r["seconds"]["median"] * 1e6, common.spread(r["seconds"], 1e6)] for r in record["rows"]]
    render = common.markdown_table if markdown else common.text_table
    text = render(headers, rows)
    if record["notes"]:
        text += "\n\n" + "\n".join(record["notes"])
    return text


def main(argv=None):
    common.benchmark_main(NAME, __doc__.splitlines()[0], run, table, argv)


if __name__ == "__main__":
    main()
