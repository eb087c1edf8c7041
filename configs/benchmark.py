"""Benchmark every search method on the trained 2D MLP (the 8-Gaussians ring) with 256
particles at one budget. With model.checkpoint empty, a backbone is trained first into
DIR/backbone (about a minute).

  python main.py --config=configs/benchmark.py --workdir=runs/benchmark
  python main.py --config=configs/benchmark.py:quick --workdir=/tmp/bench   # tests
"""

import ml_collections

from configs import common
from configs import toy2d


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('quick',))
  config = toy2d.get_config('ring')
  config.experiment = 'benchmark'
  config.train.num_steps = 5000
  config.sampler.update(interpolant='vp', sde=True, num_steps=20)
  # 256 chains x 4 candidates x 20 levels: bon and smc get N = budget / M = 1024 particles.
  config.search.update(num_particles=256, budget=256 * 4 * 20, block_size=4)
  config.benchmark = ml_collections.ConfigDict(dict(methods=common.METHODS, repeats=10))
  if 'quick' in tokens:
    config.data.num_points = 2000
    config.model.update(hidden=32, depth=2, embed_dim=16)
    config.train.update(num_steps=100, batch_size=128, log_every=100)
    config.sampler.num_steps = 6
    config.search.update(num_particles=8, budget=8 * 2 * 6, block_size=2)
    config.benchmark.repeats = 1
  return config
