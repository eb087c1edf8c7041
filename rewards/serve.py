"""A reward service: a scorer run in its own process (or on its own device), reached over a
socket by the `service` reward (rewards/service.py) from inside a jitted search.

  python -m rewards.serve --scorer=rewards.scorers:image_reward --address=127.0.0.1:5555

`--scorer` names a factory 'package.module:function'; it is called once, with the JSON object
of `--kwargs` as keyword arguments, and returns score(x [n, ...] numpy, prompts: n str) -> [n]
(rewards/scorers.py has adapters for ImageReward, VQAScore and the project's own rewards).

The service batches: requests that arrive while a batch is being scored (from several searches,
devices or threads) are scored together, up to --max_batch rows per call of the scorer, and
each request gets back its own scores in its own order. A scorer that raises answers every
request of that batch with its error line; the service keeps serving.

Wire format (multiprocessing.connection's length-prefixed messages, never pickled objects):
  request  = header, payload    header: JSON {"id", "shape", "dtype", "prompts"}
                                payload: the array's raw C-order bytes (uint8 or float32)
  reply    = JSON {"id", "scores": [n floats]} or {"id", "error": "one line"}
Set the same REWARD_SERVICE_KEY in the environment of the service and of its clients to make
the connection authenticated (an HMAC challenge, multiprocessing's authkey).
"""

import importlib
import json
import os
import queue
import socket
import sys
import threading
from multiprocessing import connection
from typing import Callable

import numpy as np

DTYPES = ('uint8', 'float32')
KEY_ENV = 'REWARD_SERVICE_KEY'


def authkey():
  """The shared key from $REWARD_SERVICE_KEY, or None (no authentication)."""
  key = os.environ.get(KEY_ENV, '')
  return key.encode() if key else None


def parse_address(address: str):
  """'host:port' -> (host, port); a path (containing '/') -> a Unix socket path."""
  address = str(address).strip()
  if '/' in address:
    return address
  host, sep, port = address.rpartition(':')
  if not sep or not host or not port.isdigit() or int(port) > 65535:
    raise ValueError(f'reward service address {address!r} is not "host:port" or a socket path.')
  return host, int(port)


def format_address(address) -> str:
  return address if isinstance(address, str) else f'{address[0]}:{address[1]}'


# -- the wire format -------------------------------------------------------------------------
def send_request(conn, request_id: int, x: np.ndarray, prompts) -> None:
  x = np.ascontiguousarray(x)
  if x.dtype.name not in DTYPES:
    raise ValueError(f'the reward service takes {" or ".join(DTYPES)} arrays, not {x.dtype}.')
  header = {'id': request_id, 'shape': list(x.shape), 'dtype': x.dtype.name,
            'prompts': None if prompts is None else [str(p) for p in prompts]}
  conn.send_bytes(json.dumps(header).encode())
  conn.send_bytes(x.tobytes())


def receive_request(conn):
  """(id, x, prompts) of the next request on conn; raises EOFError when the client left."""
  header = json.loads(conn.recv_bytes())
  if header.get('dtype') not in DTYPES:
    raise ValueError(f'unsupported dtype {header.get("dtype")!r}')
  x = np.frombuffer(conn.recv_bytes(), np.dtype(header['dtype']))
  x = x.reshape(tuple(int(n) for n in header['shape']))
  prompts = header.get('prompts')
  if prompts is not None and len(prompts) != len(x):
    raise ValueError(f'{len(prompts)} prompts for {len(x)} inputs')
  return int(header['id']), x, prompts


def send_reply(conn, request_id: int, scores=None, error: str = '') -> None:
  reply = {'id': request_id}
  if error:
    reply['error'] = ' '.join(str(error).split())
  else:
    reply['scores'] = [float(s) for s in scores]
  conn.send_bytes(json.dumps(reply).encode())


# -- the service -----------------------------------------------------------------------------
class _Request:
  def __init__(self, conn, lock, request_id, x, prompts):
    self.conn, self.lock, self.id, self.x, self.prompts = conn, lock, request_id, x, prompts

  def reply(self, scores=None, error: str = '') -> None:
    try:
      with self.lock:
        send_reply(self.conn, self.id, scores, error)
    except OSError:
      pass  # the client left; its search has ended


class Server:
  """Serves score(x, prompts) -> [n] on `address` ((host, port), port 0 for a free one, or a
  Unix socket path) until close(). Requests are queued by one reader thread per connection and
  scored in batches by one worker thread, in arrival order."""

  def __init__(self, score: Callable, address=('127.0.0.1', 0), max_batch: int = 64,
               max_wait_s: float = 0.005):
    if max_batch < 1:
      raise ValueError(f'max_batch must be >= 1, got {max_batch}.')
    self.score, self.max_batch, self.max_wait_s = score, int(max_batch), float(max_wait_s)
    if isinstance(address, str) and os.path.exists(address):
      _remove_stale_socket(address)
    self.listener = connection.Listener(address, authkey=authkey())
    self.address = self.listener.address
    self.requests = queue.Queue()
    self.num_calls = 0     # calls of the scorer, for tests and logs
    self._closed = threading.Event()
    self._conns = set()
    threading.Thread(target=self._work, daemon=True).start()

  def serve_forever(self) -> None:
    while not self._closed.is_set():
      try:
        conn = self.listener.accept()
      except (OSError, EOFError, connection.AuthenticationError):
        continue
      if self._closed.is_set():
        conn.close()
        return
      threading.Thread(target=self._read, args=(conn,), daemon=True).start()

  def start(self) -> 'Server':
    """Serves from a background thread (in-process use, tests)."""
    threading.Thread(target=self.serve_forever, daemon=True).start()
    return self

  def close(self) -> None:
    """Stops accepting and drops every client, as a service that dies would."""
    self._closed.set()
    try:  # wakes the accept() of serve_forever, which then returns
      connection.Client(self.address, authkey=authkey()).close()
    except (OSError, EOFError, connection.AuthenticationError):
      pass
    self.listener.close()
    for conn in list(self._conns):
      _shutdown(conn)

  def _read(self, conn) -> None:
    lock = threading.Lock()
    self._conns.add(conn)
    with conn:
      while not self._closed.is_set():
        try:
          request_id, x, prompts = receive_request(conn)
        except (EOFError, OSError):
          break
        except (ValueError, KeyError, TypeError) as e:
          send_reply(conn, -1, error=f'malformed request: {e}')
          break
        self.requests.put(_Request(conn, lock, request_id, x, prompts))
    self._conns.discard(conn)

  def _work(self) -> None:
    while True:
      batch = [self.requests.get()]
      rows = len(batch[0].x)
      while rows < self.max_batch:  # whatever else is waiting joins this batch
        try:
          request = self.requests.get(timeout=self.max_wait_s)
        except queue.Empty:
          break
        batch.append(request)
        rows += len(request.x)
      groups = {}
      for request in batch:   # one scorer call per array shape and dtype
        groups.setdefault((request.x.shape[1:], request.x.dtype.name), []).append(request)
      for group in groups.values():
        self._score_group(group)

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
      scores = np.concatenate(scores) if scores else np.zeros((0,))
    except Exception as e:  # pylint: disable=broad-except
      for request in group:
        request.reply(error=f'{type(e).__name__}: {e}')
      return
    start = 0
    for request in group:
      request.reply(scores[start:start + len(request.x)])
      start += len(request.x)


def _remove_stale_socket(path: str) -> None:
  """A Unix socket file left by a service that died: removed when nothing listens on it."""
  probe = socket.socket(socket.AF_UNIX)
  try:
    probe.connect(path)
  except ConnectionRefusedError:
    os.remove(path)
    return
  except OSError:
    return   # not a socket: Listener's own error names it
  finally:
    probe.close()
  raise OSError(f'another reward service is listening on {path}.')


def _shutdown(conn) -> None:
  """Ends a connection that another thread may be blocked reading."""
  try:
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
  except OSError:
    pass


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
  parser.add_argument('--ready_file', default='',
                      help='once listening, write the address here (for scripts and tests)')
  args = parser.parse_args(argv)
  try:
    kwargs = json.loads(args.kwargs)
    if not isinstance(kwargs, dict):
      raise ValueError('--kwargs must be a JSON object')
    score = load_scorer(args.scorer, kwargs)
    server = Server(score, parse_address(args.address), args.max_batch)
  except (ValueError, OSError, TypeError) as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(2)
  address = format_address(server.address)
  if args.ready_file:
    tmp = args.ready_file + '.tmp'
    with open(tmp, 'w') as f:
      f.write(address)
    os.replace(tmp, args.ready_file)
  print(f'serving {args.scorer} at {address}', flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    server.close()


if __name__ == '__main__':
  main()
