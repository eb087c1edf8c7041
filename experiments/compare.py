"""`compare`: every method in compare.methods at the same NFE budget on one problem.

Each method runs as a `search` experiment in DIR/METHOD (its own contract files); DIR gets a
flat metrics.json (METHOD/KEY), table.md, samples.npz (the first method's, for the contract)
and compare.png (each method's samples over exact draws of the tilted target where known).

A method is compared at the compute it spent: the table shows the NFEs it spent (`nfe`), the
backbone rows it evaluated (`nfe_evaluated`, more where batches compute masked or speculative
rows) and the share of the budget spent. Ranks are given only among the methods that spent at
least `compare.spent_at_least` of the budget (0.9 by default); the others are listed below the
ranks with what they spent, unranked. A method that the budget cannot pay for one step of
(search.base.BudgetTooSmall) is left out, its reason logged and written under the table; any
other invalid setting stops the comparison before anything compiles.
"""

import copy
import os

from absl import logging
import numpy as np

from experiments import files
from experiments.evaluation import tables
from experiments.evaluation import recorders
from experiments import search as search_exp
from search import base as search_base
from samplers.ground import progress

COLUMNS = ('reward_mean', 'reward_max', 'best_reward', 'energy_distance', 'accuracy',
           'frechet', 'feature_diversity', 'diversity', 'nfe', 'nfe_evaluated', 'spent', 'wall_s',
           'compile_s')
# Metrics that rank methods, and which way is better.
RANKED = (('best_reward', 'higher'), ('energy_distance', 'lower'), ('frechet', 'lower'),
          ('accuracy', 'higher'))
SPENT_AT_LEAST = 0.9


def run(config, workdir: str) -> dict:
  methods = tuple(config.compare.methods)
  if not methods:
    raise ValueError('compare.methods is empty.')
  prepared, left_out = {}, {}
  for method in methods:  # validate every method before compiling any
    cfg = copy.deepcopy(config)
    cfg.search.method = method
    try:
      prepared[method] = (cfg,) + search_exp.prepare(cfg)
    except search_base.BudgetTooSmall as e:
      left_out[method] = str(e)
      logging.warning('compare: %s left out: %s', method, e)
  if not prepared:
    raise ValueError('compare: the budget is too small for every method in compare.methods: '
                     + ' '.join(left_out.values()))
  methods = tuple(prepared)
  files.claim_workdir(workdir, config)

  rows, panels, flat = {}, {}, {}
  eta = progress.Eta(len(prepared))
  for method, (cfg, problem, method_config, mesh) in prepared.items():
    metrics, x0 = search_exp.execute(cfg, os.path.join(workdir, method), problem, method_config,
                                     mesh)
    logging.info('compare: %s done (method %s)', method, eta.step())
    rows[method], panels[method] = metrics, x0
    flat.update({f'{method}/{k}': v for k, v in metrics.items()})

  for metrics in rows.values():
    metrics['spent'] = metrics['nfe'] / metrics['budget']
  table = markdown_table(rows) + '\n\n' + markdown_ranks(
      rows, float(config.compare.get('spent_at_least', SPENT_AT_LEAST)))
  if left_out:
    table += '\n\nNot run (the budget cannot pay for one step of them): ' + ' '.join(
        left_out.values())
  files.write_text(workdir, 'table.md', table + '\n')
  if files.is_writer():
    print(table)
    first = np.load(os.path.join(workdir, methods[0], 'samples.npz'))
    files.write_samples(workdir, x0=first['x0'], reward=first['reward'])
  files.write_metrics(workdir, flat)
  problem = prepared[methods[0]][1]
  problem.recorder.record_comparison(recorders.Run(config, problem, workdir), panels, rows)
  return flat


def _cell(column, v) -> str:
  return tables.percent(v) if column == 'spent' else tables.number(v)


def markdown_table(rows: dict) -> str:
  cols = [c for c in COLUMNS if any(c in r for r in rows.values())]
  return tables.markdown(['method'] + cols,
                         [[m] + [_cell(c, r.get(c)) for c in cols] for m, r in rows.items()])


def ranks(rows: dict, spent_at_least: float) -> tuple:
  """({metric: {method: rank}} among the methods that spent at least `spent_at_least` of
  the budget, 1 = best; [the other methods])."""
  ranked = [m for m, r in rows.items() if r.get('spent', 0.0) >= spent_at_least]
  out = {}
  for metric, better in RANKED:
    have = [m for m in ranked if rows[m].get(metric) is not None]
    if len(have) < 2:
      continue
    order = sorted(have, key=lambda m: rows[m][metric], reverse=better == 'higher')
    out[metric] = {m: i + 1 for i, m in enumerate(order)}
  return out, [m for m in rows if m not in ranked]


def markdown_ranks(rows: dict, spent_at_least: float) -> str:
  """The ranks table, and a line naming the methods that spent less, unranked."""
  by_metric, unranked = ranks(rows, spent_at_least)
  lines = []
  if by_metric:
    metrics = list(by_metric)
    order = sorted(by_metric[metrics[0]], key=by_metric[metrics[0]].get)
    lines += [f'Ranks among the methods that spent at least {100 * spent_at_least:.0f}% of the '
              'budget (1 = best; ' + ', '.join(
                  f'{m}: {dict(RANKED)[m]} is better' for m in metrics) + '):', '',
              tables.markdown(['method', 'spent'] + metrics, [
                  [m, tables.percent(rows[m]['spent'])]
                  + [str(by_metric[x].get(m, '')) for x in metrics] for m in order])]
  if unranked:
    lines += ['', 'Not ranked (spent less than that): ' + '; '.join(
        f'{m} spent {rows[m]["nfe"]} of {rows[m]["budget"]} NFEs '
        f'({_cell("spent", rows[m]["spent"])})' for m in unranked) + '.']
  return '\n'.join(lines).strip()
