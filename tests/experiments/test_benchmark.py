"""The benchmark's plumbing at a tiny size (its numbers are for runs, not tests)."""

import json

import pytest

from configs import benchmark as benchmark_config
from experiments import benchmark



@pytest.mark.slow  # 18 s; the methods it times are each tested by default
def test_benchmark_quick(tmp_path):
  config = benchmark_config.get_config('quick')
  config.benchmark.methods = ('bon', 'dts')  # DTS with 8 rollouts in flight
  benchmark.run(config, str(tmp_path))
  rows = json.load(open(tmp_path / 'benchmark.json'))
  assert set(rows) == {'bon', 'dts_b8'}  # DTS once per dts_batches entry, labelled
  for row in rows.values():
    assert row['nfe'] <= config.search.budget
    assert row['batch'] == max(1, round(row['nfe_evaluated'] / row['backbone_calls']))
    assert row['overhead'] > 0 and row['wall_s'] > 0 and row['peak_mib'] > 0
    assert abs(row['vs_bon'] * rows['bon']['us_per_nfe'] - row['us_per_nfe']) < 1e-9
  assert rows['dts_b8']['batch'] == 8
  assert (tmp_path / 'benchmark.md').read_text().startswith('| method |')


@pytest.mark.slow  # 19 s; the default run covers the benchmark's rows and DTS batches above
def test_scaling_quick(tmp_path):
  """Wall time at each budget for every row, the log-log figure, and the DTS memory table."""
  config = benchmark_config.get_config('scaling,quick')
  benchmark.run(config, str(tmp_path))
  curves = json.load(open(tmp_path / 'scaling.json'))
  assert set(curves) == {'dts_b8'}
  for entries in curves.values():
    assert [e['budget'] for e in entries] == list(config.benchmark.budgets)
    assert all(0 < e['nfe'] <= e['budget'] and e['wall_s'] > 0 for e in entries)
  assert (tmp_path / 'scaling.png').stat().st_size > 0
  assert (tmp_path / 'scaling.md').read_text().count('\n') == 2 + len(curves)
  memory = json.load(open(tmp_path / 'memory.json'))
  assert set(memory) == {'dts_b8'}
  for per_budget in memory.values():
    m = per_budget['800']
    assert m['nodes'] > 1 and 0 < m['tree_mib'] and m['peak_mib'] >= m['tree_mib']
