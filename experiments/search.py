"""`search`: one inference-time search method on one problem, at one NFE budget."""

import functools
import json
import os

from absl import logging
import jax
import numpy as np

import search as search_lib
from experiments import files
from experiments import mesh as mesh_lib
from experiments.evaluation import metrics as metrics_lib
from experiments import problem as problem_lib
from experiments.evaluation import recorders
from experiments import runtime
from experiments import search_memory
from samplers.ground import progress


def prepare(config):
  """(problem, method config, mesh): everything validated, nothing compiled."""
  scfg = config.search
  method_config = search_lib.make_config(scfg, float(config.reward.temperature),
                                         config.sampler.num_steps)
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_particles(scfg.method, method_config, mesh)
  search_memory.check_measured(config.model, search_lib.get_method(scfg.method).rows(
      method_config), mesh.devices.size)
  problem = problem_lib.build(config, guidance=bool(scfg.get('guidance', False)))
  check_sampler(scfg.method, problem.sampler)
  check_memory(config, problem, method_config, mesh)
  return problem, method_config, mesh


def check_sampler(method: str, sampler) -> None:
  """Warns of a method whose candidates differ only through the sampler's noise run on a
  deterministic sampler: its resampled particles, children or branches are copies of one path
  (search/base.py: Method.needs_noise)."""
  if search_lib.get_method(method).needs_noise and not sampler.sde:
    logging.warning(
        '%s on a deterministic sampler (%s ODE): its candidates differ only through the '
        'sampler\'s noise, so on an ODE they are copies of the same path and the search '
        'degenerates; run it on an SDE (--config.sampler.sde=true).', method,
        sampler.interpolant.name)


def check_memory(config, problem, method_config, mesh) -> None:
  """Refuses a search whose own arrays would not fit, before compiling
  (experiments/search_memory.py)."""
  search_memory.check(config.search.method, method_config, problem.sampler.data_shape,
                      config.reward, problem.batch,
                      mesh.shape[mesh_lib.sharding.PARTICLES])


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


# The definitions of the metrics a search reports, versioned so that a sweep never mixes points
# computed under different ones unawares (experiments/sweep.py). 2: `diversity` and a batched
# `reward_max` within each search, averaged over the searches (1: over all their outputs).
METRICS_VERSION = 2

PENDING = 'search_result.npz'   # a finished search whose held-out rewards are not all scored


class HeldoutError(OSError):
  """A held-out reward failed after the search finished; the search's results are saved."""


def execute(config, workdir, problem, method_config, mesh, title_prefix=''):
  """Places the inputs on the mesh, compiles and runs the search, and hands the result to the
  problem's recorder (which writes the contract files, process 0 only); returns (metrics, x0).

  With held-out rewards, the search's own files are written before they are scored, and its
  result is kept in DIR/search_result.npz until every one is: a held-out reward that fails
  (a reward service that dies, say) stops the run with a HeldoutError, and a rerun of the same
  run scores only the held-out rewards still missing, without searching again."""
  files.claim_workdir(workdir, config)
  pending = os.path.join(workdir, PENDING)
  if problem.heldout and os.path.exists(pending):
    result, metrics, scored = _load_pending(pending)
    logging.info('%s: the search finished in an earlier run; scoring its held-out rewards '
                 '(%s) only.', workdir, ', '.join(l for l, _, _ in problem.heldout
                                                  if l not in scored))
  else:
    result, compile_s, wall_s = _search(config, problem, method_config, mesh)
    metrics = search_metrics(config, result, wall_s, compile_s, bool(problem.batch))
    scored = {}
    if not problem.heldout:
      return problem.recorder.record_search(recorders.Run(config, problem, workdir), result,
                                            metrics, title_prefix)
    problem.recorder.record_search(recorders.Run(config, problem, workdir), result,
                                   dict(metrics), title_prefix)
    _save_pending(pending, result, metrics, scored)
  for label, judge, cond in problem.heldout:
    if label in scored:
      continue
    try:
      scored[label] = problem_lib.score_heldout_one(problem, judge, cond, result.x0)
    except Exception as e:  # pylint: disable=broad-except
      raise HeldoutError(
          f'held-out reward {label} failed after the search finished ({type(e).__name__}: '
          f'{e}); the search\'s samples.npz and metrics.json are in {workdir}: rerun the same '
          'command to score the held-out rewards only.') from None
    _save_pending(pending, result, metrics, scored)
  metrics.update(problem_lib.heldout_metrics(scored))
  extra = {f'heldout_{label}': scores.reshape(-1) for label, scores in scored.items()}
  out = problem.recorder.record_search(recorders.Run(config, problem, workdir, extra), result,
                                       metrics, title_prefix)
  if files.is_writer():
    os.remove(pending)
  return out


def _search(config, problem, method_config, mesh):
  """(result on the host, compile_s, wall_s) of the jitted search."""
  method = config.search.method
  key = jax.random.key(config.seed)
  cond = problem.cond if problem.cond is None else jax.tree.map(np.asarray, problem.cond)
  if problem.batch:
    key = jax.random.split(key, problem.batch)
  args = mesh_lib.place((key, problem.reward, cond), mesh)
  args = args[:1] + (mesh_lib.place_sampler(problem.sampler, mesh),) + args[1:]
  program = _program(method, method_config, bool(problem.batch))
  progress.for_work(problem_lib.parameter_count(problem),
                    method_config.common.budget * max(problem.batch, 1))
  result, compile_s, wall_s = runtime.compile_and_run(program, *args, mesh=mesh,
                                                      label=f'search {method}')
  return mesh_lib.to_host(result), compile_s, wall_s


def _save_pending(path, result, metrics: dict, scored: dict) -> None:
  arrays = {f'result_{k}': np.asarray(v) for k, v in result._asdict().items()}
  arrays.update({f'heldout_{k}': v for k, v in scored.items()})
  arrays['metrics_json'] = np.frombuffer(json.dumps(metrics).encode(), np.uint8)
  files.write_npz(path, arrays)


def _load_pending(path):
  try:
    with np.load(path) as data:
      result = search_lib.base.SearchResult(**{
          f: data[f'result_{f}'] for f in search_lib.base.SearchResult._fields})
      metrics = json.loads(data['metrics_json'].tobytes().decode())
      scored = {k[len('heldout_'):]: data[k] for k in data.files if k.startswith('heldout_')}
  except (OSError, KeyError, ValueError) as e:
    raise ValueError(f'{path} (a finished search kept for its held-out rewards) is unreadable '
                     f'({e}); remove it to search again.') from None
  return result, metrics, scored


def search_metrics(config, result, wall_s: float, compile_s: float, batched: bool) -> dict:
  """The metrics every search reports, whatever its domain; `batched`: result holds B
  independent searches (prompts, classes), x0 [B, N, ...]."""
  x0, r = np.asarray(result.x0), np.asarray(result.reward)
  num_invalid, num_scored = int(np.sum(result.num_invalid)), int(np.sum(result.num_scored))
  metrics = {
      'nfe': int(np.max(result.nfe)), 'nfe_evaluated': int(np.max(result.nfe_evaluated)),
      'budget': int(config.search.budget), 'num_outputs': int(r.size),
      'wall_s': wall_s, 'compile_s': compile_s,
      'num_invalid': num_invalid, 'num_scored': num_scored,
  }
  diversity = metrics_lib.diversity(x0, batched)
  if diversity is not None:
    metrics['diversity'] = diversity
  metrics.update(invalid_reward_metrics(r, np.asarray(result.trace_best)[..., -1],
                                        num_invalid, num_scored, batched))
  return metrics


def invalid_reward_metrics(r, best, num_invalid: int, num_scored: int,
                           batched: bool = False) -> dict:
  """Reward statistics over the valid outputs, and what was invalid (docs/reliability.md).

  `all_invalid` = 1 means the same for every method: every reward the search scored was NaN
  or infinite, so nothing guided it and its outputs are unselected draws of the base sampler.
  With `batched` (r [B, N] of B searches), reward_max is the mean over the searches of each
  one's largest reward.
  `num_invalid_outputs` counts outputs whose own reward is invalid (a chain method's chain can
  end on one; a weighted method draws one only when every final reward is invalid)."""
  valid = np.isfinite(r)
  out = {'num_invalid_outputs': int(r.size - valid.sum())}
  if valid.any():
    out.update(reward_mean=float(np.mean(r[valid])), reward_max=float(np.max(r[valid])))
  if batched and r.ndim > 1 and valid.any(axis=-1).all():
    # Each search's largest reward, averaged over the searches (prompts, classes): the best
    # of one prompt never stands in for another's.
    out['reward_max'] = float(np.mean(np.max(np.where(valid, r, -np.inf), axis=-1)))
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
