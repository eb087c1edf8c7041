"""A line-by-line transliteration of the control flow of Ψ-Sampler's released code
(KAIST-Visual-AI-Group/Psi-Sampler: src/mcmc.py's pCNL.run and MALA.run, the
`chains_thinning` call function, and src/runner.py's SMC.run; read for the fidelity test of
search/psi.py), in numpy. The pieces that are not control flow are passed in: the reward and
its clipped gradient (the pipeline's get_reward_grad_vel_tweedies), the sampler's step mean
and scale (pipe.step), the random draws (torch.randn / torch.rand) and the resampler (SSP
there). One change: where the reference would raise NameError (no resampling yet at a level
that does not resample, so no ancestors to reuse), the particles stay where they are."""

import numpy as np


def mcmc(kernel, init_position, grad_reward, num_mcmc_steps, burn_in, step_size, alpha, draws):
  """grad_reward(x [C, D]) -> (grad, reward); draws(i) -> (randn [C, D], rand [C]).
  Returns the kept samples, step-major [S * C, D]."""
  samples = []
  x_current = init_position.copy()
  cur_grad, cur_reward = grad_reward(x_current)
  if kernel == 'pcnl':
    rho = (1.0 - step_size / 4.0) / (1.0 + step_size / 4.0)
  for i in range(num_mcmc_steps + burn_in):
    randn, rand = draws(i)
    if kernel == 'pcnl':
      x_proposal = rho * x_current + ((1 - rho ** 2) ** 0.5) * (
          randn + 0.5 * (step_size ** 0.5) * cur_grad / alpha)
    else:
      x_proposal = x_current + 0.5 * step_size * (cur_grad / alpha - x_current) + (
          step_size ** 0.5) * randn
    proposal_grad, proposal_reward = grad_reward(x_proposal)
    numerator = _log_joint(kernel, x_proposal, x_current, proposal_reward / alpha,
                           proposal_grad / alpha, step_size)
    denominator = _log_joint(kernel, x_current, x_proposal, cur_reward / alpha,
                             cur_grad / alpha, step_size)
    log_acceptance = numerator - denominator
    accepted_chain = np.log(rand) < log_acceptance
    if accepted_chain.any():
      x_current[accepted_chain] = x_proposal[accepted_chain].copy()
      cur_grad[accepted_chain] = proposal_grad[accepted_chain].copy()
      cur_reward[accepted_chain] = proposal_reward[accepted_chain].copy()
    if i >= burn_in:
      samples.append(x_current.copy())
  return np.concatenate(samples, axis=0)


def _log_joint(kernel, x_prime, x, reward_val, grad_reward, h):
  if kernel == 'pcnl':
    rho = (1.0 - h / 4.0) / (1.0 + h / 4.0)
    log_joint = reward_val - h / 8.0 * np.sum(grad_reward * grad_reward, axis=1)
    tmp = (h ** 0.5) / 2.0 * ((x - rho * x_prime) / ((1.0 - rho ** 2.0) ** 0.5))
    return log_joint + np.sum(tmp * grad_reward, axis=1)
  log_joint = reward_val - h / 8.0 * (np.sum(grad_reward * grad_reward, axis=1)
                                      + np.sum(x_prime * x_prime, axis=1))
  return log_joint + 0.5 * np.sum((x - (1 - h / 2.0) * x_prime) * grad_reward, axis=1)


def chains_thinning(samples, num_particles, num_mcmc_steps, num_chains):
  base_cnt = num_particles // num_chains
  remainder = num_particles % num_chains
  wanted_counts = [base_cnt + (1 if i < remainder else 0) for i in range(num_chains)]
  selected = []
  for chain_idx, k in enumerate(wanted_counts):
    chain_indices = np.arange(chain_idx, chain_idx + num_chains * num_mcmc_steps, num_chains)
    stride = max(1, len(chain_indices) // k)
    selected.append(samples[chain_indices[::stride][:k]])
  return np.concatenate(selected, axis=0)


def smc(latents, reward_grad, step, noise, resample, num_inference_steps, alpha,
        ess_threshold=0.5):
  """reward_grad(x, s) -> (reward [N], grad [N, D]) at level s; step(x, s) -> (mu, sigma) of
  the move from level s; noise(s) -> [N, D] standard normals of the move from level s;
  resample(s, normalized_weights, M) -> ancestors. Returns (best latents' index-free row, its
  reward)."""
  cur_reward_values, cur_grad_reward = reward_grad(latents, 0)
  cur_weights = cur_reward_values / alpha     # init_weight_method = reward
  ancestor_idx, prev_weights = None, None
  for s in range(1, num_inference_steps + 1):
    cur_num_particles = latents.shape[0]
    w = cur_weights - cur_weights.max()
    normalized_weights = np.exp(w - np.log(np.sum(np.exp(w))))
    ess = 1.0 / np.sum(normalized_weights ** 2)
    if ess < ess_threshold * cur_num_particles:
      ancestor_idx = resample(s - 1, normalized_weights, cur_num_particles)
      prev_weights = np.zeros_like(cur_weights)
    if ancestor_idx is not None:
      latents = latents[ancestor_idx]
      cur_reward_values = cur_reward_values[ancestor_idx]
      cur_grad_reward = cur_grad_reward[ancestor_idx]
    mu, sigma = step(latents, s - 1)
    latents = mu + sigma * noise(s - 1)
    latents = latents + sigma ** 2 * cur_grad_reward / alpha
    next_reward_values, next_grad_reward = reward_grad(latents, s)
    exponent = cur_grad_reward * (-latents / alpha + mu / alpha
                                  + sigma ** 2 * cur_grad_reward / (2 * alpha ** 2))
    prev = prev_weights if prev_weights is not None else 0.0
    cur_weights = prev + (next_reward_values - cur_reward_values) / alpha + exponent.sum(-1)
    cur_reward_values = next_reward_values.copy()
    cur_grad_reward = next_grad_reward.copy()
  best = int(np.argmax(cur_reward_values))
  return latents[best], cur_reward_values[best]
