"""Any image scorer on the host (ImageReward, PickScore, a server), named by reward.function =
'package.module:function' and called as function(uint8 images [N, H, W, 3], prompts: N str)
-> [N] (rewards/host.py); it has no gradient."""

import importlib

from rewards import base
from rewards import host


def _function(cfg):
  spec = base.required(cfg, 'function', cfg.name)
  module_name, _, attr = spec.partition(':')
  try:
    return getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError, ValueError):
    raise ValueError(f'reward.function {spec!r} is not an importable "module:function".') from None


def build(cfg, shape, prompts=()) -> base.Reward:
  np_fn, prompts = _function(cfg), list(prompts) or ['']
  return base.Reward(cfg.name, host.host_image_reward(np_fn, prompts),
                     probe=host.probe_image_reward(np_fn, prompts, shape))


REWARD = base.RewardKind(build, fields=dict(function=''), images=True, order=34)
