"""Reward registry: batched functions r(x0 [N, ...], cond) -> [N], chosen by `reward.name`.

The temperature lambda of the tilted target p(x0) exp(r(x0) / lambda) is `reward.temperature`
and belongs to the search methods; a reward itself is a plain function of the clean sample.
"""

from typing import Callable, NamedTuple

import numpy as np

from rewards import analytic
from rewards import classifier
from rewards import host

REWARDS = ('linear', 'gaussian', 'quadratic', 'mode_weighting', 'classifier', 'classifier_set',
           'compressibility')


class Reward(NamedTuple):
  name: str
  fn: Callable  # (x0 [N, ...], cond) -> [N]

  def __call__(self, x0, cond=None):
    return self.fn(x0, cond)


def get_reward(cfg, data_shape) -> Reward:
  """Builds the reward named by cfg.name, validating its fields against the data shape."""
  name = cfg.name
  data_shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
  data_dim = int(np.prod(data_shape))
  if name in ('classifier', 'classifier_set'):
    if not cfg.get('checkpoint'):
      raise ValueError(f'reward {name} needs reward.checkpoint (a train_classifier workdir).')
    module, params, shape = classifier.load(cfg.checkpoint)
    if shape != data_shape:
      raise ValueError(f'the classifier in {cfg.checkpoint!r} takes images of shape {shape}, '
                       f'the backbone makes {data_shape}.')
    if name == 'classifier':
      target = int(cfg.target_class)
      if not 0 <= target < module.num_classes:
        raise ValueError(f'reward.target_class must lie in 0..{module.num_classes - 1}, '
                         f'got {target}.')
      return Reward(name, classifier.target_class_reward(module, params, target))
    classes = tuple(int(c) for c in cfg.classes)
    if not classes or any(not 0 <= c < module.num_classes for c in classes):
      raise ValueError(f'reward.classes must be a non-empty subset of 0..'
                       f'{module.num_classes - 1}, got {classes}.')
    return Reward(name, classifier.class_set_reward(module, params, classes))
  if name == 'compressibility':
    return Reward(name, host.compressibility(cfg.get('format', 'png')))
  if name == 'linear':
    weights = tuple(cfg.weights)
    _check_dim('reward.weights', weights, data_dim)
    return Reward(name, analytic.linear(weights, float(cfg.get('bias', 0.0))))
  if name == 'gaussian':
    center = tuple(cfg.center)
    _check_dim('reward.center', center, data_dim)
    width = float(cfg.get('width', 1.0))
    if width <= 0:
      raise ValueError(f'reward.width must be positive, got {width}.')
    return Reward(name, analytic.gaussian(center, width))
  if name == 'quadratic':  # the checkerboard task's r(x) = -|x|^2 / 2
    return Reward(name, analytic.gaussian((0.0,) * data_dim, 1.0))
  if name == 'mode_weighting':
    if data_dim != 2:
      raise ValueError(f'reward mode_weighting is defined in 2D, the data has dimension {data_dim}.')
    return Reward(name, analytic.mode_weighting(
        int(cfg.get('num_modes', 8)), float(cfg.get('radius', 4.0)),
        float(cfg.get('mode_std', 0.3)), float(cfg.get('mode_scale', 1.5))))
  raise ValueError(f'Unknown reward {name!r}; valid: {", ".join(REWARDS)}.')


def _check_dim(field, value, data_dim):
  if len(value) != data_dim:
    raise ValueError(f'{field} has {len(value)} entries but the data has dimension {data_dim}.')
