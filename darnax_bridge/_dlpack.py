"""Tensor exchange between torch and JAX through the DLPack protocol.

`to_jax` turns every `torch.Tensor` leaf of a pytree into a `jax.Array`, and `to_torch` does the
reverse. Both copy by default, so neither library can see a later in-place write by the other.

Dtype policy of `to_jax` (torch tensors and numpy arrays alike):

| input dtype                                          | x64 off (JAX default)              | x64 on    |
|------------------------------------------------------|------------------------------------|-----------|
| float32, bfloat16, float16, int32, uint8, int8, bool | unchanged                          | unchanged |
| float64                                              | `float64="cast"`: float32, warns   | unchanged |
|                                                      | `float64="error"`: TypeError       |           |
| int64                                                | `int64="cast"`: int32 if in range, | unchanged |
|                                                      | else ValueError                    |           |
|                                                      | `int64="error"`: TypeError         |           |
| anything else (complex, int16, uint16, float8, ...)  | TypeError                          | TypeError |

"x64" is `jax.config.jax_enable_x64`. The float64 cast warns once per process and logs at DEBUG
level on every cast. `to_torch` keeps the dtype of each array, bfloat16 included.
"""

import logging
import warnings
from typing import Any, Literal

import jax
import numpy as np
import torch
from jaxtyping import PyTree

logger = logging.getLogger(__name__)

Policy = Literal["cast", "error"]

_POLICIES = ("cast", "error")
_PASS_THROUGH = ("float32", "bfloat16", "float16", "int32", "uint8", "int8", "bool")
_X64_TARGETS = {"float64": "float32", "int64": "int32"}
_INT32 = np.iinfo(np.int32)
_float64_cast_warned = False


def to_jax(
    tree: PyTree,
    *,
    device: jax.Device | None = None,
    copy: bool = True,
    float64: Policy = "cast",
    int64: Policy = "cast",
) -> PyTree:
    """Convert every torch tensor and numpy array leaf of `tree` to a `jax.Array` on `device`.

    Tensors are detached and made contiguous (transposed, step-sliced, offset and channels-last
    views are all accepted), converted by the dtype policy in the module docstring, imported
    through DLPack and placed on `device` with `jax.device_put`. Other leaves (python scalars,
    strings, None, existing `jax.Array` leaves) are returned unchanged.

    Arguments:
        tree: any pytree whose leaves may be tensors or arrays.
        device: target `jax.Device`, by default `jax.devices()[0]`.
        copy: with `True`, each result owns its buffer, so a later in-place write to the source
            tensor or numpy array cannot change it. The call waits until JAX finishes that copy.
            `False` is the zero-copy path: the result may share memory with the source, so the
            caller must not write the source while the result is alive. Sharing happens only
            when no cast, layout change or device transfer was needed.
        float64: `"cast"` or `"error"`, applied when x64 is off.
        int64: `"cast"` or `"error"`, applied when x64 is off.

    Raises:
        ValueError: invalid policy string, or int64 values outside the int32 range.
        TypeError: invalid `device`, a dtype outside the policy, or a sparse, nested or meta
            tensor.
    """
    for name, policy in (("float64", float64), ("int64", int64)):
        if policy not in _POLICIES:
            raise ValueError(
                f"Invalid {name}={policy!r}. Expected one of {_POLICIES}: 'cast' converts "
                f"{name} to {_X64_TARGETS[name]} and 'error' rejects {name} input."
            )
    if device is None:
        device = jax.devices()[0]
    elif not isinstance(device, jax.Device):
        raise TypeError(
            f"Invalid device={device!r}. Expected a jax.Device such as jax.devices()[0]."
        )

    leaves, treedef = jax.tree_util.tree_flatten(tree)
    converted = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            leaf = _tensor_to_jax(leaf, device, copy, float64, int64)
        elif isinstance(leaf, np.ndarray):
            leaf = _numpy_to_jax(leaf, device, copy, float64, int64)
        converted.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, converted)


def to_torch(tree: PyTree, *, copy: bool = True) -> PyTree:
    """Convert every `jax.Array` leaf of `tree` to a `torch.Tensor` through DLPack.

    A CPU array becomes a CPU tensor and a GPU array a tensor on the matching CUDA device. An
    array sharded over several devices is first gathered onto its lowest-id device. Dtypes are
    kept. Other leaves are returned unchanged.

    Arguments:
        tree: any pytree whose leaves may be JAX arrays.
        copy: with `True`, each tensor owns a private copy of the data. `False` returns a
            zero-copy alias of the JAX buffer: an in-place write to the tensor would change the
            "immutable" JAX array (jit outputs too), so the caller must not write it.

    Raises:
        TypeError: a traced array (a call inside `jax.jit`, `vmap` or `grad`).
        ValueError: an array sharded over devices of other processes.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    converted = []
    for leaf in leaves:
        if isinstance(leaf, jax.Array):
            leaf = _array_to_torch(leaf, copy)
        converted.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, converted)


def _tensor_to_jax(
    tensor: torch.Tensor, device: jax.Device, copy: bool, float64: Policy, int64: Policy
) -> jax.Array:
    if tensor.layout != torch.strided or tensor.is_nested:
        raise TypeError(
            f"to_jax needs a dense tensor, got one with layout {tensor.layout} "
            f"(nested: {tensor.is_nested}). Convert it with .to_dense() or "
            f".to_padded_tensor(0) first."
        )
    if tensor.device.type == "meta":
        raise TypeError(
            f"to_jax received a meta tensor of shape {tuple(tensor.shape)}, which has no data. "
            f"Materialize it first, for example with .to_empty(device='cpu')."
        )

    source = tensor.detach()
    name = str(source.dtype).removeprefix("torch.")
    target = _target_dtype(name, source, float64, int64)
    if target != name:
        source = source.to(getattr(torch, target), memory_format=torch.contiguous_format)
    # `Tensor.to` returns its input unchanged when the dtype already matches, whatever the layout.
    source = source.contiguous()

    # JAX imports a CUDA tensor only onto a GPU, so anything else goes through host memory.
    keep_on_gpu = source.device.type == "cuda" and device.platform == "gpu"
    if source.device.type != "cpu" and not keep_on_gpu:
        source = source.cpu()
    # NOTE: the CUDA import path (keep_on_gpu) is not covered by the CPU-only test suite.
    imported = jax.dlpack.from_dlpack(source)
    if not copy:
        # A device_put onto the device the array is already on still waits in the device's queue
        # behind running computations, which stalls a training loop (measured on CPU, jax 0.10.2).
        if imported.devices() == {device}:
            return imported
        return jax.device_put(imported, device)
    # The copy runs asynchronously and reads the torch buffer, so it must finish before the
    # caller regains control and can write that buffer.
    return jax.device_put(imported, device, may_alias=False).block_until_ready()


def _numpy_to_jax(
    array: np.ndarray, device: jax.Device, copy: bool, float64: Policy, int64: Policy
) -> jax.Array:
    target = _target_dtype(array.dtype.name, array, float64, int64)
    # On CPU with jax 0.10.2, a write to a numpy array after
    # `jax.device_put(array, may_alias=False).block_until_ready()` still reached the result, so
    # the copy is made by numpy.
    array = array.astype(target, copy=copy)
    return jax.device_put(array, device)


def _target_dtype(name: str, values: Any, float64: Policy, int64: Policy) -> str:
    """Return the dtype name that `values` (of dtype `name`) converts to, or raise."""
    if name in _PASS_THROUGH:
        return name
    if name not in _X64_TARGETS:
        raise TypeError(
            f"to_jax does not support dtype {name}. Supported dtypes: {', '.join(_PASS_THROUGH)}, "
            f"plus float64 and int64 under the float64 and int64 policies. Convert the input "
            f"first, for example with .to(torch.float32) or .astype(np.float32)."
        )
    if jax.config.jax_enable_x64:
        return name

    target = _X64_TARGETS[name]
    if (float64 if name == "float64" else int64) == "error":
        raise TypeError(
            f"to_jax rejects dtype {name} because {name}='error' was passed and "
            f"jax_enable_x64 is off, so JAX would store it as {target}. Convert the input to "
            f"{target} first, pass {name}='cast', or enable x64 with "
            f"jax.config.update('jax_enable_x64', True)."
        )
    if name == "int64":
        _check_int32_range(values)
    else:
        _record_float64_cast()
    logger.debug("to_jax cast %s values of shape %s to %s", name, tuple(values.shape), target)
    return target


def _check_int32_range(values: torch.Tensor | np.ndarray) -> None:
    count = values.numel() if isinstance(values, torch.Tensor) else values.size
    if count == 0:
        return
    low, high = int(values.min()), int(values.max())
    if low < _INT32.min or high > _INT32.max:
        raise ValueError(
            f"to_jax cannot cast int64 values in [{low}, {high}] to int32, whose range is "
            f"[{_INT32.min}, {_INT32.max}]. Enable x64 with "
            f"jax.config.update('jax_enable_x64', True), or rescale or convert the input first."
        )


def _record_float64_cast() -> None:
    global _float64_cast_warned
    if _float64_cast_warned:
        return
    _float64_cast_warned = True
    warnings.warn(
        "to_jax cast float64 input to float32 because jax_enable_x64 is off, so values keep "
        "only about 7 significant digits. Convert to float32 before the call, pass "
        "float64='error' to reject float64, or enable x64 with "
        "jax.config.update('jax_enable_x64', True). This warning is shown once per process.",
        UserWarning,
        # Frames: this function, _target_dtype, the per-leaf converter, to_jax, its caller.
        stacklevel=5,
    )


def _array_to_torch(array: jax.Array, copy: bool) -> torch.Tensor:
    if isinstance(array, jax.core.Tracer):
        raise TypeError(
            f"to_torch received a traced array {array}, but it needs concrete values. Call it "
            f"outside jax.jit, vmap and grad, on the arrays they return."
        )
    devices = array.sharding.device_set
    if len(devices) > 1:
        if not array.is_fully_addressable:
            raise ValueError(
                f"to_torch received an array of shape {array.shape} sharded over devices of "
                f"other processes. Gather it first, for example with "
                f"jax.experimental.multihost_utils.process_allgather."
            )
        # DLPack exports one buffer only, so gather the shards onto one device.
        array = jax.device_put(array, min(devices, key=lambda d: d.id))
    # With copy=True JAX exports a fresh copy that nothing else references.
    return torch.from_dlpack(array, copy=True if copy else None)
