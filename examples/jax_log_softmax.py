"""A log_softmax with a custom VJP (JAX): forward x - m - log(sum(exp(x - m))), m the row's
maximum, backward g - softmax(x) * sum(g), written by hand with jax.custom_vjp.

What the harness found (examples/test_examples.py): the forward and the hand-written backward
conform on every case of the seed family in all four dtypes, one pytest id per case; the
gradient the harness checks is this custom VJP's, not one JAX derived.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def log_softmax(x, axis=-1):
    m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, 0)
    s = x - m
    return s - jnp.log(jnp.sum(jnp.exp(s), axis=axis, keepdims=True))


def _fwd(x, axis):
    y = log_softmax(x, axis)
    return y, y


def _bwd(axis, y, g):
    return (g - jnp.exp(y) * jnp.sum(g, axis=axis, keepdims=True),)


log_softmax.defvjp(_fwd, _bwd)
