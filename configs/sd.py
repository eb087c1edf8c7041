"""Text-to-image search with Stable Diffusion (diffusers Flax weights) and a CLIP-based reward.

Variants (comma-separated):
  METHOD     the search method (bon, sop, smc, svdd, code, rbf, dts, dts_star); default rbf
  rbf_paper  the RBF paper's settings: VP-SDE, g = 3 s^2, adaptive grid, 10 steps, 500 NFE
  dts_paper  the DTS paper's: 50 steps, branching every 10 levels, DTS* to the best sample
  aesthetic  the LAION aesthetic score instead of the CLIP score (set reward.head)
  sample     plain sampling (sampler.num_samples per prompt), no search
  tiny       the tiny random folders written by `python -m experiments.tools.random_weights runs/sd_tiny`
             (what the tests run; seconds on a CPU)

  python main.py --config=configs/sd.py:rbf_paper --workdir=runs/sd_rbf \
      --config.prompt='a red cube on top of a blue sphere'
  python main.py --config=configs/sd.py:dts_paper --workdir=runs/sd_dts \
      --config.prompt_file=prompts.txt

Real weights need an accelerator and the hub (or a local copy): model.path is a diffusers folder
or hub id with Flax weights (model.revision selects a branch or commit); PyTorch weights convert
with model.from_pt=True when torch is installed. See the README's text-to-image section.
"""

from configs import common
from configs import text_to_image

VARIANTS = text_to_image.VARIANTS + ('dts_paper', 'aesthetic')


def get_config(arg=None):
  tokens = common.parse_variant(arg, VARIANTS + common.METHODS)
  config = text_to_image.base(
      tokens,
      model=dict(
          name='stable_diffusion',
          path='flax/stable-diffusion-2-1-base',  # a diffusers folder or hub id (Flax weights)
          revision='',                # hub branch or commit ('' for the default branch)
          from_pt=False,              # convert PyTorch weights (needs torch)
          dtype='bfloat16',           # float32 | bfloat16 | float16
          image_size=0,               # pixels per side; 0: the model's native size (512 here)
          guidance_scale=7.5,         # classifier-free guidance, diffusers' convention (1: off)
      ),
      sampler=dict(num_steps=50, time_grid='uniform'),
      search=dict(branch_every=10), mesh={},
      default_method='dts_star' if 'dts_paper' in tokens else 'rbf')
  if 'dts_paper' in tokens:
    config.sampler.update(num_steps=50, time_grid='uniform')
    config.search.update(branch_every=10, budget=1000)
  if 'aesthetic' in tokens:
    config.reward.update(name='aesthetic', head='sac+logos+ava1-l14-linearMSE.safetensors')
  if 'tiny' in tokens:
    text_to_image.tiny(config, path='runs/sd_tiny/stable_diffusion', guidance_scale=2.0)
  return config
