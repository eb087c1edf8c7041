"""2D training sets, generated on the host from a seed: gmm, ring, moons, checkerboard."""

import jax
import numpy as np
from sklearn import datasets as sk_datasets

from models import gmm
from rewards import analytic

DATASETS = ('gmm', 'ring', 'moons', 'checkerboard')


def make_dataset(cfg, seed: int = 0) -> np.ndarray:
  """[cfg.num_points, 2] float32 points of dataset cfg.name."""
  name, n = cfg.name, int(cfg.num_points)
  if n <= 0:
    raise ValueError(f'data.num_points must be positive, got {n}.')
  if name in ('gmm', 'ring'):
    return np.asarray(gmm.sample(mixture_params(cfg), jax.random.key(seed), n))
  if name == 'moons':
    x, _ = sk_datasets.make_moons(n, noise=float(cfg.get('noise', 0.05)), random_state=seed)
    return (2.0 * (x - np.array([0.5, 0.25]))).astype(np.float32)
  if name == 'checkerboard':
    return _checkerboard(n, np.random.default_rng(seed))
  raise ValueError(f'Unknown dataset {name!r}; valid: {", ".join(DATASETS)}.')


def mixture_params(cfg):
  """The mixture behind `gmm` (data.means/stds/weights) or `ring` (8 modes, radius 4)."""
  if cfg.name == 'ring':
    means = analytic.ring_means(int(cfg.get('num_modes', 8)), float(cfg.get('radius', 4.0)))
    k = means.shape[0]
    return gmm.make_params(means, (float(cfg.get('std', 0.3)),) * k, (1.0 / k,) * k)
  return gmm.make_params(cfg.means, cfg.stds, cfg.weights)


def _checkerboard(n, rng):
  """Uniform on the 8 dark squares of a 4 x 4 board of side-2 squares on [-4, 4]^2."""
  out = np.empty((0, 2))
  while out.shape[0] < n:
    x = rng.uniform(-4.0, 4.0, size=(2 * n, 2))
    keep = (np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0
    out = np.concatenate([out, x[keep]])
  return out[:n].astype(np.float32)


def tilted_draws(data_cfg, reward_cfg, n: int, seed: int = 0):
  """n exact draws [n, 2] of the data distribution tilted by the reward, p(x) exp(r(x) / lambda),
  where that has an exact sampler (the DTS paper's 2D tasks), else None:
    ring + mode_weighting, lambda = 1: a product of two isotropic mixtures, itself a mixture;
    checkerboard + quadratic: checkerboard draws accepted with probability exp(-|x|^2 / 2 lambda).
  """
  lam = float(reward_cfg.get('temperature', 1.0))
  if data_cfg.name == 'ring' and reward_cfg.name == 'mode_weighting' and lam == 1.0:
    return np.asarray(gmm.sample(_tilted_ring(data_cfg, reward_cfg), jax.random.key(seed), n))
  if data_cfg.name == 'checkerboard' and reward_cfg.name == 'quadratic':
    rng = np.random.default_rng(seed)
    out = np.empty((0, 2), np.float32)
    while out.shape[0] < n:
      x = _checkerboard(4 * n, rng)
      keep = rng.uniform(size=len(x)) < np.exp(-np.sum(x.astype(np.float64)**2, 1) / (2 * lam))
      out = np.concatenate([out, x[keep]])
    return out[:n]
  return None


def _tilted_ring(data_cfg, reward_cfg) -> dict:
  """N(x; a, s^2) N(x; b, m^2) = N(a; b, s^2 + m^2) N(x; (m^2 a + s^2 b) / (s^2 + m^2), v) with
  v = s^2 m^2 / (s^2 + m^2): the data's modes a (weights 1/K) times the reward's modes b
  (weights exp(scale i)) give a mixture over all pairs."""
  data = mixture_params(data_cfg)
  a, s2 = np.asarray(data['means']), float(data_cfg.get('std', 0.3)) ** 2
  b = analytic.ring_means(int(reward_cfg.num_modes), float(reward_cfg.radius))
  m2 = float(reward_cfg.mode_std) ** 2
  log_w_b = float(reward_cfg.mode_scale) * np.arange(len(b))
  d2 = np.sum((a[:, None, :] - b[None, :, :]) ** 2, -1)
  log_w = log_w_b[None, :] - d2 / (2 * (s2 + m2))          # the shared normaliser cancels
  means = (m2 * a[:, None, :] + s2 * b[None, :, :]) / (s2 + m2)
  weights = np.exp(log_w - log_w.max()).reshape(-1)
  std = np.sqrt(s2 * m2 / (s2 + m2))
  return gmm.make_params(means.reshape(-1, 2), (std,) * len(weights), weights / weights.sum())
