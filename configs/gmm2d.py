"""The analytic 2D Gaussian mixture: an exact backbone, no training needed.

Variants (comma-separated): `quick` (small sizes for tests).
  python main.py --config=configs/gmm2d.py --workdir=/tmp/gmm
  python main.py --config=configs/gmm2d.py:quick --workdir=/tmp/gmm \
      --config.sampler.interpolant=vp --config.sampler.sde=true \
      --config.model.means="((0.,1.),(3.,4.))" --config.model.stds="(0.5,0.5)" \
      --config.model.weights="(0.5,0.5)"
"""

import ml_collections

from configs import common


def get_config(arg=None):
  variant = common.parse_variant(arg, ('quick',))
  config = ml_collections.ConfigDict()
  config.experiment = 'sample'
  config.seed = 0

  config.model = ml_collections.ConfigDict(dict(
      name='gmm',
      means=((-3.0, -1.0), (0.0, 2.5), (3.0, -1.0)),
      stds=(0.5, 0.6, 0.4),
      weights=(0.3, 0.3, 0.4),
      prediction='velocity',      # what the analytic backbone outputs: velocity|epsilon|x0|v
      interpolant='linear',       # its native interpolant
  ))
  config.sampler = common.sampler_config()
  config.reward = common.reward_config()

  if 'quick' in variant:
    config.sampler.num_steps = 20
    config.sampler.num_samples = 256
  return config
