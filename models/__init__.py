"""Backbones: params + apply, a prediction type and a native interpolant.

`get_backbone(config.model)` chooses one by `model.name`:
  gmm  the analytic Gaussian mixture (model.means, model.stds, model.weights).
  mlp  a trained 2D MLP restored from a train run's workdir (model.checkpoint).
  unet a trained image U-Net restored likewise; model.guidance_weight sets its CFG weight.
  stable_diffusion  a diffusers Stable Diffusion folder or hub id (model.path), text-conditioned
       on prompts (config.prompt or config.prompt_file); see models/stable_diffusion.py.
"""

from models import gmm
from models import trained
from samplers import interpolants

MODELS = ('gmm', 'mlp', 'unet', 'stable_diffusion')
TEXT_TO_IMAGE = ('stable_diffusion',)


def get_backbone(cfg):
  name = cfg.name
  if name == 'gmm':
    params = gmm.make_params(cfg.means, cfg.stds, cfg.weights)
    return gmm.make_backbone(params, interpolants.from_config(cfg), cfg.prediction)
  if name in trained.TRAINABLE:
    if not cfg.get('checkpoint'):
      raise ValueError('model.checkpoint is empty: set it to the workdir of a train run '
                       '(e.g. python main.py --config=configs/toy2d.py:DATASET --workdir=DIR).')
    overrides = {'guidance_weight': cfg.guidance_weight} if 'guidance_weight' in cfg else None
    return trained.load(cfg.checkpoint, overrides)
  if name == 'stable_diffusion':
    from models import stable_diffusion  # pylint: disable=g-import-not-at-top
    return stable_diffusion.make_backbone(cfg)
  raise ValueError(f'Unknown model {name!r}; valid: {", ".join(MODELS)}.')


def is_text_to_image(cfg) -> bool:
  return cfg.name in TEXT_TO_IMAGE


def read_prompts(config) -> list:
  """The prompts of a text-to-image run (config.prompt or config.prompt_file)."""
  from models import stable_diffusion  # pylint: disable=g-import-not-at-top
  return stable_diffusion.read_prompts(config)


def encode_prompts(cfg, prompts):
  """The backbone's text conditioning [P, L, D] of the prompts."""
  from models import stable_diffusion  # pylint: disable=g-import-not-at-top
  return stable_diffusion.encode_prompts(cfg, prompts)
