"""The reward service's wire protocol (rewards/serve.py serves it, rewards/service.py calls it).

Messages are length-prefixed frames on a stream socket: an 8-byte big-endian length, then that
many bytes. Nothing is pickled. Every read and write has a deadline (the socket's timeout), and
every frame has a size limit checked before its bytes are read.

  on connect  service -> {"service": "reward", "version": 1, "auth": bool, "nonce": hex}
  with a key  client  -> {"hmac": hex, "nonce": hex}  HMAC-SHA256(key, service nonce) and the
                                                     client's own nonce
              service -> {"ok": true, "hmac": hex}    HMAC-SHA256(key, client nonce), or
                         {"error": "one line"}        and the connection closes
  request     client  -> {"id", "shape", "dtype", "prompts"}, then the array's raw C-order bytes
  reply       service -> {"id", "scores": [n floats]} or {"id", "error": "one line"}

Set the same REWARD_SERVICE_KEY in the environment of the service and of its clients to
authenticate both ends; a key on one side only is refused with a line that says so.
"""

import hashlib
import hmac
import json
import math
import os
import secrets
import socket
import struct
import time

import numpy as np

VERSION = 1
KEY_ENV = 'REWARD_SERVICE_KEY'
DTYPES = ('uint8', 'float32')
MAX_HEADER_BYTES = 4 << 20          # a request's JSON header, its prompts included
MAX_NDIM = 8
_LENGTH = struct.Struct('>Q')


class ProtocolError(ValueError):
  """A frame or message that breaks the protocol; the connection cannot go on."""


class HandshakeError(ConnectionError):
  """The other end is no reward service of this protocol, or the keys do not match."""


class BadRequest(ValueError):
  """A well-framed request that cannot be scored; it is answered with an error."""


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


def connect(address, timeout: float) -> socket.socket:
  """A connected stream socket whose every operation times out after `timeout` seconds."""
  if isinstance(address, str):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
      sock.connect(address)
    except BaseException:
      sock.close()
      raise
    return sock
  sock = socket.create_connection(address, timeout=timeout)
  sock.settimeout(timeout)
  return sock


# -- frames ----------------------------------------------------------------------------------
def send_frame(sock, data: bytes) -> None:
  """Sends one frame; the socket's timeout bounds the whole send (sendall's total duration)."""
  header = _LENGTH.pack(len(data))
  if len(data) < (1 << 16):
    sock.sendall(header + data)
  else:
    sock.sendall(header)
    sock.sendall(data)


def _recv_exactly(sock, n: int, deadline: float) -> bytes:
  buf = bytearray(n)
  view, got = memoryview(buf), 0
  while got < n:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      raise socket.timeout('the other end did not send a whole message in time')
    sock.settimeout(remaining)
    k = sock.recv_into(view[got:], n - got)
    if k == 0:
      raise EOFError('the other end closed the connection')
    got += k
  return bytes(buf)


def recv_frame(sock, max_bytes: int, timeout: float) -> bytes:
  """One frame of at most max_bytes, whole within `timeout` seconds (however slowly its bytes
  drip in); ProtocolError for a larger one, before its bytes are read."""
  deadline = time.monotonic() + timeout
  (n,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size, deadline))
  if n > max_bytes:
    raise ProtocolError(f'a frame of {n} bytes is over the limit of {max_bytes}')
  return _recv_exactly(sock, n, deadline)


def send_json(sock, obj) -> None:
  send_frame(sock, json.dumps(obj).encode())


def recv_json(sock, timeout: float, max_bytes: int = MAX_HEADER_BYTES) -> dict:
  raw = recv_frame(sock, max_bytes, timeout)
  try:
    obj = json.loads(raw.decode())
  except (UnicodeDecodeError, ValueError):
    raise ProtocolError('a message is not JSON') from None
  if not isinstance(obj, dict):
    raise ProtocolError('a message is not a JSON object')
  return obj


# -- the handshake ---------------------------------------------------------------------------
def _mac(key: bytes, nonce_hex: str) -> str:
  return hmac.new(key, bytes.fromhex(nonce_hex), hashlib.sha256).hexdigest()


def greet(sock, key, timeout: float) -> None:
  """The service's side of the handshake; ProtocolError when the client fails it."""
  nonce = secrets.token_hex(32)
  send_json(sock, {'service': 'reward', 'version': VERSION, 'auth': key is not None,
                   'nonce': nonce})
  if key is None:
    return
  answer = recv_json(sock, timeout, 4096)
  proof, client_nonce = answer.get('hmac'), answer.get('nonce')
  if not (isinstance(proof, str) and isinstance(client_nonce, str)
          and hmac.compare_digest(proof, _mac(key, nonce))):
    send_json(sock, {'error': 'authentication failed: REWARD_SERVICE_KEY differs'})
    raise ProtocolError('a client failed authentication')
  try:
    send_json(sock, {'ok': True, 'hmac': _mac(key, client_nonce)})
  except ValueError:
    raise ProtocolError('a client sent a malformed nonce') from None


def join(sock, key, name: str, timeout: float) -> None:
  """The client's side of the handshake; HandshakeError naming what went wrong."""
  hello = recv_json(sock, timeout, 4096)
  if hello.get('error'):
    raise HandshakeError(f'{name} refused the connection: {hello["error"]}')
  if hello.get('service') != 'reward' or hello.get('version') != VERSION:
    raise HandshakeError(f'{name} is not a reward service of this protocol (version '
                          f'{VERSION})')
  if bool(hello.get('auth')) != (key is not None):
    raise HandshakeError(
        f'{name} requires a key: set REWARD_SERVICE_KEY to the service\'s' if hello.get('auth')
        else f'{name} uses no key, but REWARD_SERVICE_KEY is set here: unset it or restart the '
        'service with the same key')
  if key is None:
    return
  nonce = secrets.token_hex(32)
  send_json(sock, {'hmac': _mac(key, str(hello.get('nonce', ''))), 'nonce': nonce})
  reply = recv_json(sock, timeout, 4096)
  if reply.get('error'):
    raise HandshakeError(f'{name} refused the connection: {reply["error"]}')
  if not (isinstance(reply.get('hmac'), str)
          and hmac.compare_digest(reply['hmac'], _mac(key, nonce))):
    raise HandshakeError(f'{name} did not prove it holds REWARD_SERVICE_KEY')


# -- requests and replies --------------------------------------------------------------------
def send_request(sock, request_id: int, x: np.ndarray, prompts) -> None:
  x = np.ascontiguousarray(x)
  if x.dtype.name not in DTYPES:
    raise ValueError(f'the reward service takes {" or ".join(DTYPES)} arrays, not {x.dtype}.')
  send_json(sock, {'id': request_id, 'shape': list(x.shape), 'dtype': x.dtype.name,
                   'prompts': None if prompts is None else [str(p) for p in prompts]})
  send_frame(sock, x.tobytes())


def parse_header(header: dict, max_request_bytes: int):
  """(id, shape, dtype, prompts, payload bytes) of a request header; BadRequest naming what is
  wrong (the payload is still read, to keep the stream in step, unless it is too large)."""
  request_id = header.get('id')
  if not isinstance(request_id, int) or isinstance(request_id, bool):
    raise BadRequest('the request has no integer "id"')
  shape, dtype, prompts = header.get('shape'), header.get('dtype'), header.get('prompts')
  if dtype not in DTYPES:
    raise BadRequest(f'dtype {dtype!r} is not one of {", ".join(DTYPES)}')
  if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_NDIM
      or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
    raise BadRequest(f'shape {shape!r} is not a list of 1 to {MAX_NDIM} non-negative integers '
                     '(one row per input first)')
  if shape[0] < 1:
    raise BadRequest('the request has no rows')
  size = math.prod(shape) * np.dtype(dtype).itemsize
  if size > max_request_bytes:
    raise ProtocolError(f'a request of {size} bytes is over the limit of {max_request_bytes} '
                        '(--max_request_mb)')
  if prompts is not None and (not isinstance(prompts, list) or len(prompts) != shape[0]
                              or not all(isinstance(p, str) for p in prompts)):
    raise BadRequest(f'"prompts" must be null or a list of {shape[0]} strings, one per row')
  return request_id, tuple(shape), dtype, prompts, size


def send_reply(sock, request_id, scores=None, error: str = '') -> None:
  reply = {'id': request_id}
  if error:
    reply['error'] = ' '.join(str(error).split())
  else:
    reply['scores'] = [float(s) for s in scores]
  send_json(sock, reply)
