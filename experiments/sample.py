"""`sample`: plain ODE/SDE sampling of a backbone: build, place, compile, run, record."""

import jax
import numpy as np

from experiments import files
from experiments import mesh as mesh_lib
from experiments import problem as problem_lib
from experiments.evaluation import recorders
from experiments import runtime
from experiments import search_memory
from samplers.ground import progress


def run(config, workdir: str) -> dict:
  n = config.sampler.num_samples
  if not isinstance(n, int) or n <= 0:
    raise ValueError(f'sampler.num_samples must be a positive integer, got {n!r}.')
  mesh = mesh_lib.make_mesh(config.mesh)
  devices = mesh.shape['particles']
  if n % devices:
    raise ValueError(f'sampler.num_samples={n} does not divide over the {devices} devices of '
                     'the mesh\'s particle axis; change it or mesh.shape.')
  search_memory.check_measured(config.model, n, mesh.devices.size)
  problem = problem_lib.build(config)
  reward, sampler = problem.reward, problem.sampler
  files.claim_workdir(workdir, config)

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
  progress.for_work(problem_lib.parameter_count(problem),
                    n * sampler.num_steps * max(len(problem.prompts or ()), 1))
  out, compile_s, wall_s = runtime.compile_and_run(program, *args, mesh=mesh, label='sampling')
  x0, r, nfe = mesh_lib.to_host(out)
  metrics = {'nfe': int(np.max(nfe)), 'num_samples': n, 'wall_s': wall_s,
             'compile_s': compile_s}
  return problem.recorder.record_samples(recorders.Run(config, problem, workdir), x0, r, metrics,
                                         ref_key)
