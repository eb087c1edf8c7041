"""Turns a config into a problem: backbone, sampler, reward, conditions, the closed-form target
where there is one, and the recorder of its domain (experiments/evaluation/recorders.py).

Everything here validates on the host; nothing compiles.
"""

from typing import Any, NamedTuple, Optional

import jax
import numpy as np

import models
import rewards
import search as search_lib
from rewards import heldout as heldout_lib
from experiments import runtime
from experiments.evaluation import recorders
from samplers import sampler as sampler_lib


class Problem(NamedTuple):
  backbone: Any
  sampler: Any
  reward: rewards.Reward
  target: Optional[dict]  # the tilted mixture p(x) exp(r / lambda), where it has a closed form
  cond: Any = None        # the condition: a class label, None, or a batch pytree [B, ...]
  prompts: tuple = ()     # text prompts; when set, cond is batched over them
  batch: int = 0          # B independent searches (prompts, or target classes x runs); 0: one
  row_classes: tuple = () # the target class of each of the B searches, when classes are batched
  recorder: Any = None    # what happens after the program returns (experiments/evaluation/recorders.py)
  heldout: tuple = ()     # ((label, Reward, cond), ...): reward.heldout, scored after the search


def build(config, guidance: bool = False) -> Problem:
  """The problem of a config; with prompts, config.prompt_rows ('A-B') keeps prompts A..B-1 of
  the run's list (each keeps its index in the whole list: cond['prompt_index'])."""
  all_prompts = ()
  if models.is_text_to_image(config.model):
    all_prompts = tuple(models.read_prompts(config))
  start, stop = prompt_rows(config.get('prompt_rows', ''), len(all_prompts))
  prompts = all_prompts[start:stop]
  # Prompts are encoded before the backbone loads, so that a text encoder (FLUX's T5) and the
  # backbone are never in memory together.
  text = models.encode_prompts(config.model, prompts) if prompts else None
  backbone = models.get_backbone(config.model)
  # A reward that reads the prompts (a host reward) gets the whole list: it looks each search's
  # prompt up by its index in it.
  reward = rewards.get_reward(config.reward, backbone.data_shape, backbone.decoder, all_prompts)
  sampler = sampler_lib.from_config(config.sampler, backbone)
  temperature = float(config.reward.temperature)
  search_lib.base.check_temperature(temperature)
  cond = models.condition(config)
  batch, row_classes = 0, ()
  if prompts:
    cond = text_conditions(text, reward, prompts, start)
    batch = len(prompts)
    if int(config.search.get('num_runs', 1)) != 1:
      raise ValueError('search.num_runs must be 1 with prompts (each prompt is one search).')
  else:
    cond, row_classes = batched_conditions(config, reward, cond)
    batch = len(row_classes)
  one_cond = jax.tree.map(lambda c: c[0], cond) if batch else cond
  if search_lib.get_method(config.search.method).needs_gradient:
    rewards.check_differentiable(reward, backbone.data_shape, one_cond,
                                 f'search.method={config.search.method}')
  if guidance:
    scale = float(config.search.get('guidance_scale', 1.0))
    if not (np.isfinite(scale) and scale >= 0):
      raise ValueError(f'search.guidance_scale must be a finite number >= 0, got {scale}.')
    scale = scale / temperature
    rewards.check_differentiable(reward, backbone.data_shape, one_cond)
    sampler = sampler.replace(guidance=reward, guidance_scale=scale)
  heldout = []
  for label, judge in heldout_lib.build(config.reward, backbone.data_shape, backbone.decoder,
                                            all_prompts):
    judge_cond = cond
    if prompts and judge.encode_text is not None:
      judge_cond = dict(cond, reward_text=judge.encode_text(list(prompts)))
    heldout.append((label, judge, judge_cond))
  for judge, judge_cond in [(reward, cond)] + [(j, c) for _, j, c in heldout]:
    one = jax.tree.map(lambda c: c[0], judge_cond) if batch else judge_cond
    check_reward_shape(judge, backbone.data_shape, cond=one)
    if judge.probe is not None:  # a host callback: its real output shape, before compiling
      judge.probe()
  problem = Problem(backbone, sampler, reward, tilted_target(config), cond, prompts, batch,
                    row_classes, heldout=tuple(heldout))
  return problem._replace(recorder=recorders.for_problem(problem))


def prompt_rows(rows: str, num_prompts: int) -> tuple:
  """(start, stop) of config.prompt_rows: 'A-B' keeps prompts A..B-1 (Python's range(A, B)),
  '' keeps them all."""
  if not rows:
    return 0, num_prompts
  if not num_prompts:
    raise ValueError(f'prompt_rows={rows!r} is set, but this run has no prompts.')
  start, sep, stop = str(rows).partition('-')
  if not (sep and start.isdigit() and stop.isdigit() and int(start) < int(stop) <= num_prompts):
    raise ValueError(f'prompt_rows={rows!r} is not \'A-B\' with 0 <= A < B <= {num_prompts} '
                     '(the number of prompts): it keeps prompts A..B-1.')
  return int(start), int(stop)


def select_prompts(problem: Problem, start: int, stop: int) -> Problem:
  """The problem of prompts start..stop-1 of a text-to-image problem (its conditions, held-out
  conditions and recorder's prompts sliced; backbone, sampler and rewards shared)."""
  if not problem.prompts:
    raise ValueError('select_prompts needs a problem with prompts.')
  first = int(np.asarray(problem.cond['prompt_index'])[0])
  rows = slice(start - first, stop - first)
  if not 0 <= rows.start < rows.stop <= problem.batch:
    raise ValueError(f'prompts {start}..{stop - 1} are not among this problem\'s '
                     f'{first}..{first + problem.batch - 1}.')
  take = lambda tree: jax.tree.map(lambda c: c[rows], tree)
  return problem._replace(
      cond=take(problem.cond), prompts=problem.prompts[rows], batch=rows.stop - rows.start,
      heldout=tuple((label, judge, take(c)) for label, judge, c in problem.heldout))


def parameter_count(problem: Problem) -> int:
  """Parameters of the backbone and of the reward (its decoder included): the work per NFE,
  up to a constant."""
  leaves = jax.tree.leaves((problem.backbone.params, problem.reward))
  return int(sum(getattr(leaf, 'size', 0) for leaf in leaves))


def score_heldout_one(problem: Problem, judge, cond, x0) -> np.ndarray:
  """One held-out reward's scores of x0; a host callback's own exception (a reward service
  that died, say) is raised as itself."""
  score = lambda rw, x, c: rw(x, c)
  if problem.batch:
    score = jax.vmap(score, in_axes=(None, 0, 0))
  out, _, _ = runtime.compile_and_run(score, judge, np.asarray(x0), cond, label='held-out reward')
  return np.asarray(out)


def heldout_metrics(scores: dict) -> dict:
  """heldout_{label}_mean / _max over the valid (finite) scores."""
  out = {}
  for label, r in scores.items():
    valid = r[np.isfinite(r)]
    if valid.size:
      out[f'heldout_{label}_mean'] = float(np.mean(valid))
      out[f'heldout_{label}_max'] = float(np.max(valid))
  return out


def batched_conditions(config, reward, cond):
  """(cond, row_classes): with reward.target_classes and/or search.num_runs > 1, one condition
  per independent search, class-major ({'target_class': [B]} for the reward, 'label' for a
  class-conditional backbone; row_classes holds the target class of each row, -1 where none);
  else (cond, ())."""
  classes = tuple(int(c) for c in config.reward.get('target_classes', ()))
  runs = int(config.search.get('num_runs', 1))
  if runs < 1:
    raise ValueError(f'search.num_runs must be >= 1, got {runs}.')
  if classes and not rewards.get_kind(reward.name).per_class:
    per_class = [n for n in rewards.names() if rewards.get_kind(n).per_class]
    raise ValueError(f'reward.target_classes needs the {" or ".join(per_class)} reward, not '
                     f'{reward.name!r}.')
  if not classes and runs == 1:
    return cond, ()
  rows = np.repeat(np.asarray(classes or (-1,), np.int32), runs)
  batched = {'run': np.tile(np.arange(runs, dtype=np.int32), len(classes) or 1)}
  if classes:
    batched['target_class'] = rows
  if cond is not None:
    batched['label'] = np.full(len(rows), cond, np.int32)
  return batched, tuple(int(r) for r in rows)


def text_conditions(text, reward, prompts, first: int = 0) -> dict:
  """Per-prompt conditions [P, ...]: the backbone's text conditioning (`encode_prompts`: an
  array of text states, or a dict of arrays), the prompt's index in the run's whole list
  (first, first + 1, ...), and the reward's own text embedding when it compares images with
  the prompt."""
  cond = dict(text) if isinstance(text, dict) else {'text': text}
  cond['prompt_index'] = np.arange(first, first + len(prompts), dtype=np.int32)
  if reward.encode_text is not None:
    cond['reward_text'] = reward.encode_text(list(prompts))
  return cond


def check_reward_shape(reward, data_shape, n: int = 3, cond=None) -> None:
  """Traces the reward on n abstract samples (no compilation); it must return shape [n]."""
  out = jax.eval_shape(lambda x: reward(x, cond),
                       jax.ShapeDtypeStruct((n,) + tuple(data_shape), np.float32))
  if out.shape != (n,):
    raise ValueError(f'reward {reward.name!r} returned shape {out.shape} for {n} samples; it '
                     f'must return one number per sample, shape ({n},).')


def tilted_target(config) -> Optional[dict]:
  """Closed-form p*, a Gaussian mixture, where the backbone denoises a mixture exactly and the
  reward declares its tilt (models/backbone.py: BackboneKind.mixture, rewards/base.py:
  RewardKind.mixture_tilt); else None."""
  mixture = models.get_kind(config.model.name).mixture
  tilt = rewards.get_kind(config.reward.name).mixture_tilt
  if mixture is None or tilt is None:
    return None
  return tilt(mixture(config.model), config.reward, float(config.reward.temperature))
