"""Rectified flow, the linear interpolant."""

import dataclasses

import jax.numpy as jnp

from samplers.interpolants.base import Interpolant
from samplers.interpolants.base import InterpolantKind


@dataclasses.dataclass(frozen=True)
class Linear(Interpolant):
  """Rectified flow: alpha = 1 - t, sigma = t."""

  name: str = 'linear'

  def alpha(self, t):
    return 1.0 - t

  def sigma(self, t):
    return t

  def alpha_dot(self, t):
    return -jnp.ones_like(t)

  def sigma_dot(self, t):
    return jnp.ones_like(t)

  def inverse_snr(self, rho):
    return 1.0 / (1.0 + rho)


INTERPOLANT = InterpolantKind(Linear, order=0)
