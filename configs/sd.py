"""Text-to-image search with Stable Diffusion 1.x/2.x or SDXL (the project's Flax ports, reading a
diffusers folder's PyTorch safetensors) and a CLIP-based reward.

Variants (comma-separated):
  METHOD     the search method (bon, sop, smc, svdd, code, rbf, dts, dts_star); default rbf
  rbf_paper  the RBF paper's settings: VP-SDE, g = 3 s^2, adaptive grid, 10 steps, 500 NFE
  dts_paper  the DTS paper's: 50 steps, branching every 10 levels, DTS* to the best sample
  aesthetic  the LAION aesthetic score instead of the CLIP score (set reward.head)
  sdxl       SDXL base 1.0 at 1024 x 1024, guidance 5 (its pipeline's default)
  sample     plain sampling (sampler.num_samples per prompt), no search
  tiny       the tiny random folders written by `python -m experiments.tools.random_weights runs/sd_tiny`
             (what the tests run; seconds on a CPU)

  python main.py --config=configs/sd.py:rbf_paper --workdir=runs/sd_rbf \
      --config.prompt='a red cube on top of a blue sphere'
  python main.py --config=configs/sd.py:dts_paper --workdir=runs/sd_dts \
      --config.prompt_file=prompts.txt

Real weights need an accelerator and the hub (or a local copy): model.path is a diffusers folder
or hub id (model.revision selects a branch or commit, model.variant a weight variant such as
fp16); torch is not needed. See the README's text-to-image section.
"""

from configs import common
from configs import text_to_image

VARIANTS = text_to_image.VARIANTS + ('dts_paper', 'aesthetic', 'sdxl')


def get_config(arg=None):
  tokens = common.parse_variant(arg, VARIANTS + common.METHODS)
  config = text_to_image.base(
      tokens,
      model=dict(
          name='stable_diffusion',
          path='stabilityai/stable-diffusion-2-1-base',  # a diffusers folder or hub id
          revision='',                # hub branch or commit ('' for the default branch)
          variant='',                 # weight files: '' the default ones, 'fp16' *.fp16.*
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
  if 'sdxl' in tokens:
    config.model.update(path='stabilityai/stable-diffusion-xl-base-1.0', guidance_scale=5.0)
  if 'aesthetic' in tokens:
    config.reward.update(name='aesthetic', head='sac+logos+ava1-l14-linearMSE.safetensors')
  if 'tiny' in tokens:
    text_to_image.tiny(config, path='runs/sd_tiny/stable_diffusion', guidance_scale=2.0)
  return config
