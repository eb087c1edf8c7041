"""`train`: fits a backbone (2D MLP or image U-Net) by regression on its prediction target.

Loss: E_{t, x0, eps} |f(alpha_t x0 + sigma_t eps, t) - target|^2, where the target is the
velocity (flow matching), eps, x0 or v of (x0, eps) on the model's native interpolant. Steps run
as a jitted lax.scan of `train.log_every` steps; after each chunk the run logs the loss and
saves an orbax checkpoint, and a rerun of the same workdir resumes from the newest one. The
minibatch and noise of step i depend only on (seed, i), so a resumed run equals an
uninterrupted one. Class-conditional models see their label replaced by the "no class" token
with probability model.label_dropout (classifier-free guidance).

data.name = 'reflow' trains on a teacher flow's (x0, eps) couplings instead (experiments/
reflow.py): the loss uses each pair's own eps, and train.init_from (a train workdir, usually the
teacher) gives the starting parameters.
"""

import copy
import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.data import data2d
from experiments.data import digits
from experiments import files
from experiments import validation
from models.loading import checkpoint
from models.loading import trained
from samplers import interpolants
from samplers import predictions
from samplers.ground import progress

T_MIN = 1e-3  # smallest training time: keeps sigma_t > 0 for every native interpolant


def loss_fn(params, module, interp, prediction, x0, labels, key, label_dropout=0.0):
  """x0: data [B, ...], or a coupling (x0, eps) of reflow pairs."""
  k_t, k_eps, k_drop = jax.random.split(key, 3)
  x0, eps = x0 if isinstance(x0, tuple) else (x0, jax.random.normal(k_eps, x0.shape))
  t = interp.training_times(k_t, x0.shape[:1], T_MIN)
  t_x = predictions.expand_time(t, x0)
  x_t = interp.alpha(t_x) * x0 + interp.sigma(t_x) * eps
  target = predictions.from_x0_eps(x0, eps, t_x, interp, prediction)
  if labels is not None:
    drop = jax.random.bernoulli(k_drop, label_dropout, labels.shape)
    labels = jnp.where(drop, module.num_classes, labels)
  pred = module.apply({'params': params}, x_t, t, labels)
  return jnp.mean((pred - target) ** 2)


def make_train_chunk(module, interp, prediction, optimizer, batch_size, num_steps,
                     label_dropout, loop='scan'):
  """(params, opt_state, data, labels, key, first_step) -> (params, opt_state, mean loss).

  loop='scan' runs the steps as one lax.scan. loop='python' calls one jitted step per step with
  the same per-step keys, so both give the same parameters: on XLA:CPU a conv net's gradient
  inside a scan body ran ~10x slower here (the digits U-Net: 330 ms vs 28 ms per step).
  """

  def one_step(carry, step):
    params, opt_state, data, labels, key = carry
    k_idx, k_loss = jax.random.split(jax.random.fold_in(key, step))
    idx = jax.random.randint(k_idx, (batch_size,), 0, jax.tree.leaves(data)[0].shape[0])
    batch_labels = None if labels is None else labels[idx]
    batch = jax.tree.map(lambda a: a[idx], data)
    loss, grads = jax.value_and_grad(loss_fn)(params, module, interp, prediction, batch,
                                              batch_labels, k_loss, label_dropout)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, data, labels, key), loss

  if loop == 'python':
    step_fn = jax.jit(one_step)

    def python_chunk(params, opt_state, data, labels, key, first_step):
      carry, losses = (params, opt_state, data, labels, key), []
      for i in range(num_steps):
        carry, loss = step_fn(carry, first_step + i)
        losses.append(loss)
      return carry[0], carry[1], jnp.mean(jnp.stack(losses))
    return python_chunk
  if loop != 'scan':
    raise ValueError(f"Unknown train.loop {loop!r}; valid: scan, python.")

  def chunk(params, opt_state, data, labels, key, first_step):
    steps = first_step + jnp.arange(num_steps)
    (params, opt_state, _, _, _), losses = jax.lax.scan(
        one_step, (params, opt_state, data, labels, key), steps)
    return params, opt_state, jnp.mean(losses)

  return jax.jit(chunk)


def training_data(config, workdir: str = ''):
  """(data [N, ...] or reflow pairs (x0, eps), labels [N] or None) on the host."""
  if config.data.name == 'reflow':
    from experiments.data import reflow  # pylint: disable=g-import-not-at-top
    if config.model.prediction != 'velocity' or config.model.interpolant != 'linear':
      raise ValueError('reflow trains a flow: model.prediction must be velocity and '
                       'model.interpolant linear.')
    return reflow.pairs(config.data, config.seed, workdir), None
  if config.data.name == 'digits':
    images, labels = digits.load('train')
    return images, labels if int(config.model.get('num_classes', 0)) else None
  if int(config.data.dim) != 2:
    raise ValueError(f'the 2D datasets are 2D; data.dim is {config.data.dim}.')
  return data2d.make_dataset(config.data, seed=config.seed), None


def _learning_rate(tcfg):
  """Constant, or cosine decay to 1% of train.learning_rate over train.num_steps."""
  schedule = tcfg.get('schedule', 'cosine')
  if schedule == 'constant':
    return tcfg.learning_rate
  if schedule == 'cosine':
    return optax.cosine_decay_schedule(tcfg.learning_rate, tcfg.num_steps, alpha=0.01)
  raise ValueError(f"Unknown train.schedule {schedule!r}; valid: constant, cosine.")


def run(config, workdir: str) -> dict:
  tcfg = config.train
  for field in ('num_steps', 'batch_size', 'log_every'):
    if int(tcfg[field]) <= 0:
      raise ValueError(f'train.{field} must be positive, got {tcfg[field]}.')
  validation.check_positive_float32('train.learning_rate', tcfg.learning_rate)
  data, labels = training_data(config, workdir)
  shape = tuple(jax.tree.leaves(data)[0].shape[1:])
  lib = trained.get_module_lib(config.model.name)
  module = lib.make_module(config.model, shape)
  interp = interpolants.from_config(config.model)
  prediction = predictions.check_prediction(config.model.prediction)
  label_dropout = float(config.model.get('label_dropout', 0.0))
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(_learning_rate(tcfg)))

  saved = copy.deepcopy(config)
  with saved.unlocked():
    saved.model.data_shape = shape  # what a sampler needs to rebuild the module
  files.claim_workdir(workdir, saved)   # refuses a workdir that holds another run
  if config.data.name == 'reflow':
    from experiments.data import reflow  # pylint: disable=g-import-not-at-top
    reflow.save_pairs(workdir, data)

  key = jax.random.key(config.seed)
  params = lib.init_params(module, jax.random.fold_in(key, 0), shape)
  if tcfg.get('init_from'):
    params, _ = checkpoint.restore_latest_params(
        os.path.join(tcfg.init_from, 'checkpoints'), params)
  opt_state = optimizer.init(params)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  mngr = checkpoint.manager(ckpt_dir)
  step, log = 0, []
  found = checkpoint.restore_intact(mngr, params, opt_state)
  if found is not None:
    params, opt_state, step, extra, skipped = found
    log = list((extra or {}).get('log', []))
    if skipped:  # damaged newer steps: set aside, so that training can save them again
      checkpoint.set_aside(ckpt_dir, [s for s, _ in skipped])
      mngr = checkpoint.manager(ckpt_dir)
    logging.info('resuming from step %d', step)
  if step > tcfg.num_steps:
    raise ValueError(f'{workdir} holds a checkpoint at step {step}, past train.num_steps='
                     f'{tcfg.num_steps}; use a new workdir.')

  metrics_path = os.path.join(workdir, 'metrics.json')
  if step == tcfg.num_steps and os.path.isfile(metrics_path):
    logging.info('%s is already trained to step %d; nothing to do.', workdir, step)
    with open(metrics_path) as f:
      return json.load(f)

  data_dev = jax.tree.map(jnp.asarray, data)
  labels_dev = None if labels is None else jnp.asarray(labels)
  loss_key = jax.random.fold_in(key, 1)
  chunks = {}
  segment = 1 + max((entry[3] for entry in log), default=0)
  while step < tcfg.num_steps:
    n = min(int(tcfg.log_every), tcfg.num_steps - step)
    if n not in chunks:
      chunks[n] = make_train_chunk(module, interp, prediction, optimizer, tcfg.batch_size, n,
                                   label_dropout, tcfg.get('loop', 'scan'))
    start = time.perf_counter()
    params, opt_state, loss = chunks[n](params, opt_state, data_dev, labels_dev, loss_key, step)
    loss = float(loss)
    if not np.isfinite(loss):
      raise ValueError(f'training diverged: the mean loss of steps {step + 1}..{step + n} is '
                       f'{loss} (train.learning_rate={tcfg.learning_rate}); nothing was saved '
                       f'for them, and the last saved step ({step}) is kept.')
    step += n
    # [step, mean loss of the chunk, seconds, segment]: one segment per (re)started run.
    log.append([step, loss, time.perf_counter() - start, segment])
    seconds = log[-1][2]
    rate = n / seconds if seconds > 0 else float('inf')
    # The first chunk of a segment includes compiling it; the rate and the ETA then settle.
    logging.info('step %d/%d (%.0f%%)  loss %.5f  %.0f steps/s%s  ETA %s', step, tcfg.num_steps,
                 100 * step / tcfg.num_steps, loss, rate,
                 ' (with compiling)' if sum(e[3] == segment for e in log) == 1 else '',
                 progress.duration((tcfg.num_steps - step) / rate))
    checkpoint.save(mngr, step, params, opt_state, extra={'log': log})

  # Over every segment of the run, resumed ones included (the log travels in the checkpoints).
  metrics = {'num_steps': step, 'wall_s': float(sum(entry[2] for entry in log)),
             'num_segments': len({entry[3] for entry in log}),
             'num_params': sum(x.size for x in jax.tree.leaves(params))}
  if log:
    metrics.update(first_chunk_loss=log[0][1], final_loss=log[-1][1])
  files.write_metrics(workdir, metrics)
  return metrics
