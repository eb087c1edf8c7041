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
