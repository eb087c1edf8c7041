"""Benchmarks: the cost of each search method beyond the physical cost of its NFEs.

Variants:
  (none)   every method on the trained 2D MLP (the 8-Gaussians ring) with 256 particles at one
           budget (2e4 NFE); DTS and DTS* with 1, 64 and 256 rollouts in flight. With
           model.checkpoint empty, a backbone is trained first into DIR/backbone (a minute).
  scaling  wall time against budget, 1e4 to 1e6 NFE, on the 2D analytic mixture (VP-SDE, 50
           steps): bon, smc, dts and dts_star (B = 1, 64, 256); scaling.png is log-log.
  digits   bon, smc, dts and dts_star on the 8x8 digits U-Net with the classifier reward at 2e4
           NFE, and the DTS rows' memory at 1e6 NFE (compiled only). The U-Net and classifier
           are trained briefly into DIR (benchmark.train_steps): the cost of an NFE does not
           depend on the weights.
  quick    tiny sizes for tests (combines with the others)

  python main.py --config=configs/benchmark.py --workdir=runs/benchmark
  python main.py --config=configs/benchmark.py:scaling --workdir=runs/benchmark_scaling
  python main.py --config=configs/benchmark.py:digits --workdir=runs/benchmark_digits
"""

import ml_collections

from configs import common
from configs import digits
from configs import gmm2d
from configs import toy2d

DTS_BATCHES = (1, 64, 256)


def get_config(arg=None):
  tokens = common.parse_variant(arg, ('quick', 'scaling', 'digits'))
  quick = 'quick' in tokens
  if 'scaling' in tokens:
    config = _scaling(quick)
  elif 'digits' in tokens:
    config = _digits(quick)
  else:
    config = _mlp(quick)
  config.experiment = 'benchmark'
  return config


def _mlp(quick):
  config = toy2d.get_config('ring')
  config.train.num_steps = 5000
  config.sampler.update(interpolant='vp', sde=True, num_steps=20)
  # 256 chains x 4 candidates x 20 levels: bon and smc get N = budget / M = 1024 particles.
  config.search.update(num_particles=256, budget=256 * 4 * 20, block_size=4)
  config.benchmark = ml_collections.ConfigDict(dict(
      methods=common.METHODS, dts_batches=DTS_BATCHES, repeats=10))
  if quick:
    config.data.num_points = 2000
    config.model.update(hidden=32, depth=2, embed_dim=16)
    config.train.update(num_steps=100, batch_size=128, log_every=100)
    config.sampler.num_steps = 6
    config.search.update(num_particles=8, budget=8 * 2 * 6, block_size=2,
                         # one candidate per round for nts, one generation of 8 for evo
                         nts_candidates=1, evo_schedule=(0.0,), evo_populations=(8, 8),
                         evo_elites=1)
    config.benchmark.update(repeats=1, dts_batches=(8,))
  return config


def _scaling(quick):
  config = gmm2d.get_config('')
  config.sampler.update(interpolant='vp', sde=True, num_steps=50)
  config.search.update(branch_every=10, num_particles=256)
  config.benchmark = ml_collections.ConfigDict(dict(
      methods=('bon', 'smc', 'dts', 'dts_star'), dts_batches=DTS_BATCHES, repeats=3,
      budgets=(10_000, 30_000, 100_000, 300_000, 1_000_000), memory_budgets=(1_000_000,)))
  if quick:
    config.sampler.num_steps = 10
    config.search.update(branch_every=3, num_particles=8)
    config.benchmark.update(methods=('dts',), dts_batches=(8,), repeats=1,
                            budgets=(200, 400), memory_budgets=(800,))
  return config


def _digits(quick):
  config = digits.get_config('dts,quick' if quick else 'dts')
  config.model.checkpoint = ''    # trained into DIR/backbone by the benchmark
  config.reward.checkpoint = ''   # and the classifier into DIR/classifier
  config.search.update(budget=20_480, num_particles=256)
  config.benchmark = ml_collections.ConfigDict(dict(
      methods=('bon', 'smc', 'dts', 'dts_star'), dts_batches=DTS_BATCHES, repeats=3,
      train_steps=200, memory_budgets=(1_000_000,)))
  if quick:
    config.search.update(budget=6 * 16, num_particles=4)
    config.benchmark.update(dts_batches=(1, 4), repeats=1, train_steps=5,
                            memory_budgets=(600,))
  return config
