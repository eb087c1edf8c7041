"""Rewards that are not JAX functions, called from inside jitted searches.

`host_reward(np_fn)` wraps any batched host function np_fn(images [N, ...] numpy) -> [N]
(a PyTorch model, a server request, an image codec) with `jax.pure_callback`: the search stays
one jitted program, and each call hands the whole batch of proposals to the host at once.
Under vmap (batched prompts) an image callback still runs once, on every prompt's proposals.
Such a reward has no gradient, so it cannot drive DPS guidance.

An exception inside a callback reaches the caller as XLA's runtime error, with the original
lost in its text; `remembered` keeps the first one, and experiments/runtime.py raises it in
its place, so a host reward's own error (a dead reward service, a bad score) is what the user
sees.

Ctrl-C while a callback waits: the main thread sits in XLA until the program returns, so
Python's own handler cannot run. `watch_interrupts()` (called by experiments/runtime.py from
the main thread) has the C-level signal handler write to a pipe (signal.set_wakeup_fd), and a
callback that waits on a socket waits on that pipe too (`wait_readable`): on SIGINT it raises
`Interrupted` at once, the program fails, and the run stops as interrupted.
"""

import functools
import io
import os
import select
import signal
import socket
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from samplers.ground import pixels


_failure = []
_failure_lock = threading.Lock()
_wakeup = []                      # [read end of the signal pipe], once watched
_interrupted = threading.Event()


class Interrupted(Exception):
  """Ctrl-C arrived while a host callback waited."""


def watch_interrupts() -> None:
  """From the main thread: SIGINT and SIGTERM also wake `wait_readable` (idempotent; a no-op
  off the main thread or where another wakeup fd is already set)."""
  if _wakeup or threading.current_thread() is not threading.main_thread():
    return
  read, write = os.pipe()
  os.set_blocking(read, False)
  os.set_blocking(write, False)
  try:
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
  except ValueError:
    os.close(read)
    os.close(write)
    return
  if previous != -1:   # someone else's: leave it in place
    signal.set_wakeup_fd(previous)
    os.close(read)
    os.close(write)
    return
  _interrupted.clear()
  _wakeup.append(read)


def _check_signals() -> None:
  if not _wakeup:
    return
  try:
    data = os.read(_wakeup[0], 64)
  except (BlockingIOError, OSError):
    data = b''
  if any(b in (signal.SIGINT, signal.SIGTERM) for b in data):
    _interrupted.set()


def check_interrupted() -> None:
  """Raises Interrupted if Ctrl-C has arrived (once watch_interrupts() ran). A host callback
  calls it before any work: one that starts after Ctrl-C (another device's, or the interrupted
  program's next one before its failure ends it) must not start a new wait."""
  _check_signals()
  if _interrupted.is_set():
    raise Interrupted('interrupted (Ctrl-C) while waiting for a host reward')


def wait_readable(sock, timeout: float) -> None:
  """Waits until `sock` has data; socket.timeout after `timeout` seconds, Interrupted as soon
  as Ctrl-C arrives (once watch_interrupts() ran)."""
  deadline = time.monotonic() + timeout
  while True:
    check_interrupted()
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      raise socket.timeout('timed out')
    ready, _, _ = select.select([sock] + _wakeup, [], [], min(remaining, 1.0))
    if sock in ready:
      return


def remembered(fn):
  """fn, with the first exception it raises kept for take_failure()."""
  @functools.wraps(fn)
  def wrapper(*args):
    try:
      return fn(*args)
    except Exception as e:
      with _failure_lock:
        if not _failure:
          _failure.append(e)
      raise
  return wrapper


def take_failure():
  """The first exception a host callback raised since the last call, or None."""
  with _failure_lock:
    return _failure.pop() if _failure else None


def checked_scores(scores, n: int) -> np.ndarray:
  """A host reward's output as float32 [n], or a ValueError saying what it returned."""
  scores = np.asarray(scores, np.float32)
  if scores.shape != (n,):
    raise ValueError(f'the host reward returned shape {scores.shape} for {n} inputs; it must '
                     'return one score per input.')
  return scores


def host_reward(np_fn):
  def fn(x0, cond=None):
    del cond
    out = jax.ShapeDtypeStruct(x0.shape[:1], jnp.float32)
    return jax.pure_callback(remembered(lambda x: checked_scores(np_fn(np.asarray(x)), len(x))),
                             out, x0, vmap_method='sequential')
  return fn


def probe(np_fn, data_shape, n: int = 2):
  """A check to run on the host before compiling: np_fn on n zero inputs must return [n]."""
  return lambda: checked_scores(np_fn(np.zeros((n,) + tuple(data_shape), np.float32)), n)


def encoded_kilobytes(images, fmt: str = 'png', quality: int = 75) -> np.ndarray:
  """Size in kB of each image [N, H, W, C] in [-1, 1] encoded as PNG or JPEG."""
  sizes = []
  for img in pixels.signed_to_uint8(images):
    buf = io.BytesIO()
    frame = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    frame.save(buf, format=fmt.upper(), **({'quality': quality} if fmt == 'jpeg' else {}))
    sizes.append(buf.tell() / 1000.0)
  return np.asarray(sizes, np.float32)


def compressibility_scores(fmt: str = 'png'):
  """np_fn(images [N, H, W, C] in [-1, 1]) -> -(encoded size in kB) [N]."""
  if fmt not in ('png', 'jpeg'):
    raise ValueError(f"reward.format must be 'png' or 'jpeg', got {fmt!r}.")
  return lambda x: -encoded_kilobytes(x, fmt)


def compressibility(fmt: str = 'png'):
  """r(x) = -(size of the encoded image in kB): the DDPO/SVDD compressibility reward."""
  return host_reward(compressibility_scores(fmt))


def probe_image_reward(np_fn, prompts, image_shape, n: int = 2):
  """A host-side check before compiling: np_fn on n black uint8 images [n, H, W, 3] and the
  first prompt must return [n] scores."""
  height, width = image_shape[:2]
  return lambda: checked_scores(np_fn(np.zeros((n, height, width, 3), np.uint8),
                                      [prompts[0]] * n), n)


def host_image_reward(np_fn, prompts):
  """fn(params, images [N, H, W, C] in [0, 1], cond) calling np_fn(uint8 images, prompts) on
  the host; the prompt is prompts[cond['prompt_index']] (the first one without a condition).

  Under vmap (a batch of prompts) the host is called once with every prompt's images: the
  callback sees images [..., N, H, W, C] and indices [...] (vmap_method='expand_dims')."""
  def fn(params, images, cond=None):
    del params
    index = jnp.asarray(0 if not isinstance(cond, dict) else cond.get('prompt_index', 0),
                        jnp.int32)

    @remembered
    def call(x, i):
      lead, n = x.shape[:-4], x.shape[-4]
      i = np.broadcast_to(np.asarray(i).reshape(i.shape + (1,) * (len(lead) - i.ndim)), lead)
      images = pixels.unit_to_uint8(np.asarray(x).reshape((-1,) + x.shape[-3:]))
      if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
      row_prompts = [prompts[int(k)] for k in np.repeat(i.reshape(-1), n)]
      scores = checked_scores(np_fn(images, row_prompts), len(images))
      return scores.reshape(lead + (n,))

    out = jax.ShapeDtypeStruct(images.shape[:1], jnp.float32)
    return jax.pure_callback(call, out, images, index, vmap_method='expand_dims')
  return fn
