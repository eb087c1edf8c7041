"""RBF paper (Kim et al. 2025), budget scaling: RBF (VP-SDE) against BoN (Linear-ODE) and SVDD
(VP-SDE) at 50, 100, 300, 500 and 1000 NFE, 10 steps, on the digits flow backbone.

The paper's counting accuracy becomes the held-out classifier's accuracy on the target class:
one search per output digit, towards each of the 10 classes, 8 searches per class, 3 seeds.
Reward: the classifier's log-odds of the target class. Needs the same runs/digits folders as
configs/figures/rbf_interpolants.py.
  python main.py --config=configs/figures/rbf_budget.py --workdir=runs/rbf_budget
"""

from configs import common
from configs import digits


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('quick',))
  config = digits.get_config('flow')
  config.experiment = 'sweep'
  config.sampler.num_steps = 10
  config.reward.update(name='classifier_logodds', target_classes=tuple(range(10)),
                       heldout_checkpoint='runs/digits/classifier_heldout')
  config.search.update(num_particles=1, num_runs=8, output='best')
  ode, vp = common.SAMPLERS['linear_ode'], common.SAMPLERS['vp_sde']
  config.sweep = common.sweep_config(
      title='RBF paper: accuracy against NFE (digits, held-out classifier; RBF as released)',
      method=('bon', 'svdd', 'rbf'), budget=(50, 100, 300, 500, 1000), seed=(0, 1, 2),
      presets=dict(task={}, sampler={}, method={
          'bon': {'search': {'method': 'bon'}, 'sampler': ode},
          'svdd': {'search': {'method': 'svdd'}, 'sampler': vp},
          # RBF as released: 2 chains per search (search/rbf.py).
          'rbf': {'search': {'method': 'rbf', 'num_particles': 2}, 'sampler': vp}}),
      table_metrics=('heldout_accuracy', 'reward_mean', 'heldout_log_prob', 'nfe'),
      plot=dict(metrics=('heldout_accuracy', 'reward_mean'), x='budget', series='method',
                panel='', logx=True),
      paired=(('method', 'rbf', 'bon', 'heldout_accuracy'),
              ('method', 'rbf', 'svdd', 'heldout_accuracy')))
  if 'quick' in tokens:
    digits.apply_quick(config)
    config.sampler.num_steps = 4
    config.reward.target_classes = (1, 3)
    config.search.update(num_particles=1, num_runs=2)
    config.sweep.update(method=('bon', 'rbf'), budget=(16,), seed=(0,))
  return config
