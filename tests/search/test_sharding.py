"""Search on device meshes: the same answer on 1, 2, 4 and 8 simulated CPU devices, the
collectives XLA compiles, two processes under jax.distributed, and bad mesh input.

The 8-device runs happen in subprocesses (tests/search/mesh_worker.py): the number of CPU
devices is fixed when jax starts, and this test process has already started it with one.
"""

import json
import os
import socket
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import AxisType

import search
from experiments import mesh as mesh_lib
from tests.search import mesh_worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What "the same samples on 1 and 8 devices" means (docs/reliability.md). The random draws and
# every integer (NFE counts, invalid counts, trace NFEs) are equal exactly: keys are split and
# folded by position, never by device. Floats agree to a few ulps, not bitwise: XLA compiles
# the partitioned and the unpartitioned program with different fusions, and which rounding each
# fusion makes depends on the CPU (on one machine sop, smc, svdd, code and dts_star were
# bitwise, on another they differed like rbf and dts). Measured: at most 4.8e-7 (1 ulp at
# |x| in [4, 8)). The tolerance: 8 ulps of the array's largest magnitude.
# DTS's rollouts run through the tree's stored states on 8 rows split 8 ways: measured 2.6e-6 in
# x0 and 3.5e-6 in the rewards (30 ulps of the largest |x|), with every NFE count and trace
# equal, so the tree took the same decisions. Its tolerance is 64 ulps.
ULPS = 8
METHOD_ULPS = {'dts': 64, 'dts_star': 64}


def assert_close_to_ulps(got, want, err_msg='', ulps=ULPS):
  want = np.asarray(want)
  scale = max(1.0, float(np.max(np.abs(want[np.isfinite(want)]), initial=0.0)))
  atol = ulps * float(np.finfo(np.float32).eps) * scale
  np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=err_msg)


def _worker(out_dir, *flags, env=None, timeout=900):
  return subprocess.Popen(
      [sys.executable, '-m', 'tests.search.mesh_worker', str(out_dir), *flags], cwd=ROOT,
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(proc, timeout=900):
  out, err = proc.communicate(timeout=timeout)
  assert proc.returncode == 0, err[-3000:]
  return out


def _run_meshes(out_dir, sizes):
  _wait(_worker(out_dir, '--sizes', ','.join(map(str, sizes))))
  return dict(np.load(out_dir / 'outputs.npz'))


def _check_same(outputs, method, sizes):
  for size in sizes:
    for key in ('x0', 'reward', 'trace_best'):
      assert_close_to_ulps(outputs[f'{method}/{size}/{key}'], outputs[f'{method}/1/{key}'],
                           err_msg=f'{method} {key} on {size} devices',
                           ulps=METHOD_ULPS.get(method, ULPS))
    for key in ('trace_nfe',) + mesh_worker.COUNTS:
      np.testing.assert_array_equal(outputs[f'{method}/{size}/{key}'],
                                    outputs[f'{method}/1/{key}'],
                                    err_msg=f'{method} {key} on {size} devices')


@pytest.fixture(scope='module')
def mesh_outputs(tmp_path_factory):
  """Every method on 1 and 8 devices (2 and 4 as well in the slow test below)."""
  return _run_meshes(tmp_path_factory.mktemp('meshes'), (1, 8))


@pytest.mark.parametrize('method', search.METHODS + mesh_worker.SCHEDULED)
def test_same_samples_on_1_and_8_devices(mesh_outputs, method):
  _check_same(mesh_outputs, method, (8,))


def test_plain_sampling_is_the_same_on_8_devices(mesh_outputs, tmp_path):
  from configs import gmm2d  # pylint: disable=g-import-not-at-top
  from experiments import sample as sample_exp  # pylint: disable=g-import-not-at-top
  sample_exp.run(gmm2d.get_config('sample,quick'), str(tmp_path))
  assert_close_to_ulps(mesh_outputs['sample/8/x0'], np.load(tmp_path / 'samples.npz')['x0'])


@pytest.mark.slow
def test_same_samples_on_1_2_4_8_devices(tmp_path):
  """The same on every mesh size (90 s on 2 cores; the default run checks 1 and 8)."""
  outputs = _run_meshes(tmp_path, mesh_worker.MESH_SIZES)
  for method in search.METHODS + mesh_worker.SCHEDULED:
    _check_same(outputs, method, mesh_worker.MESH_SIZES[1:])


def test_compiled_collectives_on_8_devices(tmp_path):
  _wait(_worker(tmp_path, '--collectives'))
  with open(tmp_path / 'collectives.json') as f:
    found = json.load(f)
  # Independent chains: nothing crosses devices inside the sampling loops (rbf runs each
  # device's chains in a shard_map, so its proposal while_loop needs no global predicate; psp
  # prunes between its stages, outside them; nts's rounds stay within each chain).
  for method in ('bon', 'psp', 'sop', 'svdd', 'code', 'nts', 'rbf', 'zero_order', 'random_search'):
    assert found[method]['loops'] == [], (method, found[method]['loops'])
  # SMC per step: the all-gather of the log-weights, and on resampling levels the all-gathers
  # of the particle state (x, its Tweedie x0 / eps / velocity, reward, path sums) that XLA's
  # gather of the chosen ancestors reads. No all-reduce, permute or all-to-all.
  n = found['smc']['particles']
  loops = found['smc']['loops']
  assert loops and {kind for kind, _ in loops} == {'all-gather'}, loops
  assert all(shape.startswith(('f32[%d]' % n, 'f32[%d,' % n)) for _, shape in loops), loops
  assert len(loops) <= 1 + 8, loops
  # DTS: the tree is replicated and the B rollout rows split. Per step, what crosses devices is
  # the new rows (their states for the tree, their rewards) and the slots' [B] bookkeeping:
  # all-gathers whose leading dimension is B, never anything the size of the tree.
  for method in ('dts', 'dts_star'):
    b = found[method]['particles']
    loops = found[method]['loops']
    assert loops and {kind for kind, _ in loops} == {'all-gather'}, (method, loops)
    assert all(shape.split('[')[1].split(']')[0].split(',')[0] == str(b)
               for _, shape in loops), (method, loops)
  # Tempered SMC resamples every level: as SMC, plus the rewards and tempered values that the
  # schedule's ESS solver reads whole on every device. All-gathers of [N] or [N, ...] only.
  n = found['tempered_smc']['particles']
  loops = found['tempered_smc']['loops']
  assert loops and {kind for kind, _ in loops} == {'all-gather'}, loops
  assert all(shape.split('[')[1].split(']')[0].split(',')[0] == str(n)
             for _, shape in loops), loops
  # Beam search: the N K children's rewards (every device picks the same top N), then the
  # chosen rows' indices for XLA's gather. All-gathers of [N K] or [N, ...] only.
  nk, loops = found['beam']['particles'], found['beam']['loops']
  assert loops and {kind for kind, _ in loops} == {'all-gather'}, loops
  assert all(shape.split('[')[1].split(']')[0].split(',')[0] in (str(nk), str(nk // 3))
             for _, shape in loops), loops
  # Island resampling: the log-weights' all-gather (for the global ESS decision) only.
  island = found['smc_island']['loops']
  assert [kind for kind, _ in island] == ['all-gather'] and island[0][1].startswith(
      'f32[%d]' % n), island


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_give_the_single_process_result(mesh_outputs, tmp_path):
  """2 processes x 4 CPU devices (gloo collectives over loopback) = one 8-device mesh.
  smc moves particles between devices (and so between processes); svdd does not."""
  methods = 'smc,svdd'
  port = str(_free_port())
  env = dict(os.environ, PYTHONPATH=ROOT)
  procs = [_worker(tmp_path, '--methods', methods, '--num_processes', '2', '--process_id',
                   str(i), '--port', port, env=env) for i in range(2)]
  for proc in procs:
    _wait(proc)
  outputs = np.load(tmp_path / 'outputs.npz')
  # Bitwise here: both runs compile the same 8-way partitioned program on the same CPU, and
  # their collectives are all-gathers (data movement, no arithmetic to reorder).
  for method in methods.split(','):
    for key in ('x0', 'reward', 'trace_best') + mesh_worker.COUNTS:
      np.testing.assert_array_equal(outputs[f'{method}/8/{key}'],
                                    mesh_outputs[f'{method}/8/{key}'], err_msg=method)
  # Only process 0 wrote the workdir files; both ran in the same folder.
  assert sorted(os.listdir(tmp_path / 'smc_8')) == ['config.json', 'metrics.json',
                                                     'samples.npz', 'samples.png']


# The methods whose independent searches the `searches` axis is checked on in the default run
# (rbf: its own shard_map over particles inside the one over searches); every method, slow.
SEARCHES_QUICK = ('bon', 'smc', 'rbf', 'dts_star')


@pytest.mark.parametrize('methods', [
    SEARCHES_QUICK,
    pytest.param(tuple(m for m in search.METHODS if m not in SEARCHES_QUICK),
                 marks=pytest.mark.slow)], ids=['quick', 'rest'])
def test_a_searches_axis_splits_batched_searches_with_the_same_answer(tmp_path, methods):
  """4 independent searches on one device, and split 2 ways over a `searches` axis with their
  particles over 4 devices: the same samples to a few ulps, the same NFE."""
  # Both sides run in the worker, so XLA's optimisations (compile time) are off.
  _wait(_worker(tmp_path, '--searches', ','.join(methods),
                env=dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='1')))
  out = dict(np.load(tmp_path / 'searches.npz'))
  for method in methods:
    ulps = METHOD_ULPS.get(method, ULPS)
    for key in ('x0', 'reward'):
      assert_close_to_ulps(out[f'{method}/split/{key}'], out[f'{method}/one/{key}'],
                           f'{method} {key}', ulps)
    assert out[f'{method}/split/nfe'] == out[f'{method}/one/nfe'], method


def test_searches_must_divide_over_the_searches_axis():
  mesh = AbstractMesh((2, 1), ('searches', 'particles'), axis_types=(AxisType.Auto,) * 2)
  mesh_lib.check_searches(4, mesh)
  with pytest.raises(ValueError, match='searches axis has 2 devices, but this run has 3 '
                                       'independent searches'):
    mesh_lib.check_searches(3, mesh)


def test_mesh_shape_must_match_the_devices():
  cfg = ml_collections.ConfigDict(dict(axes=('particles',), shape=(2,)))
  with pytest.raises(ValueError, match='needs 2 devices, but this run has 1'):
    mesh_lib.make_mesh(cfg)
  cfg.shape = (-1, 2)
  with pytest.raises(ValueError, match='differ in length'):
    mesh_lib.make_mesh(cfg)
  cfg.update(axes=('particles', 'model'), shape=(-1, -1))
  with pytest.raises(ValueError, match='at most one -1'):
    mesh_lib.make_mesh(cfg)
  cfg.update(axes=('batch',), shape=(-1,))
  with pytest.raises(ValueError, match="including 'particles'"):
    mesh_lib.make_mesh(cfg)
  cfg.update(axes=('particles',), shape=(-1,))
  assert mesh_lib.make_mesh(cfg).shape['particles'] == 1


def test_particles_must_divide_over_the_particle_axis():
  mesh = AbstractMesh((3,), ('particles',), axis_types=(AxisType.Auto,))
  config = mesh_worker.config_for('svdd')
  method_config = search.make_config(config.search, 1.0, config.sampler.num_steps)
  with pytest.raises(ValueError, match='16 chains .* do not divide over the 3 devices'):
    mesh_lib.check_particles('svdd', method_config, mesh)
  config = mesh_worker.config_for('bon')
  method_config = search.make_config(config.search, 1.0, config.sampler.num_steps)
  with pytest.raises(ValueError, match=r'16 samples \(search.budget // sampler.num_steps\)'):
    mesh_lib.check_particles('bon', method_config, mesh)
  config = mesh_worker.config_for('dts')  # 8 rollouts in flight split over the mesh
  with pytest.raises(ValueError, match=r'dts runs 8 slots \(search.dts_batch\)'):
    mesh_lib.check_particles('dts', search.make_config(config.search, 1.0, 8), mesh)
  config.search.dts_batch = 1  # one rollout at a time: the whole search runs replicated
  mesh_lib.check_particles('dts', search.make_config(config.search, 1.0, 8), mesh)


@pytest.mark.slow  # 36 s of subprocess compilation; kept out of the default run for CI time
def test_fsdp_splits_the_stable_diffusion_unet_over_a_model_axis(sd_tiny, tmp_path):
  """Mesh (2 particles x 4 model): the tiny SD U-Net's parameters split FSDP-style; the samples
  equal those of an (8,) particles-only mesh up to reduction order (the split matmuls sum in
  another order)."""
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  _wait(_worker(tmp_path, '--fsdp', sd_tiny, env=env))
  out = np.load(tmp_path / 'fsdp.npz')
  assert float(out['split_fraction']) > 0.9  # measured 0.985 (biases and norms replicated)
  assert out['fsdp/x0'].shape == out['particles/x0'].shape == (2, 8, 8, 4)
  # Measured: 5.5e-5 in the latents, 4.5e-7 in the rewards.
  np.testing.assert_allclose(out['fsdp/x0'], out['particles/x0'], atol=5e-4)
  np.testing.assert_allclose(out['fsdp/reward'], out['particles/reward'], atol=1e-5)
  assert int(out['fsdp/nfe']) == int(out['particles/nfe'])


@pytest.mark.slow  # subprocess compilation, as above
@pytest.mark.parametrize('backbone', ['flux', 'sd3'])
def test_fsdp_splits_the_flux_and_sd3_transformers_over_a_model_axis(sd_tiny, tmp_path,
                                                                      backbone):
  """The same for the tiny FLUX.1-schnell and SD3.5-large transformers, with the same
  logical-axis rules."""
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS='1')
  _wait(_worker(tmp_path, '--fsdp', sd_tiny, '--fsdp_backbone', backbone, env=env))
  out = np.load(tmp_path / 'fsdp.npz')
  assert float(out['split_fraction']) > 0.9
  assert out['fsdp/x0'].shape == out['particles/x0'].shape == (2, 8, 8, 16)
  np.testing.assert_allclose(out['fsdp/x0'], out['particles/x0'], atol=5e-4)
  np.testing.assert_allclose(out['fsdp/reward'], out['particles/reward'], atol=1e-5)
  assert int(out['fsdp/nfe']) == int(out['particles/nfe'])


def test_island_resampling_keeps_ancestors_in_their_block():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from search import base  # pylint: disable=g-import-not-at-top
  from search import smc  # pylint: disable=g-import-not-at-top
  config = mesh_worker.config_for('smc')
  config.search.resampling_scope = 'island'
  method_config = search.make_config(config.search, 1.0, config.sampler.num_steps)
  assert method_config.scope == 'island'
  n = method_config.num_particles
  log_w = jnp.asarray(np.random.default_rng(0).standard_normal(n) * 3.0, jnp.float32)
  idx = np.asarray(smc._island_ancestors(jax.random.key(0), log_w, 4, method_config))  # pylint: disable=protected-access
  per = n // 4
  assert idx.shape == (4, per) and idx.min() >= 0 and idx.max() < per
  rows = np.arange(n, dtype=np.float32)
  moved = np.asarray(base.take_in_groups(jnp.asarray(rows), jnp.asarray(idx)))
  np.testing.assert_array_equal(moved // per, np.repeat(np.arange(4), per))  # stayed in block
  assert len(set(moved.tolist())) < n  # it did resample
  config.search.resampling_scope = 'everywhere'
  with pytest.raises(ValueError, match='valid: global, island'):
    search.make_config(config.search, 1.0, config.sampler.num_steps)
