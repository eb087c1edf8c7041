"""DTS paper (Jain et al. 2025), claim (e) on an exact target: class-conditional sampling where
the tilted target is known in closed form.

The backbone is the exact denoiser of a 10-class Gaussian mixture in 64 dimensions (means drawn
once from N(0, 0.5^2 I) with seed 37, unit standard deviations, equal weights: classes about
5.7 standard deviations apart), tilted at lambda = 1 by its own class posterior log p(c | x)
(rewards/mixture_class.py), so each class's target is exactly its component N(mu_c, I). No
backbone error is left: what separates the methods is their own. Every point samples classes
0-4, 1024 draws each, with a budget per class from 10^3 to 10^6 NFE, 10 seeds; `frechet_exact`
is the Frechet distance of each class's draws to its component's mean and covariance, averaged
over the classes, beside `frechet_exact_floor` (1024 exact draws of the component). VP-SDE, 50
steps, branching every 10 levels, DTS with 64 rollouts in flight; SMC at the DTS paper's
schedule (resampling every 10 levels, `smc`) and at the schedule `tune` picks on seeds 100-101
at 10^4 (`smc_tuned`: SMC_TUNED); DTS also with the unbiased uniform tree build
(`dts_uniform`). Variants: `tune`, `quick` (tiny, for tests).
  python main.py --config=configs/figures/dts_exact.py:tune --workdir=runs/dts_exact_tune
  python main.py --config=configs/figures/dts_exact.py --workdir=runs/dts_exact
(results/dts_exact and results/dts_exact_tune hold the recorded points; copied to a workdir, a
run there resumes them and computes only what is missing.)
"""

import numpy as np

from configs import common
from configs import gmm2d

NUM_CLASSES, DIM, SPREAD, SEED = 10, 64, 0.5, 37

SMC_SCHEDULES = {
    'smc_every10': {'search': {'method': 'smc', 'resample_levels': (10, 20, 30, 40)}},
    'smc_late': {'search': {'method': 'smc', 'resample_levels': (40,)}},
    'smc_ess05': {'search': {'method': 'smc', 'resample_levels': (), 'ess_threshold': 0.5}},
    'smc_ess025': {'search': {'method': 'smc', 'resample_levels': (), 'ess_threshold': 0.25}},
}
# The winner of `tune` (results/dts_exact_tune/summary.md: lowest frechet_exact at 10^4).
SMC_TUNED = 'smc_ess05'


def mixture():
  """(means, stds, weights) as nested tuples: the 10 classes."""
  means = np.random.default_rng(SEED).normal(0.0, SPREAD, (NUM_CLASSES, DIM))
  return (tuple(tuple(float(v) for v in row) for row in means), (1.0,) * NUM_CLASSES,
          (1.0 / NUM_CLASSES,) * NUM_CLASSES)


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('tune', 'quick'))
  config = gmm2d.get_config()
  config.experiment = 'sweep'
  means, stds, weights = mixture()
  config.model.update(means=means, stds=stds, weights=weights, interpolant='vp')
  config.reward = common.reward_config(
      name='mixture_class', temperature=1.0, class_means=means, class_stds=stds,
      class_weights=weights, target_classes=(0, 1, 2, 3, 4))
  config.sampler.update(interpolant='vp', sde=True, num_steps=50, time_grid='uniform')
  config.search.update(num_particles=1024, num_runs=1, output='samples', branch_every=10,
                       resample_levels=(10, 20, 30, 40), dts_batch=64)
  methods = {'smc_tuned': SMC_SCHEDULES[SMC_TUNED],
             'dts_uniform': {'search': {'method': 'dts', 'tree_selection': 'uniform'}}}
  sweep = dict(method=('bon', 'smc', 'smc_tuned', 'dts', 'dts_uniform'),
               budget=(1_000, 10_000, 100_000, 1_000_000), seed=tuple(range(10)))
  title = 'DTS paper (e) on an exact target: 10-class mixture in 64 dimensions'
  if 'tune' in tokens:
    methods = SMC_SCHEDULES
    sweep.update(method=tuple(SMC_SCHEDULES), budget=(10_000,), seed=(100, 101))
    title = "SMC's resampling schedule on separate seeds (exact class-conditional target)"
  config.sweep = common.sweep_config(
      title=title, presets=dict(task={}, sampler={}, method=methods),
      table_metrics=('frechet_exact', 'frechet_exact_floor', 'reward_mean', 'diversity', 'nfe'),
      plot=dict(metrics=('frechet_exact', 'reward_mean'), x='budget', series='method', panel='',
                logx=True, logy=True,
                overlays={'frechet_exact': {'floor (exact draws)': 'frechet_exact_floor'}}),
      reach=(('dts', 'smc', 'frechet_exact', 'lower'),
             ('dts', 'smc_tuned', 'frechet_exact', 'lower'),
             ('dts', 'bon', 'frechet_exact', 'lower'),
             ('dts_uniform', 'smc', 'frechet_exact', 'lower')),
      paired=(('method', 'dts', 'smc', 'frechet_exact'),
              ('method', 'dts', 'smc_tuned', 'frechet_exact'),
              ('method', 'dts', 'bon', 'frechet_exact'),
              ('method', 'dts_uniform', 'smc', 'frechet_exact')), **sweep)
  if 'quick' in tokens:
    config.sampler.num_steps = 6
    config.reward.target_classes = (1, 3)
    config.search.update(num_particles=16, branch_every=2, resample_levels=(2, 4), dts_batch=4)
    config.sweep.update(method=('bon', 'smc', 'dts'), budget=(96,), seed=(0,))
    if 'tune' in tokens:
      config.sweep.update(method=('smc_ess05', 'smc_late'))
  return config
