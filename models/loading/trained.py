"""Restoring a trained backbone from the workdir of a `train` run (config.json + checkpoints)."""

import json
import os

import jax
import ml_collections

from models.loading import checkpoint


def get_module_lib(name: str):
  """The module of trainable backbone `name` (a `trainable` BackboneKind)."""
  import models  # pylint: disable=g-import-not-at-top
  kinds = [n for n in models.names() if models.get_kind(n).trainable]
  if name not in kinds:
    raise ValueError(f'Unknown trainable model {name!r}; valid: {", ".join(kinds)}.')
  return models.get_kind(name).module


def build(cfg):
  """The backbone of the train run in model.checkpoint; model.guidance_weight, where the
  section has it, overrides the trained classifier-free guidance weight."""
  if not cfg.get('checkpoint'):
    raise ValueError('model.checkpoint is empty: set it to the workdir of a train run '
                     '(e.g. python main.py --config=configs/toy2d.py:DATASET --workdir=DIR).')
  overrides = {'guidance_weight': cfg.guidance_weight} if 'guidance_weight' in cfg else None
  return load(cfg.checkpoint, overrides)


def read_train_config(train_workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(train_workdir, 'config.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'{train_workdir!r} is not a train run workdir (no config.json); '
        'train one with --config.experiment=train first.')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load(train_workdir: str, overrides=None):
  """The backbone of a train run, from its newest checkpoint.

  overrides: model fields to change at sampling time (e.g. guidance_weight).
  """
  train_cfg = read_train_config(train_workdir)
  model_cfg = train_cfg.model
  if overrides:
    model_cfg.update(overrides)
  if 'data_shape' in model_cfg:
    shape = tuple(model_cfg.data_shape)
  elif model_cfg.name == 'mlp' and 'dim' in train_cfg.get('data', {}):
    shape = (int(train_cfg.data.dim),)  # 2D runs written before model.data_shape existed
  else:
    raise ValueError(f'{train_workdir!r}/config.json has no model.data_shape; retrain it or '
                     'add the field.')
  lib = get_module_lib(model_cfg.name)
  module = lib.make_module(model_cfg, shape)
  template = lib.init_params(module, jax.random.key(0), shape)
  params, _ = checkpoint.restore_latest_params(
      os.path.join(train_workdir, 'checkpoints'), template)
  return lib.make_backbone(module, params, model_cfg, shape)
