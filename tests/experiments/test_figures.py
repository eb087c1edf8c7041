"""The paper-figure sweeps: each figure config's quick variant end to end on tiny trained models,
and a sweep interrupted midway that resumes without recomputing its finished points."""

import copy
import csv
import importlib
import json
import os

import numpy as np
import pytest

from configs.figures import dts_2d
from configs import toy2d
from experiments import search as search_exp
from experiments import sweep
from experiments import train

FIGURES = (('rbf_interpolants', ''), ('rbf_interpolants', 'ablation'),
           ('rbf_budget', ''), ('dts_2d', ''), ('dts_digits', ''),
           ('dts_digits', 'even_odd'), ('dts_star', ''), ('dts_scale', ''),
           ('search_matters', ''), ('search_matters', 'interpolants'),
           ('search_matters', 'tune'), ('search_matters', 'dts_star'), ('dts_exact', ''),
           ('dts_2d_ddpm', ''))
# rbf_budget's quick grid (bon, rbf on digits) is search_matters' default quick grid's.
SLOW_VARIANTS = {('rbf_budget', ''), ('rbf_interpolants', 'ablation'), ('dts_digits', 'even_odd'),
                 ('dts_scale', ''), ('search_matters', 'interpolants'),
                 ('search_matters', 'tune'), ('dts_star', '')}
# dts_star's quick grid (bon, dts_star) is search_matters:dts_star's on digits cells.
# These tests check plumbing, not speed: XLA's optimisation passes only cost compile time.
pytestmark = pytest.mark.usefixtures('fast_compilation')


@pytest.fixture(scope='module')
def toy2d_tiny(tmp_path_factory):
  """Tiny eps-prediction MLPs trained on the ring and the checkerboard: on the VP interpolant,
  and on the DTS paper's discrete DDPM schedule (DATASET_ddpm)."""
  out = {}
  for dataset in ('ring', 'checkerboard'):
    out[dataset] = str(tmp_path_factory.mktemp(dataset))
    train.run(toy2d.get_config(f'{dataset},epsilon,quick'), out[dataset])
    out[f'{dataset}_ddpm'] = str(tmp_path_factory.mktemp(f'{dataset}_ddpm'))
    train.run(toy2d.get_config(f'{dataset},ddpm,quick'), out[f'{dataset}_ddpm'])
  return out


def _use_tiny_models(node, digits_tiny, toy2d_tiny) -> None:
  """Points every runs/digits/KIND and runs/toy2d/DATASET path of a config (its presets
  included) at the session's tiny models."""
  for key in list(node.keys()):
    value = node[key]
    if hasattr(value, 'keys'):
      _use_tiny_models(value, digits_tiny, toy2d_tiny)
    elif isinstance(value, str) and value.startswith(('runs/digits/', 'runs/toy2d/')):
      kind = value.split('/')[-1]
      node[key] = (digits_tiny if value.startswith('runs/digits/') else toy2d_tiny)[kind]


def _quick(name, variant, digits_tiny, toy2d_tiny):
  module = importlib.import_module(f'configs.figures.{name}')
  config = module.get_config(','.join(t for t in ('quick', variant) if t))
  _use_tiny_models(config, digits_tiny, toy2d_tiny)
  return config


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def _check_sweep_outputs(config, workdir):
  points = sweep.grid(config)
  rows = _read_csv(os.path.join(workdir, 'points.csv'))
  assert len(rows) == len(points)
  for row, point in zip(rows, points):
    assert int(row['nfe']) <= point.config.search.budget
    assert np.isfinite(float(row['reward_mean']))
    with open(os.path.join(workdir, 'points', point.name + '.json')) as f:
      assert json.load(f)['identity_sha256'] == point.digest
  # The summary is the per-group mean over seeds of the points.
  axes = [a for a, _ in points[0].values if a != 'seed']
  for entry in _read_csv(os.path.join(workdir, 'summary.csv')):
    members = [r for r in rows if all(r[a] == entry[a] for a in axes)]
    assert int(entry['num_seeds']) == len(members)
    values = [float(r['reward_mean']) for r in members]
    np.testing.assert_allclose(float(entry['reward_mean']), np.mean(values), rtol=1e-6)
    if len(values) > 1:  # Student's t half-width of the 95% interval of the mean
      t = {2: 12.706, 3: 4.303, 5: 2.776}[len(values)]
      np.testing.assert_allclose(float(entry['reward_mean_ci95']),
                                 t * np.std(values, ddof=1) / np.sqrt(len(values)), rtol=1e-3)
  with open(os.path.join(workdir, 'summary.md')) as f:
    summary = f.read()
  assert 'Command: `' in summary and 'Wall time' in summary
  assert ('95% confidence interval' in summary) == (len(config.sweep.seed) > 1)
  for metric in config.sweep.table_metrics:
    assert metric in summary, metric
  for metric in config.sweep.plot.metrics:
    assert os.path.getsize(os.path.join(workdir, f'{metric}.png')) > 1000, metric
  with open(os.path.join(workdir, 'sweep.json')) as f:
    assert json.load(f)['num_points'] == len(points)
  swept = {str(v) for p in points for _, v in p.values}
  if any({str(a), str(b)} <= swept for _, a, b, _ in config.sweep.get('paired', ())):
    assert '## Paired differences' in summary
    assert _read_csv(os.path.join(workdir, 'paired.csv'))
  return rows, summary


@pytest.mark.parametrize('name,variant', [
    pytest.param(n, v, marks=pytest.mark.slow) if (n, v) in SLOW_VARIANTS else (n, v)
    for n, v in FIGURES])
def test_figure_quick_variant_runs_end_to_end(name, variant, digits_tiny, toy2d_tiny,
                                              tmp_path):
  config = _quick(name, variant, digits_tiny, toy2d_tiny)
  sweep.run(config, str(tmp_path))
  rows, summary = _check_sweep_outputs(config, str(tmp_path))
  if name == 'dts_2d':  # every task has an exact tilted target to measure against
    assert {r['task'] for r in rows} == {'ring', 'checkerboard', 'gmm'}
    assert all(0 <= float(r['mmd']) < 2 for r in rows)
  elif name == 'dts_2d_ddpm':   # median-heuristic MMD, its square and their floors
    assert {r['task'] for r in rows} == {'ring', 'checkerboard'}
    for r in rows:
      assert float(r['mmd2_median_floor']) > 0 and float(r['mmd2_median']) > 0
      np.testing.assert_allclose(float(r['mmd_median']) ** 2, float(r['mmd2_median']), rtol=1e-5)
  elif name == 'search_matters':
    assert all(0 <= float(r['heldout_success']) <= 1 for r in rows)
    assert all(float(r['nfe_per_search']) <= float(r['nfe']) for r in rows)
  elif name == 'dts_exact':   # each class's draws against its exact component
    assert all(float(r['frechet_exact']) > 0 and float(r['frechet_exact_floor']) > 0
               for r in rows)
  elif config.reward.get('heldout_checkpoint'):
    assert all(0 <= float(r['heldout_accuracy']) <= 1 for r in rows)
  if config.reward.get('target_classes'):
    assert all(float(r['num_searches']) == len(config.reward.target_classes or (0,))
               * config.search.num_runs for r in rows)
  for a, b, metric, *_ in config.sweep.reach:
    if {a, b} <= set(config.sweep.method):
      assert f"{a} reaches {b}'s {metric}" in summary


def _small_sweep():
  """Four cheap points on the analytic mixture: bon and smc at one budget, two seeds."""
  config = dts_2d.get_config('quick')
  config.sweep.update(task=('gmm',), method=('bon', 'smc'), budget=(100,), seed=(0, 1))
  return config


def _without_timings(rows):
  timing = ('wall_s', 'compile_s')
  return [{k: v for k, v in r.items() if not k.startswith(timing)} for r in rows]


def test_interrupted_sweep_resumes_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
  config = _small_sweep()
  reference = str(tmp_path / 'reference')
  sweep.run(config, reference)

  calls = []
  real_execute = search_exp.execute

  def interrupted_after_two(cfg, workdir, *args, **kwargs):
    if len(calls) == 2:
      raise KeyboardInterrupt  # as if the user pressed Ctrl-C in the third point
    calls.append(os.path.basename(workdir))
    return real_execute(cfg, workdir, *args, **kwargs)

  resumed = str(tmp_path / 'resumed')
  monkeypatch.setattr(search_exp, 'execute', interrupted_after_two)
  with pytest.raises(KeyboardInterrupt):
    sweep.run(config, resumed)
  finished = sorted(f for f in os.listdir(os.path.join(resumed, 'points')) if f.endswith('.json'))
  assert finished == sorted(c + '.json' for c in calls)
  assert not os.path.exists(os.path.join(resumed, 'points.csv'))

  first_two = list(calls)
  monkeypatch.setattr(search_exp, 'execute',
                      lambda cfg, workdir, *a, **k: calls.append(os.path.basename(workdir))
                      or real_execute(cfg, workdir, *a, **k))
  sweep.run(config, resumed)
  assert calls[2:] == [p.name for p in sweep.grid(config) if p.name not in first_two]
  for name in ('points.csv', 'summary.csv'):
    assert (_without_timings(_read_csv(os.path.join(resumed, name)))
            == _without_timings(_read_csv(os.path.join(reference, name))))
  _check_sweep_outputs(config, resumed)

  # A third run recomputes nothing.
  sweep.run(config, resumed)
  assert len(calls) == len(sweep.grid(config))


def test_sweep_refuses_a_finished_point_made_with_another_config(tmp_path):
  config = _small_sweep()
  config.sweep.update(method=('bon',), seed=(0,))
  sweep.run(config, str(tmp_path))
  changed = copy.deepcopy(config)
  changed.reward.temperature = 2.0  # the base config: the workdir belongs to another run
  with pytest.raises(ValueError, match=r'holds another run .*reward.temperature: 1.0'):
    sweep.run(changed, str(tmp_path))
  changed = copy.deepcopy(config)   # a preset that changes the finished point's config
  changed.sweep.presets.task.gmm.reward.temperature = 2.0
  with pytest.raises(ValueError, match=r'another run than this sweep.s .*reward.temperature: '
                                       r'1.0 \(recorded\) -> 2.0 \(now\)'):
    sweep.run(changed, str(tmp_path))
  # The grid may grow: the finished point is reused, only the new seed runs.
  config.sweep.seed = (0, 1)
  calls = []
  original = search_exp.execute
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(search_exp, 'execute', lambda *a, **k: calls.append(1) or original(*a, **k))
    sweep.run(config, str(tmp_path))
  assert len(calls) == 1


def test_sweep_grid_errors_name_the_problem():
  config = _small_sweep()
  config.sweep.method = ('bon', 'nope')
  with pytest.raises(ValueError, match="sweep point .*method=nope.*Unknown search.method"):
    sweep.grid(config)
  config = _small_sweep()
  config.sweep.task = ('gmm', 'moon')
  with pytest.raises(ValueError, match="sweep.task value 'moon' names no preset; valid: checkerboard, gmm, ring"):
    sweep.grid(config)
  config = _small_sweep()
  config.sweep.presets.task.gmm.reward.colour = 'red'
  with pytest.raises(ValueError, match='sweep.presets.task.gmm.reward sets .colour.'):
    sweep.grid(config)
  config = _small_sweep()
  config.sweep.budget = (5,)
  with pytest.raises(ValueError, match='sweep point .*budget=5'):
    sweep.grid(config)
  config = _small_sweep()
  config.sweep.update(task=(), method=(), budget=(), seed=())
  with pytest.raises(ValueError, match='sweep has no axis'):
    sweep.grid(config)


def test_sweep_skip_leaves_out_matching_points_and_rejects_typos():
  config = _small_sweep()
  full = [p.name for p in sweep.grid(config)]
  config.sweep.skip = ('method=smc,seed=0',)
  kept = [p.name for p in sweep.grid(config)]
  assert [n for n in full if not ('method=smc' in n and 'seed=0' in n)] == kept != full
  config.sweep.skip = ('method=smk',)
  with pytest.raises(ValueError, match="sweep.skip rule 'method=smk'"):
    sweep.grid(config)


def test_a_rerun_into_the_recorded_folder_keeps_its_record_and_replot_redraws(tmp_path):
  """A sweep rerun that computes nothing keeps sweep.json's record of the machine and jax that
  computed the points; experiments.tools.replot redraws the figures from the folder's own
  config.json and summary.csv."""
  import json  # pylint: disable=g-import-not-at-top
  from experiments.tools import replot  # pylint: disable=g-import-not-at-top
  config = _small_sweep()
  workdir = str(tmp_path / 'sweep')
  sweep.run(config, workdir)
  record = os.path.join(workdir, 'sweep.json')
  with open(record) as f:
    kept = dict(json.load(f), jax='the version that computed the points')
  with open(record, 'w') as f:
    json.dump(kept, f)
  sweep.run(config, workdir)
  with open(record) as f:
    assert json.load(f)['jax'] == 'the version that computed the points'
  figure = os.path.join(workdir, 'mmd.png')
  os.remove(figure)
  assert 'mmd' in replot.replot(workdir) and os.path.getsize(figure) > 0


def test_sweep_figures_label_direction_and_keep_every_series_apart(tmp_path):
  """Axis labels in words with units and which way is better; 12 series, 12 distinct
  (colour, marker, line style); on a log axis an interval reaching zero is cut, not drawn
  below the axis, and the figure says so."""
  from experiments.evaluation import plots  # pylint: disable=g-import-not-at-top
  summary = [dict(method=f'm{i}', budget=b, mmd=0.01 * (i + 1) / b ** 0.5,
                  mmd_ci95=(0.05 if i == 0 else 0.001))
             for i in range(12) for b in (100, 1000)]
  fig = plots.sweep_figure(str(tmp_path / 'f.png'), summary, 'mmd', 'budget', 'method',
                           logx=True, logy=True, title='t')
  ax = fig.axes[0]
  assert ax.get_xlabel() == 'NFE budget (log scale)'
  assert 'lower is better' in ax.get_ylabel() and '95% CI' in ax.get_ylabel()
  lines = [c.lines[0] for c in ax.containers if c.get_label().startswith('m')]
  styles = {(l.get_color(), l.get_marker(), l.get_linestyle()) for l in lines}
  assert len(lines) == 12 and len(styles) == 12
  assert any('interval reaches zero' in t.get_text() for t in fig.texts)
  low = min(seg[:, 1].min() for c in ax.collections for seg in c.get_segments())
  assert low > 0   # no error bar runs off the log axis
  # A metric at or below zero (a log-probability reward) keeps a linear axis, drawn whole.
  summary = [dict(method='m', budget=b, reward_mean=-1.0 / b, reward_mean_ci95=0.1)
             for b in (100, 1000)]
  fig = plots.sweep_figure(str(tmp_path / 'g.png'), summary, 'reward_mean', 'budget',
                           'method', logx=True, logy=True, title='t')
  assert fig.axes[0].get_yscale() == 'linear' and fig.axes[0].get_xscale() == 'log'


def test_a_sweep_that_mixes_metric_definitions_says_so(tmp_path):
  """Points recorded before the per-search `diversity` (no metrics_version: 1) beside new ones
  (2): summary.md warns that those metrics do not compare."""
  import json  # pylint: disable=g-import-not-at-top
  config = _small_sweep()
  workdir = str(tmp_path / 'sweep')
  sweep.run(config, workdir)
  with open(os.path.join(workdir, 'summary.md')) as f:
    assert 'metric definitions' not in f.read()
  first = os.path.join(workdir, 'points', sweep.grid(config)[0].name + '.json')
  with open(first) as f:
    record = json.load(f)
  del record['metrics_version']
  with open(first, 'w') as f:
    json.dump(record, f)
  sweep.run(config, workdir)
  with open(os.path.join(workdir, 'summary.md')) as f:
    assert 'computed under metric definitions 1 and 2' in f.read()


def test_reach_on_paired_curves_has_an_interval_or_says_why_not():
  """Per seed: where a's curve reaches b's value at b's largest budget on that seed; the saving's
  geometric mean with a t-interval over the seeds, or a count when a seed never reaches."""
  rows = []
  for seed, (lo, hi, top) in enumerate(((1.0, 3.0, 2.0), (1.0, 5.0, 3.0), (2.0, 4.0, 3.0))):
    rows += [dict(method='a', budget=10, seed=seed, m=lo), dict(method='a', budget=100, seed=seed,
                                                                 m=hi),
             dict(method='b', budget=10, seed=seed, m=0.0), dict(method='b', budget=100,
                                                                 seed=seed, m=top)]
  line = sweep.paired_reach_line(rows, ['method', 'budget', 'seed'], 'a', 'b', 'm')
  # Log-interpolated reach per seed: 10^1.5, 10^1.5, 10^1.5 -> a saving of 10^0.5 each.
  assert "paired over 3 seeds: a reaches b's m at 100 NFE" in line
  assert 'with 3.2x less compute (geometric mean; 95% interval 3.2-3.2x)' in line
  rows[-1]['m'] = 9.0   # seed 2: a never reaches b's value
  line = sweep.paired_reach_line(rows, ['method', 'budget', 'seed'], 'a', 'b', 'm')
  assert 'in 2 of 3 seeds; the others not within the grid, so no interval' in line
  assert sweep.paired_reach_line(rows, ['method', 'budget'], 'a', 'b', 'm') == ''
  # A seed not run at b's largest budget has no target: it is left out, not paired lower.
  rows = [r for r in rows if not (r['seed'] == 2 and r['budget'] == 100)]
  line = sweep.paired_reach_line(rows, ['method', 'budget', 'seed'], 'a', 'b', 'm')
  assert 'paired over 2 seeds' in line and '3.2x less compute' in line
