"""A search method is one new file: a copy of search/bon.py under a new name, in a copy of the
project, with nothing else changed, runs from main.py, in compare, in a sweep and on an
8-device mesh with its particle count checked against the devices."""

import os

import pytest

from tests import project_copy

NAME = 'bon_copy'


@pytest.fixture(scope='module')
def project(tmp_path_factory):
  return project_copy.copy_with(tmp_path_factory, os.path.join('search', 'bon.py'), NAME)


_main = project_copy.main


@pytest.mark.slow  # 25 s of subprocess compilation; the registry itself is tested by default
def test_a_copied_method_runs_everywhere(project, tmp_path):
  # main.py, as a config variant token (the variants list the discovered methods).
  proc = _main(project, tmp_path / 'search', f'--config=configs/gmm2d.py:quick,{NAME}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.isfile(tmp_path / 'search' / 'samples.npz')
  # compare: the copy gives bon's row exactly (same code, same seed).
  proc = _main(project, tmp_path / 'compare', '--config=configs/gmm2d.py:quick',
               f'--config.compare.methods=("bon","{NAME}")')
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = project_copy.table(tmp_path / 'compare' / 'table.md')
  assert rows[NAME][1:] == rows['bon'][1:]
  # A sweep over it.
  proc = _main(project, tmp_path / 'sweep', '--config=configs/fig_dts_2d.py:quick',
               f'--config.sweep.method=("{NAME}",)', '--config.sweep.task=("gmm",)',
               '--config.sweep.budget=(160,)')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert os.path.isfile(tmp_path / 'sweep' / 'points' / f'task=gmm,method={NAME},budget=160,'
                        'seed=0.json')
  # The mesh check applies to it: 100 NFE // 10 steps = 10 samples over 8 devices.
  proc = _main(project, tmp_path / 'bad', f'--config=configs/gmm2d.py:quick,{NAME}',
               '--config.search.budget=100')
  assert proc.returncode == 2
  assert f'{NAME} runs 10 samples (search.budget // sampler.num_steps), which do not divide ' \
         'over the 8 devices' in proc.stderr
