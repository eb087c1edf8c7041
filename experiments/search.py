"""`search`: one inference-time search method on one problem, at one NFE budget."""

import functools
import os

from absl import logging
import jax
import numpy as np

import search as search_lib
from experiments import io
from experiments import mesh as mesh_lib
from experiments import metrics as metrics_lib
from experiments import plots
from experiments import problem as problem_lib
from experiments import runtime


def prepare(config):
  """(problem, method config, mesh): everything validated, nothing compiled."""
  scfg = config.search
  method_config = search_lib.make_config(scfg, float(config.reward.temperature),
                                         config.sampler.num_steps)
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_particles(scfg.method, method_config, mesh)
  problem = problem_lib.build(config, guidance=bool(scfg.get('guidance', False)))
  return problem, method_config, mesh


@functools.lru_cache(maxsize=None)
def _program(method: str, method_config, batched: bool):
  """The jitted search program, one function object per (method, config, batched), so that
  every run of the same shapes (other seeds, other classes) reuses its compilation."""
  run_fn = search_lib.get_method(method).run
  if batched:  # independent searches (prompts, classes x runs), vmapped; budget per search
    def program(keys, sampler, reward, conds):
      return search_lib.run_batched(method, keys, sampler, reward, method_config, conds)
  else:
    def program(key, sampler, reward, cond):
      return run_fn(key, sampler, reward, method_config, cond)
  return program


def execute(config, workdir, problem, method_config, mesh, title_prefix=''):
  """Compiles and runs the search on the mesh; writes the contract files (process 0 only);
  returns the metrics."""
  io.claim_workdir(workdir, config)
  method = config.search.method
  key = jax.random.key(config.seed)
  cond = problem.cond if problem.cond is None else jax.tree.map(np.asarray, problem.cond)
  if problem.batch:
    key = jax.random.split(key, problem.batch)
  args = mesh_lib.place((key, problem.reward, cond), mesh)
  args = args[:1] + (mesh_lib.place_sampler(problem.sampler, mesh),) + args[1:]
  program = _program(method, method_config, bool(problem.batch))
  result, compile_s, wall_s = runtime.compile_and_run(program, *args, mesh=mesh)
  result = mesh_lib.to_host(result)
  x0, r = np.asarray(result.x0), np.asarray(result.reward)
  num_invalid, num_scored = int(np.sum(result.num_invalid)), int(np.sum(result.num_scored))
  nfe = np.asarray(result.nfe)
  metrics = {
      'nfe': int(nfe.max()), 'nfe_evaluated': int(np.max(result.nfe_evaluated)),
      'budget': int(config.search.budget), 'num_outputs': int(r.size),
      'diversity': metrics_lib.mean_pairwise_distance(x0), 'wall_s': wall_s, 'compile_s': compile_s,
      'num_invalid': num_invalid, 'num_scored': num_scored,
  }
  metrics.update(invalid_reward_metrics(r, np.asarray(result.trace_best)[..., -1],
                                        num_invalid, num_scored))
  flat_x0 = x0.reshape((-1,) + x0.shape[2:]) if problem.batch else x0
  if flat_x0.shape[1:] == (2,):
    key = jax.random.key(config.seed + 1)
    exact = problem_lib.exact_target_draws(config, problem, key, 2048)
    if exact is not None and len(flat_x0) > 1:
      metrics['energy_distance'] = float(metrics_lib.energy_distance(flat_x0, exact))
      metrics['mmd'] = float(metrics_lib.mmd_rbf(flat_x0, exact))
      # The finite-sample floor: as many fresh exact draws score this against the same reference.
      fresh = problem_lib.exact_target_draws(config, problem, jax.random.key(config.seed + 2),
                                             len(flat_x0))
      metrics['mmd_exact_draws'] = float(metrics_lib.mmd_rbf(fresh, exact))
    ref = exact if exact is not None else problem_lib.base_samples(config.model, key, 2048)
    plots.scatter_2d(os.path.join(workdir, 'samples.png'), flat_x0, ref,
                     f'{title_prefix}{method}: r mean {metrics.get("reward_mean", np.nan):.3f}, '
                     f'{metrics["nfe"]} NFE')
  traces = dict(trace_nfe=np.asarray(result.trace_nfe), trace_best=np.asarray(result.trace_best))
  if problem.prompts:
    metrics.update(num_prompts=len(problem.prompts), nfe_all_prompts=int(nfe.sum()))
    problem_lib.write_prompt_outputs(workdir, problem, x0, r, **traces)
    io.write_metrics(workdir, metrics)
    return metrics, x0
  if problem.batch:
    metrics.update(num_searches=problem.batch, nfe_all_searches=int(nfe.sum()),
                   diversity=metrics_lib.mean_pairwise_distance(flat_x0))
    traces['row_class'] = np.repeat(np.asarray(problem.row_classes), x0.shape[1])
  if flat_x0.ndim == 4:
    metrics.update(problem_lib.record_images(
        config, workdir, flat_x0, f'{method}: r mean {metrics.get("reward_mean", np.nan):.3f}',
        towards_reward=True, row_classes=traces.get('row_class')))
  io.write_samples(workdir, x0=flat_x0, reward=r.reshape(-1), **traces)
  io.write_metrics(workdir, metrics)
  return metrics, x0


def invalid_reward_metrics(r, best, num_invalid: int, num_scored: int) -> dict:
  """Reward statistics over the valid outputs, and what was invalid (docs/reliability.md).

  `all_invalid` = 1 means the same for every method: every reward the search scored was NaN
  or infinite, so nothing guided it and its outputs are unselected draws of the base sampler.
  `num_invalid_outputs` counts outputs whose own reward is invalid (a chain method's chain can
  end on one; a weighted method draws one only when every final reward is invalid)."""
  valid = np.isfinite(r)
  out = {'num_invalid_outputs': int(r.size - valid.sum())}
  if valid.any():
    out.update(reward_mean=float(np.mean(r[valid])), reward_max=float(np.max(r[valid])))
  best = np.asarray(best, np.float64)
  if np.all(np.isfinite(best)):
    out['best_reward'] = float(np.mean(best))
  if num_invalid == num_scored:
    logging.error('every proposal\'s reward was NaN or infinite (%d of %d): the samples are '
                  'unselected draws of the base sampler.', num_invalid, num_scored)
    out['all_invalid'] = 1
  elif num_invalid:
    logging.warning('%d of %d proposals had a NaN or infinite reward; none was selected while '
                    'a valid one was available.', num_invalid, num_scored)
  if out['num_invalid_outputs'] and num_invalid != num_scored:
    logging.warning('%d of %d outputs have an invalid reward; reward_mean and reward_max are '
                    'over the valid ones.', out['num_invalid_outputs'], r.size)
  return out


def run(config, workdir: str) -> dict:
  problem, method_config, mesh = prepare(config)
  return execute(config, workdir, problem, method_config, mesh)[0]
