"""Reference points a 2D run is judged against: draws of the distribution the backbone models,
and exact draws of the tilted target where one exists."""

import json
import os
from typing import Optional

from absl import logging
import jax
import ml_collections
import numpy as np

import models
from experiments.data import data2d
from models import gmm


def base_samples(model_cfg, key, n: int) -> np.ndarray:
  """Points of the distribution the backbone models: exact mixture draws or training data."""
  mixture = models.get_kind(model_cfg.name).mixture
  if mixture is not None:
    return np.asarray(gmm.sample(mixture(model_cfg), key, n))
  data_cfg = training_data_config(model_cfg.checkpoint)
  data_cfg.num_points = n
  return data2d.make_dataset(data_cfg, seed=data_cfg.seed + 1)


def training_data_config(checkpoint: str) -> ml_collections.ConfigDict:
  """The `data` section of a 2D train run (its seed included)."""
  with open(os.path.join(checkpoint, 'config.json')) as f:
    train_cfg = json.load(f)
  return ml_collections.ConfigDict(dict(train_cfg['data'], seed=train_cfg['seed']))


def exact_target_draws(config, target: Optional[dict], key, n: int) -> Optional[np.ndarray]:
  """n exact draws of the tilted target, or None where it has no exact sampler: the closed form
  `target` (a mixture, experiments/problem.py: tilted_target); for a 2D backbone trained on
  ring or checkerboard, the tilted data distribution (the DTS paper's target, which the trained
  backbone only approximates)."""
  if target is not None:
    draws = np.asarray(gmm.sample(target, key, n))
  elif not models.get_kind(config.model.name).trainable or not config.model.get('checkpoint'):
    return None
  else:
    data_cfg = training_data_config(config.model.checkpoint)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    draws = data2d.tilted_draws(data_cfg, config.reward, n, seed)
    if draws is None:
      return None
    draws = np.asarray(draws)
  if not np.all(np.isfinite(draws)):
    logging.warning('the exact draws of the tilted target hold NaN or inf (at reward.'
                    'temperature=%g its closed form under- or overflows float32): the metrics '
                    'against it (energy_distance, mmd) are left out.',
                    float(config.reward.temperature))
    return None
  return draws
