"""Progress of a running compiled program, reported from the host.

Inside a search (or plain sampling), `tick(done, total)` marks `done` of `total` NFEs spent: an
unordered `jax.debug.callback`, placed once per level (or per percent of a tree search's
budget), never per backbone row. The host prints a line with the share done, the time elapsed
and an ETA, at most every `interval` seconds and only once a run has taken `after` seconds, so
that short runs print nothing.

Ticks are compiled in only while `enabled()` at trace time: main.py's runs turn them on
(`enable()`) for a program whose backbone work (parameters × NFEs) reaches WORK, where a run
takes long enough to want them (`for_work`); a tick costs about 0.2 ms of host round trip on a
CPU, nothing next to a real backbone's level but several times a 2D toy run's whole wall time.
Library calls, the tests and the benchmark (which times programs) trace without them, so their
programs are unchanged.
"""

import contextlib
import functools
import sys
import time

import jax
import numpy as np

_ENABLED = [False]
_WANTED = [False]   # main.py's switch; _ENABLED is it, narrowed per program by for_work
WORK = 1e10
# A run reports once it has run AFTER seconds, then every INTERVAL (None: 1 s on a terminal,
# where the line is redrawn, else 10 s, one line each).
AFTER = 2.0
INTERVAL = None
_RUN = dict(label='', start=None, last=0.0, interval=10.0, after=2.0, fraction=0.0)


def enable(on: bool = True) -> None:
  _WANTED[0] = _ENABLED[0] = bool(on)


def for_work(parameters: int, nfe: int) -> None:
  """Ticks for the next program traced only if it is worth reporting: parameters x nfe >= WORK
  (and progress is wanted at all)."""
  _ENABLED[0] = _WANTED[0] and float(parameters) * float(nfe) >= WORK


def enabled() -> bool:
  return _ENABLED[0]


def tick(done, total, unit: str = 'NFE') -> None:
  """In-graph: `done` (a traced int) of `total` units (NFEs, levels) are done. A no-op unless
  enabled()."""
  if _ENABLED[0]:
    jax.debug.callback(functools.partial(_report, unit=unit), done, total)


@contextlib.contextmanager
def running(label: str):
  """The host's side of one program's run: its ticks are reported under `label`."""
  interval = INTERVAL if INTERVAL is not None else (1.0 if sys.stderr.isatty() else 10.0)
  after = AFTER
  _RUN.update(label=label, start=time.perf_counter(), last=0.0, interval=interval, after=after,
              fraction=0.0)
  try:
    yield
  finally:
    if _RUN['last'] and sys.stderr.isatty():
      sys.stderr.write('\n')
    _RUN['start'] = None


def _report(done, total, unit: str) -> None:
  start = _RUN['start']
  if start is None:
    return
  now = time.perf_counter()
  elapsed = now - start
  fraction = min(float(np.max(done)) / max(float(np.max(total)), 1.0), 1.0)
  # Ticks from several devices or vmapped searches arrive unordered: keep the furthest.
  _RUN['fraction'] = fraction = max(fraction, _RUN['fraction'])
  if elapsed < _RUN['after'] or now - (_RUN['last'] or start) < _RUN['interval']:
    return
  _RUN['last'] = now
  eta = elapsed * (1.0 - fraction) / fraction if fraction > 0 else float('nan')
  line = (f'{_RUN["label"]}: {bar(fraction)} {100 * fraction:5.1f}% of {int(np.max(total)):,} '
          f'{unit}, '
          f'{duration(elapsed)} elapsed, ETA {duration(eta)}')
  if sys.stderr.isatty():
    sys.stderr.write('\r' + line)
  else:
    sys.stderr.write(line + '\n')
  sys.stderr.flush()


def bar(fraction: float, width: int = 20) -> str:
  filled = int(round(fraction * width))
  return '[' + '#' * filled + '.' * (width - filled) + ']'


def duration(seconds: float) -> str:
  """'42 s', '3 min 05 s', '2 h 07 min'; '?' when unknown."""
  if seconds != seconds or seconds == float('inf'):
    return '?'
  if seconds < 10:
    return f'{seconds:.2g} s' if seconds >= 0.01 else '0 s'
  seconds = int(round(seconds))
  if seconds < 60:
    return f'{seconds} s'
  if seconds < 3600:
    return f'{seconds // 60} min {seconds % 60:02d} s'
  return f'{seconds // 3600} h {seconds % 3600 // 60:02d} min'


class Eta:
  """Host loops (a compare's methods, a sweep's points, training chunks): `step(n)` after each
  unit of work returns 'k/K, elapsed, ETA' for a log line."""

  def __init__(self, total: int):
    self.total, self.done, self.start = max(int(total), 1), 0, time.perf_counter()

  def step(self, n: int = 1) -> str:
    self.done += n
    elapsed = time.perf_counter() - self.start
    left = elapsed * (self.total - self.done) / self.done if self.done else float('nan')
    return f'{self.done}/{self.total}, {duration(elapsed)} elapsed, ETA {duration(left)}'
