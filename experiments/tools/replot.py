"""Redraws a recorded sweep's figures from its own files, with the current plotting code.

  python -m experiments.tools.replot results/dts_2d [...]
  python -m experiments.tools.replot --scaling results/benchmark/scaling.json "WHAT"

It reads DIR/config.json (the sweep's recorded config: its axes and plot settings) and
DIR/summary.csv, and rewrites DIR/METRIC.png; nothing else (a summary written before summaries
held 95% intervals gets them from its standard deviations and seed counts, Student's t). Rerunning the sweep's command does
the same and more (it recomputes the summary), but only while the current config still equals
the recorded one: a sweep recorded before a config field existed is refused by the workdir
check, and this redraws its figures without touching its records.
"""

import csv
import json
import os
import sys

import ml_collections

from experiments import sweep as sweep_lib


def _value(text: str):
  if text == '':
    return None
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text


def replot(workdir: str) -> list:
  """Redraws DIR's figures; returns the metrics drawn."""
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(os.path.join(workdir, 'summary.csv')) as f:
    summary = [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(f)]
  if not summary:
    raise ValueError(f'{workdir}/summary.csv has no rows.')
  metric_names = [c for c in summary[0] if c + '_std' in summary[0]]
  for row in summary:   # summaries written before they held intervals: from std and seeds
    n = row.get('num_seeds') or 0
    for m in metric_names:
      if row.get(m + '_ci95') is None and row.get(m + '_std') is not None and n > 1:
        row[m + '_ci95'] = sweep_lib.ci95_from_std(row[m + '_std'], n)
  sweep_lib.draw_figures(config.sweep, workdir, summary, metric_names)
  return [m for m in config.sweep.plot.metrics if m in metric_names]


def replot_scaling(path: str, what: str) -> None:
  """Redraws a benchmark's scaling figure (scaling.png beside it) from its scaling.json."""
  from experiments import benchmark  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    curves = json.load(f)
  benchmark.scaling_figure(os.path.join(os.path.dirname(path), 'scaling.png'), curves, what)


def main(argv) -> None:
  if len(argv) < 2:
    raise SystemExit(__doc__)
  if argv[1] == '--scaling':
    replot_scaling(argv[2], argv[3])
    return
  for workdir in argv[1:]:
    print(workdir, ', '.join(replot(workdir)))


if __name__ == '__main__':
  main(sys.argv)
