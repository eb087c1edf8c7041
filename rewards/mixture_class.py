"""The class posterior of a Gaussian mixture, r(x) = log p(c | x) = log w_c N(x; mu_c, s_c^2) -
log sum_k w_k N(x; mu_k, s_k^2): the mixture of reward.class_means, class_stds, class_weights
(the analytic backbone's own, models/gmm.py), c the condition's target class
(reward.target_classes batches them) or reward.target_class.

At lambda = 1 the tilted target p(x) p(c | x) / Z is the class's component N(mu_c, s_c^2)
exactly: an exact class-conditional target, scored by experiments/evaluation/recorders.py
(Vectors) against that component (`class_component`).
"""

import jax.numpy as jnp

from models import gmm
from rewards import base
from rewards import classifier


def mixture(cfg) -> dict:
  """The reward's mixture, checked (reward.class_means [K, D], class_stds, class_weights)."""
  if not len(cfg.get('class_means', ())):
    raise ValueError(f'reward {cfg.name} needs reward.class_means (and class_stds, '
                     'class_weights): the mixture whose class posterior it scores.')
  return gmm.make_params(cfg.class_means, cfg.class_stds, cfg.class_weights)


def class_component(params, c: int) -> dict:
  """The mixture of component c alone: the tilted target at lambda = 1 towards class c."""
  return {'means': params['means'][c:c + 1], 'stds': params['stds'][c:c + 1],
          'log_weights': jnp.zeros((1,), jnp.float32)}


def log_posterior(params, x, c):
  """log p(c | x) [N] of the clean mixture; x [N, D], c [N] int."""
  log_post = gmm.log_responsibilities(params, x, 1.0, 0.0)
  return jnp.take_along_axis(log_post, c[:, None], axis=1)[:, 0]


def build(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  params = mixture(cfg)
  k, dim = params['means'].shape
  if base.dimension(shape) != dim:
    raise ValueError(f'reward.class_means has dimension {dim}; the data has dimension '
                     f'{base.dimension(shape)}.')
  target = int(cfg.target_class)
  if not 0 <= target < k:
    raise ValueError(f'reward.target_class must lie in 0..{k - 1}, got {target}.')

  def fn(p, x0, cond=None):
    c = jnp.broadcast_to(jnp.asarray(classifier.target_class(cond, target), jnp.int32),
                         x0.shape[:1])
    return log_posterior(p, x0.reshape(x0.shape[0], -1), c)
  return base.Reward(cfg.name, fn, params)


REWARD = base.RewardKind(build, fields=dict(class_means=(), class_stds=(), class_weights=(),
                                            target_class=0, target_classes=()),
                         per_class=True, target=lambda cfg: int(cfg.target_class), order=12)
