"""The released RBF loop, transliterated line by line for tests/search/test_rbf.py.

Source: rbf/rbf.py of KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling (RBF.train and
RBF.train_single_step, with rbf/corrector/rgrp_sampler.py: RGRPSampler.pre_correct for the
initial search), the code that produced the paper's numbers. The control flow is kept
statement for statement: the chains step in lock-step, one proposal each per iteration; the
NFE cap is checked before each iteration's evaluation; `budget_counter % max_budget == 0` ends
a level's quota; `step_counter < max_steps - 2` decides whether a chain may still advance;
best_rewards and cur_step_best_rewards start at -1e9. Torch tensors become numpy arrays, the
level replaces the time t (t_prev = t_curr - t_max / max_steps is one level down), and the
logging is left out.

Two things are the project's by design, so that both run on the same numbers: the sampler (the
project's `denoise` and `step`, evaluated here on the host one iteration at a time), and the
randomness. The released code draws from torch's global generator; here the initial noises are
`sampler.init_noise(init_key, N K0)` (chain b's are rows b K0 .. b K0 + K0 - 1, as the released
reshape to [N, K0] reads them) and proposal j of chain b at level k uses
fold_in(fold_in(fold_in(loop_key, k), b), j), j counting the chain's proposals at that level
from 0 (budget_counter - 1), with (init_key, loop_key) = split(key), as search/rbf.py does.
"""

import jax
import numpy as np


def released_rbf(key, sampler, reward, cond, batch_size: int, max_nfe: int,
                 init_n_particles: int):
  """Runs the released loop; returns dict(x0 [1, ...] the output, rewards [N] each chain's
  cur_step_best_rewards at the end, tweedies [N, ...] each chain's cur_step_best_tweedie, nfe,
  drawn / taken {(chain, level): count / index} for every level each chain left or ended on)."""
  max_steps = sampler.num_steps
  init_key, loop_key = jax.random.split(key)
  denoise = jax.jit(lambda x, k: sampler.denoise(x, k, cond))
  step = jax.jit(sampler.step)
  score = lambda x0: np.asarray(reward(x0, cond), np.float32)

  def noise_for(levels, counters):
    rows = []
    for b in range(batch_size):
      kk = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
          loop_key, int(levels[b])), b), int(counters[b]) - 1)
      rows.append(jax.random.normal(kk, sampler.data_shape))
    return np.stack(rows)

  def take_rows(tree, idx):
    return jax.tree.map(lambda a: np.asarray(a)[idx], tree)

  def set_rows(tree, mask, new):
    return jax.tree.map(lambda a, b: np.where(
        mask.reshape((-1,) + (1,) * (np.ndim(a) - 1)), b, a), tree, new)

  # RBF.train
  nfe = 0
  t_curr = np.zeros(batch_size, np.int64)            # the level (t_max at level 0)
  best_rewards = np.full(batch_size, -1e9, np.float32)
  cur_step_best_rewards = np.full(batch_size, -1e9, np.float32)
  max_budget = int((max_nfe - init_n_particles * batch_size) /
                   (max_steps * batch_size)) * np.ones(batch_size, np.int32)
  default_budget = int((max_nfe - init_n_particles * batch_size) / (max_steps * batch_size))
  drawn, taken = {}, {}

  # train_single_step with nfe == 0: the initial search (pre_correct)
  latent_noisy = np.asarray(sampler.init_noise(init_key, batch_size * init_n_particles))
  model_pred = take_rows(denoise(latent_noisy, 0), slice(None))
  nfe += latent_noisy.shape[0]
  assert nfe < max_nfe, f'batch_size ({nfe}) should be smaller than max_nfe({max_nfe})'
  init_tweedie = model_pred.x0
  p = score(init_tweedie).reshape(batch_size, init_n_particles)
  idx = np.argmax(p, axis=1)
  t_arg = np.arange(batch_size) * init_n_particles + idx
  latent_noisy = latent_noisy[t_arg]
  model_pred = take_rows(model_pred, t_arg)
  cur_step_best_tweedie = init_tweedie[t_arg]
  best_rewards = p.reshape(-1)[t_arg].astype(np.float32)
  budget_counter = np.ones(batch_size, np.int32)
  step_counter = np.zeros(batch_size, np.int32)
  cur_step_best_model_pred = jax.tree.map(np.zeros_like, model_pred)
  cur_step_best_latent_noisy = np.zeros_like(latent_noisy)
  cur_step_best_index = np.zeros(batch_size, np.int32)   # for the test: which proposal

  while True:
    t_prev = t_curr + 1
    new_latent_noisy = np.asarray(step(latent_noisy, model_pred, t_curr,
                                       noise_for(t_curr, budget_counter)))
    dnfe = latent_noisy.shape[0]
    if nfe + dnfe >= max_nfe:
      # finished()
      for b in range(batch_size):
        drawn[b, int(t_curr[b])] = int(budget_counter[b]) - 1
        taken[b, int(t_curr[b])] = int(cur_step_best_index[b])
      max_idx = int(np.argmax(cur_step_best_rewards))
      return dict(x0=cur_step_best_tweedie[max_idx:max_idx + 1],
                  rewards=cur_step_best_rewards.copy(), tweedies=cur_step_best_tweedie.copy(),
                  nfe=nfe, drawn=drawn, taken=taken)
    nfe += dnfe
    new_model_pred = take_rows(denoise(new_latent_noisy, t_prev), slice(None))
    new_tweedie = new_model_pred.x0
    new_rewards = score(new_tweedie)

    rollover_index = best_rewards < new_rewards
    cur_step_best_update_bool = cur_step_best_rewards < new_rewards
    proceed = step_counter < (max_steps - 2)

    budget_full_index = (budget_counter % max_budget) == 0
    budget_full_index = budget_full_index & ~rollover_index
    budget_full_index = budget_full_index & proceed

    if np.any(cur_step_best_update_bool):
      u = cur_step_best_update_bool
      cur_step_best_model_pred = set_rows(cur_step_best_model_pred, u, new_model_pred)
      cur_step_best_rewards[u] = new_rewards[u]
      cur_step_best_latent_noisy[u] = new_latent_noisy[u]
      cur_step_best_tweedie[u] = new_tweedie[u]
      cur_step_best_index[u] = budget_counter[u] - 1

    if np.any(rollover_index):
      best_rewards[rollover_index] = new_rewards[rollover_index]
      rollover_proceed = rollover_index & proceed
      if np.any(rollover_proceed):
        for b in np.flatnonzero(rollover_proceed):
          drawn[b, int(t_curr[b])] = int(budget_counter[b])
          taken[b, int(t_curr[b])] = int(budget_counter[b]) - 1
        t_curr[rollover_proceed] = t_prev[rollover_proceed]
        latent_noisy[rollover_proceed] = new_latent_noisy[rollover_proceed]
        model_pred = set_rows(model_pred, rollover_proceed, new_model_pred)
        leftover = max_budget[rollover_proceed] - budget_counter[rollover_proceed]
        budget_counter[rollover_proceed] = 0
        step_counter[rollover_proceed] += 1
        cur_step_best_rewards[rollover_proceed] = -1e9
        max_budget[rollover_proceed] = leftover + default_budget

    if np.any(budget_full_index):
      for b in np.flatnonzero(budget_full_index):
        drawn[b, int(t_curr[b])] = int(budget_counter[b])
        taken[b, int(t_curr[b])] = int(cur_step_best_index[b])
      t_curr[budget_full_index] = t_prev[budget_full_index]
      latent_noisy[budget_full_index] = cur_step_best_latent_noisy[budget_full_index]
      model_pred = set_rows(model_pred, budget_full_index, cur_step_best_model_pred)
      budget_counter[budget_full_index] = 0
      step_counter[budget_full_index] += 1
      cur_step_best_rewards[budget_full_index] = -1e9
      max_budget[budget_full_index] = default_budget

    budget_counter = budget_counter + 1
