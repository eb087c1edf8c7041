"""A Flax CNN digit classifier, and the rewards built on it.

  classifier      r(x) = log p(c | x) for the target class c: reward.target_class, or the
                  condition's cond['target_class'] (a batch of classes searched at once), or a
                  class-label condition
  classifier_logodds
                  r(x) = log p(c | x) - log(1 - p(c | x)), the same target's log-odds: unbounded
                  above, so the best reward keeps improving where log p(c | x) is already ~0
  classifier_set  r(x) = max_{c in S} log p(c | x) for a set S (reward.classes; the DTS
                  paper's even/odd task)

Images are [N, 8, 8, 1] in [-1, 1]. The penultimate features (128) feed the Frechet distance.
"""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.loading import checkpoint
from rewards import base


class Classifier(nn.Module):
  """x [N, H, W, C] -> (logits [N, num_classes], features [N, features])."""
  num_classes: int = 10
  features: int = 128

  @nn.compact
  def __call__(self, x):
    h = nn.silu(nn.Conv(32, (3, 3))(x))
    h = nn.silu(nn.Conv(64, (3, 3), strides=(2, 2))(h))
    h = nn.silu(nn.Conv(64, (3, 3), strides=(2, 2))(h))
    feats = nn.silu(nn.Dense(self.features)(h.reshape(h.shape[0], -1)))
    return nn.Dense(self.num_classes)(feats), feats


def init_params(module: Classifier, key, data_shape):
  return module.init(key, jnp.zeros((1,) + tuple(data_shape)))['params']


def load(workdir: str):
  """(module, params, data_shape) of a train_classifier run."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'reward.checkpoint={workdir!r} is not a train_classifier workdir '
                            '(no config.json); train one with configs/digits.py:classifier.')
  with open(path) as f:
    cfg = json.load(f)
  module = Classifier(num_classes=int(cfg['classifier']['num_classes']),
                      features=int(cfg['classifier']['features']))
  shape = tuple(cfg['classifier']['data_shape'])
  template = init_params(module, jax.random.key(0), shape)
  params, _ = checkpoint.restore_latest_params(os.path.join(workdir, 'checkpoints'), template)
  return module, params, shape


def log_probs_fn(module, params):
  return lambda x: jax.nn.log_softmax(module.apply({'params': params}, x)[0], axis=-1)


def features_fn(module, params):
  return lambda x: module.apply({'params': params}, x)[1]


def target_class(cond, default: int):
  """The class a reward targets: cond['target_class'] or a class-label cond, else `default`."""
  if isinstance(cond, dict):
    return cond.get('target_class', default)
  return default if cond is None else cond


def target_class_reward(module, target: int, logodds: bool = False):
  """fn(params, x0, cond) -> [N]: log p(c | x0), or its log-odds."""
  def fn(params, x0, cond=None):
    lp = log_probs_fn(module, params)(x0)
    c = jnp.broadcast_to(jnp.asarray(target_class(cond, target), jnp.int32), lp.shape[:1])
    chosen = jnp.take_along_axis(lp, c[:, None], axis=1)[:, 0]
    if not logodds:
      return chosen
    others = jnp.where(jax.nn.one_hot(c, lp.shape[-1], dtype=bool), -jnp.inf, lp)
    return chosen - jax.nn.logsumexp(others, axis=-1)   # log p_c - log(1 - p_c), stably
  return fn


def class_set_reward(module, classes):
  """fn(params, x0, cond) -> [N]: max over the class set of log p(c | x0)."""
  idx = jnp.asarray(classes, jnp.int32)

  def fn(params, x0, cond=None):
    del cond
    return jnp.max(log_probs_fn(module, params)(x0)[:, idx], axis=-1)
  return fn


def _classifier(cfg, shape):
  """(module, params) of the classifier in reward.checkpoint, checked against `shape`."""
  name = cfg.name
  if not cfg.get('checkpoint'):
    raise ValueError(f'reward {name} needs reward.checkpoint (a train_classifier workdir).')
  module, params, trained_shape = load(cfg.checkpoint)
  if trained_shape != tuple(shape):
    raise ValueError(f'the classifier in {cfg.checkpoint!r} takes images of shape '
                     f'{trained_shape}, the backbone makes {tuple(shape)}.')
  return module, params


def _build_target(logodds: bool):
  def build(cfg, shape, prompts=()) -> base.Reward:
    del prompts
    module, params = _classifier(cfg, shape)
    target = int(cfg.target_class)
    if not 0 <= target < module.num_classes:
      raise ValueError(f'reward.target_class must lie in 0..{module.num_classes - 1}, '
                       f'got {target}.')
    return base.Reward(cfg.name, target_class_reward(module, target, logodds=logodds), params)
  return build


def build_class_set(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  module, params = _classifier(cfg, shape)
  classes = tuple(int(c) for c in cfg.classes)
  if not classes or any(not 0 <= c < module.num_classes for c in classes):
    raise ValueError(f'reward.classes must be a non-empty subset of 0..'
                     f'{module.num_classes - 1}, got {classes}.')
  return base.Reward(cfg.name, class_set_reward(module, classes), params)


# checkpoint: a train_classifier workdir; target_class: r = log p(target | x) (classifier) or
# log p(target | x) - log(1 - p(target | x)) (classifier_logodds); target_classes: one
# independent search per class (vmapped, the budget per class), overriding target_class;
# classes: r = max_{c in classes} log p(c | x) (classifier_set).
_FIELDS = dict(checkpoint='', target_class=0, target_classes=(), classes=(0, 2, 4, 6, 8))
REWARDS = (
    base.RewardKind(_build_target(logodds=False), _FIELDS, per_class=True, order=10,
                    target=lambda cfg: int(cfg.target_class), name='classifier',
                    evaluation='classifier'),
    base.RewardKind(_build_target(logodds=True), _FIELDS, per_class=True, order=11,
                    target=lambda cfg: int(cfg.target_class), name='classifier_logodds',
                    evaluation='classifier'),
    base.RewardKind(build_class_set, _FIELDS, order=12,
                    target=lambda cfg: tuple(int(c) for c in cfg.classes), name='classifier_set',
                    evaluation='classifier'),
)
