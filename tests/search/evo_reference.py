"""A line-by-line transliteration of the control flow of EvoSearch's released code
(tinnerhrhe/EvoSearch-codes, SD2.1/evo_pipe.py: EvolStableDiffusion.generate and .evosearch,
with SD2.1/evosearch.py's arguments; read for the fidelity test of search/evo.py), in numpy.
The pieces that are not control flow are passed in: the scheduler's step (with its noise), the
decoder and reward (do_eval), the step's std, and the random draws (torch.randn inside the
scheduler, torch.randperm, torch.randn_like). Lists, caches and the best-image bookkeeping are
as there."""

import math

import numpy as np


def generate(latents, num_inference_steps, step, score, std, draws, evolution_schedule,
             population_size_schedule, elite_size=5, mutation_rate=0.2):
  """step(x, i, noise) -> the state after step i (at the last step: the decoded sample);
  score(samples) -> rewards; std(i) -> the step's noise std; draws(kind, g, i) -> the draws:
  ('main', g, i) the main loop's step noise after g evolutions, ('roll', g, i) generation g's
  rollout noise, ('perm', g, p) tournament p's permutation, ('mut', g, 0) the mutation noise.
  Returns (best reward, best sample)."""
  self = _Pipe()
  self.population_list = [[] for _ in evolution_schedule]
  self.rewards_list = [[] for _ in evolution_schedule]
  self.best_reward = -100
  self.best_image = None
  self.image_list = []
  generation_steps = 0
  latents_total = latents
  for i in range(num_inference_steps):
    if i in evolution_schedule:
      latents_total = _evosearch(self, latents_total, num_inference_steps, step, score, std,
                                 draws, evolution_schedule, population_size_schedule,
                                 generation_steps, elite_size, mutation_rate)
      generation_steps += 1
    latents_total = step(latents_total, i, draws('main', generation_steps, i))
  rewards = score(latents_total)
  elite_index = int(np.argmax(rewards))
  if rewards[elite_index] > self.best_reward:
    self.best_reward = rewards[elite_index]
    self.best_image = latents_total[elite_index]
  return self.best_reward, self.best_image


class _Pipe:
  pass


def _evosearch(self, latents, num_inference_steps, step, score, std, draws, evolution_schedule,
               population_size_schedule, generation_steps, elite_size, mutation_rate):
  generation_steps_id = generation_steps
  std_list = [-1 for _ in evolution_schedule]
  current_step = evolution_schedule[generation_steps]
  latents_total = latents
  for i in range(current_step, num_inference_steps):
    latents_ = step(latents_total, i, draws('roll', generation_steps, i))
    if i in evolution_schedule:
      self.population_list[generation_steps_id].append(latents_)
    latents_total = latents_
    if i in evolution_schedule:
      std_list[generation_steps_id] = std(i)
      generation_steps_id += 1
  rewards = score(latents_total)
  self.image_list.extend(list(latents_total))
  for id_ in range(generation_steps, len(self.rewards_list)):
    self.rewards_list[id_].append(rewards)
  population = np.concatenate(self.population_list[generation_steps])
  mean_std = std_list[generation_steps]
  rewards = np.concatenate(self.rewards_list[generation_steps])
  elite_indices = np.argsort(-rewards, kind='stable')[:elite_size]
  if rewards[elite_indices[0]] > self.best_reward:
    self.best_reward = rewards[elite_indices[0]]
    self.best_image = self.image_list[elite_indices[0]]
  elites = population[elite_indices]
  parents = []
  population_size = population_size_schedule[generation_steps + 1]
  for p in range(population_size - elite_size):
    candidates = draws('perm', generation_steps, p)[:int(population.shape[0] * 0.9)]
    candidate_rewards = rewards[candidates]
    winner = candidates[np.argmax(candidate_rewards)]
    parents.append(population[winner])
  parents = np.stack(parents)
  noise = draws('mut', generation_steps, 0)
  if generation_steps == 0:
    children = parents * math.sqrt(1 - mutation_rate ** 2) + mutation_rate * noise
  else:
    children = parents + mean_std * noise
  return np.concatenate([elites, children])
