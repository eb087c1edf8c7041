"""Small fixtures shared across test modules (kept in one place so compiled code is reused)."""

import functools

import jax
import numpy as np

from models import gmm
from samplers import interpolants

MEANS = ((-3.0, -1.0), (0.0, 2.5), (3.0, -1.0))
STDS = (0.5, 0.6, 0.4)
WEIGHTS = (0.3, 0.3, 0.4)
INTERPOLANT_NAMES = ('linear', 'vp', 'cosine', 'discrete')


@functools.lru_cache(maxsize=None)
def interpolant(name):
  return interpolants.get_interpolant(name)


def mixture_params():
  return gmm.make_params(MEANS, STDS, WEIGHTS)


def exact_draws(n, seed=123):
  return np.asarray(gmm.sample(mixture_params(), jax.random.key(seed), n))


def tiny_train_config(num_steps: int, log_every: int = 10):
  """A 2D MLP training config on the mixture, small enough to train in a second or two."""
  from configs import toy2d  # pylint: disable=g-import-not-at-top
  config = toy2d.get_config('gmm,quick')
  config.model.update(hidden=32, depth=2, embed_dim=16)
  config.train.update(num_steps=num_steps, log_every=log_every, batch_size=64)
  return config
