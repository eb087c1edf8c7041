"""Interpolants x_t = alpha_t * x0 + sigma_t * eps, with t = 1 noise and t = 0 data.

Each interpolant gives alpha, sigma, their time derivatives and the inverse of the
signal-to-noise ratio rho(t) = alpha_t / sigma_t. All functions take and return arrays of any
shape (time is broadcast elementwise); they are pure jnp and safe under jit, vmap and grad.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


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

  def transition(self, t, t_next):
    """Exact forward Gaussian transition from t to a noisier t_next > t.

    Returns (scale, std) with x_{t_next} | x_t ~ N(scale * x_t, std^2 I):
    scale = alpha_{t_next} / alpha_t, std^2 = sigma_{t_next}^2 - scale^2 * sigma_t^2.
    """
    scale = self.alpha(t_next) / self.alpha(t)
    var = self.sigma(t_next) ** 2 - (scale * self.sigma(t)) ** 2
    return scale, jnp.sqrt(jnp.maximum(var, 0.0))


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


INTERPOLANTS = ('linear', 'vp', 'cosine', 'discrete')


def get_interpolant(name: str, **kwargs) -> Interpolant:
  """Builds an interpolant by name.

  `discrete` takes either `alphas_cumprod` or the arguments of `ddpm_alphas_cumprod`.
  """
  if name == 'linear':
    return Linear()
  if name == 'cosine':
    return Cosine()
  if name == 'vp':
    return VP(**kwargs)
  if name == 'discrete':
    if 'alphas_cumprod' in kwargs:
      return Discrete(alphas_cumprod=np.asarray(kwargs['alphas_cumprod']))
    return Discrete(alphas_cumprod=ddpm_alphas_cumprod(**kwargs))
  raise ValueError(f'Unknown interpolant {name!r}; valid: {", ".join(INTERPOLANTS)}.')


def from_config(cfg) -> Interpolant:
  """The interpolant named by cfg.interpolant (a model's native one or a sampler's target).

  `discrete` reads cfg.beta_schedule, cfg.beta_start, cfg.beta_end, cfg.num_train_timesteps.
  """
  name = cfg.get('interpolant', 'linear')
  if name == 'discrete':
    return get_interpolant(
        name, beta_schedule=cfg.get('beta_schedule', 'linear'),
        beta_start=float(cfg.get('beta_start', 1e-4)), beta_end=float(cfg.get('beta_end', 0.02)),
        num_train_timesteps=int(cfg.get('num_train_timesteps', 1000)))
  return get_interpolant(name)
