"""Text-to-image search with Stable Diffusion (diffusers Flax weights) and a CLIP-based reward.

Variants (comma-separated):
  METHOD     the search method (bon, sop, smc, svdd, code, rbf, dts, dts_star); default rbf
  rbf_paper  the RBF paper's settings: VP-SDE, g = 3 s^2, adaptive grid, 10 steps, 500 NFE
  dts_paper  the DTS paper's: 50 steps, branching every 10 levels, DTS* to the best sample
  aesthetic  the LAION aesthetic score instead of the CLIP score (set reward.head)
  sample     plain sampling (sampler.num_samples per prompt), no search
  tiny       the tiny random folders written by `python -m models.random_weights runs/sd_tiny`
             (what the tests run; seconds on a CPU)

  python main.py --config=configs/sd.py:rbf_paper --workdir=runs/sd_rbf \
      --config.prompt='a red cube on top of a blue sphere'
  python main.py --config=configs/sd.py:dts_paper --workdir=runs/sd_dts \
      --config.prompt_file=prompts.txt

Real weights need an accelerator and the hub (or a local copy): model.path is a diffusers folder
or hub id with Flax weights (model.revision selects a branch or commit); PyTorch weights convert
with model.from_pt=True when torch is installed. See the README's text-to-image section.
"""

import ml_collections

from configs import common

VARIANTS = ('rbf_paper', 'dts_paper', 'aesthetic', 'sample', 'tiny')


def get_config(arg=None):
  tokens = common.parse_variant(arg, VARIANTS + common.METHODS)
  config = ml_collections.ConfigDict()
  config.experiment = 'sample' if 'sample' in tokens else 'search'
  config.seed = 0
  config.prompt = 'a photograph of an astronaut riding a horse'
  config.prompt_file = ''         # one prompt per line; overrides `prompt`
  config.model = ml_collections.ConfigDict(dict(
      name='stable_diffusion',
      path='flax/stable-diffusion-2-1-base',  # a diffusers folder or hub id (Flax weights)
      revision='',                # hub branch or commit ('' for the default branch)
      from_pt=False,              # convert PyTorch weights (needs torch)
      dtype='bfloat16',           # float32 | bfloat16 | float16
      image_size=0,               # pixels per side; 0: the model's native size (512 here)
      guidance_scale=7.5,         # classifier-free guidance, diffusers' convention (1: off)
  ))
  config.sampler = common.sampler_config(interpolant='vp', sde=True, num_steps=50,
                                         time_grid='uniform', num_samples=4)
  config.reward = common.reward_config(name='clip_score', model='openai/clip-vit-large-patch14',
                                       temperature=0.01)
  config.search = common.search_config(method='rbf', budget=500, num_particles=4,
                                       branch_every=10, output='best')
  config.mesh = common.mesh_config()
  common.apply_method_variant(config, tokens)
  if not any(t in common.METHODS for t in tokens) and 'sample' not in tokens:
    config.search.method = 'dts_star' if 'dts_paper' in tokens else 'rbf'

  if 'rbf_paper' in tokens:
    config.sampler.update(interpolant='vp', sde=True, num_steps=10, diffusion='square',
                          diffusion_norm=3.0, time_grid='adaptive')
    config.search.update(budget=500, num_particles=2)   # the released RBF: 2 chains
  if 'dts_paper' in tokens:
    config.sampler.update(num_steps=50, time_grid='uniform')
    config.search.update(branch_every=10, budget=1000)
  if 'aesthetic' in tokens:
    config.reward.update(name='aesthetic', head='sac+logos+ava1-l14-linearMSE.safetensors')
  if 'tiny' in tokens:
    config.prompt = 'a red cat'
    config.model.update(path='runs/sd_tiny/stable_diffusion', revision='', dtype='float32',
                        guidance_scale=2.0)
    config.reward.update(model='runs/sd_tiny/clip', head='runs/sd_tiny/aesthetic.safetensors',
                         temperature=0.1)
    config.sampler.update(num_steps=4, num_samples=4)
    config.search.update(budget=16, num_particles=2, block_size=2, branch_every=2,
                         sop_start=2, sop_renoise=1, sop_denoise=2)
  return config
