"""The reward service against hostile clients (rewards/serve.py, rewards/wire.py): a real
`python -m rewards.serve` process, clients that send malformed requests, stall the handshake,
drip bytes, hold connections, never read, or use the wrong key; then a bounded soak of honest
and hostile clients at once in which every honest request is answered correctly."""

import json
import os
import random
import signal
import socket
import struct
import threading
import time

import numpy as np
import pytest

from rewards import service
from rewards import wire
from tests.rewards import test_service

LINEAR = 'tests.rewards.service_fixture:linear'
WEIGHTS = np.array([1.0, 0.5], np.float32)


def start(tmp_path, *flags, key=None, address='127.0.0.1:0', expect_ready=True):
  """python -m rewards.serve serving x @ (1, 0.5); returns (process, address)."""
  env = dict(os.environ)
  env.pop(wire.KEY_ENV, None)
  if key:
    env[wire.KEY_ENV] = key
  return test_service.start_service(LINEAR, address, str(tmp_path / f'ready{random.random()}'),
                                    '{"weights": [1.0, 0.5]}', *flags, env=env,
                                    wait=expect_ready)


@pytest.fixture
def served(tmp_path):
  procs = []

  def run(*flags, key=None):
    proc, address = start(tmp_path, *flags, key=key)
    procs.append(proc)
    return address
  yield run
  for proc in procs:
    proc.kill()
    proc.wait(timeout=30)


def _raw(address, timeout=5.0):
  """A raw connection that has done the (keyless) handshake."""
  sock = wire.connect(wire.parse_address(address), timeout)
  wire.join(sock, None, address, timeout)
  return sock


def _frame(sock, data: bytes):
  sock.sendall(struct.pack('>Q', len(data)) + data)


def _honest(address, n=3, seed=0, timeout=20.0):
  x = np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)
  scores = service.Client(address, timeout).score(x)
  np.testing.assert_allclose(scores, x @ WEIGHTS, rtol=1e-6)


def test_malformed_requests_are_answered_and_the_service_keeps_serving(served):
  address = served()
  sock = _raw(address)
  cases = [
      ({'id': 1, 'shape': [], 'dtype': 'float32', 'prompts': None}, b'\0' * 4, 'shape []'),
      ({'id': 2, 'shape': [2, -1], 'dtype': 'float32', 'prompts': None}, b'', 'shape [2, -1]'),
      ({'id': 3, 'shape': [2, 2], 'dtype': 'float32', 'prompts': None}, b'\0' * 5,
       '5 bytes of data'),
      ({'id': 4, 'shape': [2, 2], 'dtype': 'float64', 'prompts': None}, b'\0' * 32,
       "dtype 'float64'"),
      ({'id': 5, 'shape': [2, 2], 'dtype': 'float32', 'prompts': ['a']}, b'\0' * 16,
       'list of 2 strings'),
      ({'id': 'x', 'shape': [1, 2], 'dtype': 'float32', 'prompts': None}, b'\0' * 8,
       'integer "id"'),
      ({'id': 7, 'shape': [0, 2], 'dtype': 'float32', 'prompts': None}, b'', 'no rows'),
      ({'id': 8, 'shape': [1, 3], 'dtype': 'float32', 'prompts': None}, b'\0' * 12,
       'ValueError'),   # the scorer itself fails (3 columns for 2 weights): answered too
  ]
  for header, payload, message in cases:
    _frame(sock, json.dumps(header).encode())
    _frame(sock, payload)
    reply = wire.recv_json(sock, 10.0)
    assert message in reply['error'], (header, reply)
  _honest(address)                     # the scoring thread survived every one of them
  # A frame that is not JSON breaks the protocol: answered, then the connection closes.
  _frame(sock, b'\xff\xfe not json')
  assert 'protocol error' in wire.recv_json(sock, 10.0)['error']
  with pytest.raises((EOFError, OSError)):
    wire.recv_json(sock, 5.0)
  # A request over --max_request_mb is refused before its bytes are read.
  sock = _raw(address)
  _frame(sock, json.dumps({'id': 9, 'shape': [1 << 20, 1 << 20], 'dtype': 'uint8',
                           'prompts': None}).encode())
  assert 'over the limit' in wire.recv_json(sock, 10.0)['error']
  sock = _raw(address)
  sock.sendall(struct.pack('>Q', 1 << 40))     # a frame length of a terabyte
  assert 'over the limit' in wire.recv_json(sock, 10.0)['error']
  _honest(address, seed=1)


def test_a_stalled_handshake_or_a_dripping_client_stalls_nobody(served):
  key = 'k' * 16
  address = served('--handshake_timeout=1', '--io_timeout=1', key=key)
  silent = wire.connect(wire.parse_address(address), 5.0)       # opens, never answers
  drip = wire.connect(wire.parse_address(address), 5.0)
  os.environ[wire.KEY_ENV] = key
  try:
    wire.join(drip, key.encode(), address, 5.0)
    start = time.time()
    _honest(address)                  # served at once, while both hold their connections
    assert time.time() - start < 5.0
    dropped = time.time()
    with pytest.raises((EOFError, OSError)):   # a message dripping in slower than allowed
      for byte in struct.pack('>Q', 100) + b'{' * 100:
        drip.sendall(bytes([byte]))
        time.sleep(0.2)
      wire.recv_json(drip, 5.0)
    assert time.time() - dropped < 5.0     # dropped about --io_timeout after it began
    silent.settimeout(5.0)
    assert silent.recv(1 << 16) != b'' and silent.recv(1 << 16) == b''   # hello, then closed
  finally:
    del os.environ[wire.KEY_ENV]


def test_keys_on_one_side_only_or_different_are_refused_at_once(served, monkeypatch):
  keyless = served()
  keyed = served(key='secret-one')
  for address, key, message in ((keyless, 'secret-one', 'uses no key, but REWARD_SERVICE_KEY'),
                                (keyed, None, 'requires a key'),
                                (keyed, 'secret-two', 'authentication failed')):
    if key:
      monkeypatch.setenv(wire.KEY_ENV, key)
    else:
      monkeypatch.delenv(wire.KEY_ENV, raising=False)
    start = time.time()
    with pytest.raises(service.ServiceError, match=message):
      service.Client(address, timeout=30).score(np.zeros((1, 2), np.float32))
    assert time.time() - start < 5.0
  monkeypatch.setenv(wire.KEY_ENV, 'secret-one')
  _honest(keyed)


def test_every_client_step_has_a_deadline(tmp_path):
  """A peer that accepts and never speaks (the handshake), and one that greets and then never
  reads (the send of a large request): both end in reward.timeout, not a hang."""
  mute = socket.create_server(('127.0.0.1', 0))
  deaf = socket.create_server(('127.0.0.1', 0))
  held = []

  def greet_then_ignore():
    conn, _ = deaf.accept()
    held.append(conn)
    wire.send_json(conn, {'service': 'reward', 'version': wire.VERSION, 'auth': False,
                          'nonce': '00'})
  threading.Thread(target=greet_then_ignore, daemon=True).start()
  big = np.zeros((64, 512, 512, 3), np.uint8)    # 50 MB: more than the socket buffers hold
  for server, x, message in ((mute, big[:1], 'did not complete the handshake within 1 s'),
                             (deaf, big, 'did not answer within 1 s')):
    address = wire.format_address(server.getsockname()[:2])
    start = time.time()
    with pytest.raises(service.ServiceError, match=message):
      service.Client(address, timeout=1.0).score(x)
    assert time.time() - start < 10.0
  mute.close()
  deaf.close()


def test_the_listen_address_is_checked_and_nothing_else_is_removed(tmp_path):
  precious = tmp_path / 'notes.txt'
  precious.write_text('keep me')
  proc, _ = start(tmp_path, address=str(precious), expect_ready=False)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 2 and err.count('error:') == 1
  assert 'exists and is not a socket' in err and precious.read_text() == 'keep me'
  proc, _ = start(tmp_path, address='0.0.0.0:0', expect_ready=False)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 2 and 'would let any host reach the scorer' in err


def test_sigterm_stops_the_service_and_removes_its_socket(tmp_path):
  path = tmp_path / 'reward.sock'
  proc, address = start(tmp_path, address=str(path))
  _honest(address)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=30)
  assert proc.returncode == 0 and 'stopped serving' in out
  assert not path.exists()
  proc, address = start(tmp_path, address=str(path))   # the path is free again
  proc.kill()
  proc.wait(timeout=30)
  proc, address = start(tmp_path, address=str(path))   # a killed service's socket is stale
  _honest(address)
  proc.kill()
  proc.wait(timeout=30)


def test_too_many_clients_are_told_busy(served):
  address = served('--max_clients=2')
  held = [_raw(address), _raw(address)]
  with pytest.raises(service.ServiceError, match='busy: 2 clients'):
    service.Client(address, timeout=10).score(np.zeros((1, 2), np.float32))
  held[0].close()
  time.sleep(0.5)
  _honest(address)


def test_soak_honest_requests_are_all_answered_among_hostile_clients(served):
  """For 8 s, 6 honest threads send random batches while 4 hostile threads cycle through
  malformed requests, stalled handshakes, dripping bytes and dropped connections."""
  address = served('--handshake_timeout=1', '--io_timeout=1')
  stop_at = time.time() + 8.0
  answered, failures = [0], []

  def honest(seed):
    rng = np.random.default_rng(seed)
    client = service.Client(address, timeout=20)
    while time.time() < stop_at:
      x = rng.normal(size=(int(rng.integers(1, 9)), 2)).astype(np.float32)
      try:
        np.testing.assert_allclose(client.score(x), x @ WEIGHTS, rtol=1e-6)
        answered[0] += 1
      except Exception as e:  # pylint: disable=broad-except
        failures.append(repr(e))

  def hostile(seed):
    rng = random.Random(seed)
    while time.time() < stop_at:
      try:
        sock = wire.connect(wire.parse_address(address), 3.0)
        kind = rng.randrange(4)
        if kind == 0:      # never finishes the handshake
          time.sleep(0.3)
        else:
          wire.join(sock, None, address, 3.0)
          if kind == 1:    # a 0-d array
            _frame(sock, json.dumps({'id': 0, 'shape': [], 'dtype': 'float32',
                                     'prompts': None}).encode())
            _frame(sock, b'\0' * 4)
          elif kind == 2:  # half a frame, then gone
            sock.sendall(struct.pack('>Q', 1000) + b'{"id"')
          else:            # garbage
            sock.sendall(bytes(rng.randrange(256) for _ in range(64)))
        sock.close()
      except OSError:
        pass

  threads = ([threading.Thread(target=honest, args=(s,)) for s in range(6)]
             + [threading.Thread(target=hostile, args=(s,)) for s in range(4)])
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=60)
  assert not failures, failures[:3]
  assert answered[0] > 50
