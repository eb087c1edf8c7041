"""The linear reward r(x) = w . x + b (reward.weights, reward.bias)."""

from models import gmm
from rewards import analytic
from rewards import base


def build(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  weights = tuple(cfg.weights)
  base.check_dim('reward.weights', weights, shape)
  return base.stateless(cfg.name, analytic.linear(weights, float(cfg.get('bias', 0.0))))


def mixture_tilt(params, cfg, temperature: float) -> dict:
  return gmm.tilt_linear(params, cfg.weights, cfg.bias, temperature)


REWARD = base.RewardKind(build, fields=dict(weights=(1.0, 0.0), bias=0.0),
                         mixture_tilt=mixture_tilt, order=0)
