"""The DTS paper's ring reward: log sum_i exp(scale * i) N(x; ring_i, std^2) in 2D
(reward.num_modes, reward.radius, reward.mode_std, reward.mode_scale)."""

from rewards import analytic
from rewards import base
from samplers.ground import checks


def build(cfg, shape, prompts=()) -> base.Reward:
  del prompts
  if base.dimension(shape) != 2:
    raise ValueError(f'reward mode_weighting is defined in 2D, the data has dimension '
                     f'{base.dimension(shape)}.')
  num_modes = int(cfg.get('num_modes', 8))
  if num_modes < 1:
    raise ValueError(f'reward.num_modes must be >= 1, got {num_modes}.')
  # The modes' means and weights are built on the host (float64 while built): 40 bytes a mode.
  checks.check_host_bytes(f'reward.num_modes={num_modes}', 40 * num_modes,
                          'lower reward.num_modes')
  mode_std = base.positive(cfg, 'mode_std', 0.3)
  return base.stateless(cfg.name, analytic.mode_weighting(
      num_modes, float(cfg.get('radius', 4.0)), mode_std, float(cfg.get('mode_scale', 1.5))))


# Per scored row: its squared distance, log density and weighted term to every mode (float32).
REWARD = base.RewardKind(build, fields=dict(num_modes=8, radius=4.0, mode_std=0.3,
                                            mode_scale=1.5), order=3,
                         row_bytes=lambda cfg: 16 * int(cfg.get('num_modes', 8)))
