"""Shared test setup: the repository root on sys.path, float32, tiny shapes."""

import os
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
warnings.filterwarnings('ignore', message='Flax classes are deprecated')
