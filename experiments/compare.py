"""`compare`: every method in compare.methods at the same NFE budget on one problem.

Each method runs as a `search` experiment in DIR/METHOD (its own contract files); DIR gets a
flat metrics.json (METHOD/KEY), table.md, samples.npz (the first method's, for the contract)
and compare.png (each method's samples over exact draws of the tilted target where known).
"""

import copy
import os

import numpy as np

from experiments import files
from experiments import recorders
from experiments import search as search_exp

COLUMNS = ('reward_mean', 'reward_max', 'best_reward', 'energy_distance', 'accuracy',
           'frechet', 'feature_diversity', 'diversity', 'nfe', 'wall_s', 'compile_s')


def run(config, workdir: str) -> dict:
  methods = tuple(config.compare.methods)
  if not methods:
    raise ValueError('compare.methods is empty.')
  prepared = {}
  for method in methods:  # validate every method before compiling any
    cfg = copy.deepcopy(config)
    cfg.search.method = method
    prepared[method] = (cfg,) + search_exp.prepare(cfg)
  files.claim_workdir(workdir, config)

  rows, panels, flat = {}, {}, {}
  for method, (cfg, problem, method_config, mesh) in prepared.items():
    metrics, x0 = search_exp.execute(cfg, os.path.join(workdir, method), problem, method_config,
                                     mesh)
    rows[method], panels[method] = metrics, x0
    flat.update({f'{method}/{k}': v for k, v in metrics.items()})

  table = markdown_table(rows)
  files.write_text(workdir, 'table.md', table + '\n')
  if files.is_writer():
    print(table)
    first = np.load(os.path.join(workdir, methods[0], 'samples.npz'))
    files.write_samples(workdir, x0=first['x0'], reward=first['reward'])
  files.write_metrics(workdir, flat)
  problem = prepared[methods[0]][1]
  problem.recorder.record_comparison(recorders.Run(config, problem, workdir), panels, rows)
  return flat


def markdown_table(rows: dict) -> str:
  cols = [c for c in COLUMNS if any(c in r for r in rows.values())]
  lines = ['| method | ' + ' | '.join(cols) + ' |', '|---' * (len(cols) + 1) + '|']
  for method, r in rows.items():
    cells = []
    for c in cols:
      v = r.get(c)
      cells.append('' if v is None else (f'{v:d}' if isinstance(v, int) else f'{v:.4g}'))
    lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
