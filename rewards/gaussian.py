"""Gaussian bumps: r(x) = -|x - c|^2 / (2 width^2) (reward.center, reward.width), and the
checkerboard task's quadratic r(x) = -|x|^2 / 2, the bump at the origin with width 1."""

from models import gmm
from rewards import analytic
from rewards import base


def build_gaussian(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  center = tuple(cfg.center)
  base.check_dim('reward.center', center, shape)
  return base.stateless(cfg.name, analytic.gaussian(center, base.positive(cfg, 'width', 1.0)))


def build_quadratic(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  return base.stateless(cfg.name, analytic.gaussian((0.0,) * base.dimension(shape), 1.0))


def tilt_gaussian(params, cfg, temperature: float) -> dict:
  return gmm.tilt_gaussian(params, cfg.center, cfg.width, temperature)


def tilt_quadratic(params, cfg, temperature: float) -> dict:
  del cfg
  return gmm.tilt_gaussian(params, (0.0,) * params['means'].shape[1], 1.0, temperature)


REWARDS = (
    base.RewardKind(build_gaussian, fields=dict(center=(0.0, 0.0), width=1.0),
                    mixture_tilt=tilt_gaussian, order=1, name='gaussian'),
    base.RewardKind(build_quadratic, mixture_tilt=tilt_quadratic, order=2, name='quadratic'),
)
