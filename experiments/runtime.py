"""Timing of jitted programs: compile once (timed), then run (timed) to completion."""

import contextlib
import time

import jax

from rewards import host


def compile_and_run(fn, *args, mesh=None):
  """Returns (output, compile_s, wall_s) of jax.jit-ed `fn` on args; output is ready.

  With a mesh, the program is traced and run under `jax.set_mesh(mesh)`, so the particle
  sharding constraints of samplers/ground/sharding.py take effect; args should already be placed on it.
  A host callback's own exception (rewards/host.py) is raised in place of XLA's wrapper of it.
  """
  host.take_failure()  # a failure left over from an earlier program is not this one's
  host.watch_interrupts()
  with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    try:
      out = jax.block_until_ready(compiled(*args))
    except Exception:  # pylint: disable=broad-except
      failure = host.take_failure()
      if isinstance(failure, host.Interrupted):
        raise KeyboardInterrupt from None
      if failure is not None:
        raise failure from None
      raise
    return out, compile_s, time.perf_counter() - start
