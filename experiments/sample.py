"""`sample`: plain ODE/SDE sampling of a backbone; writes the contract files and a 2D scatter."""

import os

import jax
import numpy as np

from experiments import io
from experiments import mesh as mesh_lib
from experiments import metrics as metrics_lib
from experiments import plots
from experiments import problem as problem_lib
from experiments import runtime


def run(config, workdir: str) -> dict:
  n = config.sampler.num_samples
  if not isinstance(n, int) or n <= 0:
    raise ValueError(f'sampler.num_samples must be a positive integer, got {n!r}.')
  mesh = mesh_lib.make_mesh(config.mesh)
  devices = mesh.shape['particles']
  if n % devices:
    raise ValueError(f'sampler.num_samples={n} does not divide over the {devices} devices of '
                     'the mesh\'s particle axis; change it or mesh.shape.')
  problem = problem_lib.build(config)
  backbone, reward = problem.backbone, problem.reward
  sampler = problem.sampler
  io.claim_workdir(workdir, config)

  key = jax.random.key(config.seed)
  sample_key, ref_key = jax.random.split(key)

  def sample_one(smp, rew, k, cond):
    result = smp.sample(k, n, cond)
    return result.x0, rew(result.x0, cond), result.nfe

  if problem.prompts:  # n samples per prompt, vmapped over the prompts
    def program(smp, rew, k, conds):
      keys = jax.random.split(k, len(problem.prompts))
      return jax.vmap(lambda kk, c: sample_one(smp, rew, kk, c))(keys, conds)
    args = (reward, sample_key, problem.cond)
  else:
    def program(smp, rew, k):
      return sample_one(smp, rew, k, problem.cond)
    args = (reward, sample_key)
  args = (mesh_lib.place_sampler(sampler, mesh),) + mesh_lib.place(args, mesh)
  out, compile_s, wall_s = runtime.compile_and_run(program, *args, mesh=mesh)
  x0, r, nfe = mesh_lib.to_host(out)
  if problem.prompts:
    problem_lib.write_prompt_outputs(workdir, problem, x0, r)
    metrics = {'nfe': int(np.max(nfe)), 'num_samples': n, 'num_prompts': len(problem.prompts),
               'reward_mean': float(np.mean(r)), 'reward_max': float(np.max(r)),
               'wall_s': wall_s, 'compile_s': compile_s}
    io.write_metrics(workdir, metrics)
    return metrics
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
