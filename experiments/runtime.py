"""Timing of jitted programs: compile once (timed), then run (timed) to completion."""

import contextlib
import time

from absl import logging
import jax

from rewards import host
from samplers.ground import progress


def compile_and_run(fn, *args, mesh=None, label: str = 'program'):
  """Returns (output, compile_s, wall_s) of jax.jit-ed `fn` on args; output is ready.

  It logs a line when compilation starts and its time when it ends, and the run's progress
  (samplers/ground/progress.py: the program's ticks, when enabled) under `label`.

  With a mesh, the program is traced and run under `jax.set_mesh(mesh)`, so the particle
  sharding constraints of samplers/ground/sharding.py take effect; args should already be placed on it.
  A host callback's own exception (rewards/host.py) is raised in place of XLA's wrapper of it.
  """
  host.take_failure()  # a failure left over from an earlier program is not this one's
  host.watch_interrupts()
  with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
    logging.info('%s: compiling ...', label)
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    logging.info('%s: compiled in %s; running ...', label, progress.duration(compile_s))
    start = time.perf_counter()
    try:
      with progress.running(label):
        out = jax.block_until_ready(compiled(*args))
    except Exception:  # pylint: disable=broad-except
      failure = host.take_failure()
      if isinstance(failure, host.Interrupted):
        raise KeyboardInterrupt from None
      if failure is not None:
        raise failure from None
      raise
    wall_s = time.perf_counter() - start
    logging.info('%s: ran in %s', label, progress.duration(wall_s))
    return out, compile_s, wall_s
