"""Checks of DarnaxModule's constructor options, seed drawing, and sizes read from a DataModule."""

from typing import Any

import torch

#: Seeds must fit in 32 bits: ``jax.random.PRNGKey`` drops the high bits of larger ints when x64 is off.
SEED_LIMIT = 2**32


def check_seed(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"`{name}` must be None or an int in [0, 2**32), got {value!r}.")
    return value


def check_size(value: Any, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "None or a positive int" if optional else "a positive int"
        raise ValueError(f"`{name}` must be {allowed}, got {value!r}.")


def draw_seed() -> int:
    """Draw a 32-bit seed from torch's global RNG, so ``seed_everything`` fixes it."""
    return int(torch.randint(0, SEED_LIMIT, (), dtype=torch.int64))


def datamodule_size(datamodule: Any, name: str) -> int | None:
    """Return ``datamodule.<name>`` if it exists and is an int, else None."""
    if datamodule is None:
        return None
    try:
        value = getattr(datamodule, name)
    except (AttributeError, NotImplementedError, RuntimeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
