"""A reward service: a scorer run in its own process (or on its own device), reached over a
socket by the `service` reward (rewards/service.py) from inside a jitted search.

  python -m rewards.serve --scorer=rewards.scorers:image_reward --address=127.0.0.1:5555

`--scorer` names a factory 'package.module:function'; it is called once, with the JSON object
of `--kwargs` as keyword arguments, and returns score(x [n, ...] numpy, prompts: n str) -> [n]
(rewards/scorers.py has adapters for ImageReward, VQAScore and the project's own rewards).

The service batches: requests that arrive while a batch is being scored (from several searches,
devices or threads) are scored together, up to --max_batch rows per call of the scorer, and
each request gets back its own scores in its own order. Its clients cannot break it
(docs/reliability.md, "The reward service"):
  - every request is validated and answered: a malformed one (a 0-d array, a wrong byte count,
    prompts that do not match its rows) gets an error reply, and a scorer that raises answers
    its batch with its error line; the scoring thread survives both;
  - every blocking step has a deadline: the handshake (--handshake_timeout), a whole message in
    or out once begun (--io_timeout; a client that drips bytes or never reads its replies is
    dropped), so no client can stall the others; authentication runs on the connection's own
    thread, never in the accept loop;
  - sizes are bounded: a request (--max_request_mb, refused before its bytes are read), the
    bytes waiting to be scored (--max_queue_mb; beyond, a request waits, then is answered
    "busy"), and the connections (--max_clients; beyond, "busy");
  - it listens on loopback unless asked otherwise: another host needs REWARD_SERVICE_KEY (or
    --allow_remote); a Unix socket path is only replaced when it is a socket that nothing
    listens on, and the service removes its own socket file when it stops;
  - SIGTERM and Ctrl-C stop it cleanly.
The protocol (length-prefixed JSON and raw array bytes, never pickled objects, an HMAC
handshake with REWARD_SERVICE_KEY) is in rewards/wire.py.
"""

import importlib
import ipaddress
import json
import os
import queue
import select
import signal
import socket
import stat
import sys
import threading
import time
from typing import Callable

import numpy as np

from rewards import wire

# Re-exported for the service's clients and tests.
parse_address = wire.parse_address
format_address = wire.format_address
authkey = wire.authkey
DTYPES = wire.DTYPES
KEY_ENV = wire.KEY_ENV
MB = 1 << 20


class _Connection:
  """One client: a reader thread (requests in), a writer thread (replies out)."""

  def __init__(self, sock, io_timeout):
    self.sock = sock
    self.writer = sock.dup()          # its own timeout: the reader changes the reader's
    self.writer.settimeout(io_timeout)
    self.replies = queue.Queue()
    self.closed = threading.Event()

  def reply(self, request_id, scores=None, error: str = '') -> None:
    if not self.closed.is_set():
      self.replies.put((request_id, scores, error))

  def close(self) -> None:
    if self.closed.is_set():
      return
    self.closed.set()
    self.replies.put(None)
    for s in (self.sock, self.writer):
      try:
        s.shutdown(socket.SHUT_RDWR)
      except OSError:
        pass
      s.close()


class _Request:
  def __init__(self, conn, request_id, x, prompts):
    self.conn, self.id, self.x, self.prompts = conn, request_id, x, prompts


class Server:
  """Serves score(x, prompts) -> [n] on `address` ((host, port), port 0 for a free one, or a
  Unix socket path) until close()."""

  def __init__(self, score: Callable, address=('127.0.0.1', 0), max_batch: int = 64,
               max_wait_s: float = 0.005, *, max_request_mb: float = 256,
               max_queue_mb: float = 1024, max_clients: int = 32, io_timeout: float = 60.0,
               handshake_timeout: float = 10.0, allow_remote: bool = False):
    for name, value in (('max_batch', max_batch), ('max_clients', max_clients)):
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be an integer >= 1, got {value!r}.')
    for name, value in (('max_request_mb', max_request_mb), ('max_queue_mb', max_queue_mb),
                        ('io_timeout', io_timeout), ('handshake_timeout', handshake_timeout)):
      if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
        raise ValueError(f'{name} must be a positive number, got {value!r}.')
    if max_queue_mb < max_request_mb:
      raise ValueError(f'max_queue_mb ({max_queue_mb}) must hold at least one request of '
                       f'max_request_mb ({max_request_mb}).')
    self.score, self.max_batch, self.max_wait_s = score, max_batch, float(max_wait_s)
    self.max_request_bytes = int(max_request_mb * MB)
    self.max_queue_bytes = int(max_queue_mb * MB)
    self.max_clients, self.io_timeout = max_clients, float(io_timeout)
    self.handshake_timeout = float(handshake_timeout)
    self.key = wire.authkey()
    self.num_calls = 0     # calls of the scorer, for tests and logs
    self._closed = threading.Event()
    self._conns = set()
    self._conns_lock = threading.Lock()
    self._queue = queue.Queue()
    self._queued_bytes = 0
    self._room = threading.Condition()
    self._socket_file = None
    self.listener = self._listen(address, allow_remote)
    self.address = self.listener.getsockname()
    if not isinstance(address, str):
      self.address = (self.address[0], self.address[1])
    threading.Thread(target=self._work, daemon=True, name='scorer').start()

  # -- listening -----------------------------------------------------------------------------
  def _listen(self, address, allow_remote):
    if isinstance(address, str):
      _clear_stale_socket(address)
      sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
      sock.bind(address)
      st = os.stat(address)
      self._socket_file = (address, st.st_dev, st.st_ino)
    else:
      host, port = address
      if not (_is_loopback(host) or self.key is not None or allow_remote):
        raise ValueError(f'listening on {host} would let any host reach the scorer: set '
                         f'{wire.KEY_ENV} (clients then need the same key), or pass '
                         '--allow_remote.')
      sock = socket.create_server((host, port), reuse_port=False)
    sock.listen(64)
    return sock

  def serve_forever(self) -> None:
    while not self._closed.is_set():
      try:
        sock, _ = self.listener.accept()
      except OSError:
        if self._closed.is_set():
          return
        continue
      with self._conns_lock:
        busy = len(self._conns) >= self.max_clients
        conn = None if busy else _Connection(sock, self.io_timeout)
        if conn is not None:
          self._conns.add(conn)
      if busy:
        threading.Thread(target=_refuse, args=(sock, self.max_clients), daemon=True).start()
        continue
      threading.Thread(target=self._read, args=(conn,), daemon=True, name='reader').start()
      threading.Thread(target=self._write, args=(conn,), daemon=True, name='writer').start()

  def start(self) -> 'Server':
    """Serves from a background thread (in-process use, tests)."""
    threading.Thread(target=self.serve_forever, daemon=True, name='accept').start()
    return self

  def close(self) -> None:
    """Stops accepting, drops every client (as a service that dies would) and removes its own
    socket file."""
    if self._closed.is_set():
      return
    self._closed.set()
    try:
      self.listener.shutdown(socket.SHUT_RDWR)
    except OSError:
      pass
    self.listener.close()
    with self._conns_lock:
      conns = list(self._conns)
    for conn in conns:
      conn.close()
    if self._socket_file is not None:
      path, dev, ino = self._socket_file
      try:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == (dev, ino):
          os.remove(path)
      except OSError:
        pass

  # -- one client ----------------------------------------------------------------------------
  def _read(self, conn: _Connection) -> None:
    sock = conn.sock
    try:
      sock.settimeout(self.handshake_timeout)
      wire.greet(sock, self.key, self.handshake_timeout)
      while not self._closed.is_set():
        if not _wait_readable(sock, self._closed):
          break
        header = wire.recv_json(sock, self.io_timeout)
        try:
          request_id, shape, dtype, prompts, size = wire.parse_header(
              header, self.max_request_bytes)
        except wire.BadRequest as e:
          wire.recv_frame(sock, self.max_request_bytes, self.io_timeout)   # stay in step
          conn.reply(header.get('id'), error=f'bad request: {e}')
          continue
        payload = wire.recv_frame(sock, self.max_request_bytes, self.io_timeout)
        if len(payload) != size:
          conn.reply(request_id, error=f'bad request: {len(payload)} bytes of data for shape '
                     f'{list(shape)} of {dtype} ({size} bytes)')
          continue
        x = np.frombuffer(payload, np.dtype(dtype)).reshape(shape)
        if not self._enqueue(_Request(conn, request_id, x, prompts), size):
          conn.reply(request_id, error='busy: the service has more data waiting to be scored '
                     f'than --max_queue_mb allows for {self.io_timeout:g} s; try again')
    except wire.ProtocolError as e:
      conn.reply(None, error=f'protocol error: {e}')
      conn.replies.put(None)    # the writer sends it, then the connection closes
      return
    except (EOFError, OSError, ValueError):
      pass
    self._drop(conn)

  def _write(self, conn: _Connection) -> None:
    try:
      while True:
        item = conn.replies.get()
        if item is None:
          break
        wire.send_reply(conn.writer, *item)
    except (OSError, ValueError):
      pass
    self._drop(conn)

  def _drop(self, conn: _Connection) -> None:
    conn.close()
    with self._conns_lock:
      self._conns.discard(conn)

  def _enqueue(self, request: _Request, size: int) -> bool:
    deadline = time.monotonic() + self.io_timeout
    with self._room:
      while self._queued_bytes + size > self.max_queue_bytes and self._queued_bytes > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self._closed.is_set():
          return False
        self._room.wait(min(remaining, 1.0))
      self._queued_bytes += size
    self._queue.put((request, size))
    return True

  # -- scoring -------------------------------------------------------------------------------
  def _work(self) -> None:
    while True:
      batch = [self._queue.get()]
      rows = len(batch[0][0].x)
      while rows < self.max_batch:  # whatever else is waiting joins this batch
        try:
          item = self._queue.get(timeout=self.max_wait_s)
        except queue.Empty:
          break
        batch.append(item)
        rows += len(item[0].x)
      with self._room:
        self._queued_bytes -= sum(size for _, size in batch)
        self._room.notify_all()
      requests = [r for r, _ in batch if not r.conn.closed.is_set()]
      groups = {}
      for request in requests:   # one scorer call per array shape and dtype
        groups.setdefault((request.x.shape[1:], request.x.dtype.name), []).append(request)
      for group in groups.values():
        try:
          self._score_group(group)
        except Exception as e:  # pylint: disable=broad-except
          for request in group:   # never let one batch end the scoring thread
            request.conn.reply(request.id, error=f'{type(e).__name__}: {e}')

  def _score_group(self, group) -> None:
    x = np.concatenate([r.x for r in group])
    with_prompts = all(r.prompts is not None for r in group)
    prompts = [p for r in group for p in r.prompts] if with_prompts else None
    try:
      scores = []
      for start in range(0, len(x), self.max_batch):
        chunk = slice(start, start + self.max_batch)
        self.num_calls += 1
        out = np.asarray(self.score(x[chunk], None if prompts is None else prompts[chunk]),
                         np.float64)
        if out.shape != (len(x[chunk]),):
          raise ValueError(f'the scorer returned shape {out.shape} for {len(x[chunk])} inputs')
        scores.append(out)
      scores = np.concatenate(scores)
    except Exception as e:  # pylint: disable=broad-except
      for request in group:
        request.conn.reply(request.id, error=f'{type(e).__name__}: {e}')
      return
    start = 0
    for request in group:
      request.conn.reply(request.id, scores[start:start + len(request.x)])
      start += len(request.x)


def _wait_readable(sock, closed: threading.Event) -> bool:
  """Waits (without a deadline: a client may be idle between searches) until the socket has
  data or the service closes; False when it closed."""
  while not closed.is_set():
    try:
      ready, _, _ = select.select([sock], [], [], 1.0)
    except (OSError, ValueError):
      return False
    if ready:
      return True
  return False


def _refuse(sock, max_clients: int) -> None:
  try:
    sock.settimeout(5.0)
    wire.send_json(sock, {'service': 'reward', 'version': wire.VERSION,
                          'error': f'busy: {max_clients} clients are connected '
                                   '(--max_clients)'})
  except OSError:
    pass
  finally:
    sock.close()


def _is_loopback(host: str) -> bool:
  try:
    return all(ipaddress.ip_address(info[4][0]).is_loopback
               for info in socket.getaddrinfo(host, None))
  except (OSError, ValueError):
    return False


def _clear_stale_socket(path: str) -> None:
  """Removes a Unix socket file left by a service that died (a socket nothing listens on);
  refuses any other file at that path."""
  try:
    mode = os.lstat(path).st_mode
  except FileNotFoundError:
    return
  if not stat.S_ISSOCK(mode):
    raise OSError(f'{path} exists and is not a socket; the reward service will not replace it '
                  '(give another --address).')
  probe = socket.socket(socket.AF_UNIX)
  try:
    probe.connect(path)
  except ConnectionRefusedError:
    os.remove(path)
    return
  except OSError:
    return
  finally:
    probe.close()
  raise OSError(f'another reward service is listening on {path}.')


def load_scorer(spec: str, kwargs: dict) -> Callable:
  """The scorer of factory 'package.module:function' called with kwargs."""
  module_name, _, attr = spec.partition(':')
  try:
    factory = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError, ValueError) as e:
    raise ValueError(f'--scorer {spec!r} is not an importable "module:function" ({e}).') from None
  return factory(**kwargs)


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog='python -m rewards.serve', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--scorer', required=True, help='factory "package.module:function"')
  parser.add_argument('--kwargs', default='{}', help='JSON object of the factory\'s arguments')
  parser.add_argument('--address', default='127.0.0.1:5555',
                      help='host:port (port 0 picks a free one) or a Unix socket path')
  parser.add_argument('--max_batch', type=int, default=64, help='rows per scorer call')
  parser.add_argument('--max_request_mb', type=float, default=256,
                      help='the largest request, refused before its bytes are read')
  parser.add_argument('--max_queue_mb', type=float, default=1024,
                      help='the most data waiting to be scored')
  parser.add_argument('--max_clients', type=int, default=32, help='connections at once')
  parser.add_argument('--io_timeout', type=float, default=60.0,
                      help='seconds for a whole message in or out, once begun')
  parser.add_argument('--handshake_timeout', type=float, default=10.0,
                      help='seconds for a new connection to complete the handshake')
  parser.add_argument('--allow_remote', action='store_true',
                      help='listen on a non-loopback address without REWARD_SERVICE_KEY')
  parser.add_argument('--ready_file', default='',
                      help='once listening, write the address here (for scripts and tests)')
  args = parser.parse_args(argv)
  try:
    kwargs = json.loads(args.kwargs)
    if not isinstance(kwargs, dict):
      raise ValueError('--kwargs must be a JSON object')
    score = load_scorer(args.scorer, kwargs)
    server = Server(score, parse_address(args.address), args.max_batch,
                    max_request_mb=args.max_request_mb, max_queue_mb=args.max_queue_mb,
                    max_clients=args.max_clients, io_timeout=args.io_timeout,
                    handshake_timeout=args.handshake_timeout, allow_remote=args.allow_remote)
  except (ValueError, OSError, TypeError) as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(2)

  def stop(signum, frame):
    del signum, frame
    server.close()
  signal.signal(signal.SIGTERM, stop)
  signal.signal(signal.SIGINT, stop)
  address = format_address(server.address)
  if args.ready_file:
    tmp = args.ready_file + '.tmp'
    with open(tmp, 'w') as f:
      f.write(address)
    os.replace(tmp, args.ready_file)
  print(f'serving {args.scorer} at {address}', flush=True)
  server.serve_forever()
  print(f'stopped serving at {address}', flush=True)


if __name__ == '__main__':
  main()
