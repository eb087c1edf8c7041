"""Backbones: params + apply, a prediction type and a native interpolant.

`get_backbone(config.model)` chooses one by `model.name`:
  gmm  the analytic Gaussian mixture (model.means, model.stds, model.weights).
  mlp  a trained 2D MLP restored from a train run's workdir (model.checkpoint).
  unet a trained image U-Net restored likewise; model.guidance_weight sets its CFG weight.
"""

from models import gmm
from models import trained
from samplers import interpolants

MODELS = ('gmm', 'mlp', 'unet')


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
  raise ValueError(f'Unknown model {name!r}; valid: {", ".join(MODELS)}.')
