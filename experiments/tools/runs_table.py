"""One markdown table of chosen metrics from several runs' metrics.json (a row per run, named
after its workdir), for results that are separate runs rather than a sweep.

  python -m experiments.tools.runs_table OUT.md --metrics=frechet,feature_diversity DIR ...
"""

import json
import os
import sys

from experiments.evaluation import tables


def table(dirs, metrics) -> str:
  rows = []
  for d in dirs:
    path = os.path.join(d, 'metrics.json')
    try:
      with open(path) as f:
        values = json.load(f)
    except (OSError, ValueError) as e:
      raise SystemExit(f'error: {path}: {e}') from None
    rows.append([os.path.basename(os.path.normpath(d))] +
                [tables.number(values.get(m)) for m in metrics])
  return tables.markdown(['run'] + list(metrics), rows)


def main(argv) -> None:
  metrics = [a.split('=', 1)[1] for a in argv if a.startswith('--metrics=')]
  args = [a for a in argv[1:] if not a.startswith('--')]
  if len(args) < 2 or not metrics:
    raise SystemExit(__doc__)
  text = table(args[1:], metrics[0].split(','))
  with open(args[0], 'w') as f:
    f.write(text + '\n')
  print(text)


if __name__ == '__main__':
  main(sys.argv)
