"""Timing of jitted programs: compile once (timed), then run (timed) to completion."""

import time

import jax


def compile_and_run(fn, *args):
  """Returns (output, compile_s, wall_s) of jax.jit-ed `fn` on args; output is ready."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  out = jax.block_until_ready(compiled(*args))
  return out, compile_s, time.perf_counter() - start
