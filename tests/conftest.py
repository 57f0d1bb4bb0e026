"""Fixtures shared by the whole test suite."""

import itertools

import jax
import pytest


@pytest.fixture
def getkey():
    """Return a function that hands out a new PRNG key on every call (deterministic per test)."""
    counter = itertools.count()
    base = jax.random.PRNGKey(0)

    def next_key() -> jax.Array:
        return jax.random.fold_in(base, next(counter))

    return next_key
