"""A Flax CNN digit classifier, and the rewards built on it.

  classifier      r(x) = log p(c | x) for the target class c (reward.target_class, or the
                  prompt's condition when the search passes one)
  classifier_set  r(x) = max_{c in S} log p(c | x) for a set S (reward.classes; the DTS
                  paper's even/odd task)

Images are [N, 8, 8, 1] in [-1, 1]. The penultimate features (128) feed the Frechet distance.
"""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import checkpoint


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


def target_class_reward(module, params, target: int):
  log_probs = log_probs_fn(module, params)

  def fn(x0, cond=None):
    c = target if cond is None else cond
    lp = log_probs(x0)
    return jnp.take_along_axis(
        lp, jnp.broadcast_to(jnp.asarray(c, jnp.int32), lp.shape[:1])[:, None], axis=1)[:, 0]
  return fn


def class_set_reward(module, params, classes):
  log_probs = log_probs_fn(module, params)
  idx = jnp.asarray(classes, jnp.int32)

  def fn(x0, cond=None):
    del cond
    return jnp.max(log_probs(x0)[:, idx], axis=-1)
  return fn
