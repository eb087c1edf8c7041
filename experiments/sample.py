"""`sample`: plain ODE/SDE sampling of a backbone; writes the contract files and a 2D scatter."""

import os

import jax
import numpy as np

from experiments import io
from experiments import metrics as metrics_lib
from experiments import plots
from experiments import problem as problem_lib
from experiments import runtime


def run(config, workdir: str) -> dict:
  n = config.sampler.num_samples
  if not isinstance(n, int) or n <= 0:
    raise ValueError(f'sampler.num_samples must be a positive integer, got {n!r}.')
  problem = problem_lib.build(config)
  backbone, sampler, reward = problem.backbone, problem.sampler, problem.reward
  io.write_config(workdir, config)

  key = jax.random.key(config.seed)
  sample_key, ref_key = jax.random.split(key)

  cond = problem_lib.condition(config)

  def program(smp, k):
    result = smp.sample(k, n, cond)
    return result.x0, reward(result.x0, cond), result.nfe

  (x0, r, nfe), compile_s, wall_s = runtime.compile_and_run(program, sampler, sample_key)
  x0, r = np.asarray(x0), np.asarray(r)
  metrics = {'nfe': int(nfe), 'num_samples': n, 'reward_mean': float(np.mean(r)),
             'reward_max': float(np.max(r)), 'wall_s': wall_s, 'compile_s': compile_s}
  if backbone.data_shape == (2,):
    reference = problem_lib.base_samples(config.model, ref_key, min(n, 4096))
    metrics['energy_distance'] = float(
        metrics_lib.energy_distance(x0[:4096], reference))
    kind = 'SDE' if sampler.sde else 'ODE'
    plots.scatter_2d(os.path.join(workdir, 'samples.png'), x0[:4096], reference,
                     f'{config.model.name}: {sampler.interpolant.name}-{kind}, '
                     f'{sampler.num_steps} steps, ED {metrics["energy_distance"]:.4f}')
  if x0.ndim == 4:
    kind = 'SDE' if sampler.sde else 'ODE'
    metrics.update(problem_lib.record_images(
        config, workdir, x0, f'{sampler.interpolant.name}-{kind}', towards_reward=False))
  io.write_samples(workdir, x0=x0, reward=r)
  io.write_metrics(workdir, metrics)
  return metrics
