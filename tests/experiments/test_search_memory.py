"""Sizes that cannot fit are refused before anything compiles, naming the bytes needed and the
memory there is (experiments/search_memory.py): every method, from its declaration."""

import os
import subprocess
import sys

import pytest

import search
from configs import common as config_common
from experiments import search_memory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 2 ** 20


@pytest.mark.parametrize('method', search.METHODS)
def test_every_method_is_refused_when_its_arrays_cannot_fit(method, monkeypatch):
  monkeypatch.setattr(search_memory, 'device_memory', lambda: (2 * MIB, 'a 2 MiB test device'))
  # ses holds one population at a time, whatever the budget, and psi's particles come from its
  # chains: large ones here.
  cfg = config_common.search_config(method=method, budget=10_000_000, num_particles=32768,
                                    branch_every=10, ses_popsize=32768, psi_chains=32768)
  config = search.make_config(cfg, 1.0, 50)
  need = search_memory.search_bytes(method, config, (2,), config_common.reward_config())
  assert need > MIB
  with pytest.raises(ValueError, match=rf'{method} at search.budget=10000000 needs about '
                                       r'[\d.]+ GiB per device .*2 MiB test device'):
    search_memory.check(method, config, (2,), config_common.reward_config())
  # Split over devices, each holds its share (methods whose particles shard).
  if search.get_method(method).particle_field and method not in ('dts', 'dts_star'):
    monkeypatch.setattr(search_memory, 'device_memory', lambda: (3 * need, 'a roomier device'))
    search_memory.check(method, config, (2,), config_common.reward_config(),
                        particle_devices=2)


def test_batched_searches_multiply_what_one_needs(monkeypatch):
  """Vmapped searches hold their arrays at once; DTS's run one after another (search/base.py:
  Method.sequential_searches), so a batch of them needs one tree."""
  cfg = config_common.search_config(method='smc', budget=100_000, num_particles=4096)
  config = search.make_config(cfg, 1.0, 50)
  one = search_memory.search_bytes('smc', config, (2,), config_common.reward_config())
  monkeypatch.setattr(search_memory, 'device_memory', lambda: (4 * one, 'a small device'))
  search_memory.check('smc', config, (2,), config_common.reward_config(), batch=1)
  with pytest.raises(ValueError, match='small device'):
    search_memory.check('smc', config, (2,), config_common.reward_config(), batch=64)
  cfg = config_common.search_config(method='dts', budget=100_000, branch_every=10)
  config = search.make_config(cfg, 1.0, 50)
  one = search_memory.search_bytes('dts', config, (2,), config_common.reward_config())
  monkeypatch.setattr(search_memory, 'device_memory', lambda: (4 * one, 'a small device'))
  search_memory.check('dts', config, (2,), config_common.reward_config(), batch=64)
  monkeypatch.setattr(search_memory, 'device_memory', lambda: (one, 'a tiny device'))
  with pytest.raises(ValueError, match='tiny device'):
    search_memory.check('dts', config, (2,), config_common.reward_config(), batch=1)


@pytest.mark.parametrize('flags,message', [
    (('--config=configs/gmm2d.py:quick,tempered_smc', '--config.search.budget=2000000000'),
     r'tempered_smc at search.budget=2000000000 needs about [\d.]+ GiB per device for its own '
     r'arrays \(200000000 rows of \(2,\) at once\), more than half of the [\d.]+ GiB of'),
    (('--config=configs/gmm2d.py:quick,smc', '--config.reward.name=mode_weighting',
      '--config.reward.num_modes=2000000000'),
     r'reward.num_modes=2000000000 needs 74.51 GiB of host memory'),
    (('--config=configs/gmm2d.py:quick,smc', '--config.reward.name=mode_weighting',
      '--config.reward.num_modes=1000000', '--config.search.budget=20000000'),
     r'smc at search.budget=20000000 needs about'),
])
def test_main_refuses_what_cannot_fit_in_one_line_before_compiling(tmp_path, flags, message):
  proc = subprocess.run([sys.executable, 'main.py', f'--workdir={tmp_path / "run"}', *flags],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and 'Traceback' not in proc.stderr
  import re  # pylint: disable=g-import-not-at-top
  assert re.search(message, lines[0]), lines[0]
  assert not os.path.exists(tmp_path / 'run' / 'metrics.json')
