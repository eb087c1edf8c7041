"""samplers/ground/progress.py: a running search reports its share of the budget, elapsed time
and ETA from the host, per level (or per percent of a tree search's budget); with progress off
(library calls, tests, the benchmark) the compiled program holds no callback at all."""

import re

import jax
import pytest

import experiments
from configs import gmm2d
from samplers.ground import progress

LINE = re.compile(r'^search (\w+): \[[#.]{20}\] +([0-9.]+)% of ([0-9,]+) (NFE|levels), '
                  r'.* elapsed, ETA .*$', re.M)


@pytest.fixture
def reporting(monkeypatch):
  monkeypatch.setattr(progress, 'AFTER', 0.0)
  monkeypatch.setattr(progress, 'INTERVAL', 0.0)
  monkeypatch.setattr(progress, 'WORK', 0.0)   # report the toy runs too
  progress.enable()
  jax.clear_caches()   # programs traced without ticks must not be reused
  yield
  progress.enable(False)
  jax.clear_caches()


# Reports per run, from the M levels: one per level after the first (bon: every level of its
# scan); DTS: at most one per percent of the budget.
@pytest.mark.parametrize('method,unit,reports', [('smc', 'NFE', -1), ('bon', 'NFE', 0),
                                                 ('rbf', 'levels', -1), ('dts', 'NFE', None)])
def test_a_search_reports_its_progress_to_the_end(method, unit, reports, reporting, tmp_path,
                                                  capfd):
  del reporting
  config = gmm2d.get_config(f'quick,{method}')
  experiments.get_experiment('search')(config, str(tmp_path))
  lines = LINE.findall(capfd.readouterr().err)
  assert lines and all(m == method and u == unit for m, _, _, u in lines)
  shares = [float(share) for _, share, _, _ in lines]
  # DTS stops when the next rollout would overrun the budget, a little short of it.
  assert shares == sorted(shares) and shares[-1] >= (95.0 if method == 'dts' else 100.0)
  if reports is not None:
    assert len(lines) == config.sampler.num_steps + reports
  else:
    assert 10 <= len(lines) <= config.search.budget // (config.search.budget // 100) + 1


def test_without_progress_the_program_has_no_callback():
  from experiments import search as search_exp  # pylint: disable=g-import-not-at-top
  config = gmm2d.get_config('quick,smc')
  problem, method_config, mesh = search_exp.prepare(config)
  del mesh
  program = search_exp._program('smc', method_config, False)  # pylint: disable=protected-access
  key = jax.random.key(0)
  jaxpr = str(jax.make_jaxpr(program)(key, problem.sampler, problem.reward, problem.cond))
  assert 'callback' not in jaxpr
  progress.enable()
  jax.clear_caches()   # inner jitted functions keep their traces otherwise
  try:
    jaxpr = str(jax.make_jaxpr(program)(key, problem.sampler, problem.reward, problem.cond))
  finally:
    progress.enable(False)
    jax.clear_caches()
  assert 'callback' in jaxpr


def test_durations_read_as_a_person_writes_them():
  assert [progress.duration(s) for s in (0.004, 0.65, 42.4, 185, 7620, float('nan'))] == [
      '0 s', '0.65 s', '42 s', '3 min 05 s', '2 h 07 min', '?']


def test_small_programs_are_traced_without_ticks(monkeypatch):
  """for_work: a run whose backbone work (parameters x NFEs) is below WORK gets no callback
  (the 2D main job: 15 parameters x 12,800 NFEs), one above it does; never without enable()."""
  progress.enable()
  try:
    progress.for_work(15, 12_800)
    assert not progress.enabled()
    progress.for_work(900_000_000, 500)
    assert progress.enabled()
  finally:
    progress.enable(False)
  progress.for_work(900_000_000, 500)
  assert not progress.enabled()
