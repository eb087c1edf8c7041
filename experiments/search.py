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


def prepare(config, checks: bool = True):
  """(problem, method config, mesh): everything validated, nothing compiled. `checks`: the
  checks that depend on the problem's number of searches (the mesh's `searches` axis, memory);
  a sweep that runs chunks of the problem's prompts makes them per chunk instead."""
  scfg = config.search
  method_config = search_lib.make_config(scfg, float(config.reward.temperature),
                                         config.sampler.num_steps)
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_particles(scfg.method, method_config, mesh)
  search_memory.check_measured(config.model, search_lib.get_method(scfg.method).rows(
      method_config), mesh.devices.size)
  problem = problem_lib.build(config, guidance=bool(scfg.get('guidance', False)))
  check_sampler(scfg.method, problem.sampler)
  if checks:
    mesh_lib.check_searches(problem.batch, mesh)
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
                      config.reward, problem.batch, mesh.shape[mesh_lib.sharding.PARTICLES],
                      dict(mesh.shape).get(mesh_lib.sharding.SEARCHES, 1))


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
    result, compile_s, wall_s, memory = _search(config, problem, method_config, mesh)
    metrics = search_metrics(config, result, wall_s, compile_s, bool(problem.batch))
    metrics.update(memory_metrics(memory))
    scored = {}
    if not problem.heldout:
      write_per_search(workdir, problem, result, scored)
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
  write_per_search(workdir, problem, result, scored)
  extra = {f'heldout_{label}': scores.reshape(-1) for label, scores in scored.items()}
  out = problem.recorder.record_search(recorders.Run(config, problem, workdir, extra), result,
                                       metrics, title_prefix)
  if files.is_writer():
    os.remove(pending)
  return out


PER_SEARCH = 'per_search.json'


def write_per_search(workdir: str, problem, result, scored: dict) -> None:
  """DIR/per_search.json for a batch of independent searches (prompts, classes x runs): each
  search's metrics as lists [B] (experiments/sweep.py pools them per prompt)."""
  if problem.batch and files.is_writer():
    files.write_json(os.path.join(workdir, PER_SEARCH),
                     per_search_metrics(problem, result, scored))


def per_search_metrics(problem, result, scored: dict) -> dict:
  """{name: [B] list}: `prompt_index` (text prompts) or `row_class`, nfe, nfe_evaluated,
  reward_mean and reward_max over each search's valid outputs (None where it has none), and
  heldout_LABEL_mean / _max."""
  def stats(scores):
    scores = np.asarray(scores, np.float64).reshape(problem.batch, -1)
    valid = np.isfinite(scores)
    mean = [float(np.mean(s[v])) if v.any() else None for s, v in zip(scores, valid)]
    top = [float(np.max(s[v])) if v.any() else None for s, v in zip(scores, valid)]
    return mean, top
  out = {}
  if problem.prompts:
    out['prompt_index'] = recorders.prompt_indices(problem).tolist()
    out['prompt'] = list(problem.prompts)
  else:
    out['row_class'] = [int(c) for c in problem.row_classes]
  out['nfe'] = np.asarray(result.nfe).reshape(-1).astype(int).tolist()
  out['nfe_evaluated'] = np.asarray(result.nfe_evaluated).reshape(-1).astype(int).tolist()
  out['reward_mean'], out['reward_max'] = stats(result.reward)
  for label, scores in scored.items():
    out[f'heldout_{label}_mean'], out[f'heldout_{label}_max'] = stats(scores)
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
  memory = {}
  result, compile_s, wall_s = runtime.compile_and_run(program, *args, mesh=mesh,
                                                      label=f'search {method}', memory=memory)
  return mesh_lib.to_host(result), compile_s, wall_s, memory


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


def memory_metrics(memory: dict) -> dict:
  """program_memory_gib (the search program's arguments, outputs and temporaries per device,
  from the compiler) and peak_memory_gib (the device's peak so far in this process, on devices
  that report it)."""
  names = {'program_bytes': 'program_memory_gib', 'peak_bytes': 'peak_memory_gib'}
  return {names[k]: v / 2**30 for k, v in memory.items() if v is not None}


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
