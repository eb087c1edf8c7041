"""Diffusion-coefficient schedules g(t) and time grids (docs/math.md, section 5)."""

import dataclasses

import jax.numpy as jnp
import numpy as np

DIFFUSIONS = ('square', 'linear', 'sigma', 'constant', 'sine', 'reverse_square')
TIME_GRIDS = ('uniform', 'adaptive', 'inclusive', 'flow_match')


@dataclasses.dataclass(frozen=True)
class Diffusion:
  """g(t) for the reverse SDE; t is the time of the process being simulated.

  square: norm t^2 (the RBF paper uses 3 t^2); linear: norm t; sigma: norm sigma_t;
  constant: norm; sine: norm sin(pi t / 2); reverse_square: norm (1 - (1 - t)^2) (the
  Psi-Sampler code's `rev_original`).
  """

  name: str = 'square'
  norm: float = 3.0

  def __post_init__(self):
    if self.name not in DIFFUSIONS:
      raise ValueError(
          f'Unknown diffusion schedule {self.name!r}; valid: {", ".join(DIFFUSIONS)}.')
    if not self.norm >= 0:
      raise ValueError(f'diffusion_norm must be >= 0, got {self.norm}.')

  def __call__(self, t, interp):
    if self.name == 'square':
      return self.norm * t**2
    if self.name == 'linear':
      return self.norm * t
    if self.name == 'sigma':
      return self.norm * interp.sigma(t)
    if self.name == 'constant':
      return self.norm * jnp.ones_like(t)
    if self.name == 'reverse_square':
      return self.norm * (1.0 - (1.0 - t) ** 2)
    return self.norm * jnp.sin(0.5 * jnp.pi * t)


def shift_grid(grid: np.ndarray, shift: float) -> np.ndarray:
  """A grid on a shifted clock, t -> k t / (1 + (k - 1) t) with k = shift > 0: the timestep
  shift of flow schedulers (diffusers' FlowMatchEulerDiscreteScheduler: `shift`, or exp(mu)
  with resolution-dependent shifting, the same map). k > 1 spends more steps near noise; k = 1
  leaves the grid as it is."""
  shift = float(shift)
  if not (np.isfinite(shift) and shift > 0):
    raise ValueError(f'the time shift (sampler.time_shift, or the backbone scheduler\'s) must be a '
                     f'finite number > 0, got {shift}.')
  if shift == 1.0:
    return grid
  return shift_time(np.asarray(grid, np.float64), shift).astype(np.float32)


def shift_time(t, shift: float):
  """The shifted clock k t / (1 + (k - 1) t), at the precision of t (shift_grid's map; also
  where diffusers' flow scheduler puts its sigma_min, models/diffusers_folder.py)."""
  return shift * t / (1.0 + (shift - 1.0) * t)


def time_grid(name: str, num_steps: int, end: float = 1e-3) -> np.ndarray:
  """Times t_0 = 1 > t_1 > ... > t_M = 0, float32 [num_steps + 1].

  uniform: t_k = 1 - k/M. adaptive (RBF paper): t_k = sqrt(1 - (k/M)^2), small steps near noise.
  inclusive: t_k = 1 - k/(M - 1), so the last level M - 1 is evaluated at t = 0 itself (t_M = 0
  repeats it): a discrete DDPM's own timesteps K - 1, ..., 0 when M = K (the discrete
  interpolant puts timestep k at k / (K - 1)), whose last step returns its x0 estimate there.
  """
  if not isinstance(num_steps, (int, np.integer)) or num_steps <= 0:
    raise ValueError(f'num_steps must be a positive integer, got {num_steps!r}.')
  frac = np.arange(num_steps + 1, dtype=np.float64) / num_steps
  if name == 'uniform':
    grid = 1.0 - frac
  elif name == 'inclusive':
    if num_steps < 2:
      raise ValueError(f"time_grid 'inclusive' needs num_steps >= 2, got {num_steps}.")
    grid = np.maximum(1.0 - np.arange(num_steps + 1, dtype=np.float64) / (num_steps - 1), 0.0)
  elif name == 'flow_match':
    if not 0.0 < end < 1.0:
      raise ValueError(f"time_grid 'flow_match' ends at the scheduler's sigma_min, which must be "
                       f'in (0, 1); got {end}.')
    grid = np.append(np.linspace(1.0, float(end), num_steps), 0.0)
  elif name == 'adaptive':
    grid = np.sqrt(np.maximum(1.0 - frac**2, 0.0))
  else:
    raise ValueError(f'Unknown time grid {name!r}; valid: {", ".join(TIME_GRIDS)}.')
  return grid.astype(np.float32)
