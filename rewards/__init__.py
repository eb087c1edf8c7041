"""Reward registry: batched functions r(x0 [N, ...], cond) -> [N], chosen by `reward.name`.

The temperature lambda of the tilted target p(x0) exp(r(x0) / lambda) is `reward.temperature`
and belongs to the search methods; a reward itself is a plain function of the clean sample.
"""

from typing import Callable, NamedTuple

from rewards import analytic

REWARDS = ('linear', 'gaussian', 'quadratic', 'mode_weighting')


class Reward(NamedTuple):
  name: str
  fn: Callable  # (x0 [N, ...], cond) -> [N]

  def __call__(self, x0, cond=None):
    return self.fn(x0, cond)


def get_reward(cfg, data_dim: int) -> Reward:
  """Builds the reward named by cfg.name, validating its fields against the data dimension."""
  name = cfg.name
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
