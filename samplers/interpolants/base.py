"""The interpolant interface x_t = alpha_t * x0 + sigma_t * eps (t = 1 noise, t = 0 data), and an
interpolant's declaration.

Each interpolant gives alpha, sigma, their time derivatives and the inverse of the
signal-to-noise ratio rho(t) = alpha_t / sigma_t. All functions take and return arrays of any
shape (time is broadcast elementwise); they are pure jnp and safe under jit, vmap and grad.
"""

import dataclasses
import types
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp


class Interpolant:
  """Base class. Subclasses implement alpha, sigma, alpha_dot, sigma_dot, inverse_snr."""

  name: str = ''

  def alpha(self, t):
    raise NotImplementedError

  def sigma(self, t):
    raise NotImplementedError

  def alpha_dot(self, t):
    raise NotImplementedError

  def sigma_dot(self, t):
    raise NotImplementedError

  def snr(self, t):
    """rho(t) = alpha_t / sigma_t (infinite where sigma_t = 0)."""
    return self.alpha(t) / self.sigma(t)

  def inverse_snr(self, rho):
    """The time t with alpha_t / sigma_t = rho, clipped to the interpolant's range."""
    raise NotImplementedError

  def training_times(self, key, shape, t_min):
    """Times a model on this interpolant trains at: uniform on [t_min, 1]."""
    return jax.random.uniform(key, shape, minval=t_min, maxval=1.0)

  def transition(self, t, t_next):
    """Exact forward Gaussian transition from t to a noisier t_next > t.

    Returns (scale, std) with x_{t_next} | x_t ~ N(scale * x_t, std^2 I):
    scale = alpha_{t_next} / alpha_t, std^2 = sigma_{t_next}^2 - scale^2 * sigma_t^2.
    """
    scale = self.alpha(t_next) / self.alpha(t)
    var = self.sigma(t_next) ** 2 - (scale * self.sigma(t)) ** 2
    return scale, jnp.sqrt(jnp.maximum(var, 0.0))


@dataclasses.dataclass(frozen=True)
class InterpolantKind:
  """An interpolant's declaration.

  build(**fields) -> Interpolant.
  fields: the config fields it reads (of the `model` or `sampler` section that names it in
    `interpolant`), with their defaults; they are passed to `build` as keywords.
  order: its place in listings; name, module: filled in by the registry.
  """
  build: Callable[..., Interpolant]
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  order: int = 100
  name: str = ''
  module: Optional[types.ModuleType] = dataclasses.field(default=None, compare=False)
