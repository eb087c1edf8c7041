"""compare (experiments/compare.py): a method the budget cannot pay one step of is left out,
named with its reason under the table; a budget too small for every method is one error."""

import os

import pytest

import experiments
from configs import gmm2d


def test_a_method_the_budget_is_too_small_for_is_left_out_and_named(tmp_path):
  config = gmm2d.get_config('quick')
  config.search.budget = 100
  config.compare.methods = ('bon', 'evo')
  flat = experiments.get_experiment('compare')(config, str(tmp_path / 'compare'))
  assert 'bon/nfe' in flat and not any(k.startswith('evo/') for k in flat)
  table = open(tmp_path / 'compare' / 'table.md').read()
  assert ('Not run (the budget cannot pay for one step of them): search.budget=100 is too small '
          'for evo: it needs at least') in table
  assert not os.path.exists(tmp_path / 'compare' / 'evo')
  config.compare.methods = ('evo',)
  with pytest.raises(ValueError, match='the budget is too small for every method'):
    experiments.get_experiment('compare')(config, str(tmp_path / 'none'))
