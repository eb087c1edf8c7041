"""The cosine (trigonometric) interpolant."""

import dataclasses

import jax.numpy as jnp

from samplers.interpolants.base import Interpolant
from samplers.interpolants.base import InterpolantKind


@dataclasses.dataclass(frozen=True)
class Cosine(Interpolant):
  """alpha = cos(pi t / 2), sigma = sin(pi t / 2)."""

  name: str = 'cosine'

  def alpha(self, t):
    return jnp.cos(0.5 * jnp.pi * t)

  def sigma(self, t):
    return jnp.sin(0.5 * jnp.pi * t)

  def alpha_dot(self, t):
    return -0.5 * jnp.pi * jnp.sin(0.5 * jnp.pi * t)

  def sigma_dot(self, t):
    return 0.5 * jnp.pi * jnp.cos(0.5 * jnp.pi * t)

  def inverse_snr(self, rho):
    return (2.0 / jnp.pi) * jnp.arctan2(1.0, rho)


INTERPOLANT = InterpolantKind(Cosine, order=2)
