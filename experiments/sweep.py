"""`sweep`: a grid of `search` runs from one config, resumable, aggregated to tables and figures.

The grid is the product of config.sweep's axes, in this order: task, sampler, method, budget,
seed (an empty axis is not swept), less the points that match a sweep.skip rule
('sampler=linear_sde,method=sop': every point with all of those values). A value of `method`, `budget` or `seed` sets search.method,
search.budget or seed; a value that names a preset (sweep.presets.AXIS.VALUE, a nested dict of
config overrides) applies that preset instead, so a `sampler` or `task` value can change any
field. Each point runs as a `search` experiment in DIR/points/NAME/ (its contract files), then
its record DIR/points/NAME.json (metrics, axis values, elapsed seconds, the point's identity:
the config fields its run reads, experiments/identity.py) is written atomically: an interrupted
sweep resumes where it stopped and never recomputes a finished point. A record of another run
(its identity differs from the point's) stops the sweep with an error naming the fields,
instead of being mixed into the aggregate.

DIR gets points.csv (one row per point), summary.csv and summary.md (the mean over seeds, the
sample standard deviation `_std` and the half-width `_ci95` of the 95% confidence interval of the
mean, Student's t with n - 1 degrees of freedom; the table shows mean ± that half-width), one
PNG per metric in sweep.plot.metrics, sweep.json (the command, the summed wall time of the
points, the machine), and metrics.json (the summary, flattened). sweep.paired lists paired
comparisons (a − b at the same seeds, with its 95% interval and a verdict that says only what
the interval supports), written to summary.md and paired.csv.

With sweep.prompts_per_point (text-to-image: the harness of configs/harness.py) a `prompts` axis
of prompt chunks ('0-8', '8-16', ...: config.prompt_rows) is added last: each chunk is a point
whose prompts are independent searches of one program, the problem (backbone, encoded prompts)
is built once and sliced per chunk, points.csv has one row per prompt, and the summary and the
paired differences pool the (prompt, seed) values (POOLED); summary.md adds a time-and-memory
table and grids/prompt_K.png one grid per prompt.
"""

import copy
import csv
import io
import itertools
import json
import os
import platform
import sys
import time
from typing import NamedTuple

from absl import logging
import jax
import ml_collections
import numpy as np
import scipy.stats
import tqdm

import search as search_lib
from experiments import files
from experiments.evaluation import tables
from experiments import identity as identity_lib
from experiments import mesh as mesh_lib
from experiments import problem as problem_lib
from experiments.evaluation import plots
from experiments import search as search_exp
from experiments import validation

AXES = ('task', 'sampler', 'method', 'budget', 'seed', 'prompts')
_FIELDS = {'method': ('search', 'method'), 'budget': ('search', 'budget'), 'seed': ('seed',),
           'prompts': ('prompt_rows',)}
# Axes whose values are pooled in the summary: each (seed, prompt) is one value of a metric.
POOLED = ('seed', 'prompt')
# Fields of `search` that the problem (not the method) depends on.
_PROBLEM_SEARCH_FIELDS = ('guidance', 'guidance_scale', 'num_runs')


class Point(NamedTuple):
  name: str                       # 'method=bon,budget=500,seed=0': the record's file name
  values: tuple                   # ((axis, value), ...) in AXES order
  config: ml_collections.ConfigDict
  identity: dict                  # the fields the point's run reads (experiments/identity.py)
  digest: str                     # sha256 of the identity


def grid(config) -> list:
  """The sweep's points, validated (config fields, presets, each method's budget) on the host."""
  sweep = config.sweep
  axes = [(axis, tuple(sweep.get(axis, ()))) for axis in AXES]
  axes = [(axis, values) for axis, values in axes if values and axis != 'prompts']
  per_point = int(sweep.get('prompts_per_point', 0))
  if per_point:
    axes.append(('prompts', prompt_chunks(config, per_point)))
  if not axes:
    raise ValueError(f'sweep has no axis with values; set some of sweep.{", sweep.".join(AXES)}.')
  for axis, values in axes:
    if len(set(map(str, values))) != len(values):
      raise ValueError(f'sweep.{axis} repeats a value: {values}.')
  base = ml_collections.ConfigDict(config.to_dict())
  for section in ('sweep', 'compare'):
    if section in base:
      del base[section]
  base.experiment = 'search'
  skips = [_skip_tokens(rule, dict(axes)) for rule in sweep.get('skip', ())]
  swept = [axis for axis, _ in axes]
  for spec in sweep.get('paired', ()):
    if len(spec) != 4 or spec[0] not in swept or spec[0] in ('seed', 'prompts'):
      raise ValueError(f'sweep.paired entry {tuple(spec)} is not (axis, a, b, metric) with a '
                       f'swept axis other than seed; axes: {", ".join(swept)}.')
  points = []
  for combo in itertools.product(*[[(axis, v) for v in values] for axis, values in axes]):
    if any(rule <= {f'{axis}={value}' for axis, value in combo} for rule in skips):
      continue
    cfg = copy.deepcopy(base)
    for axis, value in combo:
      _apply(cfg, axis, value, sweep.presets.get(axis, {}))
    name = ','.join(f'{axis}={value}' for axis, value in combo)
    try:
      validation.check_numbers(cfg)
      search_lib.make_config(cfg.search, float(cfg.reward.temperature), cfg.sampler.num_steps)
    except ValueError as e:
      raise ValueError(f'sweep point {name}: {e}') from None
    ident = identity_lib.identity(cfg)
    points.append(Point(name, tuple(combo), cfg, ident, identity_lib.digest(ident)))
  return points


def prompt_chunks(config, per_point: int) -> tuple:
  """sweep.prompts_per_point: the run's prompts (within config.prompt_rows) in consecutive
  chunks of per_point, as prompt_rows values ('0-4', '4-8', ...); each chunk is a point, so a
  sweep resumes per chunk (per prompt with 1)."""
  import models  # pylint: disable=g-import-not-at-top
  from experiments import problem as problem_lib  # pylint: disable=g-import-not-at-top
  if per_point < 0:
    raise ValueError(f'sweep.prompts_per_point must be >= 0, got {per_point}.')
  if not models.is_text_to_image(config.model):
    raise ValueError('sweep.prompts_per_point splits a text-to-image run\'s prompts; '
                     f'model {config.model.name!r} takes none.')
  start, stop = problem_lib.prompt_rows(config.get('prompt_rows', ''),
                                        len(models.read_prompts(config)))
  return tuple(f'{a}-{min(a + per_point, stop)}' for a in range(start, stop, per_point))


def _skip_tokens(rule: str, axes: dict) -> set:
  """A sweep.skip rule 'axis=value,axis=value' as a set of tokens, each checked against the grid
  (a rule that matches nothing is a typo, not a no-op)."""
  tokens = {t.strip() for t in str(rule).split(',') if t.strip()}
  for token in tokens:
    axis, _, value = token.partition('=')
    if axis not in axes or value not in map(str, axes[axis]):
      raise ValueError(f'sweep.skip rule {rule!r}: {token!r} is not an axis value of this grid.')
  return tokens


def _apply(cfg, axis, value, presets) -> None:
  if str(value) in presets:
    _merge(cfg, presets[str(value)].to_dict(), f'sweep.presets.{axis}.{value}')
  elif axis in _FIELDS:
    *parents, leaf = _FIELDS[axis]
    node = cfg
    for p in parents:
      node = node[p]
    node[leaf] = value
  else:
    raise ValueError(f'sweep.{axis} value {value!r} names no preset; valid: '
                     f'{", ".join(presets) or "(none defined)"}.')


def _merge(cfg, overrides: dict, where: str) -> None:
  """Recursively sets overrides into cfg; every key must already exist (typos fail loudly)."""
  for key, value in overrides.items():
    if key not in cfg:
      raise ValueError(f'{where} sets {key!r}, which the config does not have.')
    if isinstance(value, dict):
      _merge(cfg[key], value, f'{where}.{key}')
    else:
      cfg[key] = value


def _problem_key(cfg) -> str:
  """Points that share this key share one problem (backbone, sampler, reward), and so their
  compiled programs: the seed, method and budget are not part of it."""
  d = cfg.to_dict()
  d['search'] = {k: d['search'].get(k) for k in _PROBLEM_SEARCH_FIELDS}
  for k in ('seed', 'experiment', 'prompt_rows'):
    d.pop(k, None)
  return json.dumps(d, sort_keys=True, default=str)


def run(config, workdir: str) -> dict:
  points = grid(config)
  _check_chunks(config, points)
  # The grid may grow: the sweep section is no part of the sweep's identity.
  files.claim_workdir(workdir, config)
  records_dir = os.path.join(workdir, 'points')
  done = {p.name: _read_record(records_dir, p) for p in points}
  todo = [p for p in points if done[p.name] is None]
  problems = {}
  progress = tqdm.tqdm(total=len(points), initial=len(points) - len(todo), desc='sweep',
                       unit='point', disable=not files.is_writer(), file=sys.stderr)
  with progress:
    for point in todo:
      progress.set_postfix_str(point.name)
      start = time.perf_counter()
      key = _problem_key(point.config)
      if key not in problems:
        # One problem (backbone loaded, every prompt encoded) for all the points that share
        # it; a point of a prompt chunk searches its rows of it.
        whole = copy.deepcopy(point.config)
        if 'prompt_rows' in whole:
          whole.prompt_rows = config.get('prompt_rows', '')
        problems[key] = search_exp.prepare(whole, checks=False)
      problem, _, mesh = problems[key]
      if 'prompts' in dict(point.values):
        problem = problem_lib.select_prompts(
            problem, *problem_lib.prompt_rows(point.config.prompt_rows,
                                              int(problem.cond['prompt_index'][-1]) + 1))
      method_config = search_lib.make_config(point.config.search,
                                             float(point.config.reward.temperature),
                                             point.config.sampler.num_steps)
      mesh_lib.check_particles(point.config.search.method, method_config, mesh)
      mesh_lib.check_searches(problem.batch, mesh)
      search_exp.check_memory(point.config, problem, method_config, mesh)
      point_dir = os.path.join(records_dir, point.name)
      metrics, _ = search_exp.execute(point.config, point_dir, problem, method_config, mesh)
      record = {'point': point.name, 'values': dict(point.values), 'identity': point.identity,
                'identity_sha256': point.digest, 'elapsed_s': time.perf_counter() - start,
                'metrics_version': search_exp.METRICS_VERSION, 'metrics': metrics}
      if 'prompts' in dict(point.values):
        with open(os.path.join(point_dir, search_exp.PER_SEARCH)) as f:
          record['per_prompt'] = json.load(f)
      files.write_json(os.path.join(records_dir, point.name + '.json'), record)
      done[point.name] = record
      progress.update(1)
  return aggregate(config, workdir, points, [done[p.name] for p in points], bool(todo))


def _check_chunks(config, points) -> None:
  """Every prompt chunk must divide over the mesh's `searches` axis, checked before any point
  runs (not at the last chunk, hours in)."""
  if not any(axis == 'prompts' for axis, _ in points[0].values):
    return
  mesh = mesh_lib.make_mesh(config.mesh)
  for point in points:
    start, stop = problem_lib.prompt_rows(point.config.prompt_rows, 1 << 30)
    try:
      mesh_lib.check_searches(stop - start, mesh)
    except ValueError as e:
      raise ValueError(f'sweep point {point.name}: {e} (sweep.prompts_per_point and the number '
                       'of prompts set the chunks)') from None


def _read_record(records_dir: str, point: Point):
  """The finished point's record, or None; a record of another run stops the sweep, naming the
  fields that differ (experiments/identity.py)."""
  path = os.path.join(records_dir, point.name + '.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    record = json.load(f)
  if record.get('identity_sha256') == point.digest:
    return record
  if 'identity' not in record:
    raise ValueError(
        f'{path} was recorded before run identities; verify and re-key it once with '
        f'`python -m experiments.tools.migrate_records {os.path.dirname(records_dir)}`.')
  diffs = identity_lib.differences(record['identity'], point.identity)
  if diffs:
    raise ValueError(
        f'{path} holds a finished point of another run than this sweep\'s {point.name} '
        f'({identity_lib.summary(diffs)}); rerun with the config it was made with, or use '
        'another --workdir (finished points are never overwritten).')
  return record


def draw_figures(sweep, workdir: str, summary, metric_names) -> None:
  """One PNG per plotted metric (sweep.plot) from the summary rows. plot.subsets {name: series
  values}: one figure per subset, METRIC_NAME.png ('' : METRIC.png)."""
  subsets = _as_dict(sweep.plot.get('subsets', {})) or {'': ()}
  for metric in sweep.plot.metrics:
    if metric not in metric_names:
      continue
    for name, keep in subsets.items():
      rows = [e for e in summary if not keep or e[sweep.plot.series] in tuple(keep)]
      plots.sweep_figure(os.path.join(workdir, f'{metric}{"_" + name if name else ""}.png'),
                         rows, metric, x=sweep.plot.x, series=sweep.plot.series,
                         panel=sweep.plot.panel, logx=sweep.plot.logx,
                         logy=sweep.plot.get('logy', False), title=sweep.get('title', ''),
                         overlays=_as_dict(sweep.plot.get('overlays', {})).get(metric, {}))


def aggregate(config, workdir: str, points, records, computed_now: bool = True) -> dict:
  """points.csv, summary.csv, summary.md, figures, sweep.json and metrics.json from records.
  A sweep over prompt chunks (sweep.prompts_per_point) has one row per prompt of each point,
  and its summary pools the (prompt, seed) values; it also draws one grid per prompt."""
  axes = [axis for axis, _ in points[0].values]
  per_prompt = 'prompts' in axes
  if per_prompt:
    axes = [a for a in axes if a != 'prompts'] + ['prompt']
    rows = [row for r in records for row in per_prompt_rows(r)]
  else:
    rows = [{**r['metrics'], **r['values']} for r in records]
  metric_names = sorted({k for row in rows for k, v in row.items()
                         if isinstance(v, (int, float)) and k not in axes})
  rows = [{**{a: row.get(a) for a in axes}, **{m: row.get(m) for m in metric_names}}
          for row in rows]
  _write_csv(os.path.join(workdir, 'points.csv'), axes + metric_names, rows)

  group_axes = [a for a in axes if a not in POOLED]
  groups = {}
  for row in rows:
    groups.setdefault(tuple(row[a] for a in group_axes), []).append(row)
  summary = []
  for values, members in groups.items():
    entry = dict(zip(group_axes, values), num_seeds=len({str(r.get('seed')) for r in members}))
    if per_prompt:
      entry['num_prompts'] = len({r['prompt'] for r in members})
    for m in metric_names:
      vals = np.asarray([r[m] for r in members if r[m] is not None], np.float64)
      entry[m] = float(vals.mean()) if vals.size else None
      entry[m + '_std'] = float(vals.std(ddof=1)) if vals.size > 1 else None
      entry[m + '_ci95'] = ci95_half_width(vals)
    summary.append(entry)
  columns = group_axes + ['num_seeds'] + (['num_prompts'] if per_prompt else []) + [
      c for m in metric_names for c in (m, m + '_std', m + '_ci95')]
  _write_csv(os.path.join(workdir, 'summary.csv'), columns, summary)

  sweep = config.sweep
  shown = [m for m in sweep.table_metrics if m in metric_names]
  elapsed = float(sum(r['elapsed_s'] for r in records))
  lines = [f'# {sweep.title}' if sweep.get('title') else '# sweep', '',
           f'Command: `{command_line()}`', '',
           f'Wall time (sum over the {len(records)} points, compilation included): '
           f'{elapsed:.0f} s on {machine()}.', '',
           markdown_summary(summary, group_axes, shown), '',
           ci_note(summary, per_prompt)]
  if per_prompt:
    lines += ['', '## Time and memory', '', resource_table(records, group_axes), '',
              'Program memory: the search program\'s arguments, outputs and temporaries per '
              'device, from the compiler (experiments/runtime.py); peak device memory: the '
              'device\'s own peak in the sweep\'s process so far (GPU and TPU; – on a CPU).']
  versions = sorted({r.get('metrics_version', 1) for r in records})
  if len(versions) > 1:
    note = (f'Warning: the points were computed under metric definitions '
            f'{" and ".join(map(str, versions))} (experiments/search.py: METRICS_VERSION); '
            '`diversity` and `reward_max` of points of different versions do not compare. '
            'Recompute the older points in a fresh workdir to compare them.')
    logging.warning(note)
    lines += ['', note]
  for a, b, metric, *lower in [tuple(x) for x in sweep.get('reach', ())]:
    lines += ['', reach_line(summary, group_axes, a, b, metric, lower == ['lower'])]
    paired_reach = '' if per_prompt else paired_reach_line(rows, axes, a, b, metric,
                                                           lower == ['lower'])
    lines += [paired_reach] if paired_reach else []
  paired = paired_differences(rows, axes, [tuple(x) for x in sweep.get('paired', ())])
  if paired:
    lines += ['', '## Paired differences', '',
              f'a − b over the {"(prompt, seed) pairs" if per_prompt else "seeds"} both have '
              '(the same ones, every other axis equal): mean ± '
              'the half-width of its 95% interval (Student\'s t). "a higher" or "b higher" '
              'only where the interval excludes 0; otherwise "no measurable difference".', '',
              markdown_paired(paired, 'pairs' if per_prompt else 'seeds')]
    columns = list(dict.fromkeys(k for e in paired for k in e))
    _write_csv(os.path.join(workdir, 'paired.csv'), columns, paired)
  files.write_text(workdir, 'summary.md', '\n'.join(lines) + '\n')
  draw_figures(sweep, workdir, summary, metric_names)
  if per_prompt:
    prompt_grids(workdir, points, records, group_axes)
  # Where every point was computed by an earlier run, its record of the machine and jax stays.
  if computed_now or not os.path.isfile(os.path.join(workdir, 'sweep.json')):
    files.write_json(os.path.join(workdir, 'sweep.json'), {
        'command': command_line(), 'elapsed_s': elapsed, 'num_points': len(records),
        'machine': machine(), 'jax': jax.__version__, 'devices': jax.device_count()})
  flat = {}
  for entry in summary:
    prefix = '/'.join(f'{a}={entry[a]}' for a in group_axes)
    flat.update({f'{prefix}/{m}': entry[m] for m in shown if entry.get(m) is not None})
  files.write_metrics(workdir, flat)
  if files.is_writer():
    print('\n'.join(lines[6:]))
  return flat


def paired_differences(rows, axes, specs) -> list:
  """For each (axis, a, b, metric): per value of the other axes (seed and prompt aside), the
  seeds (or (prompt, seed) pairs) where both a and b have the metric, and the mean, 95%
  half-width and verdict of a - b; num_seeds counts those pairs."""
  out = []
  pooled = [x for x in POOLED if x in axes] or ['seed']
  for axis, a, b, metric in specs:
    others = [x for x in axes if x != axis and x not in POOLED]
    sides = {}
    for row in rows:
      if str(row[axis]) in (str(a), str(b)) and row.get(metric) is not None:
        key = tuple(row[x] for x in others)
        unit = tuple(row.get(x) for x in pooled)
        sides.setdefault(key, {}).setdefault(str(row[axis]), {})[unit] = row[metric]
    for key, by_side in sides.items():
      va, vb = by_side.get(str(a), {}), by_side.get(str(b), {})
      seeds = sorted(set(va) & set(vb), key=str)
      if not seeds:
        continue
      diffs = np.asarray([va[s] - vb[s] for s in seeds], np.float64)
      half = ci95_half_width(diffs)
      mean = float(diffs.mean())
      if half is None:
        verdict = 'one seed: no interval'
      elif mean - half > 0:
        verdict = f'{a} higher'
      elif mean + half < 0:
        verdict = f'{b} higher'
      else:
        verdict = 'no measurable difference'
      out.append(dict(dict(zip(others, key)), axis=axis, a=a, b=b, metric=metric,
                      num_seeds=len(seeds), difference=mean, ci95=half, verdict=verdict))
  return out


_PAIRED_FIELDS = ('axis', 'a', 'b', 'metric', 'num_seeds', 'difference', 'ci95', 'verdict')


def markdown_paired(entries, unit: str = 'seeds') -> str:
  """One table per compared axis; `unit` heads the count column."""
  out = []
  for axis in dict.fromkeys(e['axis'] for e in entries):
    rows = [e for e in entries if e['axis'] == axis]
    others = [k for k in rows[0] if k not in _PAIRED_FIELDS]
    out.append(tables.markdown(
        [f'{axis}: a − b'] + others + ['metric', unit, 'difference', 'verdict'],
        [[f'{e["a"]} − {e["b"]}'] + [str(e[o]) for o in others]
         + [e['metric'], str(e['num_seeds']), tables.difference(e['difference'], e['ci95']),
            e['verdict']] for e in rows]))
  return '\n\n'.join(out)


def _write_csv(path: str, columns, rows) -> None:
  text = io.StringIO()
  writer = csv.DictWriter(text, fieldnames=columns, extrasaction='ignore', lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  files.write_text(os.path.dirname(path), os.path.basename(path), text.getvalue())


def ci95_half_width(values):
  """t_{0.975, n-1} s / sqrt(n): the half-width of the 95% confidence interval of the mean of
  n >= 2 values (None for fewer)."""
  values = np.asarray(values, np.float64)
  if values.size < 2:
    return None
  return ci95_from_std(values.std(ddof=1), values.size)


def ci95_from_std(std: float, n: int) -> float:
  """The same half-width from a sample standard deviation over n >= 2 values."""
  return float(scipy.stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))


def ci_note(summary, per_prompt: bool = False) -> str:
  if per_prompt:
    sizes = sorted({(e['num_prompts'], e['num_seeds']) for e in summary})
    return ('Mean ± half-width of the 95% confidence interval of the mean over ' +
            ' / '.join(f'{p} prompts × {s} seeds' for p, s in sizes) +
            ' (each (prompt, seed) one value; Student\'s t).')
  seeds = sorted({e['num_seeds'] for e in summary})
  if max(seeds) < 2:
    return 'One seed per point: no interval.'
  return (f'Mean ± half-width of the 95% confidence interval of the mean over '
          f'{"/".join(map(str, seeds))} seeds (Student\'s t; figures draw the same intervals).')


def per_prompt_rows(record) -> list:
  """A prompt-chunk point's rows, one per prompt: its axis values (the chunk aside), `prompt`
  (the prompt's index in the run's list), the search's own metrics (per_search.json:
  experiments/search.py) and wall_s_per_prompt (the point's wall time shared out). Compile
  time and memory are the point's: resource_table."""
  values = {k: v for k, v in record['values'].items() if k != 'prompts'}
  per = record.get('per_prompt')
  if per is None:
    raise ValueError(f'sweep point {record["point"]} has no per-prompt metrics; it was recorded '
                     'by a sweep without prompt chunks. Use another --workdir.')
  n = len(per['prompt_index'])
  metrics = record['metrics']
  shared = {}
  if 'wall_s' in metrics:
    shared['wall_s_per_prompt'] = metrics['wall_s'] / n
  out = []
  for i in range(n):
    row = dict(values, prompt=int(per['prompt_index'][i]), **shared)
    row.update({k: v[i] for k, v in per.items() if k not in ('prompt_index', 'prompt')})
    out.append(row)
  return out


def resource_table(records, group_axes) -> str:
  """Per group (method): the points' summed wall time, the longest compile (a method's first
  chunk compiles; later chunks of the same shapes reuse it) and the largest program and peak
  memory."""
  groups = {}
  for r in records:
    groups.setdefault(tuple(str(r['values'][a]) for a in group_axes), []).append(r['metrics'])
  def top(ms, key, fmt):
    vals = [m[key] for m in ms if m.get(key) is not None]
    return fmt.format(max(vals)) if vals else '–'
  rows = [list(key) + [str(len(ms)), f'{sum(m.get("wall_s", 0.0) for m in ms):.1f}',
                       top(ms, 'compile_s', '{:.1f}'), top(ms, 'program_memory_gib', '{:.3g}'),
                       top(ms, 'peak_memory_gib', '{:.3g}')] for key, ms in groups.items()]
  return tables.markdown(list(group_axes) + [
      'points', 'search wall time (s, sum)', 'compile (s, longest)',
      'program memory (GiB per device, largest)', 'peak device memory (GiB)'], rows)


def prompt_grids(workdir: str, points, records, group_axes) -> None:
  """DIR/grids/prompt_K.png per prompt K: one row per method (each group of the other axes),
  one column per seed, each image the search's best output for that prompt, captioned with
  its searched reward; from the points' samples.npz (points whose files are gone are left
  out)."""
  by_prompt = {}
  for point, record in zip(points, records):
    path = os.path.join(workdir, 'points', point.name, 'samples.npz')
    if not os.path.isfile(path):
      continue
    with np.load(path) as data:
      images, reward, index = data['images'], data['reward'], data['prompt_index']
    group = ', '.join(str(record['values'][a]) for a in group_axes)
    seed = record['values'].get('seed', '')
    for k in np.unique(index):
      rows = np.flatnonzero(index == k)
      best = rows[np.argmax(np.where(np.isfinite(reward[rows]), reward[rows], -np.inf))]
      by_prompt.setdefault(int(k), {}).setdefault(group, {})[seed] = (images[best],
                                                                      float(reward[best]))
  texts = {}
  for record in records:
    per = record.get('per_prompt') or {}
    texts.update(zip(per.get('prompt_index', ()), per.get('prompt', ())))
  for k, groups in sorted(by_prompt.items()):
    seeds = sorted({s for g in groups.values() for s in g}, key=str)
    images, captions = [], []
    for group, cells in groups.items():
      for seed in seeds:
        if seed in cells:
          image, r = cells[seed]
          images.append(image)
          captions.append(f'{group} s{seed}: {r:.3f}')
        else:
          images.append(np.full_like(next(iter(cells.values()))[0], 255))
          captions.append(f'{group} s{seed}: -')
    os.makedirs(os.path.join(workdir, 'grids'), exist_ok=True)
    plots.save_rgb_grid(
        os.path.join(workdir, 'grids', f'prompt_{k:03d}.png'), np.stack(images),
        columns=len(seeds), captions=captions,
        title=f'"{texts.get(k, k)}": one row per {" / ".join(group_axes)} '
              f'({", ".join(groups)}), one column per seed; the best output of each search '
              'and its searched reward')


def _as_dict(node):
  return node.to_dict() if hasattr(node, 'to_dict') else dict(node)


def markdown_summary(summary, group_axes, metrics) -> str:
  return tables.markdown(group_axes + list(metrics), [
      [str(e[a]) for a in group_axes] + [tables.mean_ci(e.get(m), e.get(m + '_ci95'))
                                         for m in metrics] for e in summary])


def reach_line(summary, group_axes, a: str, b: str, metric: str, lower: bool = False) -> str:
  """Where method a's mean `metric` first reaches method b's value at b's largest budget
  (interpolated linearly in log budget), per task and sampler; `lower`: lower is better."""
  out = []
  others = [x for x in group_axes if x not in ('method', 'budget')]
  for key in sorted({tuple(e[x] for x in others) for e in summary}):
    rows = [e for e in summary if tuple(e[x] for x in others) == key]
    curve_a = sorted((e['budget'], e[metric]) for e in rows if e['method'] == a)
    curve_b = sorted((e['budget'], e[metric]) for e in rows if e['method'] == b)
    label = ','.join(map(str, key)) or 'all'
    if not curve_a or not curve_b:
      continue
    top_budget, target = curve_b[-1]
    sign = -1.0 if lower else 1.0
    at = reach_budget([(n, sign * v) for n, v in curve_a], sign * target)
    where = (f'at about {at:.0f} NFE ({top_budget / at:.1f}x less compute)' if at is not None
             else 'not within the grid')
    out.append(f'{label}: {a} reaches {b}\'s {metric} at {top_budget} NFE ({target:.4g}) {where}.')
  return '\n'.join(f'- {line}' for line in out)


def paired_reach_line(rows, axes, a: str, b: str, metric: str, lower: bool = False) -> str:
  """reach_line on paired curves: per seed run at b's largest budget, the budget where a's
  curve reaches b's value there on the same seed, and the compute saved (b's budget over it):
  its geometric mean over the seeds with a 95% interval (Student's t on the log ratios). A seed
  whose curve does not reach its target within the grid leaves no interval (the mean of the
  others would be biased), only the count; one that reaches it at the grid's first budget
  counts there (its saving is at least that)."""
  out = []
  if not {'method', 'budget', 'seed'} <= set(axes):
    return ''
  others = [x for x in axes if x not in ('method', 'budget', 'seed')]
  sign = -1.0 if lower else 1.0
  for key in sorted({tuple(r[x] for x in others) for r in rows}, key=str):
    mine = [r for r in rows if tuple(r[x] for x in others) == key and r.get(metric) is not None]
    curves = {}
    for r in mine:
      if str(r['method']) in (str(a), str(b)):
        curves.setdefault(str(r['seed']), {}).setdefault(str(r['method']), []).append(
            (float(r['budget']), sign * float(r[metric])))
    ratios, missed = [], 0
    top = max((n for c in curves.values() for n, _ in c.get(str(b), ())), default=None)
    for by_method in curves.values():
      tops = [v for n, v in by_method.get(str(b), ()) if n == top]
      if str(a) not in by_method or not tops:
        continue   # a seed without b's largest budget has no target
      target, top_budget = tops[0], top
      at = reach_budget(sorted(by_method[str(a)]), target)
      if at is None:
        missed += 1
      else:
        ratios.append(top_budget / at)
    n = len(ratios) + missed
    if n < 2:
      continue
    label = ','.join(map(str, key)) or 'all'
    head = (f'{label}, paired over {n} seeds: {a} reaches {b}\'s {metric} at {top:.0f} NFE '
            '(each seed\'s own value)')
    if missed:
      out.append(f'{head} in {len(ratios)} of {n} seeds; the others not within the grid, so '
                 'no interval.')
      continue
    logs = np.log(np.asarray(ratios))
    half = ci95_half_width(logs)
    mean = float(logs.mean())
    out.append(f'{head} with {np.exp(mean):.2g}x less compute (geometric mean; 95% interval '
               f'{np.exp(mean - half):.2g}-{np.exp(mean + half):.2g}x).')
  return '\n'.join(f'- {line}' for line in out)


def reach_budget(curve, target):
  """The smallest budget where a curve [(budget, value)] reaches target, log-interpolated."""
  for i, (budget, value) in enumerate(curve):
    if value >= target:
      if i == 0:
        return float(budget)
      (b0, v0), (b1, v1) = curve[i - 1], (budget, value)
      frac = (target - v0) / (v1 - v0)
      return float(np.exp(np.log(b0) + frac * (np.log(b1) - np.log(b0))))
  return None


def command_line() -> str:
  return ' '.join(['python', os.path.basename(sys.argv[0])] + sys.argv[1:])


def machine() -> str:
  return f'{platform.machine()}, {os.cpu_count()} CPU cores, {jax.devices()[0].platform}'
