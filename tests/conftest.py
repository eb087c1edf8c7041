"""Shared test setup: the repository root on sys.path, quiet Flax deprecation logs, and the tiny
random text-to-image folders (written once per session)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


@pytest.fixture(scope='session')
def sd_tiny(tmp_path_factory):
  """Folder with stable_diffusion/ (eps), stable_diffusion_v/ (v-prediction), clip/ and
  aesthetic.safetensors: tiny random weights in the real formats (models.random_weights)."""
  from models import random_weights  # pylint: disable=g-import-not-at-top
  root = str(tmp_path_factory.mktemp('sd_tiny'))
  random_weights.write_all(root)
  random_weights.write_stable_diffusion(os.path.join(root, 'stable_diffusion_v'),
                                        prediction_type='v_prediction', seed=5)
  return root
