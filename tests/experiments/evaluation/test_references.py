"""A metric that cannot be computed is left out with a warning, never reported as a number
(experiments/evaluation/metrics.py: two_sample; experiments/evaluation/references.py: exact draws that are not
finite)."""

import json
import os

from absl import logging
import numpy as np
import pytest

import experiments
from configs import gmm2d
from experiments.evaluation import metrics as metrics_lib
from models import gmm

pytestmark = pytest.mark.usefixtures('fast_compilation')


def test_two_sample_metrics_of_non_finite_sets_are_left_out(monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, 'warning', lambda msg, *a: warnings.append(msg % a))
  x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
  nan = np.full_like(x, np.nan)
  for a, b, where in ((x, nan, 'the reference'), (nan, x, 'the samples')):
    for name, fn in (('energy_distance', metrics_lib.energy_distance),
                     ('mmd', metrics_lib.mmd_rbf)):
      assert metrics_lib.two_sample(name, fn, a, b) is None
      assert warnings[-1] == f'{name} is left out: {where} holds NaN or inf.'
  assert metrics_lib.two_sample('x', lambda a, b: np.inf, x, x) is None
  assert 'came out as inf' in warnings[-1]
  assert metrics_lib.two_sample('mmd', metrics_lib.mmd_rbf, x, x) == pytest.approx(0.0, abs=1e-6)


def test_a_broken_exact_target_leaves_its_metrics_out(tmp_path, monkeypatch):
  """Exact draws that are NaN (a closed form that under- or overflows) gave energy distance and
  MMD of exactly 0 before; now the run reports neither and says why."""
  warnings = []
  monkeypatch.setattr(logging, 'warning', lambda msg, *a: warnings.append(msg % a))
  sample = gmm.sample
  monkeypatch.setattr(gmm, 'sample', lambda *a: sample(*a) * np.nan)
  experiments.get_experiment('search')(gmm2d.get_config('quick,smc'), str(tmp_path))
  with open(os.path.join(tmp_path, 'metrics.json')) as f:
    metrics = json.load(f)
  assert not {'energy_distance', 'mmd', 'mmd_exact_draws'} & set(metrics)
  assert metrics['nfe'] > 0 and np.isfinite(metrics['reward_mean'])
  assert any('exact draws of the tilted target hold NaN or inf' in w for w in warnings)
