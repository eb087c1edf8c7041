"""DTS paper (Jain et al. 2025), DTS* against best-of-N on the digits reward: the best reward
found against NFE, and the NFE at which DTS* reaches best-of-N's best value at the largest
budget (the paper: 5x less compute on Stable Diffusion with ImageReward).

The reward is the classifier's log-odds of the target class, which keeps rising where
log p(c | x) is already ~0; each point searches towards all 10 classes (one search each) with
the flow U-Net on the VP-SDE, 50 steps, branching every 10 levels; the best reward is averaged
over classes and 3 seeds.
  python main.py --config=configs/figures/dts_star.py --workdir=runs/dts_star
"""

from configs import common
from configs import digits


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('quick',))
  config = digits.get_config('flow')
  config.experiment = 'sweep'
  config.sampler.update(interpolant='vp', sde=True, num_steps=50, time_grid='uniform')
  config.reward.update(name='classifier_logodds', target_classes=tuple(range(10)),
                       heldout_checkpoint='runs/digits/classifier_heldout')
  config.search.update(num_particles=1, num_runs=1, output='best', branch_every=10)
  config.sweep = common.sweep_config(
      title='DTS*: best reward against NFE (digits, log-odds reward)',
      method=('bon', 'dts_star'), budget=(1_000, 3_000, 10_000), seed=(0, 1, 2),
      table_metrics=('best_reward', 'heldout_accuracy', 'heldout_log_prob', 'nfe'),
      plot=dict(metrics=('best_reward',), x='budget', series='method', panel='', logx=True),
      reach=(('dts_star', 'bon', 'best_reward'),))
  if 'quick' in tokens:
    digits.apply_quick(config)
    config.reward.target_classes = (1, 3)
    config.search.update(num_particles=1, branch_every=2)
    config.sweep.update(budget=(48,), seed=(0,))
  return config
