"""A line-by-line transliteration of the control flow of NTS's ε-greedy search
(rvignav/diffusion-tts, edm/main.py: the ZERO_ORDER / EPS_GREEDY branch of
generate_image_grid, read for the fidelity test of search/nts.py), in numpy, for one image of
the batch. The pieces that are not control flow are passed in: the sampler's step (its Heun
step there), the scorer, and the random draws (torch.rand / torch.randn there; the scale factor
from Python's string hash there, a uniform draw here)."""

import numpy as np


def eps_greedy(x_next, num_steps, step, scorer, draws, N=4, K=20, eps=0.4, lambda_param=0.15):
  """step(x_cur, i, noises [N, ...]) -> (x_candidates, x0_candidates), each [N, ...];
  scorer(x0 [N, ...]) -> [N]; draws(i, k) -> dict of the round's draws: 'pivot' [...] (used at
  k = 0), 'rand' [N] uniforms, 'direction' [N, ...] normals, 'scale' [N] uniforms, 'fresh'
  [N, ...] normals. Returns the final state's x0 (the step with the last pivot)."""
  lambda_param = lambda_param * np.sqrt(x_next.size)
  x0 = None
  for i in range(num_steps):
    x_cur = x_next
    pivot_noise = draws(i, 0)['pivot']
    for k in range(K):
      d = draws(i, k)
      base_noise = pivot_noise
      candidate_noises = []
      for n in range(N):
        if d['rand'][n] < (1 - eps):
          random_direction = d['direction'][n]
          random_direction = random_direction / np.linalg.norm(random_direction)
          scale = d['scale'][n] * lambda_param
          candidate_noise = base_noise + scale * random_direction
        else:
          candidate_noise = d['fresh'][n]
        candidate_noises.append(candidate_noise)
      all_noises = np.stack(candidate_noises)
      x_candidates, x0_candidates = step(x_cur, i, all_noises)
      scores = scorer(x0_candidates)
      best_index = int(np.argmax(scores))
      pivot_noise = all_noises[best_index]
    x_next, x0 = step(x_cur, i, pivot_noise[None])
    x_next, x0 = x_next[0], x0[0]
  return x0
