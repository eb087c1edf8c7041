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


def test_diversity_is_within_each_search_never_across():
  """One prompt with two outputs 5 apart: diversity 5 (it was 0 when computed across prompts);
  a batch of two prompts whose outputs coincide within each prompt: 0 however far apart the
  prompts are; a single output per search: left out (None), not a number."""
  from experiments.evaluation import metrics as metrics_lib
  one_prompt = np.array([[[0.0, 0.0], [3.0, 4.0]]])
  assert metrics_lib.diversity(one_prompt, batched=True) == pytest.approx(5.0)
  far_apart = np.array([[[0.0, 0.0], [0.0, 0.0]], [[100.0, 0.0], [100.0, 0.0]]])
  assert metrics_lib.diversity(far_apart, batched=True) == 0.0
  assert metrics_lib.diversity(np.zeros((3, 1, 2)), batched=True) is None
  assert metrics_lib.diversity(one_prompt[0], batched=False) == pytest.approx(5.0)


def test_reward_max_of_batched_searches_is_per_search():
  """Two prompts, best rewards 1 and 9: reward_max 5 (the mean of each prompt's best), not 9;
  an invalid output is skipped within its own prompt."""
  from experiments import search as search_exp  # pylint: disable=g-import-not-at-top
  r = np.array([[0.0, 1.0, np.nan], [9.0, 2.0, 3.0]])
  out = search_exp.invalid_reward_metrics(r, np.array([1.0, 9.0]), 1, 6, batched=True)
  assert out['reward_max'] == pytest.approx(5.0) and out['num_invalid_outputs'] == 1
  assert search_exp.invalid_reward_metrics(r, np.array([1.0, 9.0]), 1, 6)['reward_max'] == 9.0
