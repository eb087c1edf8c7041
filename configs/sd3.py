"""Text-to-image search with Stable Diffusion 3.5 (the MMDiT flow model the PSP and FK-steering
peers search; models/sd3/) and a CLIP-based reward.

Variants (comma-separated):
  METHOD     the search method (bon, sop, smc, svdd, code, rbf, dts, dts_star, ...); default rbf
  large      SD3.5-large (8B), its model card's 28 steps and guidance 3.5 (the default)
  medium     SD3.5-medium (2.5B, dual-attention blocks), 40 steps and guidance 4.5
  rbf_paper  the RBF paper's settings: VP-SDE by interpolant conversion, g = 3 s^2, adaptive
             grid, 10 steps, 500 NFE
  sample     plain sampling as StableDiffusion3Pipeline samples (the linear ODE, Euler, on the
             scheduler's own shifted grid; sampler.num_samples per prompt), no search
  tiny       the tiny random SD3.5-large folder of the tests (tests/models/data/sd3, written by
             tests/models/sd3_reference.py with diffusers' PyTorch classes; with `medium`, the
             medium one) and the tiny CLIP reward of
             `python -m experiments.tools.random_weights runs/sd_tiny`

  python main.py --config=configs/sd3.py:rbf_paper --workdir=runs/sd3_rbf \
      --config.prompt='a red cube on top of a blue sphere'

The mesh is (particles, model) = (1, all devices): the transformer's weights are split over
every device; --config.mesh.shape="(2,-1)" also splits the particles in two. The search's
sampler is the VP-SDE by conversion on the pipeline's grid (time_grid 'flow_match', the
scheduler's shift 3), at the model card's step count.

Real weights need an accelerator that holds them (SD3.5-large's transformer is 8B parameters,
16 GB in bfloat16; the README's memory table has the measured figures) and the hub or a local
copy: model.path is a diffusers folder or hub id (PyTorch safetensors; torch is not needed).
The hub's SD3.5 repositories are gated: accept their licence and log in before downloading.
"""

from configs import common
from configs import text_to_image

VARIANTS = text_to_image.VARIANTS + ('large', 'medium')
LARGE = dict(path='stabilityai/stable-diffusion-3.5-large', guidance_scale=3.5)
MEDIUM = dict(path='stabilityai/stable-diffusion-3.5-medium', guidance_scale=4.5)


def get_config(arg=None):
  tokens = common.parse_variant(arg, VARIANTS + common.METHODS)
  if 'large' in tokens and 'medium' in tokens:
    raise ValueError('configs/sd3.py: choose one of the variants large and medium.')
  config = text_to_image.base(
      tokens,
      model=dict(
          name='sd3',
          revision='',                # hub branch or commit ('' for the default branch)
          dtype='bfloat16',           # bfloat16 | float32
          image_size=1024,            # pixels per side; a multiple of 16
          max_sequence_length=256,    # T5 tokens (the pipeline's default)
          keep_text_encoders=False,   # keep the CLIPs and T5 loaded after encoding the prompts
          **(MEDIUM if 'medium' in tokens else LARGE),  # path: a diffusers folder or hub id;
      ),                                                # guidance_scale: CFG, 1 is off
      sampler=dict(num_steps=40 if 'medium' in tokens else 28, time_grid='flow_match'),
      search=dict(branch_every=2),
      # The transformer is split FSDP-style over every device (`model`); particles are not.
      mesh=dict(axes=('particles', 'model'), shape=(1, -1)))
  if 'sample' in tokens:   # the pipeline's own sampler
    config.sampler.update(interpolant='linear', sde=False)
  if 'tiny' in tokens:
    text_to_image.tiny(
        config, path='tests/models/data/sd3/' + ('medium' if 'medium' in tokens else 'large'),
        image_size=16, guidance_scale=2.0, max_sequence_length=16)
  return config
