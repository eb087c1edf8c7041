"""The benchmark's plumbing at a tiny size (its numbers are for runs, not tests)."""

import json

from configs import benchmark as benchmark_config
from experiments import benchmark


def test_benchmark_quick(tmp_path):
  config = benchmark_config.get_config('quick')
  config.benchmark.methods = ('bon', 'svdd')
  benchmark.run(config, str(tmp_path))
  rows = json.load(open(tmp_path / 'benchmark.json'))
  assert set(rows) == {'bon', 'svdd'}
  for row in rows.values():
    assert row['nfe'] <= config.search.budget
    assert row['batch'] == max(1, round(row['nfe_evaluated'] / row['backbone_calls']))
    assert row['overhead'] > 0 and row['wall_s'] > 0 and row['peak_mib'] > 0
  assert (tmp_path / 'benchmark.md').read_text().startswith('| method |')
