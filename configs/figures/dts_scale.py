"""DTS at scale on the analytic 2D mixture: the distance to the exact tilted target against NFE,
1e4 to 1e6, for both tree builds (the paper's softmax and the unbiased uniform one) with one
rollout at a time and with 64 and 256 in flight (continuous batching; synchronous at 64). The
backbone is exact, so the only error left is the method's. VP-SDE, 50 steps, branching every
10 levels, lambda = 1, 2048 output draws against 2048 exact ones (energy_distance), and the
squared unit-bandwidth MMD with its finite-sample floor (mmd_exact_draws).

  python main.py --config=configs/figures/dts_scale.py --workdir=runs/dts_scale
"""

from configs import common
from configs import gmm2d

BUILDS = {'uniform': 'uniform', 'softmax': 'softmax'}
BATCHES = ((1, 'continuous'), (64, 'continuous'), (64, 'synchronous'), (256, 'continuous'))


def _name(build, batch, batching):
  return f'{build}_b{batch}' + ('_sync' if batching == 'synchronous' else '')


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('quick',))
  config = gmm2d.get_config()
  config.experiment = 'sweep'
  config.sampler.update(interpolant='vp', sde=True, num_steps=50, time_grid='uniform')
  config.search.update(num_particles=2048, branch_every=10, output='samples',
                       resampling='multinomial')
  methods = {_name(build, b, mode): {'search': {'method': 'dts', 'tree_selection': rule,
                                                'dts_batch': b, 'dts_batching': mode}}
             for build, rule in BUILDS.items() for b, mode in BATCHES}
  config.sweep = common.sweep_config(
      title='DTS at scale: energy distance to the tilted target against NFE (2D mixture)',
      method=tuple(methods), budget=(10_000, 100_000, 1_000_000), seed=(0, 1, 2),
      presets=dict(task={}, sampler={}, method=methods),
      table_metrics=('energy_distance', 'mmd', 'mmd_exact_draws', 'nfe', 'nfe_evaluated'),
      plot=dict(metrics=('energy_distance',), x='budget', series='method', logx=True,
                logy=True))
  if 'quick' in tokens:
    config.sampler.num_steps = 10
    config.search.update(num_particles=64, branch_every=3)
    config.sweep.update(method=('uniform_b1', 'softmax_b64'), budget=(400,), seed=(0,))
    config.sweep.presets.method = {k: methods[k] for k in ('uniform_b1', 'softmax_b64')}
  return config
