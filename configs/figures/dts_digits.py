"""DTS paper (Jain et al. 2025), class-conditional digits: Frechet distance, mean log-reward and
diversity against NFE for DTS, SMC and best-of-N importance resampling.

The eps-prediction digits U-Net is tilted by the classifier's log p(c | x) at lambda = 1, so the
target p(x) p(c | x) is the class-conditional distribution. Every point samples classes 0-4
(128 draws each) with a budget per class from 10^3 to 10^5, 5 seeds; the Frechet distances and
the diversity are averaged over the classes: `frechet` on the reward classifier's features,
`frechet_heldout` on the held-out classifier's (which no search saw) beside its floor
`frechet_heldout_floor` (128 real training digits of the class). VP-SDE, 50 steps, branching
every 10 levels, DTS with 64 rollouts in flight; SMC's resampling schedule from `tune`
(SMC_SCHEDULES at 10^4 on seeds 100-101). Variants: `tune`; `v1`, the first recording (all 10
classes, 32 draws, 2 seeds, to 10^4, SMC resampling every 10 levels, one rollout at a time;
results/dts_digits); `even_odd`: the DTS paper's even-digit task, r(x) = max over even c of
log p(c | x) (with v1: results/dts_even_odd). `quick`: tiny, for tests.
  python main.py --config=configs/digits.py:eps --workdir=runs/digits/eps
  python main.py --config=configs/digits.py:classifier --workdir=runs/digits/classifier
  python main.py --config=configs/figures/dts_digits.py:tune --workdir=runs/dts_digits_tune
  python main.py --config=configs/figures/dts_digits.py --workdir=runs/dts_digits_1e5
"""

from configs import common
from configs import digits


SMC_SCHEDULES = {
    'smc_every10': {'search': {'method': 'smc', 'resample_levels': (10, 20, 30, 40)}},
    'smc_late': {'search': {'method': 'smc', 'resample_levels': (40,)}},
    'smc_ess05': {'search': {'method': 'smc', 'resample_levels': (), 'ess_threshold': 0.5}},
    'smc_ess025': {'search': {'method': 'smc', 'resample_levels': (), 'ess_threshold': 0.25}},
}
# The winner (results/dts_digits_tune/summary.md: lowest frechet_heldout at 10^4).
SMC_TUNED = 'smc_late'


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('even_odd', 'tune', 'v1', 'quick'))
  config = digits.get_config('eps')
  config.experiment = 'sweep'
  config.sampler.update(interpolant='vp', sde=True, num_steps=50, time_grid='uniform')
  config.reward.update(name='classifier', temperature=1.0, target_classes=tuple(range(10)),
                       heldout_checkpoint='runs/digits/classifier_heldout')
  config.search.update(num_particles=32, num_runs=1, output='samples', branch_every=10,
                       resample_levels=(10, 20, 30, 40))
  if 'even_odd' in tokens:
    config.reward.update(name='classifier_set', classes=(0, 2, 4, 6, 8), target_classes=())
    config.search.num_particles = 256
  v1 = 'v1' in tokens
  methods = {}
  sweep = dict(method=('bon', 'smc', 'dts'), budget=(1_000, 10_000, 100_000),
               seed=(0, 1, 2, 3, 4))
  if v1:
    sweep.update(budget=(1_000, 3_000, 10_000), seed=(0, 1))
  else:
    config.search.update(dts_batch=64, num_particles=4 * config.search.num_particles)
    if 'even_odd' not in tokens:
      config.reward.target_classes = (0, 1, 2, 3, 4)
    if 'quick' not in tokens:   # (the quick grid has too few steps for these levels)
      methods['smc'] = SMC_SCHEDULES[SMC_TUNED]
  if 'tune' in tokens:
    methods = SMC_SCHEDULES
    sweep.update(method=tuple(SMC_SCHEDULES), budget=(10_000,), seed=(100, 101))
  config.sweep = common.sweep_config(
      title=('SMC\'s resampling schedule on separate seeds' if 'tune' in tokens
             else 'DTS paper: class-conditional digits against NFE')
            + (' (even digits)' if 'even_odd' in tokens else ''),
      presets=dict(task={}, sampler={}, method=methods),
      table_metrics=('frechet', 'reward_mean', 'accuracy', 'heldout_accuracy', 'diversity',
                     'nfe') if v1 else
      ('frechet_heldout', 'frechet_heldout_floor', 'frechet', 'heldout_accuracy', 'diversity',
       'nfe'),
      plot=dict(metrics=('frechet', 'reward_mean', 'diversity') if v1 else
                ('frechet_heldout', 'frechet', 'diversity'), x='budget', series='method',
                panel='', logx=True, overlays={} if v1 else {
                    'frechet_heldout': {'floor (real digits)': 'frechet_heldout_floor'}}),
      reach=() if v1 else (('dts', 'smc', 'frechet_heldout', 'lower'),
                           ('dts', 'bon', 'frechet_heldout', 'lower')),
      # (e): DTS against SMC and BoN at the same seeds (lower Frechet is better).
      paired=() if v1 else (('method', 'dts', 'smc', 'frechet_heldout'),
                            ('method', 'dts', 'bon', 'frechet_heldout')), **sweep)
  if 'quick' in tokens:
    digits.apply_quick(config)
    config.reward.target_classes = () if 'even_odd' in tokens else (1, 3)
    config.search.update(num_particles=4, branch_every=2, resample_levels=(2, 4))
    config.sweep.update(method=('smc', 'dts'), budget=(48,), seed=(0,))
  return config
