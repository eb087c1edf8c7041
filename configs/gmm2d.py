"""The analytic 2D Gaussian mixture: an exact backbone, so the tilted target is exact too.

Variants (comma-separated):
  (none)    compare: every search method at the same budget (the README's main job)
  sample    plain sampling
  bon, sop, smc, svdd, code, rbf, dts, dts_star
            one search method
  quick     small sizes for tests
  python main.py --config=configs/gmm2d.py --workdir=runs/compare
  python main.py --config=configs/gmm2d.py:smc --workdir=runs/smc --config.search.budget=25600
  python main.py --config=configs/gmm2d.py:sample --workdir=runs/gmm \
      --config.sampler.interpolant=linear --config.sampler.sde=false \
      --config.model.means="((0.,1.),(3.,4.))" --config.model.stds="(0.5,0.5)" \
      --config.model.weights="(0.5,0.5)"
"""

import ml_collections

from configs import common


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('quick', 'sample') + common.METHODS)
  config = ml_collections.ConfigDict()
  config.experiment = 'sample' if 'sample' in tokens else 'compare'
  config.seed = 0

  config.model = ml_collections.ConfigDict(dict(
      name='gmm',
      means=((-3.0, -1.0), (0.0, 2.5), (3.0, -1.0)),
      stds=(0.5, 0.6, 0.4),
      weights=(0.3, 0.3, 0.4),
      prediction='velocity',      # what the analytic backbone outputs: velocity|epsilon|x0|v
      interpolant='linear',       # its native interpolant
  ))
  # Searches run on the VP-SDE (g = 3 s^2); plain sampling on the Linear-ODE.
  config.sampler = common.sampler_config(interpolant='vp', sde=True, num_steps=50)
  if 'sample' in tokens:
    config.sampler.update(interpolant='linear', sde=False, num_steps=100)
  # Tilt towards the right-hand mode: the tilted target is a mixture in closed form.
  config.reward = common.reward_config(name='linear', weights=(1.0, 0.5))
  config.search = common.search_config(budget=12_800, num_particles=64)
  config.mesh = common.mesh_config()
  config.compare = ml_collections.ConfigDict(dict(methods=common.METHODS))
  common.apply_method_variant(config, tokens)

  if 'quick' in tokens:
    config.sampler.update(num_steps=10, num_samples=256)
    config.search.update(budget=640, num_particles=4, block_size=3)
  return config
