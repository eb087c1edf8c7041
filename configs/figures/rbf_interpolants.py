"""RBF paper (Kim et al. 2025), the interpolant study, on the digits flow backbone.

BoN, SoP, SMC, CoDe, SVDD and RBF at 500 NFE and 10 steps, each on Linear-ODE, Linear-SDE and
VP-SDE (docs/math.md, section 5), one search of 500 NFE per output digit. The reward is the
classifier's log-odds of the target class (it does not saturate at 0 as log p(c | x) does);
every point searches towards all 10 classes at once (reward.target_classes), 8 searches per
class, 3 seeds. Judged by the mean reward, a second classifier that no search saw (held-out
accuracy and log-probability: the paper's held-out metrics) and the mean pairwise pixel
distance between a class's outputs (the paper's LPIPS-MPD diversity).

Variants: `ablation` (RBF on Linear-SDE, adaptive time only, adaptive diffusion only, VP-SDE),
`quick` (tiny, for tests). Needs runs/digits/{flow,classifier,classifier_heldout}:
  python main.py --config=configs/digits.py:flow --workdir=runs/digits/flow
  python main.py --config=configs/digits.py:classifier --workdir=runs/digits/classifier
  python main.py --config=configs/digits.py:classifier --workdir=runs/digits/classifier_heldout \
      --config.seed=1 --config.classifier.features=64
  python main.py --config=configs/figures/rbf_interpolants.py --workdir=runs/rbf_interpolants
"""

from configs import common
from configs import digits

METHODS = ('bon', 'sop', 'smc', 'code', 'svdd', 'rbf')


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('ablation', 'quick'))
  config = digits.get_config('flow')
  config.experiment = 'sweep'
  config.sampler.num_steps = 10
  config.reward.update(name='classifier_logodds', target_classes=tuple(range(10)),
                       heldout_checkpoint='runs/digits/classifier_heldout')
  # One chain per search (the paper's one image per prompt); bon and smc draw budget/steps.
  config.search.update(budget=500, num_particles=1, num_runs=8, output='best', block_size=3)
  samplers = ('linear_ode', 'linear_sde', 'vp_sde')
  if 'ablation' in tokens:
    samplers = ('linear_sde', 'adaptive_time_only', 'adaptive_diffusion_only', 'vp_sde')
  config.sweep = common.sweep_config(
      title=('RBF paper: the conversion ablation, RBF at 500 NFE, 10 steps' if 'ablation' in tokens
             else 'RBF paper: samplers x methods at 500 NFE, 10 steps')
            + ' (digits, log-odds reward; RBF as released)',
      sampler=samplers, method=('rbf',) if 'ablation' in tokens else METHODS,
      seed=(0, 1, 2),
      # SoP searches along the interpolant's ODE whatever the sampler's SDE flag: its Linear-SDE
      # point would be its Linear-ODE one again.
      skip=() if 'ablation' in tokens else ('sampler=linear_sde,method=sop',),
      # RBF as released: 2 chains per search (search/rbf.py); the others as their method value.
      presets=dict(task={}, sampler=common.sampler_presets(*samplers),
                   method={'rbf': {'search': {'method': 'rbf', 'num_particles': 2}}}),
      table_metrics=('reward_mean', 'heldout_accuracy', 'heldout_log_prob', 'diversity', 'nfe'),
      plot=dict(metrics=('reward_mean', 'heldout_log_prob', 'diversity'),
                x='sampler' if 'ablation' in tokens else 'method',
                series='method' if 'ablation' in tokens else 'sampler', panel='', logx=False),
      paired=(('sampler', 'vp_sde', 'linear_sde', 'heldout_log_prob'),)
      + (() if 'ablation' in tokens else tuple(
          ('method', 'rbf', m, 'heldout_log_prob') for m in METHODS if m != 'rbf')))
  if 'quick' in tokens:
    digits.apply_quick(config)
    config.sampler.num_steps = 4
    config.reward.target_classes = (1, 3)
    config.search.update(budget=24, num_particles=1, num_runs=2, block_size=2)
    config.sweep.seed = (0,)
    if 'ablation' not in tokens:
      config.sweep.update(method=('rbf',), sampler=('linear_ode', 'vp_sde'), skip=())
  return config
