"""Timing of jitted programs: compile once (timed), then run (timed) to completion."""

import contextlib
import time

from absl import logging
import jax

from rewards import host
from samplers.ground import progress


def compile_and_run(fn, *args, mesh=None, label: str = 'program', memory: dict = None):
  """Returns (output, compile_s, wall_s) of jax.jit-ed `fn` on args; output is ready.

  `memory`, a dict, receives the program's memory (`program_bytes`: arguments, outputs and
  temporaries per device, from the compiler's analysis) and, where the device reports it (GPU,
  TPU), `peak_bytes`: the device's peak use so far in this process, after the run.

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
    compiled, compile_s = compile_timed(fn, args)
    logging.info('%s: compiled in %s; running ...', label, progress.duration(compile_s))
    if memory is not None:
      memory.update(program_bytes=program_bytes(compiled))
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
    peak = peak_bytes() if memory is not None else None
    if peak is not None:
      memory['peak_bytes'] = peak
    return out, compile_s, wall_s


def compile_timed(fn, args):
  """(the compiled jax.jit of fn on args, seconds the compilation took)."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def timed(fn, args, repeats: int):
  """(output, compile_s, the best wall seconds of `repeats` runs, program_bytes) of jitted fn:
  what benchmarks time (no logging, no mesh)."""
  compiled, compile_s = compile_timed(fn, args)
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    best = min(best, time.perf_counter() - start)
  return out, compile_s, best, program_bytes(compiled)


def program_bytes(compiled):
  """A compiled program's memory per device: arguments + outputs + temporaries - aliased
  (None where the backend gives no analysis)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)


def peak_bytes():
  """The largest peak memory use so far of this process's devices, where they report it
  (GPU, TPU; None on a CPU)."""
  peaks = [(d.memory_stats() or {}).get('peak_bytes_in_use') for d in jax.local_devices()]
  peaks = [p for p in peaks if p is not None]
  return max(peaks) if peaks else None
