"""The reward service for real: a separate process serving a small model, requests from every
search method, order under concurrent batches, a service that dies or hangs, a sweep that
resumes after it, and held-out rewards scored beside the searched one."""

import os
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewards
import search
from configs import common as config_common
from configs import sd as sd_config
from experiments import runtime
from experiments import search as search_exp
from experiments import sweep
from rewards import analytic
from rewards import base
from rewards import host
from rewards import serve
from rewards import service
from tests.rewards import service_fixture
from tests.search import common

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = ('a red cat', 'a blue dog house')

pytestmark = pytest.mark.usefixtures('fast_compilation')


def start_service(scorer: str, address: str, ready, kwargs: str = '{}', *flags, env=None,
                  wait=True):
  """python -m rewards.serve in its own process; returns (process, its address), or
  (process, None) without waiting for it to listen."""
  if os.path.exists(ready):
    os.remove(ready)
  proc = subprocess.Popen([sys.executable, '-m', 'rewards.serve', f'--scorer={scorer}',
                           f'--kwargs={kwargs}', f'--address={address}', f'--ready_file={ready}',
                           *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  if not wait:
    return proc, None
  deadline = time.time() + 120
  while not os.path.exists(ready):
    if proc.poll() is not None or time.time() > deadline:
      proc.kill()
      raise RuntimeError(f'the service did not start: {proc.communicate()[1][-2000:]}')
    time.sleep(0.05)
  with open(ready) as f:
    return proc, f.read()


def stop(proc) -> None:
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=30)


@pytest.fixture(scope='module')
def clip_service(sd_tiny, tmp_path_factory):
  """The project's CLIP score on the tiny CLIP, served by another process."""
  ready = str(tmp_path_factory.mktemp('svc') / 'ready')
  kwargs = f'{{"name": "clip_score", "model": "{sd_tiny}/clip"}}'
  proc, address = start_service('rewards.scorers:project_reward', '127.0.0.1:0', ready, kwargs)
  yield address
  stop(proc)


def _images(n, seed, size=16):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_a_service_process_scores_as_the_model_called_directly_in_request_order(sd_tiny,
                                                                                clip_service):
  """Eight threads send batches of different sizes and prompts at once; each gets its own
  scores, equal to the in-graph clip_score reward on the same uint8 images."""
  cfg = config_common.reward_config(name='clip_score', model=f'{sd_tiny}/clip')
  direct = rewards.get_reward(cfg, (16, 16, 3))
  call = jax.jit(lambda rw, x, c: rw(x, c))
  client = service.Client(clip_service, timeout=60)
  results, errors = {}, []

  def worker(k):
    try:
      images, prompt = _images(2 + k, k), PROMPTS[k % 2] + ' ' * k
      results[k] = (images, prompt, client.score(images, [prompt] * len(images)))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors
  for k, (images, prompt, scores) in results.items():
    text = direct.encode_text([prompt])[0]
    expected = call(direct, jnp.asarray(images, jnp.float32) / 127.5 - 1.0,
                    {'reward_text': jnp.asarray(text)})
    np.testing.assert_allclose(scores, np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_concurrent_requests_are_batched_and_answered_in_their_own_order():
  calls = []
  score = service_fixture.brightness()

  def slow(x, prompts):
    calls.append(len(x))
    time.sleep(0.3)
    return score(x, prompts)

  server = serve.Server(slow, ('127.0.0.1', 0), max_batch=100).start()
  client = service.Client(serve.format_address(server.address), timeout=30)
  out = {}
  threads = [threading.Thread(target=lambda k=k: out.setdefault(k, client.score(
      _images(1 + k, k, 4), [f'p{k}' * k] * (1 + k)))) for k in range(6)]
  for t in threads:
    t.start()
    time.sleep(0.02)
  for t in threads:
    t.join()
  for k in range(6):
    np.testing.assert_allclose(out[k], score(_images(1 + k, k, 4), [f'p{k}' * k] * (1 + k)),
                               rtol=1e-6)
  assert len(calls) < 6 and sum(calls) == sum(range(1, 7))   # later requests joined a batch
  server.close()


@pytest.fixture(scope='module')
def linear_service():
  server = serve.Server(service_fixture.linear([1.0, 0.5]), ('127.0.0.1', 0)).start()
  yield serve.format_address(server.address)
  server.close()


@pytest.mark.parametrize('method', search.METHODS)
def test_every_method_selects_through_the_service_what_the_jax_reward_selects(method,
                                                                              linear_service):
  client = service.Client(linear_service, timeout=60)
  through_service = base.stateless('service', host.host_reward(client.score))
  sampler = common.make_sampler('vp', num_steps=6)
  knobs = dict(psi_chains=2, psi_burn_in=2, psi_mcmc_steps=2) if method == 'psi' else {}
  a = common.run(method, sampler, analytic.linear((1.0, 0.5)), budget=200, num_particles=4,
                 **knobs)
  if search.get_method(method).needs_gradient:   # a service has no gradient: refused
    with pytest.raises(ValueError, match=f'search.method={method} needs a differentiable'):
      common.run(method, sampler, through_service, budget=200, num_particles=4, **knobs)
    return
  b = common.run(method, sampler, through_service, budget=200, num_particles=4)
  np.testing.assert_allclose(a.x0, b.x0, rtol=1e-5, atol=1e-5)
  assert int(a.nfe) == int(b.nfe)


def test_a_hung_or_failing_service_stops_the_program_with_its_own_error():
  def hang(x, prompts):
    del prompts
    time.sleep(2.0)
    return np.zeros(len(x))

  for scorer, timeout, message in ((hang, 0.2, 'did not answer within 0.2 s'),
                                   (lambda x, p: 1 / 0, 30, 'failed to score: ZeroDivision')):
    server = serve.Server(scorer, ('127.0.0.1', 0)).start()
    client = service.Client(serve.format_address(server.address), timeout)
    fn = host.host_image_reward(client.score, ['a'])
    with pytest.raises(service.ServiceError, match=message):
      runtime.compile_and_run(lambda x: fn(None, x, None), jnp.zeros((2, 4, 4, 3)))
    server.close()
  assert host.take_failure() is None   # the failure was raised once, not kept
  with pytest.raises(ValueError, match='is not "host:port" or a socket path'):
    service.Client('localhost')


def _sd_config(sd_tiny, tmp_path, address, **reward):
  config = sd_config.get_config('tiny,bon')
  config.model.path = os.path.join(sd_tiny, 'stable_diffusion')
  config.reward.update(name='service', address=address, timeout=60.0,
                       model=os.path.join(sd_tiny, 'clip'), **reward)
  prompts = tmp_path / 'prompts.txt'
  prompts.write_text('\n'.join(PROMPTS) + '\n')
  config.prompt_file = str(prompts)
  return config


def test_a_sweep_stops_cleanly_when_the_service_dies_and_resumes_after_it(sd_tiny, tmp_path,
                                                                         monkeypatch):
  """bon on tiny Stable Diffusion, scored by a brightness service over a Unix socket, judged by
  the held-out CLIP score. The service is SIGKILLed after the first point: the second stops with
  one ServiceError and is not recorded; with the service back, the rerun computes only it."""
  socket_path, ready = str(tmp_path / 'reward.sock'), str(tmp_path / 'ready')
  scorer = 'tests.rewards.service_fixture:brightness'
  proc, address = start_service(scorer, socket_path, ready)
  config = _sd_config(sd_tiny, tmp_path, address, heldout=('clip_score',))
  config.sweep = config_common.sweep_config(seed=(0, 1), table_metrics=('reward_mean',))
  config.experiment = 'sweep'
  workdir = str(tmp_path / 'sweep')
  execute = search_exp.execute

  def execute_then_kill(*args, **kwargs):
    out = execute(*args, **kwargs)
    if proc.poll() is None:
      stop(proc)
    return out

  monkeypatch.setattr(search_exp, 'execute', execute_then_kill)
  with pytest.raises(service.ServiceError, match='reward service at .*reward.sock'):
    sweep.run(config, workdir)
  points = os.path.join(workdir, 'points')
  assert sorted(f for f in os.listdir(points) if f.endswith('.json')) == ['seed=0.json']
  first = os.path.getmtime(os.path.join(points, 'seed=0.json'))

  monkeypatch.setattr(search_exp, 'execute', execute)
  proc, _ = start_service(scorer, socket_path, ready)
  try:
    summary = sweep.run(config, workdir)
  finally:
    stop(proc)
  assert os.path.getmtime(os.path.join(points, 'seed=0.json')) == first   # not recomputed
  assert any(k.endswith('reward_mean') for k in summary)
  with open(os.path.join(workdir, 'points.csv')) as f:
    assert len(f.read().strip().splitlines()) == 3   # a header and both points
  data = np.load(os.path.join(points, 'seed=1', 'samples.npz'))
  expected = (data['images'].mean(axis=(1, 2, 3)) / 255.0 +
              np.array([len(PROMPTS[i]) for i in data['prompt_index']]))
  np.testing.assert_allclose(data['reward'], expected, rtol=1e-5)
  # The held-out CLIP score of every output, against its own prompt, never searched against.
  judge = rewards.get_reward(config_common.reward_config(name='clip_score',
                                                         model=f'{sd_tiny}/clip'), (16, 16, 3))
  text = judge.encode_text(list(PROMPTS))
  call = jax.jit(lambda rw, x, c: rw(x, c))
  for i in range(2):
    rows = data['prompt_index'] == i
    again = call(judge, jnp.asarray(data['images'][rows], jnp.float32) / 127.5 - 1.0,
                 {'reward_text': jnp.asarray(text[i])})
    np.testing.assert_allclose(data['heldout_clip_score'][rows], np.asarray(again), atol=0.02)
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(points, 'seed=1', 'metrics.json')) as f:
    metrics = json.load(f)
  assert metrics['heldout_clip_score_mean'] == pytest.approx(
      float(np.mean(data['heldout_clip_score'])), rel=1e-5)


def test_main_reports_an_unreachable_service_in_one_line_before_compiling(sd_tiny, tmp_path):
  proc = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/sd.py:tiny,bon',
       f'--workdir={tmp_path / "run"}', f'--config.model.path={sd_tiny}/stable_diffusion',
       '--config.reward.name=service', f'--config.reward.address={tmp_path}/none.sock'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert len(lines) == 1 and 'none.sock is not reachable' in lines[0]
  assert 'Traceback' not in proc.stderr


def test_ctrl_c_is_honoured_while_a_host_callback_waits(sd_tiny, tmp_path):
  """main.py searching through a service that stops answering (reward.timeout 300 s): Ctrl-C
  ends the run within seconds, as interrupted, not when the wait times out."""
  marker, ready = str(tmp_path / 'hanging'), str(tmp_path / 'ready')
  proc, address = start_service('tests.rewards.service_fixture:hangs_after', '127.0.0.1:0',
                                ready, f'{{"calls": 1, "marker": "{marker}"}}')
  prompts = tmp_path / 'prompts.txt'
  prompts.write_text('a red cat\n')
  # A shell that starts the suite in the background hands its children SIGINT ignored (POSIX),
  # and the run would never see the Ctrl-C this test sends. With a handler installed here, the
  # exec'd child starts with the default disposition instead.
  inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
  run = subprocess.Popen(
      [sys.executable, 'main.py', '--config=configs/sd.py:tiny,bon',
       f'--workdir={tmp_path / "run"}', f'--config.model.path={sd_tiny}/stable_diffusion',
       f'--config.prompt_file={prompts}', '--config.reward.name=service',
       f'--config.reward.address={address}', '--config.reward.timeout=300'],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, PYTHONFAULTHANDLER='1'))
  signal.signal(signal.SIGINT, inherited)
  try:
    deadline = time.time() + 240
    while not os.path.exists(marker):
      assert run.poll() is None, run.communicate()[1][-2000:]
      assert time.time() < deadline, 'the search never reached the service'
      time.sleep(0.2)
    time.sleep(0.5)
    sent = time.time()
    run.send_signal(signal.SIGINT)
    try:
      _, err = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:   # where every thread waits: faulthandler's dump
      run.send_signal(signal.SIGABRT)
      pytest.fail('Ctrl-C did not end the run within 60 s; its threads:\n' +
                  run.communicate(timeout=30)[1][-8000:])
    waited = time.time() - sent
  finally:
    if run.poll() is None:
      run.kill()
    stop(proc)
  assert run.returncode == 130, err[-2000:]
  assert waited < 10, waited
  assert [l for l in err.splitlines() if l.startswith('error:')] == [
      'error: interrupted; finished work is kept (a rerun resumes it).']


def test_after_ctrl_c_no_call_connects_and_a_handshake_wait_ends():
  """After Ctrl-C, a host callback that starts anyway (another device's, under a mesh, or the
  interrupted program's next one before its failure ends it) raises at once instead of
  connecting; and a handshake with a service that never speaks ends as soon as Ctrl-C has
  arrived (it used to wait for reward.timeout)."""
  import socket  # pylint: disable=g-import-not-at-top
  silent = socket.socket()
  silent.bind(('127.0.0.1', 0))
  silent.listen(4)   # accepts connections into its backlog, never says hello
  address = f'127.0.0.1:{silent.getsockname()[1]}'
  x = np.zeros((2, 4, 4, 3), np.uint8)
  try:
    host._interrupted.set()  # pylint: disable=protected-access
    start = time.time()
    with pytest.raises(host.Interrupted):
      service.Client(address, 300.0).score(x)
    assert time.time() - start < 1.0
    host._interrupted.clear()  # pylint: disable=protected-access
    failure = []

    def call():
      try:
        service.Client(address, 300.0).score(x)
      except Exception as e:  # pylint: disable=broad-except
        failure.append(e)
    waiting = threading.Thread(target=call)
    waiting.start()
    time.sleep(0.5)
    host._interrupted.set()  # pylint: disable=protected-access
    waiting.join(timeout=5.0)
    assert not waiting.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], host.Interrupted), failure
  finally:
    host._interrupted.clear()  # pylint: disable=protected-access
    silent.close()
