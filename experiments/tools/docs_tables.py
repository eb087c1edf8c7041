"""The tables of the docs, made from the result files they cite, so that the docs stay true.

Every table of a page is preceded by a marker saying where its numbers come from:

  <!-- table: results/compare/table.md -->               a copy of the file's first table
  <!-- table: results/compare/table.md#2 -->             ... of its second
  <!-- table: results/dts_2d_1e6/summary.csv pivot rows=task,method cols=budget value=mmd -->
      one row per (task, method), one column per budget: the mean over seeds ± its 95%
      half-width (the summary's VALUE and VALUE_ci95 columns); `value=a,b` gives a row per
      metric, `cols=metrics` a column per metric; `where=axis:v1|v2,...` keeps some rows;
      `spread=std`: ± the standard deviation over seeds instead
  <!-- table: prose, from results/A/ and results/B/ -->  a table written by hand from several
      files (a claims table); not checked here

  python -m experiments.tools.docs_tables docs/results.md            checks (exit 1 on drift)
  python -m experiments.tools.docs_tables docs/results.md --write    rewrites the tables

tests/test_docs_tables.py checks every page that has markers.
"""

import csv
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = re.compile(r'^<!-- table: (.*?) -->\s*$')


def tables_of(lines) -> list:
  """[(first line index, last + 1)] of the markdown tables (runs of lines starting with '|')."""
  spans, start = [], None
  for i, line in enumerate(list(lines) + ['']):
    if line.startswith('|') and start is None:
      start = i
    elif not line.startswith('|') and start is not None:
      spans.append((start, i))
      start = None
  return spans


def significant(x: float, digits: int = 2) -> str:
  """x to `digits` significant digits, as a person writes it: 0.0016, 0.7, 12, 3.1e+03."""
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return '—'
  if x == 0:
    return '0'
  text = f'{x:.{digits}g}'
  if 'e' in text and 1e-4 <= abs(x) < 1e5:
    text = f'{x:.{max(digits - 1 - int(math.floor(math.log10(abs(x)))), 0)}f}'
  return text


def _pivot(path: str, options: dict) -> list:
  with open(path) as f:
    rows = list(csv.DictReader(f))
  for condition in [w for w in options.get('where', '').split(',') if w]:
    axis, _, allowed = condition.partition(':')
    rows = [r for r in rows if r.get(axis) in allowed.split('|')]
  row_axes, col = options['rows'].split(','), options['cols']
  values = options['value'].split(',')
  spread = options.get('spread', 'ci95')
  keys = list(dict.fromkeys(tuple(r[a] for a in row_axes) for r in rows))
  if col == 'metrics':   # one column per metric
    by_key = {tuple(r[a] for a in row_axes): r for r in rows}
    out = [row_axes + values]
    for key in keys:
      out.append(list(key) + [_cell(by_key[key], v, spread) for v in values])
    return out
  cols = sorted({r[col] for r in rows}, key=_number_or_text)
  cell = {(tuple(r[a] for a in row_axes), r[col]): r for r in rows}
  unit = ' NFE' if col == 'budget' else ''
  header = (row_axes + (['metric'] if len(values) > 1 else []) +
            [f'{_number_label(c)}{unit if i == len(cols) - 1 else ""}'
             for i, c in enumerate(cols)])
  out = [header]
  for value in values:
    for key in keys:
      out.append(list(key) + ([value] if len(values) > 1 else []) +
                 [_cell(cell.get((key, c)), value, spread) for c in cols])
  return out


def _cell(row, value: str, spread: str = 'ci95') -> str:
  """mean ± the 95% half-width (spread=ci95) or the standard deviation over seeds
  (spread=std, the sweeps recorded before the summaries had intervals) of `value` in a
  summary row; '—' where it was not recorded."""
  if row is None or row.get(value) in (None, ''):
    return '—'
  mean, ci = float(row[value]), float(row.get(f'{value}_{spread}') or 0.0)
  return significant(mean, 3 if abs(mean) >= 100 else 2) + (
      f' ± {significant(ci, 1)}' if ci else '')


def _number_or_text(v):
  try:
    return (0, float(v))
  except ValueError:
    return (1, v)


def _number_label(v: str) -> str:
  try:
    f = float(v)
  except ValueError:
    return v
  return f'{int(f):,}' if f == int(f) else v


def _markdown(rows) -> list:
  return (['| ' + ' | '.join(rows[0]) + ' |', '|' + '---|' * len(rows[0])] +
          ['| ' + ' | '.join(r) + ' |' for r in rows[1:]])


def render(spec: str, root: str = ROOT):
  """The table's lines for a marker's spec; None for a prose table."""
  if spec.startswith('prose'):
    return None
  words = spec.split()
  target, options = words[0], dict(w.split('=', 1) for w in words[2:] if '=' in w)
  path, _, index = target.partition('#')
  full = os.path.join(root, path)
  if not os.path.isfile(full):
    raise ValueError(f'table marker {spec!r}: {path} does not exist.')
  if len(words) > 1 and words[1] == 'pivot':
    return _markdown(_pivot(full, options))
  with open(full) as f:
    lines = f.read().splitlines()
  spans = tables_of(lines)
  k = int(index or 1)
  if len(spans) < k:
    raise ValueError(f'table marker {spec!r}: {path} has {len(spans)} table(s).')
  a, b = spans[k - 1]
  return lines[a:b]


def check(page: str, write: bool = False, root: str = ROOT) -> list:
  """[(line number, spec, problem)] of the page's tables that differ from their files or have
  no marker; with write, rewrites the differing ones (an unmarked table stays a problem)."""
  with open(page) as f:
    lines = f.read().splitlines()
  problems, out, last = [], [], 0
  for a, b in tables_of(lines):
    marker = next((MARKER.match(lines[i]) for i in range(a - 1, max(a - 3, -1), -1)
                   if lines[i].strip()), None)
    out += lines[last:a]
    last = b
    if marker is None:
      problems.append((a + 1, '', 'no <!-- table: ... --> marker above it'))
      out += lines[a:b]
      continue
    spec = marker.group(1)
    want = render(spec, root)
    if want is None or want == lines[a:b]:
      out += lines[a:b]
      continue
    problems.append((a + 1, spec, 'differs from its file'))
    out += want
  out += lines[last:]
  if write:
    with open(page, 'w') as f:
      f.write('\n'.join(out) + '\n')
  return problems


def main(argv) -> int:
  pages = [a for a in argv[1:] if not a.startswith('--')]
  bad = 0
  for page in pages:
    for line, spec, problem in check(page, write='--write' in argv):
      print(f'{page}:{line}: {spec or "table"}: {problem}')
      bad += 1
  return 1 if bad and '--write' not in argv else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
