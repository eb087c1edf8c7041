"""A reward is one new file: a copy of rewards/linear.py under a new name, in a copy of the
project, with nothing else changed, runs from main.py (a comparison and a sweep, on an 8-device
mesh) and gives the linear reward's results exactly, its closed-form tilted target included,
which it declares."""

import json
import os

import pytest

from tests import project_copy

NAME = 'linear_copy'


@pytest.fixture(scope='module')
def project(tmp_path_factory):
  return project_copy.copy_with(tmp_path_factory, os.path.join('rewards', 'linear.py'), NAME)


_main = project_copy.main
_table = project_copy.table


def _metrics(path):
  with open(path) as f:
    return {k: v for k, v in json.load(f).items() if k not in ('wall_s', 'compile_s')}


@pytest.mark.slow  # 33 s of subprocess compilation; the registry itself is tested by default
def test_a_copied_reward_runs_everywhere(project, tmp_path):
  # main.py's compare on the 8-device mesh, against the same comparison on the linear reward:
  # the table and each method's metrics are the same, the closed-form target's energy
  # distance included.
  tables = {}
  for reward in ('linear', NAME):
    proc = _main(project, tmp_path / f'compare_{reward}', '--config=configs/gmm2d.py:quick',
                 '--config.compare.methods=("bon","dts")', f'--config.reward.name={reward}')
    assert proc.returncode == 0, proc.stderr[-3000:]
    tables[reward] = _table(tmp_path / f'compare_{reward}' / 'table.md')
  assert tables[NAME] == tables['linear']
  for method in ('bon', 'dts'):
    copy = _metrics(tmp_path / f'compare_{NAME}' / method / 'metrics.json')
    assert 'energy_distance' in copy
    assert copy == _metrics(tmp_path / 'compare_linear' / method / 'metrics.json')
  # A sweep whose task uses it.
  proc = _main(project, tmp_path / 'sweep', '--config=configs/figures/dts_2d.py:quick',
               '--config.sweep.method=("bon",)', '--config.sweep.task=("gmm",)',
               '--config.sweep.budget=(160,)',
               f'--config.sweep.presets.task.gmm.reward.name={NAME}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  point = tmp_path / 'sweep' / 'points' / 'task=gmm,method=bon,budget=160,seed=0'
  assert os.path.isfile(f'{point}.json')
  with open(point / 'config.json') as f:
    assert json.load(f)['reward']['name'] == NAME
