"""DTS paper (Jain et al. 2025), class-conditional digits: Frechet distance, mean log-reward and
diversity against NFE for DTS, SMC and best-of-N importance resampling.

The eps-prediction digits U-Net is tilted by the classifier's log p(c | x) at lambda = 1, so the
target p(x) p(c | x) is the class-conditional distribution. Every point samples all 10 classes
(32 draws each); the Frechet distance (the classifier's features, against held-out digits of the
class) and the diversity are averaged over the classes. VP-SDE, 50 steps, branching (and SMC
resampling) every 10 levels. Variant `even_odd`: the DTS paper's even-digit task, r(x) =
max over even c of log p(c | x). `quick`: tiny, for tests.
  python main.py --config=configs/digits.py:eps --workdir=runs/digits/eps
  python main.py --config=configs/digits.py:classifier --workdir=runs/digits/classifier
  python main.py --config=configs/fig_dts_digits.py --workdir=results/dts_digits
"""

from configs import common
from configs import digits


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('even_odd', 'quick'))
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
  config.sweep = common.sweep_config(
      title='DTS paper: class-conditional digits against NFE'
            + (' (even digits)' if 'even_odd' in tokens else ''),
      method=('bon', 'smc', 'dts'), budget=(1_000, 3_000, 10_000), seed=(0, 1),
      table_metrics=('frechet', 'reward_mean', 'accuracy', 'heldout_accuracy', 'diversity',
                     'nfe'),
      plot=dict(metrics=('frechet', 'reward_mean', 'diversity'), x='budget', series='method',
                panel='', logx=True))
  if 'quick' in tokens:
    digits.apply_quick(config)
    config.reward.target_classes = () if 'even_odd' in tokens else (1, 3)
    config.search.update(num_particles=4, branch_every=2, resample_levels=(2, 4))
    config.sweep.update(method=('smc', 'dts'), budget=(48,), seed=(0,))
  return config
