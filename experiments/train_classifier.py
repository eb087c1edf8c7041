"""`train_classifier`: the digit classifier behind the classifier rewards and image metrics.

Trains on the `train` split with light Gaussian-noise augmentation (rewards score Tweedie
estimates, which are smoother than data), reports held-out accuracy, saves with orbax. Steps
run as one jitted step per call, not a lax.scan: on XLA:CPU a conv net's gradient inside a
scan body ran ~10x slower here (see experiments/train.py).
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

from experiments.data import digits
from experiments import files
from experiments import validation
from models.loading import checkpoint
from rewards import classifier as classifier_lib


def run(config, workdir: str) -> dict:
  ccfg = config.classifier
  for field in ('num_steps', 'batch_size'):
    if int(ccfg[field]) <= 0:
      raise ValueError(f'classifier.{field} must be positive, got {ccfg[field]}.')
  validation.check_positive_float32('classifier.learning_rate', ccfg.learning_rate)
  x_train, y_train = digits.load('train')
  x_held, y_held = digits.load('heldout')
  module = classifier_lib.Classifier(num_classes=int(ccfg.num_classes),
                                     features=int(ccfg.features))
  saved = copy.deepcopy(config)
  with saved.unlocked():
    saved.classifier.data_shape = tuple(x_train.shape[1:])
  files.claim_workdir(workdir, saved)
  metrics_path = os.path.join(workdir, 'metrics.json')
  mngr = checkpoint.manager(os.path.join(workdir, 'checkpoints'))
  if os.path.isfile(metrics_path) and int(ccfg.num_steps) in mngr.all_steps():
    logging.info('%s already holds this classifier; nothing to do.', workdir)
    with open(metrics_path) as f:
      return json.load(f)

  key = jax.random.key(config.seed)
  params = classifier_lib.init_params(module, jax.random.fold_in(key, 0), x_train.shape[1:])
  optimizer = optax.adam(optax.cosine_decay_schedule(ccfg.learning_rate, ccfg.num_steps, 0.01))
  opt_state = optimizer.init(params)
  noise = float(ccfg.augment_noise)

  def loss_fn(p, x, y):
    logits, _ = module.apply({'params': p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(params, opt_state, data, labels, i):
    k_idx, k_noise = jax.random.split(jax.random.fold_in(key, i))
    idx = jax.random.randint(k_idx, (ccfg.batch_size,), 0, data.shape[0])
    x = data[idx] + noise * jax.random.normal(k_noise, data[idx].shape)
    loss, grads = jax.value_and_grad(loss_fn)(params, x, labels[idx])
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  start = time.perf_counter()
  data, labels = jnp.asarray(x_train), jnp.asarray(y_train)
  loss = jnp.nan
  for i in range(int(ccfg.num_steps)):
    params, opt_state, loss = step(params, opt_state, data, labels, i)
  wall_s = time.perf_counter() - start
  if not np.isfinite(float(loss)):
    raise ValueError(f'classifier training diverged: the final loss is {float(loss)} '
                     f'(classifier.learning_rate={ccfg.learning_rate}); nothing was saved.')
  logits, _ = module.apply({'params': params}, jnp.asarray(x_held))
  accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == y_held))
  logging.info('classifier: held-out accuracy %.4f after %d steps', accuracy, ccfg.num_steps)
  checkpoint.save(mngr, int(ccfg.num_steps), params, opt_state)
  metrics = {'heldout_accuracy': accuracy, 'final_loss': float(loss),
             'num_steps': int(ccfg.num_steps), 'wall_s': wall_s,
             'num_heldout': int(len(y_held))}
  files.write_metrics(workdir, metrics)
  return metrics
