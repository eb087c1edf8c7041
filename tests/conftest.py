"""Shared test setup: the repository root on sys.path, the tiny random text-to-image folders and
the tiny trained digits models (each made once per session)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


@pytest.fixture(scope='module')
def fast_compilation():
  """For modules that check plumbing, not speed (pytestmark = usefixtures('fast_compilation')):
  XLA's optimisation passes then cost no compile time.

  jit's cache does not key on this flag, so the caches are cleared on the way out: otherwise a
  later module would reuse an unoptimised executable (a train step, say), whose results differ
  in the last bit from the optimised one a fresh process compiles, and a bitwise comparison
  with a subprocess's run (tests/models/loading/test_checkpoint.py) fails depending on test order.
  """
  import jax  # pylint: disable=g-import-not-at-top
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
  jax.clear_caches()


@pytest.fixture(scope='session')
def sd_tiny(tmp_path_factory):
  """Folder with stable_diffusion/ (eps), stable_diffusion_v/ (v-prediction), clip/ and
  aesthetic.safetensors: tiny random weights in the real formats (experiments.tools.random_weights)."""
  from experiments.tools import random_weights  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp('sd_tiny'))
  random_weights.write_all(root)
  random_weights.write_stable_diffusion(os.path.join(root, 'stable_diffusion_v'),
                                        prediction_type='v_prediction', seed=5)
  return root


@pytest.fixture(scope='session')
def digits_tiny(tmp_path_factory):
  """{kind: workdir, kind + '_metrics': its training metrics} for tiny digits models trained
  with configs/digits.py's quick sizes: flow and eps U-Nets, the reward's classifier, and a
  second classifier (another seed) for held-out metrics."""
  # pylint: disable=g-import-not-at-top
  from configs import digits as digits_config
  from experiments import train
  from experiments import train_classifier
  out = {}
  for kind in ('flow', 'eps', 'classifier', 'classifier_heldout'):
    out[kind] = str(tmp_path_factory.mktemp(kind))
    is_classifier = kind.startswith('classifier')
    config = digits_config.get_config(('classifier' if is_classifier else kind) + ',quick')
    config.seed = 1 if kind == 'classifier_heldout' else 0
    run = train_classifier.run if is_classifier else train.run
    out[kind + '_metrics'] = run(config, out[kind])
  return out
