"""Batched 2D/vector rewards r(x0 [N, D], cond) -> [N] with closed-form tilts on a mixture."""

import jax
import jax.numpy as jnp
import numpy as np


def linear(weights, bias: float = 0.0):
  """r(x) = w . x + b."""
  w = jnp.asarray(weights, jnp.float32)

  def fn(x0, cond=None):
    del cond
    return x0.reshape(x0.shape[0], -1) @ w + bias
  return fn


def gaussian(center, width: float = 1.0):
  """r(x) = -|x - c|^2 / (2 width^2)."""
  c = jnp.asarray(center, jnp.float32)

  def fn(x0, cond=None):
    del cond
    diff = x0.reshape(x0.shape[0], -1) - c
    return -jnp.sum(diff**2, axis=-1) / (2.0 * width**2)
  return fn


def ring_means(num_modes: int = 8, radius: float = 4.0) -> np.ndarray:
  """Means [num_modes, 2] evenly spaced on a circle (the DTS paper's 8-Gaussians ring)."""
  angles = 2 * np.pi * np.arange(num_modes) / num_modes
  return (radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)).astype(np.float32)


def mode_weighting(num_modes: int = 8, radius: float = 4.0, mode_std: float = 0.3,
                   mode_scale: float = 1.5):
  """DTS paper: r(x) = log sum_i w_i N(x; mu_i, mode_std^2 I), w_i = exp(mode_scale * i)."""
  means = jnp.asarray(ring_means(num_modes, radius))
  log_w = mode_scale * jnp.arange(num_modes, dtype=jnp.float32)
  log_norm = -jnp.log(2 * jnp.pi * mode_std**2)

  def fn(x0, cond=None):
    del cond
    d2 = jnp.sum((x0[:, None, :] - means) ** 2, axis=-1)
    return jax.nn.logsumexp(log_w + log_norm - d2 / (2 * mode_std**2), axis=-1)
  return fn
