"""Song et al.'s variance-preserving interpolant."""

import dataclasses

import jax.numpy as jnp

from samplers.interpolants.base import Interpolant
from samplers.interpolants.base import InterpolantKind


@dataclasses.dataclass(frozen=True)
class VP(Interpolant):
  """Song et al.'s VP-SDE: beta(t) = beta_min + (beta_max - beta_min) t.

  T(t) = beta_min t + (beta_max - beta_min) t^2 / 2, alpha = exp(-T/2), sigma = sqrt(1 - e^-T).
  alpha_1 = exp(-5.025) ~ 0.0066, not 0.
  """

  beta_min: float = 0.1
  beta_max: float = 20.0
  name: str = 'vp'

  def _integral(self, t):
    return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

  def _beta(self, t):
    return self.beta_min + (self.beta_max - self.beta_min) * t

  def alpha(self, t):
    return jnp.exp(-0.5 * self._integral(t))

  def sigma(self, t):
    return jnp.sqrt(-jnp.expm1(-self._integral(t)))

  def alpha_dot(self, t):
    return -0.5 * self._beta(t) * self.alpha(t)

  def sigma_dot(self, t):
    return 0.5 * self._beta(t) * self.alpha(t) ** 2 / self.sigma(t)

  def snr(self, t):
    return 1.0 / jnp.sqrt(jnp.expm1(self._integral(t)))

  def inverse_snr(self, rho):
    # rho^2 = 1 / (e^T - 1)  =>  T = log(1 + 1/rho^2); solve the quadratic T(t) = T for t.
    big_t = jnp.log1p(1.0 / jnp.maximum(rho, 1e-30) ** 2)
    slope = self.beta_max - self.beta_min
    t = (-self.beta_min + jnp.sqrt(self.beta_min**2 + 2.0 * slope * big_t)) / slope
    return jnp.clip(t, 0.0, 1.0)


INTERPOLANT = InterpolantKind(VP, order=1)
