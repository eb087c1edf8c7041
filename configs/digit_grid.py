"""Counting and composition on grids of digits: a task where search matters.

Images are a rows x cols grid of 8x8 digits (models/digit_grid.py), each cell an independent
draw of the trained digits backbone, so a prompt about the whole image is rarely true of a plain
sample. Prompts (rewards/digit_grid.py), scored in the loop by the digit classifier and judged
afterwards by a held-out one (`heldout_success`):
  count    "exactly 3 sevens" in a 2 x 2 grid (digit_count)
  count2   "exactly 2 sevens" in a 2 x 2 grid (the prompt the methods are tuned on)
  left_of  "a 3 immediately left of a 7" in a 2 x 2 grid (digit_left_of)
Variants (comma-separated): count | count2 | left_of; sample (plain samples: the base rate), step (the
0/1 reward instead of the log-probability of success), METHOD, reflow (the 2-rectified few-step
backbone in runs/digits/reflow), quick (tiny sizes for tests). Needs runs/digits/{flow,
classifier, classifier_heldout} (configs/figures/rbf_interpolants.py lists the commands).

  python main.py --config=configs/digit_grid.py:count,sample --workdir=runs/grid_base
  python main.py --config=configs/digit_grid.py:count,rbf --workdir=runs/grid_rbf
"""

from configs import common
from configs import digits

PROMPTS = {
    'count': dict(name='digit_count', count_class=7, count=3),
    'count2': dict(name='digit_count', count_class=7, count=2),
    'left_of': dict(name='digit_left_of', left_class=3, right_class=7),
}


def get_config(arg=None):
  tokens = common.parse_variant(arg or 'count', tuple(PROMPTS) + (
      'sample', 'step', 'reflow', 'quick') + common.METHODS)
  prompts = [t for t in tokens if t in PROMPTS] or ['count']
  if len(prompts) > 1:
    raise ValueError(f'Pick one prompt per run, got {sorted(prompts)}.')
  config = digits.get_config('flow')
  config.experiment = 'sample' if 'sample' in tokens else 'search'
  config.data.name = 'digit_grid'
  checkpoint = 'runs/digits/reflow' if 'reflow' in tokens else 'runs/digits/flow'
  config.model = config.model.__class__(dict(
      name='digit_grid', checkpoint=checkpoint, grid=(2, 2), guidance_weight=0.0))
  # The RBF paper's protocol: 10 steps; VP-SDE on the adaptive grid (figures pick samplers).
  config.sampler = common.sampler_config(interpolant='vp', sde=True, num_steps=10,
                                         time_grid='adaptive', num_samples=2048)
  config.reward.update(step='step' in tokens, heldout_checkpoint='runs/digits/classifier_heldout',
                       **PROMPTS[prompts[0]])
  # One chain per search (the paper's one image per prompt), many independent searches.
  config.search.update(method='rbf', budget=500, num_particles=1, num_runs=16, output='best',
                       block_size=3, branch_every=2)
  common.apply_method_variant(config, tokens)
  if config.search.method == 'rbf':
    config.search.num_particles = 2   # the released RBF's two chains per search
  if 'quick' in tokens:
    config.model.grid = (1, 2)
    config.reward.update(count=1)
    config.sampler.update(num_steps=4, num_samples=16)
    config.search.update(budget=24, num_runs=2, block_size=2, branch_every=2)
  return config
