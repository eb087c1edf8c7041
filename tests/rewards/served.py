"""For the scripts that check PyTorch scorers outside the suite (tests/rewards/*_check.py):
start `python -m rewards.serve` with a scorer, score through the project's client, stop it."""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def serve_and_score(scorer: str, kwargs: dict, images, prompts, tmp: str):
  """Scores `images` for `prompts` through a service started with `scorer` and `kwargs`."""
  ready = os.path.join(tmp, f'ready_{scorer.rsplit(":", 1)[-1]}')
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.Popen([sys.executable, '-m', 'rewards.serve', f'--scorer={scorer}',
                           f'--kwargs={json.dumps(kwargs)}', '--address=127.0.0.1:0',
                           f'--ready_file={ready}'], cwd=ROOT, env=env)
  try:
    while not os.path.exists(ready):
      if proc.poll() is not None:
        raise RuntimeError('the service did not start')
      time.sleep(0.2)
    with open(ready) as f:
      address = f.read()
    if ROOT not in sys.path:
      sys.path.insert(0, ROOT)
    from rewards import service  # pylint: disable=g-import-not-at-top
    return service.Client(address, timeout=600).score(images, prompts)
  finally:
    proc.kill()
    proc.wait(30)
