"""r(x) = the score a reward service gives (rewards/serve.py): ImageReward, VQAScore or any model
that lives in its own process or on its own device, reached from inside the jitted search by a
host callback that sends uint8 images [N, H, W, 3] and their prompts (rewards/host.py).

  reward.address   where the service listens: 'host:port' or a Unix socket path
  reward.timeout   seconds any one step may take (connecting, the handshake, sending a
                   request, its answer) before the run stops

A service that is down, dies, times out or fails to score stops the run with one `error:`
line (a ServiceError, an OSError); in a sweep the point is not recorded, so a rerun resumes it.
The service is asked once on the host before compiling (a tiny batch), so a wrong address or
a scorer of the wrong output shape fails before any compilation. No gradient: it cannot drive
DPS guidance.
"""

import itertools
import math
import socket
import threading

import numpy as np

from rewards import base
from rewards import host
from rewards import wire


class ServiceError(OSError):
  """The reward service could not be reached, died, timed out or failed to score."""


class Client:
  """score(x [n, ...] uint8 or float32, prompts or None) -> float32 [n], from the service at
  `address`. One connection per calling thread (callbacks on several devices run at once, and
  the service batches them together); each reply is matched to its request by id. `timeout`
  bounds every step: connecting and the handshake, sending the request, and the answer."""

  def __init__(self, address: str, timeout: float = 300.0):
    self.name = str(address)
    self.address = wire.parse_address(address)
    self.timeout = float(timeout)
    self._local = threading.local()
    self._ids = itertools.count()
    self._ids_lock = threading.Lock()

  def _connection(self):
    sock = getattr(self._local, 'sock', None)
    if sock is None:
      try:
        sock = wire.connect(self.address, self.timeout)
      except OSError as e:
        raise ServiceError(f'the reward service at {self.name} is not reachable '
                           f'({type(e).__name__}: {e}); start it with python -m rewards.serve '
                           '(docs/rewards.md).') from None
      try:
        host.wait_readable(sock, self.timeout)   # the service speaks first; Ctrl-C ends the wait
        wire.join(sock, wire.authkey(), f'the reward service at {self.name}', self.timeout)
      except socket.timeout:
        sock.close()
        raise ServiceError(f'the reward service at {self.name} did not complete the handshake '
                           f'within {self.timeout:g} s (reward.timeout): is it a reward service '
                           'of this version?') from None
      except wire.HandshakeError as e:
        sock.close()
        raise ServiceError(f'{e}.') from None
      except host.Interrupted:
        sock.close()
        raise
      except (OSError, EOFError, ValueError) as e:
        sock.close()
        raise ServiceError(f'the reward service at {self.name} broke off the handshake '
                           f'({type(e).__name__}: {e}).') from None
      self._local.sock = sock
    return sock

  def _drop(self) -> None:
    sock = getattr(self._local, 'sock', None)
    self._local.sock = None
    if sock is not None:
      sock.close()

  def score(self, x, prompts=None) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8:
      x = x.astype(np.float32)
    host.check_interrupted()   # after Ctrl-C, no new connection, handshake or request
    with self._ids_lock:
      request_id = next(self._ids)
    sock = self._connection()
    try:
      sock.settimeout(self.timeout)
      wire.send_request(sock, request_id, x, prompts)
      host.wait_readable(sock, self.timeout)   # Ctrl-C ends this wait at once
      reply = wire.recv_json(sock, self.timeout)
    except host.Interrupted:
      self._drop()
      raise
    except socket.timeout:
      self._drop()  # its late answer must not be read as the next request's
      raise ServiceError(f'the reward service at {self.name} did not answer within '
                         f'{self.timeout:g} s (reward.timeout; taking the request counts too).'
                         ) from None
    except (EOFError, OSError, wire.ProtocolError) as e:
      self._drop()
      raise ServiceError(f'the reward service at {self.name} closed the connection '
                         f'mid-request ({type(e).__name__}): did it die?') from None
    if reply.get('error'):
      if reply.get('id') != request_id:
        self._drop()
      raise ServiceError(f'the reward service at {self.name} failed to score: {reply["error"]}')
    if reply.get('id') != request_id:
      self._drop()
      raise ServiceError(f'the reward service at {self.name} answered request '
                         f'{reply.get("id")} to request {request_id}.')
    return host.checked_scores(reply.get('scores'), len(x))

  def close(self) -> None:
    self._drop()


def build(cfg, shape, prompts=()) -> base.Reward:
  address = base.required(cfg, 'address', cfg.name)
  wire.parse_address(address)
  timeout = float(cfg.get('timeout', 300.0))
  if not (math.isfinite(timeout) and timeout > 0):
    raise ValueError(f'reward.timeout must be a positive number of seconds, got {timeout}.')
  client = Client(address, timeout)
  prompts = list(prompts) or ['']
  return base.Reward(cfg.name, host.host_image_reward(client.score, prompts),
                     probe=host.probe_image_reward(client.score, prompts, shape))


REWARD = base.RewardKind(build, fields=dict(address='', timeout=300.0), images=True,
                         order=35)
