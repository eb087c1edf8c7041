"""A discrete DDPM schedule (a diffusion model's own), made continuous."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from samplers.interpolants.base import Interpolant
from samplers.interpolants.base import InterpolantKind


@dataclasses.dataclass(frozen=True, eq=False)
class Discrete(Interpolant):
  """A discrete DDPM schedule made continuous by interpolating its log-SNR.

  Training timestep k = 0..K-1 sits at continuous time t_k = k / (K - 1); between them the
  log-SNR lambda = log(alphabar / (1 - alphabar)) is linear in t, so alpha^2 = sigmoid(lambda)
  and sigma^2 = sigmoid(-lambda). A continuous time maps back to the model's own (fractional)
  timestep by `timestep(t) = t * (K - 1)`. Note sigma_0 = sqrt(beta_0) > 0 and alpha_1 > 0.
  """

  alphas_cumprod: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(2))
  name: str = 'discrete'

  def __post_init__(self):
    ac = np.asarray(self.alphas_cumprod, np.float64)
    if ac.ndim != 1 or ac.size < 2:
      raise ValueError('Discrete interpolant needs a 1-D alphas_cumprod with >= 2 entries.')
    if not (np.all(ac > 0) and np.all(ac < 1) and np.all(np.diff(ac) < 0)):
      raise ValueError('alphas_cumprod must lie in (0, 1) and decrease strictly.')
    object.__setattr__(self, 'alphas_cumprod', ac)

  def __eq__(self, other):
    return (isinstance(other, Discrete) and
            np.array_equal(self.alphas_cumprod, other.alphas_cumprod))

  def __hash__(self):
    return hash(self.alphas_cumprod.tobytes())

  def training_times(self, key, shape, t_min):
    """Its own training timesteps k / (K - 1), k uniform on 0..K-1, as a DDPM trains (t_min is
    not needed: sigma_0 = sqrt(beta_0) > 0)."""
    del t_min
    k = self.num_train_timesteps - 1
    return jax.random.randint(key, shape, 0, k + 1).astype(jnp.float32) / k

  @property
  def num_train_timesteps(self) -> int:
    return int(self.alphas_cumprod.size)

  @property
  def _log_snr_table(self):
    ac = self.alphas_cumprod
    return jnp.asarray(np.log(ac) - np.log1p(-ac), jnp.float32)

  @property
  def _time_table(self):
    return jnp.linspace(0.0, 1.0, self.num_train_timesteps, dtype=jnp.float32)

  def log_snr(self, t):
    return jnp.interp(t, self._time_table, self._log_snr_table)

  def _log_snr_slope(self, t):
    """d lambda / dt of the piecewise-linear log-SNR (one-sided inside each segment)."""
    table = self._log_snr_table
    k = self.num_train_timesteps - 1
    idx = jnp.clip(jnp.floor(t * k).astype(jnp.int32), 0, k - 1)
    return (table[idx + 1] - table[idx]) * k

  def alpha(self, t):
    return jnp.sqrt(jax.nn.sigmoid(self.log_snr(t)))

  def sigma(self, t):
    return jnp.sqrt(jax.nn.sigmoid(-self.log_snr(t)))

  def alpha_dot(self, t):
    # d(alpha^2)/dlambda = alpha^2 sigma^2  =>  alpha_dot = alpha sigma^2 lambda_dot / 2.
    return 0.5 * self.alpha(t) * self.sigma(t) ** 2 * self._log_snr_slope(t)

  def sigma_dot(self, t):
    return -0.5 * self.sigma(t) * self.alpha(t) ** 2 * self._log_snr_slope(t)

  def snr(self, t):
    return jnp.exp(0.5 * self.log_snr(t))

  def inverse_snr(self, rho):
    lam = 2.0 * jnp.log(jnp.maximum(rho, 1e-30))
    # The table decreases in t; jnp.interp wants increasing abscissae and clips at the ends.
    return jnp.interp(lam, self._log_snr_table[::-1], self._time_table[::-1])

  def timestep(self, t):
    """Continuous time in [0, 1] -> the model's fractional training timestep in [0, K-1]."""
    return t * (self.num_train_timesteps - 1)


def ddpm_alphas_cumprod(
    beta_schedule: str = 'linear',
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    num_train_timesteps: int = 1000,
) -> np.ndarray:
  """alphas_cumprod of diffusers' 'linear' or 'scaled_linear' beta schedules."""
  if beta_schedule == 'linear':
    betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
  elif beta_schedule == 'scaled_linear':
    betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=np.float64) ** 2
  else:
    raise ValueError(
        f"Unknown beta_schedule {beta_schedule!r}; valid: 'linear', 'scaled_linear'.")
  return np.cumprod(1.0 - betas)


def build(alphas_cumprod=None, beta_schedule: str = 'linear', beta_start: float = 1e-4,
          beta_end: float = 0.02, num_train_timesteps: int = 1000) -> Discrete:
  """The schedule of `alphas_cumprod`, or else of diffusers' beta schedule arguments."""
  if alphas_cumprod is not None:
    return Discrete(alphas_cumprod=np.asarray(alphas_cumprod))
  return Discrete(alphas_cumprod=ddpm_alphas_cumprod(
      beta_schedule, float(beta_start), float(beta_end), int(num_train_timesteps)))


INTERPOLANT = InterpolantKind(
    build, fields=dict(beta_schedule='linear', beta_start=1e-4, beta_end=0.02,
                       num_train_timesteps=1000), order=3)
