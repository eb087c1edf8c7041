"""`train`: fits a 2D MLP backbone by regression on its prediction target, resumably.

Loss: E_{t, x0, eps} |f(alpha_t x0 + sigma_t eps, t) - target|^2, where the target is the
velocity (flow matching), eps, x0 or v of (x0, eps) on the model's native interpolant. Steps run
as a jitted lax.scan of `train.log_every` steps; after each chunk the run logs the loss and
saves an orbax checkpoint, and a rerun of the same workdir resumes from the newest one. The
minibatch and noise of step i depend only on (seed, i), so a resumed run equals an
uninterrupted one.
"""

import json
import os
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import data2d
from experiments import io
from models import checkpoint
from models import mlp
from samplers import interpolants
from samplers import predictions

T_MIN = 1e-3  # smallest training time: keeps sigma_t > 0 for every native interpolant


def loss_fn(params, module, interp, prediction, x0, key):
  k_t, k_eps = jax.random.split(key)
  t = jax.random.uniform(k_t, x0.shape[:1], minval=T_MIN, maxval=1.0)
  eps = jax.random.normal(k_eps, x0.shape)
  t_x = predictions.expand_time(t, x0)
  x_t = interp.alpha(t_x) * x0 + interp.sigma(t_x) * eps
  target = predictions.from_x0_eps(x0, eps, t_x, interp, prediction)
  pred = module.apply({'params': params}, x_t, t)
  return jnp.mean((pred - target) ** 2)


def make_train_chunk(module, interp, prediction, optimizer, batch_size, num_steps):
  """(params, opt_state, data, key, first_step) -> (params, opt_state, mean loss)."""

  def one_step(carry, step):
    params, opt_state, data, key = carry
    step_key = jax.random.fold_in(key, step)
    k_idx, k_loss = jax.random.split(step_key)
    batch = data[jax.random.randint(k_idx, (batch_size,), 0, data.shape[0])]
    loss, grads = jax.value_and_grad(loss_fn)(params, module, interp, prediction, batch, k_loss)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, data, key), loss

  def chunk(params, opt_state, data, key, first_step):
    steps = first_step + jnp.arange(num_steps)
    (params, opt_state, _, _), losses = jax.lax.scan(
        one_step, (params, opt_state, data, key), steps)
    return params, opt_state, jnp.mean(losses)

  return jax.jit(chunk)


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
  if config.data.dim != 2:
    raise ValueError(f'the 2D MLP trains on 2D data; data.dim is {config.data.dim}.')
  data = data2d.make_dataset(config.data, seed=config.seed)
  module = mlp.make_module(config.model, data.shape[1])
  interp = interpolants.from_config(config.model)
  prediction = predictions.check_prediction(config.model.prediction)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(_learning_rate(tcfg)))

  key = jax.random.key(config.seed)
  params = mlp.init_params(module, jax.random.fold_in(key, 0), data.shape[1])
  opt_state = optimizer.init(params)
  mngr = checkpoint.manager(os.path.join(workdir, 'checkpoints'))
  io.write_config(workdir, config)
  step = mngr.latest_step() or 0
  if step:
    params, opt_state = checkpoint.restore(mngr, step, params, opt_state)
    logging.info('resuming from step %d', step)
  if step > tcfg.num_steps:
    raise ValueError(f'{workdir} holds a checkpoint at step {step}, past train.num_steps='
                     f'{tcfg.num_steps}; use a new workdir or raise num_steps.')

  metrics_path = os.path.join(workdir, 'metrics.json')
  if step == tcfg.num_steps and os.path.isfile(metrics_path):
    logging.info('%s is already trained to step %d; nothing to do.', workdir, step)
    with open(metrics_path) as f:
      return json.load(f)

  data_dev = jnp.asarray(data)
  loss_key = jax.random.fold_in(key, 1)
  chunks = {}
  start, loss = time.perf_counter(), float('nan')
  while step < tcfg.num_steps:
    n = min(int(tcfg.log_every), tcfg.num_steps - step)
    if n not in chunks:
      chunks[n] = make_train_chunk(module, interp, prediction, optimizer, tcfg.batch_size, n)
    params, opt_state, loss = chunks[n](params, opt_state, data_dev, loss_key, step)
    step += n
    loss = float(loss)
    logging.info('step %d/%d  loss %.5f', step, tcfg.num_steps, loss)
    checkpoint.save(mngr, step, params, opt_state)
  wall_s = time.perf_counter() - start

  metrics = {'num_steps': step, 'wall_s': wall_s,
             'num_params': sum(x.size for x in jax.tree.leaves(params))}
  if not np.isnan(loss):
    metrics['final_loss'] = loss
  io.write_metrics(workdir, metrics)
  return metrics
