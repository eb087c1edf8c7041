"""A line-by-line transliteration of the control flow of DiffSynth-Studio's `ses_search`
(diffsynth/utils/ses/ses.py, read for the fidelity test of search/ses.py), in numpy, with the
pieces that are not control flow passed in: the wavelet split and its inverse (pywt's db1 in
the reference), the standard normal draws of each generation (torch.randn there), and the
objective (a preview's reward). Lists, sorting and the evaluation counter are as there."""

import numpy as np


def ses_search(base_latents, objective_reward_fn, draws, split, reconstruct,
               total_eval_budget=30, popsize=10, k_elites=5):
  """draws(gen) -> [popsize, D] standard normals; split(z) -> (c_low, highs);
  reconstruct(c_low, highs) -> a noise. Returns (best c_low, best score)."""
  c_low_init, c_high_fixed = split(base_latents)
  c_low_shape = c_low_init.shape
  mu = np.zeros(c_low_init.size)
  sigma_sq = np.ones_like(mu) * 1.0

  best_overall = {'fitness': -float('inf'), 'score': -float('inf'), 'c_low': c_low_init}
  eval_count = 0

  elite_db = []
  n_generations = (total_eval_budget // popsize) + 5

  for gen in range(n_generations):
    if eval_count >= total_eval_budget:
      break

    std = np.sqrt(np.clip(sigma_sq, 1e-9, None))
    z_noise = draws(gen)
    samples_flat = mu + z_noise * std
    samples_reshaped = samples_flat.reshape((popsize,) + c_low_shape)

    batch_results = []

    for i in range(popsize):
      if eval_count >= total_eval_budget:
        break

      c_low_sample = samples_reshaped[i]
      z_recon = reconstruct(c_low_sample, c_high_fixed)
      score = objective_reward_fn(z_recon)
      res = {'score': score, 'c_low': c_low_sample}
      batch_results.append(res)
      if score > best_overall['score']:
        best_overall = res

      eval_count += 1

    if not batch_results:
      break
    elite_db.extend(batch_results)
    elite_db.sort(key=lambda x: x['score'], reverse=True)
    elite_db = elite_db[:k_elites]
    elites_flat = np.stack([x['c_low'].reshape(-1) for x in elite_db])
    mu_new = np.mean(elites_flat, axis=0)

    if len(elite_db) > 1:
      sigma_sq_new = np.var(elites_flat, axis=0, ddof=1) + 1e-7
    else:
      sigma_sq_new = sigma_sq
    mu = mu_new
    sigma_sq = sigma_sq_new
  return best_overall['c_low'], best_overall['score']
