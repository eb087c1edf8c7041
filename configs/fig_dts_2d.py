"""DTS paper (Jain et al. 2025), 2D sampling: MMD to exact draws of the tilted target against
NFE for DTS, SMC and best-of-N importance resampling (bon with output=samples), plus DTS with
the unbiased uniform tree build (docs/methods.md, DTS).

Tasks (the `task` axis):
  ring          the 8-mode ring tilted by the mode-weighting reward (w_i = exp(1.5 i))
  checkerboard  the checkerboard tilted by -|x|^2 / 2
  gmm           the analytic 3-mode mixture tilted by a linear reward: its backbone is exact,
                so the only error left is the method's
The ring and checkerboard use eps-prediction MLPs trained on their data, as in the DTS paper;
their MMD is to the tilted *data* distribution, which the trained backbone only approximates.
VP-SDE, 100 steps, branching (and SMC resampling) every 20 levels, lambda = 1, 1024 output
draws against 2048 exact ones, squared MMD with a unit-bandwidth Gaussian kernel (mmd_exact_draws:
the same for 1024 fresh exact draws, the finite-sample floor).
  python main.py --config=configs/toy2d.py:ring,epsilon --workdir=runs/toy2d/ring
  python main.py --config=configs/toy2d.py:checkerboard,epsilon --workdir=runs/toy2d/checkerboard
  python main.py --config=configs/fig_dts_2d.py --workdir=results/dts_2d
"""

from configs import common
from configs import gmm2d


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('quick',))
  config = gmm2d.get_config()
  config.experiment = 'sweep'
  config.model.checkpoint = ''
  config.sampler.update(interpolant='vp', sde=True, num_steps=100, time_grid='uniform')
  config.search.update(num_particles=1024, branch_every=20, resample_levels=(20, 40, 60, 80),
                       output='samples')
  config.reward.temperature = 1.0
  tasks = {
      'ring': {'model': {'name': 'mlp', 'checkpoint': 'runs/toy2d/ring'},
               'reward': {'name': 'mode_weighting'}},
      'checkerboard': {'model': {'name': 'mlp', 'checkpoint': 'runs/toy2d/checkerboard'},
                       'reward': {'name': 'quadratic'}},
      'gmm': {'model': {'name': 'gmm'}, 'reward': {'name': 'linear'}},
  }
  config.sweep = common.sweep_config(
      title='DTS paper: MMD to the tilted target against NFE (2D)',
      task=tuple(tasks), method=('bon', 'smc', 'dts', 'dts_uniform'),
      budget=(1_000, 3_000, 10_000, 30_000, 100_000, 300_000), seed=(0, 1),
      presets=dict(task=tasks, sampler={}, method={
          'dts_uniform': {'search': {'method': 'dts', 'tree_selection': 'uniform'}}}),
      table_metrics=('mmd', 'mmd_exact_draws', 'energy_distance', 'reward_mean', 'nfe'),
      plot=dict(metrics=('mmd', 'energy_distance'), x='budget', series='method', panel='task',
                logx=True, logy=True))
  if 'quick' in tokens:
    config.sampler.num_steps = 10
    config.search.update(num_particles=64, branch_every=2, resample_levels=(2, 4, 6, 8))
    config.sweep.update(method=('dts',), budget=(200,), seed=(0,))
  return config
