"""Reflow (Liu et al. 2023, "Flow straight and fast"; InstaFlow's 2-rectified flow): the
couplings a few-step backbone is trained on.

A trained flow (velocity prediction, linear interpolant) is integrated with its probability-flow
ODE from noise eps to a sample x0; a new flow fitted to the pairs (x0, eps), with x_t =
(1 - t) x0 + t eps on the pair's own noise, has nearly straight paths, so its Tweedie estimate
x0_hat(x_t) is sharp from high noise and a few steps suffice: what FLUX.1-schnell's timestep
distillation gives the RBF paper's searches.

  data.name = 'reflow', data.teacher (a train workdir), data.num_pairs, data.teacher_steps
The pairs are generated once (seeded by config.seed) and cached in WORKDIR/reflow_pairs.npz,
so a resumed training run trains on the same pairs.
"""

import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from experiments import files
from models.loading import trained
from samplers import sampler as sampler_lib

BATCH = 1024  # pairs generated per compiled call


def check_teacher(teacher_workdir: str):
  """The teacher's backbone, which must be a velocity-prediction flow on the linear path."""
  backbone = trained.load(teacher_workdir)
  if backbone.prediction != 'velocity' or backbone.interpolant.name != 'linear':
    raise ValueError(f'reflow needs a flow teacher (velocity prediction, linear interpolant); '
                     f'{teacher_workdir!r} predicts {backbone.prediction!r} on '
                     f'{backbone.interpolant.name!r}.')
  return backbone


def generate(teacher_workdir: str, num_pairs: int, num_steps: int, seed: int):
  """(x0, eps) [num_pairs, ...]: the teacher's Linear-ODE (Euler, num_steps) from eps to x0."""
  if num_pairs < 1 or num_steps < 1:
    raise ValueError(f'data.num_pairs and data.teacher_steps must be >= 1, got {num_pairs} '
                     f'and {num_steps}.')
  backbone = check_teacher(teacher_workdir)
  sampler = sampler_lib.make_sampler(backbone, backbone.interpolant, num_steps, sde=False)

  num_batches = -(-num_pairs // BATCH)

  @jax.jit
  def integrate_all(smp, key):
    """Every batch's noise and ODE endpoint, one lax.map over the batches."""
    def one_batch(b):
      eps = jax.random.normal(jax.random.fold_in(key, b * BATCH), (BATCH,) + smp.data_shape)
      x, _ = jax.lax.scan(lambda x, k: (smp.step(x, smp.denoise(x, k), k, jnp.zeros_like(x)),
                                        None), eps, jnp.arange(smp.num_steps))
      return x, eps
    return jax.lax.map(one_batch, jnp.arange(num_batches))

  x0, eps = integrate_all(sampler, jax.random.key(seed))
  shape = (num_batches * BATCH,) + backbone.data_shape
  return (np.asarray(x0).reshape(shape)[:num_pairs].astype(np.float32),
          np.asarray(eps).reshape(shape)[:num_pairs].astype(np.float32))


def _path(workdir: str) -> str:
  return os.path.join(workdir, 'reflow_pairs.npz')


def pairs(data_cfg, seed: int, workdir: str):
  """The pairs of a reflow run: its cached ones, else generated (save_pairs caches them once
  the run has claimed its workdir)."""
  if workdir and os.path.isfile(_path(workdir)):
    with np.load(_path(workdir)) as f:
      return f['x0'], f['eps']
  logging.info('generating %d reflow pairs with %s', data_cfg.num_pairs, data_cfg.teacher)
  return generate(data_cfg.teacher, int(data_cfg.num_pairs), int(data_cfg.teacher_steps), seed)


def save_pairs(workdir: str, data) -> None:
  path = _path(workdir)
  if os.path.isfile(path) or not files.is_writer():
    return
  np.savez(path + '.tmp.npz', x0=data[0], eps=data[1])
  os.replace(path + '.tmp.npz', path)
