"""`benchmark`: the cost of each search method beyond the physical cost of its NFEs.

For every method in benchmark.methods at one budget and particle count: compile time, the
wall time of the compiled search (best of benchmark.repeats), XLA's peak-memory estimate of
the compiled program (arguments + outputs + temporaries), and the overhead ratio

  wall time of the search / wall time of the same backbone evaluations run bare,

where "the same evaluations" is a lax.scan of as many backbone calls, at the method's own
mean batch size, as an uninstrumented counting pass of the search made. A ratio of 1 means the
search costs nothing beyond its NFEs. Writes benchmark.json and benchmark.md.
"""

import copy
import os
import time

from absl import logging
import jax
import jax.numpy as jnp

import rewards
import search as search_lib
from experiments import files
from experiments import mesh as mesh_lib
from experiments import search as search_exp
from experiments import train as train_exp
from models import backbone as backbone_lib
from samplers import sharding


def _ensure_backbone(config, workdir):
  """Trains the benchmark's MLP into DIR/backbone when model.checkpoint is empty."""
  if config.model.name != 'mlp' or config.model.checkpoint:
    return config
  train_dir = os.path.join(workdir, 'backbone')
  train_cfg = copy.deepcopy(config)
  train_cfg.experiment = 'train'
  logging.info('training the benchmark backbone into %s', train_dir)
  train_exp.run(train_cfg, train_dir)
  config = copy.deepcopy(config)
  config.model.checkpoint = train_dir
  return config


def _timed(fn, args, repeats):
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  memory = compiled.memory_analysis()
  peak = None
  if memory is not None:
    peak = int(memory.argument_size_in_bytes + memory.output_size_in_bytes
               + memory.temp_size_in_bytes)
  return compiled, compile_s, min(times), peak


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
  """Every method's config, the mesh and the reward, validated before a backbone is trained
  for them, so that a typo costs seconds, not a training run."""
  if not config.benchmark.methods:
    raise ValueError('benchmark.methods is empty.')
  if int(config.benchmark.repeats) < 1:
    raise ValueError(f'benchmark.repeats must be >= 1, got {config.benchmark.repeats}.')
  mesh = mesh_lib.make_mesh(config.mesh)
  for method in config.benchmark.methods:
    cfg = copy.deepcopy(config)
    cfg.search.method = method
    method_config = search_lib.make_config(cfg.search, float(cfg.reward.temperature),
                                           cfg.sampler.num_steps)
    mesh_lib.check_particles(method, method_config, mesh)
  if config.model.name == 'mlp' and not config.model.checkpoint:
    rewards.get_reward(config.reward, (int(config.data.dim),))


def run(config, workdir: str) -> dict:
  _check_before_training(config)
  os.makedirs(workdir, exist_ok=True)
  config = _ensure_backbone(config, workdir)
  files.claim_workdir(workdir, config)
  repeats = int(config.benchmark.repeats)
  rows, flat = {}, {}
  for method in config.benchmark.methods:
    cfg = copy.deepcopy(config)
    cfg.search.method = method
    problem, method_config, mesh = search_exp.prepare(cfg)
    run_fn = search_lib.get_method(method).run
    reward = problem.reward

    def program(key, sampler, run_fn=run_fn, method_config=method_config, reward=reward):
      return run_fn(key, sampler, reward, method_config)

    with jax.set_mesh(mesh):  # particles split over the mesh, as in a search run
      key = mesh_lib.place(jax.random.key(cfg.seed), mesh)
      sampler = mesh_lib.place_sampler(problem.sampler, mesh)
      args = (key, sampler)
      compiled, compile_s, wall_s, peak = _timed(program, args, repeats)
      result = compiled(*args)
      calls, rows_evaluated = _count_calls(program, sampler, key)
      batch = max(1, round(rows_evaluated / max(calls, 1)))
      raw, raw_args = _raw_evaluations(sampler, calls, batch)
      _, _, raw_s, _ = _timed(raw, raw_args, repeats)
    row = {'nfe': int(result.nfe), 'nfe_evaluated': int(result.nfe_evaluated),
           'backbone_calls': calls, 'batch': batch, 'wall_s': wall_s,
           'compile_s': compile_s, 'raw_eval_s': raw_s, 'overhead': wall_s / raw_s,
           'devices': jax.device_count()}
    if peak is not None:
      row['peak_mib'] = peak / 2**20
    rows[method] = row
    flat.update({f'{method}/{k}': v for k, v in row.items()})
    logging.info('%s: %s', method, row)

  files.write_json(os.path.join(workdir, 'benchmark.json'), rows)
  table = markdown(rows)
  files.write_text(workdir, 'benchmark.md', table + '\n')
  if files.is_writer():
    print(table)
  files.write_metrics(workdir, flat)
  return flat


def markdown(rows: dict) -> str:
  cols = ('nfe', 'backbone_calls', 'batch', 'wall_s', 'raw_eval_s', 'overhead', 'compile_s',
          'peak_mib', 'devices')
  lines = ['| method | ' + ' | '.join(cols) + ' |', '|---' * (len(cols) + 1) + '|']
  for method, r in rows.items():
    cells = [('' if r.get(c) is None else
              (f'{r[c]:d}' if isinstance(r[c], int) else f'{r[c]:.3g}')) for c in cols]
    lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


