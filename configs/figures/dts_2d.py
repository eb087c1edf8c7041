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
VP-SDE, 100 steps, branching every 20 levels, lambda = 1, DTS with 64 rollouts in flight,
1024 output draws against 2048 exact ones, squared MMD with a unit-bandwidth Gaussian kernel
(mmd_exact_draws: the same for 1024 fresh exact draws, the finite-sample floor). 10^3 to 10^6
NFE, 5 seeds. SMC's resampling schedule is the winner of the `tune` variant (SMC_SCHEDULES on
seeds 100-101 at 10^4 and 10^5 NFE): SMC_TUNED per task.
  python main.py --config=configs/toy2d.py:ring,epsilon --workdir=runs/toy2d/ring
  python main.py --config=configs/toy2d.py:checkerboard,epsilon --workdir=runs/toy2d/checkerboard
  python main.py --config=configs/figures/dts_2d.py:tune --workdir=runs/dts_2d_tune
  python main.py --config=configs/figures/dts_2d.py --workdir=runs/dts_2d_1e6
(results/dts_2d holds the earlier 3-seed grid to 3*10^5 with resampling every 20 levels: the
`v1` variant.)
"""

from configs import common
from configs import gmm2d


# SMC's resampling schedules tried by `tune`: at fixed levels, or by the ESS rule.
SMC_SCHEDULES = {
    'smc_every20': {'search': {'method': 'smc', 'resample_levels': (20, 40, 60, 80)}},
    'smc_late': {'search': {'method': 'smc', 'resample_levels': (80,)}},
    'smc_ess05': {'search': {'method': 'smc', 'resample_levels': (), 'ess_threshold': 0.5}},
    'smc_ess025': {'search': {'method': 'smc', 'resample_levels': (), 'ess_threshold': 0.25}},
}
# The winners per task (results/dts_2d_tune/summary.md: lowest mean MMD over its budgets).
SMC_TUNED = {'ring': 'smc_late', 'checkerboard': 'smc_late', 'gmm': 'smc_ess05'}


def trained_tasks(suffix: str = '') -> dict:
  """The ring and checkerboard tasks: the MLPs configs/toy2d.py trains (in workdirs
  runs/toy2d/DATASET + suffix), with the DTS paper's rewards."""
  return {name: {'model': {'name': 'mlp', 'checkpoint': f'runs/toy2d/{name}{suffix}'},
                 'reward': {'name': reward}}
          for name, reward in (('ring', 'mode_weighting'), ('checkerboard', 'quadratic'))}


def search_settings(config) -> None:
  """The 2D searches: 1,024 output draws, branching (and SMC's paper schedule) every 20
  levels, 64 DTS rollouts in flight, lambda = 1."""
  config.search.update(num_particles=1024, branch_every=20, resample_levels=(20, 40, 60, 80),
                       output='samples', dts_batch=64)
  config.reward.temperature = 1.0


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('tune', 'v1', 'quick'))
  config = gmm2d.get_config()
  config.experiment = 'sweep'
  config.model.checkpoint = ''
  config.sampler.update(interpolant='vp', sde=True, num_steps=100, time_grid='uniform')
  search_settings(config)
  tasks = dict(trained_tasks(), gmm={'model': {'name': 'gmm'}, 'reward': {'name': 'linear'}})
  methods = {'dts_uniform': {'search': {'method': 'dts', 'tree_selection': 'uniform'}}}
  sweep = dict(task=tuple(tasks), method=('bon', 'smc', 'dts', 'dts_uniform'),
               budget=(1_000, 10_000, 100_000, 1_000_000), seed=(0, 1, 2, 3, 4))
  title = 'DTS paper: MMD to the tilted target against NFE (2D)'
  if 'tune' in tokens:
    methods = SMC_SCHEDULES
    sweep.update(method=tuple(SMC_SCHEDULES), budget=(10_000, 100_000), seed=(100, 101))
    title = "SMC's resampling schedule on separate seeds (2D)"
  elif 'v1' in tokens:   # the first recording: 3 seeds to 3*10^5, one rollout at a time
    config.search.dts_batch = 1
    sweep.update(budget=(1_000, 3_000, 10_000, 30_000, 100_000, 300_000), seed=(0, 1))
  elif 'quick' not in tokens:  # SMC at its tuned schedule, per task
    for name, task in tasks.items():
      task['search'] = SMC_SCHEDULES[SMC_TUNED[name]]['search']
    methods['smc'] = {'search': {'method': 'smc'}}
  config.sweep = common.sweep_config(
      title=title, presets=dict(task=tasks, sampler={}, method=methods),
      table_metrics=('mmd', 'mmd_exact_draws', 'energy_distance', 'reward_mean', 'nfe'),
      plot=dict(metrics=('mmd', 'energy_distance'), x='budget', series='method', panel='task',
                logx=True, logy=True,
                overlays={'mmd': {'floor (fresh exact draws)': 'mmd_exact_draws'}}),
      reach=(('dts', 'smc', 'mmd', 'lower'), ('dts_uniform', 'smc', 'mmd', 'lower')),
      # (d): each DTS build against SMC and BoN at the same seeds (lower MMD is better).
      paired=(('method', 'dts', 'smc', 'mmd'), ('method', 'dts_uniform', 'smc', 'mmd'),
              ('method', 'dts', 'bon', 'mmd')), **sweep)
  if 'quick' in tokens:
    config.sampler.num_steps = 10
    config.search.update(num_particles=64, branch_every=2, resample_levels=(2, 4, 6, 8))
    config.sweep.update(method=('dts',), budget=(200,), seed=(0,))
  return config
