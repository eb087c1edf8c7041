"""The project's one markdown table writer, and how every table shows a number.

  number(v)        an int as it is, a float to 4 significant digits, None as ''
  mean_ci(m, h)    a mean and the half-width of its 95% interval: '0.4083 ± 0.13'
  difference(m, h) a signed paired difference: '+0.208 ± 0.18' (float noise below 1e-12 is 0)
  percent(f)       a share: '99.5%'
  gib(b)           bytes as GiB: '15.04 GiB'
  markdown(header, rows)  the table: a header row, its rule, one row per list of cells
"""


def number(v) -> str:
  if v is None:
    return ''
  if isinstance(v, bool):
    return str(v)
  if isinstance(v, int):
    return f'{v:d}'
  return f'{v:.4g}'


def mean_ci(mean, half) -> str:
  if mean is None:
    return ''
  return f'{mean:.4g} ± {half:.2g}' if half is not None else f'{mean:.4g}'


def difference(mean, half) -> str:
  mean = 0.0 if abs(mean) < 1e-12 else mean
  return f'{mean:+.3g} ± {half:.2g}' if half is not None else f'{mean:+.3g}'


def percent(fraction) -> str:
  return '' if fraction is None else f'{100 * fraction:.1f}%'


def gib(num_bytes_or_gib, already_gib: bool = True) -> str:
  value = num_bytes_or_gib if already_gib else num_bytes_or_gib / 2 ** 30
  return f'{value:.2f} GiB'


def markdown(header, rows) -> str:
  """header: column names; rows: lists of cells (strings, or numbers shown by number())."""
  show = lambda c: c if isinstance(c, str) else number(c)
  line = lambda cells: '|' + '|'.join(f' {c} ' if c else ' ' for c in cells) + '|'
  return '\n'.join([line(map(str, header)), '|---' * len(header) + '|']
                   + [line([show(c) for c in row]) for row in rows])
