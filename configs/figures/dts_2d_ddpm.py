"""DTS paper (Jain et al. 2025), claim (d) on its own 2D kernel: the ring and the checkerboard
with the paper's discrete DDPM (linear beta from 0.001 to 0.07 over T = 100 timesteps, its
eps-prediction MLP of 4 x 128 SiLU layers with a sinusoidal time embedding, trained on 10,000
points at those timesteps) sampled by DDPM's ancestral kernel on its 100 timesteps
(sampler.kernel = 'ddpm', time_grid 'inclusive'; docs/math.md, section 5).

Methods: best-of-N importance resampling (`bon`, output=samples), SMC at the paper's schedule
(`smc`: resampling at every branch level, 20, 40, 60, 80) and at the schedule `tune` picks on
seeds 100-101 (`smc_tuned`: SMC_TUNED per task), DTS with the paper's softmax tree build
(`dts`) and with the unbiased uniform one (`dts_uniform`); branching every 20 levels, lambda = 1,
64 rollouts in flight; 10^4 to 10^6 NFE, 10 seeds. Each point's 1,024 draws are scored against
2,048 exact draws of the tilted data distribution: MMD with the median-heuristic bandwidth (the
median distance between the exact draws; `mmd_median` and its square `mmd2_median`), beside
their floor (1,024 fresh exact draws scored the same way, `*_floor`), the unit-bandwidth squared
MMD of the earlier recordings (`mmd`) and the energy distance.
  python main.py --config=configs/toy2d.py:ring,ddpm --workdir=runs/toy2d/ring_ddpm
  python main.py --config=configs/toy2d.py:checkerboard,ddpm --workdir=runs/toy2d/checkerboard_ddpm
  python main.py --config=configs/figures/dts_2d_ddpm.py:tune --workdir=runs/dts_2d_ddpm_tune
  python main.py --config=configs/figures/dts_2d_ddpm.py --workdir=runs/dts_2d_ddpm
"""

from configs import common
from configs import toy2d
from configs.figures import dts_2d

# SMC's schedules tried by `tune` (dts_2d's: at fixed levels, or by the ESS rule).
SMC_SCHEDULES = dts_2d.SMC_SCHEDULES
# The winners per task (results/dts_2d_ddpm_tune/summary.md: lowest mean mmd_median).
SMC_TUNED = {'ring': 'smc_late', 'checkerboard': 'smc_ess025'}


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('tune', 'quick'))
  config = toy2d.get_config('ring,ddpm')
  config.experiment = 'sweep'
  config.model.checkpoint = ''
  dts_2d.search_settings(config)
  tasks = dts_2d.trained_tasks('_ddpm')
  # The task sets its tuned schedule (smc_tuned keeps it); smc sets the paper's over it.
  methods = {'smc': SMC_SCHEDULES['smc_every20'],
             'smc_tuned': {'search': {'method': 'smc'}},
             'dts_uniform': {'search': {'method': 'dts', 'tree_selection': 'uniform'}}}
  for name, task in tasks.items():
    task['search'] = {k: v for k, v in SMC_SCHEDULES[SMC_TUNED[name]]['search'].items()
                      if k != 'method'}
  sweep = dict(task=tuple(tasks), method=('bon', 'smc', 'smc_tuned', 'dts', 'dts_uniform'),
               budget=(10_000, 100_000, 1_000_000), seed=tuple(range(10)))
  title = "DTS paper's 2D kernel (discrete DDPM): MMD to the tilted target against NFE"
  if 'tune' in tokens:
    methods = SMC_SCHEDULES
    for task in tasks.values():
      task.pop('search')
    sweep.update(method=tuple(SMC_SCHEDULES), budget=(10_000, 100_000), seed=(100, 101))
    title = "SMC's resampling schedule on separate seeds (DTS paper's 2D kernel)"
  config.sweep = common.sweep_config(
      title=title, presets=dict(task=tasks, sampler={}, method=methods),
      table_metrics=('mmd_median', 'mmd_median_floor', 'mmd2_median', 'mmd2_median_floor', 'mmd',
                     'energy_distance', 'reward_mean', 'nfe'),
      plot=dict(metrics=('mmd_median', 'mmd2_median'), x='budget', series='method',
                panel='task', logx=True, logy=True,
                overlays={'mmd_median': {'floor (fresh exact draws)': 'mmd_median_floor'},
                          'mmd2_median': {'floor (fresh exact draws)': 'mmd2_median_floor'}}),
      reach=(('dts', 'smc_tuned', 'mmd_median', 'lower'),
             ('dts_uniform', 'smc_tuned', 'mmd_median', 'lower'),
             ('dts', 'smc', 'mmd_median', 'lower')),
      # (d): each DTS build against both SMC schedules and BoN at the same seeds.
      paired=(('method', 'dts', 'smc', 'mmd_median'), ('method', 'dts', 'smc_tuned', 'mmd_median'),
              ('method', 'dts_uniform', 'smc_tuned', 'mmd_median'),
              ('method', 'dts', 'bon', 'mmd_median'),
              ('method', 'dts', 'smc_tuned', 'mmd2_median')), **sweep)
  if 'quick' in tokens:
    config.sampler.num_steps = 10
    config.search.update(num_particles=64, branch_every=2, resample_levels=(2, 4, 6, 8))
    for task in config.sweep.presets.task.values():
      if 'search' in task:
        task.search.resample_levels = (8,)
    config.sweep.update(method=('smc_tuned', 'dts'), budget=(200,), seed=(0,))
  return config
