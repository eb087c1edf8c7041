"""Base rates of the digit-grid prompts: the fraction of plain samples whose prompt is true.

Reads the samples.npz of plain-sampling runs of configs/digit_grid.py (one run per backbone and
sampler: any prompt's run, since the samples do not depend on the prompt) and judges them under
every prompt of configs/digit_grid.PROMPTS with the searched and the held-out classifier.
Writes DIR/base_rates.{json,md}.

  python -m experiments.tools.grid_base_rates runs/search_matters_base
"""

import json
import os
import sys

import ml_collections
import numpy as np

from configs import digit_grid
from experiments import files
from experiments.evaluation import tables
from experiments.evaluation import image_metrics


def base_rates(root: str) -> list:
  rows = []
  for run in sorted(os.listdir(root)):
    path = os.path.join(root, run)
    if not os.path.isfile(os.path.join(path, 'samples.npz')):
      continue
    with open(os.path.join(path, 'config.json')) as f:
      config = ml_collections.ConfigDict(json.load(f))
    with np.load(os.path.join(path, 'samples.npz')) as f:
      x0 = f['x0']
    row = {'run': run, 'checkpoint': config.model.checkpoint, 'num_samples': int(len(x0)),
           'sampler': f'{config.sampler.interpolant}, sde={config.sampler.sde}, '
                      f'{config.sampler.time_grid}, {config.sampler.num_steps} steps'}
    for prompt, fields in digit_grid.PROMPTS.items():
      reward = ml_collections.ConfigDict(config.reward.to_dict())
      reward.update(fields)
      for key, value in image_metrics.evaluate_grid(x0, reward).items():
        row[f'{prompt}/{key}'] = value
    rows.append(row)
  return rows


def markdown(rows) -> str:
  prompts = tuple(digit_grid.PROMPTS)
  head = ['run', 'sampler'] + [f'{p} {k}' for p in prompts for k in ('success', 'held-out')]
  return tables.markdown(head, [[r['run'], r['sampler']] + [
      r.get(f'{p}/{k}') for p in prompts for k in ('success', 'heldout_success')]
                                for r in rows])


def main(root: str) -> None:
  rows = base_rates(root)
  files.write_json(os.path.join(root, 'base_rates.json'), rows)
  text = markdown(rows)
  files.write_text(root, 'base_rates.md', text + '\n')
  print(text)


if __name__ == '__main__':
  main(sys.argv[1])
