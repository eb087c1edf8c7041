"""Backbones: params + apply, a prediction type and a native interpolant.

`get_backbone(config.model)` chooses one by `model.name`:
  gmm  the analytic Gaussian mixture (model.means, model.stds, model.weights).
  mlp  a trained 2D MLP restored from a train run's workdir (model.checkpoint).
"""

from models import gmm
from models import mlp
from samplers import interpolants

MODELS = ('gmm', 'mlp')


def get_backbone(cfg):
  name = cfg.name
  if name == 'gmm':
    params = gmm.make_params(cfg.means, cfg.stds, cfg.weights)
    return gmm.make_backbone(params, interpolants.from_config(cfg), cfg.prediction)
  if name == 'mlp':
    if not cfg.get('checkpoint'):
      raise ValueError('model.checkpoint is empty: set it to the workdir of a train run '
                       '(python main.py --config=configs/toy2d.py:DATASET --workdir=DIR).')
    return mlp.load_backbone(cfg.checkpoint)
  raise ValueError(f'Unknown model {name!r}; valid: {", ".join(MODELS)}.')
