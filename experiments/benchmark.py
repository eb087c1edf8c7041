"""`benchmark`: the cost of each search method beyond the physical cost of its NFEs.

For every method in benchmark.methods at one budget and particle count: compile time, the
wall time of the compiled search (best of benchmark.repeats), XLA's peak-memory estimate of
the compiled program (arguments + outputs + temporaries), the cost per NFE and its ratio to
best-of-N's, and the overhead ratio

  wall time of the search / wall time of the same backbone evaluations run bare,

where "the same evaluations" is a lax.scan of as many backbone calls, at the method's own
mean batch size, as an uninstrumented counting pass of the search made. A ratio of 1 means the
search costs nothing beyond its NFEs. DTS and DTS* run once per benchmark.dts_batches entry
(rows `dts_b64`, ...). Writes benchmark.json and benchmark.md.

With benchmark.budgets set, it times every row at each budget instead (no overhead pass) and
writes scaling.json, scaling.md and scaling.png (wall time against NFE, log-log).
benchmark.memory_budgets lists budgets at which the DTS rows are only compiled, for XLA's
peak-memory figure (memory.json, memory.md).
"""

import copy
import os

from absl import logging
import jax
import jax.numpy as jnp

import rewards
import search as search_lib
from experiments import files
from experiments.evaluation import tables
from experiments import mesh as mesh_lib
from experiments import runtime
from experiments.evaluation import plots
from experiments import search as search_exp
from experiments import train as train_exp
from experiments import train_classifier as train_classifier_exp
from models import backbone as backbone_lib
from samplers.ground import progress
from samplers.ground import sharding


DTS_METHODS = ('dts', 'dts_star')


def _ensure_backbone(config, workdir):
  """Trains what the benchmark needs and has no checkpoint for: the MLP into DIR/backbone, or
  the digits U-Net into DIR/backbone and its classifier reward into DIR/classifier (briefly:
  benchmark.train_steps; the cost of an NFE does not depend on how well it is trained)."""
  config = copy.deepcopy(config)
  if config.model.name in ('mlp', 'unet') and not config.model.checkpoint:
    train_dir = os.path.join(workdir, 'backbone')
    train_cfg = copy.deepcopy(config)
    train_cfg.experiment = 'train'
    if config.benchmark.get('train_steps'):
      train_cfg.train.num_steps = int(config.benchmark.train_steps)
    logging.info('training the benchmark backbone into %s', train_dir)
    train_exp.run(train_cfg, train_dir)
    config.model.checkpoint = train_dir
  if config.reward.name.startswith('classifier') and not config.reward.checkpoint:
    reward_dir = os.path.join(workdir, 'classifier')
    train_cfg = copy.deepcopy(config)
    train_cfg.experiment = 'train_classifier'
    if config.benchmark.get('train_steps'):
      train_cfg.classifier.num_steps = int(config.benchmark.train_steps)
    train_classifier_exp.run(train_cfg, reward_dir)
    config.reward.checkpoint = reward_dir
  return config


def _rows(config):
  """(label, method, search overrides) of every benchmarked row: DTS and DTS* once per
  benchmark.dts_batches entry (labelled dts_b64, ...), every other method once."""
  batches = tuple(config.benchmark.get('dts_batches', ()))
  for method in config.benchmark.methods:
    if method in DTS_METHODS and batches:
      for batch in batches:
        yield f'{method}_b{batch}', method, {'dts_batch': int(batch)}
    else:
      yield method, method, {}


def _method_config(config, method, overrides, budget=None):
  cfg = copy.deepcopy(config)
  cfg.search.method = method
  cfg.search.update(overrides)
  if budget is not None:
    cfg.search.budget = int(budget)
  return cfg


def _count_calls(program, sampler, key):
  """(backbone calls, rows evaluated) of one run, through a counting wrapper."""
  calls = []
  bb = sampler.backbone

  def counting_apply(params, x, t, cond=None):
    jax.debug.callback(lambda n: calls.append(int(n)), x.shape[0])
    return bb.apply_fn(params, x, t, cond)
  counted = sampler.replace(backbone=backbone_lib.Backbone(
      bb.params, counting_apply, bb.prediction, bb.interpolant, bb.data_shape))
  jax.block_until_ready(jax.jit(program)(key, counted))
  return len(calls), sum(calls)


def _raw_evaluations(sampler, calls, batch):
  """A program of `calls` bare backbone evaluations of `batch` rows each."""
  bb = sampler.backbone

  def program(x):
    if batch % sharding.particle_axis_size() == 0:
      x = sharding.rows(x)  # the bare evaluations split over the mesh like the search's
    def body(x, t):
      return 0.5 * x + 0.5 * bb(x, jnp.broadcast_to(t, x.shape[:1])), None
    return jax.lax.scan(body, x, jnp.linspace(0.9, 0.1, calls))[0]
  x = jnp.ones((batch,) + tuple(bb.data_shape))
  return program, (x,)


def _check_before_training(config) -> None:
  """Every row's config at every budget, the mesh and the reward, validated before a backbone
  is trained for them, so that a typo costs seconds, not a training run."""
  if not config.benchmark.methods:
    raise ValueError('benchmark.methods is empty.')
  if int(config.benchmark.repeats) < 1:
    raise ValueError(f'benchmark.repeats must be >= 1, got {config.benchmark.repeats}.')
  mesh = mesh_lib.make_mesh(config.mesh)
  budgets = (tuple(config.benchmark.get('budgets', ())) or (None,)) + tuple(
      config.benchmark.get('memory_budgets', ()))
  for _, method, overrides in _rows(config):
    for budget in budgets:
      cfg = _method_config(config, method, overrides, budget)
      method_config = search_lib.make_config(cfg.search, float(cfg.reward.temperature),
                                             cfg.sampler.num_steps)
      mesh_lib.check_particles(method, method_config, mesh)
  if config.model.name == 'mlp' and not config.model.checkpoint:
    rewards.get_reward(config.reward, (int(config.data.dim),))


class _Program:
  """One row's search, prepared and placed on the mesh: compile, time, count."""

  def __init__(self, config, method, overrides, budget=None):
    cfg = _method_config(config, method, overrides, budget)
    self.problem, self.method_config, self.mesh = search_exp.prepare(cfg)
    run_fn = search_lib.get_method(method).run
    reward, method_config = self.problem.reward, self.method_config
    self.program = lambda key, sampler: run_fn(key, sampler, reward, method_config)
    self.seed = cfg.seed

  def __enter__(self):
    self._mesh_ctx = jax.set_mesh(self.mesh)  # particles split over the mesh, as in a search
    self._mesh_ctx.__enter__()
    self.key = mesh_lib.place(jax.random.key(self.seed), self.mesh)
    self.sampler = mesh_lib.place_sampler(self.problem.sampler, self.mesh)
    self.args = (self.key, self.sampler)
    return self

  def __exit__(self, *exc):
    return self._mesh_ctx.__exit__(*exc)


def _one_budget(config, repeats) -> dict:
  """The overhead table at search.budget."""
  rows = {}
  for label, method, overrides in _rows(config):
    with _Program(config, method, overrides) as p:
      result, compile_s, wall_s, peak = runtime.timed(p.program, p.args, repeats)
      calls, rows_evaluated = _count_calls(p.program, p.sampler, p.key)
      batch = max(1, round(rows_evaluated / max(calls, 1)))
      raw, raw_args = _raw_evaluations(p.sampler, calls, batch)
      _, _, raw_s, _ = runtime.timed(raw, raw_args, repeats)
    nfe = int(result.nfe)
    row = {'nfe': nfe, 'nfe_evaluated': int(result.nfe_evaluated),
           'backbone_calls': calls, 'batch': batch, 'wall_s': wall_s,
           'us_per_nfe': 1e6 * wall_s / max(nfe, 1), 'compile_s': compile_s,
           'raw_eval_s': raw_s, 'overhead': wall_s / raw_s, 'devices': jax.device_count()}
    if peak is not None:
      row['peak_mib'] = peak / 2**20
    rows[label] = row
    logging.info('%s: %s NFE in %s (%.1f us/NFE, %.2fx the raw backbone calls), compiled in %s%s',
                 label, f'{nfe:,}', progress.duration(wall_s), row['us_per_nfe'],
                 row['overhead'], progress.duration(compile_s),
                 f", peak {row['peak_mib']:.1f} MiB" if 'peak_mib' in row else '')
  _add_ratio_to_bon(rows)
  return rows


def _add_ratio_to_bon(rows: dict) -> None:
  """vs_bon: a row's cost per NFE over best-of-N's (in the same run)."""
  if 'bon' in rows:
    for row in rows.values():
      row['vs_bon'] = row['us_per_nfe'] / rows['bon']['us_per_nfe']


def _scaling(config, repeats) -> dict:
  """label -> one entry per budget: nfe, wall_s (best of repeats), us_per_nfe, peak_mib."""
  out = {}
  for label, method, overrides in _rows(config):
    out[label] = []
    for budget in config.benchmark.budgets:
      with _Program(config, method, overrides, budget) as p:
        result, compile_s, wall_s, peak = runtime.timed(p.program, p.args, repeats)
      entry = {'budget': int(budget), 'nfe': int(result.nfe),
               'nfe_evaluated': int(result.nfe_evaluated), 'wall_s': wall_s,
               'us_per_nfe': 1e6 * wall_s / max(int(result.nfe), 1), 'compile_s': compile_s,
               'peak_mib': None if peak is None else peak / 2**20}
      logging.info('%s at %s NFE: %s (%.1f us/NFE), compiled in %s%s', label,
                   f'{int(budget):,}', progress.duration(wall_s), entry['us_per_nfe'],
                   progress.duration(compile_s),
                   '' if peak is None else f", peak {entry['peak_mib']:.1f} MiB")
      out[label].append(entry)
  return out


def scaling_figure(path: str, curves: dict, what: str) -> None:
  """Wall time against NFEs spent, one line per method (curves: scaling.json's content)."""
  summary = [dict(method=label, nfe=e['nfe'], wall_s=e['wall_s'])
             for label, entries in curves.items() for e in entries]
  plots.sweep_figure(path, summary, 'wall_s', 'nfe', 'method', logx=True, logy=True,
                     title=f'Search wall time against NFE ({what})',
                     statistic='the best of the repeated runs')


def _memory(config) -> dict:
  """label -> budget -> XLA's peak MiB of the compiled DTS rows (compiled, not run), beside the
  tree's own size (search/dts/config.py: memory_bytes)."""
  from search import dts  # pylint: disable=g-import-not-at-top
  out = {}
  for label, method, overrides in _rows(config):
    if method not in DTS_METHODS:
      continue
    out[label] = {}
    for budget in config.benchmark.memory_budgets:
      with _Program(config, method, overrides, budget) as p:
        compiled, _ = runtime.compile_timed(p.program, p.args)
        tree = dts.memory_bytes(p.method_config, p.problem.sampler.data_shape)
      peak = runtime.program_bytes(compiled)
      out[label][str(int(budget))] = {
          'peak_mib': None if peak is None else peak / 2**20, 'tree_mib': tree / 2**20,
          'nodes': p.method_config.capacity}
  return out


def run(config, workdir: str) -> dict:
  _check_before_training(config)
  os.makedirs(workdir, exist_ok=True)
  config = _ensure_backbone(config, workdir)
  files.claim_workdir(workdir, config)
  repeats = int(config.benchmark.repeats)
  flat = {}
  if config.benchmark.get('budgets'):
    curves = _scaling(config, repeats)
    files.write_json(os.path.join(workdir, 'scaling.json'), curves)
    table = scaling_markdown(curves)
    files.write_text(workdir, 'scaling.md', table + '\n')
    scaling_figure(os.path.join(workdir, 'scaling.png'), curves,
                   f'{_problem_name(config)}, best of {repeats}, {jax.device_count()} '
                   'device(s)')
    flat.update({f'{label}/{e["budget"]}/{k}': v for label, entries in curves.items()
                 for e in entries for k, v in e.items() if v is not None})
  else:
    rows = _one_budget(config, repeats)
    files.write_json(os.path.join(workdir, 'benchmark.json'), rows)
    table = markdown(rows)
    files.write_text(workdir, 'benchmark.md', table + '\n')
    flat.update({f'{label}/{k}': v for label, row in rows.items() for k, v in row.items()})
  if files.is_writer():
    print(table)
  if config.benchmark.get('memory_budgets'):
    memory = _memory(config)
    files.write_json(os.path.join(workdir, 'memory.json'), memory)
    mem_table = memory_markdown(memory)
    files.write_text(workdir, 'memory.md', mem_table + '\n')
    if files.is_writer():
      print(mem_table)
  files.write_metrics(workdir, flat)
  return flat


def _problem_name(config) -> str:
  return {'gmm': '2D analytic mixture', 'mlp': 'trained 2D MLP',
          'unet': 'digits U-Net'}.get(config.model.name, config.model.name) + (
              f', {config.sampler.num_steps} steps')


def markdown(rows: dict) -> str:
  cols = ('nfe', 'backbone_calls', 'batch', 'wall_s', 'us_per_nfe', 'vs_bon', 'raw_eval_s',
          'overhead', 'compile_s', 'peak_mib', 'devices')
  return tables.markdown(('method',) + cols, [[m] + [r.get(c) for c in cols]
                                              for m, r in rows.items()])


def scaling_markdown(curves: dict) -> str:
  """Wall seconds (and microseconds per NFE) per row and budget."""
  budgets = list(dict.fromkeys(e['budget'] for entries in curves.values() for e in entries))
  rows = []
  for label, entries in curves.items():
    by = {e['budget']: e for e in entries}
    cells = [f'{tables.number(by[b]["wall_s"])} s ({tables.number(by[b]["us_per_nfe"])} µs)'
             if b in by else '' for b in budgets]
    rows.append([label] + cells + [entries[-1]['us_per_nfe'] / entries[0]['us_per_nfe']])
  return tables.markdown(['method'] + [f'{b:.0e} NFE' for b in budgets]
                         + ['per-NFE cost, largest / smallest budget'], rows)


def memory_markdown(memory: dict) -> str:
  return tables.markdown(
      ['method', 'budget (NFE)', 'tree nodes', 'tree MiB', 'XLA peak MiB'],
      [[label, f'{int(budget):.0e}', m['nodes'], f'{m["tree_mib"]:.1f}', m['peak_mib']]
       for label, per_budget in memory.items() for budget, m in per_budget.items()])
