"""Two-sample statistics between point sets x [N, D] and y [M, D]."""

import jax
import jax.numpy as jnp


def _mean_pairwise_distance(x, y):
  d2 = jnp.sum(x**2, 1)[:, None] + jnp.sum(y**2, 1)[None, :] - 2.0 * x @ y.T
  return jnp.mean(jnp.sqrt(jnp.maximum(d2, 0.0)))


@jax.jit
def energy_distance(x, y):
  """2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistic, >= 0; 0 iff same distribution)."""
  x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
  return (2.0 * _mean_pairwise_distance(x, y) - _mean_pairwise_distance(x, x)
          - _mean_pairwise_distance(y, y))


@jax.jit
def mmd_rbf(x, y, bandwidth=1.0):
  """Squared MMD (V-statistic) with the kernel exp(-|a - b|^2 / (2 bandwidth^2))."""
  x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)

  def k(a, b):
    d2 = jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * a @ b.T
    return jnp.mean(jnp.exp(-jnp.maximum(d2, 0.0) / (2.0 * bandwidth**2)))
  return k(x, x) + k(y, y) - 2.0 * k(x, y)
