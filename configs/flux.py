"""Text-to-image search with FLUX.1 (the RBF paper's flow model) and a CLIP-based reward.

Variants (comma-separated):
  METHOD     the search method (bon, sop, smc, svdd, code, rbf, dts, dts_star); default rbf
  rbf_paper  the RBF paper's settings: FLUX.1-schnell, VP-SDE by interpolant conversion,
             g = 3 s^2, adaptive grid, 10 steps, 500 NFE
  psi_paper  the Psi-Sampler code's settings (config/aesthetic.yaml): FLUX.1-schnell, VP-SDE
             by conversion, g = 1 - (1 - t)^2, uniform grid, 25 steps, lambda = alpha = 0.1,
             psi with 5 chains of 25 + 25 pCNL steps and 10 particles (505 NFE)
  dev        FLUX.1-dev (guidance embedding 3.5, resolution-dependent time shift, 28 steps)
  sample     plain sampling (sampler.num_samples per prompt), no search
  tiny       the tiny random FLUX.1-schnell folder of the tests (tests/models/data/flux,
             written by tests/models/flux_reference.py with diffusers' PyTorch classes) and the
             tiny CLIP reward of `python -m experiments.tools.random_weights runs/sd_tiny`

  python main.py --config=configs/flux.py:rbf_paper --workdir=runs/flux_rbf \
      --config.prompt='a red cube on top of a blue sphere'

The mesh is (particles, model) = (1, all devices): the transformer's weights are split over
every device; --config.mesh.shape="(2,-1)" also splits the particles in two.

Real weights need an accelerator that holds them (FLUX.1 is 12B parameters, 24 GB in bfloat16;
the README's memory table has the measured figures) and the hub or a local copy: model.path is
a diffusers folder or hub id (PyTorch safetensors; torch is not needed).
"""

from configs import common
from configs import text_to_image

VARIANTS = text_to_image.VARIANTS + ('dev', 'psi_paper')


def get_config(arg=None):
  tokens = common.parse_variant(arg, VARIANTS + common.METHODS)
  config = text_to_image.base(
      tokens,
      model=dict(
          name='flux',
          path='black-forest-labs/FLUX.1-schnell',  # a diffusers folder or hub id
          revision='',                # hub branch or commit ('' for the default branch)
          dtype='bfloat16',           # bfloat16 | float32
          image_size=1024,            # pixels per side; a multiple of 16
          guidance=0.0,               # FLUX.1-dev's guidance embedding (3.5); 0 for schnell
          max_sequence_length=256,    # T5 tokens (diffusers: 256 for schnell, 512 for dev)
          keep_text_encoders=False,   # keep CLIP and T5 loaded after encoding the prompts
      ),
      sampler=dict(num_steps=10, diffusion='square', diffusion_norm=3.0, time_grid='adaptive'),
      search=dict(branch_every=2),
      # The 12B transformer is split FSDP-style over every device (`model`); particles are not.
      mesh=dict(axes=('particles', 'model'), shape=(1, -1)))
  if 'rbf_paper' in tokens:
    config.model.update(path='black-forest-labs/FLUX.1-schnell', guidance=0.0)
  if 'psi_paper' in tokens:
    config.model.update(path='black-forest-labs/FLUX.1-schnell', guidance=0.0)
    config.sampler.update(interpolant='vp', sde=True, num_steps=25, diffusion='reverse_square',
                          diffusion_norm=1.0, time_grid='uniform')
    config.reward.temperature = 0.1
    config.search.update(method='psi', budget=505, output='best')
  if 'dev' in tokens:
    config.model.update(path='black-forest-labs/FLUX.1-dev', guidance=3.5,
                        max_sequence_length=512)
    config.sampler.update(num_steps=28)
  if 'tiny' in tokens:
    text_to_image.tiny(
        config, path='tests/models/data/flux/' + ('dev' if 'dev' in tokens else 'schnell'),
        image_size=16, guidance=3.5 if 'dev' in tokens else 0.0, max_sequence_length=16)
  return config
