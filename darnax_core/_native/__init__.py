"""Native CPU kernels for ELL couplings, compiled on first use and called through the XLA FFI.

XLA's CPU gather moves one row per few nanoseconds, so a 1%-dense 2000x2000 coupling at batch 16
takes longer through ``jnp`` indexing than a plain loop over its 40k non-zeros. The kernels in
``ell_kernels.cc`` are those loops (product and rule increments), plus one sign sweep of a
recurrent layer in the kernels' (units, batch) layout. They are compiled with the system C++
compiler (``$CXX`` or ``g++``/``c++``) the first time they are needed and cached under ``$DARNAX_CACHE_DIR`` (default
``~/.cache/darnax``). When no compiler is found, compilation fails, or ``DARNAX_NATIVE=0`` is set,
:func:`available` returns False and the couplings use the pure-XLA path, which gives the same
results up to float summation order.
"""

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import jax
import jax.numpy as jnp

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("ell_kernels.cc")
_FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c++17", "-w")
_MATMUL = "darnax_ell_matmul"
_OUTER = "darnax_ell_outer"
_SWEEP = "darnax_ell_sweep"
_lock = threading.Lock()
_state: dict[str, object] = {}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _library_path(flags: tuple[str, ...] = _FLAGS) -> Path:
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), jax.__version__.encode(), " ".join(flags).encode(), platform.machine().encode(), _cpu_model().encode()):
        key.update(part)
    cache = Path(os.environ.get("DARNAX_CACHE_DIR", Path.home() / ".cache" / "darnax"))
    return cache / "native" / key.hexdigest()[:16] / "ell_kernels.so"


def _compile(target: Path, flags: tuple[str, ...] = _FLAGS) -> None:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name and rename, so concurrent processes never load a partial file.
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
        partial = Path(tmp.name)
    command = [compiler, *flags, f"-I{jax.ffi.include_dir()}", str(_SOURCE), "-o", str(partial)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"compiling {_SOURCE.name} failed: {result.stderr.strip()[-2000:]}")
    partial.replace(target)


def available() -> bool:
    """Return True when the native kernels are compiled, loaded and registered with XLA."""
    with _lock:
        if "ok" in _state:
            return bool(_state["ok"])
        _state["ok"] = False
        if os.environ.get("DARNAX_NATIVE", "1") == "0":
            logger.info("Native ELL kernels disabled by DARNAX_NATIVE=0.")
            return False
        try:
            _state["library"] = _load(_FLAGS, suffix="")
        except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
            logger.warning("Native ELL kernels unavailable, using the XLA path: %s", error)
            return False
        _state["ok"] = True
        return True


def _load(flags: tuple[str, ...], suffix: str):
    """Compile (once) with ``flags``, load, and register the kernels under names ending in ``suffix``."""
    path = _library_path(flags)
    if not path.exists():
        logger.info("Compiling native ELL kernels into %s", path)
        _compile(path, flags)
    library = ctypes.cdll.LoadLibrary(str(path))
    jax.ffi.register_ffi_target(_MATMUL + suffix, jax.ffi.pycapsule(library.DarnaxEllMatmul), platform="cpu")
    jax.ffi.register_ffi_target(_OUTER + suffix, jax.ffi.pycapsule(library.DarnaxEllOuter), platform="cpu")
    jax.ffi.register_ffi_target(_SWEEP + suffix, jax.ffi.pycapsule(library.DarnaxEllSweep), platform="cpu")
    return library


def load_variant(extra_flags: tuple[str, ...], suffix: str) -> str:
    """Build the kernels with ``extra_flags`` appended and register them under ``suffix``.

    For tests of the narrower code paths (``("-mno-avx512f",)`` for AVX2, ``("-mno-avx2",)`` for
    the plain loops) on a machine that would otherwise compile only the widest one. Returns
    ``suffix``, to pass as ``variant`` to :func:`ell_matmul` and :func:`ell_outer`.
    """
    if not suffix:
        raise ValueError("`suffix` must be non-empty; the empty suffix names the default build.")
    _load((*_FLAGS, *extra_flags), suffix)
    return suffix


def ell_matmul(x, index, values, count, *, variant: str = ""):
    """Return ``(batch, k)`` fields of an ELL coupling: ``out[b, i] = sum_f values[i, f] x[b, index[i, f]]``."""
    call = jax.ffi.ffi_call(
        _MATMUL + variant, jax.ShapeDtypeStruct((index.shape[0], x.shape[0]), jnp.float32), vmap_method="sequential"
    )
    return call(x.T, index, values, count).T


def ell_outer(x, index, signal, count, *, variant: str = ""):
    """Return ``(k, fan_in)`` products ``sum_b x[b, index[i, f]] signal[b, i]`` (zero in padding)."""
    call = jax.ffi.ffi_call(_OUTER + variant, jax.ShapeDtypeStruct(index.shape, jnp.float32), vmap_method="sequential")
    return call(x.T, index, signal.T, count)


def ell_sweep_t(s_t, index, values, count, const_t, self_coupling, *, variant: str = ""):
    """Return ``sign(J s + self_coupling * s + const)`` for a square ELL coupling, all in (units, batch) layout.

    ``s_t`` and ``const_t`` are ``(n, batch)``, ``self_coupling`` is ``(n,)``; ``sign(0) = +1``.
    """
    call = jax.ffi.ffi_call(_SWEEP + variant, jax.ShapeDtypeStruct(s_t.shape, jnp.float32), vmap_method="sequential")
    return call(s_t, index, values, count, const_t, self_coupling)
