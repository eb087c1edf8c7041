"""The docs' tables equal the result files they cite (experiments/tools/docs_tables.py), and
every table of docs/results.md names its file."""

import os

from experiments.tools import docs_tables
from tests.conftest import ROOT

PAGES = ('docs/results.md',)


def test_every_table_equals_the_file_it_cites():
  for page in PAGES:
    problems = docs_tables.check(os.path.join(ROOT, page))
    assert not problems, '\n'.join(f'{page}:{line}: {spec}: {what}'
                                   for line, spec, what in problems)


def test_a_drifted_table_is_caught_and_rewritten(tmp_path):
  """A number changed by hand in a copied table fails the check, and --write restores it."""
  (tmp_path / 'results').mkdir()
  (tmp_path / 'results' / 'summary.csv').write_text(
      'method,budget,num_seeds,mmd,mmd_std,mmd_ci95\n'
      'bon,1000,5,0.0123,0.001,0.0012\nbon,10000,5,0.00456,0.0004,0.0005\n')
  page = tmp_path / 'page.md'
  page.write_text('Text.\n\n<!-- table: results/summary.csv pivot rows=method cols=budget '
                  'value=mmd -->\n| method | 1,000 | 10,000 NFE |\n|---|---|---|\n'
                  '| bon | 0.013 ± 0.001 | 0.0046 ± 0.0005 |\n\n| a |\n|---|\n')
  problems = docs_tables.check(str(page), root=str(tmp_path))
  assert [p[2] for p in problems] == ['differs from its file', 'no <!-- table: ... --> marker above it']
  docs_tables.check(str(page), write=True, root=str(tmp_path))
  assert '| bon | 0.012 ± 0.001 | 0.0046 ± 0.0005 |' in page.read_text()
  assert [p[2] for p in docs_tables.check(str(page), root=str(tmp_path))] == [
      'no <!-- table: ... --> marker above it']


def test_runs_table_collects_the_metrics_of_separate_runs(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  from experiments.tools import runs_table  # pylint: disable=g-import-not-at-top
  for name, frechet in (('flow_ode', 56.25), ('eps_sde', 77.3)):
    (tmp_path / name).mkdir()
    (tmp_path / name / 'metrics.json').write_text(json.dumps({'frechet': frechet, 'nfe': 10}))
  text = runs_table.table([str(tmp_path / 'flow_ode'), str(tmp_path / 'eps_sde')],
                          ['frechet', 'nfe'])
  assert text.splitlines() == ['| run | frechet | nfe |', '|---|---|---|',
                               '| flow_ode | 56.25 | 10 |', '| eps_sde | 77.3 | 10 |']
